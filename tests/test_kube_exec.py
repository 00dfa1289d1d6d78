"""The Kubernetes exec transport against a loopback API server speaking v5 and v4 (kube_exec_standin).

Commands run as subprocesses in a temporary folder (the stand-in's pod);
everything between the engine and them is the real websocket protocol, so
these tests run the engine's own exec code, the real sync (the agent, its
tar streams, push, pull and conflicts) and the real runner's actions
through it, once with an API server that offers v5 and once with one that
only speaks v4 (where stdin is framed for the agent).
"""

from __future__ import annotations

import hashlib  # noqa: F401 - used by the eval'd expression
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("kubernetes")

from kube_exec_standin import V4, V5, StandIn  # noqa: E402

from codestudio.blockapi import SyncMapping  # noqa: E402
from codestudio.errors import RuntimeFailure  # noqa: E402
from codestudio.runtime.kubernetes.exec import ExecFailure, PodTransport, exit_status  # noqa: E402
from codestudio.sync import ExecTransport, SyncConflictError, SyncStudio, conflicts, pull_on_stop, push_on_start, sync  # noqa: E402

ZONE = "code_studio-versioned"
TARGET = f"/home/codestudio/workspace/{ZONE}"
RUNNER_SRC = Path(__file__).parents[1] / "engine" / "codestudio" / "runner" / "runner.py"


@pytest.fixture(params=[[V5, V4], [V4]], ids=["v5", "v4-only"])
def cluster(request, tmp_path):
    pod = tmp_path / "pod"
    (pod / "home/codestudio/workspace").mkdir(parents=True)
    with StandIn({"cs-s1-abc": pod}, protocols=request.param) as server:
        server.pod_dir = pod
        server.expected = request.param[0]
        yield server


@pytest.fixture
def transport(cluster) -> PodTransport:
    return PodTransport(cluster.api_client(), "cs", connect_timeout=5)


def test_negotiates_the_best_protocol_and_reads_exit_statuses(cluster, transport):
    for code in (0, 1, 7, 255):
        proc = transport.exec("cs-s1-abc", ["sh", "-c", f"echo out; echo err >&2; exit {code}"])
        out, err = proc.communicate(timeout=20)
        assert (proc.returncode, out, err) == (code, b"out\n", b"err\n")
        assert proc.protocol == cluster.expected
    assert {e["protocol"] for e in cluster.execs} == {cluster.expected}


def test_a_missing_command_is_127_with_the_servers_words(transport):
    proc = transport.exec("cs-s1-abc", ["no-such-program-here"])
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 127
    assert b"executable file not found" in err


def test_large_binary_output_arrives_whole(transport):
    make = "b''.join(hashlib.sha256(str(i).encode()).digest() for i in range(100000))"
    proc = transport.exec("cs-s1-abc", ["python3", "-c", f"import hashlib, sys; sys.stdout.buffer.write({make})"])
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert out == eval(make)  # 3.2 MB, byte for byte


def test_stdin_closes_on_v5_and_is_refused_plainly_on_v4(cluster, transport):
    if cluster.expected == V5:
        proc = transport.exec("cs-s1-abc", ["sh", "-c", "cat; echo done"], stdin=True)
        out, _ = proc.communicate(b"line\n" * 1000, timeout=20)
        assert out == b"line\n" * 1000 + b"done\n" and proc.returncode == 0
    else:
        with pytest.raises(ExecFailure, match="stdin cannot be closed"):
            transport.exec("cs-s1-abc", ["cat"], stdin=True)


def test_framed_stdin_ends_for_the_agent_on_both(cluster, transport):
    # The agent reads until its input ends, then exits 0: on v4 only framing can tell it.
    from codestudio.sync.transport import agent_source

    proc = transport.exec_framed("cs-s1-abc", ["python3", "-I", "-c", agent_source(), "session", "/"])
    proc.stdin.write(json.dumps({"op": "list", "roots": [TARGET], "exclude": []}).encode() + b"\n")
    proc.stdin.close()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out.splitlines()[-1]) == {"maps": 1}


