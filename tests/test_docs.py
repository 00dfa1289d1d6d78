"""Every hook is documented with a heading and exercised by a test (as datasette does)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from codestudio import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "codestudio_spec"))


def test_hooks_were_found():
    assert {"contribute_dockerfile", "contribute_entrypoint", "adjust_probe", "register_code_env"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_documented_heading(hook):
    headings = re.findall(r"^## (\w+)$", (ROOT / "docs" / "hooks.md").read_text(), flags=re.M)
    assert hook in headings


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_spec_documents_params_and_return(hook):
    doc = getattr(hookspecs, hook).__doc__
    params = list(inspect.signature(getattr(hookspecs, hook)).parameters)
    for param in params:
        assert f":param {param}:" in doc
    assert ":return:" in doc


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_exercised_by_a_test(hook):
    sources = [p.read_text() for p in (ROOT / "tests").glob("test_*.py") if p.name != "test_docs.py"]
    sources += [p.read_text() for p in (ROOT / "plugins").glob("*/tests/test_*.py")]
    assert any(f"def {hook}(" in s for s in sources), f"no test implements {hook}"
