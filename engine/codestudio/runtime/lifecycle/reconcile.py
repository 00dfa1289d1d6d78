"""Reconciliation: making a studio's recorded state true (see the package docstring); listing studios so."""

from __future__ import annotations

from codestudio.access import Identity
from codestudio.errors import PermissionDenied, RuntimeFailure
from codestudio.locks import is_locked
from codestudio.runtime.base import Runtime
from codestudio.runtime.current import get_runtime
from codestudio.runtime.lifecycle.common import lock_path, pod_set_name, studio_lock
from codestudio.runtime.lifecycle.stop import stop_locked
from codestudio.runtime.model import FAILED, RUNNING, STARTING, STOPPED, STOPPING, Studio
from codestudio.runtime.records import all_studios, get_studio, set_state
from codestudio.runtime.routes import apply_gateway_quietly
from codestudio.store import Store


def _lost_edits(studio: Studio) -> str:
    return "edits made in the studio since its last sync were not pulled back and are lost"


def reconcile_locked(studio: Studio, runtime: Runtime, store: Store, *, pods=None,
                      raise_unsaved: bool = False) -> tuple[Studio, str | None]:
    """Make ``studio``'s recorded state true; the caller holds the studio's lock.

    Returns the studio as now stored and what was fixed (None if nothing).
    With ``raise_unsaved`` an interrupted stop whose files can be neither
    pulled nor saved raises (the pod is kept, the studio RUNNING) instead of
    being reported.
    """
    name = pod_set_name(studio)
    pods = runtime.pods(name) if pods is None else pods
    running = bool(pods) and all(p.running for p in pods)
    fixed = None

    def stop_by_the_rules(reason: str) -> str | None:
        """Stop the pod as ``studio stop`` does (files pulled, or saved even from a dead container)."""
        try:
            stop_locked(studio, runtime, store, say=lambda m: None, reason=reason)
        except RuntimeFailure:  # its files could be neither pulled nor saved: the pod is kept
            apply_gateway_quietly()
            if raise_unsaved:
                raise
            return None
        return get_studio(studio.id, store=store).message

    if studio.state == RUNNING and not running:
        if not pods:
            fixed = (f"the pod of studio {studio.id} is gone (removed outside codestudio, or the host restarted); "
                     f"{_lost_edits(studio)}")
            set_state(store, studio.id, STOPPED, fixed, ports={}, token=None)
        else:
            why = next((p.message for p in pods if not p.running and p.message), "the container stopped")
            note = stop_by_the_rules("died")
            if note is None and runtime.pods(name):
                return get_studio(studio.id, store=store), get_studio(studio.id, store=store).message
            fixed = f"studio {studio.id} stopped by itself ({why})" + (f"; {note}" if note else "")
            set_state(store, studio.id, FAILED, fixed[:1000], ports={}, token=None,
                      stop_reason=why[:300] if "killed for memory" in why else None)
        apply_gateway_quietly()
    elif studio.state in (STOPPING, STARTING):
        # The command was killed. Its pod is stopped by the stop's rules: files are
        # pulled (or saved, even from a dead container) first, never dropped.
        what = "stop" if studio.state == STOPPING else "start"
        if pods:
            note = stop_by_the_rules("interrupted")
            if note is None and runtime.pods(name):
                return get_studio(studio.id, store=store), get_studio(studio.id, store=store).message
            fixed = f"studio {studio.id} was left {studio.state} by an interrupted {what}; it was stopped, files pulled or saved first"
            if note:
                fixed += f" ({note})"
        else:
            fixed = (f"studio {studio.id} was left {studio.state} by an interrupted {what} and its pod is gone"
                     + ("; " + _lost_edits(studio) if studio.state == STOPPING else ""))
        if studio.state == STARTING:
            fixed += f"; start it again: codestudio studio start {studio.id}"
        set_state(store, studio.id, STOPPED, fixed[:1000], ports={}, token=None)
        apply_gateway_quietly()
    if fixed is None:
        return studio, None
    return get_studio(studio.id, store=store), fixed


def reconcile(studio: Studio, *, store: Store | None = None, runtime: Runtime | None = None,
              pods=None) -> Studio:
    """Make the studio's recorded state match what the runtime runs; return it as now stored.

    A studio some live command holds the lock of is in a true transition
    and left alone. What was fixed is the studio's ``message``.
    """
    store = store or Store.default()
    if studio.state in (STOPPED, FAILED):
        return studio  # stopped states make no claim about pods; leftovers are start's and doctor's business
    if is_locked(lock_path(studio.id)):
        return studio
    runtime = runtime or get_runtime()
    if studio.state == RUNNING:
        pods = runtime.pods(pod_set_name(studio)) if pods is None else pods
        if pods and all(p.running for p in pods):
            return studio
    with studio_lock(studio.id):
        fresh = get_studio(studio.id, store=store)
        if fresh.state != studio.state:
            pods = None
        return reconcile_locked(fresh, runtime, store, pods=pods)[0]


def reconcile_all(studios: list[Studio], *, store: Store | None = None, runtime: Runtime | None = None) -> list[Studio]:
    """:func:`reconcile` for many studios with one look at the runtime."""
    store = store or Store.default()
    if all(s.state in (STOPPED, FAILED) for s in studios):
        return studios
    runtime = runtime or get_runtime()
    by_name = {ps.name: list(ps.pods) for ps in runtime.list()}
    return [reconcile(s, store=store, runtime=runtime, pods=by_name.get(pod_set_name(s), []))
            if s.state not in (STOPPED, FAILED) else s for s in studios]


def refresh(studio: Studio, *, store: Store | None = None) -> Studio:
    """Compatibility name of :func:`reconcile`."""
    return reconcile(studio, store=store)


def list_studios(who: Identity | None = None, *, all_users: bool = False, store: Store | None = None,
                 reconciled: bool = True) -> list[Studio]:
    """``who``'s studios; every user's with ``all_users`` (admins only) or without ``who`` (engine use).

    With ``reconciled`` (the default) each listed studio's state is first
    made true (:func:`reconcile_all`).
    """
    if who is not None and all_users and not who.is_admin:
        raise PermissionDenied(
            f"only admins may list every user's studios (--all); {who.name} is not an admin (see `codestudio admin list`)"
        )
    store = store or Store.default()
    studios = all_studios(store)
    if who is not None and not all_users:
        studios = [s for s in studios if s.owner == who.name]
    if reconciled:
        studios = reconcile_all(studios, store=store)
    return studios
