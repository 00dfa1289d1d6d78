"""The studio engine API in one import: what the CLI and the server call.

The implementation is split along its seams (each module owns one thing):

- :mod:`codestudio.runtime.model` -- the studio record and its states
- :mod:`codestudio.runtime.records` -- reading and writing studio rows
- :mod:`codestudio.runtime.lifecycle` -- create, start, stop, restart, delete, reconcile
- :mod:`codestudio.runtime.operations` -- status, URL, logs, actions, sync
- :mod:`codestudio.runtime.routes` -- the gateway routes of running studios
- :mod:`codestudio.runtime.doctor` -- ``codestudio doctor``
- :mod:`codestudio.runtime.base` -- the :class:`~codestudio.runtime.base.Runtime`
  interface; :mod:`codestudio.runtime.local` implements it with podman

This module re-exports their public names so callers keep one stable
import (``from codestudio.runtime import studios``).
"""

from __future__ import annotations

from codestudio.runtime.doctor import doctor
from codestudio.runtime.lifecycle import (
    delete_project_studios,
    member_mappings,
    plan_studio,
    sync_studio_of,
    DEFAULT_TIMEOUT,
    SYNC_FLAG,
    check_actor,
    create_studio,
    delete_studio,
    list_studios,
    lock_path,
    pod_set_name,
    reconcile,
    reconcile_all,
    refresh,
    restart_studio,
    runtime_instance,
    start_studio,
    stop_studio,
    studio_lock,
    studio_pod,
)
from codestudio.runtime.model import ACTIVE_STATES, FAILED, RUNNING, STARTING, STOPPED, STOPPING, Studio, StudioState
from codestudio.runtime.operations import (
    MAX_URL_TTL,
    MIN_URL_TTL,
    RUNNER,
    access_url,
    detached_log_path,
    list_actions,
    logs_target,
    run_action,
    stream_logs,
    studio_conflicts,
    studio_status,
    sync_files,
)
from codestudio.runtime.records import get_studio, set_state
from codestudio.runtime.routes import running_studio_routes, studio_routes_of
from codestudio.store import Store  # noqa: F401 - callers (tests) reach it through here

#: Old private names some callers (tests, benchmarks) used.
_set_state = set_state
_check_actor = check_actor


def _gateway():
    """The data dir's gateway, looked up when called: ``routes.gateway`` may be replaced (tests do),
    and a name bound at import would keep whichever gateway was current then."""
    from codestudio.runtime import routes

    return routes.gateway()


__all__ = [
    "ACTIVE_STATES",
    "DEFAULT_TIMEOUT",
    "FAILED",
    "MAX_URL_TTL",
    "MIN_URL_TTL",
    "RUNNER",
    "RUNNING",
    "STARTING",
    "STOPPED",
    "STOPPING",
    "SYNC_FLAG",
    "Studio",
    "StudioState",
    "access_url",
    "check_actor",
    "create_studio",
    "delete_project_studios",
    "delete_studio",
    "detached_log_path",
    "doctor",
    "get_studio",
    "list_actions",
    "list_studios",
    "lock_path",
    "member_mappings",
    "logs_target",
    "plan_studio",
    "pod_set_name",
    "reconcile",
    "reconcile_all",
    "refresh",
    "restart_studio",
    "run_action",
    "running_studio_routes",
    "runtime_instance",
    "set_state",
    "start_studio",
    "stop_studio",
    "stream_logs",
    "studio_conflicts",
    "studio_lock",
    "studio_pod",
    "studio_routes_of",
    "studio_status",
    "sync_files",
    "sync_studio_of",
]
