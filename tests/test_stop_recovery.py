"""A stop never removes a pod whose files could not be pulled (issue 9 item 4), with podman faked.

The pod is a fake; the recovery archive is made by the real script and the
real ``tar``, run on this machine under a folder standing in for the
container's ``/``. tests/e2e/test_stop_recovery.py runs the same paths on
real podman.
"""

from __future__ import annotations

import json
import tarfile
import textwrap

import pytest

from codestudio import access
from codestudio.errors import RuntimeFailure

TEMPLATE = """\
id: plain
permissions: {all: true}
blocks:
  - type: entrypoint
    label: Server
    command: [sleep, "1000"]
    port: 8080
"""
WORKSPACE = "home/codestudio/workspace"


class FakePod:
    """Stands in for the runtime: one running pod per studio whose ``/`` is ``root`` (one flag for all)."""

    name = "fake"

    def __init__(self, root):
        self.root = root
        self.exists = True
        self.removed = 0
        self.exec_ok = True

    def pods(self, name):
        from codestudio.runtime.base import Pod

        return [Pod(f"{name}-pod-0", "running")] if self.exists else []

    def exec(self, pod, argv, *, user=None, stdin=False):
        import subprocess

        assert argv[:2] == ["sh", "-c"] and user == "codestudio"
        if not self.exec_ok:
            argv = ["sh", "-c", "echo 'tar: read error' >&2; exit 2"]
        else:
            argv = [argv[0], argv[1], argv[2].replace("cd /", f"cd {self.root}", 1), *argv[3:]]
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def stop(self, name, *, timeout=10):
        if self.exists:
            self.exists = False
            self.removed += 1

    def save_logs(self, pod, target):
        return False

    def list(self):
        return []

    def running(self, name):
        return bool(self.pods(name))


class _NoGateway:
    def pid(self):
        return None

    def apply(self):
        pass


@pytest.fixture
def running(tmp_path, monkeypatch):
    """A RUNNING studio ``s`` of alice in project P, on a fake pod with a file in each zone's target."""
    from codestudio.projects import create_project
    from codestudio.runtime import routes, studios
    from codestudio.runtime.lifecycle import recovery
    from codestudio.runtime.current import use_runtime
    from codestudio.store import Store
    from codestudio.templates_store import add_template

    monkeypatch.setattr(access, "os_user", lambda: "alice")
    monkeypatch.setattr(access, "os_groups", lambda user: set())
    alice = access.identify()
    (tmp_path / "t.yaml").write_text(TEMPLATE)
    add_template(alice, tmp_path / "t.yaml")
    create_project(alice, "P")
    s = studios.create_studio(alice, "P", "s", "plain")
    pod = FakePod(tmp_path / "container-root")
    for zone in ("code_studio-versioned", "project-lib-resources", "user-versioned"):
        target = pod.root / WORKSPACE / zone
        target.mkdir(parents=True)
        (target / "work.txt").write_text(f"unsynced work in {zone}\n")
    monkeypatch.setattr(routes, "gateway", _NoGateway)
    monkeypatch.setattr(recovery, "transport_of", lambda pod, runtime: None)  # where a stop looks it up
    studios._set_state(Store.default(), s.id, studios.RUNNING, None, ports={8080: 45000}, token="secret-1")
    with use_runtime(pod):
        yield {"who": alice, "studio": studios.get_studio(s.id), "pod": pod, "studios": studios}


def _pull_fails(monkeypatch, calls=None):
    import codestudio.sync

    def pull(sync_studio, transport, **kw):
        if calls is not None:
            calls.append(sync_studio)
        raise codestudio.sync.SyncError("git add -A failed in project-lib-versioned: fatal: index.lock exists")

    monkeypatch.setattr(codestudio.sync, "pull_on_stop", pull)


def _archive(folder) -> dict[str, str]:
    with tarfile.open(folder / "files.tar") as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}


def test_failed_pull_saves_files_to_recovery_before_removing_the_pod(running, monkeypatch):
    studios, s, pod = running["studios"], running["studio"], running["pod"]
    _pull_fails(monkeypatch)
    stopped = studios.stop_studio(running["who"], s.id)
    assert pod.removed == 1 and stopped.state == studios.STOPPED
    [folder] = (s.dir / "recovery").iterdir()
    assert f"saved to {folder}" in stopped.message and "the file pull failed (git add -A failed" in stopped.message
    files = _archive(folder)
    assert files[f"{WORKSPACE}/code_studio-versioned/work.txt"] == "unsynced work in code_studio-versioned\n"
    assert f"{WORKSPACE}/project-lib-resources/work.txt" in files and f"{WORKSPACE}/user-versioned/work.txt" in files
    meta = json.loads((folder / "recovery.json").read_text())
    assert meta["studio"] == s.id and meta["owner"] == "alice" and "git add -A failed" in meta["why"]
    assert oct((s.dir / "recovery").stat().st_mode & 0o777) == "0o700"
    assert oct((folder / "files.tar").stat().st_mode & 0o777) == "0o600"
    # Deleting the studio keeps what was saved, until --purge.
    studios.delete_studio(running["who"], s.id)
    assert (folder / "files.tar").is_file() and not (s.dir / "kubernetes.yaml").exists()
    # A new studio of the same name does not inherit the old one's folder.
    again = studios.create_studio(running["who"], "P", "s", "plain")
    assert again.id != s.id


