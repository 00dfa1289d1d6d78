"""The studio lifecycle over the runtime interface: create, start, stop, restart, delete, reconcile.

Each transition has its module, whose public names are importable from here:
:mod:`.create`, :mod:`.start` (and restart), :mod:`.stop`, :mod:`.recovery`
(a stop's files pulled or saved), :mod:`.reconcile` (and listing),
:mod:`.delete`; what they share is in :mod:`.common` (pod set names, the
studio lock, who may act) and :mod:`.plans` (template plan, image, sync
wiring).

Every transition is one DB transaction (:mod:`codestudio.runtime.records`),
and a per-studio lock file (``<data dir>/locks/studio-<id>.lock``)
serialises start/stop/delete/sync of one studio across processes. Pods are
run by a :class:`~codestudio.runtime.base.Runtime`
(:func:`codestudio.runtime.current.get_runtime`); nothing here knows podman.

States: STOPPED -> STARTING -> RUNNING -> STOPPING -> STOPPED; FAILED when
readiness never came (the pod is removed, its logs kept) or the pod died.

**Reconciliation** (:func:`reconcile`): the DB and what the runtime runs
can disagree after a pod removed behind the engine's back, a host reboot or
a killed command. Every command that reads a studio's state reconciles it
first, so the state shown is true:

- RUNNING but no pod: STOPPED, saying so (edits since the last sync are lost);
- RUNNING but the pod's container exited: FAILED, logs kept;
- STARTING or STOPPING while no command holds the studio's lock (the
  command was killed): a stop is finished (files pulled, pod removed), a
  start is undone (pod removed); STOPPED either way.

Server-side zone files are never touched by reconciliation.
"""

from __future__ import annotations

from codestudio.runtime.lifecycle.common import (
    check_actor,
    lock_path,
    log_message,
    pod_set_name,
    remove_pods,
    runtime_instance,
    studio_lock,
    studio_pod,
)
from codestudio.runtime.lifecycle.create import create_studio
from codestudio.runtime.lifecycle.delete import delete_project_studios, delete_studio
from codestudio.runtime.lifecycle.plans import (
    Plan,
    ensure_image,
    member_mappings,
    plan_studio,
    report_summary,
    sync_studio_of,
    transport_of,
)
from codestudio.runtime.lifecycle.reconcile import list_studios, reconcile, reconcile_all, refresh
from codestudio.runtime.lifecycle.start import DEFAULT_TIMEOUT, SYNC_FLAG, NotReady, restart_studio, start_studio
from codestudio.runtime.lifecycle.stop import stop_studio

__all__ = [
    "DEFAULT_TIMEOUT",
    "SYNC_FLAG",
    "NotReady",
    "Plan",
    "check_actor",
    "create_studio",
    "delete_project_studios",
    "delete_studio",
    "ensure_image",
    "list_studios",
    "lock_path",
    "log_message",
    "member_mappings",
    "plan_studio",
    "pod_set_name",
    "reconcile",
    "reconcile_all",
    "refresh",
    "remove_pods",
    "report_summary",
    "restart_studio",
    "runtime_instance",
    "start_studio",
    "stop_studio",
    "studio_lock",
    "studio_pod",
    "sync_studio_of",
    "transport_of",
]
