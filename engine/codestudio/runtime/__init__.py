"""Runtimes: where studios run. ``local`` is podman on this machine.

- :mod:`codestudio.runtime.studios` -- lifecycle and state (create, start, stop, ...)
- :mod:`codestudio.runtime.local` -- podman: manifest adaptations, kube play/down, exec, logs
- :mod:`codestudio.runtime.readiness` -- probes through the published loopback port

:func:`running_studio_routes` is what the gateway serves (``codestudio gateway start`` uses it).
"""

from __future__ import annotations


def running_studio_routes():
    """Gateway routes of every studio that is STARTING or RUNNING."""
    from codestudio.runtime.studios import running_studio_routes as routes

    return routes()


__all__ = ["running_studio_routes"]
