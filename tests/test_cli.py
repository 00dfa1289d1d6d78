"""The CLI surface of issue 2: blocks, validate, render, schema; exit statuses; nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def cs(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codestudio", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=120,
    )


def test_blocks_lists_the_advanced_types_with_distribution_and_version():
    result = cs("blocks", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["type"]: r for r in json.loads(result.stdout)}
    for t in ("dockerfile", "entrypoint", "action", "starter-files", "file-sync", "kubernetes"):
        assert rows[t]["distribution"] == "codestudio-advanced"
        assert rows[t]["version"] == "0.1.0"


def test_blocks_lists_every_standard_block_from_nine_distributions():
    result = cs("blocks", "--json")
    rows = [r for r in json.loads(result.stdout) if r["distribution"].startswith("codestudio-")]
    assert len(rows) == 15
    assert len({r["distribution"] for r in rows}) == 9
    for t in ("gradio", "dash", "voila"):
        assert {r["type"]: r["distribution"] for r in rows}[t] == f"codestudio-{t}"


def test_validate_exit_codes(write_template):
    assert cs("validate", str(EXAMPLES / "advanced.yaml")).returncode == 0
    bad = write_template("id: bad\nblocks:\n  - {type: entrypoint, label: x, command: [a], port: 70000}\n")
    result = cs("validate", str(bad))
    assert result.returncode == 2
    assert str(bad) in result.stderr and "blocks[0] (type: entrypoint)" in result.stderr and "'port'" in result.stderr


def test_render_writes_outputs_and_bad_input_writes_nothing(tmp_path, write_template):
    out = tmp_path / "out"
    result = cs("render", str(EXAMPLES / "advanced.yaml"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = write_template("id: bad\nblocks:\n  - {type: dockerfile, statements: 'FROM x'}\n")
    result = cs("render", str(bad), "-o", str(out))
    assert result.returncode == 2
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert before == after  # the earlier good render is untouched
    fresh = tmp_path / "fresh"
    assert cs("render", str(bad), "-o", str(fresh)).returncode == 2
    assert not fresh.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


@pytest.mark.parametrize("args", [["--project", "bad key"], ["--studio", "Bad_Id"]])
def test_render_refuses_bad_names(tmp_path, args):
    result = cs("render", str(EXAMPLES / "advanced.yaml"), "-o", str(tmp_path / "o"), *args)
    assert result.returncode == 2


def test_schema_covers_every_installed_block():
    result = cs("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    refs = [v["$ref"] for v in schema["properties"]["blocks"]["items"]["oneOf"]]
    assert "#/$defs/block-entrypoint" in refs
    ep = schema["$defs"]["block-entrypoint"]
    assert ep["properties"]["type"] == {"const": "entrypoint", "description": ep["properties"]["type"]["description"]}
    assert "port" in ep["properties"] and ep["additionalProperties"] is False


def test_schema_validates_the_examples():
    import jsonschema
    import yaml

    schema = json.loads(cs("schema").stdout)
    jsonschema.validate(yaml.safe_load((EXAMPLES / "advanced.yaml").read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"id": "x", "blocks": [{"type": "entrypoint", "label": "x", "command": ["a"], "bogus": 1}]}, schema)


def test_help_does_not_import_heavy_libraries():
    result = cs("--help", env={"CODESTUDIO_DEBUG_IMPORTS": "1"})
    assert result.returncode == 0
    assert result.stderr.strip() == "[]", result.stderr


def test_third_party_block_installed_with_pip_appears_and_renders(tmp_path):
    """A block distribution installed with pip, no engine change: listed and rendered."""
    target = tmp_path / "site"
    import shutil

    # Build from a copy: setuptools writes build/ and egg-info next to the sources.
    fixture = tmp_path / "codestudio-hello"
    shutil.copytree(Path(__file__).parent / "fixtures" / "codestudio-hello", fixture)
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(fixture)],
        capture_output=True,
        text=True,
    )
    assert pip.returncode == 0, pip.stderr
    env = {"PYTHONPATH": str(target)}
    rows = {r["type"]: r for r in json.loads(cs("blocks", "--json", env=env).stdout)}
    assert rows["hello"]["distribution"] == "codestudio-hello" and rows["hello"]["version"] == "1.2.3"
    template = tmp_path / "t.yaml"
    template.write_text("id: hi\nblocks:\n  - {type: hello, greeting: \"it's me\"}\n")
    result = cs("render", str(template), "-o", str(tmp_path / "out"), env=env)
    assert result.returncode == 0, result.stderr
    dockerfile = (tmp_path / "out" / "Dockerfile").read_text()
    runs = [json.loads(line[4:]) for line in dockerfile.splitlines() if line.startswith("RUN [")]
    assert ["/bin/sh", "-e", "-c", "echo 'it'\"'\"'s me' > /tmp/hello.txt"] in runs
    runner = json.loads((tmp_path / "out" / "runner.json").read_text())
    assert runner["entrypoints"][0]["port"] == 8765

    # The same block's hook raising: named with its distribution and version,
    # exit 1, no traceback (unless --debug), nothing written.
    template.write_text("id: hi\nblocks:\n  - {type: dockerfile, statements: RUN true}\n  - {type: hello, fail: true}\n")
    for args in (["validate", str(template)], ["render", str(template), "-o", str(tmp_path / "failed")]):
        result = cs(*args, env=env)
        assert result.returncode == 1, result.stderr
        for part in ("codestudio-hello 1.2.3", "contribute_dockerfile", "blocks[1] (type: hello)",
                     "RuntimeError: the greeting service is down"):
            assert part in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "failed").exists()
    result = cs("--debug", "validate", str(template), env=env)
    assert result.returncode == 1 and "Traceback" in result.stderr and "the greeting service is down" in result.stderr


def test_render_refuses_a_folder_holding_other_files(tmp_path):
    out = tmp_path / "project"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = cs("render", str(EXAMPLES / "advanced.yaml"), "-o", str(out))
    assert result.returncode == 2 and "not a previous render" in result.stderr
    assert (out / "notes.txt").read_text() == "keep me" and sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    assert cs("render", str(EXAMPLES / "advanced.yaml"), "-o", str(tmp_path / "file")).returncode == 2
    # An empty folder and a previous render are fine.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cs("render", str(EXAMPLES / "advanced.yaml"), "-o", str(empty)).returncode == 0
    assert cs("render", str(EXAMPLES / "advanced.yaml"), "-o", str(empty)).returncode == 0