def test_kill_ends_the_session(transport):
    proc = transport.exec("cs-s1-abc", ["sleep", "30"])
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.3)
    proc.kill()
    assert proc.wait(timeout=10) == -9


def test_refusals_are_clear_errors(cluster, transport, tmp_path):
    with pytest.raises(ExecFailure, match=r"not found \(404\).*pods \"gone\" not found") as info:
        transport.exec("gone", ["true"])
    assert info.value.status == 404
    other = PodTransport(cluster.api_client(), "elsewhere", connect_timeout=5)
    with pytest.raises(ExecFailure, match=r"forbidden \(403\).*pods/exec") as info:
        other.exec("cs-s1-abc", ["true"])
    assert "RBAC" in str(info.value) or "Role" in str(info.value)
    cfg = cluster.configuration()
    cfg.api_key = {"authorization": "wrong-token-123"}
    from kubernetes import client

    with pytest.raises(ExecFailure, match=r"401") as info:
        PodTransport(client.ApiClient(cfg), "cs").exec("cs-s1-abc", ["true"])
    assert "wrong-token-123" not in str(info.value)
    with pytest.raises(ExecFailure, match=r"400.*not valid"):
        PodTransport(cluster.api_client(), "cs", container="sidecar").exec("cs-s1-abc", ["true"])
    with pytest.raises(RuntimeFailure, match="as 'root'"):
        transport.exec("cs-s1-abc", ["true"], user="root")


def test_unreachable_and_silent_api_servers_time_out(tmp_path):
    import socket

    from kubernetes import client

    # A listener that accepts and never answers: the handshake must time out, not hang.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    cfg = client.Configuration()
    cfg.host = f"http://127.0.0.1:{silent.getsockname()[1]}"
    with pytest.raises(ExecFailure, match="did not answer within 1s"):
        PodTransport(client.ApiClient(cfg), "cs", connect_timeout=1).exec("p", ["true"])
    silent.close()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    cfg.host = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    with pytest.raises(ExecFailure, match="unreachable"):
        PodTransport(client.ApiClient(cfg), "cs", connect_timeout=1).exec("p", ["true"])


def test_upgrade_refused_by_a_plain_http_server():
    import http.server
    import threading

    from kubernetes import client

    class NoUpgrade(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoUpgrade)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        cfg = client.Configuration()
        cfg.host = f"http://127.0.0.1:{srv.server_address[1]}"
        with pytest.raises(ExecFailure, match=r"refused the websocket upgrade \(HTTP 200\)"):
            PodTransport(client.ApiClient(cfg), "cs", connect_timeout=5).exec("p", ["true"])
    finally:
        srv.shutdown()
        srv.server_close()


def test_exit_status_documents():
    assert exit_status({"metadata": {}, "status": "Success"}) == (0, None)
    assert exit_status({"status": "Failure", "reason": "NonZeroExitCode",
                        "details": {"causes": [{"reason": "ExitCode", "message": "42"}]}}) == (42, None)
    code, message = exit_status({"status": "Failure", "message": "OCI runtime exec failed: permission denied"})
    assert code == 126 and "permission denied" in message


# --------------------------------------------------------------------------
# Sync and actions through the transport


def _studio() -> SyncStudio:
    return SyncStudio(studio_id="s1", project_key="PROJ", owner="alice",
                      mappings=(SyncMapping(zone=ZONE, target=TARGET),))


