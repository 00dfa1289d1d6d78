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
