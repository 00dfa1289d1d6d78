"""A webapp generation's pods: the pod set spec, its replicas, the snapshot push and the engine's probe.

Readiness is the engine's own HTTP probe of each replica at its own prefix:
``readiness_url`` with ``${baseUrl}`` expanded to that replica's
``/web-apps-backends/<project>/<webapp>_<pod>/<port>`` (the empty string for a
port served with ``proxied_subpath: /``), sent through the replica's guard
port with the guard secret, as for studios (:mod:`codestudio.runtime.readiness`).
A template whose probe is TCP, or on a port that is not launched in the
webapp, is probed with ``GET ${baseUrl}/`` on its first exposed webapp port.
"""

from __future__ import annotations

import time
from pathlib import Path

from codestudio.errors import RuntimeFailure, UsageError
from codestudio.runtime.base import ID_LABEL, KIND_LABEL, OWNER_LABEL, PROJECT_LABEL, PodSetSpec, Runtime
from codestudio.store import Store, now
from codestudio.webapps import records
from codestudio.webapps.generation import Generation, PortInfo
from codestudio.webapps.model import Replica, ReplicaState, Webapp, podset_name


def spec_of(w: Webapp, gen: Generation, replicas: int) -> PodSetSpec:
    """The pod set spec of generation ``gen`` with ``replicas`` pods."""
    from codestudio.render import GUARD_SECRET_KEY

    return PodSetSpec(name=gen.podset, manifest=gen.manifest, labels=labels(w), replicas=replicas,
                      secrets={_secret_name(w, gen): {GUARD_SECRET_KEY: gen.guard_secret}},
                      ports=tuple(gen.ports), workdir=w.dir)


def labels(w: Webapp) -> dict[str, str]:
    import re

    def value(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63].strip("-_.") or "x"

    return {KIND_LABEL: "webapp", ID_LABEL: value(w.id), PROJECT_LABEL: value(w.project), OWNER_LABEL: value(w.owner)}


def _context(w: Webapp, image: str, secret: str):
    from codestudio.render import StudioContext
    from codestudio.runtime.lifecycle import runtime_instance
    from codestudio.webapps.snapshot import SYNC_FLAG

    return StudioContext(instance=runtime_instance(), project_key=w.project, studio_id=w.id, owner=w.owner,
                         image=image, mode="webapp", webapp_id=w.id, session_secret=secret,
                         extra_env={"CODESTUDIO_WAIT_FOR_SYNC": SYNC_FLAG})


def _secret_name(w: Webapp, gen: Generation) -> str:
    from codestudio.render import guard_secret_name

    return guard_secret_name(_context(w, gen.image, gen.guard_secret), w.template_id)


def webapp_entrypoints(state, template_id: str) -> list:
    """The template's ``launch_in_webapp`` entrypoints; UsageError (exit 2) naming the others when none."""
    chosen = [ep for _, ep in state.entrypoints if ep.launch_in_webapp]
    if chosen:
        return chosen
    names = ", ".join(f"{ep.label!r}" + (f" (port {ep.port})" if ep.port else "") for _, ep in state.entrypoints)
    raise UsageError(f"template {template_id} has no entrypoint with launch_in_webapp: true, so it cannot be "
                     f"published as a webapp; its entrypoints: {names or 'none'}")


def prepare(w: Webapp, number: int, template, state, version: int, build, snapshot: Path) -> Generation:
    """The generation ``number`` of ``w`` from a planned template, its image and a snapshot."""
    from codestudio.gateway.config import new_session_secret
    from codestudio.render import kubernetes_manifest, probe_path
    from codestudio.runtime.lifecycle import runtime_instance
    from codestudio.webapps.snapshot import mapping_targets

    eps = webapp_entrypoints(state, template.id)
    ports = [PortInfo(ep.port, ep.proxied_subpath, ep.label, ep.expose_html) for ep in eps if ep.port]
    if not ports:
        raise UsageError(f"template {template.id}: its launch_in_webapp entrypoints serve no port")
    secret = new_session_secret()
    ctx = _context(w, build.image, secret)
    probe = state.effective_probe()
    served = {p.port for p in ports}
    if probe is not None and probe.kind == "http" and probe.port in served:
        port, path = probe.port, probe_path(state, ctx, template.id)
    else:
        first = next((p for p in ports if p.exposed), ports[0])
        base = "" if first.proxied_subpath == "/" else f"{w.backend_prefix}${{K8S_POD_NAME}}/{first.port}"
        port, path = first.port, base + "/"
    return Generation(
        number=number, podset=podset_name(w.project, w.id, number, runtime_instance()), image=build.image,
        image_id=getattr(build, "image_id", None), template_version=version, guard_secret=secret,
        ports=list(state.all_ports), webapp_ports=ports, probe_port=port, probe_path=path or "/",
        targets=mapping_targets(state), snapshot=str(snapshot),
        manifest=kubernetes_manifest(state, ctx, template.id),
    )


