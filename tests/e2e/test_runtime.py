"""End-to-end: studios on real podman behind the real nginx gateway.

One template (built once per module on the real base image) carries every
server the checks need: a root-only server behind ``proxied_subpath: /``,
the examples' ``$request_uri`` server, a stdlib WebSocket echo, a server
on a port with ``expose_html: false`` (routed, not a tab), an
entrypoint that always crashes, two actions and a starter file. One studio
of it runs for the whole module; tests that stop or delete studios use
their own.
"""

from __future__ import annotations

import base64
import http.cookiejar
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def _pod(studio) -> str:
    """The studio's pod under the local runtime (podman names it after the Deployment)."""
    from codestudio.runtime import local
    from codestudio.runtime.studios import pod_set_name

    return local.pod_name(pod_set_name(studio))


def _ctr(studio) -> str:
    return _pod(studio) + "-studio"


REPO = Path(__file__).resolve().parents[2]
RUN = uuid.uuid4().hex[:6]

ROOT_SERVER = '''\
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/code-studios"):
            self.send_error(404, "this server only works at the root path")
            return
        if self.path == "/env":
            data = {k: v for k, v in os.environ.items() if k.startswith(("DKU_", "K8S_", "CODESTUDIO_"))}
        else:
            data = {"path": self.path}
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
'''

# A minimal RFC 6455 echo server (text/binary frames echoed, ping -> pong, close).
WS_ECHO = '''\
import base64, hashlib, socketserver, struct, sys
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

class H(socketserver.StreamRequestHandler):
    def handle(self):
        lines = []
        while True:
            line = self.rfile.readline()
            if not line or line in (b"\\r\\n", b"\\n"):
                break
            lines.append(line.decode("latin-1").strip())
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
        key = headers.get("sec-websocket-key")
        if not key or "websocket" not in headers.get("upgrade", "").lower():
            body = b"websocket only"
            self.wfile.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body)
            return
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        self.wfile.write(("HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
                          "Sec-WebSocket-Accept: " + accept + "\\r\\n\\r\\n").encode())
        self.wfile.flush()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            op, n = head[0] & 0x0F, head[1] & 0x7F
            if n == 126:
                n = struct.unpack(">H", self.rfile.read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else bytes(4)
            data = bytes(c ^ mask[i % 4] for i, c in enumerate(self.rfile.read(n)))
            if op == 8:
                self.wfile.write(b"\\x88\\x00")
                self.wfile.flush()
                return
            if op == 9:
                op = 10
            size = bytes([len(data)]) if len(data) < 126 else bytes([126]) + struct.pack(">H", len(data))
            self.wfile.write(bytes([0x80 | op]) + size + data)
            self.wfile.flush()

class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

S(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
'''

TEMPLATE = """\
id: {id}
base_image: {base}
permissions:
  groups: [rt-testers]
blocks:
  - type: dockerfile
    label: test servers
    run_as_root: true
    statements: |
      COPY files /opt/rt/
      ENV CODESTUDIO_BACKOFF_BASE=0.2 CODESTUDIO_BACKOFF_MAX=1
    resources: [files]
  - type: entrypoint
    label: Root only
    command: [python3, /opt/rt/root_server.py, "8101"]
    port: 8101
    proxied_subpath: /
  - type: entrypoint
    label: Under browser path
    command: [python3, /opt/rt/hello_server.py, --port, "8102"]
    port: 8102
    proxied_subpath: $request_uri
  - type: entrypoint
    label: WebSocket echo
    command: [python3, /opt/rt/ws_echo.py, "8103"]
    port: 8103
  - type: entrypoint
    label: Hidden API
    command: [python3, /opt/rt/root_server.py, "8104"]
    port: 8104
    expose_html: false
  - type: entrypoint
    label: crasher
    command: [python3, -c, "import sys; print('crasher up', flush=True); sys.exit(1)"]
  - type: action
    name: greet
    label: Greet
    command: echo "hello from $(id -un)"; exit 3
    wait: true
  - type: action
    name: later
    label: In the background
    command: sleep 1; echo done > /tmp/later-done
    wait: false
  - type: starter-files
    zone: code_studio-versioned
    files:
      notes/README.md: "Start here\\n"
  - type: file-sync
    mappings:
      - {{zone: code_studio-versioned}}
"""

