"""A no-change rebuild runs neither buildah nor podman, and stays right when images change behind its back."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from codestudio import containers

pytestmark = pytest.mark.e2e
CLI = str(Path(sys.executable).with_name("codestudio"))

TEMPLATE = """
- type: dockerfile
  label: marker
  run_as_root: true
  statements: |
    RUN echo unchanged > /opt/marker
"""


@pytest.fixture
def tool_shims(tmp_path):
    """An environment whose PATH finds recording, failing ``buildah`` and ``podman`` first; returns (env, log)."""
    shims, log = tmp_path / "shims", tmp_path / "tool-calls.log"
    shims.mkdir()
    for tool in ("buildah", "podman"):
        shim = shims / tool
        shim.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\nexit 97\n')
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ, PATH=f"{shims}:{os.environ['PATH']}")
    return env, log


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env)


def test_an_unchanged_template_builds_with_no_buildah_or_podman_call(tiny_template, tool_shims):
    env, log = tool_shims
    path = tiny_template(TEMPLATE, name="unchanged")
    first = cli("template", "build", "--json", str(path))
    assert first.returncode == 0, first.stderr
    built = json.loads(first.stdout)
    assert built["outcome"] == "succeeded"
    assert cli("template", "add", str(path)).returncode == 0

    for ref in (str(path), built["template_id"]):  # a file, then the stored template
        again = cli("template", "build", "--json", ref, env=env)
        assert again.returncode == 0, again.stderr
        assert (json.loads(again.stdout)["outcome"], json.loads(again.stdout)["image_id"]) == ("skipped", built["image_id"])
        assert not log.exists(), f"a no-change build of {ref} ran: {log.read_text()}"


def test_image_ids_follow_removals_and_retags_made_outside_the_engine(tiny_template, tiny_base):
    path = tiny_template(TEMPLATE, name="retag")
    first = cli("template", "build", "--json", str(path))
    built = json.loads(first.stdout)
    image, latest = built["image"], f"localhost/codestudio/{built['template_id']}:latest"

    def buildah_says(ref: str) -> str | None:
        info = containers.image_inspect(ref)
        return None if info is None else info["FromImageID"]

    assert containers.image_id(image) == buildah_says(image) == built["image_id"]

    containers.remove_image(latest)  # someone ran `buildah rmi ...:latest`
    assert containers.image_id(latest) is None
    again = json.loads(cli("template", "build", "--json", str(path)).stdout)
    assert again["outcome"] == "skipped"
    assert containers.image_id(latest) == buildah_says(latest) == built["image_id"]  # the build put it back

    containers.tag_image(tiny_base, image)  # someone pointed the hash tag at another image
    assert containers.image_id(image) == buildah_says(image) == buildah_says(tiny_base) != built["image_id"]

    containers.remove_image(image)
    assert containers.image_id(image) is None
    rebuilt = json.loads(cli("template", "build", "--json", str(path)).stdout)
    assert rebuilt["outcome"] == "succeeded"  # no image under its hash: built (from cache) and tagged again
    assert containers.image_id(image) == buildah_says(image) == rebuilt["image_id"]
