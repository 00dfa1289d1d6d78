"""The studio lifecycle over the runtime interface: create, start, stop, restart, delete, reconcile.

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

import json
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from codestudio.access import Identity, check_name, may_use_project, require_project_use, require_template_use
from codestudio.errors import NotFound, PermissionDenied, RuntimeFailure, UsageError
from codestudio.locks import file_lock, is_locked
from codestudio.runtime.base import ID_LABEL, KIND_LABEL, OWNER_LABEL, PROJECT_LABEL, PodSetSpec, Runtime
from codestudio.runtime.current import get_runtime
from codestudio.runtime.model import FAILED, RUNNING, STARTING, STOPPED, STOPPING, Studio
from codestudio.runtime.records import all_studios, delete_record, get_studio, set_state
from codestudio.runtime.routes import apply_gateway, apply_gateway_quietly, save_routes
from codestudio.store import Store, now
from codestudio.types import PROJECT_KEY_RE, SLUG_RE, STUDIO_HOME, STUDIO_USER

DEFAULT_TIMEOUT = 300.0
#: Flag file the runner waits for before starting entrypoints (created after the file push).
SYNC_FLAG = "/tmp/.codestudio-sync-done"


def runtime_instance() -> str:
    """What makes this data dir's pods distinct from another data dir's on the same host."""
    from codestudio.home import data_dir

    return str(data_dir())


def pod_set_name(studio: Studio) -> str:
    """The name of the studio's pod set (its Deployment): unique per studio and data dir."""
    from codestudio.render import kube_name

    return kube_name(studio.project, studio.id, runtime_instance())


def studio_pod(studio: Studio, runtime: Runtime | None = None) -> str | None:
    """The name of the studio's pod if one exists (running or not)."""
    pods = (runtime or get_runtime()).pods(pod_set_name(studio))
    return pods[0].name if pods else None


def _log(msg: str) -> None:
    from codestudio.text import printable

    # Messages carry names from studios (synced file names): escape control characters.
    print(printable(msg, keep="\n\t"), file=sys.stderr, flush=True)


def lock_path(studio_id: str) -> Path:
    from codestudio.home import data_dir

    return data_dir() / "locks" / f"studio-{studio_id}.lock"


@contextmanager
def studio_lock(studio_id: str) -> Iterator[None]:
    with file_lock(lock_path(studio_id),
                   waiting=lambda: _log(f"waiting for another command on studio {studio_id} to finish")):
        yield


def check_actor(who: Identity, studio: Studio, what: str) -> None:
    if who.name != studio.owner and not who.is_admin:
        raise PermissionDenied(f"studio {studio.id} belongs to {studio.owner}; {who.name} may not {what} it")


# --------------------------------------------------------------------------
# Create


def _slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:50].strip("-")
    return slug or "studio"