NEVER_READY = """\
id: {id}
base_image: {base}
permissions:
  all: true
blocks:
  - type: entrypoint
    label: Never listens
    command: [python3, -c, "import time; print('sleeping', flush=True); time.sleep(100000)"]
    port: 8201
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "codestudio", *args], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"codestudio {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


class Browser:
    """An HTTP client with its own cookie jar, never using a proxy."""

    def __init__(self):
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(self.jar)
        )

    def get(self, url: str) -> tuple[int, bytes]:
        try:
            with self.opener.open(url, timeout=20) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def cookie(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


@pytest.fixture(scope="module")
def rt(tmp_path_factory, debian_base):
    """A data dir with the test template added and built, and one running studio (project P1)."""
    home = tmp_path_factory.mktemp("rt-home")
    folder = tmp_path_factory.mktemp("rt-template")
    files = folder / "files"
    files.mkdir()
    (files / "root_server.py").write_text(ROOT_SERVER)
    (files / "ws_echo.py").write_text(WS_ECHO)
    shutil.copy(REPO / "examples" / "files" / "hello_server.py", files / "hello_server.py")
    template_id = f"rt-e2e-{RUN}"
    (folder / "template.yaml").write_text(TEMPLATE.format(id=template_id, base=debian_base))
    (folder / "never.yaml").write_text(NEVER_READY.format(id=f"rt-never-{RUN}", base=debian_base))
    gateway_port = str(_free_port())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODESTUDIO_HOME", str(home))
        mp.setenv("CODESTUDIO_GATEWAY_PORT", gateway_port)
        mp.delenv("CODESTUDIO_USER", raising=False)
        from codestudio.access import identify
        from codestudio.runtime import studios as rts
        from codestudio.templates_store import add_template

        who = identify()
        stored, _ = add_template(who, folder / "template.yaml")
        from codestudio.projects import create_project

        for key in ("P1", "P2", "P3", "P4", "P5"):
            create_project(who, key)
        studio = rts.create_studio(who, "P1", "main", stored.id)
        try:
            rts.start_studio(who, studio.id, timeout=120, quiet=True)
            yield {"who": who, "template": stored.id, "studio": studio.id, "folder": folder, "home": home, "rts": rts,
                   "gateway_port": gateway_port}
        finally:
            for s in rts.list_studios(all_users=True):
                rts.delete_studio(who, s.id, force=True)
            rts._gateway().stop()
            from codestudio import containers

            for tid in (template_id, f"rt-never-{RUN}"):
                proc = containers.buildah("images", "--format", "{{.Name}}:{{.Tag}}", f"localhost/codestudio/{tid}", check=False)
                for ref in sorted(set(proc.stdout.split())):
                    containers.remove_image(ref)


@pytest.fixture(autouse=True)
def _rt_env(rt, codestudio_home, monkeypatch):
    """Point each test (and the CLI it runs) at the module's data dir and gateway."""
    monkeypatch.setenv("CODESTUDIO_HOME", str(rt["home"]))
    monkeypatch.setenv("CODESTUDIO_GATEWAY_PORT", rt["gateway_port"])


def _login(rt, port: int | None = None, studio: str | None = None) -> tuple[Browser, str]:
    url = rt["rts"].access_url(rt["who"], studio or rt["studio"], port=port)
    b = Browser()
    status, _ = b.get(url)
    assert status == 200, url
    return b, url


