"""Studio lifecycle on this machine: create, start, stop, restart, delete, status, actions.

State lives in the ``studios`` table (WAL SQLite); every transition is one
transaction, and a per-studio lock file (``<data dir>/locks/studio-<id>.lock``)
serialises start/stop/delete of one studio across concurrent CLI calls.

States: STOPPED -> STARTING -> RUNNING -> STOPPING -> STOPPED; FAILED when
readiness never came (the pod is removed, its logs kept) or the container
died. Per-studio files live in ``<data dir>/studios/<id>/``:

    kubernetes.yaml   the manifest as played (adapted for podman)
    routes.json       the studio's gateway routes and actions (no secret)
    logs/             container logs saved before every pod removal

The gateway config is regenerated from the DB on every change
(:func:`running_studio_routes`: studios STARTING or RUNNING), checked with
``nginx -t`` and applied by :class:`codestudio.gateway.process.Gateway`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from codestudio.access import Identity, check_name, may_use_project, require_project_use, require_template_use
from codestudio.errors import NotFound, PermissionDenied, RuntimeFailure, UsageError
from codestudio.locks import file_lock
from codestudio.runtime import local
from codestudio.runtime.model import FAILED, RUNNING, STARTING, STOPPED, STOPPING
from codestudio.store import Store, now
from codestudio.types import PROJECT_KEY_RE, SLUG_RE, STUDIO_HOME, STUDIO_USER

DEFAULT_TIMEOUT = 300.0
#: Bounds of ``studio url --ttl`` (seconds): a leaked link must not stay valid for long.
MIN_URL_TTL, MAX_URL_TTL = 10, 7 * 24 * 3600
#: Flag file the runner waits for before starting entrypoints (created after the file push).
SYNC_FLAG = "/tmp/.codestudio-sync-done"
RUNNER = "/opt/codestudio/runner.py"


def runtime_instance() -> str:
    """What makes this data dir's pods distinct from another data dir's on the same host."""
    from codestudio.home import data_dir

    return str(data_dir())


def _log(msg: str) -> None:
    from codestudio.text import printable

    # Messages carry names from studios (synced file names): escape control characters.
    print(printable(msg, keep="\n\t"), file=sys.stderr, flush=True)


@dataclass
class Studio:
    id: str
    project: str
    name: str
    owner: str
    template_id: str
    template_version: int
    image: str | None
    image_id: str | None
    state: str
    state_since: float
    message: str | None
    ports: dict[int, int]
    token: str | None
    created_at: float

    @classmethod
    def from_row(cls, row) -> Studio:
        d = dict(row)
        d["ports"] = {int(k): int(v) for k, v in json.loads(d.get("ports") or "{}").items()}
        return cls(**d)

    @property
    def kube_name(self) -> str:
        from codestudio.render import kube_name

        return kube_name(self.project, self.id, runtime_instance())

    @property
    def pod(self) -> str:
        return local.pod_name(self.kube_name)

    @property
    def container(self) -> str:
        return local.container_name(self.kube_name)

    @property
    def dir(self) -> Path:
        from codestudio.home import data_dir

        return data_dir() / "studios" / self.id

    @property
    def manifest_path(self) -> Path:
        return self.dir / "kubernetes.yaml"


# --------------------------------------------------------------------------
# DB helpers


def _get(conn, ref: str) -> Studio:
    row = conn.execute("SELECT * FROM studios WHERE id = ?", (ref,)).fetchone()
    if row is None and "/" in ref:
        project, name = ref.split("/", 1)
        row = conn.execute("SELECT * FROM studios WHERE project = ? AND (name = ? OR id = ?)", (project, name, name)).fetchone()
    if row is None:
        raise NotFound(f"no studio {ref!r} (see `codestudio studio list`)")
    return Studio.from_row(row)


def get_studio(ref: str, *, store: Store | None = None) -> Studio:
    store = store or Store.default()
    with store.connect() as conn:
        return _get(conn, ref)


def _set_state(store: Store, studio_id: str, state: str, message: str | None = None, **fields) -> None:
    cols = {"state": state, "state_since": now(), "message": message, **fields}
    if "ports" in cols:
        cols["ports"] = json.dumps({str(k): v for k, v in cols["ports"].items()}, sort_keys=True)
    sql = ", ".join(f"{k} = ?" for k in cols)
    with store.connect() as conn:
        conn.execute(f"UPDATE studios SET {sql} WHERE id = ?", (*cols.values(), studio_id))


@contextmanager
def studio_lock(studio_id: str) -> Iterator[None]:
    from codestudio.home import data_dir

    with file_lock(data_dir() / "locks" / f"studio-{studio_id}.lock",
                   waiting=lambda: _log(f"waiting for another command on studio {studio_id} to finish")):
        yield


def _check_actor(who: Identity, studio: Studio, what: str) -> None:
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
        with store.connect() as conn:
            conn.execute("DELETE FROM studios WHERE id = ?", (studio_id,))
        raise
    return get_studio(studio_id, store=store)


def _leftover_folders(project: str, studio_id: str) -> bool:
    """Whether a deleted studio left files under this id (recovery folder, kept zones): never reuse them."""
    from codestudio.home import data_dir

    home = data_dir()
    return (home / "studios" / studio_id).exists() or (home / "zones" / "projects" / project / "studios" / studio_id).exists()


def list_studios(who: Identity | None = None, *, all_users: bool = False, store: Store | None = None) -> list[Studio]:
    """``who``'s studios; every user's with ``all_users`` (admins only) or without ``who`` (engine use)."""
    if who is not None and all_users and not who.is_admin:
        raise PermissionDenied(
            f"only admins may list every user's studios (--all); {who.name} is not an admin (see `codestudio admin list`)"
        )
    store = store or Store.default()
    with store.connect() as conn:
        rows = conn.execute("SELECT * FROM studios ORDER BY project, id").fetchall()
    studios = [Studio.from_row(r) for r in rows]
    if who is not None and not all_users:
        studios = [s for s in studios if s.owner == who.name]
    return studios


# --------------------------------------------------------------------------
# Gateway


def _gateway():
    from codestudio.gateway.process import Gateway
    from codestudio.home import data_dir

    return Gateway(data_dir(), studios=running_studio_routes)


def running_studio_routes(store: Store | None = None) -> list:
    """Routes of every studio the gateway serves: STARTING or RUNNING ones (from the DB and routes.json)."""
    from codestudio.gateway.config import PortRoute, StudioRoutes

    store = store or Store.default()
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT * FROM studios WHERE state IN (?, ?) AND token IS NOT NULL ORDER BY project, id", (STARTING, RUNNING)
        ).fetchall()
    out = []
    for row in rows:
        studio = Studio.from_row(row)
        try:
            saved = json.loads((studio.dir / "routes.json").read_text())
        except (OSError, ValueError):
            continue
        ports = tuple(
            PortRoute(port=p["port"], upstream_port=studio.ports[p["port"]], proxied_subpath=p["proxied_subpath"], label=p["label"],
                      listed=p.get("listed", True))
            for p in saved["ports"]
            if p["port"] in studio.ports
        )
        out.append(
            StudioRoutes(
                project_key=studio.project,
                studio_id=studio.id,
                owner=studio.owner,
                session_secret=studio.token,
                ports=ports,
                actions=tuple(tuple(a) for a in saved.get("actions", [])),
            )
        )
    return out


def _apply_gateway(*, start: bool) -> None:
    gw = _gateway()
    if not start and gw.pid() is None:
        return  # nothing serves the old routes; the next start regenerates from the DB
    gw.apply()


def studio_routes_of(studio: Studio):
    for r in running_studio_routes():
        if r.studio_id == studio.id:
            return r
    return None


# --------------------------------------------------------------------------
# Start


@dataclass
class _Plan:
    template: object
    state: object
    version: int


def _plan(studio: Studio, store: Store) -> _Plan:
    from codestudio.plan import plan_template
    from codestudio.templates_store import get_template

    stored = get_template(studio.template_id, store=store)
    template, state = plan_template(stored.path)
    return _Plan(template, state, stored.version)


def _sync_studio(studio: Studio, state):
    from codestudio.sync import SyncStudio, mappings_for

    mappings, exclusions = mappings_for(state)
    return SyncStudio(studio.id, studio.project, studio.owner, tuple(mappings), tuple(exclusions))


def _member_mappings(studio: Studio, sync_studio, store: Store):
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


def _transport(studio: Studio):
    from codestudio.sync import PodmanTransport

    return PodmanTransport(studio.container, user=STUDIO_USER)


def _ensure_image(plan: _Plan, *, quiet: bool, store: Store):
    """Build (or find up to date) the image of the template's current version."""
    from codestudio.images import build_rendered
    from codestudio.render import render_state

    rendered = render_state(plan.template, plan.state)
    return build_rendered(rendered, template_version=plan.version, quiet=quiet, store=store)


