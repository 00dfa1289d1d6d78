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