def _base(rt, studio: str | None = None, project: str = "P1") -> str:
    from codestudio.gateway.process import Gateway
    from codestudio.home import data_dir

    return f"{Gateway(data_dir()).settings.base_url}/code-studios/{project}/{studio or rt['studio']}"


def test_root_only_server_behind_slash(rt):
    b, _ = _login(rt)
    status, body = b.get(f"{_base(rt)}/8101/some/page?q=1")
    assert status == 200
    assert json.loads(body) == {"path": "/some/page?q=1"}


def test_browser_path_server_behind_request_uri(rt):
    b, _ = _login(rt)
    status, body = b.get(f"{_base(rt)}/8102/api/x")
    assert status == 200
    data = json.loads(body)
    assert data["path"] == "/api/x"
    assert data["base"] == f"/code-studios/P1/{rt['studio']}/8102"


def test_design_environment_inside_container(rt):
    b, _ = _login(rt)
    status, body = b.get(f"{_base(rt)}/8101/env")
    assert status == 200
    env = json.loads(body)
    sid = rt["studio"]
    assert env["DKU_CODE_STUDIO_BROWSER_PATH"] == f"/code-studios/P1/{sid}"
    for port in (8101, 8102, 8103):
        assert env[f"DKU_CODE_STUDIO_BROWSER_PATH_{port}"] == f"/code-studios/P1/{sid}/{port}"
    assert env["K8S_POD_NAME"].startswith(rt["rts"].pod_set_name(rt["rts"].get_studio(sid)))
    assert env["K8S_POD_NAMESPACE"] == "codestudio"
    assert env["K8S_NODE_NAME"] == socket.gethostname()
    assert env["K8S_POD_ID"]
    assert env["CODESTUDIO_PROJECT_KEY"] == "P1"
    assert env["CODESTUDIO_STUDIO_ID"] == sid
    assert env["CODESTUDIO_OWNER"] == rt["who"].name
    assert env["CODESTUDIO_MODE"] == "studio"


def _ws_frame(data: bytes, op: int = 1) -> bytes:
    mask = os.urandom(4)
    head = bytes([0x80 | op, 0x80 | len(data)])
    return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(data))


def test_websocket_echo_through_gateway(rt):
    from urllib.parse import urlsplit

    b, _ = _login(rt)
    url = urlsplit(f"{_base(rt)}/8103/ws")
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection((url.hostname, url.port), timeout=10) as s:
        s.sendall(
            (f"GET {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nCookie: {b.cookie()}\r\n\r\n").encode()
        )
        reader = s.makefile("rb")
        status = reader.readline()
        assert b" 101 " in status, status
        while reader.readline() not in (b"\r\n", b""):
            pass
        for message in (b"hello", b"second message"):
            s.sendall(_ws_frame(message))
            head = reader.read(2)
            assert head[0] & 0x0F == 1
            n = head[1] & 0x7F
            assert reader.read(n) == message
        s.sendall(_ws_frame(b"", op=8))


def test_only_the_owner_gets_through(rt):
    from codestudio.access import Identity
    from codestudio.errors import PermissionDenied

    anon = Browser()
    status, _ = anon.get(f"{_base(rt)}/8101/")
    assert status == 401
    _, url = _login(rt, port=8101)
    forged = url.replace("cs_token=", "cs_token=x")
    assert Browser().get(forged)[0] == 403
    stranger = Browser()
    stranger.jar.set_cookie(http.cookiejar.Cookie(
        0, "cs_session", "0" * 64, None, False, "127.0.0.1", False, False, "/", True, False, None, True, None, None, {}))
    assert stranger.get(f"{_base(rt)}/8101/")[0] == 401
    owner, _ = _login(rt, port=8101)
    assert owner.get(f"{_base(rt)}/8101/")[0] == 200
    with pytest.raises(PermissionDenied):
        rt["rts"].access_url(Identity("mallory", False, "mallory"), rt["studio"])


