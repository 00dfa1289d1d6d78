"""Who may view a webapp, changing that, and the links that let viewers in.

A webapp's **share** (docs/webapps.md, "Sharing"):

- ``owner`` (the default): its owner, and codestudio admins;
- ``group:G``: those, and every member of group G (state-DB, SSO or OS groups,
  as :func:`codestudio.access.groups_of` counts them);
- ``users``: every signed-in user (anybody the engine identifies who is not
  disabled);
- ``public``: anybody, without signing in.

The gateway does the check on every request (docs/gateway.md, "Access to
webapps"): a public webapp is open; any other needs the webapp's cookie, which
the gateway gives only for a link signed with the webapp's link key. This
module is what signs those links, for exactly the people the share admits at
that moment. Only the owner and admins change a share; each change rotates
the webapp's session secret, so every cookie handed out under the old share
stops working at that gateway reload.
"""

from __future__ import annotations

from codestudio.access import Identity, may_manage_webapp, may_view_webapp
from codestudio.errors import PermissionDenied, UsageError
from codestudio.gateway.common import DEFAULT_TOKEN_TTL
from codestudio.gateway.webapps import SHARE_OWNER, SHARE_PUBLIC, SHARE_USERS, parse_share, share_group
from codestudio.store import Store

MIN_LINK_TTL, MAX_LINK_TTL = 10, 7 * 24 * 3600


def describe(share: str) -> str:
    """The share in words, for messages."""
    group = share_group(share)
    if group is not None:
        return f"members of group {group}"
    return {SHARE_OWNER: "its owner only", SHARE_USERS: "every signed-in user", SHARE_PUBLIC: "anybody"}[share]


def require_view(who: Identity, w, *, store: Store | None = None) -> None:
    """Refuse unless the share of ``w`` (a webapp or its routes) admits ``who`` now. Whether
    ``who`` is an admin is read from the store, not from ``who`` (a request's identity is a
    snapshot from its start: an admin removed since must not be one here)."""
    if not may_view_webapp(who.name, w.owner, w.share, store=store):
        key = getattr(w, "key", None) or f"{w.project_key}/{w.webapp_id}"
        raise PermissionDenied(f"webapp {key} is shared with {describe(w.share)}; {who.name} may not view it")


def require_manage(who: Identity, w, what: str, *, store: Store | None = None) -> None:
    """Refuse unless ``who`` owns ``w`` (a webapp or its routes) or is an admin now, and is not disabled."""
    if not may_manage_webapp(who.name, w.owner, store=store):
        key = getattr(w, "key", None) or f"{w.project_key}/{w.webapp_id}"
        raise PermissionDenied(f"webapp {key} belongs to {w.owner}; {who.name} may not {what} it")


def set_share(who: Identity, ref: str, share: str, *, store: Store | None = None):
    """Share webapp ``ref`` as ``share`` (its owner and admins only); returns the updated webapp.

    Always rotates the session secret (also when the share stays the same: that
    is how an owner ends every viewer's cookie), then updates the gateway.
    """
    from codestudio.gateway.config import new_session_secret
    from codestudio.webapps import records
    from codestudio.webapps.lifecycle import apply_gateway, check_actor

    store = store or Store.default()
    share = parse_share(share)
    w = records.get_webapp(ref, store=store)
    check_actor(who, w, "change the sharing of")
    w = records.update_webapp(store, w, share=share, session_secret=new_session_secret())
    apply_gateway(start=False)
    return w


def served_routes(w, store: Store):
    """The gateway's routes of ``w`` (its listed replicas), or None when nothing serves it."""
    from codestudio.webapps.routes import webapp_routes

    return next((r for r in webapp_routes(store) if (r.project_key, r.webapp_id) == (w.project, w.id)), None)


def _routes(w, store: Store):
    """The gateway's routes of ``w``, or the webapp alone when nothing runs."""
    from codestudio.gateway.webapps import WebappRoutes

    routes = served_routes(w, store)
    if routes is not None:
        return routes
    # Nothing runs: a link to the stable URL only needs the prefix and the secret (the
    # main port is not part of it), and opens as soon as a replica is ready.
    return WebappRoutes(project_key=w.project, webapp_id=w.id, owner=w.owner, share=w.share,
                        session_secret=w.session_secret, main_port=1)


def access_url(who: Identity, ref: str, *, pod: str | None = None, port: int | None = None,
               ttl: int = DEFAULT_TOKEN_TTL, store: Store | None = None) -> str:
    """A link into webapp ``ref`` for ``who``, on the webapp origin.

    Refused unless the share admits ``who``. A public webapp's link is its plain
    URL; any other carries a token valid ``ttl`` seconds, which the gateway swaps
    for the webapp's cookie. ``pod`` (and ``port``) point at one replica's backend
    prefix (owner and admins only: viewers use the stable URL).

    The routes (session secret, share, owner) are read first, the access check runs on
    them after, and the link is signed with what was read: a check that passes ran before
    any renewal of that secret committed (codestudio.revocation), so the link dies with it.
    """
    from codestudio.gateway.webapps import make_webapp_access_url
    from codestudio.runtime.routes import gateway
    from codestudio.webapps import records

    store = store or Store.default()
    if type(ttl) is not int or not MIN_LINK_TTL <= ttl <= MAX_LINK_TTL:
        raise UsageError(f"--ttl must be {MIN_LINK_TTL}-{MAX_LINK_TTL} seconds, got {ttl!r}")
    w = records.get_webapp(ref, store=store)
    routes = _routes(w, store)  # read first, then check: see above
    require_view(who, routes, store=store)
    if pod is not None:
        require_manage(who, routes, "open a replica of", store=store)
    return make_webapp_access_url(routes, gateway().settings.webapp_base_url, ttl, pod=pod, port=port)
