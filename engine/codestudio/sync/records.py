"""What sync remembers in the store: per path the last synced state (``sync_records``),
per mapping the last sync (``sync_runs``), and the open conflicts (``sync_conflicts``).

A record holds the path's identity (kind, sha256, executable bit) and each
side's size and mtime at the last sync, so an unchanged file is not hashed
again; -1 for a side's stat forces a re-hash.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from codestudio.store import Store
from codestudio.sync.mappings import SyncStudio
from codestudio.sync.report import Conflict
from codestudio.sync.zones import check_zone, head
from codestudio.types import is_versioned

LINK_MODE = 0o120777
FILE_MODE = 0o100644
EXEC_MODE = 0o100755


def identity(e: dict | None) -> tuple | None:
    return None if e is None else (e["t"], e["h"], bool(e["x"]))


def _mode(e: dict) -> int:
    return LINK_MODE if e["t"] == "l" else (EXEC_MODE if e["x"] else FILE_MODE)


def load_records(store: Store, studio_id: str, key: str) -> dict[str, dict]:
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


def new_record(server: dict | None, studio: dict | None, ident_from: dict) -> dict:
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


class RecordWriter:
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


def store_conflicts(store: Store, studio_id: str, key: str, found: list[Conflict]) -> None:
    """Keep the conflicts a sync of mapping ``key`` found until they are resolved (see :func:`conflicts`)."""
    with store.connect() as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO sync_conflicts (studio_id, mapping, zone, path, server_change, "
            "studio_change, copy, commit_at_last_sync, commit_at_detection, detected_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (studio_id, key, c.zone, c.path, c.server_change, c.studio_change, c.copy or "",
                 c.commit_at_last_sync, c.commit_at_detection, c.detected_at)
                for c in found
            ],
        )


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
