"""Reconciliation with real podman and nginx: the faults of issue 10.

A pod removed while RUNNING; the gateway killed; the engine killed (SIGKILL)
during start and during stop; two ``studio start`` at once; a reboot
(every pod removed, nginx stopped). In each case the state shown is true,
the next start works, and no zone file is lost.

One template (a Python HTTP server on the Debian base, one synced zone) and
one data dir for the module; each test uses its own studio.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:6]
TEMPLATE = """\
id: {id}
base_image: {base}
permissions:
  all: true
blocks:
  - type: entrypoint
    label: Files
    command: [python3, -m, http.server, "8301", --bind, 0.0.0.0]
    port: 8301
    proxied_subpath: /
  - type: starter-files
    files: {{notes/README.md: "Start here\\n"}}
  - type: file-sync
    mappings:
      - {{zone: code_studio-versioned}}
"""
INSIDE = "/home/codestudio/workspace/code_studio-versioned"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(debian_base, tmp_path_factory):
    home = tmp_path_factory.mktemp("reconcile-home")
    folder = tmp_path_factory.mktemp("reconcile-template")
    template_id = f"rc-e2e-{RUN}"
    (folder / "template.yaml").write_text(TEMPLATE.format(id=template_id, base=debian_base))
    gateway_port = str(_free_port())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODESTUDIO_HOME", str(home))
        mp.setenv("CODESTUDIO_GATEWAY_PORT", gateway_port)
        mp.delenv("CODESTUDIO_USER", raising=False)
        from codestudio.access import identify
        from codestudio.runtime import studios as rts
        from codestudio.templates_store import add_template, build_template

        from codestudio.projects import create_project

        who = identify()
        create_project(who, "RC")
        stored, _ = add_template(who, folder / "template.yaml")
        build_template(stored.id, quiet=True)
        try:
            yield {"who": who, "rts": rts, "template": stored.id, "home": home, "gateway_port": gateway_port}
        finally:
            for s in rts.list_studios(all_users=True, reconciled=False):
                rts.delete_studio(who, s.id, force=True)
            rts._gateway().stop()
            from codestudio import containers

            proc = containers.buildah("images", "--format", "{{.Name}}:{{.Tag}}", f"localhost/codestudio/{template_id}", check=False)
            for ref in sorted(set(proc.stdout.split())):
                containers.remove_image(ref)


@pytest.fixture(autouse=True)
def _env(env, codestudio_home, monkeypatch):
    """Point each test (and the CLI it runs) at the module's data dir and gateway."""
    monkeypatch.setenv("CODESTUDIO_HOME", str(env["home"]))
    monkeypatch.setenv("CODESTUDIO_GATEWAY_PORT", env["gateway_port"])


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "codestudio", *args], capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"codestudio {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def _status(sid: str) -> dict:
    return json.loads(_cli("studio", "status", sid, "--json").stdout)


def _pod(env, sid: str) -> str:
    from codestudio.runtime import local

    return local.pod_name(env["rts"].pod_set_name(env["rts"].get_studio(sid)))


def _exec(env, sid: str, script: str) -> str:
    from codestudio.runtime import local

    proc = local.exec_run(_pod(env, sid) + "-studio", ["sh", "-c", script])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _zone(env, sid: str):
    from codestudio.sync import zone_dir

    s = env["rts"].get_studio(sid)
    return zone_dir("code_studio-versioned", studio_id=s.id, project_key=s.project, user=s.owner)


def _new(env, name: str) -> str:
    return env["rts"].create_studio(env["who"], "RC", name, env["template"]).id


def _serves(env, sid: str) -> bool:
    url = env["rts"].access_url(env["who"], sid, port=8301)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor())
    try:
        with opener.open(url, timeout=10) as resp:
            return resp.status == 200
    except OSError:
        return False


def _pod_exists(env, sid: str) -> bool:
    from codestudio.runtime import local

    return local.pod_exists(_pod(env, sid))


