"""Two-way file synchronisation between zones and a studio, with conflict detection.

For each mapping the engine lists both sides (the server folder with the
agent's functions, the studio's folder with the agent through a
:class:`~codestudio.sync.transport.Transport`) and compares each path with
the record of the last sync (``sync_records``). A side "changed" a path when
its (kind, sha256, executable bit) differs from the record; only changed
files are hashed again (size and mtime are compared first, per side).

=====================  =========================================================
changed on             action
=====================  =========================================================
server only            push (write or delete in the studio)
studio only            pull (write or delete on the server; never for one-way)
both, same result      nothing to move; the record is updated
both, one deleted      conflict; the modified version wins on both sides
both, both modified    conflict; the server's version stays in place, the
                       studio's is kept as ``<name>.conflict-<studio>-<UTC time>``
                       on the server (and pushed back, so both sides hold both)
=====================  =========================================================

All mappings of a sync share one agent session, that is one exec (the
dominant cost of a small sync): one listing request for every folder,
answered while the server side is listed, then at most one combined ``get``
stream and one combined ``apply`` stream, whose member names are prefixed
by the mapping's index in that request and checked on arrival.

On a push-only sync (or a one-way mapping) the studio's conflicting version
is renamed to the conflict name inside the studio instead. Records are
written only for paths whose transfer the receiving side confirmed, so a
sync killed mid-way is completed by the next one. Conflicts are stored in
``sync_conflicts`` until the conflict copy is deleted or they are resolved.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pathspec

from codestudio.blockapi import SyncMapping
from codestudio.errors import RuntimeFailure, UsageError
from codestudio.store import Store
from codestudio.sync import agent
from codestudio.sync.transport import Transport
from codestudio.sync.zones import (
    COMMITTER,
    check_zone,
    commit_all,
    head,
    owner_author,
    RootOutside,
    fd_path,
    open_mapping_root,
    zone_dir,
    zone_lock,
)
from codestudio.types import ZONES, default_target, is_versioned

Direction = Literal["both", "push", "pull"]

LINK_MODE = 0o120777
FILE_MODE = 0o100644
EXEC_MODE = 0o100755


# --------------------------------------------------------------------------
# What is synced


@dataclass(frozen=True)
class SyncStudio:
    """What sync needs to know about a studio (built by the runtime from its state)."""

    studio_id: str
    project_key: str
    owner: str
    mappings: tuple[SyncMapping, ...]
    exclusions: tuple[str, ...] = ()
    owner_email: str | None = None

    def zone_path(self, zone: str) -> Path:
        return zone_dir(zone, studio_id=self.studio_id, project_key=self.project_key, user=self.owner)


def default_mappings() -> list[SyncMapping]:
    """Every zone, two-way, to its default target: what a template without ``file-sync`` gets."""
    return [SyncMapping(zone=z, target=default_target(z)) for z in ZONES]


def mappings_for(state) -> tuple[list[SyncMapping], list[str]]:
    """Mappings and exclusions of a build state (:class:`~codestudio.blockapi.BuildState`).

    With no ``file-sync`` block every zone maps two-way to its default target.
    """
    exclusions = check_exclusions(list(getattr(state, "sync_exclusions", []) or []))
    if not getattr(state, "sync_configured", False):
        return default_mappings(), exclusions
    return list(state.sync_mappings), exclusions


def check_exclusions(patterns: Iterable[str]) -> list[str]:
    """Validate gitignore patterns (no ``!``: an exclusion can't be re-included)."""
    out = []
    for p in patterns:
        if not isinstance(p, str) or not p.strip() or "\n" in p or "\x00" in p:
            raise UsageError(f"invalid sync exclusion {p!r}")
        if p.lstrip().startswith("!"):
            raise UsageError(f"sync exclusion {p!r}: '!' (re-include) is not supported")
        out.append(p)
    try:
        pathspec.GitIgnoreSpec.from_lines(out)
    except Exception as exc:  # pathspec raises several types for bad patterns
        raise UsageError(f"invalid sync exclusion: {exc}") from None
    return out


def exclusion_regexes(patterns: Iterable[str]) -> list[str]:
    """The patterns as regular expressions, so the stdlib-only agent matches exactly as pathspec does."""
    spec = pathspec.GitIgnoreSpec.from_lines(check_exclusions(patterns))
    return [p.regex.pattern for p in spec.patterns if p.include and p.regex is not None]


def mapping_key(m: SyncMapping) -> str:
    return f"{m.zone}:{m.subfolder or ''}:{m.target}"


# --------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Conflict:
    """A path changed on both sides since the last sync.

    ``path`` and ``copy`` are relative to the zone; ``copy`` is where the
    studio's version was kept on the server (None when one side deleted the
    file: then the modified version won and nothing needed keeping).
    """

    zone: str
    path: str
    server_change: str  # added | modified | deleted
    studio_change: str
    copy: str | None
    commit_at_last_sync: str | None
    commit_at_detection: str | None
    commit_now: str | None
    detected_at: float
    mapping: str

    def describe(self) -> str:
        text = f"{self.zone}/{self.path} (server {self.server_change}, studio {self.studio_change})"
        if self.copy:
            text += f": studio's version kept as {self.zone}/{self.copy}"
        return text


@dataclass
class MappingReport:
    zone: str
    subfolder: str | None
    target: str
    pushed: list[str] = field(default_factory=list)
    pulled: list[str] = field(default_factory=list)
    deleted_in_studio: list[str] = field(default_factory=list)
    deleted_on_server: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    #: (side, path, reason): symlinks pointing outside, special files, vanished files
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    #: (side, path, reason): archive entries or writes refused for safety
    refused: list[tuple[str, str, str]] = field(default_factory=list)
    commit_before: str | None = None
    commit_after: str | None = None


@dataclass
class SyncReport:
    studio_id: str
    direction: str
    mappings: list[MappingReport] = field(default_factory=list)

    @property
    def conflicts(self) -> list[Conflict]:
        return [c for m in self.mappings for c in m.conflicts]

    @property
    def refused(self) -> list[tuple[str, str, str]]:
        return [r for m in self.mappings for r in m.refused]

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


class SyncError(RuntimeFailure):
    """A sync finished with refused entries or failed talking to the studio; ``report`` says what moved."""

    def __init__(self, message: str, report: SyncReport | None = None):
        self.report = report
        super().__init__(message)


class SyncConflictError(SyncError):
    """A sync found conflicts (both versions kept); raised after everything else was synced."""


# --------------------------------------------------------------------------
# Records


def _ident(e: dict | None) -> tuple | None:
    return None if e is None else (e["t"], e["h"], bool(e["x"]))


def _mode(e: dict) -> int:
    return LINK_MODE if e["t"] == "l" else (EXEC_MODE if e["x"] else FILE_MODE)


def _load_records(store: Store, studio_id: str, key: str) -> dict[str, dict]:
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT path, size, mtime_ns, sha256, mode, studio_size, studio_mtime_ns FROM sync_records "
            "WHERE studio_id = ? AND mapping = ?",
            (studio_id, key),
        ).fetchall()
    return {
        r["path"]: {
            "t": "l" if r["mode"] == LINK_MODE else "f",
            "x": r["mode"] == EXEC_MODE,
            "h": r["sha256"],
            "s": r["size"],
            "m": r["mtime_ns"],
            "ss": r["studio_size"],
            "sm": r["studio_mtime_ns"],
        }
        for r in rows
    }


