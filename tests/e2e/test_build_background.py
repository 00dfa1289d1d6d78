"""A build returns once buildah has tagged the image; buildah removes its step containers in the background.

Real buildah and podman. To see *when* the build command returned relative
to buildah's exit without racing the clock, ``buildah bud`` runs through a
wrapper on PATH that, after the real buildah has finished (clean-up
included), holds its exit until the test releases it: a build command that
waits for buildah's exit cannot return while it is held (on a build that
waits, the wrapper gives up after a minute and the test fails).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from codestudio import containers

pytestmark = pytest.mark.e2e
CLI = str(Path(sys.executable).with_name("codestudio"))
RUN_LABEL = "io.codestudio.test-run"

TEMPLATE = """\
id: {id}
base_image: {base}
blocks:
  - type: dockerfile
    label: files
    run_as_root: true
    statements: |
      RUN mkdir /data && for i in $(seq 1 300); do echo $i > /data/f$i; done
      RUN echo {marker} > /opt/marker
"""

# Only the first `bud` is held; `touch held` marks it taken.
WRAPPER = """#!/bin/sh
case " $* " in
  *" bud "*)
    if [ ! -e "{dir}/held" ]; then
      touch "{dir}/held" "{dir}/running"
      cat /proc/$$/stat > "{dir}/stat"
      {buildah} "$@"; status=$?
      i=0
      while [ ! -e "{dir}/release" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
      rm -f "{dir}/running"
      exit $status
    fi;;
esac
exec {buildah} "$@"
"""


@pytest.fixture
def own_base(tiny_base):
    """The tiny base with a label of this test run: every container of our builds carries it."""
    run = uuid.uuid4().hex[:8]
    ref = f"localhost/codestudio-test-tiny:bg-{run}"
    container = containers.buildah("from", "--pull=never", tiny_base).stdout.strip().splitlines()[-1]
    try:
        containers.buildah("config", "--label", f"{RUN_LABEL}={run}", container)
        containers.buildah("commit", "-q", container, ref)
    finally:
        containers.buildah("rm", container, check=False)
    yield ref, run
    containers.remove_image(ref)


def own_containers(run: str) -> list[str]:
    """Names of the buildah containers (any state) whose image comes from this run's base."""
    listed = json.loads(containers.buildah("containers", "--all", "--json").stdout or "null") or []
    return [c["containername"] for c in listed
            if (containers.image_labels(c["imageid"]) or {}).get(RUN_LABEL) == run]


def test_the_build_returns_before_buildah_exits_and_leaves_no_containers(tmp_path, own_base, image_cleanup):
    base, run = own_base
    template_id = f"test-bg-{run}"
    image_cleanup(template_id)
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE.format(id=template_id, base=base, marker="one"))
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "buildah").write_text(WRAPPER.format(dir=tmp_path, buildah=shutil.which("buildah")))
    (shims / "buildah").chmod(0o755)
    env = dict(os.environ, PATH=f"{shims}:{os.environ['PATH']}")

    # Its own process group, as a shell runs a command.
    command = subprocess.Popen([CLI, "template", "build", "--json", str(path)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    out, err = command.communicate(timeout=600)
    assert command.returncode == 0, err
    assert (tmp_path / "running").exists(), "the build command returned only after buildah had exited"
    built = json.loads(out)
    assert (built["outcome"], built["cleaning_up"]) == ("succeeded", True)
    timeline = Path(built["log_path"]).with_name("timeline.txt")
    assert timeline.read_text().splitlines()[-1].endswith("# tagged; buildah cleans up in the background")
    # Neither in the command's process group nor in its session: a Ctrl-C at the shell
    # or the terminal closing after the command returned does not reach buildah.
    _state, _ppid, pgrp, session = (tmp_path / "stat").read_text().rsplit(")", 1)[1].split()[:4]
    assert command.pid not in (int(pgrp), int(session))

    # The image is there, tagged both ways, and works while buildah is still running.
    image, latest = built["image"], f"localhost/codestudio/{template_id}:latest"
    assert containers.image_id(image) == containers.image_id(latest) == built["image_id"]
    assert _run(image, "cat", "/opt/marker") == "one\n"

    # A second build of the same template meanwhile (the template's lock is free again).
    path.write_text(TEMPLATE.format(id=template_id, base=base, marker="two"))
    second = subprocess.run([CLI, "template", "build", "--json", str(path)], capture_output=True, text=True,
                            env=env, timeout=600)
    assert second.returncode == 0, second.stderr
    rebuilt = json.loads(second.stdout)
    assert rebuilt["outcome"] == "succeeded" and (tmp_path / "running").exists()
    assert _run(latest, "cat", "/opt/marker") == "two\n"

    (tmp_path / "release").touch()
    for log in (Path(built["log_path"]), Path(rebuilt["log_path"])):
        _wait_for_exit_line(log)
        assert log.read_text().splitlines()[-1] == "# exit status 0"
    assert Path(built["log_path"]).with_name("timeline.txt").read_text().splitlines()[-1].endswith("# exit status 0")
    assert own_containers(run) == []


def test_an_in_process_build_reaps_buildah_and_leaves_no_containers(tmp_path, own_base, image_cleanup):
    """The server builds in its own long-lived process: the background buildah is reaped, no zombie."""
    from codestudio.images import bud
    from codestudio.images.builder import build_template_file

    base, run = own_base
    template_id = f"test-bgp-{run}"
    image_cleanup(template_id)
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE.format(id=template_id, base=base, marker="three"))
    result = build_template_file(path, quiet=True)
    assert result.outcome == "succeeded"
    assert bud.wait_for_cleanups(timeout=300)
    assert result.log_path.read_text().splitlines()[-1] == "# exit status 0"
    assert own_containers(run) == []
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _zombie_child(p)]
    assert _run(result.image, "cat", "/opt/marker") == "three\n"


def _wait_for_exit_line(log: Path) -> None:
    deadline = time.monotonic() + 300  # a safety net, not a measurement
    while not log.read_text().rstrip().splitlines()[-1].startswith("# exit status"):
        assert time.monotonic() < deadline, f"buildah never finished: {log}"
        time.sleep(0.1)


def _zombie_child(proc: Path) -> bool:
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] == "Z" and int(fields[1]) == os.getpid()


def _run(image: str, *command: str) -> str:
    return containers.podman("run", "--rm", "--network", "none", "--entrypoint", command[0], image, *command[1:]).stdout
