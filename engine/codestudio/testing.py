"""Pytest fixtures for block authors: render a template made of your blocks, register a block for one test.

Installed with codestudio as a pytest plugin (entry point ``pytest11``), so a
block distribution's tests use the fixtures without a conftest:

.. code-block:: python

    def test_my_block_renders(codestudio_render):
        rendered = codestudio_render('''
            - type: my-block
              greeting: hi
        ''')
        assert "hi" in rendered.dockerfile

Fixtures (none is autouse; each gives the test its own data dir):

- ``codestudio_home``: an empty data dir (``$CODESTUDIO_HOME``) for the test.
- ``codestudio_blocks``: a fresh block registry (every installed block).
- ``codestudio_block``: ``codestudio_block(type, plugin, distribution=..., version=...)``
  registers a block object under ``type`` for this test only.
- ``codestudio_template``: writes a template from its ``blocks:`` list (YAML
  text, or a list of dicts) and resource files; returns its path.
- ``codestudio_plan``: the same, applied: ``(template, build_state)``.
- ``codestudio_render``: the same, rendered: a :class:`codestudio.render.Rendered`
  (``dockerfile``, ``context_files``, ``runner_json``, ``kubernetes_yaml``,
  ``nginx_conf``, ``state``).
- ``codestudio_webapp_block``: checks that a block built on
  :class:`codestudio.blockhelpers.WebAppBlock` renders as every web app
  block must (own env or a code env, entrypoint, probe, example starter
  files, bad input named at its field) with the values the test expects.

Template errors raise :class:`codestudio.errors.TemplateError` as
``codestudio validate`` reports them (``pytest.raises(TemplateError, match=...)``).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest


@pytest.fixture
def codestudio_home(tmp_path, monkeypatch) -> Path:
    """An empty data dir for this test (``$CODESTUDIO_HOME``)."""
    home = tmp_path / "codestudio-home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("CODESTUDIO_HOME", str(home))
    return home


@pytest.fixture
def codestudio_blocks(codestudio_home):
    """A fresh registry of every installed block type (a new plugin manager per test)."""
    from codestudio.plugins import load_plugins

    return load_plugins()


@pytest.fixture
def codestudio_block(codestudio_blocks):
    """Register a block object for this test only: ``codestudio_block("greeter", GreeterBlock())``."""
    registered: list[str] = []

    def register(block_type: str, plugin, *, distribution: str = "test-block", version: str = "0"):
        codestudio_blocks.register(block_type, plugin, distribution, version)
        registered.append(block_type)
        return plugin

    yield register
    for block_type in registered:
        codestudio_blocks.unregister(block_type)


@pytest.fixture
def codestudio_template(tmp_path, codestudio_home):
    """Write ``<tmp_path>/template.yaml`` (id ``t``) from its blocks and return its path.

    ``codestudio_template(blocks, files={}, template_id="t")``: ``blocks`` is the
    YAML list under ``blocks:`` (dedented) or a list of dicts; ``files`` maps
    paths relative to the template's folder to text or bytes (resources).
    """
    import yaml

    folder = tmp_path  # resources written by the test next to it are found as in a real template folder

    def write(blocks, files: dict[str, str | bytes] | None = None, *, template_id: str = "t") -> Path:
        folder.mkdir(exist_ok=True)
        for name, data in (files or {}).items():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, bytes):
                target.write_bytes(data)
            else:
                target.write_text(data)
        if isinstance(blocks, str):
            body = textwrap.indent(textwrap.dedent(blocks).strip("\n") + "\n", "  ")
        else:
            body = textwrap.indent(yaml.safe_dump(list(blocks), sort_keys=False), "  ")
        path = folder / "template.yaml"
        path.write_text(f"id: {template_id}\nblocks:\n{body}")
        return path

    return write


@pytest.fixture
def codestudio_plan(codestudio_template, codestudio_blocks):
    """Apply a template made of ``blocks``: ``(template, build_state)``; see ``codestudio_template``."""
    from codestudio.plan import plan_template

    def plan(blocks, files=None, **kwargs):
        return plan_template(codestudio_template(blocks, files, **kwargs), codestudio_blocks)

    return plan


@pytest.fixture
def codestudio_render(codestudio_plan):
    """Render a template made of ``blocks``: a ``Rendered``; ``studio=`` a ``StudioContext``."""
    from codestudio.render import render_state

    def render(blocks, files=None, *, studio=None, **kwargs):
        template, state = codestudio_plan(blocks, files, **kwargs)
        return render_state(template, state, studio)

    return render


@pytest.fixture
def codestudio_webapp_block(codestudio_render):
    """Check a :class:`~codestudio.blockhelpers.WebAppBlock` block's rendering against what the test expects.

    ``codestudio_webapp_block(block_type, files=..., port=..., version=...,
    app=..., starter=..., label=..., proxied_subpath=..., probe=...,
    kubernetes_probe=..., requirements=(), restart_on_change=True)``:

    - ``files``: the block package's ``files/`` folder (a ``Traversable``);
    - ``starter``: ``{path in the versioned zone: example file name in files}``;
    - ``probe``: the path after ``${baseUrl}`` in ``runner.json``'s probe;
      ``kubernetes_probe``: the readiness probe's path for studio ``P``/``s``;
    - ``requirements``: what is installed with the tool besides it.

    With its defaults the block installs ``<block_type>==<version>`` into its
    own env at ``/opt/codestudio/<block_type>`` and runs ``start.sh PYTHON
    APP PORT BASE_PATH`` as a webapp-launchable entrypoint; with ``code_env``
    it installs into that env instead; a missing or later env, a bad version
    and an ``app`` leaving the zone are refused naming the block and field.
    Returns the default rendering for further checks.
    """
    import json

    from codestudio.errors import TemplateError
    from codestudio.render import StudioContext

    def check(block_type: str, *, files, port: int, version: str, app: str, starter: dict[str, str], label: str,
              proxied_subpath: str, probe: str, kubernetes_probe: str, requirements: tuple[str, ...] = (),
              restart_on_change: bool = True):
        home = f"/opt/codestudio/{block_type}"
        rendered = codestudio_render(f"- type: {block_type}\n")
        steps = rendered.state.groups[0].steps
        install = steps[0]
        assert install.script.startswith(f"/opt/codestudio-build/bin/install-python --venv python3 {home} ")
        for requirement in (f"{block_type}=={version}", *requirements):
            assert requirement in install.script
        doc = json.loads(rendered.runner_json)
        (ep,) = doc["entrypoints"]
        assert ep["command"] == [f"{home}/start.sh", f"{home}/bin/python",
                                 f"/home/codestudio/workspace/code_studio-versioned/{app}", str(port),
                                 f"${{DKU_CODE_STUDIO_BROWSER_PATH_{port}}}"]
        assert ep["launch_in_webapp"] and ep["proxied_subpath"] == proxied_subpath and ep["label"] == label
        assert doc["probe"] == {"kind": "http", "port": port, "url": "${baseUrl}" + probe}
        studio_yaml = codestudio_render(f"- type: {block_type}\n", studio=StudioContext("P", "s")).kubernetes_yaml
        assert f"path: {kubernetes_probe}\n" in studio_yaml
        assert {f.path: f.content for _, f in rendered.state.starter_files} == {
            path: files.joinpath(name).read_bytes() for path, name in starter.items()}
        assert all(f.zone == "code_studio-versioned" for _, f in rendered.state.starter_files)
        dests = [getattr(s, "dest", None) for s in steps]
        assert all(f"{home}/example/{name}" in dests for name in starter.values())
        assert f"{home}/start.sh" in dests
        if restart_on_change:
            assert f"{home}/restart_on_change.py" in dests
        else:
            assert "restart_on_change" not in rendered.dockerfile

        in_env = codestudio_render(f"""
            - {{type: codeenv, name: py, packages: [pandas==2.2.3]}}
            - {{type: {block_type}, code_env: py, packages: [plotly]}}
            """)
        scripts = [getattr(s, "script", "") or "" for s in in_env.state.groups[1].steps]
        assert not any(f"--venv python3 {home} " in s for s in scripts)
        assert any("install-python /opt/codestudio/code-envs/py/bin/python " in s and "plotly" in s
                   and all(r in s for r in (f"{block_type}=={version}", *requirements)) for s in scripts)
        assert json.loads(in_env.runner_json)["entrypoints"][0]["command"][1] == "/opt/codestudio/code-envs/py/bin/python"

        where = f"blocks[0] (type: {block_type})"
        for blocks, expected in (
            (f"- {{type: {block_type}, code_env: nope}}\n", [where, "field 'code_env'", "no code env named 'nope'"]),
            (f"- {{type: {block_type}, code_env: py}}\n- {{type: codeenv, name: py}}\n",
             [where, "field 'code_env'", "defined by blocks[1] (type: codeenv), after this block"]),
            (f"- {{type: {block_type}, version: 'not a version'}}\n", ["field 'version'", "not a version number"]),
            (f"- {{type: {block_type}, app: ../x.py}}\n", ["field 'app'"]),
        ):
            with pytest.raises(TemplateError) as exc:
                codestudio_render(blocks)
            for text in expected:
                assert text in str(exc.value), f"{text!r} not in the error for {blocks!r}: {exc.value}"
        return rendered

    return check