# --------------------------------------------------------------------------
# Replicas


def _row(w: Webapp, gen: Generation, pod) -> Replica:
    endpoints = {port: (e.host, e.port) for port, e in pod.endpoints.items()}
    return Replica(w.project, w.id, pod.name, gen.podset, gen.number, ReplicaState.STARTING, "starting", endpoints,
                   gen.guard_secret, now())


def _push(w: Webapp, gen: Generation, replica: Replica, runtime: Runtime, store: Store) -> None:
    from codestudio.webapps.snapshot import push

    try:
        push(Path(gen.snapshot), gen.targets, replica.pod, runtime)
    except RuntimeFailure as exc:
        records.set_replica(store, replica, ReplicaState.DEAD, str(exc)[:500])


def launch(w: Webapp, gen: Generation, replicas: int, runtime: Runtime, store: Store) -> list[Replica]:
    """Start the generation's pod set with ``replicas`` pods, record them STARTING, push the snapshot."""
    gen.save(w)
    podset = runtime.start(spec_of(w, gen, replicas))
    rows = [_row(w, gen, pod) for pod in podset.pods]
    for r in rows:
        records.put_replica(store, r)
    for r in rows:
        _push(w, gen, r, runtime, store)
    return rows


def rescale(w: Webapp, gen: Generation, replicas: int, runtime: Runtime, store: Store,
            remove: tuple[str, ...] = ()) -> list[Replica]:
    """Scale the generation's pod set to ``replicas`` (replacing stopped pods); the new replicas."""
    known = {r.pod: r for r in records.replicas_of(store, w, generation=gen.number)}
    podset = runtime.scale(gen.podset, replicas, remove=remove)
    current = {p.name for p in podset.pods}
    for pod, r in known.items():
        if pod not in current:
            records.drop_replica(store, r)
    new = [_row(w, gen, p) for p in podset.pods if p.name not in known]
    for r in new:
        records.put_replica(store, r)
    for r in new:
        _push(w, gen, r, runtime, store)
    return new


# --------------------------------------------------------------------------
# The engine's probe


def probe_target(gen: Generation, r: Replica):
    from codestudio.runtime.readiness import ProbeTarget

    host, port = r.endpoints[gen.probe_port]
    return ProbeTarget("http", host, port, gen.probe_for(r.pod), guard_secret=r.guard_secret)


def probe(gen: Generation, r: Replica, timeout: float = 2.0) -> tuple[bool, str]:
    from codestudio.runtime.readiness import probe_once

    target = probe_target(gen, r)
    ok, detail = probe_once(target, timeout=timeout)
    return ok, f"{target.describe().replace(f'http://{target.host}:{target.port}', '')}: {detail}"


def wait_ready(w: Webapp, gen: Generation, replicas: list[Replica], runtime: Runtime, store: Store, *,
               timeout: float, on_ready=None) -> list[Replica]:
    """Probe ``replicas`` until each passes, dies, or ``timeout`` passes; record each outcome.

    Replicas that pass become ``ready`` (``on_ready(replica)`` is called at
    once, so the gateway can route to it while the others come up); those
    still failing at the deadline become ``not-ready`` with the last probe
    result as their reason; those whose pod stopped become ``dead``.
    Returns the replicas that became ready.
    """
    from codestudio.runtime.readiness import FACTOR, FIRST_DELAY, MAX_DELAY

    pending = {r.pod: r for r in replicas if r.state == ReplicaState.STARTING}
    ready: list[Replica] = []
    deadline = time.monotonic() + timeout
    delay, next_alive = FIRST_DELAY, time.monotonic() + 2.0
    last: dict[str, str] = {}
    while pending:
        for pod, r in list(pending.items()):
            ok, detail = probe(gen, r, timeout=min(2.0, max(0.05, deadline - time.monotonic())))
            last[pod] = detail
            if ok:
                records.set_replica(store, r, ReplicaState.READY, None)
                ready.append(r)
                del pending[pod]
                if on_ready is not None:
                    on_ready(r)
        if not pending:
            break
        if time.monotonic() >= next_alive:
            alive = {p.name: p for p in runtime.pods(gen.podset)}
            for pod, r in list(pending.items()):
                p = alive.get(pod)
                if p is None or not p.running:
                    why = p.message if p is not None and p.message else "its pod is gone"
                    records.set_replica(store, r, ReplicaState.DEAD, f"{why} (probe: {last.get(pod)})"[:500])
                    del pending[pod]
            next_alive = time.monotonic() + 2.0
        if time.monotonic() >= deadline:
            for pod, r in pending.items():
                records.set_replica(store, r, ReplicaState.NOT_READY,
                                    f"probe never passed within {timeout:g}s; last: {last.get(pod)}"[:500])
            break
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * FACTOR, MAX_DELAY)
    return ready
