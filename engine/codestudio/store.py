"""SQLite state: templates, builds, studios, grants, users, projects, sync records.

One database file, ``state.db`` in the data dir, in WAL mode so concurrent
CLI calls read while one writes. Schema changes are numbered migrations
applied in order (``PRAGMA user_version`` records the last one); a module
that needs a new table adds a migration here rather than creating tables
itself.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MIGRATIONS: list[str] = [
    # 1: the first schema.
    """
    CREATE TABLE templates (
        id          TEXT NOT NULL,
        version     INTEGER NOT NULL,
        yaml        TEXT NOT NULL,
        source_path TEXT NOT NULL,   -- where it was added from
        stored_dir  TEXT NOT NULL,   -- copy of the template file and its resources
        digest      TEXT NOT NULL,   -- sha256 of the stored folder's content
        added_by    TEXT NOT NULL,
        added_at    REAL NOT NULL,
        PRIMARY KEY (id, version)
    );
    CREATE TABLE builds (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        template_id  TEXT NOT NULL,
        template_version INTEGER,
        content_hash TEXT NOT NULL,
        image        TEXT,           -- tag, e.g. localhost/codestudio/x:<hash>
        image_id     TEXT,
        started_at   REAL NOT NULL,
        ended_at     REAL,
        outcome      TEXT NOT NULL,  -- running | succeeded | failed | skipped
        log_path     TEXT,
        plugins      TEXT NOT NULL DEFAULT '{}',  -- JSON {distribution: version}
        error        TEXT
    );
    CREATE INDEX builds_template ON builds (template_id, started_at);
    CREATE TABLE grants (
        template_id TEXT NOT NULL,
        grp         TEXT NOT NULL,   -- a group name, or '*' for everybody
        PRIMARY KEY (template_id, grp)
    );
    CREATE TABLE admins (
        user TEXT PRIMARY KEY
    );
    CREATE TABLE group_members (
        grp  TEXT NOT NULL,
        user TEXT NOT NULL,
        PRIMARY KEY (grp, user)
    );
    CREATE TABLE studios (
        id           TEXT PRIMARY KEY,
        project      TEXT NOT NULL,
        name         TEXT NOT NULL,
        owner        TEXT NOT NULL,
        template_id  TEXT NOT NULL,
        template_version INTEGER NOT NULL,
        image        TEXT,           -- image the studio runs (tag with content hash)
        image_id     TEXT,
        state        TEXT NOT NULL,  -- STOPPED | STARTING | RUNNING | STOPPING | FAILED
        state_since  REAL NOT NULL,
        message      TEXT,
        ports        TEXT NOT NULL DEFAULT '{}',  -- JSON {container port: host port}
        token        TEXT,           -- gateway session secret while running
        created_at   REAL NOT NULL,
        UNIQUE (project, name)
    );
    CREATE TABLE sync_records (
        studio_id TEXT NOT NULL,
        mapping   TEXT NOT NULL,     -- stable key of the mapping (zone, subfolder, target)
        path      TEXT NOT NULL,
        size      INTEGER NOT NULL,
        mtime_ns  INTEGER NOT NULL,
        sha256    TEXT NOT NULL,
        mode      INTEGER NOT NULL,
        PRIMARY KEY (studio_id, mapping, path)
    );
    CREATE TABLE sync_runs (
        studio_id TEXT NOT NULL,
        mapping   TEXT NOT NULL,
        commit_id TEXT,              -- server-side commit at the last sync (versioned zones)
        synced_at REAL NOT NULL,
        PRIMARY KEY (studio_id, mapping)
    );
    """,
    # 2: file sync keeps each side's stat (hashing is skipped when it matches)
    # and the conflicts it found, until the user resolves them.
    """
    ALTER TABLE sync_records ADD COLUMN studio_size INTEGER NOT NULL DEFAULT -1;
    ALTER TABLE sync_records ADD COLUMN studio_mtime_ns INTEGER NOT NULL DEFAULT -1;
    CREATE TABLE sync_conflicts (
        studio_id     TEXT NOT NULL,
        mapping       TEXT NOT NULL,
        zone          TEXT NOT NULL,
        path          TEXT NOT NULL,  -- zone-relative
        server_change TEXT NOT NULL,  -- added | modified | deleted
        studio_change TEXT NOT NULL,
        copy          TEXT NOT NULL DEFAULT '',  -- zone-relative path of the studio's version kept on the server
        commit_at_last_sync TEXT,
        commit_at_detection TEXT,
        detected_at   REAL NOT NULL,
        resolved_at   REAL,
        PRIMARY KEY (studio_id, mapping, path, copy)
    );
    """,
    # 3: the server's sign-in: one-time links, web sessions, API tokens (each
    # stored as a sha256 of the secret, never the secret), disabled users, failed
    # sign-ins (for the rate limit and the log).
    """
    CREATE TABLE signin_links (
        link_hash  TEXT PRIMARY KEY,
        user       TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        used_at    REAL
    );
    CREATE TABLE web_sessions (
        session_hash TEXT PRIMARY KEY,
        user         TEXT NOT NULL,
        csrf         TEXT NOT NULL,
        via          TEXT NOT NULL,  -- link | proxy
        created_at   REAL NOT NULL,
        expires_at   REAL NOT NULL,
        revoked_at   REAL
    );
    CREATE INDEX web_sessions_user ON web_sessions (user);
    CREATE TABLE api_tokens (
        id         TEXT PRIMARY KEY,  -- public part, shown in listings
        user       TEXT NOT NULL,
        name       TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        last_used  REAL,
        revoked_at REAL
    );
    CREATE INDEX api_tokens_user ON api_tokens (user);
    CREATE TABLE disabled_users (
        user        TEXT PRIMARY KEY,
        disabled_by TEXT NOT NULL,
        disabled_at REAL NOT NULL
    );
    CREATE TABLE signin_failures (
        client TEXT NOT NULL,
        at     REAL NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX signin_failures_client ON signin_failures (client, at);
    """,
    # 4: groups a trusted SSO proxy said a user is in (replaced on each of their requests).
    """
    CREATE TABLE sso_groups (
        user TEXT NOT NULL,
        grp  TEXT NOT NULL,
        PRIMARY KEY (user, grp)
    );
    """,
    # 5: projects are records with an owner and members (users or groups), each
    # with a role: ``member`` (may create and start studios in the project, whose
    # project zones they read and write) or ``admin`` (also manages members). The
    # owner is always an admin member. Project keys that studios already use get a
    # record owned by the first codestudio admin (or root), with every owner of a
    # studio there as a member, so upgrading changes nobody's access to what they
    # already had (docs/studios.md, "Projects").
    """
    CREATE TABLE projects (
        key        TEXT PRIMARY KEY,
        owner      TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        origin     TEXT NOT NULL DEFAULT 'created'   -- created | migrated
    );
    CREATE TABLE project_members (
        project TEXT NOT NULL REFERENCES projects (key) ON DELETE CASCADE,
        kind    TEXT NOT NULL CHECK (kind IN ('user', 'group')),
        name    TEXT NOT NULL,
        role    TEXT NOT NULL CHECK (role IN ('member', 'admin')),
        PRIMARY KEY (project, kind, name)
    );
    INSERT INTO projects (key, owner, created_by, created_at, origin)
        SELECT project, COALESCE((SELECT user FROM admins ORDER BY user LIMIT 1), 'root'), 'migration',
               MIN(created_at), 'migrated'
        FROM studios GROUP BY project;
    INSERT INTO project_members (project, kind, name, role)
        SELECT key, 'user', owner, 'admin' FROM projects;
    INSERT OR IGNORE INTO project_members (project, kind, name, role)
        SELECT DISTINCT project, 'user', owner, 'member' FROM studios;
    """,
    # 6: the studio lifecycle (docs/lifecycle.md): when the running pod started (max_lifetime
    # counts from it), the last activity seen and where it came from (the guard, a tool), and
    # why the studio last stopped (idle, lifetime, memory, user) for list/status/UI.
    """
    ALTER TABLE studios ADD COLUMN started_at REAL;
    ALTER TABLE studios ADD COLUMN last_activity REAL;
    ALTER TABLE studios ADD COLUMN activity_source TEXT;
    ALTER TABLE studios ADD COLUMN stop_reason TEXT;
    """,
    # 7: webapps (docs/webapps.md): a definition per project and id, and one row per
    # replica (pod) the engine runs and probes; the gateway routes the ``ready`` ones.
    """
    CREATE TABLE webapps (
        project          TEXT NOT NULL,
        id               TEXT NOT NULL,
        owner            TEXT NOT NULL,
        template_id      TEXT NOT NULL,
        template_version INTEGER NOT NULL,
        image            TEXT,
        image_id         TEXT,
        replicas         INTEGER NOT NULL,          -- the desired count
        share            TEXT NOT NULL DEFAULT 'owner',  -- owner | group:G | users | public
        session_secret   TEXT,                      -- viewers' access secret (the gateway derives cookie and link key)
        source_studio    TEXT,                      -- the studio the snapshot came from
        snapshot_commit  TEXT,                      -- its code_studio-versioned commit
        generation       INTEGER NOT NULL DEFAULT 0,  -- the pod set now serving
        state            TEXT NOT NULL,
        state_since      REAL NOT NULL,
        message          TEXT,
        created_at       REAL NOT NULL,
        PRIMARY KEY (project, id)
    );
    CREATE TABLE webapp_replicas (
        project      TEXT NOT NULL,
        webapp_id    TEXT NOT NULL,
        pod          TEXT NOT NULL,
        podset       TEXT NOT NULL,
        generation   INTEGER NOT NULL,
        state        TEXT NOT NULL,     -- starting | ready | not-ready | draining | dead
        reason       TEXT,
        endpoints    TEXT NOT NULL DEFAULT '{}',  -- JSON {container port: [host, port]}
        guard_secret TEXT NOT NULL,
        since        REAL NOT NULL,
        PRIMARY KEY (project, webapp_id, pod),
        FOREIGN KEY (project, webapp_id) REFERENCES webapps (project, id) ON DELETE CASCADE
    );
    """,
    # 8: a studio's access epoch (codestudio.revocation): raised when its owner loses access, it
    # changes the owner's cookie value and link key (not the pod's guard secret).
    """
    ALTER TABLE studios ADD COLUMN access_epoch INTEGER NOT NULL DEFAULT 0;
    """,
]


class Store:
    """Access to ``state.db``. Cheap to create; open connections with :meth:`connect`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._migrated = False

    @classmethod
    def default(cls) -> Store:
        from codestudio.home import data_dir

        return cls(data_dir() / "state.db")

    @contextmanager
    def connect(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction: committed on success, rolled back on error.

        ``write=False`` for a transaction that only reads: it takes no write lock
        (``BEGIN`` rather than ``BEGIN IMMEDIATE``), so in WAL mode it neither waits
        for writers nor makes them wait (ten studios starting at once read their
        rows dozens of times). A read transaction that writes fails.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self._migrated:
            _make_private(self.path)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA foreign_keys = ON")
            if not self._migrated:
                self._migrate(conn)
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            if not write:
                conn.execute("PRAGMA query_only = ON")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
        finally:
            conn.close()

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode = WAL")
        if conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS):
            self._migrated = True  # up to date: no need for the write lock (checked again under it otherwise)
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._migrated = True


def _make_private(path: Path) -> None:
    """Create ``path`` (or tighten it) as 0600 before SQLite opens it.

    The DB holds session secrets. SQLite creates a new DB with 0644 minus the
    umask, but gives ``-wal``/``-shm``/``-journal`` the DB file's own mode
    (ignoring the umask), so a 0600 DB keeps its sidecars private too. Sidecars
    left by an older, looser DB are tightened here as well. A zero-length file is
    a valid empty SQLite database.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm", "-journal"):
        sidecar = path.with_name(path.name + suffix)
        try:
            st = sidecar.stat()
        except FileNotFoundError:
            continue
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            os.chmod(sidecar, 0o600)


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    out, buf = [], []
    for line in script.splitlines():
        buf.append(line)
        candidate = "\n".join(buf)
        if sqlite3.complete_statement(candidate):
            if candidate.strip():
                out.append(candidate)
            buf = []
    return out


def now() -> float:
    return time.time()