@pytest.mark.parametrize("how", ["folder", "tar"])
def test_pull_and_recovery_both_failing_keep_the_pod_until_force(running, monkeypatch, how):
    studios, s, pod = running["studios"], running["studio"], running["pod"]
    _pull_fails(monkeypatch)
    if how == "folder":
        s.dir.mkdir(parents=True, exist_ok=True)
        (s.dir / "recovery").write_text("not a folder")
    else:
        pod.exec_ok = False
    with pytest.raises(RuntimeFailure) as info:
        studios.stop_studio(running["who"], s.id)
    text = str(info.value)
    assert f"studio {s.id} was NOT stopped" in text and "git add -A failed" in text
    assert "saving its files to a recovery folder failed too" in text
    assert f"codestudio studio stop {s.id} --force" in text and "LOSE" in text
    assert info.value.exit_code == 1
    kept = studios.get_studio(s.id)
    assert pod.removed == 0 and pod.exists
    assert kept.state == studios.RUNNING and kept.token == "secret-1" and kept.ports == {8080: 45000}
    assert "NOT stopped" in kept.message
    if how == "tar":
        assert list((s.dir / "recovery").iterdir()) == []  # no half-written archive left
    # A delete goes through the same stop.
    with pytest.raises(RuntimeFailure, match="NOT stopped"):
        studios.delete_studio(running["who"], s.id, force=True)
    assert pod.exists
    forced = studios.stop_studio(running["who"], s.id, force=True)
    assert pod.removed == 1 and forced.state == studios.STOPPED
    assert "removed with --force" in forced.message and "unsynced changes are lost" in forced.message


def test_conflicts_are_not_a_failed_pull(running, monkeypatch):
    import codestudio.sync

    studios, s, pod = running["studios"], running["studio"], running["pod"]

    def pull(sync_studio, transport, **kw):
        raise codestudio.sync.SyncConflictError("1 conflict: work.txt (both versions kept)")

    monkeypatch.setattr(codestudio.sync, "pull_on_stop", pull)
    stopped = studios.stop_studio(running["who"], s.id)
    assert pod.removed == 1 and stopped.state == studios.STOPPED and "both versions kept" in stopped.message
    assert not (s.dir / "recovery").exists()


def test_a_revoked_owner_s_project_files_go_to_recovery_not_to_the_zone(running, monkeypatch):
    import codestudio.sync
    from codestudio.projects import grant, revoke

    studios, alice, pod = running["studios"], running["who"], running["pod"]
    grant(alice, "P", users=["bob"])
    monkeypatch.setattr(access, "os_user", lambda: "bob")
    bob = access.identify()
    s = studios.create_studio(bob, "P", "bob's", "plain")
    studios._set_state(studios.Store.default(), s.id, studios.RUNNING, None, ports={8080: 45001}, token="secret-2")
    revoke(alice, "P", users=["bob"])
    pulled = []
    monkeypatch.setattr(codestudio.sync, "pull_on_stop", lambda sync_studio, transport, **kw: pulled.append(sync_studio))
    stopped = studios.stop_studio(bob, s.id)
    [sync_studio] = pulled
    assert {m.zone for m in sync_studio.mappings} == {"code_studio-versioned", "code_studio-resources",
                                                     "user-versioned", "user-resources"}
    assert "bob is no longer a member of project P" in stopped.message
    [folder] = (s.dir / "recovery").iterdir()
    assert set(_archive(folder)) == {f"{WORKSPACE}/project-lib-resources/work.txt"}
    assert pod.removed == 1


def test_template_gone_saves_the_home_folder(running, monkeypatch):
    from codestudio.errors import NotFound

    studios, s = running["studios"], running["studio"]

    def gone(studio, store):
        raise NotFound("no template 'plain'")

    from codestudio.runtime.lifecycle import recovery

    monkeypatch.setattr(recovery, "plan_studio", gone)  # where a stop looks it up
    stopped = studios.stop_studio(running["who"], s.id)
    assert "its template cannot be read (no template 'plain')" in stopped.message
    [folder] = (s.dir / "recovery").iterdir()
    assert f"{WORKSPACE}/user-versioned/work.txt" in _archive(folder)


def test_recovery_script_archives_only_existing_targets(tmp_path):
    """The in-pod script: missing targets are skipped, none at all is an empty success."""
    import subprocess

    from codestudio.runtime.lifecycle.recovery import _RECOVERY_SCRIPT, _outermost

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_text("x")
    script = _RECOVERY_SCRIPT.replace("cd /", f"cd {tmp_path}", 1)
    out = subprocess.run(["sh", "-c", script, "sh", "a/b", "missing", "a b"], capture_output=True, check=True).stdout
    assert b"a/b/f" in out
    none = subprocess.run(["sh", "-c", script, "sh", "missing"], capture_output=True, check=True)
    assert none.stdout == b""
    assert _outermost(["/w/a", "/w/a/b", "/w/ab", "/w/a/"]) == ["/w/a", "/w/ab"]
    assert textwrap.dedent(script)  # the script is one line for sh -c


def test_start_after_a_killed_stop_does_not_drop_the_running_pod(running, monkeypatch):
    """A ``studio stop`` killed mid-pull leaves STOPPING and a running pod: start must not just remove it."""
    studios, s, pod = running["studios"], running["studio"], running["pod"]
    studios._set_state(studios.Store.default(), s.id, studios.STOPPING, "stopping", ports=s.ports, token=s.token)
    _pull_fails(monkeypatch)
    s.dir.mkdir(parents=True, exist_ok=True)
    (s.dir / "recovery").write_text("in the way")
    with pytest.raises(RuntimeFailure, match="NOT stopped"):
        studios.start_studio(running["who"], s.id)
    assert pod.exists and pod.removed == 0 and studios.get_studio(s.id).state == studios.RUNNING
