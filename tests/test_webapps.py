"""Webapps without containers: bad input, publish, replicas, probes, dead replicas, scale, update, stop/delete.

The :class:`FakeRuntime` (tests/conftest.py) runs no pod: each replica's
endpoint is a loopback HTTP server answering 200, so the engine's own probe
really runs; the gateway is a recorder.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from codestudio import access
from codestudio.errors import NotFound, PermissionDenied, RuntimeFailure, UsageError

STUDIO_ONLY_TEMPLATE = """\
id: studio-only
permissions:
  all: true
blocks:
  - type: entrypoint
    label: Editor
    command: [sleep, infinity]
    port: 8080
  - type: entrypoint
    label: Worker
    command: [sleep, infinity]
"""


@pytest.fixture
def who(tmp_path, monkeypatch, webapp_template):
    from codestudio.projects import create_project, grant
    from codestudio.templates_store import add_template

    monkeypatch.setattr(access, "os_user", lambda: "alice")
    monkeypatch.setattr(access, "os_groups", lambda user: set())
    alice = access.identify()
    for name, text in (("wa.yaml", webapp_template("wa-unit")), ("so.yaml", STUDIO_ONLY_TEMPLATE)):
        (tmp_path / name).write_text(text)
        add_template(alice, tmp_path / name)
    for key in ("PROJ", "OTHER"):
        create_project(alice, key)
    grant(alice, "PROJ", users=["bob"])
    return alice


def _bob():
    return access.Identity("bob", False, "alice")


def _nothing_started(fake_runtime):
    from codestudio.store import Store

    assert fake_runtime.started == []
    with Store.default().connect() as conn:
        assert conn.execute("SELECT COUNT(*) FROM webapps").fetchone()[0] == 0


@pytest.mark.parametrize("replicas", [0, -1, 11])
def test_replicas_out_of_range_refused_and_nothing_started(who, fake_runtime, replicas):
    from codestudio.webapps import publish

    with pytest.raises(UsageError, match="--replicas must be between 1 and 10"):
        publish(who, "PROJ", "app", "wa-unit", replicas=replicas)
    _nothing_started(fake_runtime)


def test_max_replicas_is_a_data_dir_setting(who, fake_runtime):
    from codestudio.webapps import publish
    from codestudio.webapps.model import max_replicas, set_max_replicas

    set_max_replicas(3)
    assert max_replicas() == 3
    with pytest.raises(UsageError, match="between 1 and 3"):
        publish(who, "PROJ", "app", "wa-unit", replicas=4)
    _nothing_started(fake_runtime)


def test_template_without_webapp_entrypoint_names_its_entrypoints(who, fake_runtime):
    from codestudio.webapps import publish

    with pytest.raises(UsageError) as err:
        publish(who, "PROJ", "app", "studio-only")
    assert "launch_in_webapp" in str(err.value) and "'Editor' (port 8080)" in str(err.value) and "'Worker'" in str(err.value)
    _nothing_started(fake_runtime)


@pytest.mark.parametrize("name", ["App", "my app", "-x", "a" * 41, "a/b", "a_b", ""])
def test_name_not_a_slug_refused(who, fake_runtime, name):
    from codestudio.webapps import publish

    with pytest.raises(UsageError, match="invalid webapp name"):
        publish(who, "PROJ", name, "wa-unit")
    _nothing_started(fake_runtime)


@pytest.mark.parametrize("share", ["everyone", "group:", "group:a b", "users:x", ""])
def test_bad_share_refused(who, fake_runtime, share):
    from codestudio.webapps import publish

    with pytest.raises(UsageError, match="--share"):
        publish(who, "PROJ", "app", "wa-unit", share=share)
    _nothing_started(fake_runtime)


def test_from_studio_of_another_project_or_user_refused(who, fake_runtime):
    from codestudio.runtime.studios import create_studio
    from codestudio.webapps import publish

    other_project = create_studio(who, "OTHER", "s", "wa-unit")
    bobs = create_studio(_bob(), "PROJ", "bobs", "wa-unit")
    with pytest.raises(UsageError, match="in project OTHER, not PROJ"):
        publish(who, "PROJ", "app", "wa-unit", from_studio=other_project.id)
    with pytest.raises(PermissionDenied, match="belongs to bob"):
        publish(who, "PROJ", "app", "wa-unit", from_studio=bobs.id)
    with pytest.raises(NotFound):
        publish(who, "PROJ", "app", "wa-unit", from_studio="nope")
    _nothing_started(fake_runtime)


def test_non_member_refused(who, fake_runtime):
    from codestudio.webapps import publish

    with pytest.raises(PermissionDenied, match="not a member of project OTHER"):
        publish(_bob(), "OTHER", "app", "wa-unit")
    _nothing_started(fake_runtime)


def test_publish_runs_replicas_probes_each_at_its_prefix_and_refuses_a_second(who, fake_runtime):
    from codestudio.webapps import publish, status

    w = publish(who, "PROJ", "app", "wa-unit", replicas=2, quiet=True)
    assert w.state == "RUNNING" and w.replicas == 2 and w.generation == 1
    [spec] = fake_runtime.started
    assert spec.replicas == 2 and spec.labels["codestudio.io/kind"] == "webapp"
    container = spec.manifest[0]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DKU_CODE_STUDIO_BROWSER_PATH"] == "/web-apps-backends/PROJ/app_${K8S_POD_NAME}"
    assert env["DKU_CODE_STUDIO_BROWSER_PATH_8080"] == "/web-apps-backends/PROJ/app_${K8S_POD_NAME}/8080"
    assert env["CODESTUDIO_MODE"] == "webapp"
    # The Kubernetes probe of a webapp is TCP; the HTTP one is the engine's.
    assert "tcpSocket" in container["readinessProbe"]
    info = status(who, "PROJ/app")
    assert [r["state"] for r in info["replicas_detail"]] == ["ready", "ready"]
    pods = [r["pod"] for r in info["replicas_detail"]]
    assert [r["backend"] for r in info["replicas_detail"]] == [f"/web-apps-backends/PROJ/app_{p}/" for p in pods]
    # The snapshot went into each replica (tar on stdin) before its runner was released.
    for pod in pods:
        assert any(p == pod and a[:2] == ["sh", "-c"] for p, a in fake_runtime.commands)
        assert (pod, ["touch", "/tmp/.codestudio-sync-done"]) in fake_runtime.commands
    with pytest.raises(UsageError, match="already has a webapp named 'app'"):
        publish(who, "PROJ", "app", "wa-unit")
    assert len(fake_runtime.started) == 1


def test_probe_url_has_each_replicas_own_pod_name(who, fake_runtime):
    from codestudio.webapps import pods as P
    from codestudio.webapps import publish, records
    from codestudio.store import Store

    w = publish(who, "PROJ", "app", "wa-unit", replicas=2, quiet=True)
    gen = P.Generation.load(w, 1)
    for r in records.replicas_of(Store.default(), w):
        target = P.probe_target(gen, r)
        assert target.path == f"/web-apps-backends/PROJ/app_{r.pod}/8080/health"
        assert target.guard_secret == r.guard_secret and target.port == r.endpoints[8080][1]


def test_replica_never_ready_is_reported_and_not_routed(who, fake_runtime):
    from codestudio.webapps import publish, status

    fake_runtime.ready = False
    with pytest.raises(RuntimeFailure, match="no replica became ready"):
        publish(who, "PROJ", "app", "wa-unit", replicas=2, timeout=0.5, quiet=True)
    info = status(who, "PROJ/app")
    assert [r["state"] for r in info["replicas_detail"]] == ["not-ready", "not-ready"]
    assert all(not r["routed"] and "probe never passed within 0.5s" in r["reason"] for r in info["replicas_detail"])


def test_dead_replica_is_replaced_on_the_next_command(who, fake_runtime):
    import dataclasses

    from codestudio.webapps import publish, status

    w = publish(who, "PROJ", "app", "wa-unit", replicas=2, quiet=True)
    name = fake_runtime.started[0].name
    ps = fake_runtime.podsets[name]
    dead = ps.pods[1].name
    fake_runtime.podsets[name] = dataclasses.replace(ps, pods=(ps.pods[0], dataclasses.replace(
        ps.pods[1], phase="exited", message="the container exited with status 137")))
    info = status(who, w.key)
    pods = [r["pod"] for r in info["replicas_detail"]]
    assert dead not in pods and len(pods) == 2
    assert [r["state"] for r in info["replicas_detail"]] == ["ready", "ready"]
    assert fake_runtime.scaled == [(name, 2, (dead,))]


def test_scale_keeps_the_others_and_drains_before_removing(who, fake_runtime):
    from codestudio.store import Store
    from codestudio.webapps import publish, records, scale, status

    w = publish(who, "PROJ", "app", "wa-unit", replicas=1, quiet=True)
    first = records.replicas_of(Store.default(), w)[0].pod
    scale(who, w.key, 3, quiet=True)
    pods = [r["pod"] for r in status(who, w.key)["replicas_detail"]]
    assert len(pods) == 3 and first in pods
    scale(who, w.key, 1, quiet=True)
    assert [r["pod"] for r in status(who, w.key)["replicas_detail"]] == [first]
    with pytest.raises(UsageError):
        scale(who, w.key, 0)


def test_update_rolls_to_a_new_generation_one_replica_at_a_time(who, fake_runtime, tmp_path, webapp_template):
    from codestudio.store import Store
    from codestudio.templates_store import add_template
    from codestudio.webapps import publish, records, status, update

    w = publish(who, "PROJ", "app", "wa-unit", replicas=2, quiet=True)
    old = fake_runtime.started[0].name
    (tmp_path / "wa.yaml").write_text(webapp_template("wa-unit", version="v2"))
    add_template(who, tmp_path / "wa.yaml")
    seen: list[list[tuple[int, str]]] = []
    real_set = records.set_replica

    def watch(store, r, state, reason=None):
        out = real_set(store, r, state, reason)
        seen.append([(x.generation, x.state) for x in records.replicas_of(store, w)])
        return out

    records.set_replica = watch
    try:
        w = update(who, w.key, quiet=True)
    finally:
        records.set_replica = real_set
    assert w.generation == 2 and w.template_version == 2
    assert old in fake_runtime.stopped
    # Never fewer ready replicas than before the update started.
    assert all(sum(s == "ready" for _, s in snap) >= 2 for snap in seen if any(s == "draining" for _, s in snap))
    info = status(who, w.key)
    assert [(r["generation"], r["state"]) for r in info["replicas_detail"]] == [(2, "ready"), (2, "ready")]
    snapshot = w.dir / "snapshots" / "2.tar"
    import tarfile

    with tarfile.open(snapshot) as tar:
        assert tar.extractfile("app/version.txt").read() == b"v2\n"
    assert not records.replicas_of(Store.default(), w, generation=1)


def test_update_that_never_gets_ready_keeps_the_old_replicas(who, fake_runtime):
    from codestudio.webapps import publish, status, update

    w = publish(who, "PROJ", "app", "wa-unit", replicas=2, quiet=True)
    fake_runtime.ready = False
    with pytest.raises(RuntimeFailure, match="old replicas keep serving"):
        update(who, w.key, timeout=0.5, quiet=True)
    info = status(who, w.key)
    assert info["generation"] == 1 and "abandoned" in info["message"]
    assert [(r["generation"], r["state"]) for r in info["replicas_detail"]] == [(1, "ready"), (1, "ready")]


def test_stop_keeps_the_definition_start_and_delete(who, fake_runtime):
    from codestudio.webapps import delete, list_webapps, publish, start, status, stop

    w = publish(who, "PROJ", "app", "wa-unit", replicas=2, share="public", quiet=True)
    w = stop(who, w.key)
    assert w.state == "STOPPED" and w.share == "public" and w.replicas == 2
    assert status(who, w.key)["replicas_detail"] == [] and not fake_runtime.podsets
    w = start(who, w.key, quiet=True)
    assert w.state == "RUNNING" and w.generation == 2
    assert [r["ready"] for r in list_webapps(who)] == [2]
    with pytest.raises(PermissionDenied):
        delete(_bob(), w.key)
    delete(who, w.key)
    assert list_webapps(who) == [] and not fake_runtime.podsets and not w.dir.exists()


def test_cli_bad_input_exits_2(who, tmp_path, monkeypatch):
    env_run = [sys.executable, "-m", "codestudio", "--user", "alice", "webapp", "publish", "PROJ"]
    for args, needle in ((["app", "--template", "wa-unit", "--replicas", "0"], "--replicas must be between"),
                         (["App", "--template", "wa-unit"], "invalid webapp name"),
                         (["app", "--template", "studio-only"], "launch_in_webapp")):
        proc = subprocess.run(env_run + args, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert needle in proc.stderr


def test_from_studio_snapshot_is_the_zone_as_on_the_server_with_its_commit(who, fake_runtime):
    import tarfile

    from codestudio.runtime.studios import create_studio
    from codestudio.sync import zone_dir
    from codestudio.sync.zones import head
    from codestudio.webapps import publish, status

    studio = create_studio(who, "PROJ", "s", "wa-unit")
    zone = zone_dir("code_studio-versioned", studio_id=studio.id, project_key="PROJ", user="alice")
    assert (zone / "app" / "version.txt").read_text() == "v1\n"  # the starter file
    (zone / "app" / "version.txt").write_text("edited on the server\n")
    w = publish(who, "PROJ", "app", "wa-unit", from_studio=studio.id, quiet=True)
    assert w.source_studio == studio.id and w.snapshot_commit == head(zone)
    assert status(who, w.key)["snapshot_commit"] == w.snapshot_commit
    with tarfile.open(w.dir / "snapshots" / "1.tar") as tar:
        assert tar.extractfile("app/version.txt").read() == b"edited on the server\n"


def test_gateway_rows_list_each_replica_with_readiness_secret_and_ports(who, fake_runtime):
    from codestudio.store import Store
    from codestudio.webapps import publish, records
    from codestudio.webapps.routes import webapp_routes

    w = publish(who, "PROJ", "app", "wa-unit", replicas=2, share="public", quiet=True)
    reps = records.replicas_of(Store.default(), w)
    records.set_replica(Store.default(), reps[1], "not-ready", "probe failed: HTTP 500")
    [routes] = webapp_routes()
    assert (routes.project_key, routes.webapp_id, routes.owner, routes.share, routes.main_port) == (
        "PROJ", "app", "alice", "public", 8080)
    assert routes.session_secret == w.session_secret
    assert [(r.pod_name, r.ready, r.guard_secret) for r in routes.replicas] == [
        (reps[0].pod, True, reps[0].guard_secret), (reps[1].pod, False, reps[1].guard_secret)]
    # Only the webapp's own ports (not the studio-only entrypoint's 9000), with their path mode.
    assert [(p.port, p.proxied_subpath, p.upstream_port) for p in routes.replicas[0].ports] == [
        (8080, "$request_uri", reps[0].endpoints[8080][1])]
    records.set_replica(Store.default(), reps[0], "draining", "removing")
    assert [r.pod_name for r in webapp_routes()[0].replicas] == [reps[1].pod]


def test_url_is_a_signed_link_for_the_owner_and_plain_when_public(who, fake_runtime):
    from codestudio.webapps import publish, status, urls

    w = publish(who, "PROJ", "app", "wa-unit", replicas=2, quiet=True)
    links = urls(who, w.key)
    assert links["url"].startswith("http://127.0.0.1:8800/webapps/PROJ/app/?") and "token=" in links["url"]
    assert sorted(links["replicas"]) == sorted(r["pod"] for r in status(who, w.key)["replicas_detail"])
    for pod, link in links["replicas"].items():
        assert link.startswith(f"http://127.0.0.1:8800/web-apps-backends/PROJ/app_{pod}/8080/?")
    with pytest.raises(PermissionDenied):
        urls(_bob(), w.key)
    publish(who, "PROJ", "pub", "wa-unit", share="public", quiet=True)
    assert urls(who, "PROJ/pub")["url"] == "http://127.0.0.1:8800/webapps/PROJ/pub/"


def test_webapp_replicas_count_toward_the_running_quotas_everywhere(who, fake_runtime):
    """A webapp holds one place per replica: at publish, start, scale and update, and against a studio's start."""
    from codestudio.runtime import studios
    from codestudio.runtime.limits import QuotaReached, set_settings
    from codestudio.webapps import publish, scale, start, stop, update

    set_settings(who, {"max_running_per_user": "2"})
    with pytest.raises(QuotaReached) as info:
        publish(who, "PROJ", "big", "wa-unit", replicas=3, quiet=True)
    assert info.value.exit_code == 1 and "max_running_per_user = 2" in str(info.value)
    assert "publish webapp PROJ/big (3 replicas)" in str(info.value)
    _nothing_started(fake_runtime)
    w = publish(who, "PROJ", "app", "wa-unit", replicas=2, quiet=True)
    s = studios.create_studio(who, "PROJ", "dev", "studio-only")
    with pytest.raises(QuotaReached, match=r"user alice already has 0 running studios and 2 webapp replicas.*"
                                           r"webapp PROJ/app \(alice, RUNNING, 2 replicas\)"):
        studios.start_studio(who, s.id, quiet=True)
    assert studios.get_studio(s.id).state == "STOPPED"
    with pytest.raises(QuotaReached, match="scale webapp PROJ/app"):
        scale(who, w.key, 3, quiet=True)
    assert len(fake_runtime.pods(next(iter(fake_runtime.podsets)))) == 2
    scale(who, w.key, 1, quiet=True)
    assert studios.start_studio(who, s.id, quiet=True).state == "RUNNING"
    with pytest.raises(QuotaReached, match=r"1 running studio and 1 webapp replica"):
        publish(who, "PROJ", "two", "wa-unit", quiet=True)
    set_settings(who, {"max_running_per_user": "off", "max_running_total": "1"})
    with pytest.raises(QuotaReached, match="update webapp PROJ/app.*max_running_total = 1"):
        update(who, w.key, keep_snapshot=True, quiet=True)
    stop(who, w.key)
    with pytest.raises(QuotaReached, match="start webapp PROJ/app.*max_running_total = 1"):
        start(who, w.key, quiet=True)
    assert not fake_runtime.podsets or all("app" not in name for name in fake_runtime.podsets)
    studios.stop_studio(who, s.id, quiet=True)
    assert start(who, w.key, quiet=True).state == "RUNNING"

