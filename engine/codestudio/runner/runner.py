#!/usr/bin/env python3
"""codestudio runner: the technical entrypoint of every studio container.

This file owns what happens inside a running container: reading
``runner.json``, building the environment of the template's processes
(expanding ``${NAME}`` references), starting the entrypoints of the current
mode, forwarding their output with a ``[label]`` prefix, restarting the ones
that fail with back-off, reaping zombies when it runs as PID 1, stopping
everything gracefully on SIGTERM, and running the template's actions.

It is copied into images as ``/opt/codestudio/runner.py`` and run by the
image's ``python3``, so it must only use the standard library (Python 3.11)
and never import ``codestudio``. See docs/runner.md for the user-facing
description of its commands and environment variables.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Mapping

DEFAULT_RUNNER_JSON = "/opt/codestudio/runner.json"
DEFAULT_WORKSPACE = "/home/codestudio/workspace"
DEFAULT_HOME = "/home/codestudio"
SCHEMA = 1
MODES = ("studio", "webapp")
RUNNER_LABEL = "runner"

# Exit statuses shared with the engine CLI: 2 is bad input.
EXIT_USAGE = 2

# A line longer than this is forwarded in pieces so one chatty child without
# newlines cannot make the runner hold unbounded memory.
MAX_LINE = 64 * 1024
# A partial line is forwarded after this many seconds without more output, so
# prompts and progress text written without a newline still show up.
PARTIAL_LINE_FLUSH = 0.5

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_NAME_RE = re.compile(rf"^{_NAME}$")
# ``$${NAME}`` is the escape for a literal ``${NAME}`` (like Kubernetes' ``$$(VAR)``).
_REF_RE = re.compile(rf"\$(\$?)\{{({_NAME})\}}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class ConfigError(Exception):
    """runner.json or one of the runner's environment variables is invalid."""


# --------------------------------------------------------------------------
# runner.json


def _check_env_map(value: Any, where: str, problems: list[str]) -> None:
    if not isinstance(value, dict):
        problems.append(f"{where}: must be an object of NAME: value strings")
        return
    for name, val in value.items():
        if not _NAME_RE.match(name):
            problems.append(f"{where}: {name!r} is not a valid environment variable name")
        if not isinstance(val, str):
            problems.append(f"{where}.{name}: must be a string, got {type(val).__name__}")
        elif "\x00" in val:
            problems.append(f"{where}.{name}: must not contain a NUL character")


def _check_port(value: Any, where: str, problems: list[str], nullable: bool) -> None:
    if value is None and nullable:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        problems.append(f"{where}: must be a port number 1-65535, got {value!r}")


def _check_bool(obj: dict, key: str, where: str, problems: list[str]) -> None:
    if key in obj and not isinstance(obj[key], bool):
        problems.append(f"{where}.{key}: must be true or false, got {obj[key]!r}")


def _check_label(value: Any, where: str, problems: list[str]) -> None:
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: must be a non-empty string")
    elif _CONTROL_RE.search(value):
        problems.append(f"{where}: {value!r} contains a newline or another control character")


def _check_entrypoint(ep: Any, where: str, problems: list[str]) -> None:
    if not isinstance(ep, dict):
        problems.append(f"{where}: must be an object")
        return
    _check_label(ep.get("label"), f"{where}.label", problems)
    command = ep.get("command")
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(a, str) and "\x00" not in a for a in command)
    ):
        problems.append(f"{where}.command: must be a non-empty list of strings (an argv)")
    _check_port(ep.get("port"), f"{where}.port", problems, nullable=True)
    for key in ("expose_html", "launch_in_webapp"):
        _check_bool(ep, key, where, problems)
    if ep.get("proxied_subpath", "/") not in ("/", "$request_uri"):
        problems.append(
            f"{where}.proxied_subpath: must be '/' or '$request_uri', "
            f"got {ep.get('proxied_subpath')!r}"
        )
    if "env" in ep:
        _check_env_map(ep["env"], f"{where}.env", problems)
    cwd = ep.get("cwd")
    if cwd is not None and (not isinstance(cwd, str) or not cwd.startswith("/")):
        problems.append(f"{where}.cwd: must be an absolute path or null, got {cwd!r}")


def _check_action(action: Any, where: str, problems: list[str]) -> None:
    if not isinstance(action, dict):
        problems.append(f"{where}: must be an object")
        return
    name = action.get("name")
    if not isinstance(name, str) or not name or _CONTROL_RE.search(name) or " " in name:
        problems.append(f"{where}.name: must be a non-empty string without spaces, got {name!r}")
    _check_label(action.get("label", name), f"{where}.label", problems)
    if not isinstance(action.get("description", ""), str):
        problems.append(f"{where}.description: must be a string")
    command = action.get("command")
    if not isinstance(command, str) or not command.strip() or "\x00" in command:
        problems.append(f"{where}.command: must be a non-empty shell command string")
    _check_bool(action, "wait", where, problems)


