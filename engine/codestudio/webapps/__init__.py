"""Webapps: a template's ``launch_in_webapp`` entrypoints published as N probed replicas (docs/webapps.md).

The engine API in one import, what the CLI and the server call:

- :mod:`.model` -- the webapp and replica records, their states, names, limits
- :mod:`.records` -- reading and writing their rows
- :mod:`.snapshot` -- a studio's ``code_studio-versioned`` files as a snapshot, pushed into replicas
- :mod:`.pods` -- a generation's pod set, its replicas and the engine's HTTP probe
- :mod:`.lifecycle` -- publish, start, stop, delete
- :mod:`.rollout` -- scale and the rolling update
- :mod:`.supervise` -- reconcile (replace dead replicas, re-probe) and the supervisor loop
- :mod:`.views` -- list, status, URLs, logs
- :mod:`.routes` -- the gateway's webapp rows
"""

from __future__ import annotations

import importlib

#: Public name -> the module that defines it. Imported on first use, so the gateway can
#: read :mod:`.routes` without loading the lifecycle (and the lifecycle's imports).
_EXPORTS = {
    "delete": "lifecycle", "delete_project_webapps": "lifecycle", "publish": "lifecycle", "start": "lifecycle",
    "stop": "lifecycle", "scale": "rollout", "update": "rollout", "reconcile": "supervise",
    "reconcile_all": "supervise", "supervise": "supervise", "list_webapps": "views", "logs_target": "views",
    "status": "views", "urls": "views",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"codestudio.webapps.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'codestudio.webapps' has no attribute {name!r}")


__all__ = [
    "delete",
    "delete_project_webapps",
    "list_webapps",
    "logs_target",
    "publish",
    "reconcile",
    "reconcile_all",
    "scale",
    "start",
    "status",
    "stop",
    "supervise",
    "update",
    "urls",
]
