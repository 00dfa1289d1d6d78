"""Independent blocks as parallel stages: the same image contents as the serial build.

JupyterLab and a small third-party tool (both ``contribute_stage``, the
template's leading run) build in stages of their own and are copied into
the image; the code env after them runs in the image's stage. The serial
build (``build: {parallel_stages: false}``) and the parallel one share
JupyterLab's install layer (same parent, same step), so the second costs
little. A single independent block builds in place (docs/building.md).
"""

from __future__ import annotations

import json
import uuid

import pytest

from codestudio import containers, hookimpl
from codestudio.blockapi import Block, Run
from codestudio.images import build_rendered
from codestudio.render import render_template

pytestmark = pytest.mark.e2e

LISTING = ("find /opt/codestudio -path '*/__pycache__' -prune -o -printf '%p %m %u:%g %y\\n' | sort; "
           "cat /opt/codestudio/jupyterlab/share/jupyter/kernels/*/kernel.json; "
           "/opt/codestudio/jupyterlab/bin/jupyter kernelspec list --json")


def run_in(image: str, *command: str) -> str:
    return containers.podman("run", "--rm", "--network", "none", "--entrypoint", command[0], image, *command[1:]).stdout


class Tool(Block):
    """An independent block writing its own folder (the third-party path of contribute_stage)."""

    @hookimpl
    def contribute_dockerfile(self, block):
        return [Run(script="mkdir -p /opt/codestudio/tool && echo built > /opt/codestudio/tool/marker")]

    @hookimpl
    def contribute_stage(self, block):
        return ["/opt/codestudio/tool"]


def test_parallel_stages_give_the_serial_image(tmp_path, debian_base, image_cleanup, codestudio_blocks,
                                               codestudio_block):
    codestudio_block("stage-tool", Tool())
    run = uuid.uuid4().hex[:8]
    images = {}
    runner = {}
    for mode, build in (("serial", "build:\n  parallel_stages: false\n"),
                        ("parallel", "build:\n  parallel_stages: true\n")):
        template_id = f"test-stages-{mode}-{run}"
        image_cleanup(template_id)
        path = tmp_path / f"{mode}.yaml"
        path.write_text(f"id: {template_id}\n{build}blocks:\n  - type: jupyterlab\n  - type: stage-tool\n"
                        "  - type: codeenv\n    name: py\n    packages: [six==1.16.0]\n")
        rendered = render_template(path, blocks=codestudio_blocks)
        stages = {s.stage for s in rendered.steps if s.label != "codestudio build tools"}
        assert len(stages) == (3 if mode == "parallel" else 1)  # (JupyterLab + the tool +) the image
        result = build_rendered(rendered, quiet=True)
        images[mode] = result.image
        label = json.loads(containers.image_labels(result.image)["io.codestudio.runner"])
        label.pop("template")
        runner[mode] = label
        if mode == "parallel":
            assert "--jobs 3" in result.log_path.read_text().split("\n", 2)[1]
        assert "uv==" not in rendered.dockerfile  # the build tools are an image, not built here
    assert runner["serial"] == runner["parallel"]
    assert run_in(images["serial"], "sh", "-c", LISTING) == run_in(images["parallel"], "sh", "-c", LISTING)
    # The kernel the code env registered is there and runs in the env's interpreter.
    spec = json.loads(run_in(images["parallel"], "cat", "/opt/codestudio/jupyterlab/share/jupyter/kernels/py/kernel.json"))
    assert spec["argv"][0] == "/opt/codestudio/code-envs/py/bin/python"
    assert run_in(images["parallel"], spec["argv"][0], "-c", "import ipykernel, six; print(six.__version__)") == "1.16.0\n"
