"""The gateway's webapp rows, from the state DB: :func:`webapp_routes`.

The gateway (:mod:`codestudio.gateway.webapps`) serves what this returns:
every webapp that has replicas, each replica with its pod name, whether the
engine's probe says it is ready, its guard secret and, per port the webapp
serves, where the guard is reachable and the port's ``proxied_subpath``.
Replicas of two generations are listed side by side during a rolling
update; ``draining`` and ``dead`` replicas are left out (their pods are
about to go, or gone), ``starting`` and ``not-ready`` ones are listed with
``ready=False`` (reachable at their backend prefix, never given browsers
at the stable URL).
"""

from __future__ import annotations

import sys

from codestudio.store import Store
from codestudio.webapps import records
from codestudio.webapps.model import ReplicaState, Webapp

#: Replica states the gateway lists (routed or not).
LISTED = frozenset({ReplicaState.READY, ReplicaState.STARTING, ReplicaState.NOT_READY})


def main_port(gen) -> int:
    """The port the stable URL serves: the first exposed ``launch_in_webapp`` entrypoint's."""
    return next((p.port for p in gen.webapp_ports if p.exposed), gen.webapp_ports[0].port)


def routes_of(w: Webapp, replicas, generations: dict) -> object | None:
    """One :class:`~codestudio.gateway.webapps.WebappRoutes` (None when nothing of it is served)."""
    from codestudio.gateway.webapps import ReplicaPort, ReplicaRoutes, WebappRoutes

    current = generations.get(w.generation)
    rows = []
    for r in replicas:
        gen = generations.get(r.generation)
        if gen is None or r.state not in LISTED:
            continue
        ports = tuple(ReplicaPort(port=p.port, upstream_port=r.endpoints[p.port][1], proxied_subpath=p.proxied_subpath,
                                  upstream_host=r.endpoints[p.port][0])
                      for p in gen.webapp_ports if p.port in r.endpoints)
        rows.append(ReplicaRoutes(pod_name=r.pod, ready=r.state == ReplicaState.READY, ports=ports,
                                  guard_secret=r.guard_secret))
    if not rows or current is None:
        return None
    return WebappRoutes(project_key=w.project, webapp_id=w.id, owner=w.owner, share=w.share,
                        session_secret=w.session_secret, main_port=main_port(current), replicas=tuple(rows))


def webapp_routes(store: Store | None = None) -> list:
    """Routes of every webapp with listed replicas (the gateway's webapp source)."""
    from codestudio.webapps.generation import Generation

    store = store or Store.default()
    by_webapp: dict[tuple[str, str], list] = {}
    for r in records.all_replicas(store):
        by_webapp.setdefault((r.project, r.webapp_id), []).append(r)
    out = []
    for w in records.all_webapps(store):
        replicas = by_webapp.get((w.project, w.id), [])
        if not replicas:
            continue
        generations = {}
        for number in {r.generation for r in replicas} | {w.generation}:
            gen = Generation.load(w, number)
            if gen is not None:
                generations[number] = gen
        try:
            routes = routes_of(w, replicas, generations)
        except Exception as exc:  # noqa: BLE001 - one bad row must not take every studio's routes down
            print(f"warning: webapp {w.key} is not served: {exc}", file=sys.stderr, flush=True)
            continue
        if routes is not None:
            out.append(routes)
    return out