def test_real_sync_push_pull_and_conflict(cluster, transport):
    studio = _studio()
    agent = ExecTransport(transport, "cs-s1-abc", cache_dir="/home/codestudio/.cache/codestudio-sync")
    server = studio.zone_path(ZONE)
    inside = cluster.pod_dir / TARGET.lstrip("/")
    (server / "app.py").write_text("print('v1')\n")
    (server / "data").mkdir()
    for i in range(300):
        (server / "data" / f"f{i:03}.bin").write_bytes(os.urandom(2048))
    report = push_on_start(studio, agent)
    assert len(report.mappings[0].pushed) == 301
    assert (inside / "app.py").read_text() == "print('v1')\n"
    assert (inside / "data/f123.bin").read_bytes() == (server / "data/f123.bin").read_bytes()

    (inside / "app.py").write_text("print('v2 from the studio')\n")
    (inside / "new.txt").write_text("made in the studio\n")
    report = pull_on_stop(studio, agent)
    assert sorted(report.mappings[0].pulled) == ["app.py", "new.txt"]
    assert (server / "app.py").read_text() == "print('v2 from the studio')\n"

    # Both sides change the same file: a conflict, neither version lost.
    (server / "app.py").write_text("server side\n")
    (inside / "app.py").write_text("studio side\n")
    with pytest.raises(SyncConflictError) as info:
        sync(studio, agent)
    assert [c.path for c in info.value.report.conflicts] == ["app.py"]
    assert [c.path for c in conflicts(studio)] == ["app.py"]
    assert (server / "app.py").read_text() == "server side\n"
    texts = {p.read_text() for p in inside.iterdir() if p.name.startswith("app")} | {
        p.read_text() for p in server.iterdir() if p.name.startswith("app")}
    assert {"server side\n", "studio side\n"} <= texts
    assert {e["protocol"] for e in cluster.execs} == {cluster.expected}
    assert all(e["stdin"] for e in cluster.execs)
    # The agent's 48 KB source travelled over stdin: the exec URLs fit an 8 KiB request line.
    assert all(sum(len(a) for a in e["argv"]) < 2048 for e in cluster.execs)


