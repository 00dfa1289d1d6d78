"""The webapp as a record: :class:`Webapp` and :class:`Replica` (rows of ``webapps`` and
``webapp_replicas``), their states, names and limits.

Bottom of the webapp dependency graph: it imports nothing from the engine
but the data dir's location, so the gateway and the CLI can read a record
without importing the runtime.

A webapp is published from a template (and optionally a studio's
``code_studio-versioned`` snapshot) and runs as one *pod set* per
**generation**: publishing, starting and every ``update`` make a new
generation; a rolling update grows the new pod set one replica at a time
while the old one shrinks. Each pod is a :class:`Replica`, probed by the
engine; only ``ready`` replicas are routed by the gateway.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path

from codestudio.errors import UsageError


class WebappState(StrEnum):
    """What the webapp as a whole is doing (the ``webapps.state`` column)."""

    STARTING = "STARTING"   # publish or start: its first replicas are coming up
    RUNNING = "RUNNING"     # its replicas run (see each replica's own state for readiness)
    UPDATING = "UPDATING"   # a rolling update or a scale is in progress
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"     # the definition is kept, nothing runs
    FAILED = "FAILED"       # no replica could be started (the message says why)


class ReplicaState(StrEnum):
    """A replica as the engine's probe sees it (the ``webapp_replicas.state`` column)."""

    STARTING = "starting"   # its pod runs, its probe has not passed yet
    READY = "ready"         # the probe passed: the gateway routes to it
    NOT_READY = "not-ready" # it ran but its probe fails now, or it never passed in time: not routed
    DRAINING = "draining"   # being removed (update, scale down, stop): not routed, still serving in-flight
    DEAD = "dead"           # its container exited or its pod is gone: to be replaced


#: The replica states the gateway routes to.
ROUTED = frozenset({ReplicaState.READY})

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
DEFAULT_MAX_REPLICAS = 10


def check_webapp_name(name: str) -> str:
    """A webapp id: a slug of at most 40 characters (it is part of pod names and URLs)."""
    if not isinstance(name, str) or not SLUG_RE.match(name):
        raise UsageError(f"invalid webapp name {name!r}: lowercase letters, digits and '-', starting with a "
                         "letter or digit, at most 40 characters")
    return name


def check_share(share: str) -> str:
    """``owner`` (default), ``group:G``, ``users`` (every signed-in user) or ``public`` (anybody): the gateway's rule."""
    from codestudio.gateway.webapps import parse_share

    try:
        return parse_share(share)
    except UsageError as exc:
        raise UsageError(f"invalid --share: {exc}") from None


def settings_path(data_dir: Path) -> Path:
    return data_dir / "webapps.json"


def max_replicas(data_dir: Path | None = None) -> int:
    """The most replicas a webapp may have: ``max_replicas`` in ``<data dir>/webapps.json`` (default 10)."""
    from codestudio.home import data_dir as default_dir

    path = settings_path(data_dir or default_dir())
    try:
        value = json.loads(path.read_text()).get("max_replicas", DEFAULT_MAX_REPLICAS)
    except FileNotFoundError:
        return DEFAULT_MAX_REPLICAS
    except (OSError, ValueError, AttributeError) as exc:
        raise UsageError(f"{path}: not a JSON object ({exc})") from None
    if type(value) is not int or value < 1:
        raise UsageError(f"{path}: max_replicas must be a whole number >= 1, got {value!r}")
    return value


def set_max_replicas(value: int, data_dir: Path | None = None) -> None:
    from codestudio.home import data_dir as default_dir

    if type(value) is not int or value < 1:
        raise UsageError(f"max replicas must be a whole number >= 1, got {value!r}")
    path = settings_path(data_dir or default_dir())
    try:
        current = json.loads(path.read_text())
    except (OSError, ValueError):
        current = {}
    current["max_replicas"] = value
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(current, indent=2) + "\n")
    os.replace(tmp, path)


