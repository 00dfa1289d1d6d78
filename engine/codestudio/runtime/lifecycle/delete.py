"""Deleting studios: pod, routes, record and sync records; the recovery folder kept unless purged."""

from __future__ import annotations

import shutil

from codestudio.access import Identity
from codestudio.errors import UsageError
from codestudio.runtime.current import get_runtime
from codestudio.runtime.lifecycle.common import check_actor, log_message, remove_pods, studio_lock
from codestudio.runtime.lifecycle.reconcile import reconcile
from codestudio.runtime.lifecycle.stop import stop_by_id
from codestudio.runtime.model import RUNNING, STARTING, STOPPING, Studio
from codestudio.runtime.records import delete_record, get_studio
from codestudio.runtime.routes import apply_gateway
from codestudio.store import Store


def delete_studio(who: Identity, ref: str, *, force: bool = False, purge: bool = False,
                  store: Store | None = None) -> None:
    """Remove the studio (pod, routes, state, sync records); ``purge`` also removes its studio-scoped zones.

    Its recovery folder (files a stop could not pull) is kept unless ``purge``.
    """
    store = store or Store.default()
    studio = reconcile(get_studio(ref, store=store), store=store)
    check_actor(who, studio, "delete")
    _delete(studio, force=force, purge=purge, store=store)


def delete_project_studios(project: str, *, purge: bool, store: Store) -> list[str]:
    """Stop and delete every studio of ``project`` (``project delete --force``: the caller checked who may).

    Stops keep their rule: a studio whose files can be neither pulled nor
    saved is not deleted, and the :class:`RuntimeFailure` stops the loop.
    """
    with store.connect() as conn:
        ids = [r["id"] for r in conn.execute("SELECT id FROM studios WHERE project = ? ORDER BY id", (project,))]
    for studio_id in ids:
        _delete(reconcile(get_studio(studio_id, store=store), store=store), force=True, purge=purge, store=store)
    return ids


def _delete(studio: Studio, *, force: bool, purge: bool, store: Store) -> None:
    if studio.state in (RUNNING, STARTING, STOPPING) and not force:
        raise UsageError(f"studio {studio.id} is {studio.state}; stop it first or pass --force")
    if studio.state in (RUNNING, STARTING, STOPPING):
        stop_by_id(studio.id, force=False, quiet=True, store=store)
    runtime = get_runtime()
    with studio_lock(studio.id):
        remove_pods(studio, "deleted", runtime)
        delete_record(store, studio.id)
        try:
            from codestudio.sync import forget_studio

            forget_studio(studio.id, store=store)
        except ImportError:
            pass
        kept = studio.dir / "recovery"
        if purge or not any(kept.iterdir() if kept.is_dir() else ()):
            shutil.rmtree(studio.dir, ignore_errors=True)
        else:
            for child in studio.dir.iterdir():
                if child == kept:
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
            log_message(f"studio {studio.id}: its recovery folder {kept} is kept (delete with --purge to remove it)")
        if purge:
            from codestudio.home import data_dir

            shutil.rmtree(data_dir() / "zones" / "projects" / studio.project / "studios" / studio.id, ignore_errors=True)
        apply_gateway(start=False)
