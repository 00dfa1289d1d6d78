"""File sync against the real agent run as a local subprocess (LocalTransport)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from codestudio.blockapi import StarterFile, SyncMapping
from codestudio.errors import UsageError
from codestudio.sync import agent
from codestudio.sync import (
    LocalTransport,
    SyncConflictError,
    SyncError,
    SyncStudio,
    conflicts,
    default_mappings,
    mappings_for,
    pull_on_stop,
    push_on_start,
    resolve_conflicts,
    sync,
    write_starter_files,
    zone_dir,
)

ZONE = "code_studio-versioned"
TARGET = f"/home/codestudio/workspace/{ZONE}"


def make_studio(*mappings: SyncMapping, exclusions=(), studio_id="s1") -> SyncStudio:
    return SyncStudio(
        studio_id=studio_id,
        project_key="PROJ",
        owner="alice",
        mappings=tuple(mappings) or (SyncMapping(zone=ZONE, target=TARGET),),
        exclusions=tuple(exclusions),
    )


@pytest.fixture
def ctr(tmp_path) -> LocalTransport:
    return LocalTransport(tmp_path / "container")


@pytest.fixture
def studio() -> SyncStudio:
    return make_studio()


def server(studio: SyncStudio, zone: str = ZONE) -> Path:
    return studio.zone_path(zone)


def inside(ctr: LocalTransport, target: str = TARGET) -> Path:
    return ctr.path(target)


def write(path: Path, text: str | bytes, mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    if mode is not None:
        path.chmod(mode)
    return path


def tree(root: Path) -> dict[str, str]:
    """path -> content (or '-> target' for symlinks), without .git."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel.split("/")[0] == ".git":
            continue
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = p.read_bytes().decode(errors="replace")
    return out


def git_log(path: Path) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(path), "log", "--format=%an <%ae>|%cn|%s"], capture_output=True, text=True, check=True
    ).stdout
    return out.strip().splitlines()


# --------------------------------------------------------------------------
# Zones


def test_zone_dirs_by_scope_and_versioning():
    s = zone_dir("code_studio-versioned", studio_id="s1", project_key="PROJ", user="alice")
    p = zone_dir("project-lib-resources", studio_id="s1", project_key="PROJ", user="alice")
    u = zone_dir("user-versioned", studio_id="s1", project_key="PROJ", user="alice")
    assert s.parts[-5:] == ("projects", "PROJ", "studios", "s1", "code_studio-versioned")
    assert p.parts[-3:] == ("projects", "PROJ", "project-lib-resources")
    assert u.parts[-3:] == ("users", "alice", "user-versioned")
    assert (s / ".git").is_dir() and (u / ".git").is_dir()
    assert not (p / ".git").exists()
    assert git_log(s) == ["codestudio <codestudio@codestudio.local>|codestudio|Create zone code_studio-versioned"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"zone": "nope"},
        {"project_key": "../x"},
        {"studio_id": ".."},
        {"user": "a/b"},
    ],
)
def test_zone_dir_rejects_bad_names(kwargs):
    args = {"zone": ZONE, "studio_id": "s1", "project_key": "PROJ", "user": "alice"} | kwargs
    zone = args.pop("zone")
    if zone != ZONE and "zone" not in kwargs:
        zone = ZONE
    if "user" in kwargs:
        zone = "user-versioned"
    with pytest.raises(UsageError):
        zone_dir(zone, **args)


def test_starter_files_written_once_and_committed():
    files = [
        StarterFile(zone=ZONE, path="notes/README.md", content=b"Start here\n"),
        StarterFile(zone=ZONE, path="run.sh", content=b"#!/bin/sh\n", mode=0o755),
    ]
    written = write_starter_files(files, studio_id="s1", project_key="PROJ", user="alice")
    assert written == [f"{ZONE}/notes/README.md", f"{ZONE}/run.sh"]
    z = zone_dir(ZONE, studio_id="s1", project_key="PROJ", user="alice")
    assert os.access(z / "run.sh", os.X_OK)
    assert git_log(z)[0].endswith("Starter files for studio s1")
    (z / "notes/README.md").write_text("mine")
    assert write_starter_files(files, studio_id="s1", project_key="PROJ", user="alice") == []
    assert (z / "notes/README.md").read_text() == "mine"


def test_starter_file_with_unsafe_path_writes_nothing():
    files = [
        StarterFile(zone=ZONE, path="ok.txt", content=b"x"),
        StarterFile.model_construct(zone=ZONE, path="../escape.txt", content=b"x", mode=0o644),
    ]
    with pytest.raises(UsageError, match="escape"):
        write_starter_files(files, studio_id="s1", project_key="PROJ", user="alice")
    z = zone_dir(ZONE, studio_id="s1", project_key="PROJ", user="alice")
    assert not (z / "ok.txt").exists() and not (z.parent / "escape.txt").exists()


# --------------------------------------------------------------------------
# Mappings