def _record(server: dict | None, studio: dict | None, ident_from: dict) -> dict:
    """A record: identity from ``ident_from``, each side's stat if known (-1 forces a re-hash)."""
    return {
        "t": ident_from["t"],
        "x": bool(ident_from["x"]),
        "h": ident_from["h"],
        "s": server["s"] if server else -1,
        "m": server["m"] if server else -1,
        "ss": studio["s"] if studio else -1,
        "sm": studio["m"] if studio else -1,
    }


class _RecordWriter:
    """Collects record changes and writes them in one transaction (also on failure)."""

    def __init__(self, store: Store, studio_id: str, key: str):
        self.store, self.studio_id, self.key = store, studio_id, key
        self.upserts: dict[str, dict] = {}
        self.deletes: set[str] = set()

    def put(self, path: str, rec: dict) -> None:
        self.deletes.discard(path)
        self.upserts[path] = rec

    def drop(self, path: str) -> None:
        self.upserts.pop(path, None)
        self.deletes.add(path)

    def flush(self, commit_id: str | None = None, run: bool = False) -> None:
        with self.store.connect() as conn:
            conn.executemany(
                "DELETE FROM sync_records WHERE studio_id = ? AND mapping = ? AND path = ?",
                [(self.studio_id, self.key, p) for p in self.deletes],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO sync_records (studio_id, mapping, path, size, mtime_ns, sha256, mode, "
                "studio_size, studio_mtime_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (self.studio_id, self.key, p, r["s"], r["m"], r["h"], _mode(r), r["ss"], r["sm"])
                    for p, r in self.upserts.items()
                ],
            )
            if run:
                conn.execute(
                    "INSERT OR REPLACE INTO sync_runs (studio_id, mapping, commit_id, synced_at) VALUES (?, ?, ?, ?)",
                    (self.studio_id, self.key, commit_id, time.time()),
                )
        self.upserts.clear()
        self.deletes.clear()


