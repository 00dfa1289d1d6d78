"""End-to-end: a stop whose file pull fails never loses the studio's files (issue 9 item 4), real podman.

The pull is made to fail the way a poisoned or locked zone makes it fail:
git cannot commit in the server's versioned zone (a stale ``index.lock``).
The studio runs on the real base image (the busybox base has no Python for
the runner and the sync agent). The same rules with podman faked are in
tests/test_stop_recovery.py.
"""

from __future__ import annotations

import json
import tarfile

import pytest

pytestmark = pytest.mark.e2e

NOTEBOOK = "/home/codestudio/workspace/code_studio-versioned/notebook.ipynb"


@pytest.fixture
def studio(sync_studios):
    rts, who = sync_studios.rts, sync_studios.who
    template_id = sync_studios.template("stop-e2e", "{zone: code_studio-versioned}", "{zone: project-lib-resources}")
    sync_studios.project("STOPS")
    s = rts.create_studio(who, "STOPS", "work", template_id)
    s = rts.start_studio(who, s.id, timeout=120, quiet=True)
    return {"who": who, "studio": s, "rts": rts, "local": sync_studios.local}


def test_failed_pull_keeps_the_pod_until_files_are_saved_then_saves_them(studio, sync_studios):
    from codestudio.sync import zone_dir

    rts, local, s = studio["rts"], studio["local"], studio["studio"]
    proc = local.exec_run(sync_studios.container(s), ["sh", "-c", f"printf 'unsynced cells' > {NOTEBOOK}"])
    assert proc.returncode == 0, proc.stderr
    zone = zone_dir("code_studio-versioned", studio_id=s.id, project_key="STOPS", user=s.owner)
    (zone / ".git" / "index.lock").write_text("")  # git add -A now fails: the pull fails
    # 1. The recovery folder cannot be made either: the stop refuses and the pod stays.
    s.dir.mkdir(parents=True, exist_ok=True)
    (s.dir / "recovery").write_text("in the way")
    result = sync_studios.cli("studio", "stop", s.id)
    assert result.returncode == 1, result.stderr
    assert f"studio {s.id} was NOT stopped" in result.stderr and "index.lock" in result.stderr
    assert f"codestudio studio stop {s.id} --force" in result.stderr
    kept = rts.get_studio(s.id)
    assert kept.state == rts.RUNNING and local.container_running(sync_studios.container(s))
    listed = json.loads(sync_studios.cli("studio", "list", "--json").stdout)
    assert "NOT stopped" in listed[0]["message"]
    # The owner's work is still there, and the studio still serves.
    assert local.exec_run(sync_studios.container(s), ["cat", NOTEBOOK]).stdout == "unsynced cells"
    # 2. Once a recovery folder can be written, the retried stop saves the files, then removes the pod.
    (s.dir / "recovery").unlink()
    result = sync_studios.cli("studio", "stop", s.id)
    assert result.returncode == 0, result.stderr
    assert "the file pull failed" in result.stderr and "were saved to" in result.stderr
    assert not local.pod_exists(sync_studios.pod(s))
    [folder] = (s.dir / "recovery").iterdir()
    with tarfile.open(folder / "files.tar") as tar:
        saved = tar.extractfile(NOTEBOOK.lstrip("/")).read()
    assert saved == b"unsynced cells"
    assert json.loads((folder / "recovery.json").read_text())["targets"] == [
        "/home/codestudio/workspace/code_studio-versioned", "/home/codestudio/workspace/project-lib-resources"]
    assert rts.get_studio(s.id).state == rts.STOPPED


def test_force_removes_the_pod_and_says_files_are_lost(studio, sync_studios):
    from codestudio.sync import zone_dir

    rts, local, s = studio["rts"], studio["local"], studio["studio"]
    zone = zone_dir("code_studio-versioned", studio_id=s.id, project_key="STOPS", user=s.owner)
    local.exec_run(sync_studios.container(s), ["sh", "-c", f"printf x > {NOTEBOOK}"])
    (zone / ".git" / "index.lock").write_text("")
    s.dir.mkdir(parents=True, exist_ok=True)
    (s.dir / "recovery").write_text("in the way")
    result = sync_studios.cli("studio", "stop", s.id, "--force")
    assert result.returncode == 0, result.stderr
    assert "removed with --force" in result.stderr and "unsynced changes are lost" in result.stderr
    assert not local.pod_exists(sync_studios.pod(s))
    (zone / ".git" / "index.lock").unlink()


def test_a_container_that_died_is_saved_from_before_its_pod_goes(studio, sync_studios):
    """After a crash or a reboot the container is stopped, not gone: its files are copied out first."""
    from codestudio import containers

    rts, local, s = studio["rts"], studio["local"], studio["studio"]
    assert local.exec_run(sync_studios.container(s), ["sh", "-c", f"printf 'after the last sync' > {NOTEBOOK}"]).returncode == 0
    containers.podman("stop", "-t", "0", sync_studios.container(s))
    assert not local.container_running(sync_studios.container(s)) and local.pod_exists(sync_studios.pod(s))
    # start (like stop) goes through the stop's rules for what is left.
    result = sync_studios.cli("studio", "stop", s.id)
    assert result.returncode == 0, result.stderr
    assert "its container was no longer running" in result.stderr and "were saved to" in result.stderr
    assert not local.pod_exists(sync_studios.pod(s))
    [folder] = (s.dir / "recovery").iterdir()
    meta = json.loads((folder / "recovery.json").read_text())
    archive = meta["archives"]["/home/codestudio/workspace/code_studio-versioned"]
    with tarfile.open(folder / archive) as tar:
        [member] = [m for m in tar.getmembers() if m.name.endswith("notebook.ipynb")]
        assert tar.extractfile(member).read() == b"after the last sync"