def _save_logs(studio: Studio, reason: str) -> Path | None:
    target = studio.dir / "logs" / f"{time.strftime('%Y%m%dT%H%M%S')}-{reason}.log"
    return target if local.save_logs(studio.container, target) else None


def _remove_pod(studio: Studio, reason: str) -> Path | None:
    saved = _save_logs(studio, reason) if local.pod_exists(studio.pod) else None
    local.down(studio.manifest_path, studio.pod)
    return saved


def _reserved_ports(store: Store, except_id: str) -> set[int]:
    with store.connect() as conn:
        rows = conn.execute("SELECT ports FROM studios WHERE id != ? AND state != ?", (except_id, STOPPED)).fetchall()
    used: set[int] = set()
    for r in rows:
        used.update(int(v) for v in json.loads(r["ports"] or "{}").values())
    return used


def start_studio(who: Identity, ref: str, *, timeout: float = DEFAULT_TIMEOUT, quiet: bool = False,
                 store: Store | None = None) -> Studio:
    """Start a studio and wait for readiness; returns it RUNNING (raises RuntimeFailure when FAILED)."""
    store = store or Store.default()
    studio = get_studio(ref, store=store)
    _check_actor(who, studio, "start")
    # A revoked owner's studio cannot be started again (issue 9 item 3).
    require_project_use(studio.owner, studio.project, "start studios in it", store=store)
    if timeout <= 0:
        raise UsageError("--timeout must be positive")
    with studio_lock(studio.id):
        studio = get_studio(studio.id, store=store)
        if studio.state == RUNNING and local.container_running(studio.container):
            if not quiet:
                _log(f"studio {studio.id} is already running")
            return studio
        if studio.state != STOPPED or local.pod_exists(studio.pod):
            # FAILED, a RUNNING one whose container died, or a command killed mid-way.
            # Stopped by the stop's rules: its files are pulled or saved, never dropped (issue 9 item 4).
            _stop_locked(studio, force=False, say=(lambda m: None) if quiet else _log, store=store,
                         reason="leftover")
        return _start_locked(get_studio(studio.id, store=store), timeout=timeout, quiet=quiet, store=store)


