"""Build history: the ``builds`` table of the state DB.

One row per ``template build`` (outcome ``running`` while it runs, then
``succeeded``, ``failed`` or ``skipped`` when an image with the same
content hash already existed). The runtime asks :func:`latest_build` /
:func:`image_for` which image a template's studios should run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from codestudio.errors import NotFound, RuntimeFailure
from codestudio.store import Store, now

#: Outcomes whose image exists and may be run.
USABLE = ("succeeded", "skipped")


@dataclass(frozen=True)
class BuiltImage:
    """The image a template's studios should run: what :func:`image_for` returns."""

    template_id: str
    image: str  # localhost/codestudio/<id>:<hash>
    image_id: str
    content_hash: str
    build_id: int
    built_at: float


def _row(row) -> dict[str, Any]:
    out = dict(row)
    out["plugins"] = json.loads(out.get("plugins") or "{}")
    return out


def start(
    store: Store,
    *,
    template_id: str,
    template_version: int | None,
    content_hash: str,
    image: str,
    plugins: dict[str, str],
    log_path: str | None = None,
    outcome: str = "running",
    image_id: str | None = None,
) -> int:
    """Insert a build row and return its id.

    Rows still ``running`` for the same template belong to builds that died
    (the caller holds the template's build lock), so they are closed first.
    Any other ``outcome`` (``skipped``) records a finished build at once.
    """
    started = now()
    ended = None if outcome == "running" else started
    with store.connect() as conn:
        conn.execute(
            "UPDATE builds SET outcome = 'failed', ended_at = ?, error = 'interrupted' "
            "WHERE template_id = ? AND outcome = 'running'",
            (started, template_id),
        )
        cur = conn.execute(
            "INSERT INTO builds (template_id, template_version, content_hash, image, image_id, started_at, "
            "ended_at, outcome, log_path, plugins) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (template_id, template_version, content_hash, image, image_id, started, ended, outcome, log_path,
             json.dumps(plugins, sort_keys=True)),
        )
        return int(cur.lastrowid)


def set_log_path(store: Store, build_id: int, log_path: str) -> None:
    with store.connect() as conn:
        conn.execute("UPDATE builds SET log_path = ? WHERE id = ?", (log_path, build_id))


def finish(store: Store, build_id: int, *, outcome: str, image_id: str | None = None, error: str | None = None) -> None:
    with store.connect() as conn:
        conn.execute(
            "UPDATE builds SET outcome = ?, image_id = ?, error = ?, ended_at = ? WHERE id = ?",
            (outcome, image_id, error, now(), build_id),
        )


def list_builds(template_id: str, *, store: Store | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """A template's builds, newest first, as dicts of the ``builds`` columns (plugins decoded)."""
    store = store or Store.default()
    sql = "SELECT * FROM builds WHERE template_id = ? ORDER BY id DESC"
    args: tuple = (template_id,)
    if limit:
        sql += " LIMIT ?"
        args += (limit,)
    with store.connect() as conn:
        return [_row(r) for r in conn.execute(sql, args).fetchall()]


def latest_build(template_id: str, *, store: Store | None = None) -> dict[str, Any] | None:
    """The newest build of the template that produced a usable image (succeeded or skipped), or None."""
    store = store or Store.default()
    with store.connect() as conn:
        row = conn.execute(
            "SELECT * FROM builds WHERE template_id = ? AND outcome IN (?, ?) AND image_id IS NOT NULL "
            "ORDER BY id DESC LIMIT 1",
            (template_id, *USABLE),
        ).fetchone()
    return _row(row) if row else None


def image_for(template_id: str, *, store: Store | None = None, check_storage: bool = True) -> BuiltImage:
    """The image a new studio of ``template_id`` should run: its latest usable build.

    Raises :class:`NotFound` (exit 2) if the template was never built, and
    :class:`RuntimeFailure` if that image has since been removed from
    storage. Studios record ``image``; comparing it with this function's
    answer later tells whether a newer build exists.
    """
    row = latest_build(template_id, store=store)
    if row is None:
        raise NotFound(f"template {template_id!r} has no successful build: run `codestudio template build` first")
    if check_storage:
        from codestudio.containers import image_id

        current = image_id(row["image"])
        if current is None:
            raise RuntimeFailure(
                f"image {row['image']} (build {row['id']} of {template_id!r}) is no longer in local storage: "
                "rebuild with `codestudio template build`"
            )
    return BuiltImage(
        template_id=template_id,
        image=row["image"],
        image_id=row["image_id"],
        content_hash=row["content_hash"],
        build_id=row["id"],
        built_at=row["ended_at"] or row["started_at"],
    )
