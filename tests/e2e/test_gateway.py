"""The gateway end to end: real nginx in front of Python backends on loopback ports."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from codestudio.errors import RuntimeFailure, UsageError
from codestudio.gateway.config import (
    GatewaySettings,
    PortRoute,
    StudioRoutes,
    make_access_url,
    new_session_secret,
)
from codestudio.gateway.process import Gateway
from codestudio.gateway.procfs import children
from codestudio.gateway.workers import worker_identity

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Backend:
    """An HTTP server answering with what it received; /stream sends a chunk, then
    waits for ``release`` before finishing (to see whether the gateway buffers)."""

    def __init__(self):
        self.release = threading.Event()
        release = self.release

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.endswith("/stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self._chunk(b"first\n")
                    release.wait(30)
                    self._chunk(b"second\n")
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if self.path.endswith("/redirect"):
                    self.send_response(302)
                    self.send_header("Location", "/landed")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"path": self.path, "headers": dict(self.headers)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                # Reads the whole body and answers with its size and digest.
                length = int(self.headers.get("Content-Length", 0))
                digest, left = hashlib.sha256(), length
                while left:
                    data = self.rfile.read(min(left, 1 << 16))
                    if not data:
                        break
                    digest.update(data)
                    left -= len(data)
                body = json.dumps({"size": length - left, "sha256": digest.hexdigest()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _chunk(self, data: bytes):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class WsBackend:
    def __init__(self):
        from websockets.sync.server import serve

        def echo(ws):
            for message in ws:
                ws.send(f"echo:{message}|{ws.request.path}")

        self.server = serve(echo, "127.0.0.1", 0)
        self.port = self.server.socket.getsockname()[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def backends():
    strip, full, ws = Backend(), Backend(), WsBackend()
    yield {"strip": strip, "full": full, "ws": ws}
    for b in (strip, full, ws):
        b.close()


def make_studio(backends, project="PROJ", sid="demo", label='Lab "; } location / {'):
    return StudioRoutes(
        project_key=project,
        studio_id=sid,
        owner="alice",
        session_secret=new_session_secret(),
        ports=(
            PortRoute(8888, backends["strip"].port, "/", label),
            PortRoute(8080, backends["full"].port, "$request_uri", "Full path <API>"),
            PortRoute(9000, backends["ws"].port, "/", "WebSocket"),
        ),
        actions=(("clear-cache", "Clear <pip> cache"),),
    )


@pytest.fixture
def gateway(tmp_path: Path):
    settings = GatewaySettings(port=free_port())
    gw = Gateway(tmp_path / "data", settings=settings)
    yield gw
    gw.stop()


def client() -> httpx.Client:
    return httpx.Client(trust_env=False, follow_redirects=False, timeout=10)


def login(c: httpx.Client, gw: Gateway, studio: StudioRoutes) -> None:
    r = c.get(make_access_url(studio, gw.settings.base_url))
    assert r.status_code == 302, r.text
    assert r.headers["location"] == studio.prefix


def test_empty_gateway_serves_health_and_404(gateway):
    gateway.start()
    base = gateway.settings.base_url
    with client() as c:
        health = c.get(f"{base}/_codestudio/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert c.get(f"{base}/code-studios/PROJ/demo/").status_code == 404
        assert c.get(f"{base}/").status_code == 404
    status = gateway.status()
    assert status.running and status.studios == 0 and status.config == health.json()["config"]


def test_token_exchange_then_cookie(gateway, backends):
    studio = make_studio(backends)
    gateway.apply([studio])
    base = gateway.settings.base_url
    url = make_access_url(studio, base, port=8888)
    with client() as c:
        assert c.get(f"{base}{studio.prefix}").status_code == 401
        assert c.get(f"{base}{studio.prefix}8888/x").status_code == 401
        r = c.get(f"{base}{studio.prefix}8888/x", headers={"Cookie": "cs_session=" + "0" * 64})
        assert r.status_code == 401
        # a tampered token, a token for another expiry, an expired token: 403
        assert c.get(url[:-2] + "AA").status_code == 403
        assert c.get(url.replace("cs_expires=", "cs_expires=1")).status_code == 403
        assert c.get(make_access_url(studio, base, ttl=-10)).status_code == 403

        r = c.get(url)
        assert r.status_code == 302
        assert r.headers["location"] == f"{studio.prefix}8888/"  # the token is gone from the URL
        cookie = r.headers["set-cookie"]
        assert cookie == (
            f"cs_session={studio.cookie_value}; Path={studio.prefix}; HttpOnly; SameSite=Lax"
        )
        assert studio.session_secret not in cookie
        # The client's jar now sends the cookie, scoped to the studio's path.
        r = c.get(f"{base}{studio.prefix}8888/some/path?q=1")
        assert r.status_code == 200
        seen = r.json()
        assert seen["path"] == "/some/path?q=1"
        assert "cs_session" not in seen["headers"].get("Cookie", "")  # not passed to the studio

        landing = c.get(f"{base}{studio.prefix}")
        assert landing.status_code == 200
        assert landing.headers["content-type"].startswith("text/html")
        assert "Lab &#34;; } location / {" in landing.text
        assert "Full path &lt;API&gt;" in landing.text
        assert 'href="8888/"' in landing.text and "clear-cache" in landing.text
        assert c.get(f"{base}{studio.prefix}nothing-here").status_code == 404
        redirect = c.get(f"{base}{studio.prefix.rstrip('/')}")
        assert (redirect.status_code, redirect.headers["location"]) == (301, studio.prefix)

    # Secrets never land in the logs.
    logs = gateway.access_log.read_text() + gateway.error_log.read_text()
    assert "cs_token" not in logs and studio.cookie_value not in logs
    assert f"GET {studio.prefix}8888/some/path HTTP/1.1" in logs


def test_another_studios_cookie_is_refused(gateway, backends):
    mine = make_studio(backends, sid="mine")
    theirs = make_studio(backends, project="OTHER", sid="theirs")
    gateway.apply([mine, theirs])
    base = gateway.settings.base_url
    with client() as c:
        login(c, gateway, theirs)
        r = c.get(f"{base}{mine.prefix}8888/", headers={"Cookie": f"cs_session={theirs.cookie_value}"})
        assert r.status_code == 401
        # A token for one studio does not open another.
        token_url = make_access_url(theirs, base)
        assert c.get(token_url.replace(theirs.prefix, mine.prefix)).status_code == 403
        assert c.get(f"{base}{theirs.prefix}8888/").status_code == 200


def test_subpath_modes(gateway, backends):
    studio = make_studio(backends)
    gateway.apply([studio])
    base = gateway.settings.base_url
    with client() as c:
        login(c, gateway, studio)
        # proxied_subpath "/": prefix stripped, the rest passed exactly as sent
        r = c.get(f"{base}{studio.prefix}8888/api/contents/dir%2Ffile.txt?a=%20b")
        assert r.json()["path"] == "/api/contents/dir%2Ffile.txt?a=%20b"
        headers = r.json()["headers"]
        assert headers["X-Forwarded-Prefix"] == f"{studio.prefix}8888"
        assert headers["Host"] == base.split("//")[1]
        assert c.get(f"{base}{studio.prefix}8888/").json()["path"] == "/"
        # redirects from a prefix-unaware server stay under its prefix
        r = c.get(f"{base}{studio.prefix}8888/redirect")
        assert r.headers["location"] == f"{studio.prefix}8888/landed"
        # proxied_subpath "$request_uri": the full original path
        r = c.get(f"{base}{studio.prefix}8080/x/y?z=1")
        assert r.json()["path"] == f"{studio.prefix}8080/x/y?z=1"
        r = c.get(f"{base}{studio.prefix}8080")
        assert (r.status_code, r.headers["location"]) == (301, f"{studio.prefix}8080/")


def test_websocket_echo(gateway, backends):
    from websockets.sync.client import connect

    studio = make_studio(backends)
    gateway.apply([studio])
    ws_url = gateway.settings.base_url.replace("http://", "ws://") + f"{studio.prefix}9000/socket"
    cookie = {"Cookie": f"cs_session={studio.cookie_value}"}
    with connect(ws_url, additional_headers=cookie, open_timeout=10) as ws:
        for text in ("hello", "world"):
            ws.send(text)
            assert ws.recv(timeout=10) == f"echo:{text}|/socket"
    with pytest.raises(Exception, match="401"):
        connect(ws_url, open_timeout=10)


def test_requests_from_another_origin_are_refused(gateway, backends):
    # A webapp host on a sibling subdomain is the same site: the studios' SameSite=Lax
    # cookie rides the websockets and form POSTs its pages start towards studios.
    from websockets.sync.client import connect

    studio = make_studio(backends)
    gateway.apply([studio])
    base = gateway.settings.base_url
    port = gateway.settings.port
    cookie = {"Cookie": f"cs_session={studio.cookie_value}"}
    foreign = (f"http://webapps.localhost:{port}", "http://evil.example", "null", f"https://127.0.0.1:{port}")
    with client() as c:
        for origin in foreign:
            for method in ("GET", "POST"):
                r = c.request(method, f"{base}{studio.prefix}8888/x", headers={**cookie, "Origin": origin})
                assert r.status_code == 403, (origin, method, r.status_code)
            assert c.get(f"{base}{studio.prefix}", headers={**cookie, "Origin": origin}).status_code == 403
        # Its own origin (as configured, or as the request reached it), or no Origin at all: served.
        for headers in ({"Origin": base}, {"Origin": base.upper().replace("HTTP", "http")}, {}):
            r = c.post(f"{base}{studio.prefix}8888/x", headers={**cookie, **headers}, content=b"x")
            assert r.status_code == 200, (headers, r.text)
        on_localhost = {**cookie, "Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"}
        assert c.get(f"{base}{studio.prefix}8888/x", headers=on_localhost).status_code == 200
    ws_url = base.replace("http://", "ws://") + f"{studio.prefix}9000/socket"
    with pytest.raises(Exception, match="403"):
        connect(ws_url, additional_headers={**cookie, "Origin": f"http://webapps.localhost:{port}"}, open_timeout=10)
    with connect(ws_url, additional_headers={**cookie, "Origin": base}, open_timeout=10) as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "echo:hi|/socket"


def test_streamed_response_is_not_buffered(gateway, backends):
    studio = make_studio(backends)
    gateway.apply([studio])
    url = f"{gateway.settings.base_url}{studio.prefix}8888/stream"
    with client() as c:
        with c.stream("GET", url, headers={"Cookie": f"cs_session={studio.cookie_value}"}) as r:
            chunks = r.iter_raw()
            # The backend holds the rest until released, so this chunk can only
            # arrive now if the gateway forwards without buffering.
            assert next(chunks) == b"first\n"
            backends["strip"].release.set()
            assert b"".join(chunks) == b"second\n"


def test_large_upload_reaches_the_studio(gateway, backends):
    studio = make_studio(backends)
    gateway.apply([studio])
    body = os.urandom(5 * 1024 * 1024)
    with client() as c:
        r = c.post(f"{gateway.settings.base_url}{studio.prefix}8888/upload", content=body,
                   headers={"Cookie": f"cs_session={studio.cookie_value}"})
    assert r.status_code == 200, r.text
    assert r.json() == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def _as_user(who, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), user=who.uid, group=who.gid, extra_groups=[],
                          capture_output=True, text=True, check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root master switches its workers to another user")
def test_workers_are_unprivileged_when_started_as_root(tmp_path, monkeypatch, backends):
    from codestudio.home import data_dir
    from codestudio.store import Store

    # The real data dir, with a real state DB, under a folder anyone may enter:
    # the data dir itself is the only barrier.
    os.chmod(tmp_path, 0o755)
    monkeypatch.setenv("CODESTUDIO_HOME", str(tmp_path / "home"))
    with Store.default().connect() as conn:
        conn.execute("INSERT INTO admins (user) VALUES ('alice')")
    gateway = Gateway(data_dir(), settings=GatewaySettings(port=free_port()))
    try:
        _check_unprivileged_workers(gateway, backends)
    finally:
        gateway.stop()
    assert not gateway.worker_dir.exists()


def _check_unprivileged_workers(gateway, backends):
    studio = make_studio(backends)
    gateway.apply([studio])
    who = worker_identity(gateway.settings)
    assert who.uid != 0 and who.gid != 0
    master = gateway.pid()
    workers = children(master)
    assert workers
    for pid in workers:
        user = subprocess.run(["ps", "-o", "user:64=", "-p", str(pid)], capture_output=True, text=True).stdout
        assert user.strip() == who.user
        ids = [line.split()[1:] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith(("Uid:", "Gid:"))]
        assert ids == [[str(who.uid)] * 4, [str(who.gid)] * 4]  # real, effective, saved, fs
    assert gateway.conf_path.read_text().startswith("# codestudio gateway")  # the master (root) reads it

    # What the workers may touch: pages (read) and their temp paths (write), outside the data dir.
    assert not gateway.worker_dir.is_relative_to(gateway.prefix.parent)
    landing = next((gateway.html_dir / "landing").rglob("*.html"))
    assert _as_user(who, "cat", str(landing)).returncode == 0
    for sub in ("client_body", "proxy"):
        probe = gateway.worker_dir / "temp" / sub / "probe"
        assert _as_user(who, "touch", str(probe)).returncode == 0
        probe.unlink()
    assert _as_user(who, "touch", str(gateway.html_dir / "planted")).returncode != 0
    # ...and nothing else: not the config (derived secrets), the logs, or the data dir.
    for path in (gateway.conf_path, gateway.access_log, gateway.prefix.parent / "state.db"):
        assert _as_user(who, "cat", str(path)).returncode != 0
    assert _as_user(who, "ls", str(gateway.prefix.parent)).returncode != 0

    # Served by those workers: the landing page and a tab.
    with client() as c:
        login(c, gateway, studio)
        assert "Full path &lt;API&gt;" in c.get(f"{gateway.settings.base_url}{studio.prefix}").text
        assert c.get(f"{gateway.settings.base_url}{studio.prefix}8888/x").json()["path"] == "/x"
        assert c.get(f"{gateway.settings.base_url}/nowhere").status_code == 404  # error page readable


@pytest.mark.skipif(os.geteuid() != 0, reason="the worker user only matters when started as root")
def test_unknown_worker_user_is_a_clear_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("CODESTUDIO_GATEWAY_USER", "no-such-user-cs")
    gw = Gateway(tmp_path, settings=GatewaySettings.from_env(GatewaySettings(port=free_port())))
    with pytest.raises(UsageError, match="no-such-user-cs.*does not exist"):
        gw.start()
    assert not gw.status().running


def test_failing_config_never_replaces_the_good_one(gateway, backends, monkeypatch):
    studio = make_studio(backends)
    good = gateway.apply([studio])
    live = gateway.conf_path.read_text()
    import codestudio.gateway.apply as apply

    monkeypatch.setattr(apply, "render_gateway_config", lambda *a, **kw: live.replace("proxy_buffering off;", "proxy_buffering sometimes;"))
    with pytest.raises(RuntimeFailure, match="rejected by nginx -t") as info:
        gateway.apply([])
    assert "proxy_buffering" in str(info.value)  # nginx's own message
    assert gateway.conf_path.read_text() == live
    assert gateway.status().config == good
    with client() as c:
        r = c.get(f"{gateway.settings.base_url}{studio.prefix}8888/still",
                  headers={"Cookie": f"cs_session={studio.cookie_value}"})
        assert r.json()["path"] == "/still"


def test_reload_rotates_the_session_and_removes_routes(gateway, backends):
    studio = make_studio(backends)
    gateway.apply([studio])
    base = gateway.settings.base_url
    old_cookie = {"Cookie": f"cs_session={studio.cookie_value}"}
    restarted = StudioRoutes(**{**studio.__dict__, "session_secret": new_session_secret()})
    gateway.apply([restarted])
    with client() as c:
        assert c.get(f"{base}{studio.prefix}8888/", headers=old_cookie).status_code == 401
        new_cookie = {"Cookie": f"cs_session={restarted.cookie_value}"}
        assert c.get(f"{base}{studio.prefix}8888/", headers=new_cookie).status_code == 200
        gateway.apply([])
        assert c.get(f"{base}{studio.prefix}8888/", headers=new_cookie).status_code == 404
    assert not list((gateway.prefix / "html" / "landing").rglob("*.html"))


def test_start_stop_status(tmp_path, monkeypatch):
    port = free_port()
    monkeypatch.setenv("CODESTUDIO_GATEWAY_PORT", str(port))
    gw = Gateway(tmp_path)
    try:
        assert not gw.status().running
        status = gw.start()
        assert status.running and status.listen == f"127.0.0.1:{port}"
        assert gw.start().pid == status.pid  # idempotent
        # Later calls without the variable keep the port the gateway runs on.
        monkeypatch.delenv("CODESTUDIO_GATEWAY_PORT")
        assert Gateway(tmp_path).status().running
        assert oct(gw.conf_path.stat().st_mode & 0o777) == "0o600"
    finally:
        assert gw.stop()
    assert not gw.status().running
    assert not gw.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/_codestudio/health", trust_env=False)


def test_port_in_use_is_a_clear_failure(tmp_path, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        gw = Gateway(tmp_path, settings=GatewaySettings(port=s.getsockname()[1]))
        with pytest.raises(RuntimeFailure, match="Address already in use"):
            gw.start()
    assert not gw.status().running
    assert not gw.stop()
    assert not (gw.prefix / "settings.json").exists()  # nothing ever ran: nothing saved


def _saved_port(tmp_path: Path) -> int:
    return json.loads((tmp_path / "gateway" / "settings.json").read_text())["port"]


def test_failed_port_change_keeps_the_old_port(tmp_path, monkeypatch):
    """A port change nginx could not apply is not saved: later links keep the working port."""
    good = free_port()
    monkeypatch.setenv("CODESTUDIO_GATEWAY_PORT", str(good))
    gw = Gateway(tmp_path)
    try:
        gw.start()
        good_conf = gw.conf_path.read_text()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            monkeypatch.setenv("CODESTUDIO_GATEWAY_PORT", str(s.getsockname()[1]))
            # Running: the reload fails, the old config keeps serving.
            with pytest.raises(RuntimeFailure):
                Gateway(tmp_path).start()
            assert _saved_port(tmp_path) == good
            assert gw.conf_path.read_text() == good_conf
            monkeypatch.delenv("CODESTUDIO_GATEWAY_PORT")
            assert Gateway(tmp_path).settings.port == good
            assert Gateway(tmp_path).status().running
            # Stopped: the start fails, the saved port stays the last one that ran.
            assert gw.stop()
            monkeypatch.setenv("CODESTUDIO_GATEWAY_PORT", str(s.getsockname()[1]))
            with pytest.raises(RuntimeFailure, match="Address already in use"):
                Gateway(tmp_path).start()
            assert _saved_port(tmp_path) == good
            assert gw.conf_path.read_text() == good_conf
        monkeypatch.delenv("CODESTUDIO_GATEWAY_PORT")
        assert Gateway(tmp_path).settings.port == good
        assert Gateway(tmp_path).settings.base_url == f"http://127.0.0.1:{good}"  # what `studio url` links to
        assert Gateway(tmp_path).start().listen == f"127.0.0.1:{good}"
    finally:
        Gateway(tmp_path).stop()


def test_cli_start_status_stop(tmp_path):
    import os
    import subprocess
    import sys

    port = free_port()
    env = {**os.environ, "CODESTUDIO_HOME": str(tmp_path), "CODESTUDIO_GATEWAY_PORT": str(port)}
    cli = [str(Path(sys.executable).parent / "codestudio")]

    def run(*args):
        return subprocess.run([*cli, "gateway", *args], env=env, capture_output=True, text=True, timeout=60)

    try:
        started = run("start")
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip() == f"http://127.0.0.1:{port}"
        status = json.loads(run("status", "--json").stdout)
        assert status["running"] and status["listen"] == f"127.0.0.1:{port}"
    finally:
        stopped = run("stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stderr
    assert json.loads(run("status", "--json").stdout)["running"] is False
    # A port held by someone else: runtime failure, exit 1, nginx's reason shown.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        env["CODESTUDIO_GATEWAY_PORT"] = str(s.getsockname()[1])
        failed = run("start")
        run("stop")
    assert failed.returncode == 1
    assert "Address already in use" in failed.stderr
    # The failed port is not saved: commands without the variable keep the old one.
    assert _saved_port(tmp_path) == port
    del env["CODESTUDIO_GATEWAY_PORT"]
    assert json.loads(run("status", "--json").stdout)["listen"] == f"127.0.0.1:{port}"
    # An unknown worker user is bad input (exit 2), when it matters (as root).
    if os.geteuid() == 0:
        env["CODESTUDIO_GATEWAY_USER"] = "no-such-user-cs"
        bad_user = run("start")
        assert bad_user.returncode == 2, bad_user.stderr
        assert "no-such-user-cs" in bad_user.stderr and "does not exist" in bad_user.stderr
        assert _saved_port(tmp_path) == port


# Every shape in which a client (or a page that planted a cookie on the studio's
# path) can make nginx see the owner's session cookie; none may reach the studio server.
SMUGGLED_COOKIES = [
    ["cs_session={real}; cs_session=junk"],             # the real one first, a planted one last
    ["a=1; cs_session={real}; b=2; cs_session=junk; c=3"],
    ["cs_session={real};cs_session=junk;cs_session=more"],   # no spaces
    ["cs_session = {real};  x=1 ;cs_session= junk ; cs_session =junk"],  # spaces around names and '='
    ["CS_SESSION={real}; Cs_Session=junk"],             # nginx matches cookie names case-insensitively
    ["x=1, cs_session={real}; c=3, cs_session=junk"],   # ',' separates cookies for nginx and Python too
    ["cs_session={real}; b=2", "a=1; cs_session=junk"],  # two Cookie headers
    ["cs_session={real}"] + ["cs_session=junk"] * 7,    # as many as the gateway strips
]


@pytest.mark.parametrize("cookies", SMUGGLED_COOKIES)
def test_every_session_cookie_is_stripped(gateway, backends, cookies):
    studio = make_studio(backends)
    gateway.apply([studio])
    headers = [("Cookie", value.format(real=studio.cookie_value)) for value in cookies]
    with client() as c:
        r = c.get(f"{gateway.settings.base_url}{studio.prefix}8888/x", headers=headers)
    assert r.status_code == 200, r.text
    seen = r.json()["headers"]
    sent = " ".join(v for k, v in seen.items() if k.lower() == "cookie")
    assert "cs_session" not in sent.lower()
    assert studio.cookie_value not in json.dumps(seen)
    # The studio's own cookies still reach it (its session, its XSRF token...).
    for other in ("a=1", "b=2", "c=3", "x=1"):
        if any(other in value for value in cookies):
            assert other in sent


@pytest.mark.parametrize("value", ["activity", "quiet", "tcp"])
def test_a_clients_guard_control_header_never_reaches_the_studio(gateway, backends, value):
    # The guard obeys X-Codestudio-Probe when the gateway's secret comes with it: a
    # client's own must be dropped (or it gets the activity report, or goes uncounted).
    studio = make_studio(backends)
    gateway.apply([studio])
    with client() as c:
        login(c, gateway, studio)
        for port in (8888, 8080):
            r = c.get(f"{gateway.settings.base_url}{studio.prefix}{port}/x",
                      headers=[("X-Codestudio-Probe", value), ("x-codestudio-PROBE", value)])
            assert r.status_code == 200, r.text
            assert not [k for k in r.json()["headers"] if k.lower().strip() == "x-codestudio-probe"]


def test_the_web_uis_session_cookie_never_reaches_a_studio(gateway, backends):
    # A UI on another port of the same host name gets its cookie (Path=/) sent here too.
    from codestudio.server.auth import COOKIE

    studio = make_studio(backends)
    gateway.apply([studio])
    cookie = f"{COOKIE}=uisecret; cs_session={studio.cookie_value}; a=1; CS_UI_SESSION=uisecret2"
    with client() as c:
        r = c.get(f"{gateway.settings.base_url}{studio.prefix}8888/x", headers={"Cookie": cookie})
    assert r.status_code == 200, r.text
    sent = json.dumps(r.json()["headers"])
    assert "uisecret" not in sent and COOKIE not in sent.lower()
    assert "a=1" in sent


def test_too_many_session_cookies_are_refused(gateway, backends):
    studio = make_studio(backends)
    gateway.apply([studio])
    cookie = "; ".join([f"cs_session={studio.cookie_value}"] + ["cs_session=junk"] * 12)
    with client() as c:
        r = c.get(f"{gateway.settings.base_url}{studio.prefix}8888/x", headers={"Cookie": cookie})
    assert r.status_code == 400  # never passed on with a session cookie left in it


class ManyUpstreams:
    """``count`` loopback listeners served by one thread; each answers any request with
    its own port, the path it received and whether a session cookie reached it."""

    def __init__(self, count: int):
        import selectors

        self.sel = selectors.DefaultSelector()
        self.listeners = []
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(16)
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ, ("listen", s.getsockname()[1]))
            self.listeners.append(s)
        self.ports = [s.getsockname()[1] for s in self.listeners]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import selectors

        buffers: dict = {}
        while not self.stop.is_set():
            for key, _ in self.sel.select(timeout=0.2):
                kind, port = key.data
                if kind == "listen":
                    conn, _ = key.fileobj.accept()
                    conn.setblocking(True)
                    conn.settimeout(5)
                    buffers[conn] = b""
                    self.sel.register(conn, selectors.EVENT_READ, ("conn", port))
                    continue
                conn = key.fileobj
                data = conn.recv(65536)
                buffers[conn] += data
                if data and b"\r\n\r\n" not in buffers[conn]:
                    continue
                head = buffers.pop(conn).split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
                self.sel.unregister(conn)
                if head and head[0]:
                    headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
                    body = json.dumps({"port": port, "path": head[0].split(" ")[1], "headers": headers}).encode()
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for s in self.listeners:
            s.close()


def test_500_studios_each_reach_their_own_upstream(gateway):
    import random

    upstreams = ManyUpstreams(502)
    try:
        studios = [
            StudioRoutes(f"P{i % 9}", f"s{i}", "alice", new_session_secret(),
                         (PortRoute(8888, upstreams.ports[i], "/" if i % 2 else "$request_uri", "Tab"),))
            for i in range(500)
        ]
        # Two keys that differ only in case (nginx map strings ignore case) stay two studios.
        studios += [
            StudioRoutes(project, "twin", "bob", new_session_secret(), (PortRoute(8888, upstreams.ports[500 + n], "/", "Tab"),))
            for n, project in enumerate(("CASE", "case"))
        ]
        gateway.apply(studios)
        assert gateway.status().studios == 502
        base = gateway.settings.base_url
        rng = random.Random(18)
        picked = rng.sample(range(500), 20) + [500, 501]
        with client() as c:
            for i in picked:
                s = studios[i]
                r = c.get(f"{base}{s.prefix}8888/a%2Fb?q=1", headers={"Cookie": f"cs_session={s.cookie_value}"})
                assert r.status_code == 200, (s.prefix, r.text)
                seen = r.json()
                assert seen["port"] == upstreams.ports[i]
                stripped = s.ports[0].proxied_subpath == "/"
                assert seen["path"] == ("/a%2Fb?q=1" if stripped else f"{s.prefix}8888/a%2Fb?q=1")
                assert "cs_session" not in seen["headers"].get("Cookie", "")
                assert seen["headers"]["X-Codestudio-Guard"] == s.guard_secret
            for a, b in [rng.sample(range(500), 2) for _ in range(10)] + [(500, 501), (501, 500)]:
                mine, theirs = studios[a], studios[b]
                r = c.get(f"{base}{theirs.prefix}8888/x", headers={"Cookie": f"cs_session={mine.cookie_value}"})
                assert r.status_code == 401
                assert c.get(f"{base}{theirs.prefix}", headers={"Cookie": f"cs_session={mine.cookie_value}"}).status_code == 401
            # A wrong-case prefix is another (unknown) studio.
            assert c.get(f"{base}/code-studios/p1/s1/8888/", headers={"Cookie": f"cs_session={studios[1].cookie_value}"}).status_code == 404
            assert c.get(f"{base}/code-studios/Case/twin/8888/", headers={"Cookie": f"cs_session={studios[500].cookie_value}"}).status_code == 404
    finally:
        upstreams.close()


def test_concurrent_applies_are_batched(gateway, backends):
    """Callers that arrive while an apply runs are served by one apply that reads the
    source after all of them: eight starts at once cost one reload, not eight."""
    studio = make_studio(backends)
    reads = []

    def source():
        reads.append(1)
        return [studio]

    gateway._studios = source
    gateway.start()
    reads.clear()
    errors = []

    def caller():
        try:
            assert gateway.apply() is not None
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with gateway._locked():  # an apply "in progress": every caller takes its ticket and waits
        threads = [threading.Thread(target=caller) for _ in range(8)]
        for t in threads:
            t.start()
        while gateway._tickets()[1] < gateway._tickets()[0] + 8:
            threading.Event().wait(0.01)
    for t in threads:
        t.join(30)
    assert not errors
    assert len(reads) == 1  # one caller read the studios and applied; seven found it done
    with client() as c:
        r = c.get(f"{gateway.settings.base_url}{studio.prefix}8888/x", headers={"Cookie": f"cs_session={studio.cookie_value}"})
        assert r.status_code == 200


def test_lingering_old_workers_are_bounded(tmp_path, backends):
    """Each reload leaves the old worker alive while a connection holds it; beyond
    max_old_workers the oldest are ended, so a burst of starts cannot pile them up."""
    from codestudio.gateway.procfs import shutting_down

    gw = Gateway(tmp_path / "data", settings=GatewaySettings(port=free_port(), worker_processes="1", max_old_workers=2))
    held = []
    try:
        studio = make_studio(backends)
        gw.apply([studio])
        for _ in range(5):
            # A request still being sent keeps its worker busy, as an open websocket does.
            s = socket.create_connection(("127.0.0.1", gw.settings.port))
            s.sendall(b"GET /_codestudio/health HTTP/1.1\r\nHost: x\r\n")
            held.append(s)
            threading.Event().wait(0.1)  # let the current worker accept it
            studio = StudioRoutes(**{**studio.__dict__, "session_secret": new_session_secret()})
            gw.apply([studio])
        old = [w for w in children(gw.pid()) if shutting_down(w)]
        assert len(old) == 2
    finally:
        for s in held:
            s.close()
        gw.stop()
