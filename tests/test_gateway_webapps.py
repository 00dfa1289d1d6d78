"""Webapp routes for the gateway: validation of the data the webapp service fills."""

from __future__ import annotations

import pytest

from codestudio.errors import UsageError
from codestudio.gateway.config import new_session_secret
from codestudio.gateway.webapps import ReplicaPort, ReplicaRoutes, WebappRoutes, parse_share

GUARD = "g" * 40


def replica(pod="w-0", ready=True, port=8501, upstream=40001, mode="/"):
    return ReplicaRoutes(pod_name=pod, ready=ready, guard_secret=GUARD,
                         ports=(ReplicaPort(port=port, upstream_port=upstream, proxied_subpath=mode),))


def webapp(**kw):
    values = dict(project_key="PROJ", webapp_id="app", owner="alice", share="owner",
                  session_secret=new_session_secret(), main_port=8501, replicas=(replica(),))
    values.update(kw)
    return WebappRoutes(**values)


@pytest.mark.parametrize("share", ["owner", "users", "public", "group:data-science", "group:a.b@c"])
def test_valid_shares(share):
    assert parse_share(share) == share
    assert webapp(share=share).share == share


@pytest.mark.parametrize("share", ["", "everyone", "group:", "group:..", "group:a b", 'group:a"b', "group:a;b", None, 3])
def test_bad_shares_are_refused(share):
    with pytest.raises(UsageError, match="share"):
        parse_share(share)


@pytest.mark.parametrize("field,value", [
    ("project_key", "P/Q"), ("project_key", "-p"), ("webapp_id", "App"), ("webapp_id", "a_b"),
    ("webapp_id", 'a"; }'), ("session_secret", "short"), ("session_secret", "x" * 40 + " "),
    ("main_port", 0), ("main_port", "8501"), ("share", "group:$x"),
])
def test_bad_webapp_fields_are_refused(field, value):
    with pytest.raises(UsageError):
        webapp(**{field: value})


@pytest.mark.parametrize("kw", [
    {"pod": "W-0"}, {"pod": "w_0"}, {"pod": "w.0"}, {"pod": "-w"}, {"pod": "w" * 64}, {"pod": "a b"},
    {"ready": 1}, {"upstream": 70000}, {"mode": "/x"},
])
def test_bad_replica_fields_are_refused(kw):
    with pytest.raises(UsageError):
        replica(**kw)


def test_bad_guard_and_upstream_host_are_refused():
    with pytest.raises(UsageError, match="guard"):
        ReplicaRoutes(pod_name="w-0", ready=True, ports=(), guard_secret="x; y" * 10)
    with pytest.raises(UsageError, match="IP address"):
        ReplicaPort(port=1, upstream_port=2, proxied_subpath="/", upstream_host="example.com")


def test_duplicates_are_refused():
    with pytest.raises(UsageError, match="listed twice"):
        webapp(replicas=(replica(), replica()))
    with pytest.raises(UsageError, match="listed twice"):
        ReplicaRoutes(pod_name="w-0", ready=True, guard_secret=GUARD,
                      ports=(ReplicaPort(1, 2, "/"), ReplicaPort(1, 3, "/")))


def test_prefixes_ready_replicas_and_derived_values():
    w = webapp(replicas=(replica("w-0"), replica("w-1", ready=False), replica("w-2", port=9000)))
    assert w.prefix == "/webapps/PROJ/app/"
    assert w.backend_prefix("w-0") == "/web-apps-backends/PROJ/app_w-0"
    # Not ready, or not serving the main port: no browser is sent there.
    assert [r.pod_name for r in w.ready_replicas] == ["w-0"]
    assert len(w.cookie_value) == 64 and w.cookie_value != w.link_key
    other = webapp(webapp_id="app2", session_secret=w.session_secret)
    assert other.cookie_value != w.cookie_value


# --- rendering ---------------------------------------------------------------------------

from codestudio.gateway.config import GatewaySettings, render_gateway_config  # noqa: E402
from codestudio.gateway.webapps import _percentages, make_webapp_access_url  # noqa: E402


def test_shares_of_new_browsers_add_up():
    for n in range(1, 11):
        shares = _percentages(n)
        assert len(shares) == n and shares[-1] == "*"
        assert sum(float(s.rstrip("%")) for s in shares[:-1]) < 100


def rendered(*webapps, settings=None) -> str:
    return render_gateway_config([], settings or GatewaySettings(), webapps=list(webapps))


def test_rows_carry_only_ready_replicas_to_the_stable_url():
    w = webapp(replicas=(replica("w-0", upstream=40001), replica("w-1", ready=False, upstream=40002),
                         replica("w-2", upstream=40003, mode="$request_uri")))
    text = rendered(w)
    # Every replica at its backend prefix, each with its own guard.
    for pod in ("w-0", "w-1", "w-2"):
        assert f'"/web-apps-backends/PROJ/app_{pod}/8501/"' in text
    # Only ready ones in the stable URL's rows and its split; the ring skips the others.
    assert '"/webapps/PROJ/app/|w-0" "w-0 s ' in text and text.count('"/webapps/PROJ/app/|w-0"') == 2
    assert '"/webapps/PROJ/app/|w-1"' not in text
    assert f"{GUARD} /web-apps-backends/PROJ/app_w-2/8501/ w-0" in text  # $request_uri: its own prefix
    assert "50.00% " in text and text.count("split_clients") == 1
    assert w.cookie_value in text and w.link_key in text and w.session_secret not in text
    # The owner's backend pair is its own: no viewer value opens a replica's prefix.
    assert w.backend_cookie_value in text and w.backend_link_key in text
    assert len({w.cookie_value, w.link_key, w.backend_cookie_value, w.backend_link_key}) == 4


