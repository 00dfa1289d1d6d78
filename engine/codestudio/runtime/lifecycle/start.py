"""Starting a studio: image, pod, routes, file push and readiness; FAILED (pod removed, logs kept) when it never comes."""

from __future__ import annotations

import re
import threading
import time

from codestudio.access import Identity, require_project_use
from codestudio.errors import RuntimeFailure, UsageError
from codestudio.runtime.base import ID_LABEL, KIND_LABEL, OWNER_LABEL, PROJECT_LABEL, PodSetSpec, Runtime
from codestudio.runtime.current import get_runtime
from codestudio.runtime.lifecycle import plans
from codestudio.runtime.lifecycle.common import (
    check_actor,
    log_message,
    pod_set_name,
    remove_pods,
    runtime_instance,
    studio_lock,
)
from codestudio.runtime.lifecycle.plans import member_mappings, plan_studio, report_summary, sync_studio_of, transport_of
from codestudio.runtime.lifecycle.reconcile import reconcile_locked
from codestudio.runtime.lifecycle.stop import stop_locked, stop_studio
from codestudio.runtime.model import FAILED, RUNNING, STARTING, Studio
from codestudio.runtime.records import get_studio, set_state
from codestudio.runtime.routes import apply_gateway, apply_gateway_quietly, save_routes
from codestudio.store import Store, now

DEFAULT_TIMEOUT = 300.0
#: Flag file the runner waits for before starting entrypoints (created after the file push).
SYNC_FLAG = "/tmp/.codestudio-sync-done"


class NotReady(RuntimeFailure):
    pass


def start_studio(who: Identity, ref: str, *, timeout: float = DEFAULT_TIMEOUT, quiet: bool = False,
                 store: Store | None = None) -> Studio:
    """Start a studio and wait for readiness; returns it RUNNING (raises RuntimeFailure when FAILED)."""
    store = store or Store.default()
    studio = get_studio(ref, store=store)
    check_actor(who, studio, "start")
    # A revoked owner's studio cannot be started again (issue 9 item 3).
    require_project_use(studio.owner, studio.project, "start studios in it", store=store)
    if timeout <= 0:
        raise UsageError("--timeout must be positive")
    runtime = get_runtime()
    with studio_lock(studio.id):
        studio = get_studio(studio.id, store=store)
        pods = runtime.pods(pod_set_name(studio))
        studio, fixed = reconcile_locked(studio, runtime, store, pods=pods, raise_unsaved=True)
        if fixed and not quiet:
            log_message(f"note: {fixed}")
        if studio.state == RUNNING:
            # Running: make sure the gateway serves it (it may have been killed).
            apply_gateway(start=True)
            if not quiet:
                log_message(f"studio {studio.id} is already running")
            return studio
        from codestudio.runtime.limits import check_quotas

        check_quotas(studio, store)  # fail fast, before an image build; checked again before STARTING
        # Reconciliation that fixed nothing left the pods as listed (one runtime call less).
        leftover = runtime.pods(pod_set_name(studio)) if fixed else pods
        if leftover:
            # FAILED, or a stopped studio whose pod was left behind: stopped by the stop's
            # rules, so its files are pulled or saved (even from a dead container), never dropped.
            stop_locked(studio, runtime, store, say=(lambda m: None) if quiet else log_message, reason="leftover")
        return _start_locked(get_studio(studio.id, store=store), runtime, timeout=timeout, quiet=quiet, store=store)


