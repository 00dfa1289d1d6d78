"""Readiness probes run by the engine through a studio's published loopback port.

A TCP probe passes when a connection is accepted; an HTTP probe when a GET
answers 200-399 (as Kubernetes counts it). Probes are retried with a
back-off starting at a few milliseconds (a studio usually becomes ready
between two probes, and the first ones are cheap) and capped, so that the
time from "server listening" to RUNNING stays small without busy-looping.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

FIRST_DELAY = 0.003
MAX_DELAY = 0.25
FACTOR = 1.5
ATTEMPT_TIMEOUT = 2.0


@dataclass(frozen=True)
class ProbeTarget:
    kind: str  # "tcp" | "http"
    host: str
    port: int  # host (published) port
    path: str | None = None  # HTTP path, ${baseUrl} already expanded
    #: The pod's guard secret: probes go through the guard (a TCP probe asks it whether
    #: the server accepts connections; docs/runner.md, "The guard").
    guard_secret: str | None = None

    def describe(self) -> str:
        return f"HTTP GET http://{self.host}:{self.port}{self.path}" if self.kind == "http" else f"TCP {self.host}:{self.port}"


def probe_once(target: ProbeTarget, timeout: float = ATTEMPT_TIMEOUT) -> tuple[bool, str]:
    """One attempt: (passed, what happened)."""
    headers = {"User-Agent": "codestudio-probe"}
    if target.guard_secret is not None:
        headers["X-Codestudio-Guard"] = target.guard_secret
    if target.kind == "tcp" and target.guard_secret is not None:
        headers["X-Codestudio-Probe"] = "tcp"
    elif target.kind == "tcp":
        try:
            with socket.create_connection((target.host, target.port), timeout=timeout) as s:
                # podman's port forwarding accepts before the server inside does; a
                # server that is not listening resets right away, so look for that.
                s.settimeout(0.0)
                try:
                    if s.recv(1, socket.MSG_PEEK) == b"":
                        return False, "connection closed"
                except BlockingIOError:
                    pass
            return True, "connected"
        except OSError as exc:
            return False, str(exc)
    conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        conn.request("GET", target.path or "/", headers=headers)
        resp = conn.getresponse()
        resp.read(65536)
        if target.kind == "tcp":
            return resp.status == 204, "connected" if resp.status == 204 else f"guard: HTTP {resp.status}"
        ok = 200 <= resp.status < 400
        return ok, f"HTTP {resp.status}"
    except (OSError, http.client.HTTPException) as exc:
        return False, str(exc) or type(exc).__name__
    finally:
        conn.close()


def wait_ready(
    target: ProbeTarget,
    timeout: float,
    *,
    alive: Callable[[], bool] | None = None,
    alive_every: float = 2.0,
) -> tuple[bool, str]:
    """Probe until it passes or ``timeout`` seconds pass: (ready, last result).

    ``alive`` (checked every ``alive_every`` seconds) stops waiting early when
    the container is gone.
    """
    deadline = time.monotonic() + timeout
    delay = FIRST_DELAY
    next_alive = time.monotonic() + alive_every
    last = "not probed"
    while True:
        ok, last = probe_once(target, timeout=min(ATTEMPT_TIMEOUT, max(0.05, deadline - time.monotonic())))
        if ok:
            return True, last
        now = time.monotonic()
        if now >= deadline:
            return False, last
        if alive is not None and now >= next_alive:
            if not alive():
                return False, f"the container stopped ({last})"
            next_alive = time.monotonic() + alive_every
        time.sleep(min(delay, max(0.0, deadline - now)))
        delay = min(delay * FACTOR, MAX_DELAY)
