"""Zones on the server: where each (zone, scope) lives, git history, starter files.

Layout under the data dir::

    zones/projects/<PROJECT>/studios/<studio-id>/<zone>   code_studio-* zones (one studio)
    zones/projects/<PROJECT>/<zone>                        project-lib-*, recipes (the project)
    zones/users/<user>/<zone>                              user-* zones (the user, all projects)

Versioned zones are git repositories (the ``git`` CLI, with the host's and
the user's git configuration ignored so behaviour does not depend on them).
Changes coming back from a studio are committed with the studio's owner as
author and ``codestudio`` as committer.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from codestudio.errors import RuntimeFailure, UsageError
from codestudio.locks import file_lock
from codestudio.sync import agent
from codestudio.types import PROJECT_KEY_RE, ZONES, is_versioned, zone_scope

#: Studio ids and user names become folder names and git author names.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+$")
COMMITTER = ("codestudio", "codestudio@codestudio.local")


def _check(kind: str, value: str, regex: re.Pattern[str] = NAME_RE) -> str:
    if not isinstance(value, str) or not regex.match(value) or value in (".", ".."):
        raise UsageError(f"invalid {kind} {value!r}: use letters, digits, '.', '_', '-', '@'")
    return value


def check_zone(zone: str) -> str:
    if zone not in ZONES:
        raise UsageError(f"unknown zone {zone!r}; zones are: {', '.join(ZONES)}")
    return zone


def zone_dir(zone: str, *, studio_id: str, project_key: str, user: str, create: bool = True) -> Path:
    """The server folder of ``zone`` for this studio, project or user; created (and git-initialised) if needed."""
    from codestudio.home import data_dir

    check_zone(zone)
    _check("project key", project_key, PROJECT_KEY_RE)
    scope = zone_scope(zone)
    root = data_dir() / "zones"
    if scope == "studio":
        path = root / "projects" / project_key / "studios" / _check("studio id", studio_id) / zone
    elif scope == "project":
        path = root / "projects" / project_key / zone
    else:
        path = root / "users" / _check("user", user) / zone
    if create:
        _ensure(path, zone)
    return path


def _ensure(path: Path, zone: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if is_versioned(zone) and not (path / ".git").exists():
        with zone_lock(path):
            if (path / ".git").exists():
                return
            git(path, "init", "-q", "-b", "main")
            _reset_config(path)
            git(path, "commit", "-q", "--allow-empty", "-m", f"Create zone {zone}", author=COMMITTER)


# --------------------------------------------------------------------------
# Mapping roots


class RootOutside(Exception):
    """A mapping's folder on the server (zone + subfolder) is not a folder inside the zone."""