def _start_locked(studio: Studio, runtime: Runtime, *, timeout: float, quiet: bool, store: Store) -> Studio:
    from codestudio.gateway.config import new_session_secret
    from codestudio.render import GUARD_SECRET_KEY, StudioContext, kube_name, kubernetes_manifest, probe_path, studio_routes

    say = (lambda m: None) if quiet else log_message
    plan = plan_studio(studio, store)
    state = plan.state
    shortfall = state.memory_shortfall()
    if shortfall:
        raise UsageError(f"{plan.template.path}: {shortfall}: studio {studio.id} would be killed for memory; "
                         "raise the limit in the template")
    build = plans.ensure_image(plan, quiet=quiet, store=store)  # looked up when called: tests replace it
    secret = new_session_secret()
    sync_studio, _ = member_mappings(studio, sync_studio_of(studio, state), store)
    ctx = StudioContext(
        instance=runtime_instance(),
        project_key=studio.project,
        studio_id=studio.id,
        owner=studio.owner,
        image=build.image,
        session_secret=secret,
        extra_env={"CODESTUDIO_WAIT_FOR_SYNC": SYNC_FLAG} if sync_studio.mappings else {},
    )
    name = pod_set_name(studio)
    routes = studio_routes(state, ctx, plan.template.id)
    spec = PodSetSpec(
        name=name,
        manifest=kubernetes_manifest(state, ctx, plan.template.id),
        labels=_labels(studio),
        replicas=1,
        # The guard in the pod requires this per-start secret on every connection (docs/runner.md).
        secrets={f"{kube_name(studio.project, studio.id, runtime_instance())}-guard": {GUARD_SECRET_KEY: routes.guard_secret}},
        ports=tuple(state.all_ports),
        workdir=studio.dir,
    )
    save_routes(studio, routes)
    from codestudio.runtime.limits import check_quotas, quota_lock

    with quota_lock():  # the check and taking the place are one step: two starts never share the last one
        check_quotas(studio, store)
        set_state(store, studio.id, STARTING, "starting", ports={}, token=secret, image=build.image,
                  image_id=build.image_id, template_version=plan.version, started_at=now(), last_activity=None,
                  activity_source=None, stop_reason=None)
    started = time.monotonic()
    try:
        say(f"starting studio {studio.id} ({build.image})")
        pod = runtime.start(spec).pods[0]
        host_ports = {port: e.port for port, e in pod.endpoints.items()}
        hosts = {e.host for e in pod.endpoints.values()}
        if len(hosts) == 1 and hosts != {"127.0.0.1"}:  # e.g. a Service address (kubernetes, in-cluster)
            save_routes(studio, routes, upstream_host=hosts.pop())
        set_state(store, studio.id, STARTING, "starting", ports=host_ports, token=secret)
        # The gateway reload (a few tenths of a second, more when many studios start) runs
        # while files are pushed and the studio boots: it only has to be live before RUNNING.
        routing = _Background(apply_gateway, start=True)
        try:
            if sync_studio.mappings:
                _push_files(pod.name, sync_studio, runtime, say)
            probe = state.effective_probe()
            if probe is not None:
                from codestudio.runtime.readiness import ProbeTarget, wait_ready

                path = probe_path(state, ctx, plan.template.id) if probe.kind == "http" else None
                endpoint = pod.endpoints[probe.port]
                target = ProbeTarget(probe.kind, endpoint.host, endpoint.port, path, guard_secret=routes.guard_secret)
                say(f"waiting up to {timeout:g}s for readiness ({target.describe()})")
                remaining = max(0.1, timeout - (time.monotonic() - started))
                ok, detail = wait_ready(target, remaining, alive=lambda: runtime.running(name))
                if not ok:
                    # The runtime may know why in words (Kubernetes: CrashLoopBackOff, an image pull).
                    why = next((p.message for p in runtime.pods(name) if not p.running and p.message), None)
                    detail = f"{why} (last probe: {detail})" if why else detail
                    raise NotReady(f"studio {studio.id} did not become ready within {timeout:g}s: {detail}")
                # Kubernetes: the Deployment's rollout too. (Runtimes registered as virtual subclasses may lack it.)
                wait_rollout = getattr(runtime, "wait_rollout", None)
                if wait_rollout is not None:
                    wait_rollout(name, timeout=max(0.1, timeout - (time.monotonic() - started)))
        except BaseException:
            routing.wait()  # never left running behind the failure, which is the one reported
            raise
        routing.result()
        set_state(store, studio.id, RUNNING, None)
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # Routes go before the pod: a freed port must never still be routed to.
        set_state(store, studio.id, FAILED, reason[:500], ports={}, token=None)
        apply_gateway_quietly()
        saved = remove_pods(studio, "failed", runtime)
        if isinstance(exc, KeyboardInterrupt):
            raise
        where = f"\nlogs kept in {saved}" if saved else ""
        if isinstance(exc, NotReady):
            raise RuntimeFailure(f"{exc}; the studio was stopped and marked FAILED{where}") from None
        raise RuntimeFailure(f"studio {studio.id} failed to start: {exc}{where}") from exc
    return get_studio(studio.id, store=store)


class _Background:
    """``fn(**kwargs)`` in a thread; :meth:`result` waits and raises what it raised."""

    def __init__(self, fn, **kwargs):
        self._error: BaseException | None = None

        def run() -> None:
            try:
                fn(**kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                self._error = exc

        self._thread = threading.Thread(target=run, name=f"codestudio-{fn.__name__}", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> None:
        self.wait()
        if self._error is not None:
            raise self._error


def _push_files(pod: str, sync_studio, runtime: Runtime, say) -> None:
    from codestudio.sync import SyncConflictError, push_on_start

    try:
        report = push_on_start(sync_studio, transport_of(pod, runtime))
        say(f"files pushed ({report_summary(report)})")
    except SyncConflictError as exc:
        say(f"warning: {exc}")
    result = runtime.run(pod, ["touch", SYNC_FLAG])
    if result.returncode != 0:
        raise RuntimeFailure(f"could not release the runner after the file push: {result.stderr.strip()}")


def restart_studio(who: Identity, ref: str, *, timeout: float = DEFAULT_TIMEOUT, quiet: bool = False,
                   store: Store | None = None) -> Studio:
    stop_studio(who, ref, quiet=quiet, store=store)
    return start_studio(who, ref, timeout=timeout, quiet=quiet, store=store)


def _labels(studio: Studio) -> dict[str, str]:
    def value(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63].strip("-_.") or "x"

    return {KIND_LABEL: "studio", ID_LABEL: value(studio.id), PROJECT_LABEL: value(studio.project),
            OWNER_LABEL: value(studio.owner)}