def validate_config(doc: Any) -> list[str]:
    """Return one line per problem in a parsed runner.json (empty when valid).

    Unknown keys are accepted so an older runner can read a newer file.
    """
    if not isinstance(doc, dict):
        return ["runner.json: the top level must be an object"]
    problems: list[str] = []
    if doc.get("schema") != SCHEMA:
        problems.append(f"schema: must be {SCHEMA}, got {doc.get('schema')!r}")
    if "template" in doc and not isinstance(doc["template"], str):
        problems.append("template: must be a string")
    if "env" in doc:
        _check_env_map(doc["env"], "env", problems)
    entrypoints = doc.get("entrypoints", [])
    if not isinstance(entrypoints, list):
        problems.append("entrypoints: must be a list")
    else:
        for i, ep in enumerate(entrypoints):
            _check_entrypoint(ep, f"entrypoints[{i}]", problems)
    actions = doc.get("actions", [])
    if not isinstance(actions, list):
        problems.append("actions: must be a list")
    else:
        seen: set[str] = set()
        for i, action in enumerate(actions):
            _check_action(action, f"actions[{i}]", problems)
            name = action.get("name") if isinstance(action, dict) else None
            if isinstance(name, str):
                if name in seen:
                    problems.append(f"actions[{i}].name: {name!r} is used by an earlier action")
                seen.add(name)
    probe = doc.get("probe")
    if probe is not None:
        if not isinstance(probe, dict):
            problems.append("probe: must be an object or null")
        else:
            if probe.get("kind") not in ("tcp", "http"):
                problems.append(f"probe.kind: must be 'tcp' or 'http', got {probe.get('kind')!r}")
            _check_port(probe.get("port"), "probe.port", problems, nullable=False)
            if probe.get("url") is not None and not isinstance(probe.get("url"), str):
                problems.append("probe.url: must be a string or null")
    for key in ("ports", "exposed_ports"):
        ports = doc.get(key, [])
        if not isinstance(ports, list):
            problems.append(f"{key}: must be a list of port numbers")
        else:
            for i, port in enumerate(ports):
                _check_port(port, f"{key}[{i}]", problems, nullable=False)
    return problems


def load_config(path: str) -> dict:
    """Read and validate runner.json; raise ConfigError naming every problem."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from None
    problems = validate_config(doc)
    if problems:
        raise ConfigError(f"{path} is invalid:\n  " + "\n  ".join(problems))
    return doc


# --------------------------------------------------------------------------
# Environment


def expand(text: str, env: Mapping[str, str] | Callable[[str], str | None]) -> str:
    """Replace ``${NAME}`` with env[NAME]; ``$${NAME}`` gives a literal ``${NAME}``.

    ``env`` is a mapping or a lookup function returning None for an unknown
    name. A name that is not defined stays as written, so a typo shows up in
    the value instead of silently becoming an empty string.
    """
    lookup = env if callable(env) else env.get

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "${" + m.group(2) + "}"
        value = lookup(m.group(2))
        return m.group(0) if value is None else value

    return _REF_RE.sub(sub, text)


def _layer(env: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``env`` updated with ``extra``, whose values are expanded.

    A reference to another name of ``extra`` gets that name's expanded value
    whatever the order (render writes runner.json with sorted keys, so file
    order means nothing); a reference to the value's own name, or one that
    would close a cycle, gets the value from ``env``. So
    PATH="/opt/x/bin:${PATH}" extends the inherited PATH.
    """
    resolved: dict[str, str] = {}
    visiting: set[str] = set()

    def value_of(name: str) -> str:
        if name not in resolved:
            visiting.add(name)

            def lookup(ref: str) -> str | None:
                if ref in extra and ref not in visiting:
                    return value_of(ref)
                return env.get(ref)

            resolved[name] = expand(extra[name], lookup)
            visiting.discard(name)
        return resolved[name]

    out = dict(env)
    for name in extra:
        out[name] = value_of(name)
    return out


def base_env(container_env: Mapping[str, str]) -> dict[str, str]:
    """The container environment, with the runtime's browser paths expanded.

    In webapp mode the runtime sets DKU_CODE_STUDIO_BROWSER_PATH to a value
    containing ``${K8S_POD_NAME}``, which only exists inside the pod. Other
    container variables are passed through untouched: they are not ours.
    """
    env = dict(container_env)
    for name, value in container_env.items():
        if name == "DKU_CODE_STUDIO_BROWSER_PATH" or name.startswith(
            "DKU_CODE_STUDIO_BROWSER_PATH_"
        ):
            env[name] = expand(value, container_env)
    return env


