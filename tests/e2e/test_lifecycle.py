"""End-to-end: activity, culling, memory limits and quotas with real podman and nginx (docs/lifecycle.md).

One small template on the real base (a stdlib HTTP server and two actions;
no tool to install, so its build is the runner's layers only) with a
``lifecycle`` block and a ``kubernetes`` block limiting it to 64 MiB and
half a CPU; JupyterLab's example template (the image the JupyterLab block
tests share) for the busy-kernel case, culled by the data dir's default
``idle_timeout``. Nothing here compares a duration with a threshold: the
tests wait for a state (with generous deadlines) and check the reasons.

The base image is used as it is stored when present: templates carry their
own copy of the runner (the renderer puts it in the last layer), so a runner
change does not re-tag the machine's shared base.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid

import pytest

pytestmark = pytest.mark.e2e

import blocks_e2e as S  # noqa: E402  (tests/e2e is on pytest's pythonpath)

RUN = uuid.uuid4().hex[:6]
IDLE = 6  # seconds: idle_timeout of the small template
TEMPLATE = """\
id: lc-e2e-{run}
base_image: {base}
permissions: {{all: true}}
blocks:
  - type: dockerfile
    label: websocket echo
    run_as_root: true
    statements: COPY ws_echo.py /opt/lc/ws_echo.py
    resources: [ws_echo.py]
  - type: entrypoint
    label: WebSocket echo
    command: [python3, /opt/lc/ws_echo.py, "8103"]
    port: 8103
  - type: entrypoint
    label: Files
    command: [python3, -m, http.server, "8101", --bind, 127.0.0.1]
    port: 8101
  - type: action
    name: hog
    label: Allocate 200 MiB
    command: python3 -c "b = bytearray(200 * 1024 * 1024); print(len(b))"
  - type: action
    name: small
    label: Allocate 1 MiB
    command: python3 -c "b = bytearray(1024 * 1024); print('fine')"
  - type: kubernetes
    cpu: 500m
    memory: 64Mi
  - type: lifecycle
    idle_timeout: {idle}s
"""
ZONE_FILE = "/home/codestudio/workspace/code_studio-versioned/notes.txt"


@pytest.fixture(scope="module")
def stored_base(session_home):
    """The machine's base image as stored (any runner inside), else built."""
    from codestudio import containers
    from codestudio.plan import default_base_image

    ref = default_base_image()
    if containers.image_exists(ref):
        return ref
    return pytest.importorskip("codestudio.images.base").build_base(quiet=True).image


@pytest.fixture(scope="module")
def lc(tmp_path_factory, stored_base):
    from test_runtime import WS_ECHO  # the stdlib websocket echo server of the runtime tests

    folder = tmp_path_factory.mktemp("lc-template")
    (folder / "ws_echo.py").write_text(WS_ECHO)
    (folder / "small.yaml").write_text(TEMPLATE.format(run=RUN, base=stored_base, idle=IDLE))
    with S.block_studios(tmp_path_factory, "lc") as env:
        yield {"env": env, "template": folder / "small.yaml"}
        from codestudio import containers

        for ref in containers.image_refs(f"localhost/codestudio/lc-e2e-{RUN}"):
            containers.remove_image(ref)


@pytest.fixture(autouse=True)
def _lc_env(lc, monkeypatch):
    monkeypatch.setenv("CODESTUDIO_HOME", str(lc["env"].home))
    monkeypatch.setenv("CODESTUDIO_GATEWAY_PORT", str(lc["env"].gateway_port))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codestudio", *args], capture_output=True, text=True, timeout=600)


def start(lc, name: str) -> S.RunningStudio:
    return lc["env"].start(lc["template"], project="LC", name=f"{name}-{uuid.uuid4().hex[:4]}")


def stored(lc, studio):
    return lc["env"].rts.get_studio(studio.studio_id)


def zone_file(studio) -> str:
    from codestudio.sync import zone_dir

    s = studio.env.rts.get_studio(studio.studio_id)
    return (zone_dir("code_studio-versioned", studio_id=s.id, project_key=s.project, user=s.owner) / "notes.txt").read_text()


def wait_until(what: str, cond, deadline: float = 180.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"gave up waiting for {what}")


def gateway_idle(studio) -> float | None:
    """Seconds since the guard last saw activity (None: never)."""
    from codestudio.runtime.activity import read_activity

    from codestudio.runtime.current import get_runtime

    s = studio.env.rts.get_studio(studio.studio_id)
    [pod] = get_runtime().pods(studio.env.rts.pod_set_name(s))
    reading = read_activity(s, pod)
    assert reading.reachable
    return None if reading.last is None else time.time() - reading.last


def _ws_frame(data: bytes, op: int = 1) -> bytes:
    import os

    mask = os.urandom(4)
    return bytes([0x80 | op, 0x80 | len(data)]) + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(data))


