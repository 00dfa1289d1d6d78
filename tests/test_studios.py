"""Studio lifecycle pieces that need no container: manifest adaptation, ports, probes, create, routes."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import socket
import threading
from pathlib import Path

import pytest

from codestudio import access
from codestudio.errors import PermissionDenied, UsageError
from codestudio.runtime import local, readiness

REPO = Path(__file__).resolve().parents[1]


def _manifest():
    from codestudio.plan import plan_template
    from codestudio.render import StudioContext, kubernetes_manifest

    template, state = plan_template(REPO / "examples" / "advanced.yaml")
    ctx = StudioContext(project_key="P", studio_id="s1", owner="alice")
    return state, kubernetes_manifest(state, ctx, template.id)


def test_adaptations_only_touch_what_podman_lacks():
    state, docs = _manifest()
    ports = {p: 40000 + i for i, p in enumerate(state.all_ports)}
    adapted = local.adapt_for_podman(docs, ports, guard_secret="g" * 64, node_name="node-1")
    assert docs != adapted and docs[0]["spec"]["template"]["spec"]["containers"][0]["ports"][0].get("hostPort") is None
    container = adapted[0]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["K8S_NODE_NAME"] == {"name": "K8S_NODE_NAME", "value": "node-1"}
    assert env["K8S_POD_NAMESPACE"] == {"name": "K8S_POD_NAMESPACE", "value": "codestudio"}
    # What kube play resolved itself, podman run needs spelled out: the pod's name and a uid.
    assert env["K8S_POD_NAME"] == {"name": "K8S_POD_NAME", "value": docs[0]["metadata"]["name"] + "-pod-0"}
    assert re.fullmatch(r"[0-9a-f-]{36}", env["K8S_POD_ID"]["value"])
    assert env["CODESTUDIO_GUARD_SECRET"] == {"name": "CODESTUDIO_GUARD_SECRET", "value": "g" * 64}
    # Only the guard ports are published, each on the host port chosen for its server port.
    from codestudio.render import guard_ports

    guarded = guard_ports(state.all_ports)
    assert [(p["containerPort"], p["hostPort"], p["hostIP"]) for p in container["ports"]] == [
        (guarded[p], ports[p], "127.0.0.1") for p in state.all_ports
    ]
    original = docs[0]["spec"]["template"]["spec"]["containers"][0]
    for key in ("image", "readinessProbe", "securityContext", "name"):
        assert container.get(key) == original.get(key)
    assert adapted[1:] == docs[1:]  # the Service and NetworkPolicy are untouched


def test_adaptation_needs_the_guard_secret():
    state, docs = _manifest()
    with pytest.raises(Exception, match="guard secret"):
        local.adapt_for_podman(docs, {p: 40000 for p in state.all_ports})


def test_ports_taken_sees_a_listener():
    with socket.create_server(("127.0.0.1", 0)) as s:
        assert local.ports_taken([s.getsockname()[1]])
    assert not local.ports_taken(local.free_ports(2))


def test_adaptation_refuses_a_port_without_host_port():
    _, docs = _manifest()
    with pytest.raises(Exception, match="no host port"):
        local.adapt_for_podman(docs, {}, guard_secret="g" * 64)


def test_free_ports_are_distinct_and_avoid_reserved():
    ports = local.free_ports(5)
    assert len(set(ports)) == 5
    again = local.free_ports(3, avoid=ports)
    assert not set(again) & set(ports)


def test_tcp_and_http_probes():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    ok, detail = readiness.wait_ready(readiness.ProbeTarget("tcp", "127.0.0.1", dead), 0.2)
    assert not ok and detail

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/base/health" else 503)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        assert readiness.wait_ready(readiness.ProbeTarget("tcp", "127.0.0.1", port), 2)[0]
        assert readiness.wait_ready(readiness.ProbeTarget("http", "127.0.0.1", port, "/base/health"), 2)[0]
        ok, detail = readiness.wait_ready(readiness.ProbeTarget("http", "127.0.0.1", port, "/other"), 0.3)
        assert not ok and detail == "HTTP 503"
        gone = readiness.wait_ready(readiness.ProbeTarget("http", "127.0.0.1", port, "/other"), 30,
                                    alive=lambda: False, alive_every=0.05)
        assert gone == (False, "the container stopped (HTTP 503)")
    finally:
        server.shutdown()


def test_probes_through_the_guard_carry_its_secret():
    from codestudio.runner import runner as rmod

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if "X-Codestudio-Guard" not in self.headers else 500)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        idle = s.getsockname()[1]  # a server port where nothing listens
    guard = rmod.Guard([(port, 0), (idle, 0)], "k" * 64, rmod.Output(), bind="127.0.0.1", upstream_hosts=("127.0.0.1",))
    guard.start()
    try:
        gport, gidle = guard.ports[port], guard.ports[idle]
        # The guard accepts at once, so a plain TCP connect would pass before any server listens.
        assert readiness.probe_once(readiness.ProbeTarget("tcp", "127.0.0.1", gidle))[0]
        assert readiness.probe_once(readiness.ProbeTarget("tcp", "127.0.0.1", gidle, guard_secret="k" * 64)) == (
            False, "guard: HTTP 503")
        assert readiness.probe_once(readiness.ProbeTarget("tcp", "127.0.0.1", gport, guard_secret="k" * 64))[0]
        assert readiness.probe_once(readiness.ProbeTarget("http", "127.0.0.1", gport, "/", guard_secret="k" * 64)) == (
            True, "HTTP 200")
        assert readiness.probe_once(readiness.ProbeTarget("http", "127.0.0.1", gport, "/", guard_secret="x" * 64)) == (
            False, "HTTP 403")
    finally:
        guard.close()
        server.shutdown()


@pytest.fixture
def stored(tmp_path, monkeypatch):
    from codestudio.templates_store import add_template

    monkeypatch.setattr(access, "os_user", lambda: "alice")
    monkeypatch.setattr(access, "os_groups", lambda user: set())
    folder = tmp_path / "tpl"
    shutil.copytree(REPO / "examples" / "files", folder / "files")
    shutil.copy(REPO / "examples" / "advanced.yaml", folder / "advanced.yaml")
    who = access.identify()
    add_template(who, folder / "advanced.yaml")
    from codestudio.projects import create_project

    for key in ("PROJ", "OTHER"):
        create_project(who, key)
    return who


def test_create_writes_starter_files_once_and_checks_permissions(stored, monkeypatch):
    from codestudio.runtime import studios
    from codestudio.sync import zone_dir

    s = studios.create_studio(stored, "PROJ", "My Notebook!", "advanced-example")
    assert s.id == "my-notebook" and s.state == "STOPPED" and s.owner == "alice"
    readme = zone_dir("code_studio-versioned", studio_id=s.id, project_key="PROJ", user="alice") / "notes" / "README.md"
    assert readme.read_text().startswith("# Start here")
    with pytest.raises(UsageError, match="already has a studio named"):
        studios.create_studio(stored, "PROJ", "My Notebook!", "advanced-example")
    other = studios.create_studio(stored, "OTHER", "My Notebook!", "advanced-example")
    assert other.id == "my-notebook-2"
    with pytest.raises(UsageError, match="invalid project key"):
        studios.create_studio(stored, "bad key", "x", "advanced-example")
    with pytest.raises(PermissionDenied, match="may not create studios from template"):
        studios.create_studio(stored, "PROJ", "for bob", "advanced-example", owner="bob")
    monkeypatch.setattr(access, "os_user", lambda: "bob")
    bob = access.identify()
    with pytest.raises(PermissionDenied, match="granted to data-science"):
        studios.create_studio(bob, "PROJ", "mine", "advanced-example")
    with pytest.raises(PermissionDenied, match="only admins may create studios for another user"):
        studios.create_studio(bob, "PROJ", "theirs", "advanced-example", owner="carol")
    with pytest.raises(PermissionDenied, match="belongs to alice"):
        studios.delete_studio(bob, s.id)


def test_template_remove_refused_while_studios_use_it(stored):
    from codestudio.runtime import studios
    from codestudio.templates_store import remove_template

    from codestudio.store import Store
    from codestudio.templates_store import get_template, templates_dir

    a = studios.create_studio(stored, "PROJ", "busy one", "advanced-example")
    b = studios.create_studio(stored, "PROJ", "idle one", "advanced-example")
    with pytest.raises(UsageError, match="used by studio"):
        remove_template(stored, "advanced-example")
    # A running (or starting/stopping) studio still needs the template to pull its
    # files on stop: refused even with --force, naming the studios to stop.
    for state in (studios.RUNNING, studios.STARTING, studios.STOPPING):
        studios._set_state(Store.default(), a.id, state)
        with pytest.raises(UsageError, match=rf"running studio\(s\) {a.id} \({state}\); stop them first") as exc:
            remove_template(stored, "advanced-example", force=True)
        assert "idle-one" not in str(exc.value)
        assert exc.value.exit_code == 2
        assert get_template("advanced-example").version == 1
        assert (templates_dir() / "advanced-example").is_dir()
    studios._set_state(Store.default(), a.id, studios.STOPPED)
    remove_template(stored, "advanced-example", force=True)
    # Stopped studios keep their rows; they cannot start until the template is re-added.
    assert {s.id for s in studios.list_studios()} == {a.id, b.id}
    assert not (templates_dir() / "advanced-example").exists()


def test_gateway_routes_come_from_running_studios_only(stored):
    from codestudio.gateway.config import new_session_secret
    from codestudio.runtime import studios

    a = studios.create_studio(stored, "PROJ", "a", "advanced-example")
    b = studios.create_studio(stored, "PROJ", "b", "advanced-example")
    for s in (a, b):
        s.dir.mkdir(parents=True)
        (s.dir / "routes.json").write_text(json.dumps({
            "ports": [{"port": 8081, "proxied_subpath": "$request_uri", "label": "API"}],
            "actions": [["disk-usage", "Disk usage"]],
        }))
    from codestudio.store import Store

    studios._set_state(Store.default(), a.id, studios.RUNNING, None, ports={8081: 45000}, token=new_session_secret())
    [routes] = studios.running_studio_routes()
    assert routes.studio_id == a.id and routes.ports[0].upstream_port == 45000
    assert routes.ports[0].proxied_subpath == "$request_uri" and routes.actions == (("disk-usage", "Disk usage"),)
    from codestudio.cli.gateway import _gateway

    assert [r.studio_id for r in _gateway()._studios()] == [a.id]


def test_status_and_list_all_respect_ownership(stored, monkeypatch):
    from codestudio.runtime import studios

    s = studios.create_studio(stored, "PROJ", "mine", "advanced-example")
    monkeypatch.setattr(access, "os_user", lambda: "bob")
    bob = access.identify()
    assert not bob.is_admin
    with pytest.raises(PermissionDenied, match=f"studio {s.id} belongs to alice; bob may not see the status of it"):
        studios.studio_status(bob, s.id)
    with pytest.raises(PermissionDenied, match=r"only admins may list every user's studios \(--all\)"):
        studios.list_studios(bob, all_users=True)
    assert studios.list_studios(bob) == []
    # Admins (alice) still see everything.
    assert studios.studio_status(stored, s.id)["owner"] == "alice"
    assert [x.id for x in studios.list_studios(stored, all_users=True)] == [s.id]


def _running_with_routes(studios, who, name):
    from codestudio.gateway.config import new_session_secret
    from codestudio.store import Store

    s = studios.create_studio(who, "PROJ", name, "advanced-example")
    s.dir.mkdir(parents=True)
    (s.dir / "routes.json").write_text(json.dumps({
        "ports": [{"port": 8081, "proxied_subpath": "/", "label": "API"}], "actions": []}))
    studios._set_state(Store.default(), s.id, studios.STARTING, None, ports={8081: 45000}, token=new_session_secret())
    return s


class _StoppedGateway:
    class settings:  # noqa: N801 - stands in for GatewaySettings
        base_url = "http://127.0.0.1:8800"

    applied = 0

    def pid(self):
        return None

    def apply(self):
        type(self).applied += 1


def test_url_ttl_bounds_and_stopped_gateway_warning(stored, fake_runtime, monkeypatch, capsys):
    from codestudio.runtime import routes, studios

    s = studios.start_studio(stored, studios.create_studio(stored, "PROJ", "linked", "advanced-example").id, quiet=True)
    monkeypatch.setattr(routes, "gateway", _StoppedGateway)
    for bad in (9, 7 * 24 * 3600 + 1):
        with pytest.raises(UsageError, match="at most|to 604800 seconds") as info:
            studios.access_url(stored, s.id, ttl=bad)
        assert info.value.exit_code == 2
    url = studios.access_url(stored, s.id, ttl=7 * 24 * 3600)
    assert url.startswith(f"http://127.0.0.1:8800/code-studios/PROJ/{s.id}/?")
    err = capsys.readouterr().err
    assert "gateway is stopped" in err and "codestudio gateway start" in err
    assert _StoppedGateway.applied == 0  # printing a link never starts nginx


def test_cli_url_ttl_maximum_is_a_usage_error(stored, capsys):
    from codestudio.cli import main

    with pytest.raises(SystemExit) as info:
        main(["studio", "url", "whatever", "--ttl", "604801"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "604801" in err and "604800" in err