def _wait_state(env, sid: str, state: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if env["rts"].get_studio(sid).state == state:
            return
        time.sleep(0.05)
    raise AssertionError(f"studio {sid} never became {state}")


def test_pod_removed_while_running(env):
    from codestudio import containers

    sid = _new(env, "removed")
    _cli("studio", "start", sid, "-q")
    containers.podman("rm", "-f", "-t", "0", f"{_pod(env, sid)}-studio")
    st = _status(sid)
    assert st["state"] == "STOPPED" and "is gone" in st["message"], st
    assert (_zone(env, sid) / "notes" / "README.md").read_text() == "Start here\n"
    _cli("studio", "start", sid, "-q")
    assert _status(sid)["state"] == "RUNNING" and _serves(env, sid)


def test_gateway_killed(env):
    sid = _new(env, "gateway")
    _cli("studio", "start", sid, "-q")
    from codestudio.gateway.procfs import children

    gw = env["rts"]._gateway()
    master = gw.pid()
    workers = children(master)
    # The whole gateway, master first (it would respawn killed workers), then its
    # workers (they would go on serving alone).
    for pid in [master, *workers]:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while gw.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _serves(env, sid)
    assert _status(sid)["state"] == "RUNNING"  # true: the pod runs, only the gateway is down
    doctor = _cli("doctor", "--json", check=False)
    assert doctor.returncode == 1 and "gateway" in doctor.stdout
    out = _cli("studio", "start", sid)
    assert "already running" in out.stderr
    assert _serves(env, sid)  # starting it made sure the gateway serves it again


def test_engine_killed_during_start(env):
    sid = _new(env, "killed-start")
    proc = subprocess.Popen([sys.executable, "-m", "codestudio", "studio", "start", sid, "-q"])
    try:
        deadline = time.monotonic() + 120
        while not (env["rts"].get_studio(sid).state == "STARTING" and _pod_exists(env, sid)):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert env["rts"].get_studio(sid).state == "STARTING"  # what the killed command left
    st = _status(sid)
    assert st["state"] == "STOPPED" and "interrupted start" in st["message"], st
    assert not _pod_exists(env, sid)
    _cli("studio", "start", sid, "-q")
    assert _serves(env, sid)
    assert (_zone(env, sid) / "notes" / "README.md").exists()


def test_engine_killed_during_stop_loses_no_edit(env):
    sid = _new(env, "killed-stop")
    _cli("studio", "start", sid, "-q")
    _exec(env, sid, f"echo 'edited before the stop' > {INSIDE}/notes/README.md")
    proc = subprocess.Popen([sys.executable, "-m", "codestudio", "studio", "stop", sid, "-q"])
    try:
        _wait_state(env, sid, "STOPPING")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    listed = json.loads(_cli("studio", "list", "--json").stdout)
    [row] = [r for r in listed if r["id"] == sid]
    assert row["state"] == "STOPPED", row
    assert (_zone(env, sid) / "notes" / "README.md").read_text() == "edited before the stop\n"
    assert not _pod_exists(env, sid)
    _cli("studio", "start", sid, "-q")
    assert _exec(env, sid, f"cat {INSIDE}/notes/README.md") == "edited before the stop\n"


def test_two_starts_at_once(env):
    from codestudio import containers

    sid = _new(env, "twice")
    procs = [subprocess.Popen([sys.executable, "-m", "codestudio", "studio", "start", sid], stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert sum("already running" in e for e in errs) == 1, errs
    names = containers.podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert names.count(f"{_pod(env, sid)}-studio") == 1
    assert _serves(env, sid)


def test_reboot_every_pod_and_the_gateway_gone(env):
    from codestudio import containers

    sid = _new(env, "reboot")
    _cli("studio", "start", sid, "-q")
    _exec(env, sid, f"echo synced > {INSIDE}/kept.txt")
    _cli("studio", "sync", sid)
    # The "reboot": our pods are gone, nginx is not running.
    for s in env["rts"].list_studios(all_users=True, reconciled=False):
        containers.podman("rm", "-f", "-t", "0", f"{_pod(env, s.id)}-studio", check=False)
    env["rts"]._gateway().stop()
    _cli("studio", "start", sid, "-q")
    assert _status(sid)["state"] == "RUNNING" and _serves(env, sid)
    assert (_zone(env, sid) / "kept.txt").read_text() == "synced\n"
    assert _exec(env, sid, f"cat {INSIDE}/kept.txt") == "synced\n"
    doctor = json.loads(_cli("doctor", "--fix", "--json").stdout)
    assert doctor["healthy"], doctor
