"""Webapp sharing without containers: who gets a link, who changes the share, what a change does.

The fake runtime (tests/conftest.py) runs no pod; the gateway is a recorder. The
gateway's own check of the links and cookies is tested with real nginx in
tests/e2e/test_gateway_webapps.py.
"""

from __future__ import annotations

import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import pytest

from codestudio import access
from codestudio.errors import PermissionDenied, UsageError

TEMPLATE = """\
id: wa-share
permissions:
  all: true
blocks:
  - type: entrypoint
    label: App
    command: [python3, -m, http.server, "8080"]
    port: 8080
    launch_in_webapp: true
"""


@pytest.fixture
def alice(tmp_path, monkeypatch):
    from codestudio.projects import create_project, grant
    from codestudio.templates_store import add_template

    monkeypatch.setattr(access, "os_user", lambda: "alice")
    monkeypatch.setattr(access, "os_groups", lambda user: set())
    alice = access.identify()  # the first user: an admin
    (tmp_path / "t.yaml").write_text(TEMPLATE)
    add_template(alice, tmp_path / "t.yaml")
    create_project(alice, "PROJ")
    grant(alice, "PROJ", users=["olga"])
    access.add_member(alice, "team", "tess")
    return alice


def user(name: str) -> access.Identity:
    return access.Identity(name, False, name)


def publish(alice, share: str, owner: str = "olga"):
    from codestudio.webapps import publish

    return publish(user(owner), "PROJ", "app", "wa-share", share=share, quiet=True)


def link_of(who, ref="PROJ/app", **kw) -> str:
    from codestudio.webapps import urls

    return urls(who, ref, **kw)["url"]


@pytest.mark.parametrize("share,viewers", [
    ("owner", {"olga", "alice"}),
    ("group:team", {"olga", "alice", "tess"}),
    ("users", {"olga", "alice", "tess", "bob"}),
])
def test_only_whom_the_share_admits_get_a_link(alice, fake_runtime, share, viewers):
    publish(alice, share)
    for name in ("olga", "alice", "tess", "bob"):
        who = alice if name == "alice" else user(name)
        if name in viewers:
            url = link_of(who)
            parts = urlsplit(url)
            assert url.startswith("http://127.0.0.1:8800/webapps/PROJ/app/?")  # the webapp origin
            assert set(parse_qs(parts.query)) == {"cs_expires", "cs_token"}
        else:
            with pytest.raises(PermissionDenied, match="may not view it"):
                link_of(who)


def test_a_public_webapp_link_is_its_plain_url(alice, fake_runtime):
    publish(alice, "public")
    assert link_of(user("bob")) == "http://127.0.0.1:8800/webapps/PROJ/app/"


def test_viewers_get_no_replica_urls_and_no_replica_links(alice, fake_runtime):
    from codestudio.webapps import urls

    publish(alice, "users")
    assert "replicas" not in urls(user("bob"), "PROJ/app")
    owner_view = urls(user("olga"), "PROJ/app")
    [pod] = owner_view["replicas"]
    assert owner_view["replicas"][pod].startswith(f"http://127.0.0.1:8800/web-apps-backends/PROJ/app_{pod}/8080/?cs_expires=")
    assert f"/web-apps-backends/PROJ/app_{pod}/8080/?" in link_of(user("olga"), replica=pod)
    with pytest.raises(PermissionDenied):
        link_of(user("bob"), replica=pod)
    with pytest.raises(UsageError, match="ttl"):
        link_of(user("olga"), ttl=5)


