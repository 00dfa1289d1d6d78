"""The file-sync agent: one stdlib-only script, run on both ends of a sync.

Inside a studio it is sent as ``python3 -I -c <this source> OP ROOT`` through
the container runtime's exec (podman now, the Kubernetes exec API later), so
nothing needs to be installed in the image and no bind mount is used. On the
server the engine imports the same functions, so both ends list, validate
and write files with one piece of code.

Operations (``ROOT`` is the absolute folder a mapping targets):

``list``
    stdin: JSON ``{"exclude": [regex, ...], "cache": DIR, "records": {path: [size, mtime_ns, sha256]}}``
    (``cache`` and ``records`` optional); stdout: JSON ``{"rows": [[path,
    kind, size, mtime_ns, exec, sha256, link], ...], "skipped": [[path,
    reason], ...]}``. A file is hashed only when its size or mtime differ
    from its record, taken from ``records`` or else from the hash cache the
    agent keeps in ``cache`` (outside the synced folder).
``apply``
    stdin: one JSON line ``{"rename": [[src, dst]], "delete": [path], "cache": DIR}``, then a
    tar stream (PAX) of files and symlinks to write; stdout: one JSON line
    per path handled (``{"ok": entry}``, ``{"deleted": path}``,
    ``{"renamed": [src, dst]}`` or ``{"refused": path, "reason": ...}``).
    Each file is written to a temporary name and renamed over the old one,
    so a killed transfer leaves every file old or new.
``get``
    stdin: JSON list of paths; stdout: a tar stream (PAX) of those that exist.

Every name is validated: relative, no ``..``, no empty or ``.`` parts, no
parent folder that is a symlink, symlinks only to targets inside ROOT, only
regular files and symlinks. Everything is streamed in fixed-size chunks.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat
import sys
import tarfile
import time

#: Prefix of the temporary files an atomic write uses; never listed or synced.
TMP_PREFIX = ".codestudio-tmp-"
#: PAX header carrying the source's exact mtime in nanoseconds.
PAX_MTIME = "CODESTUDIO.mtime_ns"
CHUNK = 1 << 20
# tarfile's stream buffer is grown by concatenation, so a large one costs a
# copy per member; 64 KiB keeps many small files fast and pipes full.
TAR_BUFSIZE = 1 << 16
# A temporary file older than this is debris of a killed sync, not a running one.
STALE_TMP_SECONDS = 3600


class Refused(Exception):
    """A path or archive member that must not be written; the message says why."""


# --------------------------------------------------------------------------
# Validation


def check_name(name: str) -> str:
    """Return ``name`` if it is a safe relative path, else raise :class:`Refused`."""
    if not isinstance(name, str) or not name:
        raise Refused("empty name")
    if "\x00" in name or any(ord(c) < 32 for c in name):
        raise Refused("control character in name")
    if name.startswith("/"):
        raise Refused("absolute path")
    parts = name.split("/")
    if ".." in parts:
        raise Refused("'..' in path")
    if any(p in ("", ".") for p in parts):
        raise Refused("empty or '.' path component")
    if parts[-1].startswith(TMP_PREFIX) or ".git" in parts:
        raise Refused("reserved name")
    return name


def link_inside(name: str, target: str) -> bool:
    """Whether a symlink at ``name`` pointing to ``target`` stays inside the root."""
    if not target or target.startswith("/") or "\x00" in target:
        return False
    joined = os.path.normpath(os.path.join(os.path.dirname(name), target))
    return not (joined == ".." or joined.startswith("../") or joined.startswith("/"))


def exec_bit(mode: int) -> bool:
    return bool(mode & 0o111)


# --------------------------------------------------------------------------
# Listing


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)


def link_entry(rel: str, st: os.stat_result, target: str) -> dict:
    return {
        "p": rel,
        "t": "l",
        "s": len(target.encode()),
        "m": st.st_mtime_ns,
        "x": False,
        "h": hashlib.sha256(target.encode()).hexdigest(),
        "l": target,
    }


def scan(root: str, records: dict, exclude: list) -> dict:
    """List ``root``: regular files and inside symlinks; everything else skipped with a reason."""
    patterns = [re.compile(r) for r in exclude]
    entries: list[dict] = []
    skipped: list[list[str]] = []

    def excluded(rel: str) -> bool:
        return any(p.match(rel) for p in patterns)

    def walk(dir_abs: str, dir_rel: str) -> None:
        try:
            it = sorted(os.scandir(dir_abs), key=lambda e: e.name)
        except FileNotFoundError:
            return
        except OSError as exc:
            skipped.append([dir_rel or ".", f"cannot read folder: {exc.strerror}"])
            return
        for e in it:
            rel = f"{dir_rel}/{e.name}" if dir_rel else e.name
            if e.name == ".git":
                continue
            if e.name.startswith(TMP_PREFIX):
                _remove_stale_tmp(e.path)
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished while listing
            if stat.S_ISDIR(st.st_mode):
                if not excluded(rel + "/"):
                    walk(e.path, rel)
                continue
            if excluded(rel):
                continue
            if any(ord(c) < 32 for c in rel) or not _utf8(rel):
                skipped.append([rel, "control character or undecodable byte in name"])
            elif stat.S_ISREG(st.st_mode):
                rec = records.get(rel)
                if rec and rec[0] == st.st_size and rec[1] == st.st_mtime_ns:
                    digest = rec[2]
                else:
                    try:
                        digest = sha256_file(e.path)
                    except OSError:
                        continue
                entries.append(
                    {"p": rel, "t": "f", "s": st.st_size, "m": st.st_mtime_ns, "x": exec_bit(st.st_mode), "h": digest}
                )
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(e.path)
                if link_inside(rel, target):
                    entries.append(link_entry(rel, st, target))
                else:
                    skipped.append([rel, f"symlink to {target!r} points outside the mapping"])
            else:
                skipped.append([rel, "not a regular file or symlink"])

    walk(root, "")
    return {"entries": entries, "skipped": skipped}


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _remove_stale_tmp(path: str) -> None:
    try:
        if time.time() - os.lstat(path).st_mtime > STALE_TMP_SECONDS:
            os.unlink(path)
    except OSError:
        pass


# --------------------------------------------------------------------------
# Writing


def safe_parent(root: str, name: str, create: bool) -> str:
    """The real folder ``name`` goes into, refusing symlinked or non-folder parents."""
    check_name(name)
    current = root
    for part in name.split("/")[:-1]:
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            if not create:
                raise Refused("parent folder missing") from None
            os.mkdir(current, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise Refused(f"parent {current[len(root) + 1:]!r} is a symlink")
        if not stat.S_ISDIR(st.st_mode):
            raise Refused(f"parent {current[len(root) + 1:]!r} is not a folder")
    return current


def _check_target_slot(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise Refused("a folder is in the way")


def write_file(root: str, name: str, src, size: int, exec_: bool, mtime_ns: int | None) -> dict:
    """Stream ``size`` bytes from ``src`` into ``root/name`` atomically; return its entry."""
    parent = safe_parent(root, name, create=True)
    final = os.path.join(parent, os.path.basename(name))
    _check_target_slot(final)
    tmp = os.path.join(parent, f"{TMP_PREFIX}{secrets.token_hex(6)}")
    h = hashlib.sha256()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb", buffering=0) as out:
            remaining = size
            while remaining > 0:
                chunk = src.read(min(CHUNK, remaining))
                if not chunk:
                    raise OSError("archive ended inside a file")
                h.update(chunk)
                out.write(chunk)
                remaining -= len(chunk)
            os.fchmod(fd, 0o755 if exec_ else 0o644)
            if mtime_ns is not None:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
            st = os.fstat(fd)
        os.replace(tmp, final)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return {"p": name, "t": "f", "s": st.st_size, "m": st.st_mtime_ns, "x": exec_, "h": h.hexdigest()}


def write_link(root: str, name: str, target: str) -> dict:
    if not link_inside(name, target):
        raise Refused(f"symlink to {target!r} points outside the mapping")
    parent = safe_parent(root, name, create=True)
    final = os.path.join(parent, os.path.basename(name))
    _check_target_slot(final)
    tmp = os.path.join(parent, f"{TMP_PREFIX}{secrets.token_hex(6)}")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, final)
    except BaseException:
        os.unlink(tmp)
        raise
    return link_entry(name, os.lstat(final), target)


def write_member(root: str, tar: tarfile.TarFile, member: tarfile.TarInfo, dest: str | None = None) -> dict:
    """Write one archive member under ``root`` (as ``dest`` if given) after validating it.

    Raises :class:`Refused` for names or types that must not be written.
    """
    check_name(member.name)
    name = check_name(dest) if dest is not None else member.name
    if member.isreg():
        mtime = member.pax_headers.get(PAX_MTIME)
        mtime_ns = int(mtime) if mtime and mtime.isdigit() else int(member.mtime) * 1_000_000_000
        src = tar.extractfile(member)
        return write_file(root, name, src, member.size, exec_bit(member.mode), mtime_ns)
    if member.issym():
        return write_link(root, name, member.linkname)
    if member.islnk():
        raise Refused("hard links are not synced")
    if member.isdir():
        raise Refused("folder entries are not synced")
    raise Refused("device, fifo or other special file")


def delete(root: str, name: str) -> bool:
    """Remove a file or symlink (never a folder); prune empty parents. False if absent."""
    parent = safe_parent(root, name, create=False)
    path = os.path.join(parent, os.path.basename(name))
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        raise Refused("is a folder")
    os.unlink(path)
    prune_empty(root, os.path.dirname(name))
    return True


def prune_empty(root: str, rel_dir: str) -> None:
    while rel_dir:
        try:
            os.rmdir(os.path.join(root, rel_dir))
        except OSError:
            return
        rel_dir = os.path.dirname(rel_dir)


def rename(root: str, src: str, dst: str) -> None:
    """Move a file aside (conflict copies); the destination must not exist."""
    src_parent = safe_parent(root, src, create=False)
    dst_parent = safe_parent(root, dst, create=True)
    dst_path = os.path.join(dst_parent, os.path.basename(dst))
    if os.path.lexists(dst_path):
        raise Refused("destination exists")
    os.rename(os.path.join(src_parent, os.path.basename(src)), dst_path)


# --------------------------------------------------------------------------
# Reading


class ExactReader:
    """Exactly ``size`` bytes of a file that may change while it is read.

    A file that shrinks is padded with zeros and one that grows is cut: the
    archive stays well-formed, and the receiver records the hash of what it
    got, so the next sync sees the newer mtime and sends the file again.
    """

    def __init__(self, f, size: int):
        self.f, self.remaining = f, size

    def read(self, n: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        n = self.remaining if n < 0 else min(n, self.remaining)
        data = self.f.read(n) or b"\0" * n
        self.remaining -= len(data)
        return data


def add_to_tar(tar: tarfile.TarFile, root: str, name: str) -> bool:
    """Append ``root/name`` (file or inside symlink) to ``tar``; False if absent or unfit."""
    try:
        parent = safe_parent(root, name, create=False)
    except Refused:
        return False
    path = os.path.join(parent, os.path.basename(name))
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    info = tarfile.TarInfo(name)
    info.mtime = st.st_mtime_ns // 1_000_000_000
    info.pax_headers = {PAX_MTIME: str(st.st_mtime_ns)}
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        if not link_inside(name, target):
            return False
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        tar.addfile(info)
        return True
    if not stat.S_ISREG(st.st_mode):
        return False
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        info.size, info.mode = st.st_size, 0o755 if exec_bit(st.st_mode) else 0o644
        tar.addfile(info, ExactReader(f, st.st_size))
    return True


def open_tar_writer(fileobj) -> tarfile.TarFile:
    return tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT, bufsize=TAR_BUFSIZE)


def open_tar_reader(fileobj) -> tarfile.TarFile:
    return tarfile.open(fileobj=fileobj, mode="r|", bufsize=TAR_BUFSIZE)


# --------------------------------------------------------------------------
# Hash cache (inside the studio)
#
# Sending the server's records into the studio costs more than hashing on
# slow exec relays, so the studio side keeps its own (path -> size, mtime,
# sha256) cache outside the synced folder. Losing it only costs re-hashing.


def _cache_path(cache_dir, root: str) -> str | None:
    if not cache_dir:
        return None
    return os.path.join(cache_dir, hashlib.sha256(root.encode()).hexdigest()[:24] + ".json")


def _read_cache(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(path: str, entries: list) -> None:
    data = {e["p"]: [e["s"], e["m"], e["h"]] for e in entries if e["t"] == "f"}
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{secrets.token_hex(4)}"
        with open(tmp, "w") as f:
            json.dump(data, f, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError:
        pass


def rows_to_entries(rows: list) -> list[dict]:
    out = []
    for p, t, size, mtime, x, h, link in rows:
        e = {"p": p, "t": t, "s": size, "m": mtime, "x": bool(x), "h": h}
        if link is not None:
            e["l"] = link
        out.append(e)
    return out


# --------------------------------------------------------------------------
# Entry point (inside the studio)


class _Emitter:
    """Confirmation lines, flushed in batches: an exec relay pays per write.

    Lines lost when the agent is killed only mean the engine re-checks those
    files next time (they then match on both sides and are recorded).
    """

    def __init__(self, out):
        self.out, self.pending, self.last = out, 0, time.monotonic()

    def __call__(self, obj: dict) -> None:
        self.out.write(json.dumps(obj).encode() + b"\n")
        self.pending += 1
        if self.pending >= 256 or time.monotonic() - self.last > 0.2:
            self.flush()

    def flush(self) -> None:
        self.out.flush()
        self.pending, self.last = 0, time.monotonic()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("list", "apply", "get") or not argv[1].startswith("/"):
        sys.stderr.write("usage: agent list|apply|get ABSOLUTE_ROOT\n")
        return 2
    op, root = argv
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    if op == "list":
        request = json.load(stdin)
        records = request.get("records") or {}
        cache = _cache_path(request.get("cache"), root)
        if cache and not records:
            records = _read_cache(cache)
        result = scan(root, records, request.get("exclude", []))
        if cache:
            _write_cache(cache, result["entries"])
        # Compact rows: an exec relay is slow, every byte counts.
        rows = [[e["p"], e["t"], e["s"], e["m"], int(e["x"]), e["h"], e.get("l")] for e in result["entries"]]
        stdout.write(json.dumps({"rows": rows, "skipped": result["skipped"]}, separators=(",", ":")).encode())
        return 0
    if op == "get":
        names = json.load(stdin)
        with open_tar_writer(stdout) as tar:
            for name in names:
                try:
                    add_to_tar(tar, root, check_name(name))
                except (Refused, OSError):
                    pass  # the receiver reports what did not arrive
        return 0
    # apply
    os.makedirs(root, exist_ok=True)
    _emit = _Emitter(stdout)
    header = json.loads(stdin.readline() or b"{}")
    # A file that could not be moved aside (a conflict) must not be overwritten.
    blocked = set()
    for src, dst in header.get("rename", []):
        try:
            rename(root, src, dst)
            _emit({"renamed": [src, dst]})
        except (Refused, OSError) as exc:
            blocked.add(src)
            _emit({"refused": src, "reason": f"could not keep the studio's version: {exc}"})
    for name in header.get("delete", []):
        try:
            delete(root, name)
            _emit({"deleted": name})
        except (Refused, OSError) as exc:
            _emit({"refused": name, "reason": str(exc)})
    written = []
    with open_tar_reader(stdin) as tar:
        for member in tar:
            if member.name in blocked:
                _emit({"refused": member.name, "reason": "studio's version kept in place"})
                continue
            try:
                written.append(write_member(root, tar, member))
                _emit({"ok": written[-1]})
            except (Refused, OSError) as exc:
                _emit({"refused": member.name, "reason": str(exc)})
    _emit.flush()
    cache = _cache_path(header.get("cache"), root)
    if cache and written:
        known = _read_cache(cache)
        known.update({e["p"]: [e["s"], e["m"], e["h"]] for e in written if e["t"] == "f"})
        _write_cache(cache, [{"p": p, "t": "f", "s": v[0], "m": v[1], "h": v[2]} for p, v in known.items()])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
