"""Render-level tests of the streamlit block."""

import json
import subprocess
import sys
from importlib import resources

import pytest

from codestudio.errors import TemplateError
from codestudio.render import StudioContext

FILES = resources.files("codestudio_streamlit").joinpath("files")


@pytest.fixture
def render(codestudio_render):
    """A template made of the given blocks, rendered (codestudio.testing)."""
    return codestudio_render


def test_defaults_own_env_webapp_and_starter_file(render):
    r = render("- type: streamlit\n")
    install = r.state.groups[0].steps[0]
    assert install.script.startswith("/opt/codestudio-build/bin/install-python --venv python3 /opt/codestudio/streamlit ")
    assert "streamlit==1.67.0" in install.script
    doc = json.loads(r.runner_json)
    (ep,) = doc["entrypoints"]
    assert ep["command"] == [
        "/opt/codestudio/streamlit/start.sh",
        "/opt/codestudio/streamlit/bin/python",
        "/home/codestudio/workspace/code_studio-versioned/streamlit/app.py",
        "8501",
        "${DKU_CODE_STUDIO_BROWSER_PATH_8501}",
    ]
    assert ep["launch_in_webapp"] and ep["proxied_subpath"] == "$request_uri" and ep["port"] == 8501
    assert doc["probe"] == {"kind": "http", "port": 8501, "url": "${baseUrl}/_stcore/health"}
    ((_, starter),) = r.state.starter_files
    assert (starter.zone, starter.path) == ("code_studio-versioned", "streamlit/app.py")
    assert starter.content == FILES.joinpath("app.py").read_bytes()
    assert "path: /code-studios/P/s/8501/_stcore/health" in render("- type: streamlit\n", studio=StudioContext("P", "s")).kubernetes_yaml


def test_example_app_and_start_script_are_valid():
    compile(FILES.joinpath("app.py").read_text(), "app.py", "exec")
    subprocess.run(["sh", "-n", str(FILES.joinpath("start.sh"))], check=True)
    assert sys.executable  # the example imports only streamlit and its own dependencies
    text = FILES.joinpath("start.sh").read_text()
    for flag in ("--server.baseUrlPath=\"$base\"", "--server.headless=true", "--server.runOnSave=true"):
        assert flag in text


@pytest.mark.parametrize("order", ["env first", "env after"])
def test_code_env_must_come_first(render, order):
    env = "- type: codeenv\n  name: apps\n"
    st = "- type: streamlit\n  code_env: apps\n  packages: [altair==5.4.1]\n"
    if order == "env after":
        with pytest.raises(TemplateError) as exc:
            render(st + env)
        assert "blocks[0] (type: streamlit): field 'code_env'" in str(exc.value)
        assert "code env 'apps' (blocks[1] (type: codeenv)) must come before this block" in str(exc.value)
        return
    r = render(env + st)
    group = r.state.groups[1]
    # No own env; streamlit goes into the code env within the streamlit group.
    assert not any("venv" in (getattr(s, "script", "") or "") for s in group.steps)
    assert group.steps[-1].script.startswith("/opt/codestudio-build/bin/install-python /opt/codestudio/code-envs/apps/bin/python ")
    assert "streamlit==1.67.0 altair==5.4.1" in group.steps[-1].script
    ep = json.loads(r.runner_json)["entrypoints"][0]
    assert ep["command"][1] == "/opt/codestudio/code-envs/apps/bin/python"


def test_unknown_code_env_lists_defined_ones(render):
    with pytest.raises(TemplateError) as exc:
        render("- type: codeenv\n  name: one\n- type: streamlit\n  code_env: two\n")
    assert "(defined: one)" in str(exc.value)


def test_with_another_ide_on_its_own_port(render):
    r = render("- type: jupyterlab\n- type: streamlit\n  port: 8502\n  app: apps/main.py\n")
    doc = json.loads(r.runner_json)
    assert [e["port"] for e in doc["entrypoints"]] == [8888, 8502]
    assert doc["probe"]["port"] == 8888
    assert doc["entrypoints"][1]["command"][2] == "/home/codestudio/workspace/code_studio-versioned/apps/main.py"
    with pytest.raises(TemplateError) as exc:
        render("- type: streamlit\n  port: 8888\n- type: jupyterlab\n")
    assert "blocks[1] (type: jupyterlab): field 'port': port 8888 is already used by blocks[0] (type: streamlit)" in str(exc.value)


@pytest.mark.parametrize("field, value", [("app", "../x.py"), ("zone", "elsewhere"), ("code_env", "Bad Name"), ("packages", "['x y z']")])
def test_bad_params(render, field, value):
    with pytest.raises(TemplateError) as exc:
        render(f"- type: streamlit\n  {field}: {value}\n")
    assert "blocks[0] (type: streamlit)" in str(exc.value) and field in str(exc.value)