def check_replicas(replicas: int, data_dir: Path | None = None) -> int:
    limit = max_replicas(data_dir)
    if type(replicas) is not int or not 1 <= replicas <= limit:
        raise UsageError(f"--replicas must be between 1 and {limit} (the data dir's max_replicas, "
                         f"see docs/webapps.md), got {replicas!r}")
    return replicas


@dataclass
class Webapp:
    """One webapp as stored (``webapps`` row). ``key`` is ``PROJECT/ID``, unique per data dir."""

    project: str
    id: str
    owner: str
    template_id: str
    template_version: int
    image: str | None
    image_id: str | None
    replicas: int
    share: str
    session_secret: str | None
    source_studio: str | None
    snapshot_commit: str | None
    generation: int
    state: str
    state_since: float
    message: str | None
    created_at: float

    @classmethod
    def from_row(cls, row) -> Webapp:
        d = dict(row)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def key(self) -> str:
        return f"{self.project}/{self.id}"

    @property
    def dir(self) -> Path:
        """The engine's folder for this webapp: ``routes.json``, ``snapshots/``, ``logs/``."""
        from codestudio.home import data_dir

        return data_dir() / "webapps" / self.project / self.id

    @property
    def logs_dir(self) -> Path:
        return self.dir / "logs"

    @property
    def backend_prefix(self) -> str:
        """``/web-apps-backends/<project>/<id>_`` -- a replica's prefix is this plus its pod name."""
        return f"/web-apps-backends/{self.project}/{self.id}_"

    @property
    def stable_path(self) -> str:
        return f"/webapps/{self.project}/{self.id}/"


@dataclass
class Replica:
    """One pod of a webapp (``webapp_replicas`` row).

    ``endpoints`` maps each container (server) port to ``(host, port)``
    where the gateway reaches its guard; ``guard_secret`` is the value the
    guard requires (the pod set's, never shown).
    """

    project: str
    webapp_id: str
    pod: str
    podset: str
    generation: int
    state: str
    reason: str | None
    endpoints: dict[int, tuple[str, int]]
    guard_secret: str
    since: float

    @classmethod
    def from_row(cls, row) -> Replica:
        d = dict(row)
        d["endpoints"] = {int(k): (v[0], int(v[1])) for k, v in json.loads(d.get("endpoints") or "{}").items()}
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def routed(self) -> bool:
        return self.state in ROUTED

    def backend_path(self, webapp: Webapp | None = None) -> str:
        """``/web-apps-backends/<project>/<webapp>_<pod>`` (DKU_CODE_STUDIO_BROWSER_PATH in the pod)."""
        return f"/web-apps-backends/{self.project}/{self.webapp_id}_{self.pod}"


def podset_name(project: str, webapp_id: str, generation: int, instance: str) -> str:
    """The pod set of one generation: ``wa-<project>-<id>-g<n>-<hash>``, DNS-1123.

    The hash covers the exact project key, webapp id, generation and engine
    instance (lowercasing makes ``A``/``a`` look alike). Short enough for the
    local runtime's replica and pod suffixes (``-r<i>-pod-0-studio``).
    """
    digest = hashlib.sha256(f"webapp\0{project}\0{webapp_id}\0{generation}\0{instance}".encode()).hexdigest()[:8]
    readable = re.sub(r"[^a-z0-9-]", "-", f"wa-{project.lower()}-{webapp_id}")
    readable = re.sub(r"-+", "-", readable).strip("-")[:24].rstrip("-")
    return f"{readable}-g{generation}-{digest}"


__all__ = [
    "DEFAULT_MAX_REPLICAS",
    "ROUTED",
    "Replica",
    "ReplicaState",
    "Webapp",
    "WebappState",
    "check_replicas",
    "check_share",
    "check_webapp_name",
    "max_replicas",
    "podset_name",
    "set_max_replicas",
]
