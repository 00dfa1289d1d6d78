"""Dockerfile escaping checked against the real buildah: values arrive exactly as written."""

from __future__ import annotations

import json
import uuid

import pytest

from codestudio import containers
from codestudio.blockapi import BuildState, Copy, Env, StepGroup
from codestudio.render import build_dockerfile
from codestudio.resources import ResourceResolver

pytestmark = pytest.mark.e2e

TRICKY = 'a "quoted" \'single\' $HOME ${PATH} \\ back\\\\slash # hash {braces} café ☕ \\n'


def test_labels_env_and_copy_survive_buildah(tmp_path):
    class Template:
        id = "escaping"
        path = tmp_path / "t.yaml"
        blocks = []

    state = BuildState(template_id="escaping", base_image="scratch", resources=ResourceResolver(tmp_path))
    state.groups.append(
        StepGroup(
            block=None,
            title="tricky",
            steps=[
                Env(values={"TRICKY": TRICKY}),
                Copy(dest="/data/file.txt", content=TRICKY),
            ],
        )
    )
    runner = {"schema": 1, "env": {"X": TRICKY}, "entrypoints": [{"label": TRICKY, "command": ["sh", "-c", TRICKY]}]}
    text, files, _ = build_dockerfile(Template, state, json.dumps(runner))
    # FROM scratch has no codestudio user; only the escaping is under test here.
    text = text.replace("--chown=root:root ", "").replace("USER root\n", "").replace("USER codestudio\n", "")
    context = tmp_path / "context"
    for rel, (data, mode) in files.items():
        (context / rel).parent.mkdir(parents=True, exist_ok=True)
        (context / rel).write_bytes(data)
    (tmp_path / "Dockerfile").write_text(text)
    tag = f"localhost/codestudio-test/escaping:{uuid.uuid4().hex[:8]}"
    containers.buildah("bud", "--isolation", "chroot", "-f", str(tmp_path / "Dockerfile"), "-t", tag, str(context))
    try:
        info = containers.image_inspect(tag)
        config = info["OCIv1"]["config"] if "OCIv1" in info else info["Config"]
        assert json.loads(config["Labels"]["io.codestudio.runner"]) == runner
        env = dict(item.split("=", 1) for item in config["Env"])
        assert env["TRICKY"] == TRICKY
        assert config["Labels"]["io.codestudio.template"] == "escaping"
    finally:
        containers.buildah("rmi", tag, check=False)


@pytest.mark.parametrize(
    "statements, instructions",
    [
        # A Unicode space after the backslash ends the instruction: the next line is its own.
        ("LABEL a=b \\\u00a0\nLABEL c=d", 2),
        ("LABEL a=b \\\u3000\nLABEL c=d", 2),
        ("LABEL a=b \\\u2009\nLABEL c=d", 2),
        # Spaces and tabs after it continue it.
        ("LABEL a=b \\ \t\n c=d", 1),
        # An escaped backslash at the end still continues in buildah 1.28 (newer parsers differ).
        ("LABEL a=b\\\\\n c=d", 1),
        # Comment and blank lines inside a continuation are dropped.
        ("LABEL a=b \\\n# LABEL x=y\n\n c=d", 1),
    ],
)
def test_continuation_rule_is_buildahs_own(tmp_path, statements, instructions):
    from codestudio.dockerfile import split_instructions

    assert len(split_instructions(statements)) == instructions
    (tmp_path / "Dockerfile").write_text(f"FROM scratch\n{statements}\nLABEL end=1\n", encoding="utf-8")
    tag = f"localhost/codestudio-test/continuation:{uuid.uuid4().hex[:8]}"
    proc = containers.buildah("bud", "--isolation", "chroot", "-t", tag, str(tmp_path))
    try:
        steps = [line for line in proc.stdout.splitlines() if line.startswith("STEP ")]
        assert len(steps) == instructions + 2, steps
        assert steps[-1].endswith(": LABEL end=1")
    finally:
        containers.buildah("rmi", tag, check=False)
