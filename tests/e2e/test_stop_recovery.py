"""End-to-end: a stop whose file pull fails never loses the studio's files (issue 9 item 4), real podman.

The pull is made to fail the way a poisoned or locked zone makes it fail:
git cannot commit in the server's versioned zone (a stale ``index.lock``).
The studio runs on the real base image (the busybox base has no Python for
the runner and the sync agent). The same rules with podman faked are in
tests/test_stop_recovery.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tarfile
import uuid

import pytest

pytestmark = pytest.mark.e2e


def _pod(studio) -> str:
    """The studio's pod under the local runtime."""
    from codestudio.runtime import local
    from codestudio.runtime.studios import pod_set_name

    return local.pod_name(pod_set_name(studio))


def _ctr(studio) -> str:
    return _pod(studio) + "-studio"

RUN = uuid.uuid4().hex[:6]
TEMPLATE = """\
id: {id}
base_image: {base}
permissions: {{all: true}}
blocks:
  - type: entrypoint
    label: Server
    command: [python3, -m, http.server, "8080"]
    port: 8080
  - type: file-sync
    mappings:
      - {{zone: code_studio-versioned}}
      - {{zone: project-lib-resources}}
"""
NOTEBOOK = "/home/codestudio/workspace/code_studio-versioned/notebook.ipynb"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codestudio", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture
def studio(tmp_path, debian_base, codestudio_home, monkeypatch, image_cleanup):
    monkeypatch.setenv("CODESTUDIO_GATEWAY_PORT", str(_free_port()))
    monkeypatch.delenv("CODESTUDIO_USER", raising=False)
    from codestudio.access import identify
    from codestudio.projects import create_project
    from codestudio.runtime import local
    from codestudio.runtime import studios as rts
    from codestudio.templates_store import add_template

    template_id = f"stop-e2e-{RUN}"
    image_cleanup(template_id)
    (tmp_path / "t.yaml").write_text(TEMPLATE.format(id=template_id, base=debian_base))
    who = identify()
    stored, _ = add_template(who, tmp_path / "t.yaml")
    create_project(who, "STOPS")
    s = rts.create_studio(who, "STOPS", "work", stored.id)
    try:
        s = rts.start_studio(who, s.id, timeout=120, quiet=True)
        yield {"who": who, "studio": s, "rts": rts, "local": local}
    finally:
        for left in rts.list_studios():
            rts.stop_studio(who, left.id, force=True, quiet=True)
            rts.delete_studio(who, left.id, purge=True)
        rts._gateway().stop()


def test_failed_pull_keeps_the_pod_until_files_are_saved_then_saves_them(studio):
    from codestudio.sync import zone_dir

    rts, local, s = studio["rts"], studio["local"], studio["studio"]
    proc = local.exec_run(_ctr(s), ["sh", "-c", f"printf 'unsynced cells' > {NOTEBOOK}"])
    assert proc.returncode == 0, proc.stderr
    zone = zone_dir("code_studio-versioned", studio_id=s.id, project_key="STOPS", user=s.owner)
    (zone / ".git" / "index.lock").write_text("")  # git add -A now fails: the pull fails
    # 1. The recovery folder cannot be made either: the stop refuses and the pod stays.
    s.dir.mkdir(parents=True, exist_ok=True)
    (s.dir / "recovery").write_text("in the way")
    result = _cli("studio", "stop", s.id)
    assert result.returncode == 1, result.stderr
    assert f"studio {s.id} was NOT stopped" in result.stderr and "index.lock" in result.stderr
    assert f"codestudio studio stop {s.id} --force" in result.stderr
    kept = rts.get_studio(s.id)
    assert kept.state == rts.RUNNING and local.container_running(_ctr(s))
    listed = json.loads(_cli("studio", "list", "--json").stdout)
    assert "NOT stopped" in listed[0]["message"]
    # The owner's work is still there, and the studio still serves.
    assert local.exec_run(_ctr(s), ["cat", NOTEBOOK]).stdout == "unsynced cells"
    # 2. Once a recovery folder can be written, the retried stop saves the files, then removes the pod.
    (s.dir / "recovery").unlink()
    result = _cli("studio", "stop", s.id)
    assert result.returncode == 0, result.stderr
    assert "the file pull failed" in result.stderr and "were saved to" in result.stderr
    assert not local.pod_exists(_pod(s))
    [folder] = (s.dir / "recovery").iterdir()
    with tarfile.open(folder / "files.tar") as tar:
        saved = tar.extractfile(NOTEBOOK.lstrip("/")).read()
    assert saved == b"unsynced cells"
    assert json.loads((folder / "recovery.json").read_text())["targets"] == [
        "/home/codestudio/workspace/code_studio-versioned", "/home/codestudio/workspace/project-lib-resources"]
    assert rts.get_studio(s.id).state == rts.STOPPED


def test_force_removes_the_pod_and_says_files_are_lost(studio):
    from codestudio.sync import zone_dir

    rts, local, s = studio["rts"], studio["local"], studio["studio"]
    zone = zone_dir("code_studio-versioned", studio_id=s.id, project_key="STOPS", user=s.owner)
    local.exec_run(_ctr(s), ["sh", "-c", f"printf x > {NOTEBOOK}"])
    (zone / ".git" / "index.lock").write_text("")
    s.dir.mkdir(parents=True, exist_ok=True)
    (s.dir / "recovery").write_text("in the way")
    result = _cli("studio", "stop", s.id, "--force")
    assert result.returncode == 0, result.stderr
    assert "removed with --force" in result.stderr and "unsynced changes are lost" in result.stderr
    assert not local.pod_exists(_pod(s))
    (zone / ".git" / "index.lock").unlink()


def test_a_container_that_died_is_saved_from_before_its_pod_goes(studio):
    """After a crash or a reboot the container is stopped, not gone: its files are copied out first."""
    from codestudio import containers

    rts, local, s = studio["rts"], studio["local"], studio["studio"]
    assert local.exec_run(_ctr(s), ["sh", "-c", f"printf 'after the last sync' > {NOTEBOOK}"]).returncode == 0
    containers.podman("stop", "-t", "0", _ctr(s))
    assert not local.container_running(_ctr(s)) and local.pod_exists(_pod(s))
    # start (like stop) goes through the stop's rules for what is left.
    result = _cli("studio", "stop", s.id)
    assert result.returncode == 0, result.stderr
    assert "its container was no longer running" in result.stderr and "were saved to" in result.stderr
    assert not local.pod_exists(_pod(s))
    [folder] = (s.dir / "recovery").iterdir()
    meta = json.loads((folder / "recovery.json").read_text())
    archive = meta["archives"]["/home/codestudio/workspace/code_studio-versioned"]
    with tarfile.open(folder / archive) as tar:
        [member] = [m for m in tar.getmembers() if m.name.endswith("notebook.ipynb")]
        assert tar.extractfile(member).read() == b"after the last sync"