def create_studio(who: Identity, project: str, name: str, template_id: str, *, owner: str | None = None,
                  store: Store | None = None) -> Studio:
    """Create a studio (STOPPED) and write its starter files; return it."""
    from codestudio.templates_store import get_template

    store = store or Store.default()
    if not PROJECT_KEY_RE.match(project):
        raise UsageError(f"invalid project key {project!r}: letters, digits, '_' and '-', "
                         "starting with a letter or digit, at most 63 characters")
    if not name or len(name) > 100 or any(ord(c) < 32 for c in name):
        raise UsageError(f"invalid studio name {name!r}: 1-100 printable characters")
    owner = owner or who.name
    check_name("user", owner)
    if owner != who.name and not who.is_admin:
        raise PermissionDenied(f"only admins may create studios for another user ({owner})")
    stored = get_template(template_id, store=store)
    owner_identity = Identity(owner, who.is_admin if owner == who.name else False, who.os_user)
    if owner != who.name:
        from codestudio.access import is_admin

        owner_identity = Identity(owner, is_admin(owner, store=store), who.os_user)
    require_template_use(owner_identity, template_id, store=store)
    # Projects (issue 9 item 3): the owner must be a member (or a codestudio admin).
    require_project_use(owner, project, "create studios in it", admin=owner_identity.is_admin, store=store)
    # Plan first: a template that no longer renders must not leave a half-created studio.
    from codestudio.plan import plan_template

    _template, state = plan_template(stored.path)
    base = _slugify(name)
    with store.connect() as conn:
        if conn.execute("SELECT 1 FROM studios WHERE project = ? AND name = ?", (project, name)).fetchone():
            raise UsageError(f"project {project} already has a studio named {name!r}")
        if conn.execute("SELECT 1 FROM projects WHERE key = ?", (project,)).fetchone() is None:
            raise UsageError(f"project {project} was deleted meanwhile")
        studio_id, n = base, 2
        while (conn.execute("SELECT 1 FROM studios WHERE id = ?", (studio_id,)).fetchone()
               or _leftover_folders(project, studio_id)):
            studio_id = f"{base[:56]}-{n}"
            n += 1
        if not SLUG_RE.match(studio_id):
            raise UsageError(f"cannot make a studio id from {name!r}")
        t = now()
        conn.execute(
            "INSERT INTO studios (id, project, name, owner, template_id, template_version, state, state_since, "
            "ports, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '{}', ?)",
            (studio_id, project, name, owner, template_id, stored.version, STOPPED, t, t),
        )
    try:
        files = [f for _, f in state.starter_files]
        if files:
            from codestudio.sync import write_starter_files

            write_starter_files(files, studio_id=studio_id, project_key=project, user=owner)
    except BaseException:
        delete_record(store, studio_id)
        raise
    return get_studio(studio_id, store=store)


def _leftover_folders(project: str, studio_id: str) -> bool:
    """Whether a deleted studio left files under this id (recovery folder, kept zones): never reuse them."""
    from codestudio.home import data_dir

    home = data_dir()
    return (home / "studios" / studio_id).exists() or (home / "zones" / "projects" / project / "studios" / studio_id).exists()


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


# --------------------------------------------------------------------------
# Plans, images, sync wiring


@dataclass
class Plan:
    template: object
    state: object
    version: int


def plan_studio(studio: Studio, store: Store) -> Plan:
    """The studio's template (its latest stored version) applied: raises NotFound if removed."""
    from codestudio.plan import plan_template
    from codestudio.templates_store import get_template

    stored = get_template(studio.template_id, store=store)
    template, state = plan_template(stored.path)
    return Plan(template, state, stored.version)


def sync_studio_of(studio: Studio, state):
    from codestudio.sync import SyncStudio, mappings_for

    mappings, exclusions = mappings_for(state)
    return SyncStudio(studio.id, studio.project, studio.owner, tuple(mappings), tuple(exclusions))


def member_mappings(studio: Studio, sync_studio, store: Store):
    """(the sync studio without project-zone mappings its owner may not sync now, the mappings left out).

    Membership is checked at every sync, not only at start: a studio whose owner
    was revoked from the project keeps running, but never reads or writes the
    project's zones again (issue 9 item 3).
    """
    import dataclasses

    from codestudio.types import zone_scope

    if may_use_project(studio.owner, studio.project, store=store):
        return sync_studio, []
    denied = [m for m in sync_studio.mappings if zone_scope(m.zone) == "project"]
    kept = tuple(m for m in sync_studio.mappings if zone_scope(m.zone) != "project")
    return dataclasses.replace(sync_studio, mappings=kept), denied


def transport_of(pod: str, runtime: Runtime):
    """The sync transport of a studio's pod: the agent through :meth:`Runtime.exec`."""
    from codestudio.sync import ExecTransport

    return ExecTransport(runtime, pod, user=STUDIO_USER)


def _ensure_image(plan: Plan, *, quiet: bool, store: Store):
    """Build (or find up to date) the image of the template's current version."""
    from codestudio.images import build_rendered
    from codestudio.render import render_state

    rendered = render_state(plan.template, plan.state)
    return build_rendered(rendered, template_version=plan.version, quiet=quiet, store=store)


