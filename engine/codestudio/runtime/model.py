"""The studio as a record: its lifecycle states (and, with the split, the record itself).

This module is at the bottom of the dependency graph: it imports nothing
from the engine, so the template store, the gateway and the CLI can name a
state without importing the runtime.

States: ``STOPPED -> STARTING -> RUNNING -> STOPPING -> STOPPED``; ``FAILED``
when readiness never came (the pod is removed, its logs kept) or the pod
died. The values are the strings stored in the ``studios.state`` column and
shown by ``studio list``/``status``.
"""

from __future__ import annotations

from enum import StrEnum


class StudioState(StrEnum):
    """Where a studio is in its lifecycle (a ``str``: compares equal to its value)."""

    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    FAILED = "FAILED"


STOPPED, STARTING, RUNNING, STOPPING, FAILED = (
    StudioState.STOPPED,
    StudioState.STARTING,
    StudioState.RUNNING,
    StudioState.STOPPING,
    StudioState.FAILED,
)
#: States in which a studio has (or is getting, or is losing) a pod.
ACTIVE_STATES = frozenset({STARTING, RUNNING, STOPPING})

__all__ = ["ACTIVE_STATES", "FAILED", "RUNNING", "STARTING", "STOPPED", "STOPPING", "StudioState"]
