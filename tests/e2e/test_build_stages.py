"""Independent blocks as parallel stages: the same image contents as the serial build.

JupyterLab (``contribute_stage``) builds in a stage of its own and is copied
into the image; the code env after it runs in the image's stage. The serial
build (``build: {parallel_stages: false}``) and the parallel one share
JupyterLab's install layer (same parent, same step), so the second costs
little.
"""

from __future__ import annotations

import json
import uuid

import pytest

from codestudio import containers
from codestudio.render import render_template
from codestudio.templates_store import build_template

pytestmark = pytest.mark.e2e

LISTING = ("find /opt/codestudio -path '*/__pycache__' -prune -o -printf '%p %m %u:%g %y\\n' | sort; "
           "cat /opt/codestudio/jupyterlab/share/jupyter/kernels/*/kernel.json; "
           "/opt/codestudio/jupyterlab/bin/jupyter kernelspec list --json")


def run_in(image: str, *command: str) -> str:
    return containers.podman("run", "--rm", "--network", "none", "--entrypoint", command[0], image, *command[1:]).stdout


def test_parallel_stages_give_the_serial_image(tmp_path, debian_base, image_cleanup, codestudio_home):
    run = uuid.uuid4().hex[:8]
    images = {}
    runner = {}
    for mode, build in (("serial", "build:\n  parallel_stages: false\n"), ("parallel", "")):
        template_id = f"test-stages-{mode}-{run}"
        image_cleanup(template_id)
        path = tmp_path / f"{mode}.yaml"
        path.write_text(f"id: {template_id}\n{build}blocks:\n  - type: jupyterlab\n"
                        "  - type: codeenv\n    name: py\n    packages: [six==1.16.0]\n")
        rendered = render_template(path)
        stages = {s.stage for s in rendered.steps}
        assert len(stages) == (3 if mode == "parallel" else 2)  # build tools (+ JupyterLab) + the image
        result = build_template(str(path), quiet=True)
        images[mode] = result.image
        label = json.loads(containers.image_labels(result.image)["io.codestudio.runner"])
        label.pop("template")
        runner[mode] = label
        if mode == "parallel":
            assert "--jobs 3" in result.log_path.read_text().split("\n", 2)[1]
    assert runner["serial"] == runner["parallel"]
    assert run_in(images["serial"], "sh", "-c", LISTING) == run_in(images["parallel"], "sh", "-c", LISTING)
    # The kernel the code env registered is there and runs in the env's interpreter.
    spec = json.loads(run_in(images["parallel"], "cat", "/opt/codestudio/jupyterlab/share/jupyter/kernels/py/kernel.json"))
    assert spec["argv"][0] == "/opt/codestudio/code-envs/py/bin/python"
    assert run_in(images["parallel"], spec["argv"][0], "-c", "import ipykernel, six; print(six.__version__)") == "1.16.0\n"
