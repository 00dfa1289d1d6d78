"""Property tests of the agent's name and symlink validation."""

from __future__ import annotations

import os
import posixpath

from hypothesis import given
from hypothesis import strategies as st

from codestudio.sync import agent

parts = st.sampled_from(["a", "b", "..", ".", "", "/", ".git", "x.txt", "..a", "a..", "\x00", "\n", agent.TMP_PREFIX + "1"])
names = st.lists(parts, min_size=1, max_size=6).map(lambda xs: "/".join(xs)) | st.text(max_size=30)


def _accepted(name: str) -> bool:
    try:
        agent.check_name(name)
    except agent.Refused:
        return False
    return True


@given(names)
def test_accepted_names_stay_inside_root(name):
    if _accepted(name):
        root = "/zone/root"
        joined = posixpath.normpath(posixpath.join(root, name))
        assert joined.startswith(root + "/")
        assert ".." not in name.split("/") and not name.startswith("/")
        assert ".git" not in name.split("/")


@given(names, names)
def test_symlinks_accepted_only_inside(name, target):
    if _accepted(name) and agent.link_inside(name, target):
        root = "/zone/root"
        resolved = posixpath.normpath(posixpath.join(root, posixpath.dirname(name), target))
        assert resolved == root or resolved.startswith(root + "/")


@given(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=4))
def test_safe_parent_refuses_symlinked_parents(tmp_path_factory, chain):
    root = tmp_path_factory.mktemp("root")
    outside = tmp_path_factory.mktemp("outside")
    os.symlink(outside, root / "link")
    name = "/".join(["link", *chain])
    try:
        agent.safe_parent(str(root), name, create=True)
    except agent.Refused as exc:
        assert "symlink" in str(exc)
    else:
        raise AssertionError("a symlinked parent was accepted")
    assert list(outside.iterdir()) == []
