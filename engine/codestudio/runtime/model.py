"""The studio as a record: :class:`Studio` (a row of the ``studios`` table) and its states.

This module is at the bottom of the dependency graph: it imports nothing
from the engine but the data dir's location (:mod:`codestudio.home`), so the
template store, the gateway and the CLI can name a state or read a record
without importing the runtime.

States: ``STOPPED -> STARTING -> RUNNING -> STOPPING -> STOPPED``; ``FAILED``
when readiness never came (the pod is removed, its logs kept) or the pod
died. The values are the strings stored in the ``studios.state`` column and
shown by ``studio list``/``status``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path


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



@dataclass
class Studio:
    """One studio as stored: identity, template, state and the running pod's facts.

    ``ports`` maps each container (server) port to the loopback port the
    gateway reaches it on while it runs; ``token`` is the gateway session
    secret of the current start (None when stopped).
    """

    id: str
    project: str
    name: str
    owner: str
    template_id: str
    template_version: int
    image: str | None
    image_id: str | None
    state: str
    state_since: float
    message: str | None
    ports: dict[int, int]
    token: str | None
    created_at: float
    #: When the current (or last) pod started; ``max_lifetime`` counts from it.
    started_at: float | None = None
    #: The last activity seen (epoch seconds) and its source ("gateway", "jupyterlab: 1 kernel busy").
    last_activity: float | None = None
    activity_source: str | None = None
    #: Why it last stopped, for people: "stopped after 2 h idle", "killed for memory (limit 64Mi)".
    stop_reason: str | None = None

    @classmethod
    def from_row(cls, row) -> Studio:
        d = dict(row)
        d["ports"] = {int(k): int(v) for k, v in json.loads(d.get("ports") or "{}").items()}
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def dir(self) -> Path:
        """The engine's folder for this studio: ``routes.json`` and ``logs/``."""
        from codestudio.home import data_dir

        return data_dir() / "studios" / self.id

    @property
    def logs_dir(self) -> Path:
        return self.dir / "logs"


__all__ = ["ACTIVE_STATES", "Studio", "FAILED", "RUNNING", "STARTING", "STOPPED", "STOPPING", "StudioState"]