def global_env(config: Mapping[str, Any], container_env: Mapping[str, str]) -> dict[str, str]:
    """The environment of actions: container env, then runner.json ``env``."""
    return _layer(base_env(container_env), config.get("env") or {})


def entrypoint_env(
    config: Mapping[str, Any], entrypoint: Mapping[str, Any], container_env: Mapping[str, str]
) -> dict[str, str]:
    """The environment of one entrypoint: the global env, then its own ``env``."""
    return _layer(global_env(config, container_env), entrypoint.get("env") or {})


def current_mode(container_env: Mapping[str, str]) -> str:
    mode = container_env.get("CODESTUDIO_MODE") or "studio"
    if mode not in MODES:
        raise ConfigError(f"CODESTUDIO_MODE must be 'studio' or 'webapp', got {mode!r}")
    return mode


def selected_entrypoints(config: Mapping[str, Any], mode: str) -> list[dict]:
    """The entrypoints to start in ``mode``: all in a studio, launch_in_webapp ones in a webapp."""
    entrypoints = config.get("entrypoints") or []
    if mode == "webapp":
        return [ep for ep in entrypoints if ep.get("launch_in_webapp", False)]
    return list(entrypoints)


def _env_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{name} must be a finite number of seconds >= 0, got {raw!r}")
    return value


def default_cwd(env: Mapping[str, str]) -> str:
    """The workspace if it exists, else the home directory, else /."""
    workspace = env.get("CODESTUDIO_WORKSPACE") or DEFAULT_WORKSPACE
    if os.path.isdir(workspace):
        return workspace
    home = env.get("HOME") or DEFAULT_HOME
    return home if os.path.isdir(home) else "/"


# --------------------------------------------------------------------------
# Output


class Output:
    """Serialises whole lines from many threads onto the runner's stdout."""

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer
        self._lock = threading.Lock()

    def lines(self, label: str, lines: list[bytes]) -> None:
        prefix = f"[{label}] ".encode()
        # Children may write any bytes; keep them readable and lossless
        # without emitting invalid UTF-8 into the container log.
        data = b"".join(
            prefix + line.decode("utf-8", "backslashreplace").encode("utf-8") + b"\n"
            for line in lines
        )
        with self._lock:
            try:
                self._stream.write(data)
                self._stream.flush()
            except (OSError, ValueError):
                # Nobody reads our output any more: keep draining children
                # anyway so they never block on a full pipe.
                pass

    def log(self, message: str) -> None:
        self.lines(RUNNER_LABEL, [line.encode() for line in message.split("\n")])


def forward(fd: int, label: str, out: Output) -> None:
    """Copy a child's output from ``fd`` to ``out`` line by line until EOF."""
    pending = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    try:
        while True:
            if pending and not poller.poll(PARTIAL_LINE_FLUSH * 1000):
                out.lines(label, [pending])
                pending = b""
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            parts = (pending + chunk).split(b"\n")
            pending = parts.pop()
            while len(pending) > MAX_LINE:
                parts.append(pending[:MAX_LINE])
                pending = pending[MAX_LINE:]
            if parts:
                out.lines(label, parts)
        if pending:
            out.lines(label, [pending])
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# Supervision


class Child:
    """One entrypoint and the state of its current process."""

    def __init__(self, label: str, command: list[str], env: dict[str, str], cwd: str) -> None:
        self.label = label
        self.command = command
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.failures = 0  # consecutive failures, drives the back-off
        self.restarts = 0
        self.restart_at: float | None = None
        self.reader: threading.Thread | None = None


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with status {code}"


def _become_subreaper() -> None:
    # When the runner is not PID 1 (podman --init, tests), orphaned
    # grandchildren would otherwise be reparented past it; as a subreaper
    # it reaps them and can still signal their process groups.
    if os.getpid() == 1 or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError, ImportError):
        pass


