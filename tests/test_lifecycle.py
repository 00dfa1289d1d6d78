"""Every studio lifecycle transition, and reconciliation, driven through a fake runtime (no containers).

The e2e tests (tests/e2e/test_runtime.py, test_reconcile.py) prove the same
with real podman and nginx; these run in a second and pin the state machine.
"""

from __future__ import annotations

import threading

import pytest

from codestudio import access
from codestudio.errors import RuntimeFailure, UsageError

TEMPLATE = """\
id: life
permissions: {all: true}
blocks:
  - type: entrypoint
    label: API
    command: [srv, --port, "8081"]
    port: 8081
  - type: action
    name: hello
    label: Say hello
    command: echo hello
  - type: starter-files
    files: {notes/README.md: "start here\\n"}
"""
ZONE_TARGET = "home/codestudio/workspace/code_studio-versioned"


@pytest.fixture
def who(tmp_path, monkeypatch):
    from codestudio.templates_store import add_template

    monkeypatch.setattr(access, "os_user", lambda: "alice")
    monkeypatch.setattr(access, "os_groups", lambda user: set())
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "life.yaml").write_text(TEMPLATE)
    who = access.identify()
    add_template(who, tmp_path / "tpl" / "life.yaml")
    from codestudio.projects import create_project

    create_project(who, "PROJ")
    return who


@pytest.fixture
def rt(fake_runtime, who):
    from codestudio.runtime import studios

    class Env:
        runtime = fake_runtime
        s = studios
        me = who

        def create(self, name="one"):
            return studios.create_studio(who, "PROJ", name, "life")

        def start(self, ref, **kw):
            return studios.start_studio(who, ref, quiet=True, **kw)

        def pod_dir(self, studio):
            [pod] = fake_runtime.pods(studios.pod_set_name(studio))
            return fake_runtime.base / pod.name / ZONE_TARGET

        def zone(self, studio):
            from codestudio.sync import zone_dir

            return zone_dir("code_studio-versioned", studio_id=studio.id, project_key="PROJ", user="alice")

    return Env()


def test_start_ok_runs_pushes_files_releases_the_runner_and_routes(rt):
    s = rt.start(rt.create().id)
    assert s.state == "RUNNING" and s.message is None
    [spec] = rt.runtime.started
    assert spec.replicas == 1 and list(spec.ports) == [8081]
    assert spec.labels["codestudio.io/studio"] == s.id and spec.labels["codestudio.io/kind"] == "studio"
    [guard] = spec.secrets.values()  # the per-start guard secret, derived from the session secret
    assert len(guard["guard-secret"]) == 64 and guard["guard-secret"] != s.token
    [pod] = rt.runtime.pods(spec.name)
    assert s.ports == {8081: pod.endpoints[8081].port}
    assert (rt.pod_dir(s) / "notes" / "README.md").read_text() == "start here\n"
    assert any(argv[0] == "touch" for _, argv in rt.runtime.commands)  # the runner waits for this flag
    assert rt.runtime.gateway.served == [s.id]


def test_probe_never_ready_fails_removes_the_pod_and_keeps_logs(rt):
    rt.runtime.ready = False
    s = rt.create()
    with pytest.raises(RuntimeFailure, match="did not become ready within 0.3s") as info:
        rt.start(s.id, timeout=0.3)
    assert "marked FAILED" in str(info.value) and "logs kept in" in str(info.value)
    s = rt.s.get_studio(s.id)
    assert s.state == "FAILED" and s.ports == {} and s.token is None
    assert rt.runtime.list() == [] and rt.runtime.gateway.served == []
    assert list(s.logs_dir.glob("*-failed.log"))


def test_crash_during_start_is_failed_with_the_reason(rt):
    rt.runtime.crash_after_start = True
    s = rt.create()
    with pytest.raises(RuntimeFailure, match="the container stopped"):
        rt.start(s.id, timeout=30)
    assert rt.s.get_studio(s.id).state == "FAILED" and rt.runtime.list() == []


def test_a_runtime_that_refuses_leaves_a_failed_studio_and_the_next_start_works(rt):
    rt.runtime.fail_start = "podman kube play failed: no space left"
    s = rt.create()
    with pytest.raises(RuntimeFailure, match="no space left"):
        rt.start(s.id)
    assert rt.s.get_studio(s.id).state == "FAILED"
    rt.runtime.fail_start = None
    assert rt.start(s.id).state == "RUNNING"


