"""Render-level tests of the codeenv block."""

import json
import textwrap

import pytest

from codestudio.errors import TemplateError
from codestudio.render import render_template


@pytest.fixture
def render(tmp_path, monkeypatch):
    monkeypatch.setenv("CODESTUDIO_HOME", str(tmp_path / "home"))

    def _render(blocks: str, files: dict[str, str] | None = None):
        for name, text in (files or {}).items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(text)
        path = tmp_path / "template.yaml"
        path.write_text("id: t\nblocks:\n" + textwrap.indent(textwrap.dedent(blocks), "  "))
        return render_template(path)

    return _render


def test_venv_and_packages_in_own_group(render):
    r = render("""
        - type: codeenv
          name: py-ml
          label: ML
          packages: [pandas==2.2.3, "requests[socks]>=2", "tomli; python_version < '3.11'"]
    """)
    (group,) = r.state.groups
    (step,) = group.steps
    assert step.script.splitlines() == [
        "python3 -m venv /opt/codestudio/code-envs/py-ml",
        "/opt/codestudio/code-envs/py-ml/bin/python -m pip install --no-cache-dir --disable-pip-version-check "
        "--no-input pandas==2.2.3 'requests[socks]>=2' 'tomli; python_version < '\"'\"'3.11'\"'\"''",
    ]
    ((_, env),) = r.state.code_envs
    assert (env.name, env.label, env.path, env.python) == (
        "py-ml", "ML", "/opt/codestudio/code-envs/py-ml", "/opt/codestudio/code-envs/py-ml/bin/python")
    # A code env alone serves nothing.
    assert json.loads(r.runner_json)["entrypoints"] == []


def test_requirements_file_python_and_path(render):
    r = render("""
        - type: codeenv
          name: legacy
          python: /usr/bin/python3.11
          path: /opt/envs/legacy
          requirements: files/requirements.txt
    """, {"files/requirements.txt": "numpy==2.1.0\n"})
    copy, run = r.state.groups[0].steps
    assert copy.dest == "/opt/envs/legacy/.codestudio/requirements/0-requirements.txt"
    assert "/usr/bin/python3.11 -m venv /opt/envs/legacy" in run.script
    assert "-r /opt/envs/legacy/.codestudio/requirements/0-requirements.txt" in run.script
    assert r.context_files[".codestudio/blocks/00-codeenv/0/requirements.txt"][0] == b"numpy==2.1.0\n"
    assert r.state.code_envs[0][1].python == "/opt/envs/legacy/bin/python"


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("packages", "['pandas; rm -rf /']", "not a pip requirement"),
        ("packages", "['--index-url=http://evil/']", "pip option"),
        ("packages", '["pandas\\nnumpy"]', "newline"),
        ("name", "Py_ML", "not a slug"),
        ("python", "'python3; id'", "interpreter name"),
        ("path", "relative/env", "absolute path"),
        ("requirements", "../outside.txt", "'..'"),
        ("requirements", "missing.txt", "no such file"),
    ],
)
def test_bad_input_names_the_field(render, field, value, expected):
    params = {"name": "env", field: value} if field != "name" else {"name": value}
    body = "\n".join(f"  {k}: {v}" for k, v in params.items())
    with pytest.raises(TemplateError) as exc:
        render(f"- type: codeenv\n{body}\n")
    text = str(exc.value)
    assert "blocks[0]" in text and field in text and expected in text, text


def test_two_code_envs_and_name_clash(render):
    r = render("""
        - type: codeenv
          name: a
        - type: codeenv
          name: b
    """)
    assert [e.name for _, e in r.state.code_envs] == ["a", "b"]
    with pytest.raises(TemplateError) as exc:
        render("""
            - type: codeenv
              name: a
            - type: codeenv
              name: a
        """)
    assert "blocks[1]" in str(exc.value) and "blocks[0]" in str(exc.value)


def test_same_path_twice_is_an_error(render):
    with pytest.raises(TemplateError) as exc:
        render("""
            - type: codeenv
              name: a
              path: /opt/envs/x
            - type: codeenv
              name: b
              path: /opt/envs/x
        """)
    assert "blocks[1] (type: codeenv): field 'path'" in str(exc.value)
    assert "blocks[0]" in str(exc.value)
