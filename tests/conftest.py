"""Shared fixtures: an isolated data dir, a fresh plugin registry, template writers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def codestudio_home(tmp_path_factory, monkeypatch) -> Path:
    home = tmp_path_factory.mktemp("codestudio-home")
    monkeypatch.setenv("CODESTUDIO_HOME", str(home))
    return home


@pytest.fixture
def blocks():
    """A fresh plugin manager per test (installed blocks only)."""
    from codestudio.plugins import load_plugins

    return load_plugins()


@pytest.fixture
def write_template(tmp_path):
    """Write a template file (dedented) into tmp_path and return its path."""

    def write(text: str, name: str = "template.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


# --------------------------------------------------------------------------
# A fake runtime: drives the studio lifecycle without containers


class FakeRuntime:
    """An in-memory :class:`codestudio.runtime.base.Runtime` for unit tests.

    Pods are records; each pod's endpoints are real loopback listeners when
    ``ready`` (so the engine's own TCP/HTTP probe passes) and closed ports
    otherwise. The sync agent runs as a local subprocess against
    ``files/<pod>/`` (like :class:`codestudio.sync.LocalTransport`); other
    commands are recorded in ``commands`` and succeed. Set ``fail_start``,
    ``crash_after_start`` or ``ready`` to script a fault.
    """

    name = "fake"

    def __init__(self, base: Path):
        self.base = base
        self.podsets: dict = {}
        self.commands: list[tuple[str, list[str]]] = []
        self.started: list = []
        self.stopped: list[str] = []
        self.ready = True
        self.fail_start: str | None = None
        self.crash_after_start = False
        self.on_start = None  # called with the spec, inside start()
        self.fail_commands = False  # commands other than the sync agent exit 2
        self._servers: dict[str, list] = {}
        self.scaled: list[tuple] = []
        self._next: dict[str, int] = {}

    # The interface --------------------------------------------------------
    def start(self, spec):
        from codestudio.errors import RuntimeFailure
        from codestudio.runtime.base import Endpoint, Pod, PodSet

        assert spec.name not in self.podsets, f"pod set {spec.name} started twice"
        if self.on_start:
            self.on_start(spec)
        if self.fail_start:
            raise RuntimeFailure(self.fail_start)
        self.started.append(spec)
        pods = []
        for i in range(spec.replicas):
            pod = f"{spec.name}-pod-{i}"
            endpoints = {p: Endpoint("127.0.0.1", self._listen(pod)) for p in spec.ports}
            phase = "exited" if self.crash_after_start else "running"
            pods.append(Pod(pod, phase, endpoints, "the container exited with status 3" if self.crash_after_start else None))
            (self.base / pod).mkdir(parents=True, exist_ok=True)
        self.podsets[spec.name] = PodSet(spec.name, dict(spec.labels), tuple(pods))
        return self.podsets[spec.name]

    def _listen(self, pod: str) -> int:
        import http.server
        import socket
        import threading

        if not self.ready or self.crash_after_start:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()  # nothing listens there: probes fail
            return port

        class Ok(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                # Like the runner's guard: a TCP probe through it is answered 204.
                self.send_response(204 if self.headers.get("X-Codestudio-Probe") == "tcp" else 200)
                self.end_headers()

            def log_message(self, *a):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._servers.setdefault(pod, []).append(server)
        return server.server_address[1]

    def pods(self, name):
        ps = self.podsets.get(name)
        return list(ps.pods) if ps else []

    def events(self, name, *, timeout=None):
        from codestudio.runtime.base import RuntimeEvent

        for pod in self.pods(name):
            yield RuntimeEvent("scheduled", "created", pod=pod.name)
            yield RuntimeEvent("started" if pod.running else "failed", pod.phase, pod=pod.name, reason=pod.message)

    def exec(self, pod, argv, *, user="codestudio", stdin=False):
        import subprocess
        import sys

        argv = list(argv)
        if argv[1:3] == ["-I", "-c"]:  # the sync agent: run it against this pod's folder
            return subprocess.Popen([sys.executable, "-I", "-c", argv[3], argv[4], str(self.base / pod)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.commands.append((pod, argv))
        code = "import sys; sys.exit(2)" if self.fail_commands else "print('ran')"
        return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def exec_detached(self, pod, argv, *, user="codestudio"):
        self.commands.append((pod, list(argv)))

    def copy_out(self, pod, path, out):
        import tarfile

        source = self.base / pod / path.lstrip("/")
        if not source.exists():
            return False
        with tarfile.open(fileobj=out, mode="w|") as tar:
            tar.add(source, arcname=source.name)
        return True

    def logs(self, pod, *, follow=False, tail=None):
        yield f"logs of {pod}\n".encode()

    def save_logs(self, pod, target):
        if not any(p.name == pod for ps in self.podsets.values() for p in ps.pods):
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"logs of {pod}\n")
        return True

    def stop(self, name, *, timeout=10):
        ps = self.podsets.pop(name, None)
        if ps is not None:
            self.stopped.append(name)
            for pod in ps.pods:
                for server in self._servers.pop(pod.name, []):
                    server.shutdown()
                    server.server_close()

    def scale(self, name, replicas, *, remove=()):
        """As the local runtime: ``remove`` and stopped pods go first, then the newest; new pods get new names."""
        import dataclasses

        from codestudio.errors import RuntimeFailure
        from codestudio.runtime.base import Endpoint, Pod

        ps = self.podsets.get(name)
        if ps is None:
            raise RuntimeFailure(f"pod set {name} does not exist")
        spec = next(s for s in reversed(self.started) if s.name == name)
        kept = [p for p in ps.pods if p.running and p.name not in remove][:replicas]
        for pod in ps.pods:
            if pod not in kept:
                for server in self._servers.pop(pod.name, []):
                    server.shutdown()
                    server.server_close()
        self.scaled.append((name, replicas, tuple(remove)))
        pods = list(kept)
        while len(pods) < replicas:
            self._next[name] = index = self._next.get(name, spec.replicas) + 1
            pod = f"{name}-pod-{index}"
            pods.append(Pod(pod, "running", {p: Endpoint("127.0.0.1", self._listen(pod)) for p in spec.ports}))
            (self.base / pod).mkdir(parents=True, exist_ok=True)
        self.podsets[name] = dataclasses.replace(ps, pods=tuple(pods))
        return self.podsets[name]

    def list(self):
        return list(self.podsets.values())

    def run(self, pod, argv, *, user="codestudio", timeout=60):
        from codestudio.runtime.base import Runtime

        return Runtime.run(self, pod, argv, user=user, timeout=timeout)

    def running(self, name):
        pods = self.pods(name)
        return bool(pods) and all(p.running for p in pods)

    # Faults ---------------------------------------------------------------
    def vanish(self, name):
        """The pod set disappears behind the engine's back (removed by hand, host rebooted)."""
        self.podsets.pop(name, None)

    def crash(self, name):
        """The pod's main container exits."""
        import dataclasses

        ps = self.podsets[name]
        self.podsets[name] = dataclasses.replace(ps, pods=tuple(
            dataclasses.replace(p, phase="exited", message="the container exited with status 137") for p in ps.pods))


@pytest.fixture
def fake_runtime(tmp_path):
    """Install a :class:`FakeRuntime` for every lifecycle call of the test; no gateway process is run."""
    from codestudio.runtime import base
    from codestudio.runtime.current import use_runtime

    base.Runtime.register(FakeRuntime)
    runtime = FakeRuntime(tmp_path / "fake-pods")
    runtime.gateway = FakeGateway()
    import codestudio.runtime.routes as routes

    from codestudio.runtime.lifecycle import plans

    # Replaced where it is looked up when called (the studio and webapp starts both call plans.ensure_image).
    original, original_image = routes.gateway, plans.ensure_image
    routes.gateway = lambda: runtime.gateway
    # No buildah either: every studio "runs" a fixed image name.
    plans.ensure_image = lambda plan, **kw: _FakeBuild(f"localhost/codestudio/{plan.template.id}:fake", "fakeid")
    try:
        with use_runtime(runtime):
            yield runtime
    finally:
        routes.gateway, plans.ensure_image = original, original_image


class _FakeBuild:
    def __init__(self, image, image_id):
        self.image, self.image_id = image, image_id


class FakeGateway:
    """Stands in for :class:`codestudio.gateway.process.Gateway`: records what it would serve."""

    class settings:  # noqa: N801 - stands in for GatewaySettings
        base_url = "http://127.0.0.1:8800"
        webapp_base_url = "http://127.0.0.1:8800"

    def __init__(self):
        self.running = False
        self.served: list[str] = []
        self.applies = 0

    def pid(self):
        return 4242 if self.running else None

    def apply(self, studios=None):
        from codestudio.runtime.routes import running_studio_routes

        self.applies += 1
        self.running = True
        self.served = [r.studio_id for r in running_studio_routes()]
        return "ok"


# --------------------------------------------------------------------------
# The webapp template the webapp tests publish (tests/test_webapps.py, tests/test_kubernetes_webapps.py)

_WEBAPP_TEMPLATE = """\
id: {template_id}
permissions:
  all: true
blocks:
  - type: entrypoint
    label: App
    command: [python3, -m, http.server, "8080"]
    port: 8080
    launch_in_webapp: true
    proxied_subpath: $request_uri
  - type: entrypoint
    label: Studio only
    command: [sleep, infinity]
    port: 9000
  - type: starter-files
    zone: code_studio-versioned
    files: {{app/version.txt: "{version}\\n"}}
  - type: kubernetes
    readiness_url: "${{baseUrl}}/health"
"""


@pytest.fixture
def webapp_template():
    """The text of a webapp template: ``webapp_template("wa-unit", version="v2")``.

    One entrypoint launched in the webapp (port 8080, proxied with its
    subpath), one studio-only entrypoint (port 9000), a versioned starter
    file ``app/version.txt`` holding ``version`` (so an update is visible)
    and a Kubernetes readiness URL.
    """

    def text(template_id: str, *, version: str = "v1") -> str:
        return _WEBAPP_TEMPLATE.format(template_id=template_id, version=version)

    return text
