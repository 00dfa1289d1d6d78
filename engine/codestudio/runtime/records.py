"""Studio records in the state DB: look up, list, change state (one transaction each).

The repository half of the old ``studios.py``; the lifecycle
(:mod:`codestudio.runtime.lifecycle`) decides *when* a state changes, this
module only reads and writes rows.
"""

from __future__ import annotations

import json

from codestudio.errors import NotFound
from codestudio.runtime.model import Studio
from codestudio.store import Store, now


def _get(conn, ref: str) -> Studio:
    row = conn.execute("SELECT * FROM studios WHERE id = ?", (ref,)).fetchone()
    if row is None and "/" in ref:
        project, name = ref.split("/", 1)
        row = conn.execute("SELECT * FROM studios WHERE project = ? AND (name = ? OR id = ?)", (project, name, name)).fetchone()
    if row is None:
        raise NotFound(f"no studio {ref!r} (see `codestudio studio list`)")
    return Studio.from_row(row)


def get_studio(ref: str, *, store: Store | None = None) -> Studio:
    """The studio with id ``ref`` (or ``PROJECT/NAME``); raises NotFound (exit 2)."""
    store = store or Store.default()
    with store.connect(write=False) as conn:
        return _get(conn, ref)


def all_studios(store: Store) -> list[Studio]:
    with store.connect(write=False) as conn:
        rows = conn.execute("SELECT * FROM studios ORDER BY project, id").fetchall()
    return [Studio.from_row(r) for r in rows]


def set_state(store: Store, studio_id: str, state: str, message: str | None = None, **fields) -> None:
    """Move a studio to ``state`` (``state_since`` is now); ``fields`` are other columns to set."""
    cols = {"state": state, "state_since": now(), "message": message, **fields}
    if "ports" in cols:
        cols["ports"] = json.dumps({str(k): v for k, v in cols["ports"].items()}, sort_keys=True)
    sql = ", ".join(f"{k} = ?" for k in cols)
    with store.connect() as conn:
        conn.execute(f"UPDATE studios SET {sql} WHERE id = ?", (*cols.values(), studio_id))


def delete_record(store: Store, studio_id: str) -> None:
    with store.connect() as conn:
        conn.execute("DELETE FROM studios WHERE id = ?", (studio_id,))
