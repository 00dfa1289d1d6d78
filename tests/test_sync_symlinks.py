"""Symlinks judged by where they really resolve, and mapping folders kept inside their zone (issue 9, item 1)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codestudio.blockapi import SyncMapping
from codestudio.sync import LocalTransport, SyncError, SyncStudio, agent, sync
from codestudio.sync import zones as zones_mod

LIB = "project-lib-resources"
TARGET = f"/home/codestudio/workspace/{LIB}"


def chain(root: Path, depth: int, host: str) -> None:
    """l0 -> ., l1 -> l0/.., ..., l<depth> -> l<depth-1>/.., data -> l<depth>/<host>: each inside by its text."""
    os.symlink(".", root / "l0")
    for i in range(1, depth + 1):
        os.symlink(f"l{i - 1}/..", root / f"l{i}")
    os.symlink(f"l{depth}/{host.lstrip('/')}", root / "data")


def depth_of(path: Path) -> int:
    return len(os.path.realpath(path).strip("/").split("/"))


def escaping(root: Path) -> list[str]:
    real = os.path.realpath(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            r = os.path.realpath(p)
            if os.path.islink(p) and r != real and not r.startswith(real + "/"):
                out.append(os.path.relpath(p, root))
    return sorted(out)


@pytest.fixture
def host(tmp_path) -> Path:
    folder = tmp_path / "host-folder"
    folder.mkdir()
    (folder / "secret.txt").write_text("host secret\n")
    return folder


# --------------------------------------------------------------------------
# The resolution itself


def test_chain_that_is_inside_by_its_text_resolves_outside(tmp_path, host):
    root = tmp_path / "a" / "b" / "root"
    root.mkdir(parents=True)
    chain(root, depth_of(root), str(host))
    assert os.path.realpath(root / "data") == str(host)  # what the kernel does
    assert all(agent.link_inside(n, os.readlink(root / n)) for n in os.listdir(root))  # what the text says
    assert agent.resolve_link(str(root), "l0", ".") == ""
    for name in ["l1", "l2", "data"]:
        assert agent.resolve_link(str(root), name, os.readlink(root / name)) is None
    listed = agent.scan(str(root), {}, [])
    assert [e["p"] for e in listed["entries"]] == ["l0"]
    assert sorted(p for p, _ in listed["skipped"]) == sorted(n for n in os.listdir(root) if n != "l0")


def test_links_through_inside_links_and_missing_parts(tmp_path):
    root = tmp_path / "root"
    (root / "d/e").mkdir(parents=True)
    os.symlink("d/e", root / "de")
    r = str(root)
    assert agent.resolve_link(r, "x", "de/..") == "d"
    assert agent.resolve_link(r, "x", "de/../..") == ""
    assert agent.resolve_link(r, "x", "de/../../..") is None
    assert agent.resolve_link(r, "d/x", "../missing/../de") == "d/e"
    assert agent.resolve_link(r, "x", "x/y") is None  # loops through itself
    assert agent.resolve_link(r, "x", "/etc") is None
    os.symlink("b", root / "a")
    os.symlink("a", root / "b")
    assert agent.resolve_link(r, "x", "a") is None  # a loop on disk
    # The link being judged replaces what is on disk at its name.
    assert agent.resolve_link(r, "a", "d") == "d"


NAMES = ["a", "b", "c", "d/e", "d/f"]
PARTS = [".", "..", "a", "b", "c", "d", "e", "f", "x"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(NAMES), st.lists(st.sampled_from(PARTS), min_size=1, max_size=5)), max_size=6))
def test_resolution_agrees_with_the_kernel(links):
    """Soundness: whatever resolve_link accepts is where the kernel really ends up, so never outside."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "outer" / "root"
        (root / "d").mkdir(parents=True)
        made = {}
        for name, parts in links:
            if name in made:
                continue
            made[name] = "/".join(parts)
            os.symlink(made[name], root / name)
        real = os.path.realpath(root)
        for name, target in made.items():
            resolved = agent.resolve_link(str(root), name, target)
            if resolved is not None:
                assert os.path.realpath(root / name) == (f"{real}/{resolved}" if resolved else real)


def test_a_later_link_cannot_turn_an_earlier_one_into_an_escape(tmp_path):
    """``x -> m/..`` is inside while ``m`` is missing; once ``m -> .`` exists, ``x`` is no longer listed."""
    root = tmp_path / "root"
    root.mkdir()
    agent.write_link(str(root), "x", "m/..")
    agent.write_link(str(root), "m", ".")
    listed = agent.scan(str(root), {}, [])
    assert [e["p"] for e in listed["entries"]] == ["m"]
    assert [p for p, _ in listed["skipped"]] == ["x"]
    with pytest.raises(agent.Refused, match="resolves outside"):
        agent.write_link(str(root), "y", "m/..")


