"""A zone's ``.git`` is never a sync destination, and its config never makes the engine run a command (issue 9 item 1).

The attack: studio 1 creates ``data -> .git`` in a shared project zone; studio 2
maps ``subfolder: data``; its pull writes ``config`` with ``core.fsmonitor`` (or
an executable ``hooks/post-commit``), which the engine's next ``git add`` /
``git commit`` would run as root.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from codestudio.blockapi import SyncMapping
from codestudio.sync import LocalTransport, SyncError, SyncStudio, agent, sync
from codestudio.sync import zones as zones_mod

ZONE = "project-lib-versioned"
TARGET = f"/home/codestudio/workspace/{ZONE}"


def studio_with(*mappings: SyncMapping, studio_id: str = "s1", owner: str = "alice") -> SyncStudio:
    return SyncStudio(studio_id, "PROJ", owner, tuple(mappings))


def hostile_git_files(folder: Path, marker: Path) -> None:
    """What studio 2 writes into its mapping folder, hoping it is the zone's ``.git``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config").write_text(f"[core]\n\tfsmonitor = touch {marker}\n")
    (folder / "hooks").mkdir(exist_ok=True)
    hook = folder / "hooks" / "post-commit"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)


@pytest.mark.parametrize("target", [".git", ".GIT", "git~1", "sub/../.git", "./.git/hooks", ".git/../data"])
def test_resolution_refuses_links_into_git(tmp_path, target):
    (tmp_path / ".git").mkdir()
    (tmp_path / "sub").mkdir()
    assert agent.resolve_link(str(tmp_path), "data", target) is None
    assert agent.resolve_path(str(tmp_path), target) is None


def test_resolution_refuses_a_chain_that_ends_in_git(tmp_path):
    (tmp_path / ".git").mkdir()
    os.symlink(".", tmp_path / "l0")
    os.symlink("l0/.git", tmp_path / "l1")
    assert agent.resolve_path(str(tmp_path), "l1") is None
    assert agent.resolve_link(str(tmp_path), "data", "l1/hooks") is None
    assert agent.resolve_link(str(tmp_path), "data", "l0") == ""


def test_link_to_git_created_in_a_studio_is_not_pulled(tmp_path):
    ctr = LocalTransport(tmp_path / "c")
    studio = studio_with(SyncMapping(zone=ZONE, target=TARGET))
    zone = studio.zone_path(ZONE)
    folder = ctr.path(TARGET)
    folder.mkdir(parents=True)
    (folder / "ok.txt").write_text("ok")
    for name, target in [("data", ".git"), ("up", "GIT~1"), ("deep", "ok/../.git/hooks")]:
        os.symlink(target, folder / name)
    report = sync(studio, ctr).mappings[0]
    assert (zone / "ok.txt").read_text() == "ok"
    assert not any(os.path.lexists(zone / n) for n in ("data", "up", "deep"))
    assert {p for _, p, _ in report.skipped} >= {"data", "up", "deep"}


@pytest.mark.parametrize("link", [".git", ".GIT", "sub/../.git"])
def test_mapping_folder_that_leads_into_git_is_refused(tmp_path, link):
    """Studio 2's side: ``data -> .git`` already in the zone (pulled before the fix, or made by hand)."""
    marker = tmp_path / "ran"
    target = f"{TARGET}/data"
    studio = studio_with(SyncMapping(zone=ZONE, subfolder="data", target=target), studio_id="s2")
    zone = studio.zone_path(ZONE)
    (zone / "sub").mkdir()
    os.symlink(link, zone / "data")
    config_before = (zone / ".git/config").read_text()
    ctr = LocalTransport(tmp_path / "c")
    hostile_git_files(ctr.path(target), marker)
    with pytest.raises(SyncError, match="'.git'") as info:
        sync(studio, ctr)
    assert info.value.report.mappings[0].pulled == []
    assert (zone / ".git/config").read_text() == config_before
    assert not (zone / ".git/hooks/post-commit").exists()
    zones_mod.commit_all(zone, "after", zones_mod.COMMITTER)
    assert not marker.exists()


@pytest.mark.parametrize("subfolder", [".git", "data", "data/hooks", "a/../.git"])
def test_open_mapping_root_never_opens_git(tmp_path, subfolder):
    zone = tmp_path / "zone"
    (zone / ".git").mkdir(parents=True)
    os.symlink(".git", zone / "data")
    with pytest.raises(zones_mod.RootOutside, match="'.git'"):
        zones_mod.open_mapping_root(zone, subfolder)


def test_hostile_git_config_runs_nothing_on_commit(tmp_path):
    """Defence in depth: whatever a zone's .git holds, the engine's own git runs no command of it (real git)."""
    marker = tmp_path / "ran"
    studio = studio_with(SyncMapping(zone=ZONE, target=TARGET))
    zone = studio.zone_path(ZONE)
    gitdir = zone / ".git"
    (gitdir / "config").write_text(
        (gitdir / "config").read_text()
        + f"[core]\n\tfsmonitor = touch {marker}.fsmonitor\n\thooksPath = {gitdir}/hooks\n"
        + f"[filter \"evil\"]\n\tclean = sh -c 'touch {marker}.filter; cat'\n"
    )
    for hook in ("pre-commit", "post-commit", "post-index-change", "commit-msg"):
        path = gitdir / "hooks" / hook
        path.write_text(f"#!/bin/sh\ntouch {marker}.{hook}\n")
        path.chmod(0o755)
    (zone / ".gitattributes").write_text("* filter=evil\n")
    (zone / "a.txt").write_text("a")
    commit = zones_mod.commit_all(zone, "change", ("alice", "alice@codestudio.local"))
    assert commit is not None and zones_mod.head(zone) == commit
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("ran")) == []
    assert "fsmonitor" not in (gitdir / "config").read_text()


def test_git_config_swapped_for_a_symlink_is_replaced_not_followed(tmp_path):
    studio = studio_with(SyncMapping(zone=ZONE, target=TARGET))
    zone = studio.zone_path(ZONE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("keep me\n")
    (zone / ".git/config").unlink()
    os.symlink(elsewhere, zone / ".git/config")
    (zone / "a.txt").write_text("a")
    assert zones_mod.commit_all(zone, "change", zones_mod.COMMITTER) is not None
    assert elsewhere.read_text() == "keep me\n"
    assert stat.S_ISREG(os.lstat(zone / ".git/config").st_mode)