def report_summary(report) -> str:
    try:
        d = report.to_dict()
    except Exception:  # noqa: BLE001
        return "done"
    if isinstance(d, dict):
        keys = [k for k in ("pushed", "pulled", "deleted", "conflicts") if k in d]
        if keys:
            return ", ".join(f"{k} {d[k] if not isinstance(d[k], list) else len(d[k])}" for k in keys)
    return "done"


# --------------------------------------------------------------------------
# Pods


def _save_logs(studio: Studio, pod: str, reason: str, runtime: Runtime) -> Path | None:
    target = studio.logs_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{reason}.log"
    return target if runtime.save_logs(pod, target) else None


def remove_pods(studio: Studio, reason: str, runtime: Runtime, *, pods=None) -> Path | None:
    """Save the logs of the studio's pods (if any), then remove them; the saved log file or None.

    ``pods``: the studio's pods if the caller just listed them (one runtime call less).
    """
    name = pod_set_name(studio)
    saved = None
    for pod in runtime.pods(name) if pods is None else pods:
        saved = _save_logs(studio, pod.name, reason, runtime) or saved
    runtime.stop(name)
    return saved


def _labels(studio: Studio) -> dict[str, str]:
    def value(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63].strip("-_.") or "x"

    return {KIND_LABEL: "studio", ID_LABEL: value(studio.id), PROJECT_LABEL: value(studio.project),
            OWNER_LABEL: value(studio.owner)}


# --------------------------------------------------------------------------
# Reconciliation


def _lost_edits(studio: Studio) -> str:
    return "edits made in the studio since its last sync were not pulled back and are lost"


