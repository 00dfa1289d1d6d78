"""A webapp generation as recorded: :class:`Generation`, saved as ``<webapp dir>/gen-<n>.json``.

One **generation** is one pod set (one Deployment on Kubernetes) run from
one image and one snapshot. What the engine needs to manage it after the
command that started it has exited -- its pod set name, guard secret,
ports, probe and snapshot targets -- is kept here (0600: it holds the guard
secret), so a later ``scale``, ``status``, the supervisor and the gateway's
webapp rows work without planning the template again. Pure data: imports
only the model.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from codestudio.webapps.model import Webapp


@dataclass
class PortInfo:
    """A port the webapp serves (a ``launch_in_webapp`` entrypoint's)."""

    port: int
    proxied_subpath: str
    label: str
    exposed: bool


@dataclass
class Generation:
    """What one generation runs; saved as ``gen-<n>.json``."""

    number: int
    podset: str
    image: str
    image_id: str | None
    template_version: int
    guard_secret: str
    ports: list[int]               # every container port of the template (the guard's)
    webapp_ports: list[PortInfo]   # the ones the webapp serves, in template order
    probe_port: int
    probe_path: str                # may contain ${K8S_POD_NAME}
    targets: list[tuple[str | None, str]]
    snapshot: str                  # path of the snapshot tar
    manifest: list[dict]

    def save(self, w: Webapp) -> None:
        w.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = w.dir / f"gen-{self.number}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f, sort_keys=True)

    @classmethod
    def load(cls, w: Webapp, number: int) -> Generation | None:
        try:
            d = json.loads((w.dir / f"gen-{number}.json").read_text())
        except (OSError, ValueError):
            return None
        d["webapp_ports"] = [PortInfo(**p) for p in d["webapp_ports"]]
        d["targets"] = [tuple(t) for t in d["targets"]]
        return cls(**d)

    def forget(self, w: Webapp) -> None:
        (w.dir / f"gen-{self.number}.json").unlink(missing_ok=True)

    def probe_for(self, pod: str) -> str:
        return self.probe_path.replace("${K8S_POD_NAME}", pod)