def _start_locked(studio: Studio, *, timeout: float, quiet: bool, store: Store) -> Studio:
    import yaml

    from codestudio.gateway.config import new_session_secret
    from codestudio.render import StudioContext, kubernetes_manifest, probe_path, studio_routes

    say = (lambda m: None) if quiet else _log
    plan = _plan(studio, store)
    state = plan.state
    build = _ensure_image(plan, quiet=quiet, store=store)
    secret = new_session_secret()
    sync_studio, _ = _member_mappings(studio, _sync_studio(studio, state), store)

    def prepare() -> tuple[StudioContext, dict[int, int]]:
        """Choose free loopback ports and write the manifest and routes for them."""
        ports = local.free_ports(len(state.all_ports), avoid=_reserved_ports(store, studio.id))
        host_ports = dict(zip(state.all_ports, ports, strict=True))
        ctx = StudioContext(
            instance=runtime_instance(),
            project_key=studio.project,
            studio_id=studio.id,
            owner=studio.owner,
            image=build.image,
            host_ports=host_ports,
            session_secret=secret,
            extra_env={"CODESTUDIO_WAIT_FOR_SYNC": SYNC_FLAG} if sync_studio.mappings else {},
        )
        routes = studio_routes(state, ctx, plan.template.id)
        docs = local.adapt_for_podman(kubernetes_manifest(state, ctx, plan.template.id), host_ports,
                                      guard_secret=routes.guard_secret)
        studio.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        local.write_private(studio.manifest_path, yaml.safe_dump_all(docs, sort_keys=True))
        (studio.dir / "routes.json").write_text(json.dumps({
            "ports": [{"port": r.port, "proxied_subpath": r.proxied_subpath, "label": r.label, "listed": r.listed}
                      for r in routes.ports],
            "actions": [list(a) for a in routes.actions],
        }, indent=2) + "\n")
        _set_state(store, studio.id, STARTING, "starting", ports=host_ports, token=secret, image=build.image,
                   image_id=build.image_id, template_version=plan.version)
        return ctx, host_ports

    ctx, host_ports = prepare()
    started = time.monotonic()
    try:
        say(f"starting studio {studio.id} ({build.image})")
        for attempt in range(1, local.PLAY_ATTEMPTS + 1):
            try:
                local.play(studio.manifest_path)
                break
            except RuntimeFailure:
                # Another process took a chosen port between our choice and podman's bind:
                # podman fails rather than share it, so choose again (docs/security.md).
                if attempt == local.PLAY_ATTEMPTS or not local.ports_taken(host_ports.values()):
                    raise
                say("a chosen port was taken before podman bound it; choosing others")
                ctx, host_ports = prepare()
        if sync_studio.mappings:
            _push_files(studio, sync_studio, say)
        _apply_gateway(start=True)
        probe = state.effective_probe()
        if probe is not None:
            from codestudio.runtime.readiness import ProbeTarget, wait_ready

            path = probe_path(state, ctx, plan.template.id) if probe.kind == "http" else None
            target = ProbeTarget(probe.kind, local.LOOPBACK, host_ports[probe.port], path,
                                 guard_secret=studio_routes(state, ctx, plan.template.id).guard_secret)
            say(f"waiting up to {timeout:g}s for readiness ({target.describe()})")
            remaining = max(0.1, timeout - (time.monotonic() - started))
            ok, detail = wait_ready(target, remaining, alive=lambda: local.container_running(studio.container))
            if not ok:
                raise _NotReady(f"studio {studio.id} did not become ready within {timeout:g}s: {detail}")
        _set_state(store, studio.id, RUNNING, None)
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        # Routes go before the pod: a freed port must never still be routed to (docs/security.md).
        _set_state(store, studio.id, FAILED, reason[:500], ports={}, token=None)
        try:
            _apply_gateway(start=False)
        except Exception as gexc:  # the start failure is the news; a stale route only gives 502
            _log(f"warning: gateway not updated: {gexc}")
        saved = _remove_pod(studio, "failed")
        if isinstance(exc, KeyboardInterrupt):
            raise
        where = f"\nlogs kept in {saved}" if saved else ""
        if isinstance(exc, _NotReady):
            raise RuntimeFailure(f"{exc}; the studio was stopped and marked FAILED{where}") from None
        raise RuntimeFailure(f"studio {studio.id} failed to start: {exc}{where}") from exc
    return get_studio(studio.id, store=store)