# --------------------------------------------------------------------------
# Talking to the agent


#: Seconds the agent gets to write its hash caches and exit once a sync is done.
CLOSE_TIMEOUT = 60

# Everything read from a studio is bounded: a hostile agent must not be able
# to grow the engine's memory (an endless line once took 1 GiB in 4 s).
#: Longest answer line (listings come in chunks of well under 1 MiB).
MAX_LINE = 4 << 20
#: Most entries (files, symlinks, skipped names) a studio may list in one sync.
MAX_LISTED = 500_000
#: Most entries refused in one sync before the engine stops reading.
MAX_REFUSED = 10_000
#: Answer lines an apply may bring beyond one per item sent.
APPLY_SLACK = 1_000
#: Bytes of the agent's stderr kept for error messages (the rest is read and dropped).
STDERR_TAIL = 8 << 10


class _AgentFailed(Exception):
    """The session with the agent broke; the message says how."""


class _TooMuch(Exception):
    """The studio sent more than a limit allows; the message names the limit."""


def _limited_line(stream, limit: int = MAX_LINE) -> bytes:
    """One line of ``stream`` (b"" at its end), never holding more than ``limit`` bytes of it."""
    line = stream.readline(limit + 1)
    if len(line) > limit or (len(line) == limit and not line.endswith(b"\n")):
        raise _TooMuch(f"an answer line longer than {limit} bytes (the limit for a line read from a studio)")
    return line


def _loads(line: bytes):
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def _drain_lines(stream, sink: list, until: bytes, max_lines: int, errors: list, stop) -> threading.Thread:
    """Collect ``stream``'s lines in a thread, up to its end or the line starting with ``until``.

    At most ``max_lines`` lines of at most :data:`MAX_LINE` bytes are kept;
    past a limit the reason goes to ``errors``, ``stop()`` is called (it
    kills the agent, which may be blocked writing, so the sender is not
    left blocked too) and reading stops.
    """

    def run() -> None:
        try:
            while True:
                line = _limited_line(stream)
                if not line:
                    return
                if len(sink) >= max_lines:
                    raise _TooMuch(f"more than {max_lines} answer lines for what was sent")
                sink.append(line)
                if line.startswith(until):
                    return
        except _TooMuch as exc:
            errors.append(str(exc))
            stop()
        except (OSError, ValueError):
            pass  # the pipe closed under us: the session is being stopped

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _drain_tail(stream, tail: bytearray, keep: int = STDERR_TAIL) -> threading.Thread:
    """Read ``stream`` to its end in a thread, keeping only its last ``keep`` bytes in ``tail``."""

    def run() -> None:
        try:
            while True:
                chunk = stream.read1(1 << 16) if hasattr(stream, "read1") else stream.read(1 << 16)
                if not chunk:
                    return
                tail.extend(chunk)
                if len(tail) > keep:
                    del tail[: len(tail) - keep]
        except (OSError, ValueError):
            pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _checked_listing(m: dict) -> dict:
    """A studio's listing of one folder, its names checked as the agent should have (it may lie)."""
    entries, refused = [], []
    for e in agent.rows_to_entries(m["rows"]):
        if not isinstance(e["p"], str) or e["t"] not in ("f", "l"):
            raise ValueError(f"bad row {e!r:.80}")
        try:
            agent.check_name(e["p"])
        except agent.Refused as exc:
            refused.append((e["p"], str(exc)))
            continue
        entries.append(e)
    return {"entries": entries, "skipped": [(str(p), str(why)) for p, why in m["skipped"]], "refused": refused}


