"""What users do with a studio besides starting and stopping it: status, URL, logs, actions, sync.

Every operation reads the studio's state through
:func:`~codestudio.runtime.lifecycle.reconcile` first (so a pod that is gone
is reported as such), and reaches the pod only through the
:class:`~codestudio.runtime.base.Runtime` (``exec``, ``logs``).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from codestudio.access import Identity
from codestudio.errors import NotFound, PermissionDenied, RuntimeFailure, UsageError
from codestudio.runtime.current import get_runtime
from codestudio.runtime.lifecycle import (
    check_actor,
    log_message,
    member_mappings,
    plan_studio,
    pod_set_name,
    reconcile,
    studio_lock,
    studio_pod,
    sync_studio_of,
    transport_of,
)
from codestudio.runtime.model import RUNNING, STARTING
from codestudio.runtime.records import get_studio
from codestudio.runtime import routes
from codestudio.runtime.routes import saved_routes, studio_routes_of
from codestudio.store import Store

#: Bounds of ``studio url --ttl`` (seconds): a leaked link must not stay valid for long.
MIN_URL_TTL, MAX_URL_TTL = 10, 7 * 24 * 3600
RUNNER = "/opt/codestudio/runner.py"


# --------------------------------------------------------------------------
# Status, URL


def studio_status(who: Identity, ref: str, *, store: Store | None = None) -> dict:
    from codestudio.images import latest_build

    store = store or Store.default()
    studio = get_studio(ref, store=store)
    check_actor(who, studio, "see the status of")
    studio = reconcile(studio, store=store)
    latest = latest_build(studio.template_id, store=store)
    gw = routes.gateway()
    base = gw.settings.base_url
    prefix = f"/code-studios/{studio.project}/{studio.id}/"
    saved = saved_routes(studio)
    tabs = [{"label": p["label"], "port": p["port"], "url": f"{base}{prefix}{p['port']}/"}
            for p in saved["ports"] if p.get("listed", True)] if saved else []
    zones = []
    try:
        plan = plan_studio(studio, store)
        sync_studio = sync_studio_of(studio, plan.state)
        for m in sync_studio.mappings:
            zones.append({
                "zone": m.zone,
                "server": str(sync_studio.zone_path(m.zone) / (m.subfolder or "")).rstrip("/"),
                "target": m.target,
                "one_way": m.one_way,
            })
    except Exception as exc:  # noqa: BLE001 - status must work even when the template no longer renders
        zones = [{"zone": "?", "server": f"unavailable: {exc}", "target": "", "one_way": False}]
        plan = None
    studio, lifecycle = _lifecycle_status(studio, plan, store)
    return {
        "id": studio.id,
        "project": studio.project,
        "name": studio.name,
        "owner": studio.owner,
        "template": f"{studio.template_id} v{studio.template_version}",
        "state": str(studio.state),
        "since": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(studio.state_since)),
        "message": studio.message,
        "image": studio.image,
        "newer_build": bool(latest and studio.image and latest["image"] != studio.image),
        "latest_build": latest["image"] if latest else None,
        "landing": f"{base}{prefix}",
        "tabs": tabs,
        "zones": zones,
        "ports": {str(k): v for k, v in studio.ports.items()},
        "logs": str(studio.logs_dir),
        **lifecycle,
    }


def _lifecycle_status(studio, plan, store: Store):
    """Activity, culling policy, memory kills and why it last stopped (docs/lifecycle.md)."""
    from codestudio.quantities import format_bytes, format_duration
    from codestudio.runtime.activity import describe_activity, read_activity, record_activity
    from codestudio.runtime.limits import effective_policy, load_settings

    out: dict = {}
    killed = None
    if studio.state == RUNNING:
        pods = get_runtime().pods(pod_set_name(studio))
        if pods and pods[0].running:
            from codestudio.plugins import load_plugins

            reading = read_activity(studio, pods[0], template=plan.template if plan else None,
                                    blocks=load_plugins() if plan else None)
            studio = record_activity(store, studio, reading)
            if reading.oom_kills:
                limit = f" (memory limit {format_bytes(reading.memory_limit)})" if reading.memory_limit else ""
                killed = f"{reading.oom_kills} process(es) since the studio started{limit}"
    out["last_activity"] = describe_activity(studio) or ("none yet" if studio.state == RUNNING else None)
    try:
        policy = effective_policy(plan.state, load_settings()) if plan else {}
    except UsageError:
        policy = {}
    for field in ("idle_timeout", "max_lifetime"):
        out[field] = format_duration(policy[field]) if policy.get(field) else "off"
    out["killed_for_memory"] = killed
    out["stop_reason"] = studio.stop_reason
    return studio, out


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
    studio = reconcile(get_studio(ref, store=store), store=store)
    if who.name != studio.owner:
        raise PermissionDenied(
            f"studio {studio.id} belongs to {studio.owner}; only its owner gets an access URL"
            + (f" (as an admin: --user {studio.owner})" if who.is_admin else "")
        )
    if studio.state not in (RUNNING, STARTING):
        _require_open(studio, store)
        raise UsageError(f"studio {studio.id} is {studio.state}; start it first: codestudio studio start {studio.id}")
    # Read the routes (access epoch) first, check after, sign with what was read: a check that
    # passes ran before any renewal committed (codestudio.revocation), so the link dies with it.
    served = studio_routes_of(studio)
    _require_open(studio, store)
    if served is None:
        raise RuntimeFailure(f"studio {studio.id} has no gateway routes; restart it")
    gw = routes.gateway()
    if gw.pid() is None:
        # Starting nginx here would hide a stopped gateway (and its failures) behind
        # a read-only command; say so instead.
        log_message("warning: the gateway is stopped, so this link does not answer yet; start it with "
             "`codestudio gateway start` (starting any studio also starts it)")
    return make_access_url(served, gw.settings.base_url, ttl or DEFAULT_TOKEN_TTL, port=port)


def _require_open(studio, store: Store) -> None:
    """Refuse a link to an owner who may not reach the studio now (disabled, or out of its project)."""
    from codestudio.access import is_disabled, require_project_use

    if is_disabled(studio.owner, store=store):
        raise PermissionDenied(f"user {studio.owner} is disabled, so gets no link to studio {studio.id} "
                               f"(an admin can enable them: codestudio login --user {studio.owner} --enable)")
    require_project_use(studio.owner, studio.project, "open studios in it", store=store)


# --------------------------------------------------------------------------
# Logs


def logs_target(who: Identity, ref: str, *, store: Store | None = None) -> tuple[str, Path | None]:
    """(the studio's pod if it exists, else ''; newest saved log file or None)."""
    studio = get_studio(ref, store=store)
    check_actor(who, studio, "read the logs of")
    saved = sorted(studio.logs_dir.glob("*.log")) if studio.logs_dir.is_dir() else []
    return (studio_pod(studio) or ""), (saved[-1] if saved else None)


def stream_logs(who: Identity, ref: str, *, follow: bool = False, tail: int | None = None) -> int:
    pod, saved = logs_target(who, ref)
    if pod:
        out = sys.stdout.buffer
        for chunk in get_runtime().logs(pod, follow=follow, tail=tail):
            out.write(chunk)
            out.flush()
        return 0
    if saved is None:
        raise UsageError(f"studio {ref} has no container and no saved logs yet")
    log_message(f"(studio not running; last saved logs: {saved})")
    sys.stdout.write(saved.read_text(errors="replace"))
    return 0


# --------------------------------------------------------------------------
# Actions


def list_actions(who: Identity, ref: str, *, store: Store | None = None) -> list[dict]:
    store = store or Store.default()
    studio = get_studio(ref, store=store)
    check_actor(who, studio, "list the actions of")
    plan = plan_studio(studio, store)
    return [
        {"name": a.name, "label": a.label, "description": a.description, "wait": a.wait, "command": a.command}
        for _, a in plan.state.actions
    ]


def detached_log_path(action: str) -> str:
    return f"/tmp/codestudio-action-{action}.log"


def _pump(src, dst) -> None:
    try:
        while chunk := src.read1(65536):
            dst.write(chunk)
            dst.flush()
    finally:
        src.close()


def _lines(src, output, lock: threading.Lock) -> None:
    try:
        for raw in src:
            with lock:
                output(raw.decode(errors="replace").rstrip("\n"))
    finally:
        src.close()


def run_action(who: Identity, ref: str, action: str, *, store: Store | None = None,
               output=None) -> tuple[int, bool]:
    """Run an action as the studio user: (exit status, waited).

    When it waits, its output streams to ours, or line by line to ``output(line)``
    when given (the server's jobs).
    """
    store = store or Store.default()
    studio = reconcile(get_studio(ref, store=store), store=store)
    check_actor(who, studio, "run actions in")
    actions = {a["name"]: a for a in list_actions(who, studio.id, store=store)}
    if action not in actions:
        raise NotFound(f"studio {studio.id} has no action {action!r}; actions: {', '.join(actions) or '(none)'}")
    if studio.state != RUNNING:
        raise UsageError(f"studio {studio.id} is {studio.state}; start it first")
    runtime = get_runtime()
    pods = runtime.pods(pod_set_name(studio))
    if not pods:
        raise RuntimeFailure(f"studio {studio.id} has no pod; restart it")
    pod = pods[0].name
    argv = ["python3", RUNNER, "action", action]
    if actions[action]["wait"]:
        proc = runtime.exec(pod, argv)
        if output is None:
            pumps = [threading.Thread(target=_pump, args=(proc.stdout, sys.stdout.buffer), daemon=True),
                     threading.Thread(target=_pump, args=(proc.stderr, sys.stderr.buffer), daemon=True)]
        else:
            lock = threading.Lock()
            pumps = [threading.Thread(target=_lines, args=(pipe, output, lock), daemon=True)
                     for pipe in (proc.stdout, proc.stderr)]
        for t in pumps:
            t.start()
        code = proc.wait()
        for t in pumps:
            t.join()
        return code, True
    # Detached: keep its output in the studio so it can be read later.
    log = detached_log_path(action)
    runtime.exec_detached(pod, ["/bin/sh", "-c", 'exec "$@" > "$0" 2>&1', log, *argv])
    return 0, False


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
    studio = reconcile(get_studio(ref, store=store), store=store)
    check_actor(who, studio, "sync")
    if studio.state != RUNNING:
        raise UsageError(f"studio {studio.id} is {studio.state}; files sync with a running studio (start it first)")
    plan = plan_studio(studio, store)
    runtime = get_runtime()
    with studio_lock(studio.id):
        pod = studio_pod(studio, runtime)
        if pod is None:
            raise RuntimeFailure(f"studio {studio.id} has no pod; restart it")
        sync_studio, denied = member_mappings(studio, sync_studio_of(studio, plan.state), store)
        if denied:
            from codestudio.access import require_project_use

            if zone is not None and any(m.zone == zone for m in denied):
                require_project_use(studio.owner, studio.project, f"sync its zone {zone}", store=store)
            log_message(f"warning: {studio.owner} is no longer a member of project {studio.project}: its zones "
                 f"({', '.join(sorted({m.zone for m in denied}))}) are not synced")
        return sync(sync_studio, transport_of(pod, runtime), direction=direction, zone=zone, store=store)


def studio_conflicts(who: Identity, ref: str, zone: str | None = None, *, resolve: bool = False,
                     paths: list[str] | None = None, store: Store | None = None) -> list:
    """Open sync conflicts of a studio (or mark them resolved with ``resolve``)."""
    from codestudio.sync import conflicts, resolve_conflicts

    _check_zone(zone)
    store = store or Store.default()
    studio = get_studio(ref, store=store)
    check_actor(who, studio, "see the conflicts of")
    sync_studio = sync_studio_of(studio, plan_studio(studio, store).state)
    from codestudio.access import may_use_project, require_project_use

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


__all__ = [
    "MAX_URL_TTL",
    "MIN_URL_TTL",
    "access_url",
    "detached_log_path",
    "list_actions",
    "logs_target",
    "run_action",
    "stream_logs",
    "studio_conflicts",
    "studio_status",
    "sync_files",
]