class _NotReady(RuntimeFailure):
    pass


def _push_files(studio: Studio, sync_studio, say) -> None:
    from codestudio.sync import SyncConflictError, push_on_start

    try:
        report = push_on_start(sync_studio, _transport(studio))
        say(f"files pushed ({_report_summary(report)})")
    except SyncConflictError as exc:
        say(f"warning: {exc}")
    proc = local.exec_run(studio.container, ["touch", SYNC_FLAG])
    if proc.returncode != 0:
        raise RuntimeFailure(f"could not release the runner after the file push: {proc.stderr.strip()}")


def _report_summary(report) -> str:
    try:
        d = report.to_dict()
    except Exception:
        return "done"
    if isinstance(d, dict):
        keys = [k for k in ("pushed", "pulled", "deleted", "conflicts") if k in d]
        if keys:
            return ", ".join(f"{k} {d[k] if not isinstance(d[k], list) else len(d[k])}" for k in keys)
    return "done"


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
    _check_actor(who, studio, "stop")
    return _stop(studio.id, force=force, quiet=quiet, store=store)


class _Unsaved(RuntimeFailure):
    """The studio's files could be neither pulled nor saved: its pod must stay."""


def _stop(studio_id: str, *, force: bool, quiet: bool, store: Store) -> Studio:
    say = (lambda m: None) if quiet else _log
    with studio_lock(studio_id):
        studio = get_studio(studio_id, store=store)
        if studio.state == STOPPED and not local.pod_exists(studio.pod):
            say(f"studio {studio.id} is not running")
            return studio
        _stop_locked(studio, force=force, say=say, store=store)
    return get_studio(studio.id, store=store)


def _stop_locked(studio: Studio, *, force: bool, say, store: Store, reason: str = "stopped") -> None:
    """Pull or save the files of a running pod, then remove it (the caller holds the studio lock)."""
    running = local.container_running(studio.container)
    _set_state(store, studio.id, STOPPING, "stopping", ports=studio.ports, token=studio.token)
    _apply_gateway(start=False)  # STOPPING is not routed: drop the routes before the ports are freed
    note = None
    try:
        if running:
            note = _pull_or_save(studio, store, say)
        elif _container_exists(studio.container):
            # It died (a crash, a reboot): its files are still in its stopped container.
            note = _save_stopped(studio, store, say)
    except _Unsaved as exc:
        if not force:
            where = "the studio, which keeps running" if running else "its stopped container, which is kept"
            message = (f"NOT stopped: {exc}. Its files are only in {where}. "
                       f"Fix the cause and retry: codestudio studio stop {studio.id}; or remove it and "
                       f"LOSE its unsynced changes: codestudio studio stop {studio.id} --force")
            if running:
                _set_state(store, studio.id, RUNNING, message[:1000], ports=studio.ports, token=studio.token)
            else:
                _set_state(store, studio.id, FAILED, message[:1000], ports={}, token=None)
            _apply_gateway(start=False)
            raise RuntimeFailure(f"studio {studio.id} was {message}") from None
        note = f"removed with --force although {exc}: its unsynced changes are lost"
        say(f"warning: {note}")
    _remove_pod(studio, reason)
    _set_state(store, studio.id, STOPPED, note[:1000] if note else None, ports={}, token=None)
    _apply_gateway(start=False)