class _Session:
    """One agent process (one exec) for a whole sync: list, then get, then apply."""

    def __init__(self, transport: Transport):
        self.transport = transport
        self.proc = transport.start_agent("session", "/")
        self.err = bytearray()
        self.threads = [_drain_tail(self.proc.stderr, self.err)]
        self.cache = getattr(transport, "cache_dir", None)

    def send(self, request: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(request, separators=(",", ":")).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise _AgentFailed("agent stopped reading") from None

    def read_line(self) -> dict:
        try:
            line = _limited_line(self.proc.stdout)
        except _TooMuch as exc:
            raise _AgentFailed(str(exc)) from None
        if not line:
            raise _AgentFailed("agent ended its answer early")
        data = _loads(line)
        if not isinstance(data, dict):
            raise _AgentFailed(f"unreadable answer {line[:80]!r}")
        return data

    def start_list(self, roots: list[str], regexes: list[str]) -> None:
        # Sent before the server side is listed, so both sides list at once.
        self.send({"op": "list", "roots": roots, "exclude": regexes, "cache": self.cache})

    def read_list(self, count: int) -> list[dict]:
        """The listings of ``count`` folders: chunks ``{"i", "rows"|"skipped"}``, then ``{"maps": count}``."""
        maps: list[dict] = [{"rows": [], "skipped": []} for _ in range(count)]
        listed = 0
        try:
            while True:
                data = self.read_line()
                if "maps" in data:
                    if data["maps"] != count:
                        raise ValueError(f"{data['maps']!r:.20} listings for {count} folders")
                    break
                i = data["i"]
                if not isinstance(i, int) or not 0 <= i < count:
                    raise ValueError(f"folder index {i!r:.20}")
                for key in ("rows", "skipped"):
                    items = data.get(key, [])
                    if not isinstance(items, list):
                        raise ValueError(f"{key} is not a list")
                    listed += len(items)
                    if listed > MAX_LISTED:
                        raise _AgentFailed(f"listed more than {MAX_LISTED} entries (the limit for one sync)")
                    maps[i][key] += items
            return [_checked_listing(m) for m in maps]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _AgentFailed(f"unreadable listing: {exc}") from None

    def get(self, jobs: list[_Job], server_roots: list[str]) -> str | None:
        """Fetch every job's ``pulls`` into ``job.pulled_entries``; an error message if it broke part-way."""
        self.send({"op": "get", "roots": [j.m.target for j in jobs], "paths": [sorted(j.pulls) for j in jobs]})
        known: list[set] = [set() for _ in jobs]
        stream = agent.FrameReader(self.proc.stdout)
        refused_before = sum(len(j.mr.refused) for j in jobs)
        try:
            with agent.open_tar_reader(stream) as tar:
                for member in tar:
                    if sum(len(j.mr.refused) for j in jobs) - refused_before >= MAX_REFUSED:
                        return f"more than {MAX_REFUSED} entries refused (the limit for one sync); stopped reading"
                    try:
                        i, name = agent.split_member(member.name, len(jobs))
                    except agent.Refused as exc:
                        # Not attributable to a mapping: reported with the first one.
                        jobs[0].mr.refused.append(("studio", member.name, str(exc)))
                        continue
                    job = jobs[i]
                    try:
                        dest = job.pulls.get(agent.check_name(name))
                        if dest is None:
                            raise agent.Refused("not requested")
                        job.pulled_entries[dest] = agent.write_member(server_roots[i], tar, member, dest, known[i])
                    except agent.Refused as exc:
                        job.mr.refused.append(("studio", name, str(exc)))
            stream.drain()
        except (tarfile.TarError, OSError, EOFError, agent.ProtocolError) as exc:
            # Files written before the failure are complete; the caller records them.
            return f"unreadable archive: {exc}"
        return None

    def apply(self, jobs: list[_Job], server_roots: list[str]) -> tuple[list[tuple[int, dict]], str | None]:
        """Send every job's renames, deletions and files.

        Returns the agent's answers as (job index, answer) and an error
        message if the transfer broke part-way. Files that vanished here
        before they could be sent are reported in their job.
        """
        out: list[bytes] = []
        failure = None
        self.send(
            {
                "op": "apply",
                "roots": [j.m.target for j in jobs],
                "rename": [j.renames for j in jobs],
                "delete": [j.push_deletes for j in jobs],
                "cache": self.cache,
            }
        )
        # Drained concurrently: the agent confirms while we are still sending.
        sent = sum(len(j.renames) + len(j.push_deletes) + len(j.push_files) for j in jobs)
        too_much: list[str] = []
        reader = _drain_lines(self.proc.stdout, out, b'{"end"', sent + APPLY_SLACK, too_much, self.proc.kill)
        try:
            frames = agent.FrameWriter(self.proc.stdin)
            with agent.open_tar_writer(frames) as tar:
                for i, (job, root) in enumerate(zip(jobs, server_roots)):
                    known: set = set()
                    for name in job.push_files:
                        if not agent.add_to_tar(tar, root, name, f"{i}/{name}", known):
                            job.mr.skipped.append(("server", name, "vanished before it could be sent"))
            frames.end()
        except (BrokenPipeError, OSError) as exc:
            failure = f"agent stopped reading ({exc})"
            self._stop_input()
        reader.join()
        results: list[tuple[int, dict]] = []
        ended = False
        for line in out:
            res = _loads(line)
            if not isinstance(res, dict):
                continue  # a line cut short by a killed agent confirms nothing
            if res.get("end"):
                ended = True
                continue
            i = res.get("i")
            if i is None:
                jobs[0].mr.refused.append(("studio", str(res.get("refused", "?")), str(res.get("reason", ""))))
            elif isinstance(i, int) and 0 <= i < len(jobs):
                results.append((i, res))
        if too_much:
            failure = too_much[0]
        elif failure is None and not ended:
            failure = "agent ended its answer early"
        return results, failure

    def _stop_input(self) -> None:
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    def close(self, failure: str | None = None) -> str | None:
        """End the session; return an error message if it (or the agent) failed."""
        self._stop_input()
        if failure is not None and self.proc.poll() is None:
            self.proc.kill()  # it may be blocked writing an answer nobody reads
        try:
            # All answers are in: an agent that does not end now is stuck (or hostile).
            rc = self.proc.wait(timeout=CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            failure = failure or f"agent did not exit within {CLOSE_TIMEOUT} s"
        for t in self.threads:
            t.join()
        if rc == 0 and failure is None:
            return None
        tail = bytes(self.err).decode(errors="replace").strip().splitlines()[-5:]
        what = failure or "agent failed"
        return f"sync agent in {self.transport.description}: {what} (exit {rc})" + (
            ": " + " | ".join(tail) if tail else ""
        )


# --------------------------------------------------------------------------
# Sync


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


def _zone_rel(m: SyncMapping, path: str) -> str:
    return f"{m.subfolder}/{path}" if m.subfolder else path


@dataclass
class _Job:
    """One mapping during a sync: its listings, its plan and what happened."""

    m: SyncMapping
    mr: MappingReport
    can_push: bool
    can_pull: bool
    key: str
    zpath: Path
    #: Where the mapping's folder is read and written: set by :func:`_open_roots`
    #: to its open descriptor's path, once it is known to be a folder inside the zone.
    server_root: Path
    writer: _RecordWriter
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


def sync(
    studio: SyncStudio,
    transport: Transport,
    direction: Direction = "both",
    zone: str | None = None,
    *,
    fresh: bool = False,
    store: Store | None = None,
) -> SyncReport:
    """Synchronise the studio's mappings (all, or those of ``zone``) in ``direction``.

    All mappings share one agent session (one exec): one listing of every
    folder, then at most one transfer each way.

    :param fresh: the studio's folders are new (a just-started container):
        forget what the last sync recorded about them, so everything on the
        server is pushed.
    :raises SyncConflictError: after syncing everything else, when conflicts
        were found (both versions are kept; see the module docstring).
    :raises SyncError: when archive entries were refused or the agent failed.
    """
    if direction not in ("both", "push", "pull"):
        raise UsageError(f"invalid sync direction {direction!r}: both, push or pull")
    mappings = list(studio.mappings)
    if zone is not None:
        check_zone(zone)
        mappings = [m for m in mappings if m.zone == zone]
        if not mappings:
            raise UsageError(f"zone {zone!r} is not synced with studio {studio.studio_id}")
    store = store or Store.default()
    author = owner_author(studio.owner, studio.owner_email)
    regexes = exclusion_regexes(studio.exclusions)
    report = SyncReport(studio.studio_id, direction)
    jobs: list[_Job] = []
    for m in mappings:
        can_push = direction in ("both", "push")
        can_pull = direction in ("both", "pull") and not m.one_way
        if not (can_push or can_pull):
            continue
        mr = MappingReport(m.zone, m.subfolder, m.target)
        report.mappings.append(mr)
        key = mapping_key(m)
        zpath = studio.zone_path(m.zone)
        server_root = zpath / m.subfolder if m.subfolder else zpath
        jobs.append(_Job(m, mr, can_push, can_pull, key, zpath, server_root, _RecordWriter(store, studio.studio_id, key)))
    if jobs:
        with ExitStack() as locks:
            # Sorted: two syncs sharing project or user zones take their locks in one order.
            for zpath in sorted({str(j.zpath) for j in jobs}):
                locks.enter_context(zone_lock(Path(zpath)))
            jobs = _open_roots(jobs, locks)
            if jobs:
                _sync_jobs(studio, transport, jobs, fresh, regexes, author, store)
    if report.conflicts:
        names = "\n".join(f"  {c.describe()}" for c in report.conflicts)
        raise SyncConflictError(f"studio {studio.studio_id}: {len(report.conflicts)} conflict(s)\n{names}", report)
    if report.refused:
        names = "\n".join(f"  {side}: {path}: {why}" for side, path, why in report.refused)
        raise SyncError(f"studio {studio.studio_id}: entries refused\n{names}", report)
    return report


def _open_roots(jobs: list[_Job], stack: ExitStack) -> list[_Job]:
    """Open every mapping's server folder (closed with ``stack``); refuse the mappings whose folder leaves the zone.

    Done under the zone locks, before anything is listed, created or
    written: a subfolder that is (or passes through) a symlink leading out
    of the zone would otherwise have the engine list, send and overwrite
    files elsewhere on the host.
    """
    kept = []
    for job in jobs:
        try:
            fd, rel = open_mapping_root(job.zpath, job.m.subfolder)
        except (RootOutside, OSError) as exc:
            job.mr.refused.append(
                ("server", job.m.subfolder or ".", f"mapping folder {job.m.zone}/{job.m.subfolder or ''}: {exc}; "
                 "nothing of this mapping was synced (the zone must keep it inside)")
            )
            continue
        stack.callback(os.close, fd)
        job.server_root, job.root_rel = fd_path(fd, job.zpath / rel if rel else job.zpath), rel
        kept.append(job)
    return kept


def _sync_jobs(
    studio: SyncStudio,
    transport: Transport,
    jobs: list[_Job],
    fresh: bool,
    regexes: list[str],
    author: tuple[str, str],
    store: Store,
) -> None:
    session = _Session(transport)
    failure: str | None = None
    completed = False
    try:
        session.start_list([j.m.target for j in jobs], regexes)
        for job in jobs:
            _list_server(studio, job, fresh, regexes, store)
        for job, listing in zip(jobs, session.read_list(len(jobs))):
            job.mr.skipped += [("studio", p, why) for p, why in listing["skipped"]]
            job.mr.refused += [("studio", p, f"listed by the studio: {why}") for p, why in listing["refused"]]
            job.C = {e["p"]: e for e in listing["entries"]}
            _plan(studio, job)

        # 1. studio -> server
        pulling = [j for j in jobs if j.pulls]
        if pulling:
            failure = session.get(pulling, [str(j.server_root) for j in pulling])
        for job in jobs:
            _after_pull(studio, job, author)
        if failure:
            raise _AgentFailed(failure)

        # 2. server -> studio
        # A new container gets every mapping's folder, even for an empty zone:
        # users look for their zones in the workspace (apply creates roots).
        pushing = [j for j in jobs if j.push_files or j.push_deletes or j.renames or fresh]
        if pushing:
            results, failure = session.apply(pushing, [str(j.server_root) for j in pushing])
            for i, res in results:
                _record_push(pushing[i], res)
            if failure:
                raise _AgentFailed(failure)
        completed = True
    except _AgentFailed as exc:
        failure = str(exc)
    finally:
        for job in jobs:
            job.writer.flush()
        # Interrupted here (an exception on its way out): the agent may be
        # blocked writing an answer nobody will read, so it is stopped.
        closing = session.close(failure if completed or failure else "sync interrupted")
    if closing:
        # What was confirmed is recorded (above); the next sync completes the rest.
        raise SyncError(f"studio {studio.studio_id}: {closing}")
    for job in jobs:
        _finish_job(studio, job, store)


def _list_server(studio: SyncStudio, job: _Job, fresh: bool, regexes: list[str], store: Store) -> None:
    # Server-side edits get their own commit, so the pull commit holds only the studio's changes.
    commit_all(job.zpath, f"Server-side changes before sync with studio {studio.studio_id}", COMMITTER, job.root_rel or None)
    records = _load_records(store, studio.studio_id, job.key)
    with store.connect() as conn:
        row = conn.execute(
            "SELECT commit_id FROM sync_runs WHERE studio_id = ? AND mapping = ?", (studio.studio_id, job.key)
        ).fetchone()
        if fresh:
            conn.execute("DELETE FROM sync_records WHERE studio_id = ? AND mapping = ?", (studio.studio_id, job.key))
    job.mr.commit_before = row["commit_id"] if row else None
    # Old records still say what the server's files hash to (a fresh studio changes nothing here).
    hashes = {p: [r["s"], r["m"], r["h"]] for p, r in records.items()}
    job.records = {} if fresh else records
    server_list = agent.scan(str(job.server_root), hashes, regexes, hash_new=False)
    job.mr.skipped += [("server", p, why) for p, why in server_list["skipped"]]
    job.S = {e["p"]: e for e in server_list["entries"]}
    job.server_now = dict(job.S)


def _hash_needed(job: _Job) -> None:
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


def _plan(studio: SyncStudio, job: _Job) -> None:
    """Compare both sides with the records: what moves, what conflicts."""
    _hash_needed(job)
    records, S, C, writer = job.records, job.S, job.C, job.writer

    def taken(name: str) -> bool:
        return name in S or name in C or os.path.lexists(job.server_root / name)

    for p in sorted(set(records) | set(S) | set(C)):
        r, s, c = records.get(p), S.get(p), C.get(p)
        ir, is_, ic = _ident(r), _ident(s), _ident(c)
        if is_ == ic:
            # Same on both sides (or gone from both): nothing moves.
            if s is None:
                if r is not None:
                    writer.drop(p)
            elif r is None or is_ != ir or (r["s"], r["m"], r["ss"], r["sm"]) != (s["s"], s["m"], c["s"], c["m"]):
                writer.put(p, _record(s, c, s))
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


def _after_pull(studio: SyncStudio, job: _Job, author: tuple[str, str]) -> None:
    """Record what the get brought, delete what the studio deleted, commit."""
    mr, writer = job.mr, job.writer
    job.server_now.update(job.pulled_entries)
    for src, dest in job.pulls.items():
        entry = job.pulled_entries.get(dest)
        if entry is None:
            if not any(path == src for _, path, _ in mr.refused):
                mr.skipped.append(("studio", src, "vanished before it could be read"))
            continue
        if dest in job.conflict_copies:
            # The studio's version now lives on the server; the record says so,
            # so the server's version at ``src`` goes to the studio next.
            writer.put(src, _record(None, job.C[src], job.C[src]))
            if job.can_push:
                job.push_files += [src, dest]
        else:
            writer.put(dest, _record(entry, job.C[src], entry))
            mr.pulled.append(dest)
    for p in job.pull_deletes:
        try:
            agent.delete(str(job.server_root), p)
        except (agent.Refused, OSError) as exc:
            mr.refused.append(("server", p, f"cannot delete: {exc}"))
            continue
        writer.drop(p)
        mr.deleted_on_server.append(p)
    writer.flush()
    if job.pulled_entries or mr.deleted_on_server:
        n = len(mr.pulled) + len(mr.deleted_on_server) + len(job.conflict_copies)
        commit_all(
            job.zpath,
            f"Sync from studio {studio.studio_id}: {n} file(s) changed"
            + (f", {len(job.conflict_copies)} conflict copy(ies)" if job.conflict_copies else ""),
            author,
            job.root_rel or None,
        )


def _record_push(job: _Job, res: dict) -> None:
    if "ok" in res:
        try:
            e = agent.row_to_entry(res["ok"])
        except (ValueError, TypeError):
            job.mr.refused.append(("studio", "?", f"unreadable confirmation {res['ok']!r}"))
            return
        p = e["p"]
        job.writer.put(p, _record(job.server_now.get(p), e, e))
        job.mr.pushed.append(p)
    elif "deleted" in res:
        job.writer.drop(res["deleted"])
        job.mr.deleted_in_studio.append(res["deleted"])
    elif "renamed" in res:
        pass
    else:
        job.mr.refused.append(("studio", str(res.get("refused", "?")), str(res.get("reason", ""))))


def _finish_job(studio: SyncStudio, job: _Job, store: Store) -> None:
    m, mr = job.m, job.mr
    mr.commit_after = head(job.zpath)
    job.writer.flush(mr.commit_after, run=True)
    now = time.time()
    for p, sc, cc, copy in job.conflict_rows:
        mr.conflicts.append(
            Conflict(
                zone=m.zone,
                path=_zone_rel(m, p),
                server_change=sc,
                studio_change=cc,
                copy=_zone_rel(m, copy) if copy else None,
                commit_at_last_sync=mr.commit_before,
                commit_at_detection=mr.commit_after,
                commit_now=mr.commit_after,
                detected_at=now,
                mapping=job.key,
            )
        )
    if mr.conflicts:
        with store.connect() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO sync_conflicts (studio_id, mapping, zone, path, server_change, "
                "studio_change, copy, commit_at_last_sync, commit_at_detection, detected_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (studio.studio_id, job.key, c.zone, c.path, c.server_change, c.studio_change, c.copy or "",
                     c.commit_at_last_sync, c.commit_at_detection, c.detected_at)
                    for c in mr.conflicts
                ],
            )


