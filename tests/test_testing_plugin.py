"""The codestudio.testing pytest plugin: what block authors' tests use."""

from __future__ import annotations

import pytest

from codestudio import hookimpl
from codestudio.blockapi import Block, BlockParams, Run
from codestudio.errors import PluginError, TemplateError


class GreetParams(BlockParams):
    greeting: str = "hello"


class Greeter(Block):
    Params = GreetParams

    @hookimpl
    def contribute_dockerfile(self, block, state):
        return [Run(script=f"echo {block.params.greeting}")]


def test_a_temporary_block_renders_from_yaml_or_dicts(codestudio_block, codestudio_render, codestudio_blocks):
    codestudio_block("greeter", Greeter(), distribution="acme-greeter", version="2.0")
    assert "echo hi" in codestudio_render("- {type: greeter, greeting: hi}\n").dockerfile
    rendered = codestudio_render([{"type": "greeter", "greeting": "there"}, {"type": "dockerfile", "statements": "RUN true"}])
    assert "echo there" in rendered.dockerfile and rendered.state.template_id == "t"
    assert codestudio_blocks.by_type["greeter"].distribution == "acme-greeter"


def test_errors_and_resources(codestudio_block, codestudio_plan, tmp_path):
    codestudio_block("greeter", Greeter())
    with pytest.raises(TemplateError, match=r"blocks\[0\] \(type: greeter\)"):
        codestudio_plan([{"type": "greeter", "nope": 1}])
    _template, state = codestudio_plan("- {type: dockerfile, statements: 'COPY x.txt /x', resources: [x.txt]}\n",
                                       {"x.txt": "data"})
    assert (tmp_path / "x.txt").read_text() == "data" and state.groups


def test_a_broken_hook_names_the_distribution(codestudio_block, codestudio_render):
    class Broken(Block):
        @hookimpl
        def contribute_env(self, block, state):
            return {"X": 1}

    codestudio_block("broken", Broken(), distribution="acme-broken", version="0.1")
    with pytest.raises(PluginError, match="acme-broken 0.1: hook contribute_env returned int 1 as the value of X"):
        codestudio_render("- type: broken\n")


def test_the_temporary_block_is_gone_in_the_next_test(codestudio_blocks):
    assert "greeter" not in codestudio_blocks.by_type and "broken" not in codestudio_blocks.by_type


def test_the_webapp_block_check_fails_when_the_block_differs(codestudio_webapp_block):
    """The WebAppBlock check passes for the gradio block as it is and fails on each expectation it differs from."""
    from importlib import resources

    files = resources.files("codestudio_gradio").joinpath("files")
    expected = dict(files=files, port=7860, version="6.31.0", app="gradio/app.py", starter={"gradio/app.py": "app.py"},
                    label="Gradio", proxied_subpath="/", probe="/config", kubernetes_probe="/config")
    assert codestudio_webapp_block("gradio", **expected).state.starter_files
    for wrong in ({"port": 7861}, {"label": "Dash"}, {"probe": "/"}, {"starter": {"gradio/app.py": "start.sh"}},
                  {"requirements": ("ipykernel==7.4.0",)}, {"restart_on_change": False}):
        with pytest.raises(AssertionError):
            codestudio_webapp_block("gradio", **{**expected, **wrong})
