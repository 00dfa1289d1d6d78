"""The server without containers: sign-in, sessions, tokens, CSRF, proxy mode, every API route's rules.

Runs the real ASGI app (FastAPI's TestClient) on a per-test data dir with a
real SQLite state DB; studio start/stop are covered by the e2e tests.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from codestudio import access, signin  # noqa: E402
from codestudio.store import Store  # noqa: E402

UI = "http://localhost:8801"
TEMPLATE = """\
id: srv-t
label: Server test
permissions:
  groups: [team]
blocks:
  - type: entrypoint
    label: Web
    command: [python3, -m, http.server, "8080"]
    port: 8080
    expose_html: true
  - type: action
    name: hello
    label: Say hello
    command: echo hello
    wait: true
  - type: starter-files
    zone: code_studio-versioned
    files: {notes/README.md: "hi\\n"}
  - type: file-sync
    mappings:
      - {zone: code_studio-versioned, target: /home/codestudio/workspace/code_studio-versioned}
"""


class Srv:
    def __init__(self, home: Path, **settings):
        from codestudio.server.app import create_app
        from codestudio.server.settings import ServerSettings

        self.home = home
        self.store = Store(home / "state.db")
        self.root = access.identify(store=self.store)  # the OS user: first admin
        self.settings = ServerSettings(content_url="http://127.0.0.1:8800", **settings)
        self.app = create_app(self.settings, data_dir=home, poll_interval=0.05)

    def client(self, **kw) -> TestClient:
        return TestClient(self.app, base_url=UI, raise_server_exceptions=False, **kw)

    def link(self, user: str, ttl: int = 600) -> str:
        return signin.new_link_key(self.root, user, ttl=ttl, store=self.store)[1]

    def signed_in(self, user: str) -> TestClient:
        c = self.client()
        r = c.post("/signin", data={"key": self.link(user)}, follow_redirects=False)
        assert r.status_code == 303, r.text
        page = c.get("/").text
        c.headers["X-CSRF-Token"] = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
        return c

    def token(self, user: str) -> TestClient:
        who = signin.identity_of(user, store=self.store)
        _row, tok = signin.create_token(who, "test", store=self.store)
        c = self.client()
        c.headers["Authorization"] = f"Bearer {tok}"
        return c


@pytest.fixture
def srv(codestudio_home):
    s = Srv(codestudio_home)
    s.app.state.cs.jobs.install_capture()  # what the app's lifespan does when served
    try:
        yield s
    finally:
        s.app.state.cs.jobs.shutdown()


@pytest.fixture
def with_template(srv, write_template):
    from codestudio.templates_store import add_template

    add_template(srv.root, write_template(TEMPLATE))
    access.add_member(srv.root, "team", "alice", store=srv.store)
    access.add_member(srv.root, "team", "bob", store=srv.store)
    from codestudio.projects import create_project, grant

    for key in ("P1", "LOAD"):
        create_project(srv.root, key, store=srv.store)
        grant(srv.root, key, groups=["team"], store=srv.store)
    return srv


def _err(r) -> str:
    return r.json()["error"]["code"]


# --------------------------------------------------------------------------- sign-in


def test_link_signs_in_once_with_a_strict_httponly_cookie(srv):
    c = srv.client()
    key = srv.link("alice")
    assert "Sign in" in c.get(f"/signin?key={key}").text  # GET never uses the link (previews, prefetch)
    r = c.post("/signin", data={"key": key}, follow_redirects=False)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "cs_ui_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    assert c.get("/api/v1/me").json()["user"] == "alice"
    again = srv.client().post("/signin", data={"key": key})
    assert again.status_code == 401 and 'data-code="link_used"' in again.text


def test_secure_cookie_behind_https(codestudio_home):
    s = Srv(codestudio_home, public_url="https://codestudio.example.com")
    c = TestClient(s.app, base_url="https://codestudio.example.com")
    r = c.post("/signin", data={"key": s.link("alice")}, follow_redirects=False)
    assert "Secure" in r.headers["set-cookie"]


def test_expired_and_tampered_links_are_refused_and_change_nothing(srv, monkeypatch):
    key = srv.link("alice", ttl=10)
    tampered = key[:-2] + ("AA" if key[-2:] != "AA" else "BB")
    r = srv.client().post("/signin", data={"key": tampered})
    assert r.status_code == 401 and 'data-code="link_invalid"' in r.text
    import time as _time

    real = _time.time
    monkeypatch.setattr("codestudio.store.time.time", lambda: real() + 11)
    r = srv.client().post("/signin", data={"key": key})
    assert r.status_code == 401 and 'data-code="link_expired"' in r.text
    with srv.store.connect() as conn:
        assert conn.execute("SELECT COUNT(*) FROM web_sessions").fetchone()[0] == 0
        assert conn.execute("SELECT used_at FROM signin_links").fetchone()[0] is None


def test_failed_sign_ins_are_rate_limited_and_logged(srv, caplog):
    c = srv.client()
    for _ in range(signin.MAX_FAILURES):
        assert c.post("/signin", data={"key": "x" * 43}).status_code == 401
    good = srv.link("alice")
    r = c.post("/signin", data={"key": good})
    assert r.status_code == 429 and r.headers["Retry-After"] and 'data-code="rate_limited"' in r.text
    assert any("failed sign-in" in rec.getMessage() for rec in caplog.records)
    with srv.store.connect() as conn:  # the good link was not used up by the refused attempt
        assert conn.execute("SELECT used_at FROM signin_links").fetchone()[0] is None


def test_cross_site_sign_in_post_is_refused(srv):
    r = srv.client().post("/signin", data={"key": srv.link("alice")}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403


def test_logout_and_admin_revoke_end_sessions_at_once(srv):
    a = srv.signed_in("alice")
    assert a.post("/signout", follow_redirects=False).status_code == 303
    assert a.get("/api/v1/me").status_code == 401
    b = srv.signed_in("bob")
    admin = srv.token(srv.root.name)
    assert admin.delete("/api/v1/users/bob/sessions").json() == {"ended": 1}
    r = b.get("/api/v1/me")
    assert r.status_code == 401 and _err(r) == "not_signed_in"
    # A user cannot end someone else's sessions.
    c = srv.signed_in("carol")
    assert c.delete("/api/v1/users/alice/sessions").status_code == 403


def test_cli_login_prints_a_link_and_logout_ends_sessions(srv, codestudio_home):
    from click.testing import CliRunner

    from codestudio.cli import make_cli

    cli = make_cli()
    r = CliRunner().invoke(cli, ["--user", "alice", "login", "--ttl", "60"], obj={})
    assert r.exit_code == 0, r.output
    link = r.stdout.strip().splitlines()[-1]
    assert link.startswith("http://localhost:8801/signin?key=")
    c = srv.client()
    assert c.post("/signin", data={"key": link.split("key=")[1]}, follow_redirects=False).status_code == 303
    r = CliRunner().invoke(cli, ["--user", "alice", "logout"], obj={})
    assert r.exit_code == 0, r.output
    assert c.get("/api/v1/me").status_code == 401


# --------------------------------------------------------------------------- CSRF, tokens


def test_csrf_missing_or_wrong_is_refused_and_nothing_changes(srv):
    a = srv.signed_in("alice")
    good = a.headers.pop("X-CSRF-Token")
    r = a.post("/api/v1/tokens", json={"name": "x"})
    assert r.status_code == 403 and _err(r) == "csrf_missing"
    r = a.post("/api/v1/tokens", json={"name": "x"}, headers={"X-CSRF-Token": "nope"})
    assert r.status_code == 403 and _err(r) == "csrf_invalid"
    r = a.post("/api/v1/tokens", json={"name": "x"}, headers={"X-CSRF-Token": good, "Origin": "http://127.0.0.1:8800"})
    assert r.status_code == 403 and _err(r) == "csrf_origin"
    assert a.get("/api/v1/tokens").json() == []
    assert a.post("/api/v1/tokens", json={"name": "x"}, headers={"X-CSRF-Token": good}).status_code == 201


def test_tokens_are_hashed_shown_once_and_revoked_at_once(srv):
    a = srv.signed_in("alice")
    made = a.post("/api/v1/tokens", json={"name": "ci"}).json()
    token = made["token"]
    with srv.store.connect() as conn:
        stored = [tuple(r) for r in conn.execute("SELECT * FROM api_tokens")]
    assert token not in repr(stored)
    listed = a.get("/api/v1/tokens").json()
    assert [t["id"] for t in listed] == [made["id"]] and "token" not in listed[0]
    t = srv.client(headers={"Authorization": f"Bearer {token}"})
    assert t.get("/api/v1/me").json()["via"] == "token"
    assert t.post("/api/v1/tokens", json={"name": "no csrf needed"}).status_code == 201
    assert a.delete(f"/api/v1/tokens/{made['id']}").status_code == 200
    r = t.get("/api/v1/me")
    assert r.status_code == 401 and _err(r) == "token_invalid"
    # Someone else's token id is unknown to you.
    b = srv.signed_in("bob")
    other = b.post("/api/v1/tokens", json={"name": "b"}).json()
    assert a.delete(f"/api/v1/tokens/{other['id']}").status_code == 404


def test_disabled_user_token_and_session_stop_working(srv):
    a = srv.signed_in("alice")
    tok = srv.token("alice")
    admin = srv.token(srv.root.name)
    r = admin.post("/api/v1/users/alice/disable").json()
    assert r["sessions_revoked"] == 1 and r["tokens_revoked"] == 1
    assert tok.get("/api/v1/me").status_code == 401
    assert a.get("/api/v1/me").status_code == 401
    with pytest.raises(signin.SignInFailed):
        signin.new_link_key(srv.root, "alice", store=srv.store)
    admin.post("/api/v1/users/alice/enable")
    assert srv.signed_in("alice").get("/api/v1/me").status_code == 200


def test_bad_authorization_header(srv):
    c = srv.client(headers={"Authorization": "Basic abc"})
    r = c.get("/api/v1/me")
    assert r.status_code == 401 and _err(r) == "token_invalid"


# --------------------------------------------------------------------------- proxy mode


def test_proxy_headers_only_from_trusted_proxies(codestudio_home):
    s = Srv(codestudio_home, auth="proxy", trusted_proxies=("10.9.0.0/16",))
    untrusted = TestClient(s.app, base_url=UI, client=("127.0.0.1", 5000))
    r = untrusted.get("/api/v1/me", headers={"X-Forwarded-User": "alice"})
    assert r.status_code == 403 and _err(r) == "untrusted_proxy"
    proxy = TestClient(s.app, base_url=UI, client=("10.9.1.2", 5000))
    r = proxy.get("/api/v1/me", headers={"X-Forwarded-User": "alice", "X-Forwarded-Groups": "team, ds",
                                          "X-Forwarded-Email": "a@example.com"})
    assert r.status_code == 200 and r.json()["user"] == "alice" and r.json()["email"] == "a@example.com"
    assert {"team", "ds"} <= set(r.json()["groups"])
    assert access.groups_of("alice", store=s.store) >= {"team", "ds"}  # they count for template grants
    proxy.get("/api/v1/me", headers={"X-Forwarded-User": "alice", "X-Forwarded-Groups": "ds"})
    assert "team" not in access.groups_of("alice", store=s.store)  # replaced by what the proxy sends now
    r = proxy.get("/api/v1/me", headers={"X-Forwarded-User": "alice", "X-Forwarded-Groups": "bad group!"})
    assert r.status_code == 400
    assert proxy.get("/api/v1/me").status_code == 401
    # State changes still need the page's CSRF token.
    r = proxy.post("/api/v1/tokens", json={"name": "x"}, headers={"X-Forwarded-User": "alice"})
    assert r.status_code == 403 and _err(r) == "csrf_missing"
    page = proxy.get("/", headers={"X-Forwarded-User": "alice"}).text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    r = proxy.post("/api/v1/tokens", json={"name": "x"}, headers={"X-Forwarded-User": "alice", "X-CSRF-Token": csrf})
    assert r.status_code == 201
    # A token of alice's does not make bob's csrf valid.
    r = proxy.post("/api/v1/tokens", json={"name": "x"}, headers={"X-Forwarded-User": "bob", "X-CSRF-Token": csrf})
    assert r.status_code == 403


@pytest.fixture(autouse=True)
def _os_groups_restored(monkeypatch):
    # create_app in proxy mode turns OS groups off for the process; later tests get them back.
    monkeypatch.setattr(access, "_use_os_groups", True, raising=False)


def test_proxy_never_signs_in_root_nor_lends_os_groups(codestudio_home):
    # Any local OS user can reach a loopback trusted proxy's address: "root" must not be accepted,
    # and a host account named like the SSO user must not lend its OS groups (daemon is in group daemon).
    import pwd

    pwd.getpwnam("daemon")
    assert "daemon" in access.groups_of("daemon")
    s = Srv(codestudio_home, auth="proxy", trusted_proxies=("127.0.0.1",))
    proxy = TestClient(s.app, base_url=UI, client=("127.0.0.1", 5000))
    for name in sorted(access.SUPERUSERS):
        r = proxy.get("/api/v1/me", headers={"X-Forwarded-User": name})
        assert r.status_code == 403 and _err(r) == "proxy_user_refused"
    r = proxy.get("/api/v1/me", headers={"X-Forwarded-User": "daemon", "X-Forwarded-Groups": "ds"})
    assert r.status_code == 200 and r.json()["groups"] == ["ds"]
    assert access.groups_of("daemon", store=s.store) == {"ds"}


def test_proxy_mode_needs_a_trusted_proxy(codestudio_home):
    from codestudio.errors import UsageError
    from codestudio.server.settings import ServerSettings

    with pytest.raises(UsageError, match="trusted proxy"):
        ServerSettings(auth="proxy")
    with pytest.raises(UsageError, match="same"):
        ServerSettings(port=8800, content_url="http://localhost:8800").check_origins()


def test_ui_and_content_on_one_host_name_are_refused(codestudio_home):
    # Cookies ignore ports: the UI's cs_ui_session (Path=/) would be sent to the content port.
    from codestudio.errors import UsageError
    from codestudio.server.settings import ServerSettings

    for ui, content in (("http://localhost:8000", "http://localhost:8800"),
                        ("https://cs.example.com", "https://CS.example.com:8443")):
        with pytest.raises(UsageError, match="share the host name") as err:
            ServerSettings(public_url=ui, content_url=content).check_origins()
        assert "public_url" in str(err.value) and "content_url" in str(err.value)
    # The defaults (UI on localhost, content on the gateway's 127.0.0.1) and a content subdomain pass.
    ServerSettings().check_origins("http://127.0.0.1:8800")
    ServerSettings(public_url="http://localhost:8000", content_url="http://content.localhost:8800").check_origins()


def test_ui_and_webapps_on_one_host_name_are_refused(codestudio_home, monkeypatch):
    from codestudio.errors import UsageError
    from codestudio.server.settings import ServerSettings

    monkeypatch.setenv("CODESTUDIO_GATEWAY_WEBAPP_HOST", "localhost")
    with pytest.raises(UsageError, match="webapp origin"):
        ServerSettings(public_url="http://localhost:8000").check_origins("http://127.0.0.1:8800")
    monkeypatch.setenv("CODESTUDIO_GATEWAY_WEBAPP_HOST", "webapps.localhost")
    ServerSettings(public_url="http://localhost:8000").check_origins("http://127.0.0.1:8800")


# --------------------------------------------------------------------------- API


def test_openapi_schema_is_valid_and_lists_every_route(srv):
    from openapi_spec_validator import validate

    schema = srv.client().get("/api/v1/openapi.json").json()
    validate(schema)
    paths = set(schema["paths"])
    for p in ("/api/v1/studios", "/api/v1/studios/{studio_id}", "/api/v1/studios/{studio_id}/start",
              "/api/v1/studios/{studio_id}/stop", "/api/v1/studios/{studio_id}/restart", "/api/v1/studios/{studio_id}/sync",
              "/api/v1/studios/{studio_id}/push", "/api/v1/studios/{studio_id}/pull", "/api/v1/studios/{studio_id}/conflicts",
              "/api/v1/studios/{studio_id}/owner", "/api/v1/studios/{studio_id}/actions", "/api/v1/templates",
              "/api/v1/templates/{template_id}/build", "/api/v1/templates/{template_id}/grants", "/api/v1/jobs/{job_id}",
              "/api/v1/jobs/{job_id}/events", "/api/v1/tokens"):
        assert p in paths, p
    assert not any(p == "/" or p.startswith("/signin") for p in paths)


def test_unauthenticated_api_is_401_json(srv):
    r = srv.client().get("/api/v1/studios")
    assert r.status_code == 401 and r.json()["error"]["code"] == "not_signed_in"
    assert srv.client().get("/", follow_redirects=False).status_code == 303


def test_studio_create_get_list_and_permissions(with_template):
    srv = with_template
    a, b = srv.signed_in("alice"), srv.signed_in("bob")
    r = a.post("/api/v1/studios", json={"project": "P1", "name": "My one", "template": "srv-t"})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert r.json()["state"] == "STOPPED" and "token" not in r.json()
    assert [s["id"] for s in a.get("/api/v1/studios").json()] == [sid]
    assert b.get("/api/v1/studios").json() == []
    got = a.get(f"/api/v1/studios/{sid}").json()
    assert got["state"] == "STOPPED" and got["zones"][0]["zone"] == "code_studio-versioned" and "exposed_ports" in got
    assert [x["name"] for x in a.get(f"/api/v1/studios/{sid}/actions").json()] == ["hello"]
    # Bob can neither see nor act on it.
    for method, path in (("get", f"/api/v1/studios/{sid}"), ("post", f"/api/v1/studios/{sid}/start"),
                         ("post", f"/api/v1/studios/{sid}/stop"), ("post", f"/api/v1/studios/{sid}/sync"),
                         ("get", f"/api/v1/studios/{sid}/conflicts"), ("get", f"/api/v1/studios/{sid}/actions"),
                         ("post", f"/api/v1/studios/{sid}/actions/hello"), ("get", f"/api/v1/studios/{sid}/logs"),
                         ("delete", f"/api/v1/studios/{sid}"), ("get", f"/api/v1/studios/{sid}/open")):
        r = getattr(b, method)(path)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
    assert b.put(f"/api/v1/studios/{sid}/owner", json={"owner": "bob"}).status_code == 403
    assert b.get("/api/v1/studios?all=true").status_code == 403
    # Admins see every studio, may stop it, but do not get in.
    admin = srv.token(srv.root.name)
    assert sid in [s["id"] for s in admin.get("/api/v1/studios?all=true").json()]
    r = admin.get(f"/api/v1/studios/{sid}/open")
    assert r.status_code == 403 and "only its owner" in r.json()["error"]["message"]
    r = admin.post(f"/api/v1/studios/{sid}/stop")
    assert r.status_code == 202
    job = admin.get(f"/api/v1/jobs/{r.json()['id']}")
    assert job.status_code == 200
    # Not alice's job: bob cannot see it.
    assert b.get(f"/api/v1/jobs/{r.json()['id']}").status_code == 404


def test_create_refuses_templates_not_granted(with_template):
    srv = with_template
    c = srv.signed_in("carol")
    assert c.get("/api/v1/templates").json() == []
    r = c.post("/api/v1/studios", json={"project": "P1", "name": "x", "template": "srv-t"})
    assert r.status_code == 403
    assert c.get("/api/v1/studios").json() == []
    assert [t["id"] for t in srv.signed_in("alice").get("/api/v1/templates").json()] == ["srv-t"]
    assert "srv-t" not in c.get("/").text


def test_bad_input_statuses(with_template):
    srv = with_template
    a = srv.signed_in("alice")
    r = a.post("/api/v1/studios", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and _err(r) == "malformed_json"
    r = a.post("/api/v1/studios", json={"project": "P1", "name": "x"})
    assert r.status_code == 422 and _err(r) == "invalid_request" and "template" in r.json()["error"]["message"]
    r = a.post("/api/v1/studios", json={"project": "P1", "name": "x", "template": "srv-t", "colour": "red"})
    assert r.status_code == 422
    r = a.post("/api/v1/studios", json={"project": "bad key!", "name": "x", "template": "srv-t"})
    assert r.status_code == 400 and "project key" in r.json()["error"]["message"]
    for path in ("/api/v1/studios/nope", "/api/v1/studios/nope/conflicts"):
        r = a.get(path)
        assert r.status_code == 404 and _err(r) == "not_found"
    assert a.post("/api/v1/studios/nope/start").status_code == 404
    assert a.get("/api/v1/jobs/nope").status_code == 404
    assert a.get("/api/v1/nothing-here").status_code == 404
    assert a.get("/api/v1/studios").json() == []


def test_change_owner(with_template):
    srv = with_template
    a = srv.signed_in("alice")
    sid = a.post("/api/v1/studios", json={"project": "P1", "name": "gift", "template": "srv-t"}).json()["id"]
    r = a.put(f"/api/v1/studios/{sid}/owner", json={"owner": "carol"})  # carol may not use the template
    assert r.status_code == 403
    r = a.put(f"/api/v1/studios/{sid}/owner", json={"owner": "bob"})
    assert r.status_code == 200 and r.json()["owner"] == "bob"
    assert a.get(f"/api/v1/studios/{sid}").status_code == 403
    assert srv.signed_in("bob").get(f"/api/v1/studios/{sid}").json()["owner"] == "bob"


def test_delete_and_conflicts(with_template):
    srv = with_template
    a = srv.signed_in("alice")
    sid = a.post("/api/v1/studios", json={"project": "P1", "name": "tmp", "template": "srv-t"}).json()["id"]
    assert a.get(f"/api/v1/studios/{sid}/conflicts").json() == []
    assert a.get(f"/api/v1/studios/{sid}/conflicts?zone=bogus").status_code == 400
    assert a.post(f"/api/v1/studios/{sid}/conflicts/resolve", json={}).json() == []
    r = a.post(f"/api/v1/studios/{sid}/sync")  # not running: the job fails with the engine's message
    job = r.json()
    assert r.status_code == 202
    done = _wait_job(a, job["id"])
    assert done["state"] == "failed" and done["error"]["code"] == "bad_request" and "STOPPED" in done["error"]["message"]
    assert a.delete(f"/api/v1/studios/{sid}").json() == {"deleted": sid}
    assert a.get(f"/api/v1/studios/{sid}").status_code == 404


def _wait_job(client, job_id: str) -> dict:
    import time

    for _ in range(400):
        d = client.get(f"/api/v1/jobs/{job_id}").json()
        if d["state"] in ("succeeded", "failed"):
            return d
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_job_events_stream_lines_and_end(with_template):
    srv = with_template
    a = srv.signed_in("alice")
    sid = a.post("/api/v1/studios", json={"project": "P1", "name": "ev", "template": "srv-t"}).json()["id"]
    job = a.post(f"/api/v1/studios/{sid}/stop").json()
    with a.stream("GET", f"/api/v1/jobs/{job['id']}/events") as r:
        body = "".join(r.iter_text())
    assert "event: state" in body and "event: end" in body
    assert "is not running" in body  # the engine's progress line, captured from its thread


# --------------------------------------------------------------------------- templates (admin)


def test_template_upload_errors_at_their_line_then_fix(srv):
    admin = srv.signed_in(srv.root.name)
    bad = "id: up-t\nblocks:\n  - type: entrypoint\n    label: x\n    port: 70000\n    command: [sleep, '1']\n"
    r = admin.post("/api/v1/templates", content=bad, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 422 and _err(r) == "template_invalid"
    assert any(p["line"] == 5 and "port" in p["message"] for p in r.json()["error"]["problems"])
    assert admin.get("/api/v1/templates").json() == []
    good = bad.replace("70000", "8080")
    r = admin.post("/api/v1/templates", content=good, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201 and r.json()["version"] == 1
    assert admin.post("/api/v1/templates", content=good, headers={"Content-Type": "application/yaml"}).status_code == 200
    r = admin.post("/api/v1/templates", files={"file": ("t.yaml", good.replace("label: x", "label: y"))})
    assert r.status_code == 201 and r.json()["version"] == 2
    got = admin.get("/api/v1/templates/up-t").json()
    assert "label: y" in got["yaml"] and [v["version"] for v in got["versions"]] == [1, 2]
    assert admin.post("/api/v1/templates/up-t/grants", json={"group": "team"}).json()["grants"] == ["team"]
    assert admin.post("/api/v1/templates/up-t/grants", json={"group": "team", "everybody": True}).status_code == 422
    assert admin.post("/api/v1/templates/up-t/grants/revoke", json={"group": "team"}).json()["grants"] == []
    page = admin.get("/admin/templates/up-t")
    assert page.status_code == 200 and 'id="L5"' in page.text


def test_template_upload_bad_input(srv):
    admin = srv.signed_in(srv.root.name)
    r = admin.post("/api/v1/templates", content=b"\x89PNG\r\n\x1a\n\x00\x00", headers={"Content-Type": "image/png"})
    assert r.status_code == 422 and _err(r) == "not_text"
    r = admin.post("/api/v1/templates", content="id: [unclosed", headers={"Content-Type": "application/yaml"})
    assert r.status_code == 422 and "invalid YAML" in r.json()["error"]["message"]
    big = "id: big\n# " + "x" * (srv.settings.max_upload + 10) + "\n"
    r = admin.post("/api/v1/templates", content=big, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 413 and _err(r) == "too_large"
    assert admin.get("/api/v1/templates").json() == []
    user = srv.signed_in("alice")
    r = user.post("/api/v1/templates", content="id: x\nblocks: []\n", headers={"Content-Type": "application/yaml"})
    assert r.status_code == 403
    assert user.get("/admin/templates").status_code == 403
    assert user.post("/api/v1/templates/x/build").status_code == 403


def test_admin_and_group_routes(srv):
    admin = srv.signed_in(srv.root.name)
    assert admin.post("/api/v1/groups/ds/members", json={"user": "alice"}).json() == {"added": True}
    assert {"group": "ds", "user": "alice"} in admin.get("/api/v1/groups").json()
    assert admin.post("/api/v1/admins", json={"user": "bob"}).json() == {"added": True}
    assert "bob" in admin.get("/api/v1/admins").json()
    assert admin.delete("/api/v1/admins/bob").json() == {"removed": True}
    assert admin.delete("/api/v1/groups/ds/members/alice").json() == {"removed": True}
    alice = srv.signed_in("alice")
    assert alice.get("/api/v1/admins").status_code == 403
    assert alice.post("/api/v1/admins", json={"user": "alice"}).status_code == 403
    assert "alice" not in admin.get("/api/v1/admins").json()
    for page in ("/admin/templates", "/admin/users", "/tokens", "/"):
        assert admin.get(page).status_code == 200, page


# --------------------------------------------------------------------------- concurrency


def test_twenty_clients_at_once_no_lost_update_no_500(with_template):
    srv = with_template
    clients = [srv.token(u) for u in ("alice", "bob") for _ in range(10)]
    failures: list = []
    created: list = []
    barrier = threading.Barrier(len(clients))

    def work(i: int, c: TestClient) -> None:
        barrier.wait()
        for n in range(3):
            r = c.post("/api/v1/studios", json={"project": "LOAD", "name": f"s-{i}-{n}", "template": "srv-t"})
            if r.status_code != 201:
                failures.append((r.status_code, r.text))
            else:
                created.append(r.json()["id"])
            for path in ("/api/v1/studios", "/api/v1/me", "/api/v1/templates"):
                r = c.get(path)
                if r.status_code != 200:
                    failures.append((r.status_code, r.text))
            r = c.post("/api/v1/tokens", json={"name": f"t{i}{n}"})
            if r.status_code != 201:
                failures.append((r.status_code, r.text))

    threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(created) == len(set(created)) == 60
    alice = {s["id"] for s in clients[0].get("/api/v1/studios").json()}
    bob = {s["id"] for s in clients[-1].get("/api/v1/studios").json()}
    assert len(alice) == len(bob) == 30 and not alice & bob
    assert len(clients[0].get("/api/v1/tokens").json()) == 40  # one per client, plus 30 made concurrently


def test_same_operation_twice_gives_the_running_job(srv):
    import time

    from codestudio.server.jobs import Jobs

    jobs = Jobs(srv.home / "jobs", workers=2)
    release = threading.Event()
    first, created = jobs.submit("studio.start", "s1", "alice", lambda job: release.wait(5) and {"ok": True})
    second, created2 = jobs.submit("studio.start", "s1", "alice", lambda job: {"doubled": True})
    assert created and not created2 and second.id == first.id
    release.set()
    assert jobs.wait_done(first, 5) and first.result == {"ok": True}
    time.sleep(0.05)
    third, created3 = jobs.submit("studio.start", "s1", "alice", lambda job: {"again": True})
    assert created3 and third.id != first.id
    jobs.shutdown()


def test_demo_starts_the_server_in_the_background_and_prints_a_working_link(codestudio_home, monkeypatch):
    import os
    import signal
    import socket
    import urllib.request

    from codestudio import demo
    from codestudio.server.process import running_pid

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("CODESTUDIO_SERVER_PORT", str(port))
    link, pid = demo.web_ui()
    try:
        assert link.startswith(f"http://localhost:{port}/signin?key=")
        assert running_pid(codestudio_home) == pid
        assert demo.web_ui()[1] == pid  # a second demo run reuses it
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(link, timeout=10) as resp:
            assert b'id="signin"' in resp.read()
    finally:
        os.kill(pid, signal.SIGTERM)


def test_remaining_routes(with_template):
    srv = with_template
    a = srv.signed_in("alice")
    sid = a.post("/api/v1/studios", json={"project": "P1", "name": "misc", "template": "srv-t"}).json()["id"]
    r = a.get(f"/api/v1/studios/{sid}/open")
    assert r.status_code == 400 and "start it first" in r.json()["error"]["message"]
    r = a.get(f"/api/v1/studios/{sid}/logs")
    assert r.status_code == 200 and r.text == ""  # never started: nothing saved yet
    r = a.get(f"/api/v1/studios/{sid}/logs/events")
    assert r.status_code == 400 and _err(r) == "not_running"
    r = a.post(f"/api/v1/studios/{sid}/actions/nope")
    assert r.status_code == 404
    job = a.post(f"/api/v1/studios/{sid}/actions/hello").json()
    done = _wait_job(a, job["id"])
    assert done["state"] == "failed" and "STOPPED" in done["error"]["message"]
    assert job["id"] in [j["id"] for j in a.get("/api/v1/jobs").json()]
    assert srv.signed_in("bob").get("/api/v1/jobs").json() == []
    assert [s["via"] for s in a.get("/api/v1/users/alice/sessions").json()] == ["link"]
    assert a.post("/api/v1/signout").json() == {"signed_out": True}
    assert a.get("/api/v1/me").status_code == 401
    admin = srv.token(srv.root.name)
    assert admin.get("/api/v1/templates/srv-t/builds").json() == []
    assert admin.get("/api/v1/templates/srv-t/builds/1/log").status_code == 404
    r = admin.delete("/api/v1/templates/srv-t")
    assert r.status_code == 400 and "used by studio" in r.json()["error"]["message"]
    assert admin.delete(f"/api/v1/studios/{sid}").status_code == 200
    assert admin.delete("/api/v1/templates/srv-t").json() == {"removed": "srv-t"}
    assert admin.get("/api/v1/templates/srv-t").status_code == 404
    page = srv.signed_in("alice").get("/studios/nope")
    assert page.status_code == 404 and "no studio" in page.text  # pages get a page, not JSON


def test_projects_routes_and_the_create_form_offers_member_projects_only(with_template):
    srv = with_template
    c = srv.signed_in("carol")  # not in group team: no role in P1
    r = c.post("/api/v1/studios", json={"project": "P1", "name": "x", "template": "srv-t"})
    assert r.status_code == 403
    assert c.get("/api/v1/projects").json() == []
    assert c.post("/api/v1/projects", json={"key": "CAROL"}).status_code == 201
    assert [p["key"] for p in c.get("/api/v1/projects").json()] == ["CAROL"]
    assert c.post("/api/v1/projects", json={"key": "bad key"}).status_code == 400
    assert c.get("/api/v1/projects/P1").status_code == 403
    r = c.post("/api/v1/projects/CAROL/members", json={"users": ["dave"]})
    assert r.status_code == 200 and any(m.get("name") == "dave" or "dave" in str(m) for m in r.json()["members"])
    page = srv.signed_in("alice").get("/").text
    options = re.findall(r'<option value="([^"]*)">', page.split('id="project-select"')[1].split("</select>")[0])
    assert options == ["LOAD", "P1", ""]


def test_pages_carry_a_strict_csp_and_no_framing(srv):
    a = srv.signed_in("alice")
    r = a.get("/")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert r.headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in r.text and " on" + "click=" not in r.text  # no inline script: the CSP allows none
    assert a.get("/api/v1/docs").status_code == 404  # no CDN-loaded Swagger page on the UI origin


def test_studio_links_use_one_host_per_studio_when_configured(codestudio_home, write_template):
    from codestudio.projects import create_project, grant
    from codestudio.runtime import studios as rt
    from codestudio.templates_store import add_template

    s = Srv(codestudio_home, studio_host_pattern="{studio}.studios.localhost:8800")
    add_template(s.root, write_template(TEMPLATE))
    create_project(s.root, "P1", store=s.store)
    grant(s.root, "P1", users=["alice"], store=s.store)
    access.add_member(s.root, "team", "alice", store=s.store)
    a = s.signed_in("alice")
    sid = a.post("/api/v1/studios", json={"project": "P1", "name": "hosted", "template": "srv-t"}).json()["id"]
    assert s.settings.studio_base(sid) == f"http://{sid}.studios.localhost:8800"
    got = a.get(f"/api/v1/studios/{sid}").json()
    assert got["landing"].startswith(f"http://{sid}.studios.localhost:8800/code-studios/P1/{sid}/")
    assert rt.get_studio(sid).id == sid


def test_a_proxy_request_without_the_groups_header_keeps_the_groups_an_empty_one_clears_them(codestudio_home):
    s = Srv(codestudio_home, auth="proxy", trusted_proxies=("10.9.0.0/16",))
    proxy = TestClient(s.app, base_url=UI, client=("10.9.1.2", 5000))
    assert proxy.get("/api/v1/me", headers={"X-Forwarded-User": "alice", "X-Forwarded-Groups": "team"}).status_code == 200
    # No header: no information, not "in no group" (which would revoke alice's group access).
    r = proxy.get("/api/v1/me", headers={"X-Forwarded-User": "alice"})
    assert r.status_code == 200 and "team" in r.json()["groups"]
    assert "team" in access.groups_of("alice", store=s.store)
    # A header that is present and empty: in no group.
    proxy.get("/api/v1/me", headers={"X-Forwarded-User": "alice", "X-Forwarded-Groups": ""})
    assert "team" not in access.groups_of("alice", store=s.store)
