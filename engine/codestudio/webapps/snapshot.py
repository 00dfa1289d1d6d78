"""What a webapp serves: a snapshot of a studio's ``code_studio-versioned`` files, pushed into each replica.

``--from-studio`` takes the studio's zone as committed on the server (after
a sync of that zone when the studio runs, so edits made in the studio are
in it): ``git archive`` of its HEAD commit, whose id is recorded. Without a
studio the snapshot is the template's starter files for that zone (what a
new studio would start with). A snapshot is a tar of zone-relative paths in
``<webapp dir>/snapshots/<generation>.tar``; every replica of a generation
gets the same one.

A replica's runner waits for the engine's flag file before it starts any
entrypoint (``CODESTUDIO_WAIT_FOR_SYNC``); the engine extracts the snapshot
into each ``code_studio-versioned`` mapping target through
:meth:`Runtime.exec` (tar on stdin, as the studio user), then sets the flag.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from codestudio.errors import RuntimeFailure
from codestudio.types import STUDIO_USER

ZONE = "code_studio-versioned"
#: Flag file the runner waits for before starting entrypoints (the studio's, see runtime/lifecycle/start.py).
SYNC_FLAG = "/tmp/.codestudio-sync-done"
_EXTRACT = 'mkdir -p "$1" && exec tar -xf - --no-same-owner -m -C "$1"'


@dataclass(frozen=True)
class Snapshot:
    """A snapshot file and where it came from (``commit`` is None for starter files)."""

    path: Path
    commit: str | None
    source: str  # "studio <id>" or "template starter files"


def from_studio_zone(zone_path: Path, target: Path, *, studio_id: str, owner: str, message: str) -> Snapshot:
    """Commit what the zone holds on the server (edits made there too), archive that commit into ``target``."""
    import subprocess

    from codestudio.sync.zones import _git_argv, _git_env, commit_all, head, owner_author, zone_lock

    with zone_lock(zone_path):
        commit_all(zone_path, message, owner_author(owner))
        commit = head(zone_path)
    if commit is None:
        raise RuntimeFailure(f"studio {studio_id}'s {ZONE} zone has no commit to publish")
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(target, "wb") as out:
        proc = subprocess.run(_git_argv(zone_path, ("archive", "--format=tar", commit)), stdout=out,
                              stderr=subprocess.PIPE, env=_git_env(None))
    if proc.returncode != 0:
        target.unlink(missing_ok=True)
        raise RuntimeFailure(f"git archive of studio {studio_id}'s {ZONE} zone failed: "
                             f"{proc.stderr.decode(errors='replace').strip()[-300:]}")
    return Snapshot(target, commit, f"studio {studio_id}")


def from_starter_files(state, target: Path) -> Snapshot:
    """The template's starter files of the zone, as a snapshot (no commit)."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tarfile.open(target, "w") as tar:
        for _block, f in state.starter_files:
            if f.zone != ZONE:
                continue
            info = tarfile.TarInfo(f.path)
            info.size, info.mode, info.mtime = len(f.content), f.mode, 0
            tar.addfile(info, io.BytesIO(f.content))
    return Snapshot(target, None, "template starter files")


def mapping_targets(state) -> list[tuple[str | None, str]]:
    """(subfolder, container target) of every ``code_studio-versioned`` mapping of the template."""
    from codestudio.sync import mappings_for

    mappings, _ = mappings_for(state)
    return [(m.subfolder, m.target) for m in mappings if m.zone == ZONE]


def _part(snapshot: Path, subfolder: str | None) -> bytes:
    """The snapshot's members below ``subfolder``, relative to it, as a tar."""
    prefix = (subfolder or "").strip("/")
    out = io.BytesIO()
    with tarfile.open(snapshot) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src:
            name = member.name.lstrip("./")
            if prefix:
                if name != prefix and not name.startswith(prefix + "/"):
                    continue
                name = name[len(prefix):].lstrip("/")
            if not name or member.islnk() or member.isdev() or ".." in name.split("/"):
                continue
            member.name = name
            member.uid = member.gid = 1000
            member.uname = member.gname = ""
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
    return out.getvalue()


def push(snapshot: Path, targets: list[tuple[str | None, str]], pod: str, runtime) -> None:
    """Extract the snapshot into each target in ``pod``, then release the runner (its flag file)."""
    for subfolder, target in targets:
        proc = runtime.exec(pod, ["sh", "-c", _EXTRACT, "sh", target], user=STUDIO_USER, stdin=True)
        try:
            _out, err = proc.communicate(_part(snapshot, subfolder), timeout=300)
        except Exception:
            proc.kill()
            raise
        if proc.wait() != 0:
            raise RuntimeFailure(f"could not put the snapshot into {target} in pod {pod}: "
                                 f"{(err or b'').decode(errors='replace').strip()[-300:]}")
    result = runtime.run(pod, ["touch", SYNC_FLAG], user=STUDIO_USER)
    if result.returncode != 0:
        raise RuntimeFailure(f"could not release the runner of pod {pod}: {result.stderr.strip()}")
