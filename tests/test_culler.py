"""Culling, activity reading and quotas, on the fake runtime (the e2e twins: tests/e2e/test_lifecycle.py)."""

from __future__ import annotations

import threading
import time

import pytest

from codestudio import access
from codestudio.errors import RuntimeFailure, UsageError

TEMPLATE = """\
id: {id}
permissions: {{all: true}}
blocks:
  - type: entrypoint
    label: API
    command: [srv, --port, "8081"]
    port: 8081
  - type: starter-files
    files: {{notes/README.md: "start here\\n"}}
{extra}"""
ZONE_TARGET = "home/codestudio/workspace/code_studio-versioned"


@pytest.fixture
def env(fake_runtime, tmp_path, monkeypatch):
    from codestudio.projects import create_project
    from codestudio.runtime import studios
    from codestudio.templates_store import add_template

    monkeypatch.setattr(access, "os_user", lambda: "alice")
    monkeypatch.setattr(access, "os_groups", lambda user: set())
    who = access.identify()
    (tmp_path / "tpl").mkdir()
    for tid, extra in (("idle", "  - {type: lifecycle, idle_timeout: 30s}\n"),
                       ("old", "  - {type: lifecycle, max_lifetime: 8h}\n"), ("plain", "")):
        path = tmp_path / "tpl" / f"{tid}.yaml"
        path.write_text(TEMPLATE.format(id=tid, extra=extra))
        add_template(who, path)
    create_project(who, "PROJ")

    class Env:
        runtime = fake_runtime
        s = studios
        me = who
        readings: dict = {}

        def started(self, template="idle", name=None):
            s = studios.create_studio(who, "PROJ", name or f"{template}-{len(fake_runtime.started)}", template)
            return studios.start_studio(who, s.id, quiet=True)

        def pod_dir(self, studio):
            [pod] = fake_runtime.pods(studios.pod_set_name(studio))
            return fake_runtime.base / pod.name / ZONE_TARGET

        def zone(self, studio):
            from codestudio.sync import zone_dir

            return zone_dir("code_studio-versioned", studio_id=studio.id, project_key="PROJ", user="alice")

    e = Env()

    def read(studio, pod, *, template=None, blocks=None, now=None):
        from codestudio.runtime.activity import Reading

        return e.readings.get(studio.id, Reading(None, None, reachable=True))

    monkeypatch.setattr("codestudio.runtime.activity.read_activity", read)
    return e


def test_an_idle_studio_is_stopped_the_normal_way_with_its_reason(env):
    from codestudio.runtime.culler import cull

    s = env.started()
    (env.pod_dir(s) / "notes" / "README.md").write_text("edited before going idle\n")
    assert [d.action for d in cull(dry_run=True, now=time.time() + 3600)] == ["stop"]
    assert env.s.get_studio(s.id).state == "RUNNING"  # dry run: nothing stopped
    [decision] = cull(now=time.time() + 2 * 3600)
    assert decision.stopped and decision.reason.startswith("stopped after 2 h idle")
    after = env.s.get_studio(s.id)
    assert after.state == "STOPPED" and after.stop_reason == decision.reason and after.message.startswith("stopped after 2 h")
    assert (env.zone(s) / "notes" / "README.md").read_text() == "edited before going idle\n"
    assert env.runtime.list() == []


def test_recent_activity_keeps_a_studio_and_is_recorded(env):
    from codestudio.runtime.activity import Reading
    from codestudio.runtime.culler import cull

    s = env.started()
    now = time.time() + 3600
    env.readings[s.id] = Reading(now - 5, "gateway", reachable=True)
    [decision] = cull(now=now)
    assert decision.action == "keep" and "idle 5 s of 30 s" in decision.reason
    stored = env.s.get_studio(s.id)
    assert stored.state == "RUNNING" and stored.activity_source == "gateway" and stored.last_activity == now - 5


