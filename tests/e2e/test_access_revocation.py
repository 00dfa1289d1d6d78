"""End-to-end: a cookie stops opening a studio or a webapp as soon as its holder leaves the audience.

Real nginx (the data dir's gateway, as `codestudio gateway start` runs it) in front of the
fake runtime's pods (tests/conftest.py: loopback HTTP servers answering 200); the engine
for real: projects, groups, sign-in, the webapp lifecycle, studio start and links.
A browser is an httpx client with a cookie jar: it opens the link the engine signed, gets
the cookie, then opens the page. Each test fails on a codestudio that only stops signing
new links (the cookie kept working until the next `webapp share` or studio restart).
"""

from __future__ import annotations

import socket

import httpx
import pytest

from codestudio import access
from codestudio.errors import PermissionDenied

pytestmark = pytest.mark.e2e

TEMPLATE = """\
id: wa-revoke-e2e
permissions:
  all: true
blocks:
  - type: entrypoint
    label: App
    command: [python3, -m, http.server, "8080"]
    port: 8080
    launch_in_webapp: true
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def world(tmp_path, monkeypatch, fake_runtime):
    """alice (admin), project PROJ with olga and the group team (tess, tom); the real gateway."""
    import codestudio.runtime.routes as routes
    from codestudio.gateway.process import Gateway
    from codestudio.home import data_dir
    from codestudio.projects import create_project, grant
    from codestudio.templates_store import add_template

    monkeypatch.setenv("CODESTUDIO_GATEWAY_PORT", str(_free_port()))
    monkeypatch.setattr(access, "os_user", lambda: "alice")
    monkeypatch.setattr(access, "os_groups", lambda user: set())
    alice = access.identify()
    (tmp_path / "t.yaml").write_text(TEMPLATE)
    add_template(alice, tmp_path / "t.yaml")
    create_project(alice, "PROJ")
    grant(alice, "PROJ", users=["olga"], groups=["team"])
    for name in ("tess", "tom"):
        access.add_member(alice, "team", name)
    fake = routes.gateway
    real = Gateway(data_dir(), studios=routes.running_studio_routes, webapps=routes.running_webapp_routes)
    routes.gateway = lambda: real  # the fake runtime's pods, served by real nginx
    try:
        yield alice
    finally:
        routes.gateway = fake
        real.stop()


def user(name: str) -> access.Identity:
    return access.Identity(name, False, name)


def browser() -> httpx.Client:
    return httpx.Client(trust_env=False, follow_redirects=False, timeout=10)


def opened(c: httpx.Client, link: str, page: str) -> int:
    """Open ``link`` (a 302 setting the cookie when valid), then ``page``; the page's status."""
    first = c.get(link)
    if first.status_code != 302:
        return first.status_code
    return c.get(page).status_code


def webapp_link(who, key: str) -> str:
    from codestudio.webapps import urls

    return urls(who, key)["url"]


def webapp_page(link: str) -> str:
    return link.split("?")[0] + "page"


def publish(name: str, share: str, owner: str = "olga"):
    from codestudio.webapps import publish

    return publish(user(owner), "PROJ", name, "wa-revoke-e2e", share=share, quiet=True)


def start_studio(owner: str, name: str):
    from codestudio.runtime import studios

    s = studios.create_studio(user(owner), "PROJ", name, "wa-revoke-e2e")
    return studios.start_studio(user(owner), s.id, quiet=True)


def studio_link(owner: str, studio_id: str) -> str:
    from codestudio.runtime.studios import access_url

    return access_url(user(owner), studio_id)


def studio_page(link: str) -> str:
    return link.split("?")[0] + "8080/"


def test_a_member_removed_from_the_group_loses_the_webapp_at_once_the_others_get_a_new_link(world):
    w = publish("team-app", "group:team")
    tess, tom = browser(), browser()
    link = webapp_link(user("tess"), w.key)
    page = webapp_page(link)
    assert opened(tess, link, page) == 200 and tess.get(page).status_code == 200
    assert opened(tom, webapp_link(user("tom"), w.key), page) == 200
    unused = webapp_link(user("tess"), w.key)  # signed, not opened yet

    assert access.remove_member(world, "team", "tess")

    # The cookie tess holds, and the link she was given, no longer open the webapp.
    assert tess.get(page).status_code in (401, 403)
    with browser() as fresh:
        assert opened(fresh, unused, page) in (401, 403)
    with pytest.raises(PermissionDenied):
        webapp_link(user("tess"), w.key)
    # tom is still a member: his old cookie was renewed too, and a new link lets him in.
    assert tom.get(page).status_code in (401, 403)
    assert opened(tom, webapp_link(user("tom"), w.key), page) == 200
    tess.close()
    tom.close()