def _pull_or_save(studio: Studio, store: Store, say) -> str | None:
    """Pull the running studio's files into their zones, or save them to its recovery folder.

    Returns a note for the studio's message (None when all went well);
    raises :class:`_Unsaved` when the files could be neither pulled nor saved.
    """
    from codestudio.errors import CodestudioError
    from codestudio.sync import SyncConflictError, pull_on_stop

    problem, unsaved, notes = None, [], []
    try:
        plan = _plan(studio, store)
    except CodestudioError as exc:  # template removed or no longer planning: its mappings are unknown
        problem, unsaved = f"its template cannot be read ({_first_line(exc)}), so its files were not pulled", [STUDIO_HOME]
    else:
        sync_studio, denied = _member_mappings(studio, _sync_studio(studio, plan.state), store)
        if denied:
            # A revoked owner's files may not go into the project's zones: keep them aside instead.
            unsaved += [m.target for m in denied if not m.one_way]  # one-way targets are never pulled
            notes.append(f"{studio.owner} is no longer a member of project {studio.project}, so "
                         f"{', '.join(sorted({m.zone for m in denied}))} were not pulled")
        if sync_studio.mappings:
            try:
                report = pull_on_stop(sync_studio, _transport(studio))
                say(f"files pulled ({_report_summary(report)})")
            except SyncConflictError as exc:  # both versions are kept on the server: nothing is lost
                notes.append(f"file pull: {exc}")
                say(f"warning: file pull: {exc}")
            except Exception as exc:  # any other failure: the studio holds the only copy
                problem = f"the file pull failed ({_first_line(exc)})"
                unsaved += [m.target for m in sync_studio.mappings if not m.one_way]
    if problem:
        notes.insert(0, problem)
    if not unsaved:
        return "; ".join(notes) or None
    why = "; ".join(notes)
    try:
        saved = _save_recovery(studio, unsaved, why)
    except Exception as exc:
        raise _Unsaved(f"{why}, and saving its files to a recovery folder failed too ({_first_line(exc)})") from None
    note = f"{why}; its files ({', '.join(_outermost(unsaved))}) were saved to {saved} before its pod was removed"
    say(f"warning: {note}")
    return note


def _container_exists(container: str) -> bool:
    from codestudio import containers

    return containers.podman("container", "exists", container, check=False).returncode == 0


def _save_stopped(studio: Studio, store: Store, say) -> str | None:
    """Save the two-way mapping targets out of a container that is no longer running (``podman cp``)."""
    from codestudio.errors import CodestudioError

    try:
        targets = [m.target for m in _sync_studio(studio, _plan(studio, store).state).mappings if not m.one_way]
    except CodestudioError:
        targets = [STUDIO_HOME]
    if not targets:
        return None
    why = "its container was no longer running, so its files could not be pulled"
    try:
        saved = _save_recovery(studio, targets, why, running=False)
    except Exception as exc:
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