class Supervisor:
    """Starts, restarts and stops the entrypoints; reaps every child.

    Only this class calls ``waitpid``, and always as ``waitpid(-1, WNOHANG)``
    from the main thread: a status for one of our entrypoints is dispatched
    to it (and stored on its Popen so subprocess never waits again), any
    other pid is an orphan we adopted and is simply discarded. Spawning and
    reaping happen in the same thread, so a child can never be reaped before
    its pid is registered.
    """

    def __init__(self, children: list[Child], out: Output, settings: Mapping[str, float]) -> None:
        self.children = children
        self.out = out
        self.grace = settings["grace"]
        self.backoff_base = settings["backoff_base"]
        self.backoff_max = settings["backoff_max"]
        self.backoff_reset = settings["backoff_reset"]
        self.by_pid: dict[int, Child] = {}
        # Process groups we created that may still have members; a group
        # outlives its leader when the leader leaves background processes.
        self.groups: set[int] = set()
        self.signals: list[int] = []
        self.stopping = False
        self._wake_r = -1
        self._wake_w = -1

    # -- signals --------------------------------------------------------

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)

    def install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # The C-level handler writes to this pipe, so a blocking select wakes
        # up on SIGCHLD/SIGTERM even between Python bytecodes.
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _sleep(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds or until a signal arrives."""
        if timeout > 0:
            select.select([self._wake_r], [], [], timeout)
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _take_stop_request(self) -> bool:
        stop = any(s != signal.SIGCHLD for s in self.signals)
        self.signals.clear()
        return stop

    # -- processes ------------------------------------------------------

    def spawn(self, child: Child) -> None:
        child.restart_at = None
        r, w = os.pipe()
        try:
            proc = subprocess.Popen(
                child.command,
                stdin=subprocess.DEVNULL,
                stdout=w,
                stderr=w,
                cwd=child.cwd,
                env=child.env,
                process_group=0,
            )
        except (OSError, ValueError) as e:
            os.close(r)
            os.close(w)
            self.out.log(f"{child.label}: cannot start {child.command[0]!r}: {e}")
            child.started_at = time.monotonic()
            self._schedule_restart(child, "failed to start")
            return
        os.close(w)
        child.proc = proc
        child.started_at = time.monotonic()
        self.by_pid[proc.pid] = child
        self.groups.add(proc.pid)
        child.reader = threading.Thread(
            target=forward, args=(r, child.label, self.out), name=f"forward-{proc.pid}", daemon=True
        )
        child.reader.start()
        self.out.log(f"started {child.label} (pid {proc.pid}): {shlex.join(child.command)}")

    def _schedule_restart(self, child: Child, why: str) -> None:
        now = time.monotonic()
        if now - child.started_at >= self.backoff_reset:
            child.failures = 0
        # The exponent is capped: 2**1024 no longer converts to a float, and an entrypoint that
        # keeps failing with a small back-off reaches that within minutes (the runner, PID 1, died).
        delay = min(self.backoff_base * (2 ** min(child.failures, 60)), self.backoff_max)
        child.failures += 1
        child.restarts += 1
        child.restart_at = now + delay
        self.out.log(f"{child.label} {why}; restart #{child.restarts} in {delay:g}s")

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.by_pid.pop(pid, None)
            if child is None:
                continue  # an adopted orphan: reaping it is all we owe it
            code = os.waitstatus_to_exitcode(status)
            assert child.proc is not None
            child.proc.returncode = code
            self._on_exit(child, code)

    def _on_exit(self, child: Child, code: int) -> None:
        ran = time.monotonic() - child.started_at
        if child.reader is not None:
            # Let the last lines of output come before the exit message; a
            # background process still holding the pipe only costs this wait.
            child.reader.join(timeout=0.1)
        what = f"{_describe_exit(code)} after {ran:.1f}s"
        if self.stopping:
            self.out.log(f"{child.label} {what}")
        elif code == 0:
            self.out.log(f"{child.label} {what}; not restarted")
        else:
            self._schedule_restart(child, what)

    def _prune_groups(self) -> None:
        for pgid in list(self.groups):
            if pgid in self.by_pid:
                continue  # leader not reaped yet: the group id is still ours
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                self.groups.discard(pgid)
            except PermissionError:
                pass

    def _signal_groups(self, sig: int) -> None:
        for pgid in list(self.groups):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                self.groups.discard(pgid)
            except PermissionError:
                pass

    # -- main loop ------------------------------------------------------

    def wait_for_sync(self, flag: str, timeout: float) -> bool:
        """Wait for the sync flag file; False if asked to stop meanwhile."""
        if os.path.exists(flag):
            return True
        self.out.log(f"waiting up to {timeout:g}s for file sync ({flag})")
        deadline = time.monotonic() + timeout
        while not os.path.exists(flag):
            self.reap()
            if self._take_stop_request():
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.out.log(f"warning: {flag} did not appear within {timeout:g}s; starting anyway")
                return True
            self._sleep(min(0.2, remaining))
        self.out.log("file sync done")
        return True

    def run(self) -> None:
        """Start every child and supervise until a stop signal, then stop all."""
        for child in self.children:
            self.spawn(child)
        while True:
            self.reap()
            if self._take_stop_request():
                break
            now = time.monotonic()
            for child in self.children:
                if child.restart_at is not None and child.restart_at <= now:
                    self.spawn(child)
            self._prune_groups()
            timeout = 1.0
            for child in self.children:
                if child.restart_at is not None:
                    timeout = min(timeout, max(0.0, child.restart_at - now))
            self._sleep(timeout)
        self.stop()

    def stop(self) -> None:
        """SIGTERM every process group, SIGKILL what is left after the grace period."""
        self.stopping = True
        for child in self.children:
            child.restart_at = None
        self._prune_groups()
        if self.groups:
            self.out.log(f"stopping: SIGTERM to {len(self.groups)} process group(s)")
            self._signal_groups(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while True:
            self.reap()
            self._prune_groups()
            if not self.groups:
                break
            # A second SIGTERM/SIGINT means "now": skip the rest of the grace.
            if self._take_stop_request() or time.monotonic() >= deadline:
                self.out.log(f"SIGKILL to {len(self.groups)} process group(s) still running")
                self._signal_groups(signal.SIGKILL)
                deadline = float("inf")  # keep reaping until every group is gone
            self._sleep(0.05)
        for child in self.children:
            if child.reader is not None:
                # Output written just before exit is still in the pipe.
                child.reader.join(timeout=1.0)
        self.out.log("stopped")


# --------------------------------------------------------------------------
# Guard: only the gateway reaches the entrypoints' ports


GUARD_PORTS_VAR = "CODESTUDIO_GUARD_PORTS"
GUARD_SECRET_VAR = "CODESTUDIO_GUARD_SECRET"
#: Never passed on to entrypoints (they can still read /proc/1/environ: see docs/security.md).
GUARD_VARS = (GUARD_PORTS_VAR, GUARD_SECRET_VAR)
#: The request header carrying the guard secret (the gateway's ``GUARD_HEADER``).
GUARD_HEADER = "X-Codestudio-Guard"
#: With a valid secret, ``X-Codestudio-Probe: tcp`` asks the guard whether its server
#: accepts connections (the engine's TCP readiness probe); nothing reaches the server.
#: ``activity`` asks for the guard's activity report (answered by the guard itself);
#: ``quiet`` passes the request on without counting it as activity (the engine's own
#: requests to a tool, e.g. JupyterLab's kernel list).
PROBE_HEADER = "X-Codestudio-Probe"
PROBE_VERDICTS = {b"tcp": "probe", b"activity": "activity", b"quiet": "quiet"}
MAX_HEAD = 64 * 1024
HEAD_TIMEOUT = 30.0
UPSTREAM_HOSTS = ("127.0.0.1", "::1")
_OWS = b" \t"


def parse_guard_ports(raw: str) -> list[tuple[int, int]]:
    """``"8888:61000,8080:61001"`` (server port:guard port) -> [(8888, 61000), (8080, 61001)]."""
    pairs: list[tuple[int, int]] = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        server, sep, guard = item.partition(":")
        if not sep or not server.isdigit() or not guard.isdigit():
            raise ConfigError(f"{GUARD_PORTS_VAR}: {item!r} is not SERVER_PORT:GUARD_PORT")
        pair = (int(server), int(guard))
        if not all(1 <= p <= 65535 for p in pair) or pair[0] == pair[1]:
            raise ConfigError(f"{GUARD_PORTS_VAR}: {item!r}: ports must be 1-65535 and differ")
        pairs.append(pair)
    return pairs


def check_head(head: bytes, secret: bytes | None) -> tuple[str, bytes]:
    """Judge one request head (up to and including the blank line).

    Returns ``(verdict, head without the guard header)``; ``verdict`` is
    ``"pass"``, ``"refuse"`` or one of :data:`PROBE_VERDICTS` (``"probe"``,
    ``"activity"``, ``"quiet"``). It passes only when every guard header line
    carries the secret and there is at least one.
    """
    import hmac

    lines = head.split(b"\r\n")
    kept: list[bytes] = []
    good = bad = 0
    probe: str | None = None
    guard = GUARD_HEADER.lower().encode()
    probe_name = PROBE_HEADER.lower().encode()
    for i, line in enumerate(lines):
        name, sep, value = line.partition(b":")
        if i and sep and name.lower() == guard:
            if secret and hmac.compare_digest(value.strip(_OWS), secret):
                good += 1
            else:
                bad += 1
            continue
        if i and sep and name.lower() == probe_name and value.strip(_OWS).lower() in PROBE_VERDICTS:
            probe = PROBE_VERDICTS[value.strip(_OWS).lower()]
            continue
        kept.append(line)
    if good == 0 or bad:
        return "refuse", head
    return (probe or "pass"), b"\r\n".join(kept)


def is_websocket_upgrade(head: bytes) -> bool:
    """Whether a request head asks to upgrade the connection to a websocket."""
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


class WebSocketFrames:
    """Follows the frames of one direction of a websocket, fed in chunks as they arrive.

    :meth:`feed` says whether a data frame (text, binary or continuation)
    started in the chunk: that is activity. Control frames (ping, pong,
    close), which browsers and servers exchange on an open but silent
    websocket, are not. Payloads are skipped, never copied.
    """

    def __init__(self) -> None:
        self.head = b""
        self.skip = 0

    def _header_size(self) -> int | None:
        if len(self.head) < 2:
            return None
        length = self.head[1] & 0x7F
        return 2 + (2 if length == 126 else 8 if length == 127 else 0) + (4 if self.head[1] & 0x80 else 0)

    def feed(self, data: bytes) -> bool:
        active = False
        i, n = 0, len(data)
        while i < n:
            if self.skip:
                take = min(self.skip, n - i)
                self.skip -= take
                i += take
                continue
            self.head += data[i:i + 1]  # a header is 2-14 bytes
            i += 1
            size = self._header_size()
            if size is None or len(self.head) < size:
                continue
            length = self.head[1] & 0x7F
            if length == 126:
                length = int.from_bytes(self.head[2:4], "big")
            elif length == 127:
                length = int.from_bytes(self.head[2:10], "big")
            if self.head[0] & 0x0F < 8:
                active = True
            self.skip, self.head = length, b""
        return active


def oom_kills() -> int | None:
    """How many processes the kernel killed for memory in this container's cgroup (None: unknown).

    cgroup v2 (``memory.events``, the container's own with a cgroup
    namespace) or v1 (``memory.oom_control``, podman on cgroups v1/hybrid).
    """
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path, encoding="ascii") as f:
                text = f.read()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None


def memory_limit() -> int | None:
    """The container's memory limit in bytes (None: no limit or unknown)."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # v1 says "no limit" with a huge number
            return int(text)
        return None
    return None


def _response(status: str, body: str = "") -> bytes:
    data = body.encode()
    kind = "Content-Type: text/plain; charset=utf-8\r\n" if data else ""
    return (f"HTTP/1.1 {status}\r\n{kind}Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode() + data


def _not_listening(server: int) -> str:
    """The body of the guard's 502: what a browser shows when a tab's server is not up (yet)."""
    return (f"Nothing listens on port {server} in this studio yet. Its server may still be starting "
            "(only the studio's first tab is waited for), or it stopped: reload in a moment, or "
            "see `codestudio studio logs STUDIO`.\n")


class Guard:
    """Listens on each guard port and relays authenticated connections to its server.

    The first request head of a connection must carry :data:`GUARD_HEADER`
    with the secret; the header is removed and the connection is then piped
    both ways unchanged (later keep-alive requests, websockets, anything).
    Everything else is answered 403 (431 for an oversized head) and closed
    before a byte reaches the server. Runs an asyncio loop in one thread.
    """

    def __init__(self, pairs: list[tuple[int, int]], secret: str | None, out: Output,
                 *, bind: str = "0.0.0.0", upstream_hosts: tuple[str, ...] = UPSTREAM_HOSTS) -> None:
        self.pairs = pairs
        self.secret = secret.encode() if secret else None
        self.out = out
        self.bind = bind
        self.upstream_hosts = upstream_hosts
        self.sockets: list[Any] = []
        self.loop: Any = None
        self.thread: threading.Thread | None = None
        self.started = time.monotonic()
        #: server port -> time.monotonic() of the last request or websocket message from a client.
        self.last_activity: dict[int, float] = {}

    def activity_report(self) -> dict:
        """What ``X-Codestudio-Probe: activity`` answers: seconds since each port's last activity.

        Ages, not clock times, so the engine needs no clock in common with the pod.
        """
        now = time.monotonic()
        ports = {str(server): (round(now - self.last_activity[server], 3) if server in self.last_activity else None)
                 for server, _ in self.pairs}
        ages = [a for a in ports.values() if a is not None]
        return {"uptime": round(now - self.started, 3), "idle": min(ages) if ages else None, "ports": ports,
                "oom_kills": oom_kills(), "memory_limit": memory_limit()}

    @property
    def ports(self) -> dict[int, int]:
        """server port -> the guard port actually bound (tests bind port 0)."""
        return {server: s.getsockname()[1] for (server, _), s in zip(self.pairs, self.sockets)}

    def start(self) -> None:
        """Bind every guard port now (failing loudly), then serve in a thread."""
        import asyncio
        import socket

        for _server, port in self.pairs:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((self.bind, port))
            except OSError as e:
                s.close()
                self.close()
                raise ConfigError(f"guard: cannot listen on port {port}: {e}") from None
            s.listen(128)
            s.setblocking(False)
            self.sockets.append(s)
        if self.secret is None:
            self.out.log(f"guard: {GUARD_SECRET_VAR} is not set: every connection is refused")
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)

            async def serve() -> None:
                for (server, _), s in zip(self.pairs, self.sockets):
                    await asyncio.start_server(
                        lambda r, w, server=server: self._connection(r, w, server), sock=s, limit=MAX_HEAD
                    )
                ready.set()

            self.loop.run_until_complete(serve())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="guard", daemon=True)
        self.thread.start()
        ready.wait(10)
        desc = ", ".join(f"{guard} (server port {server})" for server, guard in self.ports.items())
        self.out.log(f"guard: listening on port {desc}; only the gateway gets through")

    def close(self) -> None:
        """Stop listening and drop every relayed connection."""
        import asyncio

        if self.loop is not None and self.thread is not None and self.thread.is_alive():

            async def shutdown() -> None:
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

            try:
                asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout=2)
            except Exception:
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=2)
        for s in self.sockets:
            s.close()

    async def _connection(self, reader: Any, writer: Any, server: int) -> None:
        import asyncio

        upstream_writer = None
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            except asyncio.LimitOverrunError:
                writer.write(_response("431 Request Header Fields Too Large"))
                return
            except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                return
            verdict, head = check_head(head, self.secret)
            if verdict == "refuse":
                writer.write(_response("403 Forbidden"))
                return
            if verdict == "activity":
                body = json.dumps(self.activity_report()).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
                return
            counted = verdict == "pass"
            if counted:
                self.last_activity[server] = time.monotonic()
            upstream = await self._open_upstream(server)
            if verdict == "probe" or upstream is None:
                ok = upstream is not None
                if upstream is not None:
                    upstream[1].close()
                if verdict == "probe":
                    writer.write(_response("204 No Content" if ok else "503 Service Unavailable"))
                else:
                    writer.write(_response("502 Bad Gateway", _not_listening(server)))
                return
            upstream_reader, upstream_writer = upstream
            upstream_writer.write(head)
            seen = None
            if counted:
                # After a websocket upgrade only data frames are activity; on plain HTTP,
                # every byte from the client is (bodies, later keep-alive requests).
                frames = WebSocketFrames() if is_websocket_upgrade(head) else None

                def seen(data: bytes) -> None:
                    if frames is None or frames.feed(data):
                        self.last_activity[server] = time.monotonic()

            await asyncio.gather(
                self._pipe(reader, upstream_writer, writer, seen), self._pipe(upstream_reader, writer, upstream_writer)
            )
        except Exception as e:  # one connection's trouble never stops the guard
            if not isinstance(e, (ConnectionError, OSError)):
                self.out.log(f"guard: port {server}: {type(e).__name__}: {e}")
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    try:
                        await w.drain()
                    except Exception:
                        pass
                    w.close()

    async def _open_upstream(self, server: int) -> Any:
        import asyncio

        for host in self.upstream_hosts:
            try:
                return await asyncio.open_connection(host, server)
            except OSError:
                continue
        return None

    @staticmethod
    async def _pipe(src: Any, dst: Any, other: Any, seen: Callable[[bytes], None] | None = None) -> None:
        """Copy until EOF, then half-close ``dst``; on an error, drop both connections.

        ``seen`` is told of every chunk (the client's side: activity)."""
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                if seen is not None:
                    seen(data)
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()
        except (ConnectionError, OSError):
            dst.transport.abort()
            other.transport.abort()


