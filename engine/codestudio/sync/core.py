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

The pieces: what is synced in :mod:`~codestudio.sync.mappings`, the plan of
one mapping in :mod:`~codestudio.sync.plan`, the agent session in
:mod:`~codestudio.sync.session`, what is remembered (records, runs,
conflicts) in :mod:`~codestudio.sync.records`, the results in
:mod:`~codestudio.sync.report`; this module runs a sync with them.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from pathlib import Path

from codestudio.blockapi import SyncMapping
from codestudio.errors import UsageError
from codestudio.store import Store
from codestudio.sync import agent
from codestudio.sync.mappings import Direction, SyncStudio, exclusion_regexes, mapping_key
from codestudio.sync.plan import Job, plan_mapping
from codestudio.sync.records import RecordWriter, load_records, new_record, store_conflicts
from codestudio.sync.report import Conflict, MappingReport, SyncConflictError, SyncError, SyncReport
from codestudio.sync.session import AgentFailed, AgentSession
from codestudio.sync.transport import Transport
from codestudio.sync.zones import (
    COMMITTER,
    RootOutside,
    check_zone,
    commit_all,
    fd_path,
    head,
    open_mapping_root,
    owner_author,
    zone_lock,
)


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
    jobs: list[Job] = []
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
        jobs.append(Job(m, mr, can_push, can_pull, key, zpath, server_root, RecordWriter(store, studio.studio_id, key)))
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


def _open_roots(jobs: list[Job], stack: ExitStack) -> list[Job]:
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
    jobs: list[Job],
    fresh: bool,
    regexes: list[str],
    author: tuple[str, str],
    store: Store,
) -> None:
    session = AgentSession(transport)
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
            plan_mapping(studio, job)

        # 1. studio -> server
        pulling = [j for j in jobs if j.pulls]
        if pulling:
            failure = session.get(pulling, [str(j.server_root) for j in pulling])
        for job in jobs:
            _after_pull(studio, job, author)
        if failure:
            raise AgentFailed(failure)

        # 2. server -> studio
        # A new container gets every mapping's folder, even for an empty zone:
        # users look for their zones in the workspace (apply creates roots).
        pushing = [j for j in jobs if j.push_files or j.push_deletes or j.renames or fresh]
        if pushing:
            results, failure = session.apply(pushing, [str(j.server_root) for j in pushing])
            for i, res in results:
                _record_push(pushing[i], res)
            if failure:
                raise AgentFailed(failure)
        completed = True
    except AgentFailed as exc:
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


def _list_server(studio: SyncStudio, job: Job, fresh: bool, regexes: list[str], store: Store) -> None:
    # Server-side edits get their own commit, so the pull commit holds only the studio's changes.
    commit_all(job.zpath, f"Server-side changes before sync with studio {studio.studio_id}", COMMITTER, job.root_rel or None)
    records = load_records(store, studio.studio_id, job.key)
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


def _after_pull(studio: SyncStudio, job: Job, author: tuple[str, str]) -> None:
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
            writer.put(src, new_record(None, job.C[src], job.C[src]))
            if job.can_push:
                job.push_files += [src, dest]
        else:
            writer.put(dest, new_record(entry, job.C[src], entry))
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


def _record_push(job: Job, res: dict) -> None:
    if "ok" in res:
        try:
            e = agent.row_to_entry(res["ok"])
        except (ValueError, TypeError):
            job.mr.refused.append(("studio", "?", f"unreadable confirmation {res['ok']!r}"))
            return
        p = e["p"]
        job.writer.put(p, new_record(job.server_now.get(p), e, e))
        job.mr.pushed.append(p)
    elif "deleted" in res:
        job.writer.drop(res["deleted"])
        job.mr.deleted_in_studio.append(res["deleted"])
    elif "renamed" in res:
        pass
    else:
        job.mr.refused.append(("studio", str(res.get("refused", "?")), str(res.get("reason", ""))))


def _finish_job(studio: SyncStudio, job: Job, store: Store) -> None:
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
        store_conflicts(store, studio.studio_id, job.key, mr.conflicts)


def _zone_rel(m: SyncMapping, path: str) -> str:
    return f"{m.subfolder}/{path}" if m.subfolder else path


# --------------------------------------------------------------------------
# Start and stop


def push_on_start(studio: SyncStudio, transport: Transport, *, store: Store | None = None) -> SyncReport:
    """Server -> studio when it starts: the container is new, so everything is pushed."""
    return sync(studio, transport, "push", fresh=True, store=store)


def pull_on_stop(studio: SyncStudio, transport: Transport, *, store: Store | None = None) -> SyncReport:
    """Studio -> server before it stops (two-way mappings only)."""
    return sync(studio, transport, "pull", store=store)
