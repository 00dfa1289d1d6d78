"""The webapp lifecycle over the runtime interface: publish, start, stop, delete, scale, update.

Every command on one webapp holds its lock file
(``<data dir>/locks/webapp-<project>-<id>.lock``); the supervisor
(:mod:`codestudio.webapps.supervise`) leaves a locked webapp alone.

Order of operations is what keeps requests from failing: a replica is
routed only after the engine's probe passed (``ready``), and before a pod
is removed its replica is first marked ``draining`` and the gateway
applied (the apply returns once no request can reach it any more), then
the pod waits :data:`DRAIN_SECONDS` for requests in flight, then goes.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from codestudio.access import Identity, require_project_use, require_template_use
from codestudio.errors import NotFound, PermissionDenied, RuntimeFailure, UsageError
from codestudio.locks import file_lock
from codestudio.runtime.current import get_runtime
from codestudio.runtime.limits import check_webapp_quotas, quota_lock
from codestudio.store import Store, now
from codestudio.webapps import pods as P
from codestudio.webapps import records
from codestudio.webapps.model import (
    ReplicaState,
    Webapp,
    WebappState,
    check_replicas,
    check_share,
    check_webapp_name,
)

DEFAULT_TIMEOUT = 300.0
#: Seconds a drained replica keeps serving requests already in flight before its pod goes.
DRAIN_SECONDS = 1.0


def _log(msg: str) -> None:
    from codestudio.text import printable

    print(printable(msg, keep="\n\t"), file=sys.stderr, flush=True)


def lock_path(w: Webapp):
    from codestudio.home import data_dir

    return data_dir() / "locks" / f"webapp-{w.project}-{w.id}.lock"


@contextmanager
def webapp_lock(w: Webapp) -> Iterator[None]:
    with file_lock(lock_path(w), waiting=lambda: _log(f"waiting for another command on webapp {w.key} to finish")):
        yield


def check_actor(who: Identity, w: Webapp, what: str) -> None:
    if who.name != w.owner and not who.is_admin:
        raise PermissionDenied(f"webapp {w.key} belongs to {w.owner}; {who.name} may not {what} it")


def _plan(template_id: str, store: Store):
    from codestudio.plan import plan_template
    from codestudio.runtime.lifecycle import Plan
    from codestudio.templates_store import get_template

    stored = get_template(template_id, store=store)
    template, state = plan_template(stored.path)
    return Plan(template, state, stored.version)


def _image(plan, quiet: bool, store: Store):
    from codestudio.runtime.lifecycle import plans

    return plans.ensure_image(plan, quiet=quiet, store=store)


def _source_studio(who: Identity, project: str, ref: str, store: Store):
    """The studio ``--from-studio`` names: the caller's own, in the same project (UsageError otherwise)."""
    from codestudio.runtime.records import get_studio

    try:
        studio = get_studio(ref, store=store)
    except NotFound:
        studio = get_studio(f"{project}/{ref}", store=store)
    if studio.project != project:
        raise UsageError(f"--from-studio {ref}: studio {studio.id} is in project {studio.project}, not {project}")
    if studio.owner != who.name:
        raise PermissionDenied(f"--from-studio {ref}: studio {studio.id} belongs to {studio.owner}; "
                               f"a webapp is published from its owner's own studio")
    return studio


def take_snapshot(who: Identity, w: Webapp, plan, number: int, store: Store, *, quiet: bool):
    """The snapshot of generation ``number``: the source studio's zone (synced first if it runs) or starter files."""
    from codestudio.webapps import snapshot

    target = w.dir / "snapshots" / f"{number}.tar"
    if w.source_studio is None:
        return snapshot.from_starter_files(plan.state, target)
    from codestudio.runtime.lifecycle import reconcile
    from codestudio.runtime.model import RUNNING
    from codestudio.runtime.records import get_studio
    from codestudio.sync import zone_dir

    studio = reconcile(get_studio(w.source_studio, store=store), store=store)
    if studio.state == RUNNING:
        from codestudio.runtime.operations import sync_files

        if not quiet:
            _log(f"pulling studio {studio.id}'s {snapshot.ZONE} files first")
        sync_files(Identity(studio.owner, who.is_admin, who.os_user), studio.id, "pull", snapshot.ZONE, store=store)
    zone = zone_dir(snapshot.ZONE, studio_id=studio.id, project_key=studio.project, user=studio.owner)
    return snapshot.from_studio_zone(zone, target, studio_id=studio.id, owner=studio.owner,
                                     message=f"Snapshot for webapp {w.key}")


def apply_gateway(*, start: bool = False) -> None:
    """Make the gateway serve the replicas as now recorded (studios and webapps from the DB).

    Returns once every new request sees the new config (the gateway's
    apply waits for the old workers to stop accepting), which is what lets
    a rolling update drain a replica before its pod is removed.
    """
    from codestudio.runtime.routes import apply_gateway as apply

    apply(start=start)


