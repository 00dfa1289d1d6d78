"""Access ends at once when someone leaves an audience (codestudio.revocation, docs/security.md).

The fake runtime (tests/conftest.py) runs the studios and webapps; the gateway is a
recorder. What the renewed values do at a real nginx (old cookies and links refused,
new links for those still admitted) is tested in tests/e2e/test_access_revocation.py.
"""

from __future__ import annotations

import pytest

from codestudio import access
from codestudio.errors import PermissionDenied

TEMPLATE = """\
id: wa-revoke
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
    """alice: the first admin; project PROJ with olga (user) and the group team (tess, tom) as members."""
    from codestudio.projects import create_project, grant
    from codestudio.templates_store import add_template

    monkeypatch.setattr(access, "os_user", lambda: "alice")
    monkeypatch.setattr(access, "os_groups", lambda user: set())
    alice = access.identify()
    (tmp_path / "t.yaml").write_text(TEMPLATE)
    add_template(alice, tmp_path / "t.yaml")
    create_project(alice, "PROJ")
    grant(alice, "PROJ", users=["olga"], groups=["team"])
    for name in ("tess", "tom"):
        access.add_member(alice, "team", name)
    return alice


def user(name: str) -> access.Identity:
    return access.Identity(name, False, name)


def publish(name: str, share: str, owner: str = "olga"):
    from codestudio.webapps import publish

    return publish(user(owner), "PROJ", name, "wa-revoke", share=share, quiet=True)


def secret(name: str) -> str:
    from codestudio.store import Store
    from codestudio.webapps import records

    return records.get_webapp(f"PROJ/{name}", store=Store.default()).session_secret


def secrets() -> dict[str, str]:
    from codestudio.store import Store
    from codestudio.webapps import records

    return {w.id: w.session_secret for w in records.all_webapps(Store.default())}


def link(who, name: str) -> str:
    from codestudio.webapps import urls

    return urls(who, f"PROJ/{name}")["url"]


def running_studio(owner: str, name: str = "work"):
    from codestudio.runtime import studios

    s = studios.create_studio(user(owner), "PROJ", name, "wa-revoke")
    return studios.start_studio(user(owner), s.id, quiet=True)


def studio_routes(studio_id: str):
    from codestudio.runtime.routes import running_studio_routes

    (routes,) = [r for r in running_studio_routes() if r.studio_id == studio_id]
    return routes


def test_removing_a_member_renews_only_the_webapps_they_could_view_through_that_group(alice, fake_runtime):
    publish("team-app", "group:team")
    publish("other-app", "group:others")
    publish("own-app", "owner")
    publish("users-app", "users")
    publish("open-app", "public")
    before = secrets()
    old_link = link(user("tom"), "team-app")
    applies = fake_runtime.gateway.applies

    assert access.remove_member(alice, "team", "tess")

    after = secrets()
    # tess could view team-app only through team: renewed; tess still views users-app, others never.
    assert after["team-app"] != before["team-app"]
    assert {k: v for k, v in after.items() if k != "team-app"} == {k: v for k, v in before.items() if k != "team-app"}
    assert fake_runtime.gateway.applies > applies  # the gateway serves the new values now
    with pytest.raises(PermissionDenied, match="may not view it"):
        link(user("tess"), "team-app")
    # tom, still a member, gets a new link; the one signed before is not it (another link key).
    assert link(user("tom"), "team-app") != old_link
    assert link(user("tess"), "users-app")


def test_removing_a_member_who_keeps_the_group_another_way_renews_nothing(alice, fake_runtime):
    from codestudio import signin
    from codestudio.store import Store

    publish("team-app", "group:team")
    signin.set_sso_groups("tess", {"team"}, store=Store.default())
    before = secrets()
    assert access.remove_member(alice, "team", "tess")
    assert secrets() == before
    assert link(user("tess"), "team-app")
    # Removing what was not there renews nothing either.
    assert not access.remove_member(alice, "team", "nobody")
    assert secrets() == before


def test_a_group_the_sign_in_proxy_stops_sending_renews_what_it_opened(alice, fake_runtime):
    from codestudio import signin
    from codestudio.store import Store

    publish("sso-app", "group:sso-team")
    publish("team-app", "group:team")
    signin.set_sso_groups("sam", {"sso-team"}, store=Store.default())
    before = secrets()
    signin.set_sso_groups("sam", {"sso-team", "more"}, store=Store.default())  # more groups: nothing lost
    assert secrets() == before
    signin.set_sso_groups("sam", {"more"}, store=Store.default())
    after = secrets()
    assert after["sso-app"] != before["sso-app"] and after["team-app"] == before["team-app"]
    with pytest.raises(PermissionDenied):
        link(user("sam"), "sso-app")


def test_disabling_a_user_renews_their_studios_and_every_webapp_they_could_view(alice, fake_runtime):
    from codestudio import signin
    from codestudio.runtime.studios import access_url
    from codestudio.store import Store

    publish("users-app", "users")
    publish("tess-app", "owner", owner="tess")
    publish("olga-app", "owner")
    studio = running_studio("tess")
    before, routes = secrets(), studio_routes(studio.id)
    assert access_url(user("tess"), studio.id)

    signin.disable_user(alice, "tess", store=Store.default())

    after, renewed = secrets(), studio_routes(studio.id)
    assert after["users-app"] != before["users-app"] and after["tess-app"] != before["tess-app"]
    assert after["olga-app"] == before["olga-app"]
    # The studio: a new cookie value and link key, the same guard secret (the pod is untouched).
    assert renewed.access_epoch == routes.access_epoch + 1
    assert renewed.cookie_value != routes.cookie_value and renewed.link_key != routes.link_key
    assert renewed.guard_secret == routes.guard_secret
    with pytest.raises(PermissionDenied, match="disabled"):
        access_url(user("tess"), studio.id)
    for name in ("users-app", "tess-app"):  # their own webapp too: a disabled owner gets no link
        with pytest.raises(PermissionDenied):
            link(user("tess"), name)
    signin.enable_user(alice, "tess", store=Store.default())
    assert access_url(user("tess"), studio.id) and link(user("tess"), "tess-app")


def test_removing_an_admin_renews_the_webapps_only_an_admin_could_view(alice, fake_runtime):
    publish("olga-app", "owner")
    publish("users-app", "users")
    access.add_admin(alice, "adam")
    adam = access.Identity("adam", True, "adam")
    assert link(adam, "olga-app")
    before = secrets()
    assert access.remove_admin(alice, "adam")
    after = secrets()
    assert after["olga-app"] != before["olga-app"]
    # adam still views users-app, but lost its per-replica (backend) cookie and links: renewed too.
    assert after["users-app"] != before["users-app"]
    with pytest.raises(PermissionDenied):
        link(user("adam"), "olga-app")
    with pytest.raises(PermissionDenied, match="may not open a replica of"):
        _replica_link(user("adam"), "users-app")
    assert link(user("adam"), "users-app")


def _replica_link(who, name: str) -> str:
    from codestudio.store import Store
    from codestudio.webapps import records
    from codestudio.webapps.sharing import access_url

    (replica, *_) = records.replicas_of(Store.default(), records.get_webapp(f"PROJ/{name}", store=Store.default()))
    return access_url(who, f"PROJ/{name}", pod=replica.pod)


def test_a_disabled_owner_or_admin_loses_the_replica_links_of_a_public_webapp(alice, fake_runtime):
    from codestudio import signin
    from codestudio.store import Store

    publish("open-app", "public")
    publish("tess-open", "public", owner="tess")
    access.add_admin(alice, "adam")
    assert _replica_link(user("olga"), "open-app")
    before = secrets()
    signin.disable_user(alice, "olga", store=Store.default())  # the owner
    assert secrets()["open-app"] != before["open-app"] and secrets()["tess-open"] == before["tess-open"]
    with pytest.raises(PermissionDenied):
        _replica_link(user("olga"), "open-app")
    before = secrets()
    signin.disable_user(alice, "adam", store=Store.default())  # an admin: every webapp's replica links
    assert secrets()["tess-open"] != before["tess-open"]
    assert link(user("adam"), "tess-open")  # public: the plain URL, for anybody


def test_revoking_a_project_member_renews_their_studio_and_refuses_them_a_new_link(alice, fake_runtime):
    from codestudio.projects import revoke
    from codestudio.runtime.studios import access_url

    olga_studio, tess_studio = running_studio("olga", "o"), running_studio("tess", "t")
    old_link = access_url(user("olga"), olga_studio.id)
    olga_routes, tess_routes = studio_routes(olga_studio.id), studio_routes(tess_studio.id)

    revoke(alice, "PROJ", users=["olga"])

    renewed = studio_routes(olga_studio.id)
    assert renewed.cookie_value != olga_routes.cookie_value and renewed.guard_secret == olga_routes.guard_secret
    assert studio_routes(tess_studio.id).cookie_value == tess_routes.cookie_value  # still a member: untouched
    with pytest.raises(PermissionDenied, match="not a member of project PROJ"):
        access_url(user("olga"), olga_studio.id)
    assert access_url(user("tess"), tess_studio.id)
    # Granted again: a new link (never the old one: its key was renewed).
    from codestudio.projects import grant

    grant(alice, "PROJ", users=["olga"])
    assert access_url(user("olga"), olga_studio.id).split("?")[0] == old_link.split("?")[0]
    assert access_url(user("olga"), olga_studio.id) != old_link


def test_a_member_through_a_group_loses_the_studio_when_the_group_is_revoked_or_they_leave_it(alice, fake_runtime):
    from codestudio.projects import revoke

    tess_studio, tom_studio, olga_studio = running_studio("tess", "t"), running_studio("tom", "m"), running_studio("olga", "o")
    epochs = {s.id: studio_routes(s.id).access_epoch for s in (tess_studio, tom_studio, olga_studio)}
    access.remove_member(alice, "team", "tess")
    assert studio_routes(tess_studio.id).access_epoch == epochs[tess_studio.id] + 1
    assert studio_routes(tom_studio.id).access_epoch == epochs[tom_studio.id]
    revoke(alice, "PROJ", groups=["team"])
    assert studio_routes(tom_studio.id).access_epoch == epochs[tom_studio.id] + 1
    assert studio_routes(tess_studio.id).access_epoch == epochs[tess_studio.id] + 1  # nothing more to lose
    assert studio_routes(olga_studio.id).access_epoch == epochs[olga_studio.id]


def test_the_web_api_and_the_cli_revoke_too(alice, fake_runtime, codestudio_home):
    from click.testing import CliRunner
    from fastapi.testclient import TestClient

    from codestudio import signin
    from codestudio.cli import make_cli
    from codestudio.server.app import create_app
    from codestudio.server.settings import ServerSettings
    from codestudio.store import Store

    publish("team-app", "group:team")
    app = create_app(ServerSettings(content_url="http://127.0.0.1:8800"), data_dir=codestudio_home, poll_interval=0.05)
    _row, token = signin.create_token(alice, "test", store=Store.default())
    c = TestClient(app, base_url="http://localhost:8801", raise_server_exceptions=False)
    c.headers["Authorization"] = f"Bearer {token}"
    before = secret("team-app")
    r = c.delete("/api/v1/groups/team/members/tess")
    assert r.status_code == 200 and r.json() == {"removed": True}
    assert secret("team-app") != before

    before = secret("team-app")
    result = CliRunner().invoke(make_cli(), ["admin", "group", "remove", "team", "tom"], obj={})
    assert result.exit_code == 0, result.output
    assert secret("team-app") != before
    assert "access renewed for webapp PROJ/team-app: tom may no longer open it" in result.output


# --------------------------------------------------------------------------
# A link signed while a revocation commits dies with it: the routes are read first, the
# access check runs after, and the link is signed with what was read.


def _token_ok(url: str, expected) -> bool:
    """Whether ``url``'s token is the one ``expected(expires)`` computes (the gateway's check)."""
    from urllib.parse import parse_qs, urlsplit

    from codestudio.gateway.common import EXPIRES_ARG, TOKEN_ARG

    q = parse_qs(urlsplit(url).query)
    return q[TOKEN_ARG][0] == expected(int(q[EXPIRES_ARG][0]))


def _revoke_right_after(monkeypatch, target, name, revoke):
    """``target.name`` (an access check) passes, then ``revoke()`` commits (once): the race."""
    original = getattr(target, name)
    done = []

    def check(*args, **kwargs):
        result = original(*args, **kwargs)
        if not done:
            done.append(True)
            revoke()
        return result

    monkeypatch.setattr(target, name, check)


def test_a_studio_link_signed_while_its_owner_is_revoked_does_not_survive(alice, fake_runtime, monkeypatch):
    from codestudio.gateway.studios import access_token
    from codestudio.projects import revoke
    from codestudio.runtime.studios import access_url

    studio = running_studio("olga")
    _revoke_right_after(monkeypatch, access, "require_project_use", lambda: revoke(alice, "PROJ", users=["olga"]))
    url = access_url(user("olga"), studio.id)
    current = studio_routes(studio.id)
    assert current.access_epoch == 1  # the revocation renewed the studio
    assert not _token_ok(url, lambda expires: access_token(current, expires))


def test_a_webapp_link_signed_while_the_viewer_is_removed_does_not_survive(alice, fake_runtime, monkeypatch):
    from codestudio.gateway.webapps import webapp_access_token
    from codestudio.store import Store
    from codestudio.webapps import records, sharing

    publish("team-app", "group:team")
    before = secret("team-app")
    _revoke_right_after(monkeypatch, sharing, "may_view_webapp", lambda: access.remove_member(alice, "team", "tess"))
    url = sharing.access_url(user("tess"), "PROJ/team-app")
    assert secret("team-app") != before
    routes = sharing._routes(records.get_webapp("PROJ/team-app", store=Store.default()), Store.default())
    assert not _token_ok(url, lambda expires: webapp_access_token(routes, expires))


def test_an_admin_removed_during_a_url_request_gets_no_replica_links(alice, fake_runtime, monkeypatch):
    from codestudio.webapps import views

    publish("olga-app", "owner")
    access.add_admin(alice, "adam")
    adam = access.Identity("adam", True, "adam")  # the request's identity, read at its start
    original = views.reconcile

    def reconcile_through_a_revocation(w, **kwargs):
        access.remove_admin(alice, "adam")
        return original(w, **kwargs)

    monkeypatch.setattr(views, "reconcile", reconcile_through_a_revocation)
    with pytest.raises(PermissionDenied):
        views.urls(adam, "PROJ/olga-app")


def test_a_studio_started_during_a_revocation_hands_out_no_link_afterwards(alice, fake_runtime):
    """A stopped studio is not among what its owner could open before a revocation (nothing to
    renew), so its start must not hand out a link by itself: links come from access_url only."""
    from codestudio.projects import revoke
    from codestudio.runtime import studios

    s = studios.create_studio(user("olga"), "PROJ", "later", "wa-revoke")
    started = studios.start_studio(user("olga"), s.id, quiet=True)
    assert "?" not in repr(started)  # no signed link in what start returns
    revoke(alice, "PROJ", users=["olga"])
    with pytest.raises(PermissionDenied):
        studios.access_url(user("olga"), s.id)


def test_a_renewal_the_gateway_did_not_take_is_an_error_naming_the_fix(alice, fake_runtime, monkeypatch, codestudio_home):
    from click.testing import CliRunner

    from codestudio.cli import make_cli
    from codestudio.errors import RuntimeFailure

    publish("team-app", "group:team")
    assert fake_runtime.gateway.pid() is not None

    def broken(*args, **kwargs):
        raise RuntimeFailure("nginx did not take the new gateway config")

    monkeypatch.setattr(fake_runtime.gateway, "apply", broken)
    before = secret("team-app")
    with pytest.raises(RuntimeFailure, match="(?s)STILL WORK.*codestudio gateway start") as caught:
        access.remove_member(alice, "team", "tess")
    assert "stopped working" not in str(caught.value)
    assert secret("team-app") != before  # the DB holds the renewal: the next apply serves it
    result = CliRunner().invoke(make_cli(), ["admin", "group", "remove", "team", "tom"], obj={})
    assert result.exit_code == 1 and "codestudio gateway start" in str(result.exception)
    assert "stopped working" not in result.output + str(result.exception)


def test_a_renewal_ends_the_old_gateway_workers(alice, fake_runtime, monkeypatch):
    """Open websockets live in nginx's old workers after a reload: a renewal ends them at once."""
    publish("team-app", "group:team")
    ended = []
    monkeypatch.setattr(fake_runtime.gateway, "end_old_workers", lambda: ended.append(True) or 1, raising=False)
    access.remove_member(alice, "team", "tess")
    assert ended == [True]
