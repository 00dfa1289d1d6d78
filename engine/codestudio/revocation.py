"""Ending access at once when someone leaves the audience of a studio or a webapp (docs/security.md).

The gateway admits a browser by a cookie it got for a signed link; it does
not know who holds the cookie. So the engine decides who gets a link
(:func:`codestudio.access.may_view_webapp`, :func:`codestudio.access.may_open_studio`),
and when a change takes someone out of an audience, the cookies and links
already handed out are made worthless:

- a **webapp** gets a new session secret (its viewers' cookie value and link
  key derive from it, like ``webapp share``); the viewers still admitted ask
  for a new link, the removed one gets none;
- a **studio** gets its access epoch raised (its owner's cookie value and link
  key derive from the session secret and the epoch; the pod's guard secret
  does not change, so the studio keeps running untouched).

Then the gateway config is applied, and from that reload nginx refuses the
old cookies and links; the old nginx workers, which would keep the connections
they hold (open websockets) for up to ``shutdown_timeout``, are ended at once.
When the gateway does not take the change, :func:`renew` raises (exit 1,
HTTP 500 ``runtime_failure``): the DB holds the renewal, the gateway does not
yet, and ``codestudio gateway start`` applies it. What counts as a change: a user removed from a group
(``admin group remove``, ``DELETE /api/v1/groups/G/members/U``), groups
a sign-in proxy sends shrinking, a user disabled (``logout --user U --disable``),
an admin removed, a project grant revoked. Each of those runs inside
:func:`codestudio.access.revoking`, which compares what the users concerned may
open before and after the change (:func:`codestudio.access.reachable`) and has
:func:`renew` renew exactly what they lost. This module sits above the access
rules and imports none of them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from codestudio.store import Store


def renew(lost: Iterable[tuple[str, str, str]], *, store: Store) -> list[str]:
    """Make every cookie and link of what was ``lost`` worthless, then apply the gateway; returns
    the renewed studios and webapps (``"studio ID"``, ``"webapp P/ID"``)."""
    from codestudio.gateway.config import new_session_secret

    studios = sorted({key for _, kind, key in lost if kind == "studio"})
    # A webapp's viewer cookie and its per-replica (backend) cookie both derive from its session
    # secret: losing either audience renews it.
    webapps = sorted({key for _, kind, key in lost if kind in ("webapp", "webapp-manage")})
    if not studios and not webapps:
        return []
    with store.connect() as conn:
        for studio_id in studios:
            conn.execute("UPDATE studios SET access_epoch = access_epoch + 1 WHERE id = ?", (studio_id,))
        for key in webapps:
            project, webapp_id = key.split("/", 1)
            conn.execute("UPDATE webapps SET session_secret = ? WHERE project = ? AND id = ? "
                         "AND session_secret IS NOT NULL",  # None: a preview nobody holds a cookie for
                         (new_session_secret(), project, webapp_id))
    done = [f"studio {s}" for s in studios] + [f"webapp {w}" for w in webapps]
    who = sorted({user for user, _, _ in lost})
    from codestudio.errors import RuntimeFailure
    from codestudio.runtime.routes import gateway

    gw = gateway()
    try:
        if gw.pid() is not None:  # a stopped gateway serves nothing: its next start reads the DB
            gw.apply()
            # nginx's old workers keep the connections they hold (an open IDE websocket) with the
            # old config for up to shutdown_timeout: end them now, so those close too.
            end = getattr(gw, "end_old_workers", None)
            if end is not None:
                end()
    except Exception as exc:  # noqa: BLE001 - whatever failed, the renewal is not in force
        raise RuntimeFailure(
            f"access renewed in the state DB for {', '.join(done)} ({', '.join(who)} may no longer open "
            f"{'them' if len(done) > 1 else 'it'}), but the gateway did not take it, so the cookies and "
            f"links handed out before STILL WORK: {exc}\nFix the cause, then run `codestudio gateway start` "
            "(it applies the state DB to the running gateway)") from exc
    print(f"note: access renewed for {', '.join(done)}: {', '.join(who)} may no longer open "
          f"{'them' if len(done) > 1 else 'it'}; cookies and links handed out before stopped working "
          "(viewers still admitted ask for a new link)", file=sys.stderr, flush=True)
    return done
