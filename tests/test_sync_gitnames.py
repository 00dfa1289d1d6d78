"""Every name Git takes for ``.git`` is refused like ``.git`` (issue 9, item 4: one file name poisoned a versioned zone)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codestudio.blockapi import StarterFile, SyncMapping
from codestudio.errors import UsageError
from codestudio.sync import LocalTransport, SyncError, SyncStudio, agent, sync, write_starter_files

ZONE = "code_studio-versioned"
TARGET = f"/home/codestudio/workspace/{ZONE}"

#: Case, NTFS short-name, trailing dot/space, alternate-stream and HFS+ ignorable-code-point variants.
VARIANTS = [
    ".GIT", ".Git", ".gIT", "git~1", "GIT~1", "Git~1", ".git.", ".git ", ".GIT. .", "git~1 ",
    ".git:$INDEX_ALLOCATION", "\u200c.git", ".g\u200cit", ".gi\u200dt", ".git\ufeff", "\u202e.GIT", ".G\u206ai\u200ft",
]
NOT_GIT = [".gitignore", ".github", "git", "git~2", ".git~1", "x.git", ".gitx", "git~1x", "\u200b.git", ".g\u0130t"]


def git(path, *args, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, check=check, env=env)


def git_refuses(name: str) -> bool:
    """Whether Git (protecting NTFS and HFS+ names, as it does on Windows and macOS) refuses ``<name>/config``."""
    with tempfile.TemporaryDirectory() as tmp:
        git(tmp, "init", "-q")
        (Path(tmp) / "d" / name).mkdir(parents=True)
        (Path(tmp) / "d" / name / "config").write_text("x")
        return git(tmp, "-c", "core.protectNTFS=true", "-c", "core.protectHFS=true", "add", "-A", check=False).returncode != 0


@pytest.mark.parametrize("name", VARIANTS)
def test_variants_are_what_git_refuses(name):
    assert agent.is_git_name(name) and git_refuses(name)
    with pytest.raises(agent.Refused, match="Git takes it for '.git'"):
        agent.check_name(f"{name}/config")
    with pytest.raises(agent.Refused):
        agent.check_name(f"sub/{name}/hooks/pre-commit")


@pytest.mark.parametrize("name", NOT_GIT)
def test_other_names_are_kept(name):
    assert not agent.is_git_name(name) and not git_refuses(name)
    assert agent.check_name(f"{name}/config")


@given(st.text(alphabet=[".", "g", "G", "i", "I", "t", "T", "~", "1", " ", ":", "\\", "x", "\u200c", "\u202e", "\ufeff", "\u0130"], max_size=8))
def test_engine_and_agent_share_the_rule(name):
    from codestudio.blockapi import is_git_name

    assert is_git_name(name) == agent.is_git_name(name)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=[".", "g", "G", "i", "I", "t", "T", "~", "1", " ", ":", "x", "\u200c", "\ufeff", "\u202a"], min_size=1, max_size=7))
def test_same_answer_as_git(name):
    if name in (".", "..", ".git"):
        return  # git skips a folder named exactly .git instead of refusing it
    assert agent.is_git_name(name) == git_refuses(name)


def make_studio() -> SyncStudio:
    return SyncStudio("s1", "PROJ", "alice", (SyncMapping(zone=ZONE, target=TARGET),))


def plant(folder: Path, names=VARIANTS) -> None:
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "config").write_text("[core]\n\tbare = true\n")


def zone_git_works(zone: Path) -> None:
    assert git(zone, "status", "--porcelain").stdout == ""
    assert git(zone, "fsck", "--no-progress").returncode == 0


def test_variants_in_a_studio_are_skipped_and_the_zone_keeps_working(tmp_path):
    ctr = LocalTransport(tmp_path / "c")
    studio = make_studio()
    zone = studio.zone_path(ZONE)
    folder = ctr.path(TARGET)
    folder.mkdir(parents=True)
    plant(folder)
    (folder / "notebook.ipynb").write_text("{}")
    report = sync(studio, ctr).mappings[0]
    assert sorted(p for side, p, _ in report.skipped if side == "studio") == sorted(VARIANTS)
    assert all("Git takes it for '.git'" in why for _, _, why in report.skipped)
    assert sorted(os.listdir(zone)) == [".git", "notebook.ipynb"]
    zone_git_works(zone)
    # Later pulls still commit.
    (folder / "notebook.ipynb").write_text('{"cells": []}')
    sync(studio, ctr)
    assert git(zone, "log", "-1", "--format=%an %s").stdout.startswith("alice Sync from studio s1")
    zone_git_works(zone)


#: The real agent told that only ".git" itself is reserved: it lists and sends the variants.
LYING_AGENT = r"""
import sys
namespace = {"__name__": "agent"}
exec(open(sys.argv[1]).read(), namespace)
namespace["is_git_name"] = lambda part: part == ".git"
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