def test_a_silent_guard_is_never_culled_for_idleness(env):
    from codestudio.runtime.activity import Reading
    from codestudio.runtime.culler import cull

    s = env.started()
    env.readings[s.id] = Reading(None, None, reachable=False)
    [decision] = cull(now=time.time() + 3600)
    assert decision.action == "skip" and env.s.get_studio(s.id).state == "RUNNING"


def test_max_lifetime_stops_even_an_active_studio_and_no_policy_keeps_it(env):
    from codestudio.runtime.activity import Reading
    from codestudio.runtime.culler import cull

    old, plain = env.started("old"), env.started("plain")
    now = time.time() + 9 * 3600
    env.readings[old.id] = Reading(now, "gateway", reachable=True)
    decisions = {d.studio: d for d in cull(now=now)}
    assert decisions[old.id].stopped and "max_lifetime 8 h" in decisions[old.id].reason
    assert decisions[plain.id].action == "keep" and decisions[plain.id].reason == "no idle_timeout or max_lifetime"


def test_data_dir_defaults_apply_to_templates_without_a_lifecycle_block(env):
    from codestudio.runtime.culler import cull
    from codestudio.runtime.limits import set_settings

    plain = env.started("plain")
    set_settings(env.me, {"idle_timeout": "1h"})
    [decision] = cull(now=time.time() + 2 * 3600)
    assert decision.stopped and "idle_timeout 1 h" in decision.reason and env.s.get_studio(plain.id).state == "STOPPED"


def test_culler_and_a_manual_stop_at_once_stop_once_and_lose_nothing(env):
    from codestudio.runtime.culler import cull

    s = env.started()
    (env.pod_dir(s) / "notes" / "README.md").write_text("edited\n")
    stops = []
    original = env.runtime.stop

    def slow_stop(name, **kw):
        stops.append(name)
        time.sleep(0.2)  # widen the window: the other side must find the lock held
        return original(name, **kw)

    env.runtime.stop = slow_stop
    errors, results = [], {}
    barrier = threading.Barrier(2)

    def manual():
        barrier.wait()
        try:
            results["manual"] = env.s.stop_studio(env.me, s.id, quiet=True).state
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    def culler():
        barrier.wait()
        try:
            results["culler"] = cull(now=time.time() + 3600)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=manual), threading.Thread(target=culler)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results["manual"] == "STOPPED" and env.s.get_studio(s.id).state == "STOPPED"
    assert len(stops) == 1  # one pod removal, whoever won
    assert (env.zone(s) / "notes" / "README.md").read_text() == "edited\n"


def test_quota_per_user_refuses_the_next_start_naming_the_limit(env):
    from codestudio.runtime.limits import QuotaReached, set_settings

    first = env.started("plain", "first")
    set_settings(env.me, {"max_running_per_user": "1"})
    second = env.s.create_studio(env.me, "PROJ", "second", "plain")
    with pytest.raises(QuotaReached) as info:
        env.s.start_studio(env.me, second.id, quiet=True)
    text = str(info.value)
    assert info.value.exit_code == 1
    assert "max_running_per_user = 1" in text and f"PROJ/{first.id}" in text and "user alice" in text
    assert env.s.get_studio(second.id).state == "STOPPED" and len(env.runtime.started) == 1
    env.s.stop_studio(env.me, first.id, quiet=True)
    assert env.s.start_studio(env.me, second.id, quiet=True).state == "RUNNING"


def test_quota_per_template_and_total(env):
    from codestudio.runtime.limits import QuotaReached, set_settings

    env.started("plain", "a")
    set_settings(env.me, {"max_running_per_template": "1"})
    env.started("idle", "b")  # another template: fine
    with pytest.raises(QuotaReached, match="template plain .*max_running_per_template = 1"):
        env.started("plain", "c")
    set_settings(env.me, {"max_running_per_template": "off", "max_running_total": "2"})
    with pytest.raises(QuotaReached, match="max_running_total = 2"):
        env.started("old", "d")