def _save_recovery(studio: Studio, targets: list[str], why: str, *, running: bool = True) -> Path:
    """Tar ``targets`` out of the pod into ``<studio dir>/recovery/<UTC>/``.

    A running pod: one ``files.tar`` (paths relative to ``/`` inside the
    studio) made by ``tar`` through exec. A stopped container: one
    ``files-<n>.tar`` per target made by ``podman cp`` (which resolves paths
    inside the container's root; targets that do not exist are skipped).
    ``recovery.json`` says why, what and when. Only the engine's OS user can
    read it (0700). Raises when saving fails; the partial folder is removed.
    """
    from codestudio.containers import podman_command, podman_env

    root = studio.dir / "recovery"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder, n = root / stamp, 2
    while folder.exists():
        folder, n = root / f"{stamp}-{n}", n + 1
    folder.mkdir(mode=0o700)
    paths = _outermost(targets)
    private = lambda p, f: os.open(p, f, 0o600)  # noqa: E731
    archives: dict[str, str] = {}
    try:
        if running:
            argv = ["sh", "-c", _RECOVERY_SCRIPT, "sh", *(p.lstrip("/") or "." for p in paths)]
            with open(folder / "files.tar", "wb", opener=private) as out:
                proc = subprocess.run(local.exec_command(studio.container, argv, user=STUDIO_USER), stdout=out,
                                      stderr=subprocess.PIPE, env=podman_env())
            if proc.returncode != 0:
                detail = proc.stderr.decode(errors="replace").strip()[-300:]
                raise RuntimeFailure(f"tar in the studio exited with status {proc.returncode}: {detail or 'no output'}")
            archives = {p: "files.tar" for p in paths}
        else:
            for n, path in enumerate(paths, 1):
                name = f"files-{n}.tar"
                with open(folder / name, "wb", opener=private) as out:
                    proc = subprocess.run(podman_command("cp", f"{studio.container}:{path}", "-"), stdout=out,
                                          stderr=subprocess.PIPE, env=podman_env())
                detail = proc.stderr.decode(errors="replace").strip()
                if proc.returncode != 0 and "could not be found on container" in detail:
                    (folder / name).unlink()  # the studio never made that folder
                    continue
                if proc.returncode != 0:
                    raise RuntimeFailure(f"podman cp {path} exited with status {proc.returncode}: {detail[-300:]}")
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
    studio = get_studio(ref, store=store)
    _check_actor(who, studio, "delete")
    _delete(studio, force=force, purge=purge, store=store)


def delete_project_studios(project: str, *, purge: bool, store: Store) -> list[str]:
    """Stop and delete every studio of ``project`` (``project delete --force``: the caller checked who may).

    Stops keep their rule: a studio whose files can be neither pulled nor
    saved is not deleted, and the :class:`RuntimeFailure` stops the loop.
    """
    with store.connect() as conn:
        ids = [r["id"] for r in conn.execute("SELECT id FROM studios WHERE project = ? ORDER BY id", (project,))]
    for studio_id in ids:
        _delete(get_studio(studio_id, store=store), force=True, purge=purge, store=store)
    return ids


def _delete(studio: Studio, *, force: bool, purge: bool, store: Store) -> None:
    if studio.state in (RUNNING, STARTING, STOPPING) and not force:
        raise UsageError(f"studio {studio.id} is {studio.state}; stop it first or pass --force")
    if studio.state in (RUNNING, STARTING, STOPPING):
        _stop(studio.id, force=False, quiet=True, store=store)
    with studio_lock(studio.id):
        _remove_pod(studio, "deleted")
        with store.connect() as conn:
            conn.execute("DELETE FROM studios WHERE id = ?", (studio.id,))
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
        _apply_gateway(start=False)



# --------------------------------------------------------------------------
# Status, logs, URL


def refresh(studio: Studio, *, store: Store | None = None) -> Studio:
    """Mark a RUNNING studio whose container is gone as FAILED (e.g. after a host reboot)."""
    store = store or Store.default()
    if studio.state == RUNNING and not local.container_running(studio.container):
        _set_state(store, studio.id, FAILED, "the container is no longer running", ports={}, token=None)
        try:
            _apply_gateway(start=False)
        except RuntimeFailure:
            pass
        return get_studio(studio.id, store=store)
    return studio


def studio_status(who: Identity, ref: str, *, store: Store | None = None) -> dict:
    from codestudio.images import latest_build

    store = store or Store.default()
    studio = get_studio(ref, store=store)
    _check_actor(who, studio, "see the status of")
    studio = refresh(studio, store=store)
    latest = latest_build(studio.template_id, store=store)
    gw = _gateway()
    base = gw.settings.base_url
    prefix = f"/code-studios/{studio.project}/{studio.id}/"
    tabs = []
    try:
        saved = json.loads((studio.dir / "routes.json").read_text())
        tabs = [{"label": p["label"], "port": p["port"], "url": f"{base}{prefix}{p['port']}/"}
                for p in saved["ports"] if p.get("listed", True)]
    except (OSError, ValueError):
        pass
    zones = []
    try:
        plan = _plan(studio, store)
        sync_studio = _sync_studio(studio, plan.state)
        for m in sync_studio.mappings:
            zones.append({
                "zone": m.zone,
                "server": str(sync_studio.zone_path(m.zone) / (m.subfolder or "")).rstrip("/"),
                "target": m.target,
                "one_way": m.one_way,
            })
    except Exception as exc:  # status must work even when the template no longer renders
        zones = [{"zone": "?", "server": f"unavailable: {exc}", "target": "", "one_way": False}]
    return {
        "id": studio.id,
        "project": studio.project,
        "name": studio.name,
        "owner": studio.owner,
        "template": f"{studio.template_id} v{studio.template_version}",
        "state": studio.state,
        "since": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(studio.state_since)),
        "message": studio.message,
        "image": studio.image,
        "newer_build": bool(latest and studio.image and latest["image"] != studio.image),
        "latest_build": latest["image"] if latest else None,
        "landing": f"{base}{prefix}",
        "tabs": tabs,
        "zones": zones,
        "ports": {str(k): v for k, v in studio.ports.items()},
        "logs": str(studio.dir / "logs"),
    }


