"""Stopping a studio: its files pulled back (or saved, :mod:`.recovery`), its pod removed, its routes dropped."""

from __future__ import annotations

from codestudio.access import Identity
from codestudio.errors import RuntimeFailure
from codestudio.runtime.base import Runtime
from codestudio.runtime.current import get_runtime
from codestudio.runtime.lifecycle.common import check_actor, log_message, pod_set_name, remove_pods, studio_lock
from codestudio.runtime.lifecycle.recovery import Unsaved, pull_or_save, save_stopped
from codestudio.runtime.model import FAILED, RUNNING, STOPPED, STOPPING, Studio
from codestudio.runtime.records import get_studio, set_state
from codestudio.runtime.routes import apply_gateway
from codestudio.store import Store


def stop_studio(who: Identity, ref: str, *, force: bool = False, quiet: bool = False,
                store: Store | None = None) -> Studio:
    """Pull files back (when it runs), remove the pod, drop its routes; STOPPED.

    A stop never loses unsynced files (issue 9 item 4). When the pull fails
    for any reason (conflicts aside: both versions are kept on the server), or
    some mappings may not be synced (the owner was revoked from the project),
    the mapped targets are first saved from the pod into
    ``<studio dir>/recovery/<UTC>/files.tar`` (:func:`_save_recovery`). When
    that fails too, the pod is kept: the studio stays RUNNING with a message
    saying why and how to retry, and :class:`RuntimeFailure` is raised.
    ``force`` removes the pod anyway: the caller accepts losing those files.
    """
    store = store or Store.default()
    studio = get_studio(ref, store=store)
    check_actor(who, studio, "stop")
    return stop_by_id(studio.id, force=force, quiet=quiet, store=store)


def stop_by_id(studio_id: str, *, force: bool, quiet: bool, store: Store) -> Studio:
    say = (lambda m: None) if quiet else log_message
    runtime = get_runtime()
    with studio_lock(studio_id):
        studio = get_studio(studio_id, store=store)
        if studio.state == STOPPED and not runtime.pods(pod_set_name(studio)):
            say(f"studio {studio.id} is not running")
            return studio
        stop_locked(studio, runtime, store, say=say, force=force)
    return get_studio(studio_id, store=store)


def stop_locked(studio: Studio, runtime: Runtime, store: Store, *, say, force: bool = False,
                 reason: str = "stopped") -> None:
    """Pull or save the files of a running pod, then remove it (the caller holds the studio lock)."""
    pods = runtime.pods(pod_set_name(studio))
    running = bool(pods) and pods[0].running
    set_state(store, studio.id, STOPPING, "stopping", ports=studio.ports, token=studio.token)
    apply_gateway(start=False)  # STOPPING is not routed: drop the routes before the ports are freed
    note = None
    try:
        if running:
            note = pull_or_save(studio, pods[0].name, runtime, store, say)
        elif pods:
            # It died (a crash, a reboot): its files are still in its stopped container.
            note = save_stopped(studio, pods[0].name, runtime, store, say)
    except Unsaved as exc:
        if not force:
            where = "the studio, which keeps running" if running else "its stopped container, which is kept"
            message = (f"NOT stopped: {exc}. Its files are only in {where}. "
                       f"Fix the cause and retry: codestudio studio stop {studio.id}; or remove it and "
                       f"LOSE its unsynced changes: codestudio studio stop {studio.id} --force")
            if running:
                set_state(store, studio.id, RUNNING, message[:1000], ports=studio.ports, token=studio.token)
            else:
                set_state(store, studio.id, FAILED, message[:1000], ports={}, token=None)
            apply_gateway(start=False)
            raise RuntimeFailure(f"studio {studio.id} was {message}") from None
        note = f"removed with --force although {exc}: its unsynced changes are lost"
        say(f"warning: {note}")
    remove_pods(studio, reason, runtime, pods=pods)
    set_state(store, studio.id, STOPPED, note[:1000] if note else None, ports={}, token=None)
    apply_gateway(start=False)
