"""The culler: stop running studios past their ``idle_timeout`` or ``max_lifetime`` (docs/lifecycle.md).

:func:`cull` looks at every RUNNING studio once: it reads the studio's
activity (:mod:`codestudio.runtime.activity`), records it, and stops the
studios past a limit **the normal way** (files pulled back first, conflicts
kept on both sides, or saved to the recovery folder; a studio whose files
can be neither pulled nor saved keeps running, as with ``studio stop``).
The reason ("stopped after 2 h idle") is stored in the studio's message
and ``stop_reason`` and shown by ``studio list``/``status`` and the UI.

The server runs it every ``cull_interval`` (a minute by default) and
``codestudio cull [--dry-run]`` runs it once (for cron).

Races: the culler takes the studio's lock like every command and decides
again under it from a fresh record and a fresh reading, so a studio a user
stopped (or restarted, or used) meanwhile is left alone; a manual stop that
comes while the culler stops it waits for the lock and then finds it
stopped ("not running"): no error, one stop, no file lost.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass

from codestudio.quantities import format_duration
from codestudio.runtime.model import RUNNING, STOPPED, Studio
from codestudio.store import Store


@dataclass
class Decision:
    """What the culler decided about one running studio."""

    studio: str
    project: str
    owner: str
    #: "stop" (past a limit), "keep", or "skip" (cannot tell: no pod, guard silent, busy lock).
    action: str
    reason: str
    #: Whether it was stopped in this run (never with ``dry_run``).
    stopped: bool = False
    idle_seconds: float | None = None
    activity_source: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def decide(studio: Studio, policy: dict, now: float, *, activity_known: bool = True) -> tuple[str, str, float | None]:
    """(action, reason, idle seconds) for a running studio under ``policy`` (seconds or None per field)."""
    started = studio.started_at or studio.state_since
    since = max(studio.last_activity or started, started)
    idle = max(0.0, now - since)
    lifetime, timeout = policy.get("max_lifetime"), policy.get("idle_timeout")
    if lifetime is not None and now - started >= lifetime:
        return "stop", f"stopped after {format_duration(now - started)} running (max_lifetime {format_duration(lifetime)})", idle
    if timeout is not None and not activity_known:
        return "skip", "its activity could not be read (the guard did not answer); not culled for idleness", idle
    if timeout is not None and idle >= timeout:
        return "stop", f"stopped after {format_duration(idle)} idle (idle_timeout {format_duration(timeout)})", idle
    if timeout is None and lifetime is None:
        return "keep", "no idle_timeout or max_lifetime", idle
    parts = []
    if timeout is not None:
        parts.append(f"idle {format_duration(idle)} of {format_duration(timeout)}")
    if lifetime is not None:
        parts.append(f"running {format_duration(now - started)} of {format_duration(lifetime)}")
    return "keep", ", ".join(parts), idle


def _log(message: str) -> None:
    from codestudio.text import printable

    print(printable(message), file=sys.stderr, flush=True)


def cull(*, dry_run: bool = False, now: float | None = None, store: Store | None = None, say=None) -> list[Decision]:
    """Look at every running studio once; stop those past a limit (unless ``dry_run``).

    ``now`` (epoch seconds) is for tests that must not sleep; it defaults to the clock.
    """
    from codestudio.plugins import load_plugins
    from codestudio.runtime.current import get_runtime
    from codestudio.runtime.lifecycle import pod_set_name
    from codestudio.runtime.limits import load_settings
    from codestudio.runtime.records import all_studios

    store = store or Store.default()
    say = say or (lambda m: None)
    settings = load_settings()
    running = [s for s in all_studios(store) if s.state == RUNNING]
    if not running:
        return []
    runtime = get_runtime()
    pods_by_name = {ps.name: list(ps.pods) for ps in runtime.list()}
    blocks = load_plugins()
    decisions = []
    for studio in running:
        decision = _look(studio, pods_by_name.get(pod_set_name(studio)) or [], settings, blocks, store, now=now)
        if decision.action == "stop" and not dry_run:
            decision.stopped = _stop_culled(studio, decision, settings, blocks, store, now=now)
            if decision.stopped:
                say(f"studio {studio.id} ({studio.project}, {studio.owner}): {decision.reason}")
        decisions.append(decision)
    return decisions


def _plan(studio: Studio, store: Store):
    from codestudio.errors import CodestudioError
    from codestudio.runtime.lifecycle import plan_studio

    try:
        return plan_studio(studio, store)
    except CodestudioError:
        return None  # a removed template: the data dir's defaults still apply


def _look(studio: Studio, pods, settings, blocks, store: Store, *, now) -> Decision:
    from codestudio.runtime.activity import read_activity, record_activity
    from codestudio.runtime.limits import effective_policy

    plan = _plan(studio, store)
    policy = effective_policy(plan.state if plan else _NoTemplate, settings)
    base = Decision(studio.id, studio.project, studio.owner, "keep", "")
    if not pods or not all(p.running for p in pods):
        base.action, base.reason = "skip", "its pod is not running (reconciled by the next command that reads it)"
        return base
    moment = time.time() if now is None else now
    if policy["idle_timeout"] is None and policy["max_lifetime"] is None:
        base.reason = "no idle_timeout or max_lifetime"
        return base
    reading = read_activity(studio, pods[0], template=plan.template if plan else None, blocks=blocks, now=moment)
    studio = record_activity(store, studio, reading)
    base.action, base.reason, base.idle_seconds = decide(studio, policy, moment, activity_known=reading.reachable)
    base.activity_source = studio.activity_source
    return base


class _NoTemplate:
    """Stands in for a build state when the template cannot be planned: no per-template policy."""

    class lifecycle:  # noqa: N801
        idle_timeout = None
        max_lifetime = None


def _stop_culled(studio: Studio, decision: Decision, settings, blocks, store: Store, *, now) -> bool:
    """Stop ``studio`` for ``decision`` under its lock, deciding again first; True if this call stopped it."""
    from codestudio.errors import RuntimeFailure
    from codestudio.locks import is_locked
    from codestudio.runtime.current import get_runtime
    from codestudio.runtime.lifecycle import lock_path, pod_set_name, studio_lock
    from codestudio.runtime.lifecycle.stop import stop_locked
    from codestudio.runtime.records import get_studio, set_state

    if is_locked(lock_path(studio.id)):
        # A user's command holds it (a stop, a sync): leave it to them; the next round decides again.
        decision.action, decision.reason = "skip", f"another command holds studio {studio.id}; {decision.reason}"
        return False
    runtime = get_runtime()
    with studio_lock(studio.id):
        fresh = get_studio(studio.id, store=store)
        if fresh.state != RUNNING or fresh.token != studio.token:
            decision.action, decision.reason = "skip", f"it was {fresh.state.lower()} meanwhile"
            return False
        pods = runtime.pods(pod_set_name(fresh))
        again = _look(fresh, pods, settings, blocks, store, now=now)
        if again.action != "stop":  # used meanwhile: a request just now wins
            decision.action, decision.reason, decision.idle_seconds = again.action, again.reason, again.idle_seconds
            return False
        decision.reason = again.reason
        try:
            stop_locked(get_studio(studio.id, store=store), runtime, store, say=lambda m: None, reason="culled")
        except RuntimeFailure as exc:  # its files could be neither pulled nor saved: it keeps running
            decision.action, decision.reason = "skip", f"not stopped: {str(exc).splitlines()[0]}"
            return False
        after = get_studio(studio.id, store=store)
        if after.state != STOPPED:
            return False
        message = decision.reason + (f"; {after.message}" if after.message else "")
        set_state(store, studio.id, STOPPED, message[:1000], stop_reason=decision.reason)
    return True


# --------------------------------------------------------------------------
# Webapps: max_lifetime only (they serve other people: never culled for idleness)


def webapp_started(w) -> float:
    """When the webapp's current generation was launched (publish, start or update), else its state's start."""
    try:
        return (w.dir / f"gen-{w.generation}.json").stat().st_mtime
    except OSError:
        return w.state_since


def cull_webapps(*, dry_run: bool = False, now: float | None = None, store: Store | None = None,
                 say=None) -> list[Decision]:
    """Stop RUNNING webapps past their template's (or the data dir's default) ``max_lifetime``."""
    from codestudio.access import Identity
    from codestudio.errors import CodestudioError
    from codestudio.runtime.limits import effective_policy, load_settings

    try:
        from codestudio.webapps import lifecycle as webapp_lifecycle
        from codestudio.webapps import records as webapp_records
    except ModuleNotFoundError:
        return []
    store = store or Store.default()
    say = say or (lambda m: None)
    settings = load_settings()
    moment = time.time() if now is None else now
    out = []
    for w in webapp_records.all_webapps(store):
        if w.state != "RUNNING":  # a rollout, a start or a stop in progress: the next round decides
            continue
        try:
            state = webapp_lifecycle._plan(w.template_id, store).state
        except CodestudioError:
            state = _NoTemplate
        lifetime = effective_policy(state, settings)["max_lifetime"]
        decision = Decision(f"webapp {w.id}", w.project, w.owner, "keep", "no max_lifetime")
        started = webapp_started(w)
        if lifetime is not None:
            if moment - started >= lifetime:
                decision.action = "stop"
                decision.reason = (f"stopped after {format_duration(moment - started)} running "
                                   f"(max_lifetime {format_duration(lifetime)})")
            else:
                decision.reason = f"running {format_duration(moment - started)} of {format_duration(lifetime)}"
        if decision.action == "stop" and not dry_run:
            # As its owner would: the webapp's own stop (replicas drained, definition kept).
            stopped = webapp_lifecycle.stop(Identity(w.owner, False, w.owner), w.key, store=store)
            if stopped.state == "STOPPED":
                webapp_records.update_webapp(store, stopped, message=decision.reason)
                decision.stopped = True
                say(f"webapp {w.key} ({w.owner}): {decision.reason}")
        out.append(decision)
    return out


def serve_forever(stop_event, *, interval: float | None = None, store: Store | None = None) -> None:
    """The server's culler loop (a thread): :func:`cull` every ``cull_interval`` until ``stop_event`` is set."""
    from codestudio.quantities import duration_seconds
    from codestudio.runtime.limits import load_settings

    while not stop_event.is_set():
        try:
            every = interval or duration_seconds(load_settings().cull_interval)
            cull(store=store, say=_log)
            cull_webapps(store=store, say=_log)
        except Exception as exc:  # noqa: BLE001 - one bad round never stops the loop
            _log(f"culler: {type(exc).__name__}: {exc}")
            every = interval or 60.0
        stop_event.wait(every)