def access_url(who: Identity, ref: str, *, port: int | None = None, ttl: int | None = None,
               store: Store | None = None) -> str:
    """The owner's signed gateway URL (landing page, or one tab with ``port``).

    Does not start the gateway: when it is stopped the link is still printed,
    with a warning on stderr saying how to start it.
    """
    from codestudio.gateway.config import DEFAULT_TOKEN_TTL, make_access_url

    if ttl is not None and not MIN_URL_TTL <= ttl <= MAX_URL_TTL:
        raise UsageError(f"--ttl {ttl}: a link stays valid {MIN_URL_TTL} to {MAX_URL_TTL} seconds (7 days)")
    store = store or Store.default()
    studio = refresh(get_studio(ref, store=store), store=store)
    if who.name != studio.owner:
        raise PermissionDenied(
            f"studio {studio.id} belongs to {studio.owner}; only its owner gets an access URL"
            + (f" (as an admin: --user {studio.owner})" if who.is_admin else "")
        )
    if studio.state not in (RUNNING, STARTING):
        raise UsageError(f"studio {studio.id} is {studio.state}; start it first: codestudio studio start {studio.id}")
    routes = studio_routes_of(studio)
    if routes is None:
        raise RuntimeFailure(f"studio {studio.id} has no gateway routes; restart it")
    gw = _gateway()
    if gw.pid() is None:
        # Starting nginx here would hide a stopped gateway (and its failures) behind
        # a read-only command; say so instead.
        _log("warning: the gateway is stopped, so this link does not answer yet; start it with "
             "`codestudio gateway start` (starting any studio also starts it)")
    return make_access_url(routes, gw.settings.base_url, ttl or DEFAULT_TOKEN_TTL, port=port)


def logs_target(who: Identity, ref: str, *, store: Store | None = None) -> tuple[str, Path | None]:
    """(container name if it exists, else None-ish ''; newest saved log file or None)."""
    studio = get_studio(ref, store=store)
    _check_actor(who, studio, "read the logs of")
    saved = sorted((studio.dir / "logs").glob("*.log")) if (studio.dir / "logs").is_dir() else []
    exists = local.pod_exists(studio.pod)
    return (studio.container if exists else ""), (saved[-1] if saved else None)


def stream_logs(who: Identity, ref: str, *, follow: bool = False, tail: int | None = None) -> int:
    container, saved = logs_target(who, ref)
    if container:
        return subprocess.call(local.logs_command(container, follow=follow, tail=tail), env=_podman_env())
    if saved is None:
        raise UsageError(f"studio {ref} has no container and no saved logs yet")
    _log(f"(studio not running; last saved logs: {saved})")
    sys.stdout.write(saved.read_text(errors="replace"))
    return 0


def _podman_env():
    from codestudio.containers import podman_env

    return podman_env()


# --------------------------------------------------------------------------
# Actions


def list_actions(who: Identity, ref: str, *, store: Store | None = None) -> list[dict]:
    store = store or Store.default()
    studio = get_studio(ref, store=store)
    _check_actor(who, studio, "list the actions of")
    plan = _plan(studio, store)
    return [
        {"name": a.name, "label": a.label, "description": a.description, "wait": a.wait, "command": a.command}
        for _, a in plan.state.actions
    ]