def test_only_owner_and_admins_change_the_share_and_each_change_rotates_the_secret(alice, fake_runtime):
    from codestudio.webapps import records
    from codestudio.webapps.sharing import set_share
    from codestudio.store import Store

    w = publish(alice, "owner")
    for name in ("bob", "tess"):
        with pytest.raises(PermissionDenied, match="change the sharing of"):
            set_share(user(name), "PROJ/app", "public")
    applies = fake_runtime.gateway.applies
    w2 = set_share(user("olga"), "PROJ/app", "group:team")
    assert w2.share == "group:team" and w2.session_secret != w.session_secret
    assert fake_runtime.gateway.applies == applies + 1  # the gateway serves the new secret at once
    w3 = set_share(alice, "PROJ/app", "group:team")  # an admin; the same share still rotates
    assert w3.session_secret != w2.session_secret
    assert records.get_webapp("PROJ/app", store=Store.default()).share == "group:team"
    with pytest.raises(UsageError, match="share"):
        set_share(user("olga"), "PROJ/app", "everyone")
    assert records.get_webapp("PROJ/app", store=Store.default()).session_secret == w3.session_secret


def test_a_link_opens_the_secret_the_gateway_serves(alice, fake_runtime):
    from codestudio.gateway.webapps import webapp_access_token
    from codestudio.webapps.routes import webapp_routes
    from codestudio.webapps.sharing import set_share

    publish(alice, "users")
    set_share(user("olga"), "PROJ/app", "users")
    [routes] = webapp_routes()
    query = parse_qs(urlsplit(link_of(user("bob"))).query)
    assert query["cs_token"][0] == webapp_access_token(routes, int(query["cs_expires"][0]))


def test_cli_share_and_url(alice, fake_runtime, capsys):
    from codestudio.cli import main

    def run(*argv: str) -> tuple[int, str]:
        with pytest.raises(SystemExit) as done:
            main([*argv])
            raise SystemExit(0)
        out = capsys.readouterr()
        return done.value.code, out.out + out.err

    publish(alice, "owner")
    code, out = run("--user", "bob", "webapp", "url", "PROJ/app")
    assert code == 2 and "may not view it" in out
    code, out = run("--user", "olga", "webapp", "share", "PROJ/app", "users")
    assert code == 0 and "users" in out.splitlines() and "every signed-in user" in out
    code, out = run("--user", "bob", "webapp", "url", "PROJ/app")
    assert code == 0 and "cs_token=" in out
    code, out = run("--user", "olga", "webapp", "share", "PROJ/app", "group:a b")
    assert code == 2 and "share" in out


def test_the_web_api_issues_links_and_changes_shares(alice, fake_runtime, codestudio_home):
    from fastapi.testclient import TestClient

    from codestudio import signin
    from codestudio.server.app import create_app
    from codestudio.server.settings import ServerSettings
    from codestudio.store import Store

    publish(alice, "group:team")
    app = create_app(ServerSettings(content_url="http://127.0.0.1:8800"), data_dir=codestudio_home, poll_interval=0.05)

    def as_user(name: str) -> TestClient:
        who = signin.identity_of(name, store=Store.default())
        _row, token = signin.create_token(who, "test", store=Store.default())
        c = TestClient(app, base_url="http://localhost:8801", raise_server_exceptions=False)
        c.headers["Authorization"] = f"Bearer {token}"
        return c

    tess, bob, olga = as_user("tess"), as_user("bob"), as_user("olga")
    r = tess.get("/api/v1/webapps/PROJ/app/open")
    assert r.status_code == 200 and r.json()["url"].startswith("http://127.0.0.1:8800/webapps/PROJ/app/?cs_expires=")
    assert "replicas" not in r.json()
    assert bob.get("/api/v1/webapps/PROJ/app/open").status_code == 403
    assert bob.put("/api/v1/webapps/PROJ/app/share", json={"share": "public"}).status_code == 403
    assert olga.put("/api/v1/webapps/PROJ/app/share", json={"share": "nobody"}).status_code in (400, 422)
    r = olga.put("/api/v1/webapps/PROJ/app/share", json={"share": "public"})
    assert r.status_code == 200 and r.json()["share"] == "public"
    assert bob.get("/api/v1/webapps/PROJ/app/open").json()["url"] == "http://127.0.0.1:8800/webapps/PROJ/app/"