# --------------------------------------------------------------------------
# Start, stop, conflicts


def push_on_start(studio: SyncStudio, transport: Transport, *, store: Store | None = None) -> SyncReport:
    """Server -> studio when it starts: the container is new, so everything is pushed."""
    return sync(studio, transport, "push", fresh=True, store=store)


def pull_on_stop(studio: SyncStudio, transport: Transport, *, store: Store | None = None) -> SyncReport:
    """Studio -> server before it stops (two-way mappings only)."""
    return sync(studio, transport, "pull", store=store)


def conflicts(studio: SyncStudio, zone: str | None = None, *, store: Store | None = None) -> list[Conflict]:
    """Open conflicts of the studio (in ``zone``), oldest first.

    A conflict with a copy stays open until the copy is deleted from the
    zone (after merging it); one without a copy (modified on one side,
    deleted on the other) until :func:`resolve_conflicts`.
    """
    if zone is not None:
        check_zone(zone)
    store = store or Store.default()
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT * FROM sync_conflicts WHERE studio_id = ? AND resolved_at IS NULL ORDER BY detected_at, path",
            (studio.studio_id,),
        ).fetchall()
    out: list[Conflict] = []
    gone: list[tuple] = []
    heads: dict[str, str | None] = {}
    for r in rows:
        if zone is not None and r["zone"] != zone:
            continue
        zpath = studio.zone_path(r["zone"])
        if r["copy"] and not os.path.lexists(zpath / r["copy"]):
            gone.append((r["studio_id"], r["mapping"], r["path"], r["copy"]))
            continue
        if r["zone"] not in heads:
            heads[r["zone"]] = head(zpath) if is_versioned(r["zone"]) else None
        out.append(
            Conflict(
                zone=r["zone"],
                path=r["path"],
                server_change=r["server_change"],
                studio_change=r["studio_change"],
                copy=r["copy"] or None,
                commit_at_last_sync=r["commit_at_last_sync"],
                commit_at_detection=r["commit_at_detection"],
                commit_now=heads[r["zone"]],
                detected_at=r["detected_at"],
                mapping=r["mapping"],
            )
        )
    if gone:
        _mark_resolved(store, gone)
    return out


