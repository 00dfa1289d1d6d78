"""Changing a running webapp without interrupting it: ``scale`` and the rolling ``update``.

``scale`` changes the replica count of the serving generation: new pods are
added with :meth:`Runtime.scale` and routed once their probe passes; pods
that go are drained first (lowest priority first: not ready, then the
newest), so the replicas that stay are never touched.

``update`` starts a new generation (the template as it is now, so a new
build if it changed, and a new snapshot) next to the old one and moves one
replica at a time: a new replica is started and must pass its probe (it is
then routed), and only then is one old replica drained and removed. If a
new replica never becomes ready, the update stops there: the new
generation is removed and the old replicas keep serving (exit 1).
"""

from __future__ import annotations

import shutil
import time

from codestudio.access import Identity, require_project_use
from codestudio.errors import RuntimeFailure, UsageError
from codestudio.runtime.current import get_runtime
from codestudio.runtime.limits import check_webapp_quotas, quota_lock
from codestudio.store import Store
from codestudio.webapps import lifecycle as L
from codestudio.webapps import pods as P
from codestudio.webapps import records
from codestudio.webapps.model import ReplicaState, Webapp, WebappState, check_replicas
from codestudio.webapps.lifecycle import apply_gateway, apply_gateway_quietly

#: Removal order when scaling down: replicas that serve nobody go first.
_REMOVE_FIRST = {ReplicaState.DEAD: 0, ReplicaState.NOT_READY: 1, ReplicaState.STARTING: 2, ReplicaState.READY: 3}


def _running(who: Identity, ref: str, what: str, store: Store) -> Webapp:
    w = records.get_webapp(ref, store=store)
    L.check_actor(who, w, what)
    if w.state not in (WebappState.RUNNING, WebappState.UPDATING) or not w.generation:
        raise UsageError(f"webapp {w.key} is {w.state}; start it first: codestudio webapp start {w.key}")
    return w