def test_an_action_runs_with_its_exit_status_and_a_detached_one_starts(cluster, transport):
    from codestudio.runtime.operations import RUNNER

    opt = cluster.pod_dir / "opt/codestudio"
    opt.mkdir(parents=True)
    shutil.copy(RUNNER_SRC, opt / "runner.py")
    (opt / "runner.json").write_text(json.dumps({"schema": 1, "entrypoints": [], "env": {}, "actions": [
        {"name": "hello", "label": "Hello", "command": "echo hello from $HOME; echo warn >&2; exit 4", "wait": True},
        {"name": "bg", "label": "Background", "command": "echo started > bg.txt", "wait": False},
    ]}))
    proc = transport.exec("cs-s1-abc", ["python3", RUNNER, "action", "hello"])
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 4
    assert out.decode().strip() == f"hello from {cluster.pod_dir / 'home/codestudio'}"
    assert err == b"warn\n"

    # Detached: returns at once, the command goes on in the pod.
    transport.exec_detached("cs-s1-abc", ["sh", "-c", "sleep 0.5; echo started > detached.txt"])
    assert not (cluster.pod_dir / "detached.txt").exists()
    deadline = time.monotonic() + 20
    while not (cluster.pod_dir / "detached.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (cluster.pod_dir / "detached.txt").read_text() == "started\n"
    with pytest.raises(RuntimeFailure, match="not found"):
        transport.exec_detached("cs-s1-abc", ["no-such-program-here"])


def test_copy_out_tars_a_running_pods_folder(cluster, transport, tmp_path):
    import io
    import tarfile

    folder = cluster.pod_dir / "home/codestudio/workspace/x"
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("A")
    buf = io.BytesIO()
    # The stand-in's pod "/" is its folder; a real pod's tar runs in the pod's "/".
    assert transport.copy_out("cs-s1-abc", str(cluster.pod_dir / "home/codestudio/workspace/x"), buf)
    names = tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames()
    assert any(n.endswith("workspace/x/a.txt") for n in names)
    assert transport.copy_out("cs-s1-abc", str(cluster.pod_dir / "nope"), io.BytesIO()) is False


# --------------------------------------------------------------------------
# Logs through the log API


@pytest.fixture
def log_api():
    from kube_exec_standin import LogStandIn

    with LogStandIn(["cs-s1-abc"]) as server:
        yield server


def test_logs_tail_and_follow_until_closed_from_another_thread(log_api):
    import threading

    for i in range(5):
        log_api.append("cs-s1-abc", f"line {i}\n".encode())
    transport = PodTransport(log_api.api_client(), "cs", connect_timeout=5)
    assert b"".join(transport.logs("cs-s1-abc", tail=2)) == b"line 3\nline 4\n"
    stream = transport.logs("cs-s1-abc", follow=True, tail=1)
    assert next(stream) == b"line 4\n"
    log_api.append("cs-s1-abc", b"written later\n")
    assert next(stream) == b"written later\n"
    # A server whose client went away closes the stream from its own thread; the read returns.
    closer = threading.Timer(0.3, stream.close)
    closer.start()
    assert list(stream) == []
    closer.join()


def test_follow_ends_when_the_container_ends(log_api):
    transport = PodTransport(log_api.api_client(), "cs", connect_timeout=5)
    log_api.append("cs-s1-abc", b"last words\n")
    log_api.end("cs-s1-abc")
    assert b"".join(transport.logs("cs-s1-abc", follow=True)) == b"last words\n"


def test_save_logs_keeps_the_previous_run_and_how_it_ended(log_api, tmp_path):
    log_api.previous["cs-s1-abc"].append(b"Traceback: boom\n")
    log_api.append("cs-s1-abc", b"starting again\n")
    transport = PodTransport(log_api.api_client(), "cs", connect_timeout=5)
    target = tmp_path / "logs" / "x.log"
    assert transport.save_logs("cs-s1-abc", target)
    text = target.read_text()
    assert text.index("Traceback: boom") < text.index("starting again")
    assert "CrashLoopBackOff" in text and "exit status 3" in text
    assert transport.save_logs("gone", tmp_path / "gone.log") is False
    assert not (tmp_path / "gone.log").exists()


def test_log_refusals_are_clear_errors(log_api):
    with pytest.raises(ExecFailure, match=r"forbidden \(403\)"):
        PodTransport(log_api.api_client(), "elsewhere", connect_timeout=5).logs("cs-s1-abc")
    with pytest.raises(ExecFailure, match=r"not found \(404\)"):
        PodTransport(log_api.api_client(), "cs", connect_timeout=5).logs("gone")


def test_the_kubernetes_runtime_syncs_and_runs_through_this_transport(cluster, tmp_path):
    """The wiring: KubernetesRuntime.exec/exec_framed/exec_detached/copy_out go through PodTransport."""
    from codestudio.runtime.kubernetes.client import Cluster
    from codestudio.runtime.kubernetes.runtime import KubernetesRuntime
    from codestudio.runtime.kubernetes.settings import RuntimeSettings

    runtime = KubernetesRuntime(RuntimeSettings("kubernetes", None, "cs", "r.example", None, "in-cluster"),
                                data_dir=tmp_path / "data",
                                cluster=Cluster(context=None, namespace="cs", api_client=cluster.api_client()))
    result = runtime.run("cs-s1-abc", ["sh", "-c", "echo hi; exit 5"])
    assert (result.returncode, result.stdout) == (5, "hi\n")
    studio = _studio()
    (studio.zone_path(ZONE) / "a.txt").write_text("from the server\n")
    report = push_on_start(studio, ExecTransport(runtime, "cs-s1-abc"))
    assert report.mappings[0].pushed == ["a.txt"]
    assert (cluster.pod_dir / TARGET.lstrip("/") / "a.txt").read_text() == "from the server\n"
    assert cluster.execs[-1]["protocol"] == cluster.expected and cluster.execs[-1]["stdin"]
