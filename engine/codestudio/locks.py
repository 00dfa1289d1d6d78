"""One helper for the engine's cross-process locks: :func:`file_lock`.

Commands of one data dir run as separate processes (two shells, the CLI and
the server), so every "one at a time" rule is an exclusive ``flock`` on a
file. The kernel drops the lock when its holder dies, even by SIGKILL, so a
killed command never leaves a lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(path: Path, *, waiting: Callable[[], None] | None = None, shared: bool = False) -> Iterator[None]:
    """Hold an exclusive (or, with ``shared``, a shared) lock on ``path`` (created with mode 0600, parents too).

    :param path: the lock file; its content is never read or written.
    :param waiting: called once, before blocking, when another process holds
        the lock (to say "waiting for ..."); without it the call just waits.
    :param shared: many holders at once (e.g. builds using a cache), none while
        an exclusive holder has it (e.g. clearing that cache).
    """
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                waiting()
            fcntl.flock(fd, mode)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def is_locked(path: Path) -> bool:
    """Whether another process holds the lock on ``path`` now (``doctor`` uses it)."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
