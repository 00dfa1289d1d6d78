"""Webapps through the gateway end to end: real nginx in front of Python replicas on loopback.

Each replica is a small server (HTTP and websocket on one port) that answers with its
own name, the path and the headers it received, so a test sees which replica served a
request, with which guard secret and which cookies.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from codestudio.gateway.config import GatewaySettings, PortRoute, StudioRoutes, make_access_url, new_session_secret
from codestudio.gateway.process import Gateway
from codestudio.gateway.webapps import ReplicaPort, ReplicaRoutes, WebappRoutes, make_webapp_access_url

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Replica:
    """One replica's server: HTTP answers ``{"name", "path", "headers"}``; a websocket
    echoes ``<name>:<message>|<path>``."""

    def __init__(self, name: str):
        from websockets.datastructures import Headers
        from websockets.http11 import Response
        from websockets.sync.server import serve

        self.name = name
        self.guard = new_session_secret()

        # The websockets library closes the connection after a plain HTTP answer: say so,
        # or nginx would reuse it and see it closed (a 502 that moves the browser).
        def http(connection, request):
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return None
            if request.path.endswith("/redirect"):
                return Response(302, "Found", Headers([("Location", "/landed"), ("Content-Length", "0"), ("Connection", "close")]), b"")
            body = json.dumps({"name": name, "path": request.path, "headers": dict(request.headers.raw_items())}).encode()
            return Response(200, "OK", Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                                ("Connection", "close")]), body)

        def echo(ws):
            for message in ws:
                ws.send(f"{name}:{message}|{ws.request.path}")

        self.server = serve(echo, "127.0.0.1", 0, process_request=http)
        self.port = self.server.socket.getsockname()[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def routes(self, *, ready: bool = True, mode: str = "/", main_port: int = 8501) -> ReplicaRoutes:
        return ReplicaRoutes(pod_name=self.name, ready=ready, guard_secret=self.guard,
                             ports=(ReplicaPort(port=main_port, upstream_port=self.port, proxied_subpath=mode),))

    def close(self):
        self.server.shutdown()


@pytest.fixture
def replicas():
    made: list[Replica] = []

    def make(*names: str) -> list[Replica]:
        new = [Replica(n) for n in names]
        made.extend(new)
        return new

    yield make
    for r in made:
        r.close()


@pytest.fixture
def gateway(tmp_path: Path):
    gw = Gateway(tmp_path / "data", settings=GatewaySettings(port=free_port()))
    yield gw
    gw.stop()


def webapp(replicas, *, share="public", project="PROJ", wid="app", mode="/", ready=None, secret=None) -> WebappRoutes:
    ready = ready or {}
    return WebappRoutes(project_key=project, webapp_id=wid, owner="alice", share=share,
                        session_secret=secret or new_session_secret(), main_port=8501,
                        replicas=tuple(r.routes(ready=ready.get(r.name, True), mode=mode) for r in replicas))


def client() -> httpx.Client:
    return httpx.Client(trust_env=False, follow_redirects=False, timeout=10)


def as_owner(c: httpx.Client, w: WebappRoutes, base: str, pod: str) -> None:
    """Open the owner's link to ``pod``'s backend prefix (its cookie covers that prefix)."""
    r = c.get(make_webapp_access_url(w, base, pod=pod))
    assert r.status_code == 302 and r.headers["location"] == f"/web-apps-backends/PROJ/{w.webapp_id}_{pod}/8501/", r.text


def served_by(c: httpx.Client, url: str) -> str:
    r = c.get(url)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return r.json()["name"]


def test_a_browser_stays_on_one_replica_and_new_browsers_spread(gateway, replicas):
    pods = replicas("app-a", "app-b")
    w = webapp(pods)
    gateway.apply([], [w])
    url = gateway.settings.base_url + w.prefix
    with client() as c:
        first = c.get(url)
        assert first.status_code == 200
        name = first.json()["name"]
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"cs_replica={name}; Path=/webapps/PROJ/app/; HttpOnly; SameSite=Lax")
        # Kept there, and the cookie is not set again while it stays.
        for _ in range(20):
            r = c.get(url + "page")
            assert r.json()["name"] == name and "set-cookie" not in r.headers
    # Browsers without the cookie go to either replica (evenly at random: 40 all on
    # one replica has a probability of 2**-39).
    seen = set()
    for _ in range(40):
        with client() as c:
            seen.add(served_by(c, url))
    assert seen == {"app-a", "app-b"}


def test_the_stable_url_passes_the_path_and_the_replicas_guard(gateway, replicas):
    a, = replicas("app-a")
    w = webapp([a])
    gateway.apply([], [w])
    with client() as c:
        r = c.get(gateway.settings.base_url + w.prefix + "x/%2Fy?q=1", cookies={"cs_session": "s", "own": "1"})
        body = r.json()
        assert body["path"] == "/x/%2Fy?q=1"  # proxied_subpath "/": prefix stripped, raw URI kept
        assert body["headers"]["X-Codestudio-Guard"] == a.guard
        assert body["headers"]["X-Forwarded-Prefix"] == "/webapps/PROJ/app"
        assert "cs_session" not in body["headers"]["Cookie"] and "own=1" in body["headers"]["Cookie"]
        assert "cs_replica" not in body["headers"]["Cookie"]
        # A root-relative redirect stays under the stable URL.
        assert c.get(gateway.settings.base_url + w.prefix + "redirect").headers["location"] == "/webapps/PROJ/app/landed"
        bare = c.get(gateway.settings.base_url + "/webapps/PROJ/app?x=1")
        assert bare.status_code == 301 and bare.headers["location"] == "/webapps/PROJ/app/?x=1"


def test_request_uri_mode_gets_the_replicas_own_prefix(gateway, replicas):
    a, = replicas("app-a")
    w = webapp([a], mode="$request_uri")
    gateway.apply([], [w])
    base = gateway.settings.base_url
    with client() as c:
        # Through the stable URL the server sees its own base path (DKU_CODE_STUDIO_BROWSER_PATH_<port>)...
        assert c.get(base + w.prefix + "st/x?q=1").json()["path"] == "/web-apps-backends/PROJ/app_app-a/8501/st/x?q=1"
        # ...and its redirects to that base path come back under the stable URL.
        a_redirect = c.get(base + w.prefix + "redirect")
        assert a_redirect.headers["location"] == "/landed"  # outside its base: left alone
        # At its backend prefix (the owner's) the full path is passed.
        as_owner(c, w, base, "app-a")
        r = c.get(base + "/web-apps-backends/PROJ/app_app-a/8501/st/x")
        assert r.json()["path"] == "/web-apps-backends/PROJ/app_app-a/8501/st/x"
        assert r.json()["headers"]["X-Codestudio-Guard"] == a.guard


def test_each_replica_answers_at_its_own_backend_prefix(gateway, replicas):
    a, b = replicas("app-a", "app-b")
    w = webapp([a, b], ready={"app-b": False})
    gateway.apply([], [w])
    base = gateway.settings.base_url
    with client() as c:
        for rep in (a, b):  # ready or not: the owner can look at each one
            as_owner(c, w, base, rep.name)
            r = c.get(f"{base}/web-apps-backends/PROJ/app_{rep.name}/8501/p?x=1")
            assert r.json()["name"] == rep.name and r.json()["path"] == "/p?x=1"
            assert r.json()["headers"]["X-Codestudio-Guard"] == rep.guard
        slash = c.get(f"{base}/web-apps-backends/PROJ/app_app-a/8501")
        assert slash.status_code == 301 and slash.headers["location"] == "/web-apps-backends/PROJ/app_app-a/8501/"
        # A pod of this webapp that is not there: 401 like one that is (pod names cannot be probed).
        assert c.get(base + "/web-apps-backends/PROJ/app_app-c/8501/").status_code == 401
        for missing in ("/web-apps-backends/PROJ/app_app-a/9999/",
                        "/web-apps-backends/proj/app_app-a/8501/", "/web-apps-backends/PROJ/other_app-a/8501/",
                        "/webapps/PROJ/other/", "/webapps/proj/app/"):
            assert c.get(base + missing).status_code == 404, missing


def test_websockets_go_to_the_browsers_replica(gateway, replicas):
    from websockets.sync.client import connect

    pods = replicas("app-a", "app-b", "app-c")
    w = webapp(pods)
    gateway.apply([], [w])
    ws_base = gateway.settings.base_url.replace("http://", "ws://") + w.prefix
    for pod in ("app-b", "app-c", "app-a"):
        with connect(ws_base + "_stcore/stream", additional_headers={"Cookie": f"cs_replica={pod}"}) as ws:
            for i in range(3):
                ws.send(f"m{i}")
                assert ws.recv(timeout=5) == f"{pod}:m{i}|/_stcore/stream"


def test_only_ready_replicas_get_browsers(gateway, replicas):
    a, b, c_ = replicas("app-a", "app-b", "app-c")
    w = webapp([a, b, c_], ready={"app-b": False})
    gateway.apply([], [w])
    url = gateway.settings.base_url + w.prefix
    seen = set()
    for _ in range(30):
        with client() as c:
            seen.add(served_by(c, url))
    assert seen == {"app-a", "app-c"}
    # A browser kept on a replica that is no longer ready is moved, and told so.
    with client() as c:
        c.cookies.set("cs_replica", "app-b", path="/webapps/PROJ/app/")
        r = c.get(url)
        assert r.json()["name"] in ("app-a", "app-c")
        assert r.headers["set-cookie"].startswith(f"cs_replica={r.json()['name']};")
    # No ready replica at all: 503, and the page says so.
    gateway.apply([], [webapp([a, b, c_], ready={"app-a": False, "app-b": False, "app-c": False})])
    with client() as c:
        r = c.get(url)
        assert r.status_code == 503 and "not ready" in r.text


def test_a_browser_is_moved_off_a_replica_that_died(gateway, replicas):
    a, b = replicas("app-a", "app-b")
    w = webapp([a, b])
    gateway.apply([], [w])
    url = gateway.settings.base_url + w.prefix
    with client() as c:
        c.cookies.set("cs_replica", "app-a", path="/webapps/PROJ/app/")
        assert served_by(c, url) == "app-a"
        a.close()  # dies before the engine noticed: still "ready" in the route table
        # A POST may have reached it before it failed: never sent again elsewhere.
        assert c.post(url + "form", content=b"x").status_code == 502
        r = c.get(url + "again")
        assert r.status_code == 200 and r.json()["name"] == "app-b"
        assert r.json()["headers"]["X-Codestudio-Guard"] == b.guard
        assert r.headers["set-cookie"].startswith("cs_replica=app-b; Path=/webapps/PROJ/app/")
        assert served_by(c, url) == "app-b"  # and stays there
        # Once the engine removed it, new browsers never try it.
        gateway.apply([], [webapp([b])])
    for _ in range(10):
        with client() as c:
            assert served_by(c, url) == "app-b"


def test_public_webapp_serves_without_sign_in(gateway, replicas):
    a, = replicas("app-a")
    w = webapp([a], share="public")
    gateway.apply([], [w])
    base = gateway.settings.base_url
    assert make_webapp_access_url(w, base) == base + w.prefix
    with client() as c:
        assert c.get(base + w.prefix).status_code == 200
        # A replica's own prefix is the owner's, even for a public webapp.
        backend = f"{base}/web-apps-backends/PROJ/app_app-a/8501/"
        assert c.get(backend).status_code == 401
        as_owner(c, w, base, "app-a")
        assert c.get(backend).json()["name"] == "app-a"


@pytest.mark.parametrize("share", ["owner", "users", "group:team"])
def test_non_public_webapp_needs_a_link_then_its_cookie(gateway, replicas, share):
    a, = replicas("app-a")
    w = webapp([a], share=share)
    other = webapp([a], share=share, wid="other")
    gateway.apply([], [w, other])
    base = gateway.settings.base_url
    backend = f"{base}/web-apps-backends/PROJ/app_app-a/8501/"
    with client() as c:
        r = c.get(base + w.prefix)
        assert r.status_code == 401 and "not public" in r.text
        assert c.get(backend).status_code == 401
        # Another webapp's link and cookie open nothing here.
        assert c.get(make_webapp_access_url(other, base).replace("/other/", "/app/")).status_code == 403
        assert c.get(base + w.prefix, cookies={"cs_webapp": other.cookie_value}).status_code == 401
        link = c.get(make_webapp_access_url(w, base) )
        assert link.status_code == 302 and link.headers["location"] == w.prefix
        assert link.headers["set-cookie"] == f"cs_webapp={w.cookie_value}; Path=/webapps/PROJ/app/; HttpOnly; SameSite=Lax"
        r = c.get(base + w.prefix)
        assert r.status_code == 200
        # Only the affinity cookie comes with it: no cookie for (nor name of) the replica's own prefix.
        cookies = r.headers.get_list("set-cookie")
        assert len(cookies) == 1 and cookies[0].startswith("cs_replica=app-a; Path=/webapps/PROJ/app/;"), cookies
        assert "cs_webapp" not in r.json()["headers"].get("Cookie", "")
        assert c.get(backend).status_code == 401
        assert c.get(base + other.prefix).status_code == 401
        expired = make_webapp_access_url(w, base, now=time.time() - 3600)
        assert client().get(expired).status_code == 403
    # A link straight to a replica's prefix.
    with client() as c:
        link = c.get(make_webapp_access_url(w, base, pod="app-a"))
        assert link.status_code == 302 and link.headers["location"] == "/web-apps-backends/PROJ/app_app-a/8501/"
        assert c.get(backend).json()["name"] == "app-a"
        assert c.get(base + w.prefix).status_code == 401  # that cookie is for the replica's prefix only


def test_a_clients_guard_control_header_never_reaches_a_replica(gateway, replicas):
    a, = replicas("app-a")
    w = webapp([a], share="public")
    gateway.apply([], [w])
    base = gateway.settings.base_url
    with client() as c:
        as_owner(c, w, base, "app-a")
        for path in (w.prefix + "x", "/web-apps-backends/PROJ/app_app-a/8501/x"):
            r = c.get(base + path, headers={"X-Codestudio-Probe": "activity"})
            assert r.status_code == 200, r.text
            assert "x-codestudio-probe" not in {k.lower() for k in r.json()["headers"]}, path


def test_a_viewers_link_or_cookie_never_opens_a_replicas_own_prefix(gateway, replicas):
    # Viewers are routed only to ready replicas: the stable URL's link and cookie, signed
    # over the stable prefix, must not open a (not ready) replica at its backend prefix.
    a, b = replicas("app-a", "app-b")
    w = webapp([a, b], share="users", ready={"app-b": False})
    gateway.apply([], [w])
    base = gateway.settings.base_url
    link = make_webapp_access_url(w, base)
    query = link[link.index("?"):]
    for pod in ("app-a", "app-b"):
        backend = f"{base}/web-apps-backends/PROJ/app_{pod}/8501/"
        with client() as c:
            assert c.get(backend + query).status_code == 403
            assert c.get(backend, headers={"Cookie": f"cs_webapp={w.cookie_value}"}).status_code == 401
            # The owner's replica link opens it; that cookie does not open another replica.
            as_owner(c, w, base, pod)
            assert c.get(backend).json()["name"] == pod
            other = "app-b" if pod == "app-a" else "app-a"
            assert c.get(f"{base}/web-apps-backends/PROJ/app_{other}/8501/").status_code == 401


def test_a_new_secret_ends_every_viewers_access(gateway, replicas):
    a, = replicas("app-a")
    w = webapp([a], share="users")
    gateway.apply([], [w])
    base = gateway.settings.base_url
    with client() as c:
        c.get(make_webapp_access_url(w, base))
        assert c.get(base + w.prefix).status_code == 200
        gateway.apply([], [webapp([a], share="users")])  # `webapp share` rotates the secret
        assert c.get(base + w.prefix).status_code == 401


def test_cookies_do_not_cross_between_webapps_and_studios(gateway, replicas):
    a, = replicas("app-a")
    secret = new_session_secret()
    # Same project, same name, same secret: still different values, and different cookies.
    w = webapp([a], share="owner", wid="demo", secret=secret)
    s = StudioRoutes(project_key="PROJ", studio_id="demo", owner="alice", session_secret=secret,
                     ports=(PortRoute(8888, a.port, "/", "Lab"),))
    gateway.apply([s], [w])
    base = gateway.settings.base_url
    assert w.cookie_value != s.cookie_value and w.link_key != s.link_key
    with client() as c:
        # A studio's cookie (any name) and link do not open the webapp...
        for name in ("cs_session", "cs_webapp"):
            assert c.get(base + w.prefix, cookies={name: s.cookie_value}).status_code == 401
        studio_link = make_access_url(s, base)
        assert c.get(studio_link.replace("/code-studios/", "/webapps/")).status_code == 403
        # ...and a webapp's cookie and link do not open the studio.
        for name in ("cs_session", "cs_webapp"):
            assert c.get(base + s.prefix + "8888/", cookies={name: w.cookie_value}).status_code == 401
        webapp_link = make_webapp_access_url(w, base)
        assert c.get(webapp_link.replace("/webapps/", "/code-studios/")).status_code == 403
        # Neither cookie reaches the other's server.
        c.get(make_access_url(s, base))
        c.get(webapp_link)
        r = c.get(base + s.prefix + "8888/", headers={"Cookie": f"cs_session={s.cookie_value}; cs_webapp={w.cookie_value}; cs_replica=x; mine=1"})
        assert r.status_code == 200 and r.json()["headers"]["Cookie"] == "mine=1"
        r = c.get(base + w.prefix, headers={"Cookie": f"cs_webapp={w.cookie_value}; CS_SESSION=x; mine=1"})
        assert r.status_code == 200 and r.json()["headers"]["Cookie"] == "mine=1"


def browser_get(c: httpx.Client, url: str) -> httpx.Response:
    """GET as a browser does it: a kept-alive connection that the server closed before
    reading the request (an old nginx worker closes idle ones at a reload) is retried
    once on a new connection; nothing had reached any server. The close can reach the
    client as an EOF (RemoteProtocolError) or, when the request bytes arrived at a socket
    the old worker had just closed, as a reset (ReadError/WriteError): browsers retry a
    GET on a reused connection in both cases."""
    try:
        return c.get(url)
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
        return c.get(url)


def test_reloads_fail_no_request_while_replicas_come_and_go(gateway, replicas):
    """A rolling update as the gateway sees it: a new replica ready, then the old one
    taken out of the table, then stopped once its requests are done. A loop of requests
    through the stable URL (kept on one replica, then moved) sees no failure."""
    old, new = replicas("app-old", "app-new")
    gateway.apply([], [webapp([old])])
    url = gateway.settings.base_url + "/webapps/PROJ/app/"
    failures, served, stop = [], [], threading.Event()

    def loop():
        with client() as c:
            while not stop.is_set():
                try:
                    r = browser_get(c, url)
                    if r.status_code != 200:
                        failures.append(r.status_code)
                    else:
                        served.append(r.json()["name"])
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=loop) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        gateway.apply([], [webapp([old, new], ready={"app-new": False})])  # new one starting
        time.sleep(0.2)
        gateway.apply([], [webapp([old, new])])  # new one ready
        time.sleep(0.2)
        gateway.apply([], [webapp([old, new], ready={"app-old": False})])  # old one leaving
        gateway.apply([], [webapp([new])])
        time.sleep(0.3)  # what the old workers still had in flight is done
        old.close()
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert served[-1] == "app-new" and "app-old" in served


@pytest.fixture
def webapp_origin_gateway(tmp_path: Path):
    gw = Gateway(tmp_path / "data", settings=GatewaySettings(port=free_port(), webapp_host="webapps.localhost"))
    yield gw
    gw.stop()


def test_with_a_webapp_host_webapps_and_studios_never_share_an_origin(webapp_origin_gateway, replicas):
    gw = webapp_origin_gateway
    a, = replicas("app-a")
    w = webapp([a], share="owner")
    s = StudioRoutes(project_key="PROJ", studio_id="demo", owner="alice", session_secret=new_session_secret(),
                     ports=(PortRoute(8888, a.port, "/", "Lab"),))
    gw.apply([s], [w])
    port = gw.settings.port
    assert gw.settings.webapp_base_url == f"http://webapps.localhost:{port}"
    content = gw.settings.base_url
    on_webapp_host = {"Host": f"webapps.localhost:{port}"}
    link = make_webapp_access_url(w, gw.settings.webapp_base_url)
    assert link.startswith(f"http://webapps.localhost:{port}/webapps/PROJ/app/?")
    with client() as c:
        # The content host serves no webapp: it sends the browser to the webapp origin.
        for path in (w.prefix + "x?q=1", "/web-apps-backends/PROJ/app_app-a/8501/"):
            r = c.get(content + path, cookies={"cs_webapp": w.cookie_value})
            assert r.status_code == 301 and r.headers["location"] == f"http://webapps.localhost:{port}{path}"
        # The webapp host serves the webapp (links and cookies are host-only there)...
        r = c.get(content + link[len(gw.settings.webapp_base_url):], headers=on_webapp_host)
        assert r.status_code == 302 and "Domain" not in r.headers["set-cookie"]
        r = c.get(content + w.prefix, headers={**on_webapp_host, "Cookie": f"cs_webapp={w.cookie_value}"})
        assert r.status_code == 200 and r.json()["name"] == "app-a"
        # ...and no studio, even with the studio's own cookie and link.
        r = c.get(content + s.prefix + "8888/", headers={**on_webapp_host, "Cookie": f"cs_session={s.cookie_value}"})
        assert r.status_code == 404
        studio_link = make_access_url(s, content)
        assert c.get(studio_link, headers=on_webapp_host).status_code == 404
        # The studio stays where it was.
        assert c.get(content + s.prefix + "8888/", headers={"Cookie": f"cs_session={s.cookie_value}"}).status_code == 200