def test_public_and_secretless_webapps_carry_no_cookie_value():
    public = webapp(share="public")
    # Only the backend pair (the owner's access to replicas' own prefixes).
    assert f'"/webapps/PROJ/app/ o - - {public.backend_cookie_value} {public.backend_link_key}"' in rendered(public)
    preview = webapp(session_secret=None)
    assert '"/webapps/PROJ/app/ p - - - -"' in rendered(preview)
    with pytest.raises(UsageError, match="no session secret"):
        make_webapp_access_url(preview, "http://gw")


def test_no_ready_replica_means_no_split():
    text = rendered(webapp(replicas=(replica(ready=False),)))
    assert "split_clients" not in text and '"/webapps/PROJ/app/|' not in text


def test_projects_differing_in_case_get_exact_keys():
    a, b = webapp(project_key="PROJ"), webapp(project_key="proj")
    text = rendered(a, b)
    assert '"~^/webapps/PROJ/app/\\z"' in text and '"~^/webapps/proj/app/\\z"' in text
    assert '"~^/webapps/PROJ/app/\\|w-0\\z"' in text


def test_two_webapps_on_one_prefix_are_refused():
    with pytest.raises(UsageError, match="share the URL prefix"):
        rendered(webapp(), webapp())


def test_access_links():
    w = webapp(replicas=(replica("w-0"), replica("w-1", port=9000)))
    url = make_webapp_access_url(w, "http://gw:8800/", now=1000)
    assert url.startswith("http://gw:8800/webapps/PROJ/app/?cs_expires=1600&cs_token=")
    assert make_webapp_access_url(w, "http://gw", pod="w-0", now=0).startswith(
        "http://gw/web-apps-backends/PROJ/app_w-0/8501/?cs_expires=600&")
    # A replica's link is signed with the backend key (a viewer's token does not fit it),
    # and is signed even for a public webapp.
    from codestudio.gateway.webapps import webapp_access_token

    replica_url = make_webapp_access_url(w, "http://gw", pod="w-0", now=0)
    assert replica_url.endswith(webapp_access_token(w, 600, backend=True))
    assert webapp_access_token(w, 600) != webapp_access_token(w, 600, backend=True)
    public = webapp(share="public", replicas=(replica("w-0"),))
    assert "cs_token=" in make_webapp_access_url(public, "http://gw", pod="w-0")
    with pytest.raises(UsageError, match="no replica"):
        make_webapp_access_url(w, "http://gw", pod="w-9")
    with pytest.raises(UsageError, match="serves no port"):
        make_webapp_access_url(w, "http://gw", pod="w-1")


@pytest.mark.e2e
def test_rendered_webapp_config_passes_nginx_t(tmp_path):
    from codestudio.gateway.process import Gateway

    many = [webapp(webapp_id=f"app-{i}", share=share, replicas=tuple(
        replica(f"w-{j}", ready=j != 1, upstream=41000 + 10 * i + j, mode=("/", "$request_uri")[j % 2]) for j in range(n)))
        for i, (share, n) in enumerate([("owner", 3), ("public", 1), ("group:g", 0), ("users", 10)])]
    gw = Gateway(tmp_path, settings=GatewaySettings(port=1))
    gw.check(gw.render([], many))


@pytest.mark.parametrize("host", ["Webapps.localhost", "127.0.0.1:80", "a b", "a_b.localhost", "-a.localhost", "a..b", "x/y"])
def test_bad_webapp_hosts_are_refused(host):
    with pytest.raises(UsageError, match="webapp_host"):
        GatewaySettings(webapp_host=host)


def test_the_webapp_host_must_differ_from_the_content_host():
    with pytest.raises(UsageError, match="content host"):
        GatewaySettings(public_url="http://apps.example.com:8800", webapp_host="apps.example.com")


def test_webapp_host_from_env(monkeypatch):
    monkeypatch.setenv("CODESTUDIO_GATEWAY_WEBAPP_HOST", "webapps.localhost")
    s = GatewaySettings.from_env(GatewaySettings(port=9000))
    assert s.webapp_host == "webapps.localhost" and s.webapp_base_url == "http://webapps.localhost:9000"
    assert GatewaySettings(port=9000).webapp_base_url == "http://127.0.0.1:9000"


def test_a_webapp_host_gets_its_own_server_block_and_the_content_server_none():
    text = rendered(webapp(), settings=GatewaySettings(port=9000, webapp_host="webapps.localhost"))
    content, webapps_block = text.split("server_name webapps.localhost;")
    assert "location ^~ /webapps/" not in content and "location ^~ /webapps/" in webapps_block
    assert 'return 301 "http://webapps.localhost:9000$request_uri";' in content
    assert "/code-studios/" not in webapps_block.split("location ^~ /webapps/")[0]