def test_stop_pulls_files_back_then_removes_the_pod(rt):
    s = rt.start(rt.create().id)
    (rt.pod_dir(s) / "notes" / "README.md").write_text("edited in the studio\n")
    s = rt.s.stop_studio(rt.me, s.id, quiet=True)
    assert s.state == "STOPPED" and s.ports == {} and s.token is None
    assert (rt.zone(s) / "notes" / "README.md").read_text() == "edited in the studio\n"
    assert rt.runtime.list() == [] and rt.runtime.gateway.served == []


def test_stop_with_a_pull_that_fails_saves_the_files_or_keeps_the_pod(rt, monkeypatch):
    import codestudio.sync as sync

    def broken(*a, **kw):
        raise RuntimeFailure("the agent died")

    monkeypatch.setattr(sync, "pull_on_stop", broken)
    s = rt.start(rt.create().id)
    # The files are tarred out of the pod (through Runtime.exec) before it is removed.
    s = rt.s.stop_studio(rt.me, s.id, quiet=True)
    assert s.state == "STOPPED" and "the file pull failed (the agent died)" in s.message and "were saved to" in s.message
    assert any(argv[:2] == ["sh", "-c"] and "tar -cf" in argv[2] for _, argv in rt.runtime.commands)
    assert rt.runtime.list() == []
    # When saving fails too, the pod stays and the studio keeps running.
    s = rt.start(s.id)
    rt.runtime.fail_commands = True
    with pytest.raises(RuntimeFailure, match="NOT stopped"):
        rt.s.stop_studio(rt.me, s.id, quiet=True)
    assert rt.s.get_studio(s.id).state == "RUNNING" and rt.runtime.list()
    assert rt.s.stop_studio(rt.me, s.id, quiet=True, force=True).state == "STOPPED"
    assert (rt.zone(s) / "notes" / "README.md").exists()  # zone files are never lost


def test_delete_while_starting_is_refused_or_waits_with_force(rt):
    s = rt.create()
    release = threading.Event()
    seen = {}

    def during_start(spec):
        with pytest.raises(UsageError, match="is STARTING; stop it first or pass --force"):
            rt.s.delete_studio(rt.me, s.id)
        seen["deleter"] = threading.Thread(target=rt.s.delete_studio, args=(rt.me, s.id), kwargs={"force": True})
        seen["deleter"].start()
        release.wait(0.2)  # the deleter now waits for the studio lock

    rt.runtime.on_start = during_start
    rt.start(s.id)
    seen["deleter"].join(30)
    with pytest.raises(Exception, match="no studio"):
        rt.s.get_studio(s.id)
    assert rt.runtime.list() == [] and (rt.zone(s) / "notes" / "README.md").exists()


def test_two_starts_at_once_start_one_pod(rt):
    s = rt.create()
    results, errors = [], []

    def go():
        try:
            results.append(rt.start(s.id).state)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and results == ["RUNNING", "RUNNING"]
    assert len(rt.runtime.started) == 1


def test_actions_and_logs_go_through_the_runtime(rt, capfd):
    s = rt.start(rt.create().id)
    code, waited = rt.s.run_action(rt.me, s.id, "hello")
    assert (code, waited) == (0, True)
    assert ["python3", rt.s.RUNNER, "action", "hello"] in [argv for _, argv in rt.runtime.commands]
    assert rt.s.stream_logs(rt.me, s.id) == 0
    assert "logs of" in capfd.readouterr().out


# --------------------------------------------------------------------------
# Reconciliation


def test_running_studio_whose_pod_vanished_is_shown_stopped_and_starts_again(rt):
    s = rt.start(rt.create().id)
    rt.runtime.vanish(rt.s.pod_set_name(s))
    st = rt.s.studio_status(rt.me, s.id)
    assert st["state"] == "STOPPED" and "is gone" in st["message"] and "lost" in st["message"]
    assert rt.runtime.gateway.served == []
    assert (rt.zone(s) / "notes" / "README.md").exists()
    assert rt.start(s.id).state == "RUNNING"


def test_running_studio_whose_container_died_is_failed_with_logs(rt):
    s = rt.start(rt.create().id)
    rt.runtime.crash(rt.s.pod_set_name(s))
    [listed] = rt.s.list_studios(rt.me)
    assert listed.state == "FAILED" and "exited with status 137" in listed.message
    assert "were saved to" in listed.message  # its files, out of the dead container, before removal
    assert rt.runtime.list() == []
    assert rt.start(s.id).state == "RUNNING"


def test_start_left_by_a_killed_command_is_undone(rt):
    from codestudio.runtime.base import PodSetSpec
    from codestudio.store import Store

    s = rt.create()
    # What a SIGKILL during start leaves: STARTING in the DB, a pod, and no lock holder.
    rt.runtime.start(PodSetSpec(name=rt.s.pod_set_name(s), manifest=[], labels={}, ports=(8081,)))
    rt.s.set_state(Store.default(), s.id, "STARTING", "starting", token="x")
    st = rt.s.studio_status(rt.me, s.id)
    assert st["state"] == "STOPPED" and "interrupted start" in st["message"]
    assert rt.runtime.list() == []
    assert rt.start(s.id).state == "RUNNING"


