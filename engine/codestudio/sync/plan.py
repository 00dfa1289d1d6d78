"""A mapping during one sync (:class:`Job`) and its plan: what each side changed since the last sync, what moves, what conflicts.

The rules are the table in :mod:`codestudio.sync.core`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from codestudio.blockapi import SyncMapping
from codestudio.sync import agent
from codestudio.sync.mappings import SyncStudio
from codestudio.sync.records import RecordWriter, identity, new_record
from codestudio.sync.report import MappingReport


@dataclass
class Job:
    """One mapping during a sync: its listings, its plan and what happened."""

    m: SyncMapping
    mr: MappingReport
    can_push: bool
    can_pull: bool
    key: str
    zpath: Path
    #: Where the mapping's folder is read and written: set by :func:`codestudio.sync.core._open_roots`
    #: to its open descriptor's path, once it is known to be a folder inside the zone.
    server_root: Path
    writer: RecordWriter
    #: The mapping's folder relative to the zone, as resolved ("" for the zone itself).
    root_rel: str = ""
    records: dict = field(default_factory=dict)
    S: dict = field(default_factory=dict)
    C: dict = field(default_factory=dict)
    push_files: list = field(default_factory=list)
    push_deletes: list = field(default_factory=list)
    renames: list = field(default_factory=list)
    pulls: dict = field(default_factory=dict)  # studio path -> server path
    pull_deletes: list = field(default_factory=list)
    conflict_rows: list = field(default_factory=list)
    conflict_copies: dict = field(default_factory=dict)  # server copy path -> original path
    pulled_entries: dict = field(default_factory=dict)  # server path -> written entry
    server_now: dict = field(default_factory=dict)


def _change(before: dict | None, after: dict | None) -> str:
    if before is None:
        return "added"
    if after is None:
        return "deleted"
    return "modified"


def _conflict_name(path: str, studio_id: str, taken) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"{path}.conflict-{studio_id}-{stamp}"
    n = 2
    while taken(name):
        name = f"{path}.conflict-{studio_id}-{stamp}-{n}"
        n += 1
    return name


def _hash_needed(job: Job) -> None:
    """Hash the server files a comparison needs (recorded or also in the studio); the rest are sent anyway."""
    root = str(job.server_root)
    for p, e in list(job.S.items()):
        if e["h"] is None and (p in job.records or p in job.C):
            try:
                pfd, base = agent.open_parent(root, p, create=False)
                try:
                    e["h"] = agent.sha256_file(base, pfd)
                finally:
                    os.close(pfd)
            except (OSError, agent.Refused):
                del job.S[p]  # vanished since the listing
                job.server_now.pop(p, None)


def plan_mapping(studio: SyncStudio, job: Job) -> None:
    """Compare both sides with the records: what moves, what conflicts."""
    _hash_needed(job)
    records, S, C, writer = job.records, job.S, job.C, job.writer

    def taken(name: str) -> bool:
        return name in S or name in C or os.path.lexists(job.server_root / name)

    for p in sorted(set(records) | set(S) | set(C)):
        r, s, c = records.get(p), S.get(p), C.get(p)
        ir, is_, ic = identity(r), identity(s), identity(c)
        if is_ == ic:
            # Same on both sides (or gone from both): nothing moves.
            if s is None:
                if r is not None:
                    writer.drop(p)
            elif r is None or is_ != ir or (r["s"], r["m"], r["ss"], r["sm"]) != (s["s"], s["m"], c["s"], c["m"]):
                writer.put(p, new_record(s, c, s))
            continue
        server_changed, studio_changed = is_ != ir, ic != ir
        if server_changed and not studio_changed:
            if job.can_push:
                (job.push_files if s else job.push_deletes).append(p)
            continue
        if studio_changed and not server_changed:
            if job.can_pull:
                if c:
                    job.pulls[p] = p
                else:
                    job.pull_deletes.append(p)
            continue
        # Changed on both sides, differently.
        if s is None:  # server deleted, studio modified: the modification wins
            job.conflict_rows.append((p, "deleted", _change(r, c), None))
            if job.can_pull:
                job.pulls[p] = p
        elif c is None:  # studio deleted, server modified: the modification wins
            job.conflict_rows.append((p, _change(r, s), "deleted", None))
            if job.can_push:
                job.push_files.append(p)
        else:
            copy = _conflict_name(p, studio.studio_id, taken)
            job.conflict_rows.append((p, _change(r, s), _change(r, c), copy))
            if job.can_pull:
                # The server's version goes to the studio only once the studio's is safe here.
                job.pulls[p] = copy
                job.conflict_copies[copy] = p
            else:
                job.renames.append((p, copy))
                job.push_files.append(p)
