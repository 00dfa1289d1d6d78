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

from codestudio.webapps.lifecycle import delete, delete_project_webapps, publish, start, stop
from codestudio.webapps.rollout import scale, update
from codestudio.webapps.supervise import reconcile, reconcile_all, supervise
from codestudio.webapps.views import list_webapps, logs_target, status, urls

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