def test_stop_left_by_a_killed_command_is_finished_files_first(rt):
    from codestudio.store import Store

    s = rt.start(rt.create().id)
    (rt.pod_dir(s) / "notes" / "README.md").write_text("saved by reconciliation\n")
    rt.s.set_state(Store.default(), s.id, "STOPPING", "stopping", ports=s.ports, token=s.token)
    [listed] = rt.s.list_studios(rt.me)
    assert listed.state == "STOPPED" and "interrupted stop" in listed.message
    assert (rt.zone(s) / "notes" / "README.md").read_text() == "saved by reconciliation\n"
    assert rt.runtime.list() == []


def test_doctor_lists_and_fixes_orphans_and_a_stopped_gateway(rt):
    from codestudio.runtime.base import PodSetSpec

    s = rt.start(rt.create().id)
    rt.runtime.start(PodSetSpec(name="cs-orphan-0123456789", manifest=[], labels={}, ports=(80,)))
    rt.runtime.gateway.running = False
    findings = rt.s.doctor(rt.me)
    kinds = {(f.what, f.subject, f.fixed) for f in findings}
    assert ("orphan pod set", "cs-orphan-0123456789", False) in kinds and ("gateway", "nginx", False) in kinds
    findings = rt.s.doctor(rt.me, fix=True)
    assert all(f.fixed for f in findings)
    assert [ps.name for ps in rt.runtime.list()] == [rt.s.pod_set_name(s)]
    assert rt.runtime.gateway.running and rt.runtime.gateway.served == [s.id]
    assert rt.s.doctor(rt.me) == []


def test_doctor_is_for_admins(rt, monkeypatch):
    from codestudio.errors import PermissionDenied

    monkeypatch.setattr(access, "os_user", lambda: "bob")
    with pytest.raises(PermissionDenied):
        rt.s.doctor(access.identify())


def test_a_memory_limit_below_what_the_tools_need_is_refused_at_start_naming_the_field(rt, tmp_path):
    from codestudio.templates_store import add_template

    path = tmp_path / "tpl" / "life.yaml"
    path.write_text(TEMPLATE.replace("blocks:\n", "blocks:\n  - {type: jupyterlab}\n  - {type: kubernetes, memory: 64Mi}\n"))
    add_template(rt.me, path)  # a new version of "life"
    studio = rt.create()
    with pytest.raises(UsageError) as info:
        rt.start(studio.id)
    assert "blocks[1] (type: kubernetes): field 'memory': 64Mi is below the 256Mi" in str(info.value)
    assert "JupyterLab 256Mi" in str(info.value) and info.value.exit_code == 2
    # Refused before anything ran: no pod, the studio still STOPPED.
    assert rt.runtime.started == [] and rt.s.get_studio(studio.id).state == "STOPPED"


def test_template_build_warns_when_the_memory_limit_is_below_the_tools_need(tmp_path, capsys):
    from codestudio.templates_store import warn_memory_shortfall

    path = tmp_path / "t.yaml"
    path.write_text("id: t\nblocks:\n  - {type: jupyterlab}\n  - {type: kubernetes, memory: 128Mi}\n")
    assert "field 'memory': 128Mi is below the 256Mi" in warn_memory_shortfall(path)
    assert "warning:" in capsys.readouterr().err
    path.write_text("id: t\nblocks:\n  - {type: jupyterlab}\n  - {type: kubernetes, memory: 1Gi}\n")
    assert warn_memory_shortfall(path) is None


def test_a_gateway_that_refuses_the_new_routes_fails_the_start_and_removes_the_pod(rt):
    """The gateway reload runs while the studio boots; its failure is still the start's failure."""
    gateway = rt.runtime.gateway
    calls = []

    def refuse(studios=None):
        calls.append(len(calls))
        if len(calls) == 1:  # the start's apply; the clean-up's applies go through
            raise RuntimeFailure("the new gateway config was rejected by nginx -t")
        return "ok"

    gateway.apply = refuse
    s = rt.create()
    with pytest.raises(RuntimeFailure, match="rejected by nginx -t"):
        rt.start(s.id)
    s = rt.s.get_studio(s.id)
    assert s.state == "FAILED" and s.ports == {} and rt.runtime.list() == []
    del gateway.apply  # the class's own again
    assert rt.start(s.id).state == "RUNNING" and gateway.served == [s.id]