def test_unexposed_port_is_routed_for_the_owner_only_and_not_listed(rt):
    owner, _ = _login(rt)
    status, body = owner.get(f"{_base(rt)}/8104/hidden?q=1")
    assert status == 200
    assert json.loads(body) == {"path": "/hidden?q=1"}
    assert Browser().get(f"{_base(rt)}/8104/hidden")[0] == 401
    stranger = Browser()
    stranger.jar.set_cookie(http.cookiejar.Cookie(
        0, "cs_session", "0" * 64, None, False, "127.0.0.1", False, False, "/", True, False, None, True, None, None, {}))
    assert stranger.get(f"{_base(rt)}/8104/hidden")[0] == 401
    # Not a tab: neither on the landing page nor in `studio status`.
    status, landing = owner.get(f"{_base(rt)}/")
    assert status == 200
    assert b"8103/" in landing and b"8104" not in landing and b"Hidden API" not in landing
    tabs = rt["rts"].studio_status(rt["who"], rt["studio"])["tabs"]
    assert [t["port"] for t in tabs] == [8101, 8102, 8103]


def test_container_ports_published_on_loopback_only(rt):
    from codestudio import containers

    studio = rt["rts"].get_studio(rt["studio"])
    proc = containers.podman("port", _ctr(studio))
    published = [line.split("->")[1].strip() for line in proc.stdout.splitlines() if "->" in line]
    assert published and all(p.startswith("127.0.0.1:") for p in published), proc.stdout


def test_crashing_entrypoint_is_restarted(rt):
    studio = rt["rts"].get_studio(rt["studio"])
    from codestudio import containers

    deadline = time.monotonic() + 60
    starts = 0
    while time.monotonic() < deadline:
        logs = containers.podman("logs", _ctr(studio)).stdout
        starts = logs.count("started crasher")
        if starts >= 3:
            break
        time.sleep(0.5)
    assert starts >= 3, logs


def test_actions_run_as_studio_user_with_exit_status(rt):
    listing = json.loads(_cli("studio", "actions", rt["studio"], "--json").stdout)
    assert {a["name"] for a in listing} == {"greet", "later"}
    proc = _cli("studio", "run", rt["studio"], "greet", check=False)
    assert proc.returncode == 3, proc.stderr
    assert "hello from codestudio" in proc.stdout
    proc = _cli("studio", "run", rt["studio"], "later")
    assert "background" in proc.stderr
    studio = rt["rts"].get_studio(rt["studio"])
    from codestudio.runtime import local

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if local.exec_run(_ctr(studio), ["cat", "/tmp/later-done"]).stdout.strip() == "done":
            break
        time.sleep(0.3)
    else:
        pytest.fail("the detached action never ran")
    assert _cli("studio", "run", rt["studio"], "nope", check=False).returncode == 2


def test_never_ready_fails_within_timeout_and_leaves_nothing(rt):
    from codestudio.errors import RuntimeFailure
    from codestudio.runtime import local
    from codestudio.templates_store import add_template

    rts, who = rt["rts"], rt["who"]
    stored, _ = add_template(who, rt["folder"] / "never.yaml")
    studio = rts.create_studio(who, "P3", "never", stored.id)
    started = time.monotonic()
    with pytest.raises(RuntimeFailure, match="did not become ready within 3s"):
        rts.start_studio(who, studio.id, timeout=3, quiet=True)
    took = time.monotonic() - started
    after = rts.get_studio(studio.id)
    assert after.state == "FAILED"
    assert not local.pod_exists(_pod(after))
    assert after.ports == {} and after.token is None
    assert all(r.studio_id != studio.id for r in rts.running_studio_routes())
    logs = sorted((after.dir / "logs").glob("*failed.log"))
    assert logs and "sleeping" in logs[-1].read_text()
    proc = _cli("studio", "logs", studio.id)
    assert "sleeping" in proc.stdout
    # The probe timeout bounds the wait (build and pod removal come on top of it).
    assert took < 3 + 120
    rts.delete_studio(who, studio.id)


