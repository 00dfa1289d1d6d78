"""Who nginx's workers run as, and the files the gateway writes for them and its master.

As root, the workers switch to an unprivileged user (:func:`worker_identity`)
that reads its pages and temp folders outside the data dir; every folder is
made with an exact owner and mode (:func:`ensure_dir`) and every file
private from its first byte (:func:`write_private`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from codestudio.errors import RuntimeFailure, UsageError
from codestudio.gateway.settings import GatewaySettings

TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")

# Root of the workers' folders when the engine runs as root: on disk rather than
# under /run (a tmpfs), since proxy temp files can be large.
WORKER_BASE = Path("/var/lib/codestudio-gateway")
# Preferred worker user when it exists (create it with `adduser --system --group
# --no-create-home codestudio-gateway`); `nobody` otherwise.
WORKER_USER = "codestudio-gateway"
FALLBACK_WORKER_USER = "nobody"


@dataclass(frozen=True)
class WorkerIdentity:
    user: str
    uid: int
    group: str
    gid: int


def worker_identity(settings: GatewaySettings) -> WorkerIdentity:
    """The unprivileged user nginx's workers switch to when the engine runs as root.

    ``settings.worker_user`` (CODESTUDIO_GATEWAY_USER) if set, else
    :data:`WORKER_USER` if that user exists, else ``nobody``; the group is the
    user's primary group. Refuses root (uid or gid 0) and users that do not exist
    (``nginx -t`` would fail on them anyway, less clearly).
    """
    import grp
    import pwd

    name = settings.worker_user
    if name is None:
        try:
            pwd.getpwnam(WORKER_USER)
            name = WORKER_USER
        except KeyError:
            name = FALLBACK_WORKER_USER
    # A user named in the settings (CODESTUDIO_GATEWAY_USER or settings.json) is
    # input: a wrong one is a usage error (exit 2). A missing default user is the
    # host's problem (exit 1).
    bad_input = UsageError if settings.worker_user is not None else RuntimeFailure
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise bad_input(
            f"gateway worker user {name!r} does not exist on this host: create it, or set "
            "CODESTUDIO_GATEWAY_USER to an existing unprivileged user"
        ) from None
    if pw.pw_uid == 0 or pw.pw_gid == 0:
        raise bad_input(f"gateway worker user {name!r} has uid or gid 0: nginx workers must not run as root")
    try:
        group = grp.getgrgid(pw.pw_gid).gr_name
    except KeyError:
        raise RuntimeFailure(f"gateway worker user {name!r}: its primary group {pw.pw_gid} has no name") from None
    return WorkerIdentity(user=name, uid=pw.pw_uid, group=group, gid=pw.pw_gid)


def write_private(
    path: Path, text: str, *, replace: bool = False, mode: int = 0o600, gid: int | None = None, durable: bool = True
) -> None:
    """Write ``text`` to ``path`` with ``mode`` (and group ``gid``) from the first byte;
    atomically if ``replace``; flushed to disk unless not ``durable`` (scratch files)."""
    target = path.with_name(path.name + f".tmp-{os.getpid()}") if replace else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode & 0o700)
    with os.fdopen(fd, "w") as fh:
        if gid is not None:
            os.fchown(fh.fileno(), -1, gid)
        os.fchmod(fh.fileno(), mode)
        fh.write(text)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    if replace:
        os.replace(target, path)


def ensure_dir(path: Path, uid: int, gid: int, mode: int, *, parents: bool = False) -> None:
    """``path`` as a real directory (never a symlink) owned by ``uid:gid`` with ``mode``."""
    try:
        path.mkdir(mode=0o700, parents=parents)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise RuntimeFailure(f"gateway: {path} should be a directory (is it a symlink?); remove it and retry")
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid, follow_symlinks=False)
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
