"""Port-forwards through the port-forward websocket protocol of a loopback stand-in API server.

The stand-in (kube_exec_standin) relays each port-forward websocket to a
local HTTP server playing the pod's port; the tests cut websockets, replace
the pod and kill the forwarder process, and check that the local port keeps
serving (what the gateway's upstreams rely on).
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import threading
import time
from types import SimpleNamespace

import httpx
import pytest

pytest.importorskip("kubernetes")

from kube_exec_standin import StandIn  # noqa: E402

from codestudio.runtime.kubernetes.portforward import (  # noqa: E402
    Forwarder,
    ensure_forwards,
    forward_ports,
    stop_forwards,
)

GUARD = 18080


class Backend:
    """An HTTP server answering its own name (the pod's guard port)."""

    def __init__(self, name: str):
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                body = f"{name} {self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cluster(tmp_path):
    backends = {"cs-s1-a": Backend("pod-a"), "cs-s1-b": Backend("pod-b")}
    with StandIn({"cs-s1-a": tmp_path, "cs-s1-b": tmp_path}) as server:
        for pod, backend in backends.items():
            server.forwards[(pod, GUARD)] = backend.port
        yield server
    for b in backends.values():
        b.close()


def get(port: int, path: str = "/") -> str:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10).text


def test_each_connection_gets_a_websocket_and_a_dropped_one_is_reopened(cluster):
    fwd = Forwarder(cluster.configuration(), "cs", "cs-s1-a", {GUARD: 0})
    try:
        local = fwd.local[GUARD]
        assert get(local, "/x") == "pod-a /x"
        # A kept-alive connection whose websocket the API server cuts ends; the next one works.
        with httpx.Client(timeout=10) as client:
            assert client.get(f"http://127.0.0.1:{local}/1").text == "pod-a /1"
            cluster.drop_forwards()
            time.sleep(0.2)
            assert client.get(f"http://127.0.0.1:{local}/2").text == "pod-a /2"  # httpx retries on a fresh socket
        assert get(local, "/3") == "pod-a /3"
        assert fwd.opened >= 4 and cluster.forward_count == fwd.opened
    finally:
        fwd.close()
    with pytest.raises(httpx.ConnectError):
        get(local)


def test_a_replaced_pod_is_found_by_its_pod_set(cluster):
    del cluster.pods["cs-s1-a"]  # the Deployment replaced it
    fwd = Forwarder(cluster.configuration(), "cs", "cs-s1-a", {GUARD: 0}, resolve=lambda: "cs-s1-b")
    try:
        assert get(fwd.local[GUARD]) == "pod-b /"
        assert fwd.pod == "cs-s1-b"
    finally:
        fwd.close()


def test_pod_side_errors_close_only_that_connection(cluster):
    fwd = Forwarder(cluster.configuration(), "cs", "cs-s1-a", {GUARD + 1: 0})  # nothing listens there in the pod
    logged = []
    fwd.log = logged.append
    try:
        with pytest.raises(httpx.HTTPError):
            get(fwd.local[GUARD + 1])
        time.sleep(0.2)
        assert any("connection refused" in m for m in logged)
    finally:
        fwd.close()


def test_the_forwarder_process_outlives_its_caller_and_is_restarted_on_its_ports(cluster, tmp_path, monkeypatch):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "standin",
        "clusters": [{"name": "standin", "cluster": {"server": cluster.host}}],
        "users": [{"name": "u", "user": {"token": "test-token"}}],
        "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "u", "namespace": "cs"}}],
    }))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    runtime = SimpleNamespace(settings=SimpleNamespace(context=None), namespace="cs")
    workdir = tmp_path / "cs-s1"
    ports = forward_ports(runtime, "cs-s1-a", {8888: GUARD}, workdir=workdir)
    try:
        local = ports[8888]
        assert get(local, "/p") == "pod-a /p"
        assert forward_ports(runtime, "cs-s1-a", {8888: GUARD}, workdir=workdir) == ports  # kept, not doubled
        state = json.loads((workdir / "forward-cs-s1-a.json").read_text())
        os.kill(state["pid"], signal.SIGKILL)  # the machine rebooted, or someone killed it
        for _ in range(100):
            if not os.path.exists(f"/proc/{state['pid']}"):
                break
            time.sleep(0.05)
        with pytest.raises(httpx.HTTPError):
            get(local)
        assert ensure_forwards(runtime, "cs-s1", workdir=workdir) == ["cs-s1-a"]
        assert get(local, "/again") == "pod-a /again"  # same local port: nginx's upstream is still right
        assert ensure_forwards(runtime, "cs-s1", workdir=workdir) == []
    finally:
        stop_forwards(runtime, "cs-s1", workdir=workdir)
    assert not list(workdir.glob("forward-*.json"))
    with socket.socket() as s:
        # SO_REUSEADDR: the test's own closed connections may sit in TIME_WAIT on that
        # port; a listener still holding it would make the bind fail all the same.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", local))  # free again
    stop_forwards(runtime, "cs-s1", workdir=workdir)  # idempotent


def test_a_replica_forwarder_state_from_before_follow_was_recorded_restarts_without_following(tmp_path, monkeypatch):
    """State files written before ``follow`` was recorded: a webapp replica's (its pod set's folder
    says per_pod) must come back as no-follow, a studio's keeps following."""
    from codestudio.runtime.kubernetes import portforward

    spawned = {}
    monkeypatch.setattr(portforward, "_spawn", lambda runtime, name, pod, mapping, workdir, *, follow:
                        spawned.__setitem__(pod, follow))
    old_state = {"pid": 2 ** 22 + 12345, "ports": {"8080": [18080, 40001]}}  # no "follow", a dead pid
    for name, per_pod in (("wa-proj-app-g1-abcd", True), ("cs-s1", False)):
        workdir = tmp_path / name
        workdir.mkdir()
        (workdir / "podset.json").write_text(json.dumps({"per_pod": per_pod}))
        (workdir / f"forward-{name}-a.json").write_text(json.dumps({**old_state, "pod": f"{name}-a"}))
        assert portforward.ensure_forwards(SimpleNamespace(), name, workdir=workdir) == [f"{name}-a"]
    assert spawned == {"wa-proj-app-g1-abcd-a": False, "cs-s1-a": True}