@pytest.fixture(scope="module")
def second_studio(rt):
    """A second running studio of the same template, in project P2."""
    rts, who = rt["rts"], rt["who"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODESTUDIO_HOME", str(rt["home"]))
        mp.setenv("CODESTUDIO_GATEWAY_PORT", rt["gateway_port"])
        other = rts.create_studio(who, "P2", "main", rt["template"])
        rts.start_studio(who, other.id, timeout=120, quiet=True)
        try:
            yield rts.get_studio(other.id)
        finally:
            rts.delete_studio(who, other.id, force=True)


# Sends `GET /env` to each HOST:PORT and prints what came back. Run by other users and
# inside other studios, so: standard library only, any Python 3.
REACH = """\
import json, socket, sys, threading
out = {}
def reach(spec):
    host, port = spec.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=3) as s:
            s.settimeout(3)
            s.sendall(b"GET /env HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
            data = b""
            try:
                while len(data) < 65536:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
        out[spec] = data.decode("latin-1")
    except OSError as e:
        out[spec] = "error: %s" % e
threads = [threading.Thread(target=reach, args=(spec,)) for spec in sys.argv[1:]]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(out))
"""


def _marker(studio) -> str:
    # What the root server's /env answers in that studio only (its JSON has no spaces to vary).
    return f'"CODESTUDIO_STUDIO_ID": "{studio.id}"'


def _targets(studio) -> dict[str, list[str]]:
    """Every address someone might try for ``studio``: its pod IPs and the host's, on every port."""
    from codestudio import containers
    from codestudio.render import guard_ports

    proc = containers.podman("inspect", "--format", "{{json .NetworkSettings}}", _ctr(studio))
    settings = json.loads(proc.stdout)
    pod_ips = {settings.get("IPAddress") or ""} | {n.get("IPAddress") or "" for n in (settings.get("Networks") or {}).values()}
    pod_ips = sorted(ip for ip in pod_ips if ip) + ["10.0.2.100"]  # slirp4netns's fixed address
    host_ips = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    host_ips = sorted({line.split()[3].split("/")[0] for line in host_ips.splitlines()} | {"10.88.0.1", "10.0.2.2"})
    server_ports = sorted(studio.ports)
    inside = server_ports + sorted(guard_ports(server_ports).values())
    return {
        "pod": [f"{ip}:{p}" for ip in pod_ips for p in inside],
        "host": [f"{ip}:{p}" for ip in host_ips for p in sorted(studio.ports.values())],
    }


def test_other_os_users_on_the_host_are_refused(rt):
    """As `nobody`: the published ports answer only the guard's 403; the pod's addresses nothing."""
    studio = rt["rts"].get_studio(rt["studio"])
    targets = _targets(studio)
    proc = subprocess.run(["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-", *targets["pod"], *targets["host"]],
                          input=REACH, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    reached = {k: v for k, v in seen.items() if _marker(studio) in v}
    assert reached == {}, f"reached the studio without the gateway: {sorted(reached)}"
    for port in studio.ports.values():
        answer = seen[f"127.0.0.1:{port}"]
        assert answer.startswith("HTTP/1.1 403 "), (port, answer[:200])


def test_other_studios_are_refused(rt, second_studio):
    """From inside another studio: neither the pod's addresses nor the published ports reach it."""
    from codestudio.runtime import local

    studio = rt["rts"].get_studio(rt["studio"])
    targets = _targets(studio)
    argv = ["python3", "-c", REACH, *targets["pod"], *targets["host"], *(f"127.0.0.1:{p}" for p in studio.ports.values())]
    proc = local.exec_run(_ctr(second_studio), argv, timeout=600)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    reached = {k: v for k, v in seen.items() if _marker(studio) in v}
    assert reached == {}, f"studio {second_studio.id} reached {studio.id}: {sorted(reached)}"
    # The check can see a hit: the second studio reaches its own server from inside.
    own = local.exec_run(_ctr(second_studio), ["python3", "-c", REACH, "127.0.0.1:8101"])
    assert _marker(second_studio) in json.loads(own.stdout)["127.0.0.1:8101"]


def test_a_port_taken_before_podman_binds_it_is_chosen_again(rt, monkeypatch):
    """The free-port window: whoever grabs a chosen port first makes podman fail, never share it."""
    from codestudio.runtime import local

    rts, who = rt["rts"], rt["who"]
    squatter = socket.create_server(("127.0.0.1", 0))
    taken = squatter.getsockname()[1]
    real = local.free_ports
    calls = []

    def first_choice_taken(count, *, avoid=()):
        calls.append(count)
        ports = real(count, avoid=avoid)
        return [taken, *ports[1:]] if len(calls) == 1 else ports

    monkeypatch.setattr(local.runtime, "free_ports", first_choice_taken)  # where LocalRuntime looks it up
    other = rts.create_studio(who, "P3", "squatted", rt["template"])
    try:
        rts.start_studio(who, other.id, timeout=120, quiet=True)
        started = rts.get_studio(other.id)
        assert len(calls) == 2 and taken not in started.ports.values()
        b, _ = _login(rt, studio=other.id)
        assert b.get(f"{_base(rt, other.id, 'P3')}/8101/a")[0] == 200
    finally:
        squatter.close()
        rts.delete_studio(who, other.id, force=True)


def test_two_studios_in_different_projects(rt, second_studio):
    rts, who = rt["rts"], rt["who"]
    other = second_studio
    b1, _ = _login(rt)
    b2, _ = _login(rt, studio=other.id)
    assert b1.get(f"{_base(rt)}/8101/a")[0] == 200
    status, body = b2.get(f"{_base(rt, other.id, 'P2')}/8102/b")
    assert status == 200 and json.loads(body)["base"] == f"/code-studios/P2/{other.id}/8102"
    # Each studio's cookie opens only its own prefix.
    assert b1.get(f"{_base(rt, other.id, 'P2')}/8101/")[0] == 401


def test_bad_gateway_config_never_replaces_the_good_one(rt, monkeypatch):
    from codestudio.errors import RuntimeFailure
    from codestudio.gateway import apply
    from codestudio.runtime import local

    rts, who = rt["rts"], rt["who"]
    b, _ = _login(rt)
    live = (rt["home"] / "gateway" / "nginx.conf").read_text()
    other = rts.create_studio(who, "P4", "broken", rt["template"])
    real = apply.render_gateway_config
    monkeypatch.setattr(apply, "render_gateway_config", lambda *a, **k: real(*a, **k) + "\nthis is not nginx;\n")
    with pytest.raises(RuntimeFailure, match="nginx -t"):
        rts.start_studio(who, other.id, timeout=60, quiet=True)
    monkeypatch.undo()
    assert rts.get_studio(other.id).state == "FAILED"
    assert not local.pod_exists(_pod(rts.get_studio(other.id)))
    assert (rt["home"] / "gateway" / "nginx.conf").read_text() == live
    assert b.get(f"{_base(rt)}/8101/still")[0] == 200
    rts.delete_studio(who, other.id)


def test_starter_files_survive_edit_and_restart_then_stop_and_delete_leave_nothing(rt):
    from codestudio import containers
    from codestudio.runtime import local
    from codestudio.sync import zone_dir

    rts, who = rt["rts"], rt["who"]
    studio = rts.create_studio(who, "P5", "files", rt["template"])
    zone = zone_dir("code_studio-versioned", studio_id=studio.id, project_key="P5", user=studio.owner)
    assert (zone / "notes" / "README.md").read_text() == "Start here\n"
    rts.start_studio(who, studio.id, timeout=120, quiet=True)
    studio = rts.get_studio(studio.id)
    target = "/home/codestudio/workspace/code_studio-versioned/notes/README.md"
    assert local.exec_run(_ctr(studio), ["cat", target]).stdout == "Start here\n"
    edit = local.exec_run(_ctr(studio), ["sh", "-c", f"echo 'my notes' > {target}"])
    assert edit.returncode == 0, edit.stderr
    rts.restart_studio(who, studio.id, timeout=120, quiet=True)
    studio = rts.get_studio(studio.id)
    assert (zone / "notes" / "README.md").read_text() == "my notes\n"
    assert local.exec_run(_ctr(studio), ["cat", target]).stdout == "my notes\n"

    ports = list(studio.ports.values())
    rts.stop_studio(who, studio.id, quiet=True)
    stopped = rts.get_studio(studio.id)
    assert stopped.state == "STOPPED" and stopped.ports == {} and stopped.token is None
    assert not local.pod_exists(_pod(studio))
    conf = (rt["home"] / "gateway" / "nginx.conf").read_text()
    assert f"/code-studios/P5/{studio.id}/" not in conf
    for port in ports:
        with socket.socket() as s:
            # Free again for a listener (as podman binds: the pod's closed connections may
            # linger in TIME_WAIT on the port, e.g. after the guard answered a probe).
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    rts.start_studio(who, studio.id, timeout=120, quiet=True)
    rts.delete_studio(who, studio.id, force=True)
    assert not local.pod_exists(_pod(studio))
    assert f"/code-studios/P5/{studio.id}/" not in (rt["home"] / "gateway" / "nginx.conf").read_text()
    names = containers.podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert _ctr(studio) not in names
    assert (zone / "notes" / "README.md").exists()  # zones are kept without --purge


def test_cli_sync_push_pull_and_conflicts(rt):
    """The `studio sync|push|pull|conflicts` verbs against the running studio."""
    import json as _json

    from codestudio.runtime import local
    from codestudio.sync import zone_dir

    rts = rt["rts"]
    studio = rts.get_studio(rt["studio"])
    zone = zone_dir("code_studio-versioned", studio_id=studio.id, project_key="P1", user=studio.owner)
    inside = "/home/codestudio/workspace/code_studio-versioned"

    (zone / "from-server.txt").write_text("server side\n")
    report = _json.loads(_cli("studio", "push", studio.id, "code_studio-versioned", "--json").stdout)
    assert "from-server.txt" in report["mappings"][0]["pushed"]
    assert local.exec_run(_ctr(studio), ["cat", f"{inside}/from-server.txt"]).stdout == "server side\n"

    assert local.exec_run(_ctr(studio), ["sh", "-c", f"echo studio side > {inside}/from-studio.txt"]).returncode == 0
    _cli("studio", "pull", studio.id)
    assert (zone / "from-studio.txt").read_text() == "studio side\n"
    log = subprocess.run(["git", "-C", str(zone), "log", "--format=%an|%s", "-1"], capture_output=True, text=True).stdout
    assert log.startswith(f"{studio.owner}|")

    # The same file edited on both sides: both versions kept, exit 1 naming it.
    (zone / "from-studio.txt").write_text("edited on the server\n")
    assert local.exec_run(_ctr(studio), ["sh", "-c", f"echo edited in the studio > {inside}/from-studio.txt"]).returncode == 0
    result = _cli("studio", "sync", studio.id, check=False)
    assert result.returncode == 1 and "from-studio.txt" in result.stderr
    listed = _json.loads(_cli("studio", "conflicts", studio.id, "code_studio-versioned", "--json").stdout)
    assert [c["path"] for c in listed] == ["from-studio.txt"]
    assert (zone / "from-studio.txt").read_text() == "edited on the server\n"
    assert (zone / listed[0]["copy"]).read_text() == "edited in the studio\n"
    bad = _cli("studio", "sync", studio.id, "no-such-zone", check=False)
    assert bad.returncode == 2 and "unknown zone" in bad.stderr