def test_a_disabled_user_loses_their_studio_and_the_webapps_at_once(world):
    from codestudio import signin
    from codestudio.store import Store

    w = publish("users-app", "users")
    tess_studio, olga_studio = start_studio("tess", "t"), start_studio("olga", "o")
    tess, olga = browser(), browser()
    wlink = webapp_link(user("tess"), w.key)
    slink = studio_link("tess", tess_studio.id)
    assert opened(tess, wlink, webapp_page(wlink)) == 200
    assert opened(tess, slink, studio_page(slink)) == 200
    olga_link = studio_link("olga", olga_studio.id)
    assert opened(olga, olga_link, studio_page(olga_link)) == 200

    signin.disable_user(world, "tess", store=Store.default())

    assert tess.get(webapp_page(wlink)).status_code in (401, 403)
    assert tess.get(studio_page(slink)).status_code in (401, 403)
    with browser() as fresh:
        assert opened(fresh, slink, studio_page(slink)) in (401, 403)
    with pytest.raises(PermissionDenied, match="disabled"):
        studio_link("tess", tess_studio.id)
    # Nobody else's studio changed: olga's cookie still opens hers.
    assert olga.get(studio_page(olga_link)).status_code == 200
    tess.close()
    olga.close()


def test_a_revoked_project_member_loses_the_running_studio_until_granted_again(world):
    from codestudio.projects import grant, revoke
    from codestudio.runtime.studios import get_studio

    studio = start_studio("olga", "o")
    olga = browser()
    link = studio_link("olga", studio.id)
    assert opened(olga, link, studio_page(link)) == 200

    revoke(world, "PROJ", users=["olga"])

    assert olga.get(studio_page(link)).status_code in (401, 403)
    with browser() as fresh:
        assert opened(fresh, link, studio_page(link)) in (401, 403)
    with pytest.raises(PermissionDenied, match="not a member"):
        studio_link("olga", studio.id)
    assert get_studio(studio.id).state == "RUNNING"  # the studio itself is untouched (its files stay)
    grant(world, "PROJ", users=["olga"])
    again = studio_link("olga", studio.id)
    assert opened(olga, again, studio_page(again)) == 200
    olga.close()


def test_an_open_websocket_is_closed_when_its_owner_is_revoked(world, fake_runtime, monkeypatch):
    """nginx's old workers keep the connections they hold for up to shutdown_timeout (60 s) after
    a reload: a revoked owner's open IDE terminal would keep working. The renewal ends them."""
    import threading

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect
    from websockets.sync.server import serve

    from codestudio.projects import revoke

    def echo(ws):
        for message in ws:
            ws.send(f"echo:{message}")

    def plain_http(connection, request):  # like the guard: a TCP probe is answered 204, a page 200
        if request.headers.get("Upgrade", "").lower() != "websocket":
            probe = request.headers.get("X-Codestudio-Probe") == "tcp"
            return connection.respond(204 if probe else 200, "" if probe else "ok\n")
        return None

    server = serve(echo, "127.0.0.1", 0, process_request=plain_http)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(fake_runtime, "_listen", lambda pod: server.socket.getsockname()[1])
    try:
        studio = start_studio("olga", "ws")
        link = studio_link("olga", studio.id)
        with browser() as c:
            assert opened(c, link, studio_page(link)) == 200
            cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
        ws_url = studio_page(link).replace("http://", "ws://") + "socket"
        with connect(ws_url, additional_headers={"Cookie": cookie}, open_timeout=10) as ws:
            ws.send("before")
            assert ws.recv(timeout=10) == "echo:before"

            revoke(world, "PROJ", users=["olga"])

            with pytest.raises((ConnectionClosed, TimeoutError)):
                ws.send("after")
                ws.recv(timeout=30)  # before the fix: echoed (the old worker kept it for 60 s)
        with pytest.raises(Exception, match="40[13]"):
            connect(ws_url, additional_headers={"Cookie": cookie}, open_timeout=10)
    finally:
        server.shutdown()
