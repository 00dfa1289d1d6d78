"""A running studio's last activity: the pod's guard and the blocks' ``report_activity`` hooks.

Where activity is measured (docs/lifecycle.md, "Activity"): the guard in
front of every entrypoint port (engine/codestudio/runner/runner.py) sees
every byte between the gateway and the studio's servers, in both runtimes,
and counts a request, a request body, or a websocket *data* frame from the
client; an open websocket that only exchanges pings is not activity, and
neither are the engine's own probes. nginx would only log a websocket when
it closes. The engine asks the guard with one small HTTP request per
studio (``X-Codestudio-Probe: activity``, carrying the guard secret), which
answers ages, not clock times, so the pod's clock never matters.

Blocks add tool-level activity (a busy kernel with no tab open): the
``report_activity`` hook, given a :class:`~codestudio.blockapi.StudioConnection`
whose requests the guard does not count.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from dataclasses import dataclass

from codestudio.blockapi import StudioConnection
from codestudio.runtime.model import Studio

GUARD_HEADER = "X-Codestudio-Guard"
PROBE_HEADER = "X-Codestudio-Probe"
TIMEOUT = 5.0  # generous: a busy host answers late, and an unanswered guard means "not culled for idleness"
GATEWAY_SOURCE = "gateway"


@dataclass(frozen=True)
class Reading:
    """What one look at a running studio found."""

    #: The latest activity known (epoch seconds), or None when nothing was ever active.
    last: float | None
    #: Where it came from: "gateway" (requests, websocket messages) or a block ("jupyterlab: 1 kernel busy").
    source: str | None
    #: Processes the kernel killed for memory in the studio's container since it started (None: unknown).
    oom_kills: int | None = None
    memory_limit: int | None = None
    #: Whether the guard answered at all.
    reachable: bool = False


def guard_secret(studio: Studio) -> str:
    """The secret the studio's guard requires (derived from the start's session secret)."""
    from codestudio.gateway.config import StudioRoutes

    return StudioRoutes(project_key=studio.project, studio_id=studio.id, owner=studio.owner,
                        session_secret=studio.token, ports=(), actions=()).guard_secret


def _get(host: str, port: int, path: str, secret: str, probe: str, timeout: float) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={GUARD_HEADER: secret, PROBE_HEADER: probe, "User-Agent": "codestudio-activity"})
        resp = conn.getresponse()
        return resp.status, resp.read(1 << 20)
    except http.client.HTTPException as exc:
        raise OSError(str(exc) or type(exc).__name__) from None
    finally:
        conn.close()


class GuardConnection(StudioConnection):
    """:class:`~codestudio.blockapi.StudioConnection` over the pod's published guard ports."""

    def __init__(self, studio: Studio, endpoints: dict, secret: str):
        self.studio, self.endpoints, self.secret = studio, endpoints, secret

    def browser_path(self, port: int) -> str:
        return f"/code-studios/{self.studio.project}/{self.studio.id}/{port}"

    def get(self, port: int, path: str, *, timeout: float = TIMEOUT) -> tuple[int, bytes]:
        endpoint = self.endpoints.get(port)
        if endpoint is None:
            raise OSError(f"studio {self.studio.id} has no port {port}")
        return _get(endpoint.host, endpoint.port, path, self.secret, "quiet", timeout)

    def guard_report(self) -> dict | None:
        """The guard's activity report (any guard port: one runner serves them all), or None."""
        for endpoint in self.endpoints.values():
            try:
                status, body = _get(endpoint.host, endpoint.port, "/", self.secret, "activity", TIMEOUT)
            except OSError:
                continue
            if status == 200:
                try:
                    doc = json.loads(body)
                except ValueError:
                    return None
                # A runner from before activity reports passes the request on to the server instead.
                return doc if isinstance(doc, dict) and isinstance(doc.get("ports"), dict) else None
        return None


def _warn(message: str) -> None:
    from codestudio.text import printable

    print(printable(f"warning: {message}"), file=sys.stderr, flush=True)


def read_activity(studio: Studio, pod, *, template=None, blocks=None, now: float | None = None) -> Reading:
    """Ask the studio's guard and every block implementing ``report_activity``; nothing is stored.

    ``pod`` is the studio's :class:`~codestudio.runtime.base.Pod` (its
    endpoints); ``template`` its planned template (None: no block reports).
    """
    from codestudio.plan import call_hook

    now = time.time() if now is None else now
    conn = GuardConnection(studio, dict(pod.endpoints), guard_secret(studio))
    report = conn.guard_report()
    last = source = None
    if report is not None and isinstance(report.get("idle"), int | float):
        last, source = now - float(report["idle"]), GATEWAY_SOURCE
    if template is not None and blocks is not None:
        for block in template.blocks:
            plugin = blocks.by_type.get(block.type)
            hook = getattr(blocks.pm.hook, "report_activity", None)
            if plugin is None or hook is None or not any(i.plugin is plugin for i in hook.get_hookimpls()):
                continue
            try:
                activity = call_hook(blocks, "report_activity", block, studio=conn)
            except Exception as exc:  # noqa: BLE001 - a tool that cannot say is no activity, never a failure
                _warn(f"studio {studio.id}: {block.where}: report_activity: {exc}")
                continue
            if activity is None:
                continue
            at = now if activity.busy else activity.at
            if at is not None and (last is None or at > last):
                last, source = min(at, now), f"{block.label}: {activity.detail}" if activity.detail else block.label
    oom = report.get("oom_kills") if report else None
    limit = report.get("memory_limit") if report else None
    return Reading(last, source, oom if isinstance(oom, int) else None, limit if isinstance(limit, int) else None,
                   report is not None)


def record_activity(store, studio: Studio, reading: Reading) -> Studio:
    """Keep the newer of the stored and the read activity; return the studio as now stored."""
    import dataclasses

    if reading.last is None or (studio.last_activity is not None and reading.last <= studio.last_activity):
        return studio
    with store.connect() as conn:
        # Only ever forward, and only while the same start runs (a culler's late write never lands on a new start).
        conn.execute("UPDATE studios SET last_activity = ?, activity_source = ? WHERE id = ? AND token IS ? "
                     "AND (last_activity IS NULL OR last_activity < ?)",
                     (reading.last, reading.source, studio.id, studio.token, reading.last))
    return dataclasses.replace(studio, last_activity=reading.last, activity_source=reading.source)


def describe_activity(studio: Studio, now: float | None = None) -> str | None:
    """``3 min ago (gateway)`` for ``studio status``; None when nothing was seen."""
    from codestudio.quantities import format_duration

    if studio.last_activity is None:
        return None
    now = time.time() if now is None else now
    return f"{format_duration(max(0.0, now - studio.last_activity))} ago ({studio.activity_source or '?'})"