def _reconcile_locked(studio: Studio, runtime: Runtime, store: Store, *, pods=None,
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
            _stop_locked(studio, runtime, store, say=lambda m: None, reason=reason)
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
        return _reconcile_locked(fresh, runtime, store, pods=pods)[0]


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


# --------------------------------------------------------------------------
# Start


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
        studio, fixed = _reconcile_locked(studio, runtime, store, pods=pods, raise_unsaved=True)
        if fixed and not quiet:
            _log(f"note: {fixed}")
        if studio.state == RUNNING:
            # Running: make sure the gateway serves it (it may have been killed).
            apply_gateway(start=True)
            if not quiet:
                _log(f"studio {studio.id} is already running")
            return studio
        from codestudio.runtime.limits import check_quotas

        check_quotas(studio, store)  # fail fast, before an image build; checked again before STARTING
        # Reconciliation that fixed nothing left the pods as listed (one runtime call less).
        leftover = runtime.pods(pod_set_name(studio)) if fixed else pods
        if leftover:
            # FAILED, or a stopped studio whose pod was left behind: stopped by the stop's
            # rules, so its files are pulled or saved (even from a dead container), never dropped.
            _stop_locked(studio, runtime, store, say=(lambda m: None) if quiet else _log, reason="leftover")
        return _start_locked(get_studio(studio.id, store=store), runtime, timeout=timeout, quiet=quiet, store=store)


def _start_locked(studio: Studio, runtime: Runtime, *, timeout: float, quiet: bool, store: Store) -> Studio:
    from codestudio.gateway.config import new_session_secret
    from codestudio.render import GUARD_SECRET_KEY, StudioContext, kube_name, kubernetes_manifest, probe_path, studio_routes

    say = (lambda m: None) if quiet else _log
    plan = plan_studio(studio, store)
    state = plan.state
    shortfall = state.memory_shortfall()
    if shortfall:
        raise UsageError(f"{plan.template.path}: {shortfall}: studio {studio.id} would be killed for memory; "
                         "raise the limit in the template")
    build = _ensure_image(plan, quiet=quiet, store=store)
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


# --------------------------------------------------------------------------
# Stop, restart, delete


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
    return _stop(studio.id, force=force, quiet=quiet, store=store)


class _Unsaved(RuntimeFailure):
    """The studio's files could be neither pulled nor saved: its pod must stay."""


def _stop(studio_id: str, *, force: bool, quiet: bool, store: Store) -> Studio:
    say = (lambda m: None) if quiet else _log
    runtime = get_runtime()
    with studio_lock(studio_id):
        studio = get_studio(studio_id, store=store)
        if studio.state == STOPPED and not runtime.pods(pod_set_name(studio)):
            say(f"studio {studio.id} is not running")
            return studio
        _stop_locked(studio, runtime, store, say=say, force=force)
    return get_studio(studio_id, store=store)


def _stop_locked(studio: Studio, runtime: Runtime, store: Store, *, say, force: bool = False,
                 reason: str = "stopped") -> None:
    """Pull or save the files of a running pod, then remove it (the caller holds the studio lock)."""
    pods = runtime.pods(pod_set_name(studio))
    running = bool(pods) and pods[0].running
    set_state(store, studio.id, STOPPING, "stopping", ports=studio.ports, token=studio.token)
    apply_gateway(start=False)  # STOPPING is not routed: drop the routes before the ports are freed
    note = None
    try:
        if running:
            note = _pull_or_save(studio, pods[0].name, runtime, store, say)
        elif pods:
            # It died (a crash, a reboot): its files are still in its stopped container.
            note = _save_stopped(studio, pods[0].name, runtime, store, say)
    except _Unsaved as exc:
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


def _pull_or_save(studio: Studio, pod: str, runtime: Runtime, store: Store, say) -> str | None:
    """Pull the running studio's files into their zones, or save them to its recovery folder.

    Returns a note for the studio's message (None when all went well);
    raises :class:`_Unsaved` when the files could be neither pulled nor saved.
    """
    from codestudio.errors import CodestudioError
    from codestudio.sync import SyncConflictError, pull_on_stop

    problem, unsaved, notes = None, [], []
    try:
        plan = plan_studio(studio, store)
    except CodestudioError as exc:  # template removed or no longer planning: its mappings are unknown
        problem, unsaved = f"its template cannot be read ({_first_line(exc)}), so its files were not pulled", [STUDIO_HOME]
    else:
        sync_studio, denied = member_mappings(studio, sync_studio_of(studio, plan.state), store)
        if denied:
            # A revoked owner's files may not go into the project's zones: keep them aside instead.
            unsaved += [m.target for m in denied if not m.one_way]  # one-way targets are never pulled
            notes.append(f"{studio.owner} is no longer a member of project {studio.project}, so "
                         f"{', '.join(sorted({m.zone for m in denied}))} were not pulled")
        if sync_studio.mappings:
            try:
                report = pull_on_stop(sync_studio, transport_of(pod, runtime))
                say(f"files pulled ({report_summary(report)})")
            except SyncConflictError as exc:  # both versions are kept on the server: nothing is lost
                notes.append(f"file pull: {exc}")
                say(f"warning: file pull: {exc}")
            except Exception as exc:  # noqa: BLE001 - any other failure: the studio holds the only copy
                problem = f"the file pull failed ({_first_line(exc)})"
                unsaved += [m.target for m in sync_studio.mappings if not m.one_way]
    if problem:
        notes.insert(0, problem)
    if not unsaved:
        return "; ".join(notes) or None
    why = "; ".join(notes)
    try:
        saved = _save_recovery(studio, pod, runtime, unsaved, why)
    except Exception as exc:  # noqa: BLE001
        raise _Unsaved(f"{why}, and saving its files to a recovery folder failed too ({_first_line(exc)})") from None
    note = f"{why}; its files ({', '.join(_outermost(unsaved))}) were saved to {saved} before its pod was removed"
    say(f"warning: {note}")
    return note


def _save_stopped(studio: Studio, pod: str, runtime: Runtime, store: Store, say) -> str | None:
    """Save the two-way mapping targets out of a container that is no longer running (:meth:`Runtime.copy_out`)."""
    from codestudio.errors import CodestudioError

    try:
        targets = [m.target for m in sync_studio_of(studio, plan_studio(studio, store).state).mappings if not m.one_way]
    except CodestudioError:
        targets = [STUDIO_HOME]
    if not targets:
        return None
    why = "its container was no longer running, so its files could not be pulled"
    try:
        saved = _save_recovery(studio, pod, runtime, targets, why, running=False)
    except Exception as exc:  # noqa: BLE001
        raise _Unsaved(f"{why}, and saving them from the stopped container failed ({_first_line(exc)})") from None
    note = f"{why}; its files ({', '.join(_outermost(targets))}) were saved to {saved} before its pod was removed"
    say(f"warning: {note}")
    return note


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _outermost(paths: list[str]) -> list[str]:
    """Container paths without those inside another of them (each archived once)."""
    out: list[str] = []
    for p in sorted({p.rstrip("/") or "/" for p in paths}):
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


#: Archives the targets that exist (relative to /) to stdout; nothing to archive is not an error.
_RECOVERY_SCRIPT = (
    'cd / || exit 1; for t do shift; if [ -e "$t" ] || [ -L "$t" ]; then set -- "$@" "$t"; fi; done; '
    '[ "$#" -gt 0 ] || exit 0; exec tar -cf - "$@"'
)


def _save_recovery(studio: Studio, pod: str, runtime: Runtime, targets: list[str], why: str, *,
                   running: bool = True) -> Path:
    """Tar ``targets`` out of the pod into ``<studio dir>/recovery/<UTC>/``.

    A running pod: one ``files.tar`` (paths relative to ``/`` inside the
    studio) made by ``tar`` through :meth:`Runtime.exec`. A stopped container:
    one ``files-<n>.tar`` per target made by :meth:`Runtime.copy_out` (targets
    that do not exist are skipped). ``recovery.json`` says why, what and when.
    Only the engine's OS user can read it (0700). Raises when saving fails; the
    partial folder is removed.
    """
    root = studio.dir / "recovery"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder, n = root / stamp, 2
    while folder.exists():
        folder, n = root / f"{stamp}-{n}", n + 1
    folder.mkdir(mode=0o700)
    paths = _outermost(targets)

    def private(p, f):
        return os.open(p, f, 0o600)

    archives: dict[str, str] = {}
    try:
        if running:
            argv = ["sh", "-c", _RECOVERY_SCRIPT, "sh", *(p.lstrip("/") or "." for p in paths)]
            proc = runtime.exec(pod, argv, user=STUDIO_USER)
            with open(folder / "files.tar", "wb", opener=private) as out:
                shutil.copyfileobj(proc.stdout, out, 1 << 20)
            err = proc.stderr.read() if proc.stderr else b""
            code = proc.wait()
            if code != 0:
                detail = err.decode(errors="replace").strip()[-300:]
                raise RuntimeFailure(f"tar in the studio exited with status {code}: {detail or 'no output'}")
            archives = {p: "files.tar" for p in paths}
        else:
            for n, path in enumerate(paths, 1):
                name = f"files-{n}.tar"
                with open(folder / name, "wb", opener=private) as out:
                    found = runtime.copy_out(pod, path, out)
                if not found:
                    (folder / name).unlink()  # the studio never made that folder
                    continue
                archives[path] = name
        (folder / "recovery.json").write_text(json.dumps({
            "studio": studio.id, "project": studio.project, "owner": studio.owner, "why": why,
            "targets": paths, "archives": archives, "saved_at": stamp,
        }, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def restart_studio(who: Identity, ref: str, *, timeout: float = DEFAULT_TIMEOUT, quiet: bool = False,
                   store: Store | None = None) -> Studio:
    stop_studio(who, ref, quiet=quiet, store=store)
    return start_studio(who, ref, timeout=timeout, quiet=quiet, store=store)


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
        _stop(studio.id, force=False, quiet=True, store=store)
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
            _log(f"studio {studio.id}: its recovery folder {kept} is kept (delete with --purge to remove it)")
        if purge:
            from codestudio.home import data_dir

            shutil.rmtree(data_dir() / "zones" / "projects" / studio.project / "studios" / studio.id, ignore_errors=True)
        apply_gateway(start=False)