def _drain(w: Webapp, gen, victims, runtime, store: Store, keep: int) -> None:
    """Drain ``victims`` from the gateway, wait for requests in flight, then scale ``gen`` to ``keep`` without them."""
    for r in victims:
        records.set_replica(store, r, ReplicaState.DRAINING, "removing")
    apply_gateway()
    time.sleep(L.DRAIN_SECONDS)
    gone = {r.pod for r in victims}
    for r in victims:
        runtime.save_logs(r.pod, w.logs_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{r.pod}.log")
    # Never more than the pods still running: a scale down must not start a replacement.
    keep = min(keep, sum(1 for p in runtime.pods(gen.podset) if p.running and p.name not in gone))
    P.rescale(w, gen, keep, runtime, store, remove=tuple(gone))
    for r in victims:
        records.drop_replica(store, r)


def scale(who: Identity, ref: str, replicas: int, *, timeout: float = L.DEFAULT_TIMEOUT, quiet: bool = False,
          store: Store | None = None) -> Webapp:
    """Set the replica count; the replicas that stay keep serving throughout."""
    store = store or Store.default()
    check_replicas(replicas)
    w = _running(who, ref, "scale", store)
    runtime = get_runtime()
    with L.webapp_lock(w):
        w = records.get_webapp(w.key, store=store)
        gen = P.Generation.load(w, w.generation)
        if gen is None:
            raise RuntimeFailure(f"webapp {w.key}: generation {w.generation} is not recorded; restart it")
        rows = [r for r in records.replicas_of(store, w, generation=gen.number) if r.state != ReplicaState.DRAINING]
        with quota_lock():  # a scale up takes its new places in the same step as the check
            if replicas > w.replicas:
                check_webapp_quotas(w.project, w.id, w.owner, w.template_id, replicas, store, verb="scale")
            w = records.update_webapp(store, w, replicas=replicas, state=WebappState.UPDATING,
                                      message=f"scaling {len(rows)} -> {replicas}")
        try:
            if replicas > len(rows):
                new = P.rescale(w, gen, replicas, runtime, store)
                apply_gateway(start=True)
                ready = P.wait_ready(w, gen, new, runtime, store, timeout=timeout,
                                     on_ready=lambda r: apply_gateway_quietly())
                if not quiet:
                    L._log(f"webapp {w.key}: {len(ready)} of {len(new)} new replica(s) ready")
            elif replicas < len(rows):
                order = sorted(rows, key=lambda r: (_REMOVE_FIRST.get(r.state, 0), -r.since))
                _drain(w, gen, order[: len(rows) - replicas], runtime, store, replicas)
        finally:
            w = records.update_webapp(store, w, state=WebappState.RUNNING, message=None)
            apply_gateway_quietly()
    return w


def update(who: Identity, ref: str, *, from_studio: str | None = None, keep_snapshot: bool = False,
           timeout: float = L.DEFAULT_TIMEOUT, quiet: bool = False, store: Store | None = None) -> Webapp:
    """Roll the webapp onto a new generation, one replica at a time, each new one ready before an old one goes.

    The new generation runs the template's current version (built if
    needed) and a new snapshot: of ``from_studio`` if given (it becomes the
    webapp's source), else of the source studio it was published from,
    else the template's starter files; ``keep_snapshot`` reuses the
    current one (a new build only).
    """
    store = store or Store.default()
    w = _running(who, ref, "update", store)
    require_project_use(w.owner, w.project, "run webapps in it", store=store)
    if from_studio and keep_snapshot:
        raise UsageError("--from-studio and --keep-snapshot exclude each other")
    studio = L._source_studio(who, w.project, from_studio, store) if from_studio else None
    runtime = get_runtime()
    say = (lambda m: None) if quiet else L._log
    with L.webapp_lock(w):
        w = records.get_webapp(w.key, store=store)
        old = P.Generation.load(w, w.generation)
        if old is None:
            raise RuntimeFailure(f"webapp {w.key}: generation {w.generation} is not recorded; restart it")
        check_webapp_quotas(w.project, w.id, w.owner, w.template_id, w.replicas, store, verb="update")
        plan = L._plan(w.template_id, store)
        P.webapp_entrypoints(plan.state, w.template_id)
        number = w.generation + 1
        if studio is not None:
            w = records.update_webapp(store, w, source_studio=studio.id)
        if keep_snapshot:
            target = w.dir / "snapshots" / f"{number}.tar"
            shutil.copyfile(old.snapshot, target)
            commit = w.snapshot_commit
        else:
            snap = L.take_snapshot(who, w, plan, number, store, quiet=quiet)
            target, commit = snap.path, snap.commit
        build = L._image(plan, quiet, store)
        new = P.prepare(w, number, plan.template, plan.state, plan.version, build, target)
        w = records.update_webapp(store, w, state=WebappState.UPDATING, message=f"updating to generation {number}")
        say(f"updating webapp {w.key} to generation {number} ({build.image}"
            + (f", snapshot commit {commit}" if commit else "") + ")")
        try:
            _roll(w, old, new, runtime, store, timeout=timeout, say=say)
        except BaseException as exc:
            L._remove_generation(w, new, runtime, store)
            new.forget(w)
            target.unlink(missing_ok=True)
            records.update_webapp(store, w, state=WebappState.RUNNING,
                                  message=f"update to generation {number} abandoned: {str(exc)[:300]}")
            apply_gateway_quietly()
            raise
        L._remove_generation(w, old, runtime, store)  # nothing left in it by now but leftovers
        old.forget(w)
        w = records.update_webapp(store, w, generation=number, image=build.image, image_id=new.image_id,
                                  template_version=plan.version, snapshot_commit=commit, state=WebappState.RUNNING,
                                  message=None)
    apply_gateway_quietly()
    return w


def _roll(w: Webapp, old, new, runtime, store: Store, *, timeout: float, say) -> None:
    olds = sorted((r for r in records.replicas_of(store, w, generation=old.number) if r.state != ReplicaState.DRAINING),
                  key=lambda r: (_REMOVE_FIRST.get(r.state, 0), r.since))
    count = max(w.replicas, 1)
    for step in range(1, count + 1):
        fresh = P.launch(w, new, 1, runtime, store) if step == 1 else P.rescale(w, new, step, runtime, store)
        apply_gateway()
        ready = P.wait_ready(w, new, fresh, runtime, store, timeout=timeout)
        if not ready:
            reasons = "; ".join(f"{r.pod}: {r.reason}" for r in records.replicas_of(store, w, generation=new.number))
            raise RuntimeFailure(f"webapp {w.key}: a new replica did not become ready ({reasons}); the old "
                                 f"replicas keep serving")
        apply_gateway()  # routed before any old one goes
        say(f"  replica {ready[0].pod} ready ({step}/{count})")
        if olds:
            victim = olds.pop(0)
            _drain(w, old, [victim], runtime, store, len(olds))
            say(f"  replica {victim.pod} removed")
    if olds:
        _drain(w, old, olds, runtime, store, 0)