def test_agent_refuses_the_chain_when_it_is_written_into_the_studio(tmp_path):
    """The receiving side judges each link as it is written, against what is already there."""
    root = tmp_path / "root"
    root.mkdir()
    agent.write_link(str(root), "l0", ".")
    with pytest.raises(agent.Refused, match="resolves outside"):
        agent.write_link(str(root), "l1", "l0/..")
    assert sorted(os.listdir(root)) == ["l0"]


# --------------------------------------------------------------------------
# Through a sync


def studio_with(*mappings: SyncMapping, studio_id: str = "s1", owner: str = "alice") -> SyncStudio:
    return SyncStudio(studio_id, "PROJ", owner, tuple(mappings))


def test_chain_created_in_a_studio_is_not_pulled(tmp_path, host):
    ctr = LocalTransport(tmp_path / "c")
    studio = studio_with(SyncMapping(zone=LIB, target=TARGET))
    zone = studio.zone_path(LIB)
    folder = ctr.path(TARGET)
    folder.mkdir(parents=True)
    (folder / "ok.txt").write_text("ok")
    chain(folder, depth_of(zone), str(host))
    report = sync(studio, ctr).mappings[0]
    assert escaping(zone) == [] and sorted(os.listdir(zone)) == ["l0", "ok.txt"]
    assert {p for _, p, _ in report.skipped} >= {"l1", "data"}


#: The real agent with its link resolution replaced by the text-only check of
#: earlier versions: it lists (and sends) the chain, so the engine must refuse it.
LYING_AGENT = r"""
import sys
namespace = {"__name__": "agent"}
exec(open(sys.argv[1]).read(), namespace)
namespace["resolve_link"] = lambda root, name, target, pending=None: "" if namespace["link_inside"](name, target) else None
sys.exit(namespace["main"](sys.argv[2:]))
"""