def start_guard(env: Mapping[str, str], out: Output) -> Guard | None:
    """The guard the environment asks for (:data:`GUARD_PORTS_VAR`), started; None when not asked."""
    raw = env.get(GUARD_PORTS_VAR)
    if not raw:
        return None
    guard = Guard(parse_guard_ports(raw), env.get(GUARD_SECRET_VAR) or None, out)
    guard.start()
    return guard


# --------------------------------------------------------------------------
# Commands


def _settings(env: Mapping[str, str]) -> dict[str, float]:
    return {
        "grace": _env_seconds(env, "CODESTUDIO_GRACE_SECONDS", 10.0),
        "backoff_base": _env_seconds(env, "CODESTUDIO_BACKOFF_BASE", 1.0),
        "backoff_max": _env_seconds(env, "CODESTUDIO_BACKOFF_MAX", 30.0),
        "backoff_reset": _env_seconds(env, "CODESTUDIO_BACKOFF_RESET", 60.0),
        "sync_timeout": _env_seconds(env, "CODESTUDIO_SYNC_TIMEOUT", 300.0),
    }


def _config_path(env: Mapping[str, str]) -> str:
    return env.get("CODESTUDIO_RUNNER_JSON") or DEFAULT_RUNNER_JSON


def cmd_run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    config = load_config(_config_path(env))
    mode = current_mode(env)
    settings = _settings(env)
    out = Output()
    # Listening before the entrypoints start: a server never has a moment on a guard port.
    guard = start_guard(env, out)
    env = {k: v for k, v in env.items() if k not in GUARD_VARS}
    children = []
    for ep in selected_entrypoints(config, mode):
        ep_env = entrypoint_env(config, ep, env)
        command = [expand(arg, ep_env) for arg in ep["command"]]
        cwd = ep.get("cwd") or default_cwd(ep_env)
        children.append(Child(ep["label"], command, ep_env, cwd))
    supervisor = Supervisor(children, out, settings)
    supervisor.install_signals()
    _become_subreaper()
    template = config.get("template") or "?"
    skipped = len(config.get("entrypoints") or []) - len(children)
    note = f" ({skipped} not launched in webapp mode)" if skipped else ""
    out.log(f"template {template}, mode {mode}: {len(children)} entrypoint(s){note}")
    flag = env.get("CODESTUDIO_WAIT_FOR_SYNC")
    if flag and not supervisor.wait_for_sync(flag, settings["sync_timeout"]):
        out.log("stopped before file sync finished")
        return 0
    supervisor.run()
    if guard is not None:
        guard.close()
    return 0