def run_action(who: Identity, ref: str, action: str, *, store: Store | None = None,
               output=None) -> tuple[int, bool]:
    """Run an action as the studio user: (exit status, waited).

    When it waits, its output streams to ours, or line by line to ``output(line)``
    when given (the server's jobs).
    """
    store = store or Store.default()
    studio = refresh(get_studio(ref, store=store), store=store)
    _check_actor(who, studio, "run actions in")
    actions = {a["name"]: a for a in list_actions(who, studio.id, store=store)}
    if action not in actions:
        raise NotFound(f"studio {studio.id} has no action {action!r}; actions: {', '.join(actions) or '(none)'}")
    if studio.state != RUNNING:
        raise UsageError(f"studio {studio.id} is {studio.state}; start it first")
    argv = ["python3", RUNNER, "action", action]
    if actions[action]["wait"]:
        if output is None:
            code = subprocess.call(local.exec_command(studio.container, argv), env=_podman_env(), stdin=subprocess.DEVNULL)
            return code, True
        with subprocess.Popen(local.exec_command(studio.container, argv), env=_podman_env(), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as proc:
            for line in proc.stdout:  # type: ignore[union-attr]
                output(line.rstrip("\n"))
        return proc.returncode, True
    # Detached: keep its output in the studio so it can be read later.
    log = f"/tmp/codestudio-action-{action}.log"
    shell = ["/bin/sh", "-c", 'exec "$@" > "$0" 2>&1', log, *argv]
    proc = subprocess.run(local.exec_command(studio.container, shell, detach=True), capture_output=True, text=True,
                          env=_podman_env())
    if proc.returncode != 0:
        raise RuntimeFailure(f"could not start action {action}: {proc.stderr.strip()}")
    return 0, False


def detached_log_path(action: str) -> str:
    return f"/tmp/codestudio-action-{action}.log"


# --------------------------------------------------------------------------
# File synchronisation on demand


def _check_zone(zone: str | None) -> None:
    from codestudio.types import ZONES

    if zone is not None and zone not in ZONES:
        raise UsageError(f"unknown zone {zone!r}; zones: {', '.join(ZONES)}")


def sync_files(who: Identity, ref: str, direction: str = "both", zone: str | None = None, *,
               store: Store | None = None):
    """Sync a running studio's files with its zones: ``both``, ``push`` (server -> studio) or ``pull``.

    Returns the sync report; raises ``SyncConflictError`` (exit 1, naming
    the conflicts) after syncing everything else when a file changed on both sides.
    """
    from codestudio.sync import sync

    if direction not in ("both", "push", "pull"):
        raise UsageError(f"direction must be both, push or pull, not {direction!r}")
    _check_zone(zone)
    store = store or Store.default()
    studio = refresh(get_studio(ref, store=store), store=store)
    _check_actor(who, studio, "sync")
    if studio.state != RUNNING:
        raise UsageError(f"studio {studio.id} is {studio.state}; files sync with a running studio (start it first)")
    plan = _plan(studio, store)
    with studio_lock(studio.id):
        sync_studio, denied = _member_mappings(studio, _sync_studio(studio, plan.state), store)
        if denied:
            if zone is not None and any(m.zone == zone for m in denied):
                require_project_use(studio.owner, studio.project, f"sync its zone {zone}", store=store)
            _log(f"warning: {studio.owner} is no longer a member of project {studio.project}: its zones "
                 f"({', '.join(sorted({m.zone for m in denied}))}) are not synced")
        return sync(sync_studio, _transport(studio), direction=direction, zone=zone, store=store)


def studio_conflicts(who: Identity, ref: str, zone: str | None = None, *, resolve: bool = False,
                     paths: list[str] | None = None, store: Store | None = None) -> list:
    """Open sync conflicts of a studio (or mark them resolved with ``resolve``)."""
    from codestudio.sync import conflicts, resolve_conflicts

    _check_zone(zone)
    store = store or Store.default()
    studio = get_studio(ref, store=store)
    _check_actor(who, studio, "see the conflicts of")
    sync_studio = _sync_studio(studio, _plan(studio, store).state)
    if may_use_project(studio.owner, studio.project, store=store):
        if resolve:
            return resolve_conflicts(sync_studio, zone, paths or None, store=store)
        return conflicts(sync_studio, zone, store=store)
    # The owner was revoked from the project: as for sync_files, its zones' conflicts are neither listed nor resolved.
    from codestudio.types import ZONES, zone_scope

    if zone is not None and zone_scope(zone) == "project":
        require_project_use(studio.owner, studio.project, f"see the conflicts of its zone {zone}", store=store)
    zones = [zone] if zone is not None else [z for z in ZONES if zone_scope(z) != "project"]
    if resolve:
        return [c for z in zones for c in resolve_conflicts(sync_studio, z, paths or None, store=store)]
    return sorted((c for z in zones for c in conflicts(sync_studio, z, store=store)),
                  key=lambda c: (c.detected_at, c.path))
