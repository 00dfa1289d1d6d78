"""Webapp and replica rows in the state DB: look up, list, change (one transaction each).

The lifecycle (:mod:`codestudio.webapps.lifecycle`) decides *when* a row
changes; this module only reads and writes them.
"""

from __future__ import annotations

import json

from codestudio.errors import NotFound, UsageError
from codestudio.store import Store, now
from codestudio.webapps.model import Replica, Webapp


def _find(conn, ref: str):
    if "/" in ref:
        project, name = ref.split("/", 1)
        return conn.execute("SELECT * FROM webapps WHERE project = ? AND id = ?", (project, name)).fetchall()
    return conn.execute("SELECT * FROM webapps WHERE id = ?", (ref,)).fetchall()


def get_webapp(ref: str, *, store: Store) -> Webapp:
    """The webapp ``PROJECT/ID`` (or ``ID`` when only one project has it); NotFound (exit 2) otherwise."""
    with store.connect() as conn:
        rows = _find(conn, ref)
    if not rows:
        raise NotFound(f"no webapp {ref!r} (see `codestudio webapp list`)")
    if len(rows) > 1:
        projects = ", ".join(sorted(r["project"] for r in rows))
        raise UsageError(f"webapp {ref!r} exists in several projects ({projects}): name it PROJECT/{ref}")
    return Webapp.from_row(rows[0])


def all_webapps(store: Store) -> list[Webapp]:
    with store.connect() as conn:
        rows = conn.execute("SELECT * FROM webapps ORDER BY project, id").fetchall()
    return [Webapp.from_row(r) for r in rows]


def exists(store: Store, project: str, webapp_id: str) -> bool:
    with store.connect() as conn:
        return conn.execute("SELECT 1 FROM webapps WHERE project = ? AND id = ?", (project, webapp_id)).fetchone() is not None


def insert_webapp(store: Store, w: Webapp) -> None:
    with store.connect() as conn:
        if conn.execute("SELECT 1 FROM webapps WHERE project = ? AND id = ?", (w.project, w.id)).fetchone():
            raise UsageError(f"project {w.project} already has a webapp named {w.id!r}")
        conn.execute(
            "INSERT INTO webapps (project, id, owner, template_id, template_version, image, image_id, replicas, share, "
            "session_secret, source_studio, snapshot_commit, generation, state, state_since, message, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (w.project, w.id, w.owner, w.template_id, w.template_version, w.image, w.image_id, w.replicas, w.share,
             w.session_secret, w.source_studio, w.snapshot_commit, w.generation, w.state, w.state_since, w.message, w.created_at),
        )


def update_webapp(store: Store, w: Webapp, **cols) -> Webapp:
    """Set columns of the webapp's row (``state`` also sets ``state_since``); return it as now stored."""
    if "state" in cols:
        cols.setdefault("state_since", now())
    if cols:
        sql = ", ".join(f"{k} = ?" for k in cols)
        with store.connect() as conn:
            conn.execute(f"UPDATE webapps SET {sql} WHERE project = ? AND id = ?", (*cols.values(), w.project, w.id))
    return get_webapp(w.key, store=store)


def delete_webapp_row(store: Store, w: Webapp) -> None:
    with store.connect() as conn:
        conn.execute("DELETE FROM webapp_replicas WHERE project = ? AND webapp_id = ?", (w.project, w.id))
        conn.execute("DELETE FROM webapps WHERE project = ? AND id = ?", (w.project, w.id))


# --------------------------------------------------------------------------
# Replicas


def replicas_of(store: Store, w: Webapp, *, generation: int | None = None) -> list[Replica]:
    sql = "SELECT * FROM webapp_replicas WHERE project = ? AND webapp_id = ?"
    args: tuple = (w.project, w.id)
    if generation is not None:
        sql += " AND generation = ?"
        args += (generation,)
    with store.connect() as conn:
        rows = conn.execute(sql + " ORDER BY generation, pod", args).fetchall()
    return [Replica.from_row(r) for r in rows]


def all_replicas(store: Store) -> list[Replica]:
    with store.connect() as conn:
        rows = conn.execute("SELECT * FROM webapp_replicas ORDER BY project, webapp_id, generation, pod").fetchall()
    return [Replica.from_row(r) for r in rows]


def put_replica(store: Store, r: Replica) -> None:
    endpoints = json.dumps({str(k): list(v) for k, v in r.endpoints.items()}, sort_keys=True)
    with store.connect() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO webapp_replicas (project, webapp_id, pod, podset, generation, state, reason, "
            "endpoints, guard_secret, since) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (r.project, r.webapp_id, r.pod, r.podset, r.generation, r.state, r.reason, endpoints, r.guard_secret,
             r.since),
        )


def set_replica(store: Store, r: Replica, state: str, reason: str | None = None) -> Replica:
    """Move a replica to ``state``; ``since`` changes only when the state does."""
    with store.connect() as conn:
        conn.execute(
            "UPDATE webapp_replicas SET reason = ?, since = CASE WHEN state = ? THEN since ELSE ? END, state = ? "
            "WHERE project = ? AND webapp_id = ? AND pod = ?",
            (reason, state, now(), state, r.project, r.webapp_id, r.pod),
        )
    r.state, r.reason = state, reason
    return r


def drop_replica(store: Store, r: Replica) -> None:
    with store.connect() as conn:
        conn.execute("DELETE FROM webapp_replicas WHERE project = ? AND webapp_id = ? AND pod = ?",
                     (r.project, r.webapp_id, r.pod))
