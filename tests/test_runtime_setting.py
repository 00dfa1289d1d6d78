"""``codestudio runtime show|set``: validated when set, nothing saved on failure, no credential shown.

The cluster is the API emulator on loopback (tests/e2e/k8s_emulator.py),
reached through a real kubeconfig file; the registry is a loopback HTTP
server answering ``/v2/`` as a registry does.
"""

from __future__ import annotations

import http.server
import json
import threading

import pytest

pytest.importorskip("kubernetes")

from k8s_emulator import EmulatorServer  # noqa: E402


NS = "studios"


@pytest.fixture
def emu():
    with EmulatorServer() as server:
        server.run(server.emulator.put, ("", "v1", "namespaces"), None, {"metadata": {"name": NS}}, create=True)
        yield server


@pytest.fixture
def registry():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200 if self.path == "/v2/" else 404)
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch, emu):
    monkeypatch.setenv("CODESTUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KUBECONFIG", emu.kubeconfig(tmp_path / "kubeconfig", context="emu"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return tmp_path / "home"


class Result:
    def __init__(self, proc):
        self.exit_code = proc.returncode
        self.stdout = proc.stdout
        self.output = proc.stdout + proc.stderr


def cli(*args):
    import subprocess
    import sys

    return Result(subprocess.run([sys.executable, "-m", "codestudio", *args], capture_output=True, text=True, timeout=120))


def test_show_is_local_by_default(home):
    r = cli("runtime", "show", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout) == {"runtime": "local"}


def test_set_kubernetes_checks_then_saves_and_show_has_no_credential(home, registry):
    r = cli("runtime", "set", "kubernetes", "--context", "emu", "--namespace", NS, "--registry", registry,
            "--gateway", "in-cluster")
    assert r.exit_code == 0, r.output
    shown = cli("runtime", "show", "--json")
    data = json.loads(shown.stdout)
    assert data == {"runtime": "kubernetes", "context": "emu", "namespace": NS, "registry": registry,
                    "pull_secret": "(none)", "gateway": "in-cluster"}
    assert "not-a-real-token" not in shown.output + r.output
    assert "not-a-real-token" not in (home / "runtime.json").read_text()
    from codestudio.runtime.current import get_runtime

    assert get_runtime().name == "kubernetes"
    assert cli("runtime", "set", "local").exit_code == 0
    assert json.loads(cli("runtime", "show", "--json").stdout) == {"runtime": "local"}
    assert get_runtime().name == "local"


@pytest.mark.parametrize("args,words", [
    (["--context", "nope"], "--context 'nope': no such context"),
    (["--namespace", "missing"], "--namespace missing: no such namespace"),
    (["--namespace", "Bad_NS"], "--namespace 'Bad_NS'"),
    (["--registry", "https://user:pw@r.example"], "--registry"),
    (["--registry", "127.0.0.1:1"], "no registry answers"),
    (["--pull-secret", "absent"], "--pull-secret absent: no such Secret"),
    (["--pull-secret", "Not A Name"], "--pull-secret"),
])
def test_bad_settings_exit_2_name_the_field_and_save_nothing(home, registry, args, words):
    base = {"--context": "emu", "--namespace": NS, "--registry": registry}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = [x for kv in base.items() for x in kv]
    r = cli("runtime", "set", "kubernetes", *argv)
    assert r.exit_code == 2, r.output
    assert words in r.output
    assert "pw@" not in r.output
    assert not (home / "runtime.json").exists()


def test_a_failing_api_server_exits_1_and_saves_nothing(home, registry, emu):
    emu.run(setattr, emu.emulator, "namespace_error", (503, "ServiceUnavailable", "etcd is down"))
    r = cli("runtime", "set", "kubernetes", "--context", "emu", "--namespace", NS, "--registry", registry)
    assert r.exit_code == 1, r.output
    assert "the API server failed (HTTP 503" in r.output
    assert not (home / "runtime.json").exists()
