"""Render-level tests of the codeenv block."""

import json

import pytest

from codestudio.errors import TemplateError


@pytest.fixture
def render(codestudio_render):
    """A template made of the given blocks, rendered (codestudio.testing)."""
    return codestudio_render


def test_venv_and_packages_in_own_group(render):
    r = render("""
        - type: codeenv
          name: py-ml
          label: ML
          packages: [pandas==2.2.3, "requests[socks]>=2", "tomli; python_version < '3.11'"]
    """)
    (group,) = r.state.groups
    (step,) = group.steps
    # One step: the env (as python3 -m venv makes it) and its packages.
    assert step.script.splitlines() == [
        "/opt/codestudio-build/bin/install-python --venv python3 /opt/codestudio/code-envs/py-ml "
        "pandas==2.2.3 'requests[socks]>=2' 'tomli; python_version < '\"'\"'3.11'\"'\"''",
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
    assert "install-python --venv /usr/bin/python3.11 /opt/envs/legacy " in run.script
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


def test_r_env_from_debian_with_cran_packages_and_every_ide_registers_it(render):
    r = render("""
        - type: jupyterlab
        - type: vscode
        - type: rstudio
        - type: codeenv
          name: r-stats
          label: R stats
          language: r
          debian_packages: [r-cran-jsonlite]
          cran_repository: https://cran.example.org/
          cran_packages: [glue]
    """)
    ((_, env),) = r.state.code_envs
    assert (env.language, env.r, env.library, env.python) == ("r", "/usr/bin/R", "/opt/codestudio/code-envs/r-stats/library", None)
    group = r.state.groups[3]
    script = group.steps[0].script
    assert "apt-get install -y --no-install-recommends r-base-core r-cran-irkernel r-cran-jsonlite r-base-dev" in script
    assert "mkdir -p /opt/codestudio/code-envs/r-stats/library" in script
    assert 'install.packages(pkgs, lib = lib, repos = "https://cran.example.org/")' in script
    assert "not installed from the CRAN repository" in script
    rest = group.steps[1:]
    # JupyterLab: an IRkernel kernel with the env's library first; no pip install into an R env.
    (kernel,) = [s for s in rest if getattr(s, "dest", "").endswith("/kernels/r-stats/kernel.json")]
    spec = json.loads(kernel.content)
    assert spec["argv"][:1] == ["/usr/bin/R"] and "IRkernel::main()" in spec["argv"] and spec["argv"][-1] == "{connection_file}"
    assert spec["language"] == "R" and spec["env"] == {"R_LIBS": "/opt/codestudio/code-envs/r-stats/library"}
    scripts = [getattr(s, "script", None) or "" for s in rest]
    assert not any("pip install" in s for s in scripts)
    # VS Code: the R interpreter and library path.
    argvs = [s.argv for s in rest if getattr(s, "argv", None)]
    assert any(a[-3:] == ["--r", "/usr/bin/R", "/opt/codestudio/code-envs/r-stats/library"] for a in argvs)
    # RStudio: the library first on .libPaths().
    assert any('.libPaths(c("/opt/codestudio/code-envs/r-stats/library", .libPaths()))' in s
               and "/etc/R/Rprofile.site" in s for s in scripts)


@pytest.mark.parametrize(
    "params, expected",
    [
        ("language: r\n  packages: [pandas]", "language r takes debian_packages and cran_packages, not pip's packages"),
        ("language: r\n  requirements: req.txt", "not pip's requirements"),
        ("language: r\n  cran_repository: ftp://cran.example.org/", "must be an http:// or https:// URL"),
        ("language: r\n  cran_repository: 'https://x.org/\"); system(\"id'", "must be an http:// or https:// URL"),
        ("language: r\n  cran_packages: [glue]", "cran_packages needs cran_repository"),
        ("language: r\n  cran_packages: ['glue\"); system(\"id']\n  cran_repository: https://x.org/", "not an R package name"),
        ("language: r\n  debian_packages: ['r-cran-x; id']", "not a Debian package name"),
        ("debian_packages: [r-cran-jsonlite]", "are for R envs: set language: r"),
    ],
)
def test_r_env_bad_input(render, params, expected):
    with pytest.raises(TemplateError) as exc:
        render(f"- type: codeenv\n  name: r-env\n  {params}\n", files={"req.txt": "x\n"})
    assert "blocks[0] (type: codeenv)" in str(exc.value) and expected in str(exc.value)


def test_python_blocks_refuse_an_r_env(render):
    with pytest.raises(TemplateError) as exc:
        render("- {type: codeenv, name: r-env, language: r}\n- {type: streamlit, code_env: r-env}\n")
    assert "blocks[1] (type: streamlit): field 'code_env'" in str(exc.value) and "is an R env" in str(exc.value)
    with pytest.raises(TemplateError) as exc:
        render("- {type: codeenv, name: r-env, language: r}\n- {type: gradio, code_env: r-env}\n")
    assert "blocks[1] (type: gradio): field 'code_env'" in str(exc.value) and "blocks[0] (type: codeenv)" in str(exc.value)