def test_engine_refuses_variants_a_lying_agent_lists(tmp_path):
    ctr = LyingTransport(tmp_path / "c")
    studio = make_studio()
    zone = studio.zone_path(ZONE)
    folder = ctr.path(TARGET)
    folder.mkdir(parents=True)
    plant(folder)
    (folder / "ok.txt").write_text("ok")
    with pytest.raises(SyncError, match="Git takes it for '.git'") as info:
        sync(studio, ctr)
    refused = sorted(p for side, p, _ in info.value.report.refused if side == "studio")
    assert refused == sorted(f"{n}/config" for n in VARIANTS)
    assert sorted(os.listdir(zone)) == [".git", "ok.txt"]
    zone_git_works(zone)
    assert git(zone, "show", "--name-only", "--format=", "HEAD").stdout.split() == ["ok.txt"]


def test_variants_on_the_server_are_not_pushed(tmp_path):
    """A resource zone (not a repository) may hold such names, put there by hand: they stay on the server."""
    ctr = LocalTransport(tmp_path / "c")
    target = "/home/codestudio/workspace/code_studio-resources"
    studio = SyncStudio("s1", "PROJ", "alice", (SyncMapping(zone="code_studio-resources", target=target),))
    plant(studio.zone_path("code_studio-resources"), [".GIT", "git~1"])
    report = sync(studio, ctr, "push").mappings[0]
    assert sorted(p for side, p, _ in report.skipped if side == "server") == [".GIT", "git~1"]
    assert not ctr.path(target).exists() or os.listdir(ctr.path(target)) == []


def test_agent_refuses_variants_sent_into_the_studio(tmp_path):
    from codestudio.sync.transport import agent_source

    root = tmp_path / "root"
    root.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in [*(f"0/{n}/config" for n in VARIANTS), "0/fine.txt"]:
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    framed = io.BytesIO()
    frames = agent.FrameWriter(framed)
    frames.write(buf.getvalue())
    frames.end()
    request = json.dumps({"op": "apply", "roots": [str(root)], "delete": [], "rename": []}).encode() + b"\n"
    proc = subprocess.run(
        ["python3", "-I", "-c", agent_source(), "session", "/"], input=request + framed.getvalue(),
        capture_output=True, check=True,
    )
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert sorted(x["refused"] for x in lines if "refused" in x) == sorted(f"{n}/config" for n in VARIANTS)
    assert os.listdir(root) == ["fine.txt"]


@pytest.mark.parametrize("path", [".GIT/config", "git~1/HEAD", "docs/.git./config"])
def test_starter_files_with_a_variant_write_nothing(path):
    files = [StarterFile(zone=ZONE, path="README.md", content=b"hi"), StarterFile(zone=ZONE, path=path, content=b"x")]
    with pytest.raises(UsageError, match="Git takes it"):
        write_starter_files(files, studio_id="s1", project_key="PROJ", user="alice")
    assert not (make_studio().zone_path(ZONE) / "README.md").exists()


@pytest.mark.parametrize("path", [".GIT/config", "git~1/HEAD", "docs/.Git/config", "\u200c.git/config"])
def test_starter_files_block_refuses_variants_at_validation(write_template, blocks, path):
    from codestudio.errors import TemplateError
    from codestudio.plan import plan_template

    tpl = write_template(f"id: g\nblocks:\n  - type: starter-files\n    files: {{{json.dumps(path)}: x}}\n")
    with pytest.raises(TemplateError) as info:
        plan_template(tpl, blocks)
    assert info.value.exit_code == 2 and "'.git' is reserved" in "\n".join(info.value.problems)