class LyingTransport(LocalTransport):
    def start_agent(self, op, root):
        from codestudio.sync.transport import agent_source

        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "agent.py").write_text(agent_source())
        return subprocess.Popen(
            [self.python, "-c", LYING_AGENT, str(self.base / "agent.py"), op, str(self.path(root))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )


def test_engine_refuses_the_chain_from_a_lying_agent(tmp_path, host):
    ctr = LyingTransport(tmp_path / "c")
    studio = studio_with(SyncMapping(zone=LIB, target=TARGET))
    zone = studio.zone_path(LIB)
    folder = ctr.path(TARGET)
    folder.mkdir(parents=True)
    depth = depth_of(zone)
    chain(folder, depth, str(host))
    with pytest.raises(SyncError, match="resolves outside") as info:
        sync(studio, ctr)
    refused = {p for side, p, _ in info.value.report.refused if side == "studio"}
    # Each link is judged against what is already written: with l1 refused,
    # l2 -> l1/.. stays inside (l1 is missing), l3 -> l2/.. is refused, and so on.
    assert refused == {f"l{i}" for i in range(1, depth + 1, 2)}
    assert escaping(zone) == []


@pytest.mark.parametrize("zone_name, one_way", [(LIB, False), ("project-lib-versioned", True)])
def test_mapping_folder_leading_out_of_the_zone_is_refused(tmp_path, host, zone_name, one_way):
    ctr = LocalTransport(tmp_path / "c")
    target = f"/home/codestudio/workspace/{zone_name}/data"
    studio = studio_with(SyncMapping(zone=zone_name, subfolder="data", target=target, one_way=one_way))
    zone = studio.zone_path(zone_name)
    chain(zone, depth_of(zone), str(host))
    write_in_studio = ctr.path(target)
    write_in_studio.mkdir(parents=True)
    (write_in_studio / "planted.txt").write_text("planted")
    with pytest.raises(SyncError, match="data.*resolves outside the zone") as info:
        sync(studio, ctr)
    assert info.value.report.mappings[0].pushed == []
    assert sorted(os.listdir(write_in_studio)) == ["planted.txt"]
    assert sorted(os.listdir(host)) == ["secret.txt"]


def test_subfolder_that_is_a_symlink_inside_the_zone_is_followed(tmp_path):
    ctr = LocalTransport(tmp_path / "c")
    target = f"/home/codestudio/workspace/{LIB}/data"
    studio = studio_with(SyncMapping(zone=LIB, subfolder="data", target=target))
    zone = studio.zone_path(LIB)
    (zone / "real").mkdir()
    (zone / "real/a.txt").write_text("a")
    os.symlink("real", zone / "data")
    sync(studio, ctr)
    assert (ctr.path(target) / "a.txt").read_text() == "a"
    (ctr.path(target) / "b.txt").write_text("b")
    sync(studio, ctr)
    assert (zone / "real/b.txt").read_text() == "b" and os.readlink(zone / "data") == "real"


def test_subfolder_that_is_a_file_is_refused(tmp_path):
    studio = studio_with(SyncMapping(zone=LIB, subfolder="data", target=TARGET))
    (studio.zone_path(LIB) / "data").write_text("a file")
    with pytest.raises(SyncError, match="not a folder"):
        sync(studio, LocalTransport(tmp_path / "c"))


def test_subfolder_swapped_for_a_symlink_after_the_check_is_not_followed(tmp_path, host, monkeypatch):
    """The folder is opened one real component at a time with O_NOFOLLOW, after the resolution."""
    studio = studio_with(SyncMapping(zone=LIB, subfolder="data/sub", target=TARGET))
    zone = studio.zone_path(LIB)
    os.symlink(str(host), zone / "data")
    # As if ``data`` was a folder when it was resolved and became a symlink just after.
    monkeypatch.setattr(agent, "resolve_path", lambda root, path: path)
    with pytest.raises(zones_mod.RootOutside, match="not a folder"):
        zones_mod.open_mapping_root(zone, "data/sub")
    with pytest.raises(SyncError, match="not a folder"):
        sync(studio, LocalTransport(tmp_path / "c"))
    assert sorted(os.listdir(host)) == ["secret.txt"]


def test_open_mapping_root_creates_missing_folders_inside(tmp_path):
    zone = tmp_path / "zone"
    zone.mkdir()
    fd, rel = zones_mod.open_mapping_root(zone, "a/b")
    try:
        assert rel == "a/b" and os.path.samestat(os.fstat(fd), os.stat(zone / "a/b"))
    finally:
        os.close(fd)


def test_cli_report_names_each_skipped_or_refused_path(capsys):
    from codestudio.cli.studio import _print_report
    from codestudio.sync import MappingReport, SyncReport

    m = MappingReport(LIB, None, TARGET)
    m.skipped.append(("studio", "l1", "symlink to 'l0/..' resolves outside the mapping"))
    m.refused.append(("server", "data", "mapping folder ...: resolves outside the zone"))
    _print_report(SyncReport("s1", "both", [m]), as_json=False)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "skipped l1 (studio): symlink to 'l0/..' resolves outside" in text
    assert "refused data (server)" in text


# --------------------------------------------------------------------------
# A folder swapped for a symlink between the check and the use


@pytest.fixture
def swapped(tmp_path, host, monkeypatch):
    """root/a is a symlink to the host folder, and the parent check is made to pass, as if
    ``a`` was a folder when it was checked and became a symlink just after."""
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(str(host), root / "a")
    monkeypatch.setattr(agent, "safe_parent", lambda *args, **kwargs: None)
    return root


def test_write_through_a_swapped_parent_is_refused(swapped, host):
    import io

    with pytest.raises(agent.Refused, match="changed while syncing"):
        agent.write_file(str(swapped), "a/planted.txt", io.BytesIO(b"x"), 1, False, None)
    with pytest.raises(agent.Refused, match="changed while syncing"):
        agent.write_link(str(swapped), "a/l", "x")
    with pytest.raises(agent.Refused, match="changed while syncing"):
        agent.delete(str(swapped), "a/secret.txt")
    with pytest.raises(agent.Refused, match="changed while syncing"):
        agent.rename(str(swapped), "a/secret.txt", "moved.txt")
    assert sorted(os.listdir(host)) == ["secret.txt"]


def test_read_through_a_swapped_parent_sends_nothing(swapped):
    import io

    out = io.BytesIO()
    with agent.open_tar_writer(out) as tar:
        assert agent.add_to_tar(tar, str(swapped), "a/secret.txt") is False
    assert b"host secret" not in out.getvalue()


def test_listing_never_walks_through_a_folder_swapped_for_a_symlink(tmp_path, host, monkeypatch):
    """``a`` is a folder when its entry is stat'ed and a symlink when the listing enters it."""
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    real_scandir = os.scandir

    class Entry:
        def __init__(self, entry):
            self.entry, self.name, self.path = entry, entry.name, entry.path

        def stat(self, follow_symlinks=True):
            st = self.entry.stat(follow_symlinks=follow_symlinks)
            if self.name == "a" and not os.path.islink(root / "a"):
                os.rmdir(root / "a")
                os.symlink(str(host), root / "a")
            return st

    monkeypatch.setattr(agent.os, "scandir", lambda where: [Entry(e) for e in real_scandir(where)])
    listed = agent.scan(str(root), {}, [])
    assert listed["entries"] == []
    assert not any("secret" in p for p, _ in listed["skipped"])


def test_engine_refuses_a_link_to_git_from_a_lying_agent(tmp_path):
    # A link into the zone's repository (issue 9 item 1): the engine's own check refuses it too.
    zone_name = "project-lib-versioned"
    target = f"/home/codestudio/workspace/{zone_name}"
    ctr = LyingTransport(tmp_path / "c")
    studio = studio_with(SyncMapping(zone=zone_name, target=target))
    folder = ctr.path(target)
    folder.mkdir(parents=True)
    os.symlink(".git", folder / "data")
    with pytest.raises(SyncError, match="'.git'"):
        sync(studio, ctr)
    assert not os.path.lexists(studio.zone_path(zone_name) / "data")
