"""Private by default: the data dir and the state DB (with its WAL sidecars) are closed to other users."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from codestudio.home import data_dir
from codestudio.store import Store


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask():
    """The worst umask a caller could have: SQLite alone would then create 0666 files."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_data_dir_is_created_private(tmp_path, monkeypatch, loose_umask):
    monkeypatch.setenv("CODESTUDIO_HOME", str(tmp_path / "a" / "home"))
    assert _mode(data_dir()) == 0o700


def test_an_open_data_dir_is_narrowed(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    monkeypatch.setenv("CODESTUDIO_HOME", str(home))
    assert _mode(data_dir()) == 0o700


def test_state_db_and_sidecars_are_not_readable_by_others(tmp_path, loose_umask):
    import sqlite3

    store = Store(tmp_path / "state.db")
    with store.connect() as conn:
        conn.execute("INSERT INTO admins (user) VALUES ('alice')")
    # An open reader keeps the WAL and shared-memory files in place while we look
    # (the last connection to close removes them).
    reader = sqlite3.connect(tmp_path / "state.db")
    try:
        reader.execute("SELECT count(*) FROM admins").fetchone()
        with store.connect() as conn:
            conn.execute("INSERT INTO admins (user) VALUES ('bob')")
        files = sorted(p.name for p in tmp_path.iterdir())
        assert {"state.db", "state.db-wal", "state.db-shm"} <= set(files), files
        for name in files:
            assert _mode(tmp_path / name) & 0o077 == 0, f"{name} is {oct(_mode(tmp_path / name))}"
    finally:
        reader.close()


def test_a_loose_existing_db_is_tightened(tmp_path, loose_umask):
    path = tmp_path / "state.db"
    with Store(path).connect() as conn:
        conn.execute("INSERT INTO admins (user) VALUES ('alice')")
    for p in tmp_path.iterdir():
        os.chmod(p, 0o644)  # as an older engine under umask 022 left them
    with Store(path).connect() as conn:
        assert conn.execute("SELECT user FROM admins").fetchone()[0] == "alice"
    for p in tmp_path.iterdir():
        assert _mode(p) & 0o077 == 0, f"{p.name} is {oct(_mode(p))}"
