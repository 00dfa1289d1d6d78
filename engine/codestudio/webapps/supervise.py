"""Keeping webapps true to their definition: :func:`reconcile` one, :func:`supervise` them all in a loop.

What a reconcile of a webapp does (when no command holds its lock):

- a replica whose pod stopped or is gone becomes ``dead`` and is unrouted
  at once; the serving generation is then scaled back to the webapp's
  replica count (:meth:`Runtime.scale` replaces stopped pods), and the
  replacement gets the generation's snapshot and is probed like any new
  replica;
- every other replica is probed once: a ``ready`` one that fails
  :data:`FAILURES` probes in a row becomes ``not-ready`` (unrouted) with
  the probe's answer as its reason; a ``starting`` or ``not-ready`` one
  that passes becomes ``ready``;
- a command that was killed is finished: an interrupted stop is completed,
  a generation an interrupted update left behind is removed.

Who calls it: every ``codestudio webapp`` command that reads a webapp
(``list``, ``status``, ``url``, ``logs``...), the web server's supervisor
thread (``codestudio server`` runs :func:`supervise` while it serves), and
``codestudio webapp supervise``, the same loop in the foreground for data
dirs served without the web server. Podman itself restarts an entrypoint's container
per the pod's restart policy; the runner restarts crashed entrypoints
inside a container.
"""

from __future__ import annotations

import time

from codestudio.locks import is_locked
from codestudio.runtime.current import get_runtime
from codestudio.store import Store
from codestudio.webapps import lifecycle as L
from codestudio.webapps import pods as P
from codestudio.webapps import records
from codestudio.webapps.model import ReplicaState, Webapp, WebappState
from codestudio.webapps.lifecycle import apply_gateway_quietly

#: Probes a ready replica must fail in a row before it is unrouted (as Kubernetes' failureThreshold).
FAILURES = 3
#: Seconds a replica may stay ``starting`` before the supervisor reports it ``not-ready``.
START_GRACE = L.DEFAULT_TIMEOUT


def reconcile(w: Webapp, *, store: Store, runtime=None) -> Webapp:
    """Make ``w``'s replicas match its definition (see the module docstring); return it as now stored."""
    if w.state in (WebappState.STOPPED, WebappState.FAILED) and not records.replicas_of(store, w):
        return w
    if is_locked(L.lock_path(w)):
        return w  # a live command is changing it
    runtime = runtime or get_runtime()
    with L.webapp_lock(w):
        w = records.get_webapp(w.key, store=store)
        changed = _finish_interrupted(w, runtime, store)
        w = records.get_webapp(w.key, store=store)
        if w.state == WebappState.RUNNING and w.generation:
            gen = P.Generation.load(w, w.generation)
            if gen is not None:
                changed |= _heal(w, gen, runtime, store)
                changed |= _probe_all(w, gen, store)
    if changed:
        apply_gateway_quietly()
    return records.get_webapp(w.key, store=store)


def _finish_interrupted(w: Webapp, runtime, store: Store) -> bool:
    if w.state == WebappState.STOPPING:
        L._remove_all(w, runtime, store)
        records.update_webapp(store, w, state=WebappState.STOPPED,
                              message="an interrupted stop was finished")
        return True
    if w.state in (WebappState.STARTING, WebappState.UPDATING):
        # The command was killed: drop what it was adding (generations past the serving one).
        for number in sorted({r.generation for r in records.replicas_of(store, w)} | {w.generation + 1}):
            if number > w.generation:
                gen = P.Generation.load(w, number)
                if gen is not None:
                    L._remove_generation(w, gen, runtime, store)
                    gen.forget(w)
        alive = records.replicas_of(store, w, generation=w.generation)
        state = WebappState.RUNNING if alive else WebappState.FAILED
        records.update_webapp(store, w, state=state, message=f"an interrupted {w.state.lower()} was undone")
        return True
    return False


def _heal(w: Webapp, gen, runtime, store: Store) -> bool:
    """Mark replicas whose pod stopped ``dead``, unroute them, and scale back to the replica count."""
    pods = {p.name: p for p in runtime.pods(gen.podset)}
    rows = [r for r in records.replicas_of(store, w, generation=gen.number) if r.state != ReplicaState.DRAINING]
    dead = []
    for r in rows:
        p = pods.get(r.pod)
        if p is None or not p.running:
            if r.state != ReplicaState.DEAD:
                why = p.message if p is not None and p.message else "its pod is gone"
                records.set_replica(store, r, ReplicaState.DEAD, why[:500])
            dead.append(r)
    if dead:
        apply_gateway_quietly()  # off the gateway before anything else
    running = len(rows) - len(dead)
    if not dead and running >= w.replicas:
        return False
    for r in dead:
        if r.pod in pods:
            runtime.save_logs(r.pod, w.logs_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{r.pod}-died.log")
    new = P.rescale(w, gen, w.replicas, runtime, store, remove=tuple(r.pod for r in dead))
    for r in dead:
        records.drop_replica(store, r)
    if new:
        L._log(f"webapp {w.key}: replaced {len(dead)} stopped replica(s) with {', '.join(r.pod for r in new)}")
    return True


def _probe_all(w: Webapp, gen, store: Store) -> bool:
    changed = False
    for r in records.replicas_of(store, w, generation=gen.number):
        if r.state in (ReplicaState.DRAINING, ReplicaState.DEAD):
            continue
        ok, detail = P.probe(gen, r)
        if r.state == ReplicaState.READY and not ok:
            for _ in range(FAILURES - 1):
                time.sleep(0.2)
                ok, detail = P.probe(gen, r)
                if ok:
                    break
            if not ok:
                records.set_replica(store, r, ReplicaState.NOT_READY, f"probe failed: {detail}"[:500])
                changed = True
        elif r.state != ReplicaState.READY and ok:
            records.set_replica(store, r, ReplicaState.READY, None)
            changed = True
        elif r.state == ReplicaState.STARTING and time.time() - r.since > START_GRACE:
            records.set_replica(store, r, ReplicaState.NOT_READY,
                                f"probe never passed within {START_GRACE:g}s; last: {detail}"[:500])
        elif r.state == ReplicaState.NOT_READY and not ok and not (r.reason or "").startswith("probe never"):
            records.set_replica(store, r, ReplicaState.NOT_READY, f"probe failed: {detail}"[:500])
    return changed


def reconcile_all(store: Store, runtime=None) -> list[Webapp]:
    runtime = runtime or get_runtime()
    return [reconcile(w, store=store, runtime=runtime) for w in records.all_webapps(store)]


def supervise(*, interval: float = 5.0, once: bool = False, stop=None, store: Store | None = None) -> None:
    """Reconcile every webapp every ``interval`` seconds until interrupted, ``stop`` (an Event) is set, or ``once``."""
    import threading

    store = store or Store.default()
    stop = stop or threading.Event()
    while not stop.is_set():
        started = time.monotonic()
        try:
            reconcile_all(store)
        except Exception as exc:  # noqa: BLE001 - a loop that must keep going; say what failed
            L._log(f"webapp supervisor: {type(exc).__name__}: {exc}")
        if once:
            return
        stop.wait(max(0.0, interval - (time.monotonic() - started)))