@pytest.mark.parametrize(("field", "value"), [("max_running_per_user", "0"), ("max_running_total", "-2"),
                                               ("max_running_per_template", "x"), ("idle_timeout", "soon"),
                                               ("max_lifetime", "10"), ("cull_interval", "0s"), ("nope", "1")])
def test_bad_settings_name_the_field_and_change_nothing(env, field, value):
    from codestudio.runtime.limits import load_settings, set_settings

    before = load_settings()
    with pytest.raises(UsageError) as info:
        set_settings(env.me, {field: value})
    assert repr(field) in str(info.value) and info.value.exit_code == 2
    assert load_settings() == before


def test_a_hand_edited_settings_file_is_refused_naming_the_field(env):
    from codestudio.home import data_dir
    from codestudio.runtime.limits import load_settings

    (data_dir() / "lifecycle.json").write_text('{"max_running_total": 0}')
    with pytest.raises(UsageError, match="lifecycle.json: field 'max_running_total'"):
        load_settings()


def test_only_admins_change_settings(env, monkeypatch):
    from codestudio.errors import PermissionDenied
    from codestudio.runtime.limits import set_settings

    monkeypatch.setattr(access, "os_user", lambda: "bob")
    with pytest.raises(PermissionDenied):
        set_settings(access.identify(), {"max_running_total": "3"})


def test_bad_lifecycle_block_durations_name_the_field(write_template):
    from codestudio.errors import TemplateError
    from codestudio.plan import plan_template

    for value in ("30", "soon", "0s", "-5m"):
        path = write_template(f"id: t\nblocks:\n  - {{type: lifecycle, idle_timeout: {value!r}}}\n")
        with pytest.raises(TemplateError, match="field 'idle_timeout'"):
            plan_template(path)


def test_the_server_runs_the_culler_while_it_serves(codestudio_home, monkeypatch):
    from fastapi.testclient import TestClient

    import codestudio.runtime.culler as culler
    from codestudio.server.app import create_app
    from codestudio.server.settings import ServerSettings

    calls = threading.Event()
    monkeypatch.setattr(culler, "cull", lambda **kw: calls.set() or [])
    app = create_app(ServerSettings(content_url="http://127.0.0.1:8800"), data_dir=codestudio_home)
    assert not calls.is_set()
    with TestClient(app):  # the lifespan: serving
        assert calls.wait(30)
    assert not any(t.name == "culler" and t.is_alive() for t in threading.enumerate())


WEBAPP_TEMPLATE = """\
id: wa-life
permissions: {all: true}
blocks:
  - type: entrypoint
    label: App
    command: [python3, -m, http.server, "8080"]
    port: 8080
    launch_in_webapp: true
  - type: lifecycle
    idle_timeout: 1m
    max_lifetime: 1h
"""


def test_webapps_are_stopped_after_max_lifetime_never_for_idleness(env, tmp_path):
    from codestudio.runtime.culler import cull_webapps
    from codestudio.templates_store import add_template
    from codestudio.webapps import publish
    from codestudio.webapps.records import get_webapp

    (tmp_path / "tpl" / "wa.yaml").write_text(WEBAPP_TEMPLATE)
    add_template(env.me, tmp_path / "tpl" / "wa.yaml")
    w = publish(env.me, "PROJ", "app", "wa-life", quiet=True)
    # Past its idle_timeout but not its max_lifetime: kept (nobody's idleness stops a webapp).
    [keep] = cull_webapps(now=time.time() + 30 * 60)
    assert keep.action == "keep" and "running 30 min of 1 h" in keep.reason
    [dry] = cull_webapps(dry_run=True, now=time.time() + 2 * 3600)
    assert dry.action == "stop" and not dry.stopped and get_webapp(w.key, store=env.s.Store.default()).state == "RUNNING"
    [stop] = cull_webapps(now=time.time() + 2 * 3600)
    after = get_webapp(w.key, store=env.s.Store.default())
    assert stop.stopped and after.state == "STOPPED" and "(max_lifetime 1 h)" in after.message
