"""Render-level tests of the jupyterlab block (with real codeenv blocks)."""

import json

import pytest

from codestudio.errors import TemplateError
from codestudio.render import StudioContext


@pytest.fixture
def render(codestudio_render):
    """A template made of the given blocks, rendered (codestudio.testing)."""
    return codestudio_render


def kernels(rendered) -> dict[str, dict]:
    """kernel name -> kernel.json, from the Copy steps of every group."""
    out = {}
    for group in rendered.state.groups:
        for step in group.steps:
            dest = getattr(step, "dest", "")
            if dest.startswith("/opt/codestudio/jupyterlab/share/jupyter/kernels/"):
                out[dest.split("/")[-2]] = json.loads(step.content)
    return out


def test_defaults_alone(render):
    r = render("- type: jupyterlab\n")
    install, page_config = r.state.groups[0].steps
    assert json.loads(page_config.content)["disabledExtensions"] == {"@jupyterlab/apputils-extension:announcements": True}
    assert page_config.dest == "/opt/codestudio/jupyterlab/etc/jupyter/labconfig/page_config.json"
    assert install.script.startswith("/opt/codestudio-build/bin/install-python --venv python3 /opt/codestudio/jupyterlab ")
    assert install.script.endswith(" /opt/codestudio/jupyterlab jupyterlab==4.6.6")
    doc = json.loads(r.runner_json)
    (ep,) = doc["entrypoints"]
    assert ep["port"] == 8888 and ep["proxied_subpath"] == "$request_uri" and ep["expose_html"]
    assert ep["command"][:2] == ["/opt/codestudio/jupyterlab/bin/jupyter", "lab"]
    assert "--ServerApp.base_url=${DKU_CODE_STUDIO_BROWSER_PATH_8888}/" in ep["command"]
    assert "--IdentityProvider.token=" in ep["command"] and "--ip=0.0.0.0" in ep["command"]
    assert ep["cwd"] == "/home/codestudio/workspace"
    assert doc["probe"] == {"kind": "http", "port": 8888, "url": "${baseUrl}/api"}
    assert doc["exposed_ports"] == [8888]
    # kubernetes.yaml: the probe path is the full browser path (not stripped).
    assert "path: /code-studios/P/s/8888/api" in render("- type: jupyterlab\n", studio=StudioContext("P", "s")).kubernetes_yaml


def test_port_packages_and_version(render):
    r = render("""
        - type: jupyterlab
          port: 9999
          version: 4.2.5
          packages: [jupyterlab-git==0.50.1]
    """)
    assert "jupyterlab==4.2.5 jupyterlab-git==0.50.1" in r.state.groups[0].steps[0].script
    ep = json.loads(r.runner_json)["entrypoints"][0]
    assert ep["port"] == 9999 and "--port=9999" in ep["command"]
    assert "--ServerApp.base_url=${DKU_CODE_STUDIO_BROWSER_PATH_9999}/" in ep["command"]


@pytest.mark.parametrize("order", ["before", "after"])
def test_code_env_becomes_kernel_in_either_order(render, order):
    env = "- type: codeenv\n  name: py-ml\n  label: Python (ML)\n"
    lab = "- type: jupyterlab\n"
    r = render(env + lab if order == "before" else lab + env)
    spec = kernels(r)["py-ml"]
    assert spec["argv"] == ["/opt/codestudio/code-envs/py-ml/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    assert spec["display_name"] == "Python (ML)"
    # ipykernel goes into the code env, after the env exists, in the later block's group.
    later = r.state.groups[1]
    scripts = [s.script for s in later.steps if getattr(s, "script", None)]
    assert any("install-python /opt/codestudio/code-envs/py-ml/bin/python ipykernel" in s and "ipykernel" in s for s in scripts)
    assert "--venv python3 /opt/codestudio/code-envs/py-ml" in r.dockerfile.split("ipykernel")[0]
    if order == "after":
        # The JupyterLab install layer is untouched by the later code env.
        assert [type(s).__name__ for s in r.state.groups[0].steps] == ["Run", "Copy"]


def test_two_code_envs_first_is_default_kernel(render):
    r = render("""
        - type: codeenv
          name: one
        - type: jupyterlab
        - type: codeenv
          name: two
    """)
    assert set(kernels(r)) == {"one", "two"}
    defaults = [s for g in r.state.groups for s in g.steps if getattr(s, "dest", "").endswith("/etc/jupyter/jupyter_server_config.json")]
    (default,) = defaults
    assert json.loads(default.content) == {"MappingKernelManager": {"default_kernel_name": "one"}}


def test_port_collision_names_both_blocks(render):
    with pytest.raises(TemplateError) as exc:
        render("""
            - type: jupyterlab
            - type: entrypoint
              label: other
              command: [sleep, "1"]
              port: 8888
        """)
    text = str(exc.value)
    assert "blocks[1] (type: entrypoint)" in text and "blocks[0] (type: jupyterlab)" in text and "8888" in text


@pytest.mark.parametrize("field, value", [("port", "0"), ("version", "'4.x; rm'"), ("packages", "['-e .']"), ("path", "opt/x")])
def test_bad_params(render, field, value):
    with pytest.raises(TemplateError) as exc:
        render(f"- type: jupyterlab\n  {field}: {value}\n")
    assert "blocks[0] (type: jupyterlab)" in str(exc.value) and field in str(exc.value)


def _prefix_through_group(dockerfile: str, group: int) -> str:
    """The Dockerfile up to the end of block ``group`` (buildah's cache reuses a matching prefix)."""
    return dockerfile.split(f"\n# [{group + 1}] ", 1)[0]


def test_changing_a_later_code_env_keeps_the_jupyterlab_layers(render):
    """Issue 3: a code env change must not reinstall JupyterLab (IDE first, env after)."""
    a = render("- type: jupyterlab\n- type: codeenv\n  name: ml\n  packages: [requests==2.32.3]\n")
    b = render("- type: jupyterlab\n- type: codeenv\n  name: ml\n  packages: [requests==2.32.4, rich]\n")
    assert "jupyterlab==" in _prefix_through_group(a.dockerfile, 0)
    assert _prefix_through_group(a.dockerfile, 0) == _prefix_through_group(b.dockerfile, 0)
    assert a.dockerfile != b.dockerfile
    # The kernel registration lives with the code env, after the JupyterLab layers.
    assert "ipykernel" not in _prefix_through_group(a.dockerfile, 0)


def test_jupyter_activity_busy_kernels_win_then_the_latest_time():
    import json as _json

    from codestudio_jupyterlab import jupyter_activity

    status = (200, _json.dumps({"last_activity": "2026-01-01T10:00:00.000000Z", "kernels": 2}).encode())
    kernels = [{"id": "a", "execution_state": "idle", "last_activity": "2026-01-01T11:00:00Z"},
               {"id": "b", "execution_state": "busy", "last_activity": "2026-01-01T09:00:00Z"}]
    busy = jupyter_activity(status, (200, _json.dumps(kernels).encode()))
    assert busy.busy and busy.detail == "1 kernel busy"
    kernels[1]["execution_state"] = "idle"
    idle = jupyter_activity(status, (200, _json.dumps(kernels).encode()))
    assert not idle.busy and idle.at == 1767265200.0  # 11:00Z, the newest of the three
    assert jupyter_activity((503, b""), (404, b"")) is None
