"""Render-level tests of the dash block."""

import json
import subprocess
import textwrap
from importlib import resources

import pytest

from codestudio.errors import TemplateError
from codestudio.render import StudioContext, render_template

FILES = resources.files("codestudio_dash").joinpath("files")


@pytest.fixture
def render(tmp_path, monkeypatch):
    monkeypatch.setenv("CODESTUDIO_HOME", str(tmp_path / "home"))

    def _render(blocks: str, studio=None):
        path = tmp_path / "template.yaml"
        path.write_text("id: t\nblocks:\n" + textwrap.indent(textwrap.dedent(blocks), "  "))
        return render_template(path, studio)

    return _render


def test_defaults_own_env_webapp_and_starter_file(render):
    r = render("- type: dash\n")
    install = r.state.groups[0].steps[0]
    assert install.script.startswith("python3 -m venv /opt/codestudio/dash\n")
    assert "dash==4.4.1" in install.script
    doc = json.loads(r.runner_json)
    (ep,) = doc["entrypoints"]
    assert ep["command"] == [
        "/opt/codestudio/dash/start.sh",
        "/opt/codestudio/dash/bin/python",
        "/home/codestudio/workspace/code_studio-versioned/dash/app.py",
        "8050",
        "${DKU_CODE_STUDIO_BROWSER_PATH_8050}",
    ]
    # Dash serves the full browser path, which the gateway passes unchanged.
    assert ep["launch_in_webapp"] and ep["proxied_subpath"] == "$request_uri" and ep["label"] == "Dash"
    assert doc["probe"] == {"kind": "http", "port": 8050, "url": "${baseUrl}/_dash-layout"}
    assert "path: /code-studios/P/s/8050/_dash-layout\n" in render("- type: dash\n", StudioContext("P", "s")).kubernetes_yaml
    ((_, starter),) = r.state.starter_files
    assert (starter.zone, starter.path) == ("code_studio-versioned", "dash/app.py")
    assert starter.content == FILES.joinpath("app.py").read_bytes()
    dests = [getattr(s, "dest", None) for s in r.state.groups[0].steps]
    assert "/opt/codestudio/dash/restart_on_change.py" in dests and "/opt/codestudio/dash/example/app.py" in dests


def test_example_app_and_start_script_are_valid():
    compile(FILES.joinpath("app.py").read_text(), "app.py", "exec")
    subprocess.run(["sh", "-n", str(FILES.joinpath("start.sh"))], check=True)
    text = FILES.joinpath("start.sh").read_text()
    for word in ('DASH_URL_BASE_PATHNAME="$base/"', "HOST=0.0.0.0", 'PORT="$port"', "restart_on_change.py"):
        assert word in text


def test_code_env_defined_before_gets_dash(render):
    r = render(
        """
        - {type: codeenv, name: py, packages: [pandas==2.2.3]}
        - {type: dash, code_env: py, packages: [plotly]}
        """
    )
    steps = r.state.groups[1].steps
    assert not any("-m venv /opt/codestudio/dash" in (getattr(s, "script", "") or "") for s in steps)
    assert any("install-python /opt/codestudio/code-envs/py/bin/python " in (getattr(s, "script", "") or "")
               and "dash==4.4.1" in s.script and "plotly" in s.script for s in steps)
    assert json.loads(r.runner_json)["entrypoints"][0]["command"][1] == "/opt/codestudio/code-envs/py/bin/python"


@pytest.mark.parametrize(
    "blocks, expected",
    [
        ("- {type: dash, code_env: nope}\n", ["blocks[0] (type: dash)", "field 'code_env'", "no code env named 'nope'"]),
        ("- {type: dash, code_env: py}\n- {type: codeenv, name: py}\n",
         ["blocks[0] (type: dash)", "field 'code_env'", "defined by blocks[1] (type: codeenv), after this block"]),
        ("- {type: dash, version: 'not a version'}\n", ["field 'version'", "not a version number"]),
        ("- {type: dash, app: ../x.py}\n", ["field 'app'"]),
    ],
)
def test_bad_input(render, blocks, expected):
    with pytest.raises(TemplateError) as exc:
        render(blocks)
    for text in expected:
        assert text in str(exc.value)