def open_mapping_root(zpath: Path, subfolder: str | None) -> tuple[int, str]:
    """Open the folder a mapping syncs on the server; return (directory fd, its path relative to the zone).

    The subfolder is resolved component by component inside the zone
    (symlinks it passes through are followed only while they stay inside),
    then opened from the zone's own descriptor one real folder at a time
    with ``O_NOFOLLOW``, creating missing ones: a symlink swapped in after
    the resolution makes the open fail instead of being followed. Callers
    work below ``/proc/self/fd/<fd>``, so what they list and write is that
    folder whatever happens to the names leading to it.

    :raises RootOutside: when the subfolder leaves the zone, loops, is not
        a folder, or is (or passes through) the zone's ``.git`` by any name.
    """
    rel = ""
    if subfolder:
        resolved = agent.resolve_path(str(zpath), subfolder)
        if resolved is None:
            raise RootOutside(f"subfolder {subfolder!r} resolves outside the zone or into its '.git'")
        rel = resolved
    if any(agent.is_git_name(part) for part in rel.split("/")):
        # resolve_path already refuses these; the open below must never reach a repository folder.
        raise RootOutside(f"subfolder {subfolder!r} resolves into the zone's '.git'")
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    fd = os.open(zpath, flags)
    try:
        for part in rel.split("/") if rel else []:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                child = os.open(part, flags | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                raise RootOutside(f"subfolder {subfolder!r}: {part!r} is not a folder ({exc.strerror})") from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd, rel


def fd_path(fd: int, fallback: Path) -> Path:
    """A path naming the open folder ``fd`` (``/proc/self/fd/N`` where /proc is mounted)."""
    proc = Path(f"/proc/self/fd/{fd}")
    return proc if proc.is_dir() else fallback


# --------------------------------------------------------------------------
# git


def _git_env(author: tuple[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    # The host's and the user's git configuration must not change what a zone records.
    env.update(
        GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_ATTR_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0"
    )
    name, email = author or COMMITTER
    env.update(
        GIT_AUTHOR_NAME=name,
        GIT_AUTHOR_EMAIL=email,
        GIT_COMMITTER_NAME=COMMITTER[0],
        GIT_COMMITTER_EMAIL=COMMITTER[1],
    )
    return env


#: Given on every git command line, above whatever a zone's ``.git/config``
#: says: a hostile config (written through a sync before issue 9 item 1 was
#: closed, or by hand) must never make the engine run a command.
_SAFE_CONFIG = (
    "core.fsmonitor=",
    "core.hooksPath=/dev/null",
    "core.sshCommand=",
    "core.pager=cat",
    "core.editor=false",
    "core.askPass=",
    "core.attributesFile=/dev/null",
    "diff.external=",
    "protocol.allow=never",
)

#: The only configuration a zone's repository has (what ``git init`` writes, and quotePath).
_ZONE_CONFIG = (
    "[core]\n"
    "\trepositoryformatversion = 0\n"
    "\tfilemode = true\n"
    "\tbare = false\n"
    "\tlogallrefupdates = true\n"
    "\tquotePath = false\n"
)


def _git_argv(path: Path, args: tuple[str, ...]) -> list[str]:
    argv = ["git"]
    for item in _SAFE_CONFIG:
        argv += ["-c", item]
    return [*argv, "-C", str(path), *args]


def _reset_config(path: Path) -> None:
    """Rewrite the zone's ``.git/config`` to the engine's own, replacing whatever is there.

    Filters (``filter.<x>.clean`` run by ``git add``), ``core.worktree``,
    ``include.path`` and the like cannot all be switched off from the command
    line, so the repository's config is the engine's, not its content's.
    """
    gitdir = path / ".git"
    st = os.lstat(gitdir)
    if not stat.S_ISDIR(st.st_mode):
        raise RuntimeFailure(f"{gitdir} is not a folder; the zone's history is not touched")
    fd, tmp = tempfile.mkstemp(prefix=".config-", dir=gitdir)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(_ZONE_CONFIG)
        os.replace(tmp, gitdir / "config")  # replaces a symlink itself, never its target
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def git(path: Path, *args: str, author: tuple[str, str] | None = None, check: bool = True) -> str:
    proc = subprocess.run(_git_argv(path, args), capture_output=True, text=True, env=_git_env(author))
    if check and proc.returncode != 0:
        raise RuntimeFailure(f"git {' '.join(args[:2])} in {path} failed: {proc.stderr.strip()}")
    return proc.stdout


def head(path: Path) -> str | None:
    """The zone's current commit id (None for resource zones)."""
    if not (path / ".git").exists():
        return None
    out = git(path, "rev-parse", "--verify", "-q", "HEAD", check=False).strip()
    return out or None


def commit_all(path: Path, message: str, author: tuple[str, str], under: str | None = None) -> str | None:
    """Commit every change (below ``under`` if given); return the new commit id, or None if nothing changed."""
    if not (path / ".git").exists():
        return None
    spec = [under] if under else ["."]
    _reset_config(path)
    git(path, "add", "-A", "--", *spec)
    if subprocess.run(_git_argv(path, ("diff", "--cached", "--quiet")), env=_git_env(None)).returncode == 0:
        return None
    git(path, "commit", "-q", "--no-verify", "-m", message, author=author)
    return head(path)


def owner_author(owner: str, email: str | None = None) -> tuple[str, str]:
    _check("owner", owner)
    if email is not None and not EMAIL_RE.match(email):
        raise UsageError(f"invalid email {email!r}")
    return owner, email or f"{owner}@codestudio.local"


# --------------------------------------------------------------------------
# Locks


@contextmanager
def zone_lock(path: Path) -> Iterator[None]:
    """Serialise syncs touching one zone folder (project zones are shared by studios)."""
    from codestudio.home import data_dir

    key = hashlib.sha256(str(path).encode()).hexdigest()[:20]
    with file_lock(data_dir() / "locks" / f"zone-{key}.lock"):
        yield


# --------------------------------------------------------------------------
# Starter files


def write_starter_files(files: Iterable, *, studio_id: str, project_key: str, user: str) -> list[str]:
    """Write starter files into their zones once, when a studio is created.

    A file that already exists is left alone (project and user zones are
    shared; a user's edit wins over a template's starter). Versioned zones get
    one commit by ``codestudio``. Returns the ``zone/path`` written.

    :param files: :class:`~codestudio.blockapi.StarterFile` items (later ones
        at the same zone and path replace earlier ones).
    """
    latest: dict[tuple[str, str], object] = {}
    for f in files:
        check_zone(f.zone)
        try:
            agent.check_name(f.path)
        except agent.Refused as exc:
            # Checked before anything is written: bad input leaves no half-written zone.
            raise UsageError(f"starter file {f.path!r} in zone {f.zone}: {exc}") from None
        latest[(f.zone, f.path)] = f
    written: list[str] = []
    by_zone: dict[str, list] = {}
    for (zone, _), f in latest.items():
        by_zone.setdefault(zone, []).append(f)
    for zone, items in by_zone.items():
        path = zone_dir(zone, studio_id=studio_id, project_key=project_key, user=user)
        with zone_lock(path):
            for f in items:
                if os.path.lexists(path / f.path):
                    continue
                agent.write_file(str(path), f.path, io.BytesIO(f.content), len(f.content), bool(f.mode & 0o111), None)
                written.append(f"{zone}/{f.path}")
            commit_all(path, f"Starter files for studio {studio_id}", COMMITTER)
    return written

