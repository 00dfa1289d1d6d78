"""The state DB's transactions: reads take no write lock, writes do."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from codestudio.store import Store


def _in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join(timeout=20)  # a read that waited for the writer would wait its 30 s busy timeout
    assert not t.is_alive(), "the read waited for the open write transaction"
    return out[0]


def test_reads_go_on_while_another_process_holds_the_write_lock(tmp_path):
    path = tmp_path / "state.db"
    with Store(path).connect() as conn:  # creates and migrates the DB
        conn.execute("INSERT INTO admins (user) VALUES ('alice')")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # e.g. a studio start recording its state
    writer.execute("INSERT INTO admins (user) VALUES ('bob')")
    try:
        # A fresh Store (a new CLI process) on an up-to-date DB: no migration lock either.
        def read():
            with Store(path).connect(write=False) as conn:
                return [r["user"] for r in conn.execute("SELECT user FROM admins ORDER BY user")]

        assert _in_thread(read) == ["alice"]  # the snapshot before the uncommitted write
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_read_transaction_cannot_write(tmp_path):
    store = Store(tmp_path / "state.db")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        with store.connect(write=False) as conn:
            conn.execute("INSERT INTO admins (user) VALUES ('mallory')")
    with store.connect(write=False) as conn:
        assert conn.execute("SELECT COUNT(*) FROM admins").fetchone()[0] == 0
