"""Gateway routes of studios: what nginx serves, from the DB and each studio's ``routes.json``.

:func:`running_studio_routes` is the gateway's studio source (``codestudio
gateway start`` and every lifecycle change use it): studios STARTING or
RUNNING with a session secret, each port routed to the endpoint the runtime
reported (stored in the ``ports`` column). ``routes.json`` keeps what the
template says about each port (label, path-prefix mode) and the actions, so
the gateway config can be rebuilt without rendering templates.
"""

from __future__ import annotations

import json
import sys

from codestudio.runtime.model import RUNNING, STARTING, Studio
from codestudio.store import Store


def save_routes(studio: Studio, routes, *, upstream_host: str | None = None) -> None:
    """Write ``routes.json`` from a :class:`~codestudio.gateway.config.StudioRoutes` (no secret in it).

    ``upstream_host`` is where the runtime's endpoints are when not on loopback
    (the Kubernetes runtime's in-cluster mode: the Service's cluster address).
    """
    studio.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    doc = {
        "ports": [{"port": r.port, "proxied_subpath": r.proxied_subpath, "label": r.label, "listed": r.listed}
                  for r in routes.ports],
        "actions": [list(a) for a in routes.actions],
    }
    if upstream_host is not None:
        doc["upstream_host"] = upstream_host
    (studio.dir / "routes.json").write_text(json.dumps(doc, indent=2) + "\n")


def saved_routes(studio: Studio) -> dict | None:
    try:
        return json.loads((studio.dir / "routes.json").read_text())
    except (OSError, ValueError):
        return None


def running_studio_routes(store: Store | None = None) -> list:
    """Routes of every studio the gateway serves: STARTING or RUNNING ones (from the DB and routes.json)."""
    from codestudio.gateway.config import PortRoute, StudioRoutes

    store = store or Store.default()
    with store.connect(write=False) as conn:
        rows = conn.execute(
            "SELECT * FROM studios WHERE state IN (?, ?) AND token IS NOT NULL ORDER BY project, id", (STARTING, RUNNING)
        ).fetchall()
    out = []
    for row in rows:
        studio = Studio.from_row(row)
        saved = saved_routes(studio)
        if saved is None:
            continue
        ports = tuple(
            PortRoute(port=p["port"], upstream_port=studio.ports[p["port"]], proxied_subpath=p["proxied_subpath"], label=p["label"],
                      listed=p.get("listed", True))
            for p in saved["ports"]
            if p["port"] in studio.ports
        )
        out.append(
            StudioRoutes(
                project_key=studio.project,
                studio_id=studio.id,
                owner=studio.owner,
                session_secret=studio.token,
                ports=ports,
                actions=tuple(tuple(a) for a in saved.get("actions", [])),
                upstream_host=saved.get("upstream_host") or "127.0.0.1",
                access_epoch=row["access_epoch"] or 0,
            )
        )
    return out


def studio_routes_of(studio: Studio):
    for r in running_studio_routes():
        if r.studio_id == studio.id:
            return r
    return None


def running_webapp_routes(store: Store | None = None) -> list:
    """Routes of every webapp the gateway serves: ``codestudio.webapps.routes.webapp_routes(store)``
    returns them (a list of :class:`~codestudio.gateway.webapps.WebappRoutes`, replicas
    with their readiness); none while that module does not exist."""
    try:
        from codestudio.webapps.routes import webapp_routes
    except ModuleNotFoundError as exc:
        if exc.name not in ("codestudio.webapps", "codestudio.webapps.routes"):
            raise
        return []
    return list(webapp_routes(store or Store.default()))


def gateway():
    """The data dir's gateway, serving :func:`running_studio_routes` and :func:`running_webapp_routes`."""
    from codestudio.gateway.process import Gateway
    from codestudio.home import data_dir

    return Gateway(data_dir(), studios=running_studio_routes, webapps=running_webapp_routes)


def apply_gateway(*, start: bool) -> None:
    """Regenerate the gateway config from the DB; with ``start``, start nginx if it is stopped."""
    gw = gateway()
    if not start and gw.pid() is None:
        return  # nothing serves the old routes; the next start regenerates from the DB
    gw.apply()


def apply_gateway_quietly() -> None:
    """:func:`apply_gateway` after a failure: a stale route only gives 502, the failure is the news."""
    try:
        apply_gateway(start=False)
    except Exception as exc:  # noqa: BLE001
        print(f"warning: gateway not updated: {exc}", file=sys.stderr, flush=True)
