"""``nginx.conf``: one studio's gateway routes, from its build state (rendered by :mod:`codestudio.gateway.config`)."""

from __future__ import annotations

from codestudio.blockapi import BuildState
from codestudio.render.studio import StudioContext


def studio_routes(state: BuildState, studio: StudioContext, template_id: str):
    """The gateway routes of one studio, from its build state."""
    from codestudio.gateway.config import PortRoute, StudioRoutes

    by_port = {ep.port: ep for _, ep in state.entrypoints if ep.port}
    listed = set(state.exposed_ports)
    routes = []
    # Every port is routed (owner-only, like the rest); only exposed ones are tabs.
    for port in state.all_ports:
        ep = by_port.get(port)
        routes.append(
            PortRoute(
                port=port,
                upstream_port=studio.host_ports.get(port, port),
                proxied_subpath=ep.proxied_subpath if ep else "/",
                label=ep.label if ep else f"Port {port}",
                listed=port in listed,
            )
        )
    return StudioRoutes(
        project_key=studio.project_key,
        studio_id=studio.studio_id or template_id,
        owner=studio.owner,
        session_secret=studio.session_secret,
        ports=tuple(routes),
        actions=tuple((a.name, a.label) for _, a in state.actions),
    )


def nginx_conf(state: BuildState, studio: StudioContext, template_id: str) -> str:
    from codestudio.gateway.config import render_studio_locations

    return render_studio_locations(studio_routes(state, studio, template_id))