def resolve_conflicts(
    studio: SyncStudio, zone: str | None = None, paths: Iterable[str] | None = None, *, store: Store | None = None
) -> list[Conflict]:
    """Mark open conflicts (all, of ``zone``, or at these zone-relative ``paths``) resolved; return them.

    Conflict copies are not deleted: they are ordinary files of the zone.
    """
    store = store or Store.default()
    wanted = set(paths) if paths is not None else None
    chosen = [c for c in conflicts(studio, zone, store=store) if wanted is None or c.path in wanted]
    _mark_resolved(store, [(studio.studio_id, c.mapping, c.path, c.copy or "") for c in chosen])
    return chosen


def _mark_resolved(store: Store, keys: list[tuple]) -> None:
    with store.connect() as conn:
        conn.executemany(
            "UPDATE sync_conflicts SET resolved_at = ? WHERE studio_id = ? AND mapping = ? AND path = ? AND copy = ?",
            [(time.time(), *k) for k in keys],
        )


def forget_studio(studio_id: str, *, store: Store | None = None) -> None:
    """Drop a deleted studio's sync records, runs and conflicts (its zones are left to the caller)."""
    store = store or Store.default()
    with store.connect() as conn:
        for table in ("sync_records", "sync_runs", "sync_conflicts"):
            conn.execute(f"DELETE FROM {table} WHERE studio_id = ?", (studio_id,))