def apply_gateway_quietly() -> None:
    try:
        apply_gateway()
    except Exception as exc:  # noqa: BLE001 - the failure being handled is the news
        print(f"warning: gateway not updated: {exc}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Publish


def publish(who: Identity, project: str, name: str, template_id: str, *, replicas: int = 1,
            from_studio: str | None = None, share: str = "owner", timeout: float = DEFAULT_TIMEOUT,
            quiet: bool = False, store: Store | None = None) -> Webapp:
    """Publish a webapp and wait for its replicas' probes; returns it (RUNNING).

    Everything that can be refused is checked before anything is written
    or started (exit 2). Raises RuntimeFailure (exit 1) when no replica
    became ready: the webapp keeps running and is probed again by every
    later command and the supervisor.
    """
    from codestudio.gateway.config import new_session_secret
    from codestudio.types import PROJECT_KEY_RE

    store = store or Store.default()
    if not PROJECT_KEY_RE.match(project):
        raise UsageError(f"invalid project key {project!r}: letters, digits, '_' and '-', starting with a letter "
                         "or digit, at most 63 characters")
    check_webapp_name(name)
    check_replicas(replicas)
    share = check_share(share)
    if timeout <= 0:
        raise UsageError("--timeout must be positive")
    require_project_use(who.name, project, "publish webapps in it", admin=who.is_admin, store=store)
    require_template_use(who, template_id, store=store)
    if records.exists(store, project, name):
        raise UsageError(f"project {project} already has a webapp named {name!r}")
    plan = _plan(template_id, store)
    P.webapp_entrypoints(plan.state, template_id)
    studio = _source_studio(who, project, from_studio, store) if from_studio else None
    check_webapp_quotas(project, name, who.name, template_id, replicas, store, verb="publish")  # fail fast
    t = now()
    w = Webapp(project=project, id=name, owner=who.name, template_id=template_id, template_version=plan.version,
               image=None, image_id=None, replicas=replicas, share=share, session_secret=new_session_secret(),
               source_studio=studio.id if studio else None, snapshot_commit=None, generation=0,
               state=WebappState.STARTING, state_since=t, message="publishing", created_at=t)
    if w.dir.exists():
        shutil.rmtree(w.dir)  # left by a webapp of that name deleted before; nothing references it
    snap = take_snapshot(who, w, plan, 1, store, quiet=quiet)
    build = _image(plan, quiet, store)
    w.snapshot_commit, w.image, w.image_id = snap.commit, build.image, getattr(build, "image_id", None)
    with quota_lock():  # the check and taking the places are one step (the row is STARTING from here)
        check_webapp_quotas(project, name, who.name, template_id, replicas, store, verb="publish")
        records.insert_webapp(store, w)
    if not quiet:
        _log(f"publishing webapp {w.key}: {replicas} replica(s) of {build.image}, snapshot: {snap.source}"
             + (f" commit {snap.commit}" if snap.commit else ""))
    with webapp_lock(w):
        return _run_generation(w, plan, build, snap.path, 1, replicas, timeout=timeout, quiet=quiet, store=store)


def _run_generation(w: Webapp, plan, build, snapshot, number: int, replicas: int, *, timeout: float, quiet: bool,
                    store: Store) -> Webapp:
    """Start generation ``number`` with all its replicas (nothing else runs); the caller holds the lock."""
    runtime = get_runtime()
    gen = P.prepare(w, number, plan.template, plan.state, plan.version, build, snapshot)
    w = records.update_webapp(store, w, state=WebappState.STARTING, message="starting", generation=number,
                              image=build.image, image_id=gen.image_id, template_version=plan.version)
    try:
        rows = P.launch(w, gen, replicas, runtime, store)
        apply_gateway(start=True)
        if not quiet:
            _log(f"waiting up to {timeout:g}s for {len(rows)} replica(s) (HTTP GET {gen.probe_path})")
        ready = P.wait_ready(w, gen, rows, runtime, store, timeout=timeout, on_ready=lambda r: apply_gateway_quietly())
    except BaseException as exc:
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else (str(exc).splitlines() or [type(exc).__name__])[0]
        _remove_generation(w, gen, runtime, store)
        records.update_webapp(store, w, state=WebappState.FAILED, message=why[:500])
        if isinstance(exc, (KeyboardInterrupt, RuntimeFailure)):
            raise
        raise RuntimeFailure(f"webapp {w.key} failed to start: {exc}") from exc
    apply_gateway_quietly()
    note = None if len(ready) == len(rows) else f"{len(ready)} of {len(rows)} replicas ready"
    w = records.update_webapp(store, w, state=WebappState.RUNNING, message=note)
    if not ready:
        reasons = "; ".join(f"{r.pod}: {r.reason}" for r in records.replicas_of(store, w))
        raise RuntimeFailure(f"webapp {w.key}: no replica became ready ({reasons}); it keeps running and is "
                             f"probed again by `codestudio webapp status {w.key}`")
    return w


def _remove_generation(w: Webapp, gen, runtime, store: Store) -> None:
    """Drain every replica of ``gen`` from the gateway, then remove its pod set and rows."""
    rows = records.replicas_of(store, w, generation=gen.number)
    routed = [r for r in rows if r.state != ReplicaState.DRAINING]
    for r in routed:
        records.set_replica(store, r, ReplicaState.DRAINING, "removing")
    if routed:
        apply_gateway_quietly()
        time.sleep(DRAIN_SECONDS)
    for pod in runtime.pods(gen.podset):
        target = w.logs_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{pod.name}.log"
        runtime.save_logs(pod.name, target)
    runtime.stop(gen.podset)
    for r in rows:
        records.drop_replica(store, r)


# --------------------------------------------------------------------------
# Stop, start, delete


def stop(who: Identity, ref: str, *, store: Store | None = None) -> Webapp:
    """Remove every replica (drained first); the definition, snapshot and share stay."""
    store = store or Store.default()
    w = records.get_webapp(ref, store=store)
    check_actor(who, w, "stop")
    runtime = get_runtime()
    with webapp_lock(w):
        w = records.get_webapp(w.key, store=store)
        w = records.update_webapp(store, w, state=WebappState.STOPPING, message="stopping")
        _remove_all(w, runtime, store)
        w = records.update_webapp(store, w, state=WebappState.STOPPED, message=None)
    apply_gateway_quietly()
    return w


def _remove_all(w: Webapp, runtime, store: Store) -> None:
    numbers = {r.generation for r in records.replicas_of(store, w)} | ({w.generation} if w.generation else set())
    for number in sorted(numbers):
        gen = P.Generation.load(w, number)
        if gen is not None:
            _remove_generation(w, gen, runtime, store)
    for r in records.replicas_of(store, w):  # rows of a generation whose file is gone
        records.drop_replica(store, r)


def start(who: Identity, ref: str, *, timeout: float = DEFAULT_TIMEOUT, quiet: bool = False,
          store: Store | None = None) -> Webapp:
    """Start a stopped (or failed) webapp: a new generation from its template as it is now and its snapshot."""
    store = store or Store.default()
    w = records.get_webapp(ref, store=store)
    check_actor(who, w, "start")
    require_project_use(w.owner, w.project, "run webapps in it", store=store)
    with webapp_lock(w):
        w = records.get_webapp(w.key, store=store)
        if w.state in (WebappState.RUNNING, WebappState.UPDATING) and records.replicas_of(store, w):
            if not quiet:
                _log(f"webapp {w.key} is already running")
            return w
        check_webapp_quotas(w.project, w.id, w.owner, w.template_id, w.replicas, store)  # fail fast
        _remove_all(w, get_runtime(), store)
        plan = _plan(w.template_id, store)
        P.webapp_entrypoints(plan.state, w.template_id)
        build = _image(plan, quiet, store)
        with quota_lock():  # STARTING takes the places
            check_webapp_quotas(w.project, w.id, w.owner, w.template_id, w.replicas, store)
            w = records.update_webapp(store, w, state=WebappState.STARTING, message="starting")
        snapshot = _current_snapshot(w)
        number = w.generation + 1
        shutil.copyfile(snapshot, w.dir / "snapshots" / f"{number}.tar")
        return _run_generation(w, plan, build, w.dir / "snapshots" / f"{number}.tar", number, w.replicas,
                               timeout=timeout, quiet=quiet, store=store)


def _current_snapshot(w: Webapp):
    folder = w.dir / "snapshots"
    for number in range(w.generation, 0, -1):
        if (folder / f"{number}.tar").exists():
            return folder / f"{number}.tar"
    raise RuntimeFailure(f"webapp {w.key} has lost its snapshot (folder {folder}); publish it again")


def delete(who: Identity, ref: str, *, store: Store | None = None) -> None:
    """Remove the webapp: its replicas (drained first), its rows, snapshots and logs."""
    store = store or Store.default()
    w = records.get_webapp(ref, store=store)
    check_actor(who, w, "delete")
    with webapp_lock(w):
        _remove_all(w, get_runtime(), store)
        records.delete_webapp_row(store, w)
        shutil.rmtree(w.dir, ignore_errors=True)
    apply_gateway_quietly()


def delete_project_webapps(project: str, *, store: Store) -> list[str]:
    """Delete every webapp of ``project`` (``project delete --force``: the caller checked who may)."""
    ids = []
    for w in records.all_webapps(store):
        if w.project == project:
            with webapp_lock(w):
                _remove_all(w, get_runtime(), store)
                records.delete_webapp_row(store, w)
                shutil.rmtree(w.dir, ignore_errors=True)
            ids.append(w.key)
    if ids:
        apply_gateway_quietly()
    return ids
