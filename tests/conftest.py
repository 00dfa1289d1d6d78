"""Shared fixtures: an isolated data dir, a fresh plugin registry, template writers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def codestudio_home(tmp_path_factory, monkeypatch) -> Path:
    home = tmp_path_factory.mktemp("codestudio-home")
    monkeypatch.setenv("CODESTUDIO_HOME", str(home))
    return home


@pytest.fixture
def blocks():
    """A fresh plugin manager per test (installed blocks only)."""
    from codestudio.plugins import load_plugins

    return load_plugins()


@pytest.fixture
def write_template(tmp_path):
    """Write a template file (dedented) into tmp_path and return its path."""

    def write(text: str, name: str = "template.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write
