"""``studio start|stop`` through the Kubernetes runtime: the lifecycle, the emulator and the stand-in kubelet.

What runs for real: the lifecycle, the KubernetesRuntime with the official
client against the API emulator (tests/e2e/k8s_emulator.py), the stand-in
kubelet, the gateway routes (a recording gateway, no nginx) and the
engine's probe against a stand-in guard listening at the Service's address.
What is stood in: the image build (no buildah) and, here only, exec (the
sync agent runs against a local folder; the websocket exec transport has
its own tests in tests/test_kube_exec.py).
"""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading

import pytest

pytest.importorskip("kubernetes")

from k8s_emulator import EmulatorServer, StandInKubelet  # noqa: E402

from codestudio.errors import RuntimeFailure  # noqa: E402
from codestudio.runtime.kubernetes.runtime import KubernetesRuntime  # noqa: E402
from codestudio.runtime.kubernetes.settings import RuntimeSettings  # noqa: E402

NS = "studios"
SERVICE_IP = "127.0.0.2"  # loopback too (Linux routes 127/8): the stand-in guard listens there
DIGEST = "registry.example.com/codestudio/t@sha256:" + "c" * 64


class LocalExecRuntime(KubernetesRuntime):
    """The Kubernetes runtime with exec run on this machine (the sync agent against a folder)."""

    def __init__(self, *a, folder, **kw):
        super().__init__(*a, **kw)
        self.folder = folder

    def exec(self, pod, argv, *, user="codestudio", stdin=False):
        argv = list(argv)
        if argv[1:3] == ["-I", "-c"]:
            (self.folder / pod).mkdir(parents=True, exist_ok=True)
            return subprocess.Popen([sys.executable, "-I", "-c", argv[3], argv[4], str(self.folder / pod)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def exec_framed(self, pod, argv, *, user="codestudio"):
        return self.exec(pod, argv, user=user, stdin=True)


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture
def guard():
    """A stand-in for the runner's guard at the Service address: answers the engine's probe."""
    port = free_port(SERVICE_IP)

    class Guard(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(204 if self.headers.get("X-Codestudio-Probe") == "tcp" else 200)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer((SERVICE_IP, port), Guard)
    server.port = port
    yield server
    server.server_close()


@pytest.fixture
def k8s(fake_runtime, tmp_path):
    """The lifecycle driven by a KubernetesRuntime against the emulator (the recording gateway of fake_runtime)."""
    from kubernetes import client

    from codestudio.runtime.current import use_runtime
    from codestudio.runtime.kubernetes.client import Cluster

    with EmulatorServer() as emu:
        cfg = client.Configuration()
        cfg.host = emu.url
        lines: list[str] = []
        rt = LocalExecRuntime(RuntimeSettings("kubernetes", None, NS, "registry.example.com", None, "in-cluster"),
                              cluster=Cluster(context=None, namespace=NS, api_client=client.ApiClient(cfg)),
                              pusher=lambda image: DIGEST, progress=lines.append, start_timeout=20,
                              folder=tmp_path / "pods")
        rt.lines, rt.emu, rt.gateway = lines, emu, fake_runtime.gateway
        with use_runtime(rt):
            yield rt


def studio_with_port(write_template, port: int, extra: str = ""):
    from codestudio.access import Identity
    from codestudio.projects import create_project
    from codestudio.runtime.lifecycle import create_studio
    from codestudio.templates_store import add_template

    who = Identity("alice", True, "alice")
    path = write_template(f"""
id: k8s-tiny
permissions: {{all: true}}
blocks:
  - {{type: entrypoint, label: api, command: [api], port: {port}, expose_html: true}}
{extra}""")
    add_template(who, path)
    create_project(who, "P1")
    return who, create_studio(who, "P1", "s", "k8s-tiny")


@pytest.fixture(autouse=True)
def _alice(monkeypatch):
    from codestudio import access

    monkeypatch.setattr(access, "os_user", lambda: "alice")
    monkeypatch.setattr(access, "os_groups", lambda user: set())


def test_start_runs_through_the_cluster_and_routes_to_the_service_then_stop_cleans_up(k8s, guard, write_template):
    from codestudio.runtime.lifecycle import start_studio, stop_studio
    from codestudio.runtime.routes import running_studio_routes

    who, studio = studio_with_port(write_template, guard.port)
    threading.Thread(target=guard.serve_forever, daemon=True).start()
    with StandInKubelet(k8s.emu, NS, service_ip=SERVICE_IP):
        running = start_studio(who, studio.id, timeout=20, quiet=True)
        assert running.state == "RUNNING"
        (route,) = running_studio_routes()
        assert route.upstream_host == SERVICE_IP and route.ports[0].upstream_port == guard.port
        assert any("pulled:" in line for line in k8s.lines)
        stopped = stop_studio(who, studio.id, quiet=True)
    guard.shutdown()
    assert stopped.state == "STOPPED"
    for plural in ("deployments", "services", "secrets", "networkpolicies", "pods"):
        assert k8s.emu.objects(plural, NS) == [], plural


def test_an_image_pull_failure_marks_the_studio_failed_in_words_with_logs_kept(k8s, write_template):
    from codestudio.runtime.lifecycle import start_studio
    from codestudio.runtime.records import get_studio

    who, studio = studio_with_port(write_template, 8081)
    with StandInKubelet(k8s.emu, NS, failure="ImagePullBackOff", service_ip=SERVICE_IP), \
            pytest.raises(RuntimeFailure, match="could not be pulled"):
        start_studio(who, studio.id, timeout=20, quiet=True)
    failed = get_studio(studio.id)
    assert failed.state == "FAILED" and "could not be pulled" in failed.message
    assert list(failed.logs_dir.glob("*-failed-*.log"))
    assert k8s.emu.objects("deployments", NS) == [] and k8s.emu.objects("pods", NS) == []


def test_a_container_that_crashes_after_it_started_fails_the_start_with_the_reason(k8s, write_template):
    from codestudio.runtime.lifecycle import start_studio
    from codestudio.runtime.records import get_studio

    who, studio = studio_with_port(write_template, free_port(SERVICE_IP))  # nothing answers the probe
    with StandInKubelet(k8s.emu, NS, failure="CrashLoopBackOff", delay=0.2, service_ip=SERVICE_IP), \
            pytest.raises(RuntimeFailure, match="keeps crashing"):
        start_studio(who, studio.id, timeout=20, quiet=True)
    failed = get_studio(studio.id)
    assert failed.state == "FAILED" and "CrashLoopBackOff" in failed.message
    logs = list(failed.logs_dir.glob("*.log"))
    assert logs and any("ImportError" in p.read_text() for p in logs)
    assert k8s.emu.objects("deployments", NS) == []
