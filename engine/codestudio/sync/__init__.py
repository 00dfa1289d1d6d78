"""Zones and file synchronisation between the server and studios.

Public API (the runtime and the ``studio sync|push|pull|conflicts`` CLI call these):

- :func:`zone_dir` -- the server folder of a zone for a studio, project or user
- :func:`write_starter_files` -- starter files, once, when a studio is created
- :func:`mappings_for` / :func:`default_mappings` -- what a template syncs
- :class:`SyncStudio` -- the studio as sync sees it
- :class:`ExecTransport`, :class:`LocalTransport` (:class:`Transport` protocol)
- :func:`sync`, :func:`push_on_start`, :func:`pull_on_stop` -> :class:`SyncReport`
  (raise :class:`SyncConflictError` / :class:`SyncError`)
- :func:`conflicts`, :func:`resolve_conflicts`, :func:`forget_studio`

How it works is in :mod:`codestudio.sync.core` (which names the modules it
runs a sync with); what runs inside the studio in :mod:`codestudio.sync.agent`;
user-facing documentation in docs/sync.md.
"""

from codestudio.sync.core import pull_on_stop, push_on_start, sync
from codestudio.sync.mappings import SyncStudio, check_exclusions, default_mappings, mapping_key, mappings_for
from codestudio.sync.records import conflicts, forget_studio, resolve_conflicts
from codestudio.sync.report import Conflict, MappingReport, SyncConflictError, SyncError, SyncReport
from codestudio.sync.transport import ExecTransport, LocalTransport, Transport
from codestudio.sync.zones import write_starter_files, zone_dir

__all__ = [
    "Conflict",
    "ExecTransport",
    "LocalTransport",
    "MappingReport",
    "SyncConflictError",
    "SyncError",
    "SyncReport",
    "SyncStudio",
    "Transport",
    "check_exclusions",
    "conflicts",
    "default_mappings",
    "forget_studio",
    "mapping_key",
    "mappings_for",
    "pull_on_stop",
    "push_on_start",
    "resolve_conflicts",
    "sync",
    "write_starter_files",
    "zone_dir",
]
