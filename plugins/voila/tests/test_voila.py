"""Render-level tests of the voila block."""

import json
import subprocess
import textwrap
from importlib import resources

import pytest

from codestudio.errors import TemplateError
from codestudio.render import StudioContext, render_template

FILES = resources.files("codestudio_voila").joinpath("files")


@pytest.fixture
def render(tmp_path, monkeypatch):
    monkeypatch.setenv("CODESTUDIO_HOME", str(tmp_path / "home"))

    def _render(blocks: str, studio=None):
        path = tmp_path / "template.yaml"
        path.write_text("id: t\nblocks:\n" + textwrap.indent(textwrap.dedent(blocks), "  "))
        return render_template(path, studio)

    return _render


def test_defaults_own_env_webapp_and_starter_notebook(render):
    r = render("- type: voila\n")
    install = r.state.groups[0].steps[0]
    assert install.script.startswith("python3 -m venv /opt/codestudio/voila\n")
    assert "voila==0.5.13" in install.script and "ipykernel==7.4.0" in install.script
    doc = json.loads(r.runner_json)
    (ep,) = doc["entrypoints"]
    assert ep["command"] == [
        "/opt/codestudio/voila/start.sh",
        "/opt/codestudio/voila/bin/python",
        "/home/codestudio/workspace/code_studio-versioned/voila",
        "8866",
        "${DKU_CODE_STUDIO_BROWSER_PATH_8866}",
    ]
    assert ep["launch_in_webapp"] and ep["proxied_subpath"] == "$request_uri" and ep["label"] == "Voila"
    assert doc["probe"] == {"kind": "http", "port": 8866, "url": "${baseUrl}/"}
    assert "path: /code-studios/P/s/8866/\n" in render("- type: voila\n", StudioContext("P", "s")).kubernetes_yaml
    ((_, starter),) = r.state.starter_files
    assert (starter.zone, starter.path) == ("code_studio-versioned", "voila/app.ipynb")
    assert starter.content == FILES.joinpath("app.ipynb").read_bytes()
    # Voila runs a notebook afresh on each visit: no restart watcher.
    assert "restart_on_change" not in r.dockerfile
    # Another folder moves the starter notebook with it.
    r = render("- {type: voila, app: dashboards}\n")
    assert [f.path for _, f in r.state.starter_files] == ["dashboards/app.ipynb"]


def test_example_notebook_and_start_script_are_valid():
    nb = json.loads(FILES.joinpath("app.ipynb").read_text())
    assert nb["nbformat"] == 4 and nb["metadata"]["kernelspec"]["name"] == "python3"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            compile("".join(cell["source"]), "cell", "exec")
    subprocess.run(["sh", "-n", str(FILES.joinpath("start.sh"))], check=True)
    text = FILES.joinpath("start.sh").read_text()
    for word in ('--base_url="$base/"', "--Voila.ip=0.0.0.0", '--port="$port"', "--no-browser"):
        assert word in text


def test_code_env_defined_before_gets_voila_and_ipykernel(render):
    r = render(
        """
        - {type: codeenv, name: py}
        - {type: voila, code_env: py}
        """
    )
    scripts = [getattr(s, "script", "") or "" for s in r.state.groups[1].steps]
    assert any("install-python /opt/codestudio/code-envs/py/bin/python " in s and "voila==0.5.13" in s
               and "ipykernel==7.4.0" in s for s in scripts)


@pytest.mark.parametrize(
    "blocks, expected",
    [
        ("- {type: voila, code_env: nope}\n", ["blocks[0] (type: voila)", "field 'code_env'", "no code env named 'nope'"]),
        ("- {type: voila, code_env: py}\n- {type: codeenv, name: py}\n",
         ["blocks[0] (type: voila)", "field 'code_env'", "defined by blocks[1] (type: codeenv), after this block"]),
    ],
)
def test_bad_input(render, blocks, expected):
    with pytest.raises(TemplateError) as exc:
        render(blocks)
    for text in expected:
        assert text in str(exc.value)
