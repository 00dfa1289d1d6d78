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
