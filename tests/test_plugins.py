"""Plugin discovery: entry points, allow/block lists, strict mode, duplicates, pending hooks."""

from __future__ import annotations

import importlib
import textwrap

import pytest

from codestudio.errors import PluginError
from codestudio.plugins import load_plugins


@pytest.fixture
def make_dist(tmp_path, monkeypatch):
    """Create an importable distribution (dist-info + module) on sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def make(name: str, version: str, entry_points: dict[str, str], module: str, source: str) -> None:
        dist_info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        eps = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
        (dist_info / "entry_points.txt").write_text(f"[codestudio.blocks]\n{eps}\n")
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()

    return make


GOOD = """
from codestudio import hookimpl
from codestudio.blockapi import Block, Run

class Good(Block):
    summary = "good"
    @hookimpl
    def contribute_dockerfile(self, block, state):
        return [Run(script="true")]
"""


def test_installed_blocks_are_discovered_with_distribution_and_version(make_dist):
    make_dist("acme-good", "2.0.1", {"good": "acme_good:Good"}, "acme_good", GOOD)
    blocks = load_plugins()
    assert blocks.by_type["good"].distribution == "acme-good"
    assert blocks.by_type["good"].version == "2.0.1"
    assert {"dockerfile", "entrypoint", "action", "starter-files", "file-sync", "kubernetes"} <= set(blocks.types())


def test_broken_block_is_reported_and_skipped(make_dist, capsys):
    make_dist("acme-broken", "0.1", {"broken": "acme_broken:Nope"}, "acme_broken", "raise ImportError('no numpy here')\n")
    blocks = load_plugins()
    assert "broken" not in blocks.by_type
    assert blocks.problems[0].distribution == "acme-broken"
    assert "acme-broken" in capsys.readouterr().err


def test_strict_mode_makes_a_broken_block_fatal(make_dist, monkeypatch):
    make_dist("acme-broken", "0.1", {"broken": "acme_broken:Nope"}, "acme_broken", "raise ImportError('x')\n")
    monkeypatch.setenv("CODESTUDIO_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="acme-broken"):
        load_plugins()


def test_duplicate_block_type_names_both_distributions(make_dist):
    make_dist("acme-one", "1", {"twin": "acme_one:Good"}, "acme_one", GOOD)
    make_dist("acme-two", "1", {"twin": "acme_two:Good"}, "acme_two", GOOD)
    with pytest.raises(PluginError) as info:
        load_plugins()
    assert "acme-one" in str(info.value) and "acme-two" in str(info.value)


def test_misspelled_hook_fails_loudly(make_dist):
    source = """
    from codestudio import hookimpl
    from codestudio.blockapi import Block

    class Typo(Block):
        @hookimpl
        def contribute_dockerfil(self, block, state):
            return []
    """
    make_dist("acme-typo", "1", {"typo": "acme_typo:Typo"}, "acme_typo", source)
    with pytest.raises(PluginError, match="contribute_dockerfil"):
        load_plugins()


def test_not_a_block_class_is_reported(make_dist):
    make_dist("acme-odd", "1", {"odd": "acme_odd:thing"}, "acme_odd", "thing = 42\n")
    blocks = load_plugins()
    assert "odd" not in blocks.by_type
    assert "not a codestudio.blockapi.Block" in blocks.problems[0].error


def test_allow_list_and_block_list(make_dist, monkeypatch):
    make_dist("acme-good", "1", {"good": "acme_good:Good"}, "acme_good", GOOD)
    monkeypatch.setenv("CODESTUDIO_PLUGINS", "good,dockerfile")
    assert set(load_plugins().types()) == {"good", "dockerfile"}
    monkeypatch.delenv("CODESTUDIO_PLUGINS")
    monkeypatch.setenv("CODESTUDIO_DISABLED_PLUGINS", "acme-good,action")
    blocks = load_plugins()
    assert "good" not in blocks.types() and "action" not in blocks.types()
    assert blocks.disabled["good"] == "acme-good"


def test_disabled_block_in_template_says_so(make_dist, monkeypatch, write_template):
    from codestudio.errors import TemplateError
    from codestudio.template import load_template

    make_dist("acme-good", "1", {"good": "acme_good:Good"}, "acme_good", GOOD)
    monkeypatch.setenv("CODESTUDIO_DISABLED_PLUGINS", "good")
    path = write_template("id: t\nblocks:\n  - type: good\n")
    with pytest.raises(TemplateError, match="disabled"):
        load_template(path, load_plugins())


def test_loading_happens_on_call_not_import():
    import subprocess
    import sys

    code = "import codestudio, codestudio.cli, sys; print('codestudio_advanced' in sys.modules, 'pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