class _State:
    def __init__(self, configured, mappings=(), exclusions=()):
        self.sync_configured, self.sync_mappings, self.sync_exclusions = configured, list(mappings), list(exclusions)


def test_mappings_default_to_every_zone_two_way():
    mappings, excl = mappings_for(_State(False))
    assert [m.zone for m in mappings] == [m.zone for m in default_mappings()]
    assert all(not m.one_way and m.target.endswith("/" + m.zone) for m in mappings)
    assert excl == []


def test_mappings_from_file_sync_block_and_bang_rejected():
    m = SyncMapping(zone="recipes", target="/data/recipes", one_way=True)
    assert mappings_for(_State(True, [m], ["*.pyc"])) == ([m], ["*.pyc"])
    with pytest.raises(UsageError, match="!"):
        mappings_for(_State(True, [m], ["!keep.pyc"]))


# --------------------------------------------------------------------------
# Moving files


def test_push_on_start_then_pull_on_stop_commits_as_owner(ctr, studio):
    write(server(studio) / "app.py", "print('v1')\n")
    write(server(studio) / "bin/run.sh", "#!/bin/sh\n", 0o755)
    report = push_on_start(studio, ctr)
    assert sorted(report.mappings[0].pushed) == ["app.py", "bin/run.sh"]
    assert tree(inside(ctr)) == {"app.py": "print('v1')\n", "bin/run.sh": "#!/bin/sh\n"}
    assert os.access(inside(ctr) / "bin/run.sh", os.X_OK)
    assert not os.access(inside(ctr) / "app.py", os.X_OK)

    write(inside(ctr) / "app.py", "print('v2')\n")
    write(inside(ctr) / "new.txt", "from the studio")
    report = pull_on_stop(studio, ctr)
    assert sorted(report.mappings[0].pulled) == ["app.py", "new.txt"]
    assert (server(studio) / "app.py").read_text() == "print('v2')\n"
    log = git_log(server(studio))
    assert log[0].startswith("alice <alice@codestudio.local>|codestudio|Sync from studio s1")
    changed = subprocess.run(
        ["git", "-C", str(server(studio)), "show", "--name-only", "--format=", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert sorted(changed) == ["app.py", "new.txt"]

    # The container is gone after stop: the next start pushes everything again.
    import shutil

    shutil.rmtree(ctr.base)
    push_on_start(studio, ctr)
    assert tree(inside(ctr)) == tree(server(studio))


def test_edit_on_server_is_pushed_and_nothing_moves_when_unchanged(ctr, studio):
    write(server(studio) / "a.txt", "one")
    sync(studio, ctr)
    write(server(studio) / "a.txt", "two")
    report = sync(studio, ctr)
    assert report.mappings[0].pushed == ["a.txt"]
    assert (inside(ctr) / "a.txt").read_text() == "two"
    again = sync(studio, ctr).mappings[0]
    assert (again.pushed, again.pulled, again.deleted_in_studio, again.deleted_on_server) == ([], [], [], [])


def test_owner_email_used_as_author(ctr):
    studio = SyncStudio("s1", "PROJ", "alice", (SyncMapping(zone=ZONE, target=TARGET),), owner_email="alice@example.org")
    sync(studio, ctr)
    write(inside(ctr) / "x", "x")
    sync(studio, ctr)
    assert git_log(server(studio))[0].startswith("alice <alice@example.org>|codestudio|")


def test_mode_change_alone_is_synced(ctr, studio):
    write(server(studio) / "tool", "#!/bin/sh\n")
    sync(studio, ctr)
    (inside(ctr) / "tool").chmod(0o755)
    assert sync(studio, ctr).mappings[0].pulled == ["tool"]
    assert os.access(server(studio) / "tool", os.X_OK)


def test_deletions_propagate_when_other_side_unchanged(ctr, studio):
    write(server(studio) / "gone-on-server.txt", "a")
    write(server(studio) / "dir/gone-in-studio.txt", "b")
    sync(studio, ctr)
    (server(studio) / "gone-on-server.txt").unlink()
    (inside(ctr) / "dir/gone-in-studio.txt").unlink()
    report = sync(studio, ctr).mappings[0]
    assert report.deleted_in_studio == ["gone-on-server.txt"]
    assert report.deleted_on_server == ["dir/gone-in-studio.txt"]
    assert tree(server(studio)) == tree(inside(ctr)) == {}
    assert not (server(studio) / "dir").exists()


def test_same_file_edited_on_both_sides_keeps_both(ctr, studio):
    write(server(studio) / "app.py", "base")
    sync(studio, ctr)
    write(server(studio) / "app.py", "server edit")
    write(inside(ctr) / "app.py", "studio edit")
    with pytest.raises(SyncConflictError, match="app.py") as info:
        sync(studio, ctr)
    (conflict,) = info.value.report.conflicts
    assert (conflict.server_change, conflict.studio_change) == ("modified", "modified")
    assert conflict.copy.startswith("app.py.conflict-s1-")
    expected = {"app.py": "server edit", conflict.copy: "studio edit"}
    assert tree(server(studio)) == expected
    assert tree(inside(ctr)) == expected
    # Both versions are in the history too.
    assert "studio edit" in subprocess.run(
        ["git", "-C", str(server(studio)), "show", f"HEAD:{conflict.copy}"], capture_output=True, text=True
    ).stdout

    listed = conflicts(studio, ZONE)
    assert [c.path for c in listed] == ["app.py"]
    assert listed[0].commit_at_last_sync and listed[0].commit_now
    assert listed[0].commit_at_last_sync != listed[0].commit_now
    # The next sync is clean; deleting the copy (after merging) resolves the conflict.
    sync(studio, ctr)
    (inside(ctr) / conflict.copy).unlink()
    sync(studio, ctr)
    assert conflicts(studio) == []
    assert tree(server(studio)) == {"app.py": "server edit"}


def test_both_sides_same_change_is_not_a_conflict(ctr, studio):
    write(server(studio) / "a", "base")
    sync(studio, ctr)
    write(server(studio) / "a", "same")
    write(inside(ctr) / "a", "same")
    write(server(studio) / "b", "added twice")
    write(inside(ctr) / "b", "added twice")
    report = sync(studio, ctr).mappings[0]
    assert (report.pushed, report.pulled, report.conflicts) == ([], [], [])


@pytest.mark.parametrize("deleted_on", ["server", "studio"])
def test_delete_against_modify_keeps_the_modification(ctr, studio, deleted_on):
    write(server(studio) / "f.txt", "base")
    sync(studio, ctr)
    if deleted_on == "server":
        (server(studio) / "f.txt").unlink()
        write(inside(ctr) / "f.txt", "modified")
    else:
        (inside(ctr) / "f.txt").unlink()
        write(server(studio) / "f.txt", "modified")
    with pytest.raises(SyncConflictError) as info:
        sync(studio, ctr)
    (c,) = info.value.report.conflicts
    assert "deleted" in (c.server_change, c.studio_change) and c.copy is None
    assert tree(server(studio)) == tree(inside(ctr)) == {"f.txt": "modified"}
    assert [x.path for x in conflicts(studio)] == ["f.txt"]
    assert [x.path for x in resolve_conflicts(studio, ZONE)] == ["f.txt"]
    assert conflicts(studio) == []


def test_pull_only_conflict_is_not_copied_twice(ctr, studio):
    write(server(studio) / "a", "base")
    sync(studio, ctr)
    write(server(studio) / "a", "server")
    write(inside(ctr) / "a", "studio")
    with pytest.raises(SyncConflictError):
        sync(studio, ctr, "pull")
    assert (inside(ctr) / "a").read_text() == "studio"  # a pull never writes into the studio
    sync(studio, ctr)  # the server's version and the copy now go to the studio
    assert tree(server(studio)) == tree(inside(ctr))
    assert len(tree(server(studio))) == 2


def test_push_only_conflict_moves_studio_version_aside(ctr, studio):
    write(server(studio) / "a", "base")
    sync(studio, ctr)
    write(server(studio) / "a", "server")
    write(inside(ctr) / "a", "studio")
    with pytest.raises(SyncConflictError) as info:
        sync(studio, ctr, "push")
    (c,) = info.value.report.conflicts
    assert tree(inside(ctr)) == {"a": "server", c.copy: "studio"}
    assert tree(server(studio)) == {"a": "server"}  # a push never writes on the server
    sync(studio, ctr)
    assert tree(server(studio)) == {"a": "server", c.copy: "studio"}


def test_exclusions_in_both_directions(ctr):
    studio = make_studio(exclusions=["*.pyc", "node_modules/", "/build"])
    write(server(studio) / "keep.py", "k")
    write(server(studio) / "keep.pyc", "compiled")
    write(server(studio) / "web/node_modules/x.js", "dep")
    write(server(studio) / "build/out", "o")
    write(server(studio) / "sub/build/kept", "kept: /build is anchored")
    sync(studio, ctr)
    assert sorted(tree(inside(ctr))) == ["keep.py", "sub/build/kept"]
    write(inside(ctr) / "mod.pyc", "c")
    write(inside(ctr) / "node_modules/y.js", "y")
    write(inside(ctr) / "new.py", "n")
    report = sync(studio, ctr).mappings[0]
    assert report.pulled == ["new.py"]
    assert not (server(studio) / "mod.pyc").exists()
    assert not (server(studio) / "node_modules").exists()


def test_git_folder_never_synced(ctr, studio):
    write(inside(ctr) / "proj/.git/config", "x")
    write(inside(ctr) / "proj/main.py", "m")
    sync(studio, ctr)
    assert tree(server(studio)) == {"proj/main.py": "m"}


def test_one_way_mapping_never_writes_back(ctr):
    lib = "/home/codestudio/workspace/project-lib-versioned"
    studio = make_studio(SyncMapping(zone="project-lib-versioned", target=lib, one_way=True))
    z = server(studio, "project-lib-versioned")
    write(z / "lib.py", "v1")
    sync(studio, ctr)
    assert (ctr.path(lib) / "lib.py").read_text() == "v1"
    write(ctr.path(lib) / "lib.py", "studio edit")
    write(ctr.path(lib) / "extra.py", "studio only")
    head_before = git_log(z)
    assert sync(studio, ctr).mappings[0].pulled == []
    assert sync(studio, ctr, "pull").mappings == []
    assert tree(z) == {"lib.py": "v1"} and git_log(z) == head_before
    # A server change still reaches the studio; the studio's edit is moved aside, not lost.
    write(z / "lib.py", "v2")
    with pytest.raises(SyncConflictError) as info:
        sync(studio, ctr)
    copy = info.value.report.conflicts[0].copy
    assert tree(ctr.path(lib)) == {"lib.py": "v2", "extra.py": "studio only", copy: "studio edit"}
    assert tree(z) == {"lib.py": "v2"}


def test_subfolder_mapping(ctr):
    target = "/home/codestudio/workspace/project-lib-versioned/python"
    studio = make_studio(SyncMapping(zone="project-lib-versioned", subfolder="python", target=target))
    z = server(studio, "project-lib-versioned")
    write(z / "python/pkg/__init__.py", "init")
    write(z / "R/other.R", "not mapped")
    sync(studio, ctr)
    assert tree(ctr.path(target)) == {"pkg/__init__.py": "init"}
    write(ctr.path(target) / "pkg/mod.py", "mod")
    sync(studio, ctr)
    assert (z / "python/pkg/mod.py").read_text() == "mod"
    write(ctr.path(target) / "pkg/mod.py", "studio")
    write(z / "python/pkg/mod.py", "server")
    with pytest.raises(SyncConflictError):
        sync(studio, ctr)
    assert conflicts(studio)[0].path == "python/pkg/mod.py"


def test_zone_argument_limits_the_sync(ctr):
    res = "/home/codestudio/workspace/code_studio-resources"
    studio = make_studio(SyncMapping(zone=ZONE, target=TARGET), SyncMapping(zone="code_studio-resources", target=res))
    write(server(studio) / "a", "a")
    write(server(studio, "code_studio-resources") / "big.bin", "b")
    report = sync(studio, ctr, zone="code_studio-resources")
    assert [m.zone for m in report.mappings] == ["code_studio-resources"]
    assert not inside(ctr).exists()
    with pytest.raises(UsageError, match="not synced"):
        sync(studio, ctr, zone="recipes")


def test_symlinks_inside_copied_outside_skipped(ctr, studio):
    write(inside(ctr) / "data/real.txt", "r")
    os.symlink("data/real.txt", inside(ctr) / "link")
    os.symlink("/etc/passwd", inside(ctr) / "etc-link")
    os.symlink("../../outside", inside(ctr) / "data/escape")
    report = sync(studio, ctr).mappings[0]
    assert os.readlink(server(studio) / "link") == "data/real.txt"
    assert not os.path.lexists(server(studio) / "etc-link")
    assert not os.path.lexists(server(studio) / "data/escape")
    assert sorted(p for side, p, _ in report.skipped if side == "studio") == ["data/escape", "etc-link"]


def test_agent_failure_is_a_sync_error(tmp_path, studio):
    class Broken(LocalTransport):
        def start_agent(self, op, root):
            return subprocess.Popen(
                ["sh", "-c", "head -c 1 >/dev/null; echo boom >&2; exit 3"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )

    with pytest.raises(SyncError, match="boom"):
        sync(studio, Broken(tmp_path / "c"))


# --------------------------------------------------------------------------
# Malicious or broken studios


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes = b"evil") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def framed(data: bytes) -> bytes:
    """``data`` as a framed stream (see codestudio.sync.agent)."""
    out = io.BytesIO()
    frames = agent.FrameWriter(out)
    frames.write(data)
    frames.end()
    return out.getvalue()


#: Runs the real agent with its ``get`` answer replaced by a crafted archive (argv[1]).
EVIL_AGENT = r"""
import sys
namespace = {"__name__": "agent"}
exec(open(sys.argv[2]).read(), namespace)
evil = open(sys.argv[1], "rb").read()
def get(self, request):
    out = namespace["FrameWriter"](self.stdout)
    out.write(evil)
    out.end()
namespace["Session"].get = get
sys.exit(namespace["main"](sys.argv[3:]))
"""


class EvilTransport(LocalTransport):
    """A studio whose agent answers ``get`` with a crafted archive."""

    def __init__(self, base: Path, archive: bytes):
        super().__init__(base)
        self.archive = archive

    def start_agent(self, op, root):
        from codestudio.sync.transport import agent_source

        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "evil.tar").write_bytes(self.archive)
        (self.base / "agent.py").write_text(agent_source())
        return subprocess.Popen(
            [self.python, "-c", EVIL_AGENT, str(self.base / "evil.tar"), str(self.base / "agent.py"), op, str(self.path(root))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )


def test_malicious_archive_from_studio_is_refused_and_reported(tmp_path, studio):
    evil = _tar(
        _file("0/../x"),
        _file("0//etc/evil"),
        _special("0/app.py", tarfile.SYMTYPE, "/etc/passwd"),
        _special("0/dev", tarfile.CHRTYPE),
        _special("0/hard", tarfile.LNKTYPE, "app.py"),
        _file("0/not-asked.txt"),
        _file("../escape"),  # no mapping index
        _file("7/app.py"),  # index of no mapping
        _file("00/app.py"),  # not the canonical index
    )
    transport = EvilTransport(tmp_path / "c", evil)
    write(transport.path(TARGET) / "app.py", "innocent")
    write(transport.path(TARGET) / "dev", "innocent")
    write(transport.path(TARGET) / "hard", "innocent")
    with pytest.raises(SyncError, match="refused") as info:
        sync(studio, transport)
    refused = {path: why for side, path, why in info.value.report.refused}
    assert set(refused) == {
        "../x", "/etc/evil", "app.py", "dev", "hard", "not-asked.txt", "../escape", "7/app.py", "00/app.py"
    }
    assert "outside" in refused["app.py"]
    assert "index" in refused["../escape"] and "index" in refused["7/app.py"] and "index" in refused["00/app.py"]
    zones = server(studio).parent
    assert not (zones / "x").exists() and not Path("/etc/evil").exists() and not (zones / "escape").exists()
    assert tree(server(studio)) == {}
    # Nothing refused was recorded: the next (honest) sync pulls the real files.
    sync(studio, LocalTransport(tmp_path / "c"))
    assert tree(server(studio)) == {"app.py": "innocent", "dev": "innocent", "hard": "innocent"}


def test_combined_stream_cannot_reach_another_mapping(tmp_path):
    """One archive carries every mapping's files: an entry is only written where its own mapping asked for it."""
    res_target = "/home/codestudio/workspace/code_studio-resources"
    studio = make_studio(
        SyncMapping(zone=ZONE, target=TARGET), SyncMapping(zone="code_studio-resources", target=res_target)
    )
    evil = _tar(
        _file("1/a.txt", b"evil"),  # a.txt was asked of mapping 0, not 1
        _file("0/b.txt", b"evil"),  # b.txt was asked of mapping 1, not 0
        _file("0/../code_studio-resources/c.txt", b"evil"),
        _file("1/../code_studio-versioned/c.txt", b"evil"),
    )
    transport = EvilTransport(tmp_path / "c", evil)
    write(transport.path(TARGET) / "a.txt", "a")
    write(transport.path(res_target) / "b.txt", "b")
    with pytest.raises(SyncError, match="refused") as info:
        sync(studio, transport)
    versioned, resources = info.value.report.mappings
    assert sorted(versioned.refused) == [
        ("studio", "../code_studio-resources/c.txt", "'..' in path"),
        ("studio", "b.txt", "not requested"),
    ]
    assert sorted(resources.refused) == [
        ("studio", "../code_studio-versioned/c.txt", "'..' in path"),
        ("studio", "a.txt", "not requested"),
    ]
    assert tree(server(studio)) == {} and tree(server(studio, "code_studio-resources")) == {}
    sync(studio, LocalTransport(tmp_path / "c"))
    assert tree(server(studio)) == {"a.txt": "a"}
    assert tree(server(studio, "code_studio-resources")) == {"b.txt": "b"}


def _apply_session(roots: list[Path], header: dict, archive: bytes) -> list[dict]:
    """Run the agent (as sent into studios) on one apply request; its answer lines."""
    from codestudio.sync.transport import agent_source

    request = {"op": "apply", "roots": [str(r) for r in roots], **header}
    stream = json.dumps(request).encode() + b"\n" + framed(archive)
    proc = subprocess.run(
        ["python3", "-I", "-c", agent_source(), "session", "/"], input=stream, capture_output=True, check=True
    )
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert lines[-1] == {"end": True}
    return lines[:-1]


def test_agent_refuses_malicious_archive_from_server(tmp_path):
    """The agent applies the same checks inside the studio (defence in depth)."""
    root, other = tmp_path / "root", tmp_path / "other"
    (tmp_path / "outside").mkdir()
    root.mkdir()
    other.mkdir()
    os.symlink("../outside", root / "sub")
    archive = _tar(
        _file("0/../x"), _file("0//abs"), _file("0/sub/through-link"), _file("0/ok/good.txt", b"good"),
        _special("0/l", tarfile.SYMTYPE, "/etc/passwd"),
        _file("1/../root/escape"), _file("1/fine.txt", b"fine"),
        _file("2/out-of-range"), _file("no-index"), _file("-1/negative"),
    )
    write(tmp_path / "outside/keep", "keep")
    lines = _apply_session([root, other], {"delete": [["../outside/keep"], []], "rename": []}, archive)
    assert sorted((x["i"], x["ok"][0]) for x in lines if "ok" in x) == [(0, "ok/good.txt"), (1, "fine.txt")]
    assert sorted((x["i"] if x["i"] is not None else -1, x["refused"]) for x in lines if "refused" in x) == [
        (-1, "-1/negative"), (-1, "2/out-of-range"), (-1, "no-index"),
        (0, "../outside/keep"), (0, "../x"), (0, "/abs"), (0, "l"), (0, "sub/through-link"),
        (1, "../root/escape"),
    ]
    assert (tmp_path / "outside/keep").exists()
    assert sorted(os.listdir(tmp_path / "outside")) == ["keep"]
    assert sorted(os.listdir(root)) == ["ok", "sub"] and sorted(os.listdir(other)) == ["fine.txt"]


@pytest.mark.parametrize(
    "root", ["relative", "/a/../b", "/a/./b", "/a/", "//a", "/a\nb", 7, None]
)
def test_agent_refuses_bad_roots(root):
    with pytest.raises(agent.ProtocolError):
        agent.resolve_root("/", root)


def test_agent_roots_are_taken_below_the_base():
    assert agent.resolve_root("/", "/home/x") == "/home/x"
    assert agent.resolve_root("/tmp/c", "/home/x") == "/tmp/c/home/x"
    assert agent.resolve_root("/tmp/c/", "/home/x") == "/tmp/c/home/x"


def test_frames_round_trip_and_refuse_cut_or_oversized_streams():
    data = os.urandom(3 * agent.MAX_FRAME + 5)
    reader = agent.FrameReader(io.BytesIO(framed(data) + b"after"))
    got = b"".join(iter(lambda: reader.read(100_000), b""))
    assert got == data and reader.ended
    for cut_at in (2, 1000, len(framed(data)) - 100):
        reader = agent.FrameReader(io.BytesIO(framed(data)[:cut_at]))
        with pytest.raises(agent.ProtocolError, match="cut"):
            while reader.read(100_000):
                pass
    with pytest.raises(agent.ProtocolError, match="frame of"):
        agent.FrameReader(io.BytesIO((agent.MAX_FRAME + 1).to_bytes(4, "big") + b"x")).read()
    with pytest.raises(agent.ProtocolError, match="too much"):
        agent.FrameReader(io.BytesIO(framed(data))).drain(limit=1000)


class CountingTransport(LocalTransport):
    def __init__(self, base: Path):
        super().__init__(base)
        self.execs = 0

    def start_agent(self, op, root):
        self.execs += 1
        return super().start_agent(op, root)


def test_one_exec_per_sync_whatever_the_number_of_mappings(tmp_path):
    studio = make_studio(*default_mappings())
    ctr = CountingTransport(tmp_path / "c")
    for z in ("code_studio-versioned", "recipes", "user-resources"):
        write(server(studio, z) / "f.txt", z)
    sync(studio, ctr, "push", fresh=True)
    assert ctr.execs == 1
    sync(studio, ctr)  # nothing changed
    assert ctr.execs == 2
    write(server(studio, "recipes") / "f.txt", "new")
    write(ctr.path("/home/codestudio/workspace/user-resources") / "g.txt", "from studio")
    report = sync(studio, ctr)  # one file each way
    assert ctr.execs == 3
    assert [m.pushed for m in report.mappings if m.pushed] == [["f.txt"]]
    assert [m.pulled for m in report.mappings if m.pulled] == [["g.txt"]]


# --------------------------------------------------------------------------
# Interrupted syncs


class KillingTransport(LocalTransport):
    """Cuts the given operation's stream after ``limit`` bytes, as a dropped exec would."""

    def __init__(self, base: Path, op: str, limit: int):
        super().__init__(base)
        self.op, self.limit = op, limit

    def start_agent(self, op, root):
        proc = super().start_agent(op, root)
        limit = self.limit
        if self.op == "apply":
            real = proc.stdin

            class Cut:
                sent = 0
                dead = False

                def write(self, data):
                    if Cut.dead:
                        raise BrokenPipeError("killed")
                    if Cut.sent + len(data) > limit:
                        Cut.dead = True
                        # The connection drops mid-file: the agent sees a cut archive.
                        real.write(data[: max(0, limit - Cut.sent)])
                        real.close()
                        proc.wait()
                        raise BrokenPipeError("killed")
                    Cut.sent += len(data)
                    return real.write(data)

                def close(self):
                    if not Cut.dead:
                        real.close()

                def flush(self):
                    if not Cut.dead:
                        real.flush()

            proc.stdin = Cut()
        else:
            real_out = proc.stdout

            class CutOut:
                got = 0

                def read(self, n=-1):
                    if CutOut.got >= limit:
                        proc.kill()
                        raise OSError("killed")
                    data = real_out.read(min(n if n > 0 else limit, limit - CutOut.got))
                    CutOut.got += len(data)
                    return data

                def readline(self, size=-1):
                    line = real_out.readline(size)
                    CutOut.got += len(line)
                    return line

                def close(self):
                    real_out.close()

                closed = False

            proc.stdout = CutOut()
        return proc


def _states(*versions: dict[str, bytes]) -> dict[str, set]:
    allowed: dict[str, set] = {}
    for v in versions:
        for k, data in v.items():
            allowed.setdefault(k, set()).add(data)
    return allowed


@pytest.mark.parametrize("op", ["apply", "get"])
def test_killed_sync_leaves_old_or_new_and_next_sync_completes(tmp_path, studio, op):
    old = {f"f{i:02}.bin": bytes([i]) * 50_000 for i in range(20)}
    new = {k: bytes([255 - i]) * 70_000 for i, k in enumerate(old)}
    honest = LocalTransport(tmp_path / "c")
    src = server(studio) if op == "apply" else honest.path(TARGET)
    dst = honest.path(TARGET) if op == "apply" else server(studio)
    for k, v in old.items():
        write(server(studio) / k, v)
    sync(studio, honest)
    for k, v in new.items():
        write(src / k, v)
    with pytest.raises(SyncError):
        sync(studio, KillingTransport(tmp_path / "c", op, 1_100_000))
    allowed = _states(old, new)
    got = {p.name: p.read_bytes() for p in dst.iterdir() if p.name != ".git"}
    assert set(got) == set(old), "no temporary or missing files"
    assert all(got[k] in allowed[k] for k in got)
    assert any(got[k] == new[k] for k in got) and any(got[k] == old[k] for k in got)
    sync(studio, honest)
    assert {k: (server(studio) / k).read_bytes() for k in new} == new
    assert {k: (honest.path(TARGET) / k).read_bytes() for k in new} == new


# --------------------------------------------------------------------------
# Memory


MEMORY_SCRIPT = r"""
import os, resource, sys
from pathlib import Path
from codestudio.blockapi import SyncMapping
from codestudio.sync import LocalTransport, SyncStudio, sync
target = "/home/codestudio/workspace/code_studio-resources"
studio = SyncStudio("s1", "PROJ", "alice", (SyncMapping(zone="code_studio-resources", target=target),))
ctr = LocalTransport(Path(sys.argv[1]))
big = studio.zone_path("code_studio-resources") / "big.bin"
block = os.urandom(1 << 20)
with open(big, "wb") as f:
    for i in range(200):
        f.write(block)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sync(studio, ctr)                          # push 200 MB
inside = ctr.path(target) / "big.bin"
with open(inside, "r+b") as f:             # change it in the studio: pull 200 MB
    f.write(b"changed")
sync(studio, ctr)
with open(big, "rb") as f:
    assert f.read(7) == b"changed"
print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def test_200mb_file_syncs_with_bounded_memory(tmp_path):
    proc = subprocess.run(
        [os.sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / "c")],
        capture_output=True, text=True, env=os.environ,
    )
    assert proc.returncode == 0, proc.stderr
    base_kb, peak_kb, child_kb = map(int, proc.stdout.split())
    print("max RSS KiB: before", base_kb, "after", peak_kb, "children", child_kb)
    # A file read whole would add 200 MB; chunked streaming adds a few MB.
    assert peak_kb - base_kb < 40_000, (base_kb, peak_kb)
    assert child_kb < 60_000, child_kb  # the agent, and git
    data = (tmp_path / "c" / "home/codestudio/workspace/code_studio-resources/big.bin").stat().st_size
    assert data == 200 << 20


def test_digest_matches(tmp_path, ctr, studio):
    """Records hold the real sha256 of what was written (not of what was listed)."""
    from codestudio.store import Store

    write(server(studio) / "a", "content")
    sync(studio, ctr)
    with Store.default().connect() as conn:
        (sha,) = conn.execute("SELECT sha256 FROM sync_records WHERE path = 'a'").fetchone()
    assert sha == hashlib.sha256(b"content").hexdigest()


def test_tar_writer_is_read_by_tarfile_and_gnu_tar(tmp_path):
    """The hand-built ustar headers (and the PAX fallback for long names) are ordinary tar."""
    src = tmp_path / "src"
    names = ["a.txt", "dir/é-unicode.bin", "d/" + "long" * 40 + ".txt", "exe.sh", "empty", "block.bin"]
    contents = [b"hello", os.urandom(70_000), b"long name", b"#!/bin/sh\n", b"", os.urandom(512)]
    for name, data in zip(names, contents):
        write(src / name, data, 0o755 if name == "exe.sh" else 0o644)
    os.symlink("a.txt", src / "link")
    os.symlink("x" * 150, src / "long-link")  # dangling, but inside: a long link target
    out = io.BytesIO()
    with agent.open_tar_writer(out) as tar:
        for name in [*names, "link", "long-link"]:
            assert agent.add_to_tar(tar, str(src), name, f"0/{name}")
    data = out.getvalue()
    assert len(data) % 512 == 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        got = {}
        for m in tar:
            got[m.name] = (m.type, tar.extractfile(m).read() if m.isreg() else m.linkname, m.mode, m.mtime)
    for name, content in zip(names, contents):
        assert got[f"0/{name}"][:3] == (tarfile.REGTYPE, content, 0o755 if name == "exe.sh" else 0o644)
        assert got[f"0/{name}"][3] == int((src / name).stat().st_mtime)
    assert got["0/link"][:2] == (tarfile.SYMTYPE, "a.txt")
    assert got["0/long-link"][:2] == (tarfile.SYMTYPE, "x" * 150)
    (tmp_path / "x.tar").write_bytes(data)
    listing = subprocess.run(["tar", "-tvf", str(tmp_path / "x.tar")], capture_output=True, text=True, check=True)
    assert sorted(line.split()[5] for line in listing.stdout.splitlines()) == sorted(
        f"0/{n}" for n in [*names, "link", "long-link"]
    )
    extracted = tmp_path / "out"
    extracted.mkdir()
    subprocess.run(["tar", "-xf", str(tmp_path / "x.tar"), "-C", str(extracted)], check=True)
    assert (extracted / "0/dir/é-unicode.bin").read_bytes() == contents[1]


def test_tar_writer_pads_a_file_that_shrinks_and_cuts_one_that_grows(tmp_path):
    class Shrunk:
        def read(self, n):
            return b""

    out = io.BytesIO()
    with agent.open_tar_writer(out) as tar:
        tar.add_file("0/shrunk", Shrunk(), 1000, 0o644, 0)
        tar.add_file("0/grown", io.BytesIO(b"x" * 2000), 1000, 0o644, 0)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue()), mode="r|") as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar}
    assert got == {"0/shrunk": b"\0" * 1000, "0/grown": b"x" * 1000}


def _read_all(data: bytes) -> dict:
    got = {}
    with agent.open_tar_reader(io.BytesIO(data)) as tar:
        for m in tar:
            got[m.name] = (m.type, tar.extractfile(m).read() if m.isreg() else m.linkname, m.mode, m.mtime)
    return got


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_tar_reader_reads_what_tarfile_writes(fmt):
    long = "sub/" + "n" * 60 + "/" + "m" * 80  # over 100 bytes: prefix field, PAX or GNU long name
    members = {"a": b"x" * 513, long: b"long", "é/ü.txt": b"", "big": os.urandom(200_000)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("l")
        link.type, link.linkname = tarfile.SYMTYPE, "a"
        tar.addfile(link)
    got = _read_all(buf.getvalue())
    assert {k: v[1] for k, v in got.items()} == {**members, "l": "a"}
    assert got["a"][2:] == (0o755, 1_700_000_000)


def test_tar_reader_only_raises_read_errors_on_damaged_archives():
    import random

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(5):
            info = tarfile.TarInfo(f"d/{'x' * (40 * i)}/f{i}")
            info.size = 700 * i
            tar.addfile(info, io.BytesIO(b"y" * info.size))
    good = buf.getvalue()
    rng = random.Random(6)
    for _ in range(400):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data[: rng.choice([len(data), rng.randrange(len(data))])])
        try:
            _read_all(data)
        except tarfile.ReadError:
            pass


def test_engine_error_mid_sync_stops_the_agent(tmp_path, studio, monkeypatch):
    """An exception in the engine ends the session: no agent is left blocked on its pipes."""
    from codestudio.sync import core

    procs = []

    class Keeping(LocalTransport):
        def start_agent(self, op, root):
            procs.append(super().start_agent(op, root))
            return procs[-1]

    def broken_plan(studio, job):
        raise RuntimeError("planning failed")

    write(server(studio) / "a.txt", "a")
    real_plan = core.plan_mapping
    monkeypatch.setattr(core, "plan_mapping", broken_plan)
    with pytest.raises(RuntimeError, match="planning failed"):
        sync(studio, Keeping(tmp_path / "c"))
    assert procs and procs[0].poll() is not None
    # (not monkeypatch.undo(): that would also drop the fixture's CODESTUDIO_HOME)
    monkeypatch.setattr(core, "plan_mapping", real_plan)
    sync(studio, LocalTransport(tmp_path / "c"))
    assert tree(inside(LocalTransport(tmp_path / "c"))) == {"a.txt": "a"}


def test_push_on_start_creates_every_target_even_for_empty_zones(ctr):
    """Users find all their zone folders in a new studio's workspace, empty or not."""
    from codestudio.sync import default_mappings

    studio = make_studio(*default_mappings())
    write(server(studio, "recipes") / "r.py", "print(1)\n")
    push_on_start(studio, ctr)
    for mapping in default_mappings():
        assert inside(ctr, mapping.target).is_dir(), mapping.target
    assert (inside(ctr, "/home/codestudio/workspace/recipes") / "r.py").read_text() == "print(1)\n"
