"""Tests of the container runner (engine/codestudio/runner/runner.py).

The script runs as a real subprocess with ``sys.executable`` against a
runner.json in tmp_path, with small Python one-liners as entrypoints; no
container is involved. Conditions are polled with generous deadlines rather
than timed.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from codestudio.runner import RUNNER_PATH
from codestudio.runner import runner as rmod

DEADLINE = 30.0
PY = sys.executable


def wait_until(cond: Callable[[], object], what: str, timeout: float = DEADLINE) -> object:
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def py(code: str, *args: str) -> list[str]:
    return [PY, "-c", code, *args]


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


class Runner:
    """A runner subprocess whose output goes to a file we can poll."""

    def __init__(self, tmp: Path, config: dict, env: dict[str, str], args: tuple[str, ...] = ()):
        self.tmp = tmp
        self.log = tmp / "runner.log"
        cfg = tmp / "runner.json"
        cfg.write_text(json.dumps(config))
        self.env = base_env(tmp, cfg) | env
        self._log_file = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [PY, str(RUNNER_PATH), *args],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=self.env,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_output(self, text: str) -> str:
        wait_until(lambda: text in self.output(), f"{text!r} in runner output:\n{self.output()}")
        return self.output()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=DEADLINE)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()


def base_env(tmp: Path, cfg: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CODESTUDIO_", "K8S_", "DKU_"))}
    workspace = tmp / "workspace"
    workspace.mkdir(exist_ok=True)
    env.update(
        CODESTUDIO_RUNNER_JSON=str(cfg),
        CODESTUDIO_WORKSPACE=str(workspace),
        CODESTUDIO_BACKOFF_BASE="0.05",
        CODESTUDIO_BACKOFF_MAX="0.2",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def start(tmp_path: Path):
    started: list[Runner] = []

    def _start(config: dict, env: dict[str, str] | None = None, args: tuple[str, ...] = ()):
        config = {"schema": 1, "template": "t"} | config
        r = Runner(tmp_path, config, env or {}, args)
        started.append(r)
        return r

    yield _start
    for r in started:
        r.close()


def run_cmd(tmp_path: Path, config: dict, *args: str, env: dict[str, str] | None = None):
    cfg = tmp_path / "runner.json"
    cfg.write_text(json.dumps({"schema": 1, "template": "t"} | config))
    return subprocess.run(
        [PY, str(RUNNER_PATH), *args],
        capture_output=True,
        text=True,
        env=base_env(tmp_path, cfg) | (env or {}),
        timeout=DEADLINE,
    )


SLEEP_FOREVER = "import time\nwhile True: time.sleep(60)"


# -- the package ------------------------------------------------------------


def test_runner_path_is_the_script():
    assert RUNNER_PATH.name == "runner.py"
    assert RUNNER_PATH.is_file()


def test_runner_imports_only_the_stdlib():
    tree = ast.parse(RUNNER_PATH.read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module.split(".")[0])
    assert modules, "no imports found: the test is not looking at the right file"
    assert modules - set(sys.stdlib_module_names) == set()


# -- expansion (unit) -------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("/x/${POD}/y", "/x/pod-1/y"),
        ("$${POD}", "${POD}"),
        ("${UNDEFINED}", "${UNDEFINED}"),
        ("$POD ${POD}${POD}", "$POD pod-1pod-1"),
        ("${}", "${}"),
        ("$$${POD}", "$${POD}"),
    ],
)
def test_expand(text, expected):
    assert rmod.expand(text, {"POD": "pod-1"}) == expected


def test_env_layers_refer_to_each_other_in_any_order():
    config = {
        "env": {
            "A": "${B}a",
            "B": "b",
            "C": "${A}c",
            "PATH": "/opt/x/bin:${PATH}",
            "X": "${Y}x",
            "Y": "${X}y",
        }
    }
    env = rmod.global_env(config, {"PATH": "/usr/bin", "X": "outer"})
    assert env["PATH"] == "/opt/x/bin:/usr/bin"
    assert (env["A"], env["B"], env["C"]) == ("ba", "b", "bac")
    # A cycle ends at the previous layer (or the reference as written).
    assert (env["X"], env["Y"]) == ("outeryx", "outery")
    ep = {"env": {"D": "${C}d", "PATH": "/ep:${PATH}"}}
    ep_env = rmod.entrypoint_env(config, ep, {"PATH": "/usr/bin"})
    assert ep_env["D"] == "bacd"
    assert ep_env["PATH"] == "/ep:/opt/x/bin:/usr/bin"


def test_backoff_doubles_caps_and_resets():
    logged: list[str] = []

    class Out:
        def log(self, message: str) -> None:
            logged.append(message)

    settings = {"grace": 1, "backoff_base": 1, "backoff_max": 30, "backoff_reset": 60}
    sup = rmod.Supervisor([], Out(), settings)  # type: ignore[arg-type]
    child = rmod.Child("ide", ["x"], {}, "/")
    delays = []
    for _ in range(7):
        child.started_at = time.monotonic()  # crashed right after starting
        sup._schedule_restart(child, "exited with status 1")
        delays.append(round(child.restart_at - time.monotonic()))
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    child.started_at = time.monotonic() - 61  # it ran long enough: start over
    sup._schedule_restart(child, "exited with status 1")
    assert round(child.restart_at - time.monotonic()) == 1
    assert "restart #8 in 1s" in logged[-1]
    child.failures = 5000  # failing for hours, or minutes with a small base
    child.started_at = time.monotonic()
    sup = rmod.Supervisor([], Out(), rmod._settings({}))  # type: ignore[arg-type]  # floats, as in a pod
    sup._schedule_restart(child, "exited with status 1")
    assert round(child.restart_at - time.monotonic()) == 30


# -- run: output, env, modes ------------------------------------------------


def test_output_is_prefixed_line_by_line(start):
    code = (
        "import sys\n"
        "print('hello'); print('to stderr', file=sys.stderr)\n"
        "sys.stdout.buffer.write(b'caf\\xe9 without newline'); sys.stdout.flush()\n"
    )
    r = start({"entrypoints": [{"label": "Web App", "command": py(code)}]})
    out = r.wait_output("not restarted")
    assert "[Web App] hello\n" in out
    assert "[Web App] to stderr\n" in out
    assert "[Web App] caf\\xe9 without newline\n" in out
    assert "[runner] Web App exited with status 0" in out
    assert r.terminate() == 0


def test_webapp_mode_expands_pod_name_and_filters(start, tmp_path):
    dump = (
        "import json, os, sys\n"
        "json.dump({'env': dict(os.environ), 'argv': sys.argv[1:], 'cwd': os.getcwd()},"
        " open(sys.argv[1], 'w'))\n" + SLEEP_FOREVER
    )
    config = {
        "env": {
            "APP_BASE": "${DKU_CODE_STUDIO_BROWSER_PATH}/app",
            "LITERAL": "$${K8S_POD_NAME}",
            "UNSET": "${NOT_DEFINED_ANYWHERE}",
        },
        "entrypoints": [
            {
                "label": "backend",
                "launch_in_webapp": True,
                "env": {"MINE": "${APP_BASE}:${K8S_POD_NAME}"},
                "command": py(dump, str(tmp_path / "backend.json"), "${K8S_POD_NAME}", "$${X}"),
            },
            {
                "label": "ide",
                "launch_in_webapp": False,
                "command": py(dump, str(tmp_path / "ide.json")),
            },
        ],
    }
    env = {
        "CODESTUDIO_MODE": "webapp",
        "K8S_POD_NAME": "web-7f9c",
        "DKU_CODE_STUDIO_BROWSER_PATH": "/web-apps-backends/PRJ/w1_${K8S_POD_NAME}",
    }
    r = start(config, env)
    seen = wait_until(lambda: _read_json(tmp_path / "backend.json"), "backend to dump its env")
    assert seen["env"]["DKU_CODE_STUDIO_BROWSER_PATH"] == "/web-apps-backends/PRJ/w1_web-7f9c"
    assert seen["env"]["APP_BASE"] == "/web-apps-backends/PRJ/w1_web-7f9c/app"
    assert seen["env"]["MINE"] == "/web-apps-backends/PRJ/w1_web-7f9c/app:web-7f9c"
    assert seen["env"]["LITERAL"] == "${K8S_POD_NAME}"
    assert seen["env"]["UNSET"] == "${NOT_DEFINED_ANYWHERE}"
    assert seen["argv"] == [str(tmp_path / "backend.json"), "web-7f9c", "${X}"]
    assert seen["cwd"] == str(tmp_path / "workspace")
    assert "1 entrypoint(s) (1 not launched in webapp mode)" in r.output()
    assert r.terminate() == 0
    assert "started ide" not in r.output()
    assert not (tmp_path / "ide.json").exists()


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def test_studio_mode_starts_every_entrypoint(start, tmp_path):
    touch = "import sys, pathlib\npathlib.Path(sys.argv[1]).touch()\n" + SLEEP_FOREVER
    eps = [
        {"label": f"ep{i}", "launch_in_webapp": i == 0, "command": py(touch, str(tmp_path / f"m{i}"))}
        for i in range(3)
    ]
    r = start({"entrypoints": eps}, {"CODESTUDIO_MODE": "studio"})
    for i in range(3):
        wait_until((tmp_path / f"m{i}").exists, f"entrypoint ep{i} to start")
    assert r.terminate() == 0


def test_entrypoint_cwd(start, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    code = "import os, sys\nopen(sys.argv[1], 'w').write(os.getcwd())\n"
    ep = {"label": "x", "cwd": str(tmp_path / "elsewhere"), "command": py(code, str(tmp_path / "cwd"))}
    r = start({"entrypoints": [ep]})
    r.wait_output("not restarted")
    assert (tmp_path / "cwd").read_text() == str(tmp_path / "elsewhere")


def test_bad_mode_is_a_usage_error(tmp_path):
    result = run_cmd(tmp_path, {"entrypoints": []}, "run", env={"CODESTUDIO_MODE": "prod"})
    assert result.returncode == 2
    assert "CODESTUDIO_MODE" in result.stderr


def test_bad_timing_variable_is_a_usage_error(tmp_path):
    result = run_cmd(tmp_path, {"entrypoints": []}, env={"CODESTUDIO_GRACE_SECONDS": "soon"})
    assert result.returncode == 2
    assert "CODESTUDIO_GRACE_SECONDS" in result.stderr


# -- run: restarts ----------------------------------------------------------


def test_crashing_entrypoint_is_restarted_until_it_succeeds(start, tmp_path):
    runs = tmp_path / "runs"
    code = (
        "import sys\n"
        "with open(sys.argv[1], 'a') as f: f.write('run\\n')\n"
        "n = len(open(sys.argv[1]).read().split())\n"
        "print('run', n)\n"
        "sys.exit(0 if n >= 3 else 1)\n"
    )
    r = start({"entrypoints": [{"label": "flaky", "command": py(code, str(runs))}]})
    out = r.wait_output("not restarted")
    assert runs.read_text().split() == ["run"] * 3
    assert "[runner] flaky exited with status 1" in out
    assert "restart #1 in 0.05s" in out
    assert "restart #2 in 0.1s" in out
    assert "restart #3" not in out
    assert "[flaky] run 3" in out
    assert r.terminate() == 0
    assert runs.read_text().split() == ["run"] * 3


def test_entrypoint_killed_by_a_signal_is_restarted(start, tmp_path):
    pids = tmp_path / "pids"
    code = "import os, sys\nopen(sys.argv[1], 'a').write(f'{os.getpid()}\\n')\n" + SLEEP_FOREVER
    r = start({"entrypoints": [{"label": "victim", "command": py(code, str(pids))}]})
    first = int(wait_until(lambda: pids.exists() and pids.read_text().split(), "first pid")[0])
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: len(pids.read_text().split()) >= 2, "a restart after SIGKILL")
    assert "victim was killed by SIGKILL" in r.output()
    assert r.terminate() == 0


def test_command_that_cannot_start_is_retried(start, tmp_path):
    r = start({"entrypoints": [{"label": "ghost", "command": [str(tmp_path / "missing")]}]})
    out = r.wait_output("restart #2")
    assert "ghost: cannot start" in out
    assert r.terminate() == 0


# -- run: stopping and reaping ---------------------------------------------


def test_sigterm_stops_children_gracefully(start, tmp_path):
    code = (
        "import os, signal, sys, time\n"
        "def bye(*a):\n"
        "    open(sys.argv[1] + '.bye', 'w').write('terminated'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "open(sys.argv[1], 'w').write(str(os.getpid()))\n" + SLEEP_FOREVER
    )
    eps = [{"label": f"svc{i}", "command": py(code, str(tmp_path / f"svc{i}"))} for i in range(2)]
    r = start({"entrypoints": eps}, {"CODESTUDIO_GRACE_SECONDS": "30"})
    pids = [
        int(wait_until(lambda i=i: _read_text(tmp_path / f"svc{i}"), f"svc{i} to start"))
        for i in range(2)
    ]
    assert r.terminate() == 0
    for i, pid in enumerate(pids):
        assert (tmp_path / f"svc{i}.bye").read_text() == "terminated"
        assert not pid_alive(pid)
    out = r.output()
    assert "SIGKILL" not in out
    assert out.rstrip().endswith("[runner] stopped")


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return None


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_sigkill_after_grace_period_reaches_the_whole_group(start, tmp_path):
    stubborn = (
        "import os, signal, sys\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "open(sys.argv[1], 'w').write(str(os.getpid()))\n" + SLEEP_FOREVER
    )
    parent = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', {stubborn!r}, sys.argv[2]])\n"
        f"exec({stubborn!r})\n"
    )
    ep = {"label": "stubborn", "command": py(parent, str(tmp_path / "p"), str(tmp_path / "c"))}
    r = start({"entrypoints": [ep]}, {"CODESTUDIO_GRACE_SECONDS": "0.3"})
    pids = [
        int(wait_until(lambda n=n: _read_text(tmp_path / n), f"pid file {n}")) for n in ("p", "c")
    ]
    assert r.terminate() == 0
    assert "SIGKILL to 1 process group(s) still running" in r.output()
    for pid in pids:
        wait_until(lambda pid=pid: not pid_alive(pid), f"pid {pid} to be gone")


def test_second_signal_skips_the_grace_period(start, tmp_path):
    code = (
        "import os, signal, sys\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "open(sys.argv[1], 'w').write(str(os.getpid()))\n" + SLEEP_FOREVER
    )
    ep = {"label": "stubborn", "command": py(code, str(tmp_path / "p"))}
    r = start({"entrypoints": [ep]}, {"CODESTUDIO_GRACE_SECONDS": "3600"})
    pid = int(wait_until(lambda: _read_text(tmp_path / "p"), "the child to start"))
    r.proc.send_signal(signal.SIGTERM)
    r.wait_output("stopping: SIGTERM")
    r.proc.send_signal(signal.SIGINT)
    assert r.proc.wait(timeout=DEADLINE) == 0
    assert not pid_alive(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="subreaper is Linux-only")
def test_orphaned_grandchildren_are_reaped(start, tmp_path):
    # The entrypoint double-forks: the grandchild is orphaned, adopted by the
    # runner (PID 1 in a container, a subreaper here), then exits and must
    # not stay a zombie.
    go = tmp_path / "go"
    code = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    if os.fork() == 0:\n"
        "        open(sys.argv[1], 'w').write(str(os.getpid()))\n"
        "        while not os.path.exists(sys.argv[2]): time.sleep(0.02)\n"
        "        os._exit(0)\n"
        "    os._exit(0)\n"
        "os.wait()\n" + SLEEP_FOREVER
    )
    ep = {"label": "forker", "command": py(code, str(tmp_path / "g"), str(go))}
    r = start({"entrypoints": [ep]})
    grandchild = int(wait_until(lambda: _read_text(tmp_path / "g"), "the grandchild pid"))
    wait_until(lambda: _ppid(grandchild) == r.proc.pid, "the runner to adopt the orphan")
    go.touch()
    wait_until(lambda: not os.path.exists(f"/proc/{grandchild}"), "the orphan to be reaped")
    assert r.proc.poll() is None
    assert "forker exited" not in r.output()  # its own child's status was not touched
    assert r.terminate() == 0


# -- run: waiting for file sync ---------------------------------------------


def test_entrypoints_wait_for_the_sync_flag(start, tmp_path):
    flag = tmp_path / "synced"
    marker = tmp_path / "started"
    code = "import sys, pathlib\npathlib.Path(sys.argv[1]).touch()\n" + SLEEP_FOREVER
    r = start(
        {"entrypoints": [{"label": "ide", "command": py(code, str(marker))}]},
        {"CODESTUDIO_WAIT_FOR_SYNC": str(flag)},
    )
    r.wait_output("for file sync")
    assert not marker.exists()
    assert "started ide" not in r.output()
    flag.touch()
    wait_until(marker.exists, "the entrypoint to start after the flag appears")
    assert "file sync done" in r.output()
    assert r.terminate() == 0


def test_sync_timeout_starts_anyway(start, tmp_path):
    marker = tmp_path / "started"
    code = "import sys, pathlib\npathlib.Path(sys.argv[1]).touch()\n" + SLEEP_FOREVER
    r = start(
        {"entrypoints": [{"label": "ide", "command": py(code, str(marker))}]},
        {"CODESTUDIO_WAIT_FOR_SYNC": str(tmp_path / "never"), "CODESTUDIO_SYNC_TIMEOUT": "0.2"},
    )
    wait_until(marker.exists, "the entrypoint to start after the sync timeout")
    assert "did not appear within 0.2s; starting anyway" in r.output()
    assert r.terminate() == 0


def test_sigterm_while_waiting_for_sync(start, tmp_path):
    r = start(
        {"entrypoints": [{"label": "ide", "command": py(SLEEP_FOREVER)}]},
        {"CODESTUDIO_WAIT_FOR_SYNC": str(tmp_path / "never")},
    )
    r.wait_output("for file sync")
    assert r.terminate() == 0
    assert "started ide" not in r.output()


# -- action -----------------------------------------------------------------


ACTIONS = {
    "env": {"GREETING": "hello ${K8S_POD_NAME}"},
    "actions": [
        {
            "name": "report",
            "label": "Report",
            "description": "",
            "command": 'echo "out $GREETING"; echo err >&2; pwd; exit 7',
            "wait": True,
        },
        {"name": "ok", "label": "OK", "command": "true"},
    ],
}


def test_action_streams_output_and_exits_with_its_status(tmp_path):
    result = run_cmd(tmp_path, ACTIONS, "action", "report", env={"K8S_POD_NAME": "pod-1"})
    assert result.returncode == 7
    assert result.stdout.splitlines() == ["out hello pod-1", str(tmp_path / "workspace")]
    assert result.stderr == "err\n"
    assert run_cmd(tmp_path, ACTIONS, "action", "ok").returncode == 0


def test_action_killed_by_signal_exits_128_plus_signal(tmp_path):
    config = {"actions": [{"name": "die", "label": "Die", "command": "kill -TERM $$"}]}
    assert run_cmd(tmp_path, config, "action", "die").returncode == 128 + signal.SIGTERM


@pytest.mark.parametrize(("kills", "said"), [((0, 1), True), ((2, 2), False), ((None, None), False)])
def test_action_killed_for_memory_says_so(tmp_path, monkeypatch, capsys, kills, said):
    import argparse

    from codestudio.runner import runner as rmod

    cfg = tmp_path / "runner.json"
    cfg.write_text(json.dumps({"schema": 1, "template": "t", "actions": [
        {"name": "big", "label": "Big", "command": "kill -KILL $$"}]}))
    counts = iter(kills)
    monkeypatch.setattr(rmod, "oom_kills", lambda: next(counts))
    monkeypatch.setattr(rmod, "memory_limit", lambda: 64 << 20)
    monkeypatch.setattr(rmod.signal, "signal", lambda *a: None)  # keep pytest's own handlers
    code = rmod.cmd_action(argparse.Namespace(name="big"), base_env(tmp_path, cfg))
    assert code == 128 + signal.SIGKILL
    err = capsys.readouterr().err
    assert ("action 'big' was killed for memory" in err and "64 MiB" in err) is said


def test_unknown_action_lists_the_actions(tmp_path):
    result = run_cmd(tmp_path, ACTIONS, "action", "nope")
    assert result.returncode == 2
    assert "unknown action 'nope'" in result.stderr
    assert "report, ok" in result.stderr
    assert run_cmd(tmp_path, ACTIONS, "action").returncode == 2


# -- env and check ----------------------------------------------------------


def test_env_prints_the_expanded_environment_sorted(tmp_path):
    config = {
        "env": {"ZED": "${K8S_POD_NAME}", "ALPHA": "a"},
        "entrypoints": [{"label": "ide", "command": ["x"], "env": {"ALPHA": "${ALPHA}b"}}],
    }
    env = {"K8S_POD_NAME": "pod-2"}
    result = run_cmd(tmp_path, config, "env", env=env)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines == sorted(lines)
    assert "ZED=pod-2" in lines and "ALPHA=a" in lines
    assert "ALPHA=ab" in run_cmd(tmp_path, config, "env", "ide", env=env).stdout.splitlines()
    assert run_cmd(tmp_path, config, "env", "nope", env=env).returncode == 2


def test_check_accepts_a_valid_file(tmp_path):
    config = {
        "env": {"A": "1"},
        "entrypoints": [
            {
                "label": "VS Code",
                "command": ["code-server", "--port", "8080"],
                "port": 8080,
                "expose_html": True,
                "launch_in_webapp": False,
                "proxied_subpath": "/",
                "env": {},
                "cwd": None,
            }
        ],
        "actions": ACTIONS["actions"],
        "probe": {"kind": "http", "port": 8080, "url": "${baseUrl}/healthz"},
        "ports": [8080],
        "exposed_ports": [8080],
    }
    result = run_cmd(tmp_path, config, "check")
    assert result.returncode == 0, result.stderr
    assert "1 entrypoint(s), 2 action(s)" in result.stdout


def test_check_names_every_problem(tmp_path):
    config = {
        "schema": 2,
        "env": {"BAD NAME": "x", "N": 3},
        "entrypoints": [
            {"label": "", "command": []},
            {"label": "x", "command": ["a"], "port": 70000, "proxied_subpath": "/x"},
        ],
        "actions": [{"name": "a", "command": "x"}, {"name": "a", "command": ""}],
        "probe": {"kind": "udp", "port": 0},
    }
    result = run_cmd(tmp_path, config, "check")
    assert result.returncode == 2
    for expected in [
        "schema: must be 1",
        "env: 'BAD NAME' is not a valid environment variable name",
        "env.N: must be a string",
        "entrypoints[0].label",
        "entrypoints[0].command",
        "entrypoints[1].port",
        "entrypoints[1].proxied_subpath",
        "actions[1].name: 'a' is used by an earlier action",
        "actions[1].command",
        "probe.kind",
        "probe.port",
    ]:
        assert expected in result.stderr


def test_check_reports_unreadable_and_malformed_files(tmp_path):
    missing = subprocess.run(
        [PY, str(RUNNER_PATH), "check", str(tmp_path / "nope.json")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    (tmp_path / "bad.json").write_text("{not json")
    bad = subprocess.run(
        [PY, str(RUNNER_PATH), "check", str(tmp_path / "bad.json")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr


def test_run_refuses_an_invalid_file(tmp_path):
    result = run_cmd(tmp_path, {"schema": 9})
    assert result.returncode == 2
    assert "schema: must be 1" in result.stderr


def test_every_variable_the_runner_reads_is_documented():
    source = RUNNER_PATH.read_text()
    names = set(re.findall(r'"(CODESTUDIO_[A-Z_]+)"', source))
    assert {"CODESTUDIO_MODE", "CODESTUDIO_GRACE_SECONDS", "CODESTUDIO_BACKOFF_BASE"} <= names
    doc = (Path(__file__).resolve().parent.parent / "docs" / "runner.md").read_text()
    assert {n for n in names if f"`{n}`" not in doc} == set()


def _can_unshare_pid() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_unshare_pid(), reason="needs root and unshare(1) for a PID namespace")
def test_as_pid_1_it_reaps_orphans_and_stops_on_sigterm(tmp_path):
    # PID 1 gets no default signal actions, so this checks the handlers really
    # are installed, and that orphans of the whole namespace are reaped.
    code = (
        "import os, sys, time\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        if os.fork() == 0:\n"
        "            os._exit(0)\n"
        "        os._exit(0)\n"
        "    os.wait()\n"
        "open(sys.argv[1], 'w').write('forked')\n" + SLEEP_FOREVER
    )
    cfg = tmp_path / "runner.json"
    ep = {"label": "forker", "command": py(code, str(tmp_path / "forked"))}
    cfg.write_text(json.dumps({"schema": 1, "template": "t", "entrypoints": [ep]}))
    log = open(tmp_path / "log", "wb")
    unshare = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", PY, str(RUNNER_PATH)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=base_env(tmp_path, cfg),
    )
    try:
        wait_until((tmp_path / "forked").exists, "the entrypoint to fork its orphans")
        runner_pid = int(wait_until(lambda: _children(unshare.pid), "the runner process")[0])

        def zombies() -> list[int]:
            return [p for p in _children(runner_pid) if not pid_alive(p)]

        wait_until(lambda: not zombies(), "the orphans to be reaped")
        os.kill(runner_pid, signal.SIGTERM)
        assert unshare.wait(timeout=DEADLINE) == 0
        assert (tmp_path / "log").read_bytes().rstrip().endswith(b"[runner] stopped")
    finally:
        if unshare.poll() is None:
            unshare.kill()
            unshare.wait()
        log.close()


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []
