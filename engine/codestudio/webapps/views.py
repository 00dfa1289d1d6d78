"""What a webapp looks like from outside: list, status, URLs, logs (each reconciles first).

Who sees a webapp here: its owner and admins; the viewers its share admits
get a link (:func:`urls`) and reach its content through the gateway.
"""

from __future__ import annotations

from codestudio.access import Identity
from codestudio.errors import NotFound, PermissionDenied
from codestudio.store import Store
from codestudio.webapps import records
from codestudio.webapps.lifecycle import check_actor
from codestudio.webapps.model import Webapp
from codestudio.webapps.supervise import reconcile, reconcile_all


def list_webapps(who: Identity, *, all_users: bool = False, store: Store | None = None) -> list[dict]:
    """``who``'s webapps (every user's with ``all_users``, admins only), reconciled, with replica counts."""
    store = store or Store.default()
    if all_users and not who.is_admin:
        raise PermissionDenied(f"only admins may list every user's webapps (--all); {who.name} is not an admin")
    webapps = [w for w in reconcile_all(store) if all_users or w.owner == who.name]
    out = []
    for w in webapps:
        reps = records.replicas_of(store, w)
        out.append({**summary(w), "ready": sum(r.routed for r in reps), "running": len(reps)})
    return out


def summary(w: Webapp) -> dict:
    return {
        "webapp": w.key, "project": w.project, "id": w.id, "owner": w.owner, "template_id": w.template_id,
        "template_version": w.template_version, "image": w.image, "replicas": w.replicas, "share": w.share,
        "source_studio": w.source_studio, "snapshot_commit": w.snapshot_commit, "generation": w.generation,
        "state": w.state, "message": w.message, "url": w.stable_path,
    }


def status(who: Identity, ref: str, *, store: Store | None = None) -> dict:
    """The webapp and each replica's state and reason (reconciled: dead replicas replaced, all probed)."""
    store = store or Store.default()
    w = records.get_webapp(ref, store=store)
    check_actor(who, w, "see the status of")
    w = reconcile(w, store=store)
    replicas = [{"pod": r.pod, "generation": r.generation, "state": r.state, "reason": r.reason,
                 "routed": r.routed, "backend": r.backend_path() + "/", "since": r.since}
                for r in records.replicas_of(store, w)]
    return {**summary(w), "replicas_detail": replicas}


def urls(who: Identity, ref: str, *, replica: str | None = None, ttl: int | None = None,
         store: Store | None = None) -> dict:
    """A link into the webapp for ``who`` (if its share admits them), on the webapp origin.

    ``url``: the stable URL, signed unless the webapp is ``public``
    (:mod:`.sharing`); with ``replica``, that replica's own prefix instead (owner
    and admins). The owner and admins also get a link to each replica's backend
    prefix (``replicas``). The gateway swaps a link's token for the viewer cookie
    of this webapp.
    """
    from codestudio.access import may_manage_webapp
    from codestudio.gateway.common import DEFAULT_TOKEN_TTL
    from codestudio.gateway.webapps import make_webapp_access_url
    from codestudio.runtime.routes import gateway
    from codestudio.webapps.sharing import access_url, require_view, served_routes

    store = store or Store.default()
    w = records.get_webapp(ref, store=store)
    require_view(who, w, store=store)
    if who.name == w.owner or who.is_admin:
        w = reconcile(w, store=store)
    ttl = DEFAULT_TOKEN_TTL if ttl is None else ttl
    out = {"webapp": w.key, "share": w.share, "url": access_url(who, ref, pod=replica, ttl=ttl, store=store)}
    # The replicas' links: the routes are read first, then whether ``who`` manages the webapp
    # (fresh from the store: the reconcile above may have run through a revocation), and the
    # links are signed with the routes read (docs/security.md, "Access ends when membership does").
    routes = served_routes(w, store)
    if routes is None:
        out["note"] = f"webapp {w.key} is {w.state}: nothing serves it"
    if may_manage_webapp(who.name, routes.owner if routes is not None else w.owner, store=store):
        base = gateway().settings.webapp_base_url
        out["replicas"] = {} if routes is None else {
            r.pod_name: make_webapp_access_url(routes, base, ttl, pod=r.pod_name) for r in routes.replicas
            if r.port(routes.main_port) is not None}
    return out


def logs_target(who: Identity, ref: str, replica: str | None = None, *, store: Store | None = None) -> str:
    """The pod whose logs to show: ``replica`` (a pod name, or its index in status order), else the first."""
    store = store or Store.default()
    w = records.get_webapp(ref, store=store)
    check_actor(who, w, "read the logs of")
    w = reconcile(w, store=store)
    pods = [r.pod for r in records.replicas_of(store, w)]
    if not pods:
        raise NotFound(f"webapp {w.key} has no replica running (it is {w.state}); saved logs are in {w.logs_dir}")
    if replica is None:
        return pods[0]
    if replica.isdigit() and int(replica) < len(pods):
        return pods[int(replica)]
    if replica in pods:
        return replica
    raise NotFound(f"webapp {w.key} has no replica {replica!r}; replicas: {', '.join(pods)}")