def cmd_action(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    config = load_config(_config_path(env))
    actions = config.get("actions") or []
    names = ", ".join(a["name"] for a in actions) or "(none)"
    if args.name is None:
        print(f"usage: runner.py action NAME; actions: {names}", file=sys.stderr)
        return EXIT_USAGE
    action = next((a for a in actions if a["name"] == args.name), None)
    if action is None:
        print(f"unknown action {args.name!r}; actions: {names}", file=sys.stderr)
        return EXIT_USAGE
    action_env = global_env(config, env)
    kills_before = oom_kills()
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", action["command"]], env=action_env, cwd=default_cwd(action_env)
        )
    except OSError as e:
        print(f"runner: cannot run action {args.name!r}: {e}", file=sys.stderr)
        return 127  # what a shell returns for a command it cannot run

    def relay(signum: int, frame: Any) -> None:
        # Stopping the exec should stop the action, not orphan it.
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, relay)
    code = proc.wait()
    code = 128 - code if code < 0 else code
    if code == 128 + signal.SIGKILL and (oom_kills() or 0) > (kills_before or 0):
        limit = memory_limit()
        shown = f" of {limit // (1 << 20)} MiB" if limit else ""
        print(f"runner: action {args.name!r} was killed for memory: the kernel killed it (or a process it "
              f"started) when the studio reached its memory limit{shown}", file=sys.stderr, flush=True)
    return code


def cmd_env(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    config = load_config(_config_path(env))
    if args.label is None:
        result = global_env(config, env)
    else:
        ep = next((e for e in config.get("entrypoints") or [] if e["label"] == args.label), None)
        if ep is None:
            labels = ", ".join(e["label"] for e in config.get("entrypoints") or []) or "(none)"
            print(f"unknown entrypoint {args.label!r}; entrypoints: {labels}", file=sys.stderr)
            return EXIT_USAGE
        result = entrypoint_env(config, ep, env)
    for name in sorted(result):
        print(f"{name}={result[name]}")
    return 0


def cmd_check(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    path = args.path or _config_path(env)
    config = load_config(path)
    print(
        f"{path}: valid (template {config.get('template') or '?'}, "
        f"{len(config.get('entrypoints') or [])} entrypoint(s), "
        f"{len(config.get('actions') or [])} action(s))"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runner.py",
        description="codestudio runner: starts a studio's entrypoints and runs its actions.",
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="start the entrypoints of the current mode and supervise them")
    p = sub.add_parser("action", help="run one action and exit with its status")
    p.add_argument("name", nargs="?")
    p = sub.add_parser("env", help="print the expanded environment")
    p.add_argument("label", nargs="?", help="an entrypoint label: print its environment")
    p = sub.add_parser("check", help="validate runner.json")
    p.add_argument("path", nargs="?", help="default: $CODESTUDIO_RUNNER_JSON")
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace, Mapping[str, str]], int]] = {
    "run": cmd_run,
    "action": cmd_action,
    "env": cmd_env,
    "check": cmd_check,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = dict(os.environ)
    if (args.command or "run") != "run":  # actions and `env` never see the guard's secret
        env = {k: v for k, v in env.items() if k not in GUARD_VARS}
    try:
        return COMMANDS[args.command or "run"](args, env)
    except ConfigError as e:
        print(f"runner: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