def test_an_open_silent_websocket_is_not_activity_a_message_is(lc):
    import base64
    import os
    import socket
    from urllib.parse import urlsplit

    from codestudio.runtime.culler import cull

    studio = start(lc, "ws")
    browser = studio.login(8103)
    url = urlsplit(f"{studio.base}/8103/ws")
    key = base64.b64encode(os.urandom(16)).decode()
    try:
        with socket.create_connection((url.hostname, url.port), timeout=30) as s:
            s.sendall((f"GET {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nCookie: {browser.cookie()}\r\n\r\n").encode())
            reader = s.makefile("rb")
            assert b" 101 " in reader.readline()
            while reader.readline() not in (b"\r\n", b""):
                pass

            def ping() -> bool:
                s.sendall(_ws_frame(b"ping", op=9))
                head = reader.read(2)
                assert head[0] & 0x0F == 10 and reader.read(head[1] & 0x7F) == b"ping"  # the pong
                return (gateway_idle(studio) or 0) > IDLE

            # Open, pinged through the gateway, but silent: idle past the timeout all the same.
            wait_until("the pinged websocket to be idle past the timeout", ping)
            assert [d.action for d in cull(dry_run=True) if d.studio == studio.studio_id] == ["stop"]
            s.sendall(_ws_frame(b"a message"))
            head = reader.read(2)
            assert reader.read(head[1] & 0x7F) == b"a message"
            [mine] = [d for d in cull(dry_run=True) if d.studio == studio.studio_id]
            assert mine.action == "keep" and mine.activity_source == "gateway"
            s.sendall(_ws_frame(b"", op=8))
    finally:
        lc["env"].rts.stop_studio(lc["env"].who, studio.studio_id, quiet=True)


def test_limits_are_enforced_by_podman(lc):
    from codestudio import containers

    studio = start(lc, "limits")
    try:
        proc = containers.podman("container", "inspect", "--format", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}",
                                 studio.container)
        assert proc.stdout.split() == [str(64 * 2**20), str(500_000_000)]
    finally:
        lc["env"].rts.stop_studio(lc["env"].who, studio.studio_id, quiet=True)


def test_an_action_past_the_memory_limit_is_reported_killed_for_memory(lc):
    studio = start(lc, "oom")
    try:
        ok = cli("studio", "run", studio.studio_id, "small")
        assert ok.returncode == 0 and "fine" in ok.stdout
        proc = cli("studio", "run", studio.studio_id, "hog")
        assert proc.returncode == 137, proc.stderr
        assert "was killed for memory" in proc.stderr and "64 MiB" in proc.stderr
        status = json.loads(cli("studio", "status", studio.studio_id, "--json").stdout)
        # The runner survived: the studio runs on, and says what happened.
        assert status["state"] == "RUNNING"
        assert status["killed_for_memory"].startswith("1 process(es)") and "64Mi" in status["killed_for_memory"]
    finally:
        lc["env"].rts.stop_studio(lc["env"].who, studio.studio_id, quiet=True)


def test_an_idle_studio_is_culled_and_its_edited_files_are_on_the_server(lc):
    studio = start(lc, "idle")
    studio.exec("sh", "-c", f"echo 'edited in the studio' > {ZONE_FILE}")
    # Wait (no threshold) until the culler itself says the studio is past its idle timeout.
    wait_until("cull --dry-run to pick the studio",
               lambda: any(d["studio"] == studio.studio_id and d["result"] == "would stop"
                           for d in json.loads(cli("cull", "--dry-run", "--json").stdout)))
    assert stored(lc, studio).state == "RUNNING"  # a dry run stops nothing
    proc = cli("cull", "--json")
    assert proc.returncode == 0, proc.stderr
    [mine] = [d for d in json.loads(proc.stdout) if d["studio"] == studio.studio_id]
    assert mine["result"] == "stopped" and "idle (idle_timeout 6 s)" in mine["reason"]
    s = stored(lc, studio)
    assert s.state == "STOPPED" and s.stop_reason == mine["reason"] and s.message.startswith("stopped after")
    assert zone_file(studio) == "edited in the studio\n"
    status = json.loads(cli("studio", "status", studio.studio_id, "--json").stdout)
    assert status["stop_reason"].startswith("stopped after") and status["idle_timeout"] == "6 s"
    listed = json.loads(cli("studio", "list", "--json").stdout)
    assert next(r for r in listed if r["id"] == studio.studio_id)["message"].startswith("stopped after")


def test_requests_through_the_gateway_keep_a_studio_from_the_servers_culler(lc):
    from codestudio.runtime.culler import serve_forever

    studio = start(lc, "busy")
    browser = studio.login(8101)
    stop_requests, stop_culler = threading.Event(), threading.Event()
    served = []

    def keep_busy():
        while not stop_requests.is_set():
            status, _ = browser.get(f"{studio.base}/8101/")
            served.append(status)
            time.sleep(0.5)

    # The server's own loop, on a short interval.
    culler = threading.Thread(target=serve_forever, args=(stop_culler,), kwargs={"interval": 1.0}, daemon=True)
    busy = threading.Thread(target=keep_busy, daemon=True)
    busy.start()
    culler.start()
    try:
        # Busy for well past the idle timeout, with the culler looking every second.
        wait_until("4 idle timeouts of requests", lambda: len(served) >= 8 * IDLE)
        assert set(served) == {200}
        s = stored(lc, studio)
        assert s.state == "RUNNING" and s.activity_source == "gateway"
        stop_requests.set()
        busy.join()
        # Left alone, the same loop culls it.
        after = wait_until("the culler to stop it", lambda: (x := stored(lc, studio)).state == "STOPPED" and x)
        assert after.stop_reason.startswith("stopped after") and "idle" in after.stop_reason
    finally:
        stop_requests.set()
        stop_culler.set()
        culler.join(timeout=60)


def test_culler_and_a_manual_stop_at_once(lc):
    from codestudio.runtime.culler import cull

    studio = start(lc, "race")
    studio.exec("sh", "-c", f"echo 'raced' > {ZONE_FILE}")
    s = stored(lc, studio)
    logs_before = set(s.logs_dir.glob("*.log")) if s.logs_dir.is_dir() else set()
    errors, results = [], {}

    def culler():
        try:
            results["cull"] = cull(now=time.time() + 3600)  # past the idle timeout, without waiting
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=culler)
    t.start()
    manual = cli("studio", "stop", studio.studio_id)
    t.join()
    assert errors == [] and manual.returncode == 0, (errors, manual.stderr)
    s = stored(lc, studio)
    assert s.state == "STOPPED"
    assert zone_file(studio) == "raced\n"
    # One stop removed the pod: one saved log, by whichever got there first.
    new_logs = set(s.logs_dir.glob("*.log")) - logs_before
    assert len(new_logs) == 1 and any(n.name.endswith(("-culled.log", "-stopped.log")) for n in new_logs)
    from codestudio.runtime.current import get_runtime

    assert get_runtime().pods(lc["env"].rts.pod_set_name(s)) == []


def test_a_user_at_the_running_studio_limit_is_refused_naming_it(lc):
    first = start(lc, "quota-a")
    env = lc["env"]
    try:
        assert cli("lifecycle", "set", "max_running_per_user=0").returncode == 2  # zero is refused
        assert cli("lifecycle", "set", "max_running_per_user=1").returncode == 0
        second = env.rts.create_studio(env.who, "LC", f"quota-b-{RUN}", first.template_id)
        proc = cli("studio", "start", second.id)
        assert proc.returncode == 1
        assert "max_running_per_user = 1" in proc.stderr and first.studio_id in proc.stderr
        assert env.rts.get_studio(second.id).state == "STOPPED"
    finally:
        cli("lifecycle", "set", "max_running_per_user=off")
        env.rts.stop_studio(env.who, first.studio_id, quiet=True)


def _execute_request(code: str, session: str) -> bytes:
    msg_id = uuid.uuid4().hex
    return json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": session, "msg_type": "execute_request",
                   "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }).encode()


def test_a_busy_jupyterlab_kernel_keeps_a_studio_with_no_tab_open(lc):
    from codestudio.runtime.culler import cull

    env = lc["env"]
    assert cli("lifecycle", "set", "idle_timeout=5s").returncode == 0  # the example template sets none
    lab = env.start(S.EXAMPLES / "jupyter-lab-template.yaml", project="LC", name=f"lab-{RUN}")
    try:
        browser = lab.login(8888)
        status, _ = browser.get(f"{lab.base}/8888/lab")
        assert status == 200
        headers = {"X-XSRFToken": browser.cookie("_xsrf"), "Content-Type": "application/json"}
        status, body, _ = browser.request(f"{lab.base}/8888/api/kernels", method="POST",
                                          data=json.dumps({"name": "python3"}).encode(), headers=headers)
        assert status == 201, body[:300]
        kernel = json.loads(body)["id"]
        session = uuid.uuid4().hex
        url = f"{lab.base}/8888/api/kernels/{kernel}/channels?session_id={session}".replace("http://", "ws://", 1)
        ws = S.WebSocket(url, cookie=browser.cookie(), origin=env.gateway_url)
        try:
            ws.send(_execute_request("import time; print('SLEEP' + 'ING', flush=True); time.sleep(900)", session), opcode=1)
            ws.wait_for(b"SLEEPING", timeout=120)
        finally:
            ws.close()  # no tab open any more: nothing goes through the gateway
        wait_until("the gateway to be idle past the timeout", lambda: (gateway_idle(lab) or 0) > 5)
        [mine] = [d for d in cull() if d.studio == lab.studio_id]
        assert mine.action == "keep" and mine.activity_source == "jupyterlab: 1 kernel busy"
        assert stored(lc, lab).state == "RUNNING"
        # Interrupted (through the gateway), the kernel goes idle: then the culler stops the studio.
        status, _, _ = browser.request(f"{lab.base}/8888/api/kernels/{kernel}/interrupt", method="POST",
                                       data=b"", headers=headers)
        assert status == 204
        stopped = wait_until("the culler to stop the idle lab",
                             lambda: any(d.studio == lab.studio_id and d.stopped for d in cull()))
        assert stopped and stored(lc, lab).stop_reason.startswith("stopped after")
    finally:
        cli("lifecycle", "set", "idle_timeout=off")
        env.rts.stop_studio(env.who, lab.studio_id, quiet=True)
