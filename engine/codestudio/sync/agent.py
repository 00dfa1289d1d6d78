"""The file-sync agent: one stdlib-only script, run on both ends of a sync.

Inside a studio it is sent as ``python3 -I -c <this source> session BASE``
through the container runtime's exec (podman now, the Kubernetes exec API
later), so nothing needs to be installed in the image and no bind mount is
used. On the server the engine imports the same functions, so both ends
list, validate and write files with one piece of code.

One exec serves a whole sync (starting an exec costs 0.2-0.4 s on podman,
more than anything else a small sync does): the agent reads requests from
stdin until it closes. ``BASE`` is ``/`` in a container (a test folder for
:class:`~codestudio.sync.transport.LocalTransport`); each request names the
absolute folders (roots) of the mappings it is about, and everything a
request or answer says about a file is per root, by its index ``i``.

Framing: requests and answers are JSON lines; tar streams travel in frames
(4-byte big-endian length, then that many bytes, at most :data:`MAX_FRAME`;
a zero length ends the stream), so a stream's end is known without closing
the pipe. Tar member names are ``<i>/<path>``.

``{"op": "list", "roots": [ROOT, ...], "exclude": [regex, ...], "cache": DIR}``
    answer: lines ``{"i": i, "rows": [[path, kind, size, mtime_ns, exec,
    sha256, link], ...]}`` and ``{"i": i, "skipped": [[path, reason],
    ...]}``, each of bounded size (a folder's listing may take several),
    then ``{"maps": number of roots}``.
    A file is hashed only when its size or mtime differ from the hash cache
    the agent keeps in ``cache`` (outside the synced folders; optional).
``{"op": "get", "roots": [ROOT, ...], "paths": [[path, ...], ...]}``
    answer: a framed tar stream of those paths that exist.
``{"op": "apply", "roots": [...], "rename": [[[src, dst], ...], ...], "delete": [[path, ...], ...], "cache": DIR}``
    followed by a framed tar stream of files and symlinks to write; answer:
    one line per path handled (``{"i": i, "ok": row}``, ``{"i": i,
    "deleted": path}``, ``{"i": i, "renamed": [src, dst]}`` or ``{"i": i,
    "refused": path, "reason": ...}``, ``i`` null when a member name has no
    valid index), then ``{"end": true}``. Each file is written to a
    temporary name and renamed over the old one, so a killed transfer leaves
    every file old or new.

Framed stdin: where the exec cannot close the agent's stdin (the
Kubernetes exec API's ``v4.channel.k8s.io``), the engine's first line is
:data:`FRAMED_STDIN` and everything after it is one framed stream (same
frames); its end marker is the end of input. Any other first line is a
request of a plain stdin.

Every name is validated: relative, no ``..``, no empty or ``.`` parts, no
name Git takes for ``.git``, no parent folder that is a symlink, symlinks
only when they really resolve inside their root (:func:`resolve_link`),
only regular files and symlinks. Folders below a root are opened one
component at a time with ``O_NOFOLLOW`` and used through their descriptors,
so nothing swapped in after a check is followed. Everything is streamed in
fixed-size chunks. Modification times travel with one-second precision, as
in plain tar: a per-file PAX header would add 1 KiB to every file.
"""

from __future__ import annotations

import hashlib
import io
import itertools
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
CHUNK = 1 << 20
#: Largest frame of a framed stream (a frame is read whole).
MAX_FRAME = 1 << 20
#: First line of a framed stdin (a request line is JSON, so it cannot be mistaken for one).
FRAMED_STDIN = b"#codestudio-framed-stdin v1\n"
#: Characters of names per line of a listing answer (escaped, a line stays under 2 MiB).
LIST_CHUNK = 256 << 10
# tarfile's stream buffer is grown by concatenation, so a large one costs a
# copy per member; 64 KiB keeps many small files fast and pipes full.
TAR_BUFSIZE = 1 << 16
# Control characters; and with lone surrogates, what os.scandir makes of bytes that are not UTF-8.
_CONTROL = re.compile("[\x00-\x1f]")
_UNFIT = re.compile("[\x00-\x1f\ud800-\udfff]")
# A temporary file older than this is debris of a killed sync, not a running one.
STALE_TMP_SECONDS = 3600
# The same rule as codestudio.types.is_git_name (this file is sent alone into studios).
# What Git itself takes for ".git" (and refuses to track), after its is_ntfs_dotgit():
# any case of ".git" or its NTFS short name "git~1", then only dots and spaces up
# to the end, a backslash or an alternate data stream's ":" ...
_NTFS_DOTGIT = re.compile(r"(?:\.[gG][iI][tT]|[gG][iI][tT]~1)[. ]*(?:$|[\\:])")
# ... and after its is_hfs_dotgit(): ".git" in any case once the code points
# HFS+ ignores are removed (zero-width joiners, direction marks, U+FEFF).
_HFS_IGNORED = re.compile("[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]")


class Refused(Exception):
    """A path or archive member that must not be written; the message says why."""


class ProtocolError(Exception):
    """The other end broke the framing or sent an unreadable request."""


# --------------------------------------------------------------------------
# Validation


def is_git_name(part: str) -> bool:
    """Whether one path component is ``.git`` or a name Git treats as ``.git`` (``.GIT``, ``git~1``, ``.git.``, ...)."""
    if _NTFS_DOTGIT.match(part):
        return True
    folded = part if part.isascii() else _HFS_IGNORED.sub("", part)
    return len(folded) == 4 and folded[0] == "." and folded[1:].lower() == "git" and folded[1:].isascii()


def check_name(name: str) -> str:
    """Return ``name`` if it is a safe relative path, else raise :class:`Refused`."""
    if not isinstance(name, str) or not name:
        raise Refused("empty name")
    if _CONTROL.search(name):
        raise Refused("control character in name")
    if name.startswith("/"):
        raise Refused("absolute path")
    parts = name.split("/")
    if ".." in parts:
        raise Refused("'..' in path")
    if any(p in ("", ".") for p in parts):
        raise Refused("empty or '.' path component")
    if parts[-1].startswith(TMP_PREFIX):
        raise Refused("reserved name")
    if any(is_git_name(p) for p in parts):
        raise Refused("reserved name: Git takes it for '.git'")
    return name


def link_inside(name: str, target: str) -> bool:
    """Whether a symlink at ``name`` pointing to ``target`` stays inside the root, by its text alone.

    Necessary, not sufficient: ``l1 -> l0/..`` is inside by its text and
    leaves the root when ``l0 -> .``. :func:`resolve_link` decides.
    """
    if not target or target.startswith("/") or "\x00" in target:
        return False
    joined = os.path.normpath(os.path.join(os.path.dirname(name), target))
    return not (joined == ".." or joined.startswith("../") or joined.startswith("/"))


#: Symlinks followed while resolving one link (the kernel's own limit is 40).
MAX_LINK_HOPS = 40


def resolve_link(root: str, name: str, target: str, pending: dict | None = None) -> str | None:
    """Where a symlink at ``root/name`` pointing to ``target`` really leads, relative to ``root``.

    Every component is resolved as the kernel would, following the symlinks
    that are on disk below ``root`` (and those in ``pending``, relative name
    -> target, which replace what is on disk; the link being judged is one).
    Components that do not exist are taken as they are, so ``..`` after them
    goes back one level, as it will once they exist as folders.

    Returns the resolved path ("" for the root itself), or None when the
    link leaves ``root`` at any step, is absolute, loops, or passes through
    a name Git takes for ``.git`` (a link ``data -> .git`` would let a sync
    write the zone's git config and hooks, which the engine's git runs).
    """
    links = dict(pending or {})
    links[name] = target
    return _resolve(root, name.split("/")[:-1], target, links, [MAX_LINK_HOPS])


def resolve_path(root: str, path: str) -> str | None:
    """``path`` (relative) resolved below ``root`` like :func:`resolve_link`; None if it leaves ``root`` or meets ``.git``."""
    return _resolve(root, [], path, {}, [MAX_LINK_HOPS])


def _resolve(root: str, parts: list[str], text: str, links: dict, hops: list[int]) -> str | None:
    if not text or text.startswith("/") or "\x00" in text:
        return None
    if any(is_git_name(p) for p in parts):
        return None
    for comp in text.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                return None  # above the root
            parts.pop()
            continue
        if is_git_name(comp):
            return None  # into (or through) the repository's own folder, by any spelling
        parts.append(comp)
        rel = "/".join(parts)
        link = links.get(rel)
        if link is None:
            try:
                st = os.lstat(os.path.join(root, rel))
            except OSError:
                continue  # missing (or below a file): taken as a plain name
            if stat.S_ISLNK(st.st_mode):
                try:
                    link = os.readlink(os.path.join(root, rel))
                except OSError:
                    return None
        if link is not None:
            hops[0] -= 1
            if hops[0] < 0:
                return None  # a loop, or a longer chain than the kernel follows
            parts.pop()
            resolved = _resolve(root, parts, link, links, hops)
            if resolved is None:
                return None
            parts = resolved.split("/") if resolved else []
    return "/".join(parts)


def exec_bit(mode: int) -> bool:
    return bool(mode & 0o111)


# --------------------------------------------------------------------------
# Listing


def sha256_file(path: str, dir_fd: int | None = None) -> str:
    h = hashlib.sha256()
    # O_NOFOLLOW: a file swapped for a symlink since it was listed is not read through.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path}: not a regular file")
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


def scan(root: str, records: dict, exclude: list, hash_new: bool = True) -> dict:
    """List ``root``: regular files and inside symlinks; everything else skipped with a reason.

    A file's sha256 comes from ``records`` (path -> [size, mtime_ns, sha256])
    when its size and mtime match; otherwise it is computed, or left None
    when ``hash_new`` is false (the engine hashes only the files it needs to
    compare: a file only on this side and never synced is sent anyway).
    """
    patterns = [re.compile(r) for r in exclude]
    entries: list[dict] = []
    skipped: list[list[str]] = []

    def excluded(rel: str) -> bool:
        return any(p.match(rel) for p in patterns)

    # Folders are walked through descriptors opened with O_NOFOLLOW: one
    # swapped for a symlink while it is listed is not listed through.
    def walk(dir_fd: int, dir_rel: str) -> None:
        try:
            it = sorted(os.scandir(dir_fd), key=lambda e: e.name)
        except OSError as exc:
            skipped.append([dir_rel or ".", f"cannot read folder: {exc.strerror}"])
            return
        for e in it:
            rel = f"{dir_rel}/{e.name}" if dir_rel else e.name
            if e.name == ".git":
                continue  # the zone's own repository (or one the user cloned): never synced
            if is_git_name(e.name):
                skipped.append([rel, "reserved name: Git takes it for '.git'"])
                continue
            if e.name.startswith(TMP_PREFIX):
                _remove_stale_tmp(e.name, dir_fd)
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished while listing
            if stat.S_ISDIR(st.st_mode):
                if not excluded(rel + "/"):
                    try:
                        child = os.open(e.name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
                    except OSError:
                        continue  # vanished, or no longer a folder
                    try:
                        walk(child, rel)
                    finally:
                        os.close(child)
                continue
            if excluded(rel):
                continue
            if _UNFIT.search(rel):
                skipped.append([rel, "control character or undecodable byte in name"])
            elif stat.S_ISREG(st.st_mode):
                rec = records.get(rel)
                if rec and rec[0] == st.st_size and rec[1] == st.st_mtime_ns:
                    digest = rec[2]
                elif not hash_new:
                    digest = None
                else:
                    try:
                        digest = sha256_file(e.name, dir_fd)
                    except OSError:
                        continue
                entries.append(
                    {"p": rel, "t": "f", "s": st.st_size, "m": st.st_mtime_ns, "x": exec_bit(st.st_mode), "h": digest}
                )
            elif stat.S_ISLNK(st.st_mode):
                try:
                    target = os.readlink(e.name, dir_fd=dir_fd)
                except OSError:
                    continue
                if resolve_link(root, rel, target) is not None:
                    entries.append(link_entry(rel, st, target))
                else:
                    skipped.append([rel, f"symlink to {target!r} resolves outside the mapping or into a '.git'"])
            else:
                skipped.append([rel, "not a regular file or symlink"])

    try:
        top = os.open(root, _DIR_FLAGS)
    except FileNotFoundError:
        return {"entries": entries, "skipped": skipped}
    try:
        walk(top, "")
    finally:
        os.close(top)
    return {"entries": entries, "skipped": skipped}


def _remove_stale_tmp(name: str, dir_fd: int) -> None:
    try:
        if time.time() - os.lstat(name, dir_fd=dir_fd).st_mtime > STALE_TMP_SECONDS:
            os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


# --------------------------------------------------------------------------
# Writing


def safe_parent(root: str, name: str, create: bool, known: set | None = None) -> str:
    """The real folder ``name`` goes into, refusing symlinked or non-folder parents.

    ``known`` holds parent folders (relative) already checked during one
    stream, so thousands of files in one folder cost one check: nothing a
    stream writes turns a folder into a symlink (a symlink never replaces a
    folder, and folders are only removed by deletions, which come first).
    """
    check_name(name)
    rel_parent = name.rpartition("/")[0]
    if known is not None and rel_parent in known:
        return os.path.join(root, rel_parent) if rel_parent else root
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
    if known is not None:
        known.add(rel_parent)
    return current


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def open_parent(root: str, name: str, create: bool, known: set | None = None) -> tuple[int, str]:
    """(descriptor of the folder ``name`` goes into, ``name``'s last component), refusing symlinked parents.

    :func:`safe_parent` checks the parents (and creates them); the folder is
    then opened from ``root`` one component at a time with ``O_NOFOLLOW``, and
    the caller works through that descriptor: a parent swapped for a symlink
    after the check makes the open fail instead of being followed.
    """
    safe_parent(root, name, create, known)
    rel_parent, _, base = name.rpartition("/")
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in rel_parent.split("/") if rel_parent else []:
            try:
                child = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:
                raise Refused(f"parent {rel_parent!r} changed while syncing (a symlink or not a folder now)") from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd, base


def _replace(tmp: str, final: str, dir_fd: int) -> None:
    try:
        os.replace(tmp, final, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except IsADirectoryError:
        raise Refused("a folder is in the way") from None


_tmp_names = itertools.count()
# Unique per process: a random stem (pids repeat across containers) and a counter.
_TMP_STEM = f"{TMP_PREFIX}{secrets.token_hex(4)}-"


def _tmp_name() -> str:
    return f"{_TMP_STEM}{next(_tmp_names)}"


def _create_tmp(dir_fd: int) -> tuple[str, int]:
    while True:
        tmp = _tmp_name()
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            return tmp, os.open(tmp, flags, 0o600, dir_fd=dir_fd)
        except FileExistsError:
            continue


def _unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def write_file(
    root: str, name: str, src, size: int, exec_: bool, mtime_ns: int | None, known: set | None = None
) -> dict:
    """Stream ``size`` bytes from ``src`` into ``root/name`` atomically; return its entry."""
    pfd, final = open_parent(root, name, create=True, known=known)
    try:
        tmp, fd = _create_tmp(pfd)
        h = hashlib.sha256()
        try:
            try:
                remaining = size
                while remaining > 0:
                    chunk = src.read(min(CHUNK, remaining))
                    if not chunk:
                        raise OSError("archive ended inside a file")
                    h.update(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                    remaining -= len(chunk)
                os.fchmod(fd, 0o755 if exec_ else 0o644)
                if mtime_ns is not None:
                    os.utime(fd, ns=(mtime_ns, mtime_ns))
                st = os.fstat(fd)
            finally:
                os.close(fd)
            # No fsync: "old or new" is about interrupted syncs, which rename gives;
            # a power cut is the file system's business (and costs a flush per file).
            _replace(tmp, final, pfd)
        except BaseException:
            _unlink_quietly(tmp, pfd)
            raise
    finally:
        os.close(pfd)
    return {"p": name, "t": "f", "s": st.st_size, "m": st.st_mtime_ns, "x": exec_, "h": h.hexdigest()}


def write_link(root: str, name: str, target: str, known: set | None = None) -> dict:
    """Create (or replace) the symlink ``root/name``, if it really resolves inside ``root`` here."""
    check_name(name)
    if resolve_link(root, name, target) is None:
        raise Refused(f"symlink to {target!r} resolves outside the mapping or into a '.git'")
    pfd, final = open_parent(root, name, create=True, known=known)
    try:
        tmp = _tmp_name()
        os.symlink(target, tmp, dir_fd=pfd)
        try:
            _replace(tmp, final, pfd)
        except BaseException:
            _unlink_quietly(tmp, pfd)
            raise
        return link_entry(name, os.lstat(final, dir_fd=pfd), target)
    finally:
        os.close(pfd)


def write_member(root: str, tar, member, dest: str | None = None, known: set | None = None) -> dict:
    """Write one archive member under ``root`` as ``dest`` (default: its name) after validating it.

    ``tar`` is a :class:`TarReader` (or a ``tarfile.TarFile``) and ``member`` one of its members.
    Raises :class:`Refused` for names or types that must not be written.
    """
    name = check_name(dest if dest is not None else member.name)
    if member.isreg():
        src = tar.extractfile(member)
        return write_file(root, name, src, member.size, exec_bit(member.mode), int(member.mtime) * 1_000_000_000, known)
    if member.issym():
        return write_link(root, name, member.linkname, known)
    if member.islnk():
        raise Refused("hard links are not synced")
    if member.isdir():
        raise Refused("folder entries are not synced")
    raise Refused("device, fifo or other special file")


def split_member(name: str, count: int) -> tuple[int, str]:
    """``"<i>/<path>"`` -> (i, path) for a stream about ``count`` roots, or :class:`Refused`.

    Only the index is checked here; ``path`` is checked where it is used, so
    a refusal names the mapping it was aimed at.
    """
    index, sep, path = name.partition("/")
    if not sep or not index.isdigit() or not index.isascii() or str(int(index)) != index:
        raise Refused("no mapping index in the archive name")
    if int(index) >= count:
        raise Refused("mapping index out of range")
    return int(index), path


def delete(root: str, name: str) -> bool:
    """Remove a file or symlink (never a folder); prune empty parents. False if absent."""
    pfd, base = open_parent(root, name, create=False)
    try:
        try:
            st = os.lstat(base, dir_fd=pfd)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            raise Refused("is a folder")
        os.unlink(base, dir_fd=pfd)
    finally:
        os.close(pfd)
    prune_empty(root, os.path.dirname(name))
    return True


def prune_empty(root: str, rel_dir: str) -> None:
    """Remove ``rel_dir`` and its parents while they are empty (through descriptors, never through a link)."""
    while rel_dir:
        try:
            pfd, base = open_parent(root, rel_dir, create=False)
        except (Refused, OSError):
            return
        try:
            os.rmdir(base, dir_fd=pfd)
        except OSError:
            return
        finally:
            os.close(pfd)
        rel_dir = os.path.dirname(rel_dir)


def rename(root: str, src: str, dst: str) -> None:
    """Move a file aside (conflict copies); the destination must not exist."""
    sfd, src_base = open_parent(root, src, create=False)
    try:
        dfd, dst_base = open_parent(root, dst, create=True)
        try:
            try:
                os.lstat(dst_base, dir_fd=dfd)
            except FileNotFoundError:
                pass
            else:
                raise Refused("destination exists")
            os.rename(src_base, dst_base, src_dir_fd=sfd, dst_dir_fd=dfd)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


# --------------------------------------------------------------------------
# Reading


class TarWriter:
    """Writes a tar stream of files and symlinks: ustar headers built directly.

    tarfile costs about ten times more per member (a TarInfo copy, field by
    field encoding); sync sends thousands of small files. Members that do not
    fit ustar (names or link targets over 100 bytes, files of 8 GiB or more)
    get tarfile's PAX headers. What is written is read back by tarfile (and
    GNU tar). Output is passed to ``out.write`` in pieces of about
    :data:`TAR_BUFSIZE` (whole :data:`CHUNK` pieces for large files).
    """

    def __init__(self, out):
        self.out, self.buf = out, bytearray()

    def __enter__(self) -> TarWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:  # like tarfile: a failed stream gets no end marker
            self.close()

    def _header(self, name: str, size: int, mode: int, mtime: int, kind: bytes, link: str = "") -> bytes:
        try:
            name_b, link_b = name.encode(), link.encode()
        except UnicodeEncodeError:
            name_b = link_b = b"\xff" * 101  # not UTF-8: tarfile's PAX header below
        if len(name_b) > 100 or len(link_b) > 100 or not 0 <= size < 8**11 or not 0 <= mtime < 8**11:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.type, info.linkname = size, mode, mtime, kind, link
            return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        h = bytearray(512)
        h[0 : len(name_b)] = name_b
        h[100:148] = b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (mode, 0, 0, size, mtime)
        h[148:156] = b"        "
        h[156:157] = kind
        h[157 : 157 + len(link_b)] = link_b
        h[257:265] = b"ustar\x0000"
        h[148:156] = b"%06o\0 " % sum(h)
        return bytes(h)

    def add_link(self, name: str, target: str, mtime: int) -> None:
        self.buf += self._header(name, 0, 0o777, mtime, tarfile.SYMTYPE, target)
        self._maybe_flush()

    def add_file(self, name: str, f, size: int, mode: int, mtime: int) -> None:
        """Append ``size`` bytes of ``f``, a file that may change while it is read.

        A file that shrinks is padded with zeros and one that grows is cut:
        the archive stays well-formed, and the receiver records the hash of
        what it got, so the next sync sees the newer mtime and sends it again.
        """
        self.buf += self._header(name, size, mode, mtime, tarfile.REGTYPE)
        remaining = size
        while remaining > 0:
            n = min(CHUNK, remaining)
            data = f.read(n) or b"\0" * n
            remaining -= len(data)
            if len(data) >= TAR_BUFSIZE:
                self.flush()
                self.out.write(data)
            else:
                self.buf += data
                self._maybe_flush()
        if size % 512:
            self.buf += b"\0" * (512 - size % 512)
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if len(self.buf) >= TAR_BUFSIZE:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.out.write(bytes(self.buf))
            self.buf.clear()

    def close(self) -> None:
        self.buf += b"\0" * 1024
        self.flush()


def add_to_tar(tar: TarWriter, root: str, name: str, arcname: str | None = None, known: set | None = None) -> bool:
    """Append ``root/name`` (file or inside symlink) to ``tar`` as ``arcname``; False if absent or unfit."""
    try:
        pfd, base = open_parent(root, name, create=False, known=known)
    except (Refused, FileNotFoundError):
        return False
    try:
        return _add_from(tar, pfd, base, root, name, arcname)
    finally:
        os.close(pfd)


def _add_from(tar: TarWriter, pfd: int, base: str, root: str, name: str, arcname: str | None) -> bool:
    try:
        st = os.lstat(base, dir_fd=pfd)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(base, dir_fd=pfd)
        if resolve_link(root, name, target) is None:
            return False
        tar.add_link(arcname or name, target, st.st_mtime_ns // 1_000_000_000)
        return True
    if not stat.S_ISREG(st.st_mode):
        return False
    # O_NONBLOCK: a fifo swapped in since the lstat does not hang the sync.
    fd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=pfd)
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return False
        mode = 0o755 if exec_bit(st.st_mode) else 0o644
        tar.add_file(arcname or name, f, st.st_size, mode, st.st_mtime_ns // 1_000_000_000)
    return True


def open_tar_writer(fileobj) -> TarWriter:
    return TarWriter(fileobj)


class TarMember:
    """One archive member, as much of tarfile's ``TarInfo`` as sync reads."""

    __slots__ = ("name", "type", "size", "mode", "mtime", "linkname")

    def isreg(self) -> bool:
        return self.type in (tarfile.REGTYPE, tarfile.AREGTYPE)

    def issym(self) -> bool:
        return self.type == tarfile.SYMTYPE

    def islnk(self) -> bool:
        return self.type == tarfile.LNKTYPE

    def isdir(self) -> bool:
        return self.type == tarfile.DIRTYPE


# Members of these types carry no data in the archive; all others do (as tarfile reads them).
_NO_DATA = {tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE}
_NUL_BLOCK = bytes(512)


def _tar_str(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _tar_num(field: bytes) -> int:
    if field[:1] == b"\x80":  # GNU base-256
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        raise tarfile.ReadError("invalid number in a tar header") from None


def _pax_records(data: bytes) -> dict[str, str]:
    records, pos = {}, 0
    while pos < len(data):
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise tarfile.ReadError("invalid PAX header") from None
        end = pos + length
        if space < 0 or length <= 0 or end > len(data) or data[end - 1 : end] != b"\n":
            raise tarfile.ReadError("invalid PAX header")
        key, _, value = data[space + 1 : end - 1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos = end
    return records


class TarReader:
    """Reads a tar stream member by member: ustar headers, with PAX and GNU long names.

    tarfile costs several times more per member; this reads the subset of
    tar sync uses (every member is then validated by :func:`write_member`,
    which refuses all but files and inside symlinks). Malformed input raises
    ``tarfile.ReadError``. Memory stays bounded: extended headers are limited
    to :data:`MAX_FRAME` and file data is handed out in pieces.
    """

    def __init__(self, stream):
        self.stream, self.buf, self.pos = stream, b"", 0
        self.remaining = 0  # data of the current member not read yet
        self.pad = 0  # then this many bytes up to the next 512-byte block

    def __enter__(self) -> TarReader:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def _take(self, n: int) -> bytes:
        """``n`` bytes of the stream (fewer only at its end)."""
        avail = len(self.buf) - self.pos
        if avail < n:
            parts = [self.buf[self.pos :]]
            while avail < n:
                chunk = self.stream.read(max(TAR_BUFSIZE, n - avail))
                if not chunk:
                    break
                parts.append(chunk)
                avail += len(chunk)
            self.buf, self.pos = b"".join(parts), 0
        data = self.buf[self.pos : self.pos + n]
        self.pos += len(data)
        return data

    def _skip(self, n: int) -> None:
        while n > 0:
            got = len(self._take(min(n, CHUNK)))
            if not got:
                raise tarfile.ReadError("archive ended inside a member")
            n -= got

    def _header_block(self) -> bytes | None:
        block = self._take(512)
        if not block or block == _NUL_BLOCK:
            return None
        if len(block) < 512:
            raise tarfile.ReadError("archive ended inside a header")
        stored = _tar_num(block[148:156])
        unsigned = 256 + sum(block[:148]) + sum(block[156:])
        if stored != unsigned and stored != unsigned - 256 * sum(1 for b in block if b > 127):
            raise tarfile.ReadError("bad checksum in a tar header")
        return block

    def __iter__(self):
        pax: dict[str, str] = {}
        extended = 0  # bytes of extended headers since the last member: bounded in total, not only each
        while True:
            self._skip(self.remaining + self.pad)
            self.remaining = self.pad = 0
            block = self._header_block()
            if block is None:
                return
            kind = block[156:157]
            size = _tar_num(block[124:136])
            if kind in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
                extended += size
                if size > MAX_FRAME or extended > MAX_FRAME:
                    raise tarfile.ReadError(f"extended headers of more than {MAX_FRAME} bytes for one member")
                data = self._take(size)
                if len(data) < size:
                    raise tarfile.ReadError("archive ended inside a header")
                self.pad = -size % 512
                if kind == tarfile.XHDTYPE:
                    pax.update(_pax_records(data))
                elif kind == tarfile.GNUTYPE_LONGNAME:
                    pax["path"] = _tar_str(data)
                elif kind == tarfile.GNUTYPE_LONGLINK:
                    pax["linkpath"] = _tar_str(data)
                continue  # a global header (XGLTYPE) changes nothing sync reads
            m = TarMember()
            m.name, m.type, m.linkname = _tar_str(block[0:100]), kind, _tar_str(block[157:257])
            if block[257:263] == b"ustar\0" and block[345]:
                m.name = _tar_str(block[345:500]) + "/" + m.name
            m.mode, m.mtime = _tar_num(block[100:108]) & 0o7777, _tar_num(block[136:148])
            try:
                m.name = pax.get("path", m.name)
                m.linkname = pax.get("linkpath", m.linkname)
                size = int(pax.get("size", size))
                m.mtime = int(float(pax.get("mtime", m.mtime)))
            except (ValueError, OverflowError):
                raise tarfile.ReadError("invalid PAX value") from None
            pax, extended = {}, 0
            if size < 0:
                raise tarfile.ReadError("negative size")
            m.size = size
            self.remaining = 0 if kind in _NO_DATA else size
            self.pad = -self.remaining % 512
            yield m

    def extractfile(self, member: TarMember):
        """The current member's data (read it before moving to the next member)."""
        return self

    def read(self, n: int = -1) -> bytes:
        n = self.remaining if n < 0 else min(n, self.remaining)
        data = self._take(n)
        if len(data) < n:
            raise tarfile.ReadError("archive ended inside a file")
        self.remaining -= n
        return data


def open_tar_reader(fileobj) -> TarReader:
    return TarReader(fileobj)


# --------------------------------------------------------------------------
# Framing: a tar stream inside a session's pipe


def read_exact(stream, n: int) -> bytes:
    """``n`` bytes from ``stream``; fewer only at its end."""
    data = stream.read(n)
    if data is None or len(data) == n or not data:
        return data or b""
    parts = [data]
    got = len(data)
    while got < n:
        more = stream.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class FrameWriter:
    """File-like: each write is one frame; :meth:`end` writes the end marker."""

    def __init__(self, out):
        self.out = out

    def write(self, data) -> int:
        n = len(data)
        for i in range(0, n, MAX_FRAME):
            piece = data[i : i + MAX_FRAME]
            self.out.write(len(piece).to_bytes(4, "big") + bytes(piece))
        return n

    def flush(self) -> None:
        self.out.flush()

    def end(self) -> None:
        self.out.write(b"\0\0\0\0")
        self.out.flush()


class FrameReader:
    """File-like over a framed stream; reads return b"" at the end marker."""

    def __init__(self, stream):
        self.stream, self.buf, self.ended = stream, b"", False

    def read(self, n: int = -1) -> bytes:
        if not self.buf and not self.ended:
            self._next()
        if n < 0 or n >= len(self.buf):
            data, self.buf = self.buf, b""
        else:
            data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _next(self) -> None:
        while not self.buf and not self.ended:
            head = read_exact(self.stream, 4)
            if len(head) < 4:
                raise ProtocolError("stream cut inside a frame header")
            size = int.from_bytes(head, "big")
            if size > MAX_FRAME:
                raise ProtocolError(f"frame of {size} bytes")
            if size == 0:
                self.ended = True
                return
            self.buf = read_exact(self.stream, size)
            if len(self.buf) < size:
                raise ProtocolError("stream cut inside a frame")

    def drain(self, limit: int = MAX_FRAME) -> None:
        """Skip to the end marker (a tar's end padding); at most ``limit`` bytes."""
        skipped = 0
        while not self.ended:
            skipped += len(self.read())
            if skipped > limit:
                raise ProtocolError("too much data after the end of the archive")


class FramedInput(io.RawIOBase):
    """A raw, readable stream over a framed one (:data:`FRAMED_STDIN`): it ends at the end marker."""

    def __init__(self, stream):
        super().__init__()
        self.frames = FrameReader(stream)

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        data = self.frames.read(len(buf))
        buf[: len(data)] = data
        return len(data)


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
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    # Whatever the studio's user did to the file, a bad entry only costs a re-hash.
    return {p: v for p, v in data.items() if isinstance(v, list) and len(v) == 3}


def _write_cache(path: str, known: dict) -> None:
    """Write ``known`` (path -> [size, mtime_ns, sha256]) as the cache file ``path``."""
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{secrets.token_hex(4)}"
        data = json.dumps(known, separators=(",", ":")).encode()  # json.dump writes piecemeal: slow
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        pass


def entry_row(e: dict) -> list:
    """An entry as a compact row: an exec relay is slow, every byte counts."""
    return [e["p"], e["t"], e["s"], e["m"], int(e["x"]), e["h"], e.get("l")]


def rows_to_entries(rows: list) -> list[dict]:
    return [row_to_entry(r) for r in rows]


def row_to_entry(row: list) -> dict:
    p, t, size, mtime, x, h, link = row
    e = {"p": p, "t": t, "s": size, "m": mtime, "x": bool(x), "h": h}
    if link is not None:
        e["l"] = link
    return e


# --------------------------------------------------------------------------
# Session (inside the studio)


class _Emitter:
    """Answer lines, flushed in batches: an exec relay pays per write.

    Lines lost when the agent is killed only mean the engine re-checks those
    files next time (they then match on both sides and are recorded).
    """

    def __init__(self, out):
        self.out, self.pending, self.last = out, 0, time.monotonic()

    def __call__(self, obj: dict) -> None:
        self.out.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
        self.pending += 1
        if self.pending >= 256 or time.monotonic() - self.last > 0.2:
            self.flush()

    def flush(self) -> None:
        self.out.flush()
        self.pending, self.last = 0, time.monotonic()


def resolve_root(base: str, root) -> str:
    """The folder a request's ``root`` (an absolute, normalised path) names below ``base``."""
    if not isinstance(root, str) or not root.startswith("/") or os.path.normpath(root) != root or root.startswith("//"):
        raise ProtocolError(f"invalid root {root!r}")
    if _CONTROL.search(root):
        raise ProtocolError("control character in a root")
    return base.rstrip("/") + root if root != "/" else base


class Session:
    """Answers the requests of one sync (see the module docstring)."""

    def __init__(self, base: str, stdin, stdout):
        self.base, self.stdin, self.stdout = base, stdin, stdout
        # root -> (cache file, path -> [size, mtime_ns, sha256]) for roots seen in this session
        self.caches: dict[str, tuple] = {}
        self.dirty: set[str] = set()

    def _roots(self, request: dict) -> list[str]:
        roots = request.get("roots")
        if not isinstance(roots, list):
            raise ProtocolError("request without roots")
        return [resolve_root(self.base, r) for r in roots]

    def _cache(self, root: str, cache_dir) -> tuple:
        if root not in self.caches:
            path = _cache_path(cache_dir, root)
            self.caches[root] = (path, _read_cache(path) if path else {})
        return self.caches[root]

    def write_caches(self) -> None:
        for root in sorted(self.dirty):
            path, known = self.caches[root]
            if path:
                _write_cache(path, known)
        self.dirty.clear()

    def list(self, request: dict) -> None:
        maps = []
        for root in self._roots(request):
            _, known = self._cache(root, request.get("cache"))
            result = scan(root, known, request.get("exclude", []))
            now = {e["p"]: [e["s"], e["m"], e["h"]] for e in result["entries"] if e["t"] == "f"}
            if now != known:
                known.clear()
                known.update(now)
                self.dirty.add(root)
            maps.append({"rows": [entry_row(e) for e in result["entries"]], "skipped": result["skipped"]})
        # In chunks of bounded size: the engine refuses lines over a few MiB.
        for i, m in enumerate(maps):
            for key in ("rows", "skipped"):
                batch: list = []
                size = 0
                for item in m[key]:
                    batch.append(item)
                    size += 80 + sum(len(x) for x in item if isinstance(x, str))
                    if size >= LIST_CHUNK:
                        self._line({"i": i, key: batch})
                        batch, size = [], 0
                if batch:
                    self._line({"i": i, key: batch})
        self._line({"maps": len(maps)})
        self.stdout.flush()

    def _line(self, obj: dict) -> None:
        self.stdout.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    def get(self, request: dict) -> None:
        roots = self._roots(request)
        paths = request.get("paths") or []
        out = FrameWriter(self.stdout)
        with open_tar_writer(out) as tar:
            for i, (root, names) in enumerate(zip(roots, paths)):
                known: set = set()
                for name in names:
                    try:
                        add_to_tar(tar, root, check_name(name), f"{i}/{name}", known)
                    except (Refused, OSError):
                        pass  # the receiver reports what did not arrive
        out.end()

    def apply(self, request: dict) -> None:
        roots = self._roots(request)
        emit = _Emitter(self.stdout)
        written: list[list] = [[] for _ in roots]
        # A file that could not be moved aside (a conflict) must not be overwritten.
        blocked = set()
        try:
            for i, root in enumerate(roots):
                os.makedirs(root, exist_ok=True)
                for src, dst in _nth(request.get("rename"), i):
                    try:
                        rename(root, src, dst)
                        emit({"i": i, "renamed": [src, dst]})
                    except (Refused, OSError) as exc:
                        blocked.add((i, src))
                        emit({"i": i, "refused": src, "reason": f"could not keep the studio's version: {exc}"})
                for name in _nth(request.get("delete"), i):
                    try:
                        delete(root, name)
                        emit({"i": i, "deleted": name})
                    except (Refused, OSError) as exc:
                        emit({"i": i, "refused": name, "reason": str(exc)})
            parents = [set() for _ in roots]
            stream = FrameReader(self.stdin)
            with open_tar_reader(stream) as tar:
                for member in tar:
                    try:
                        i, name = split_member(member.name, len(roots))
                    except Refused as exc:
                        emit({"i": None, "refused": member.name, "reason": str(exc)})
                        continue
                    if (i, name) in blocked:
                        emit({"i": i, "refused": name, "reason": "studio's version kept in place"})
                        continue
                    try:
                        e = write_member(roots[i], tar, member, name, parents[i])
                    except (Refused, OSError) as exc:
                        emit({"i": i, "refused": name, "reason": str(exc)})
                        continue
                    written[i].append(e)
                    emit({"i": i, "ok": entry_row(e)})
            stream.drain()
            emit({"end": True})
        finally:
            emit.flush()
            for root, entries in zip(roots, written):
                if entries:
                    _, known = self._cache(root, request.get("cache"))
                    known.update({e["p"]: [e["s"], e["m"], e["h"]] for e in entries if e["t"] == "f"})
                    self.dirty.add(root)

    def serve(self, first: bytes = b"") -> int:
        """Answer requests until the input ends; ``first`` is a request line already read."""
        handlers = {"list": self.list, "get": self.get, "apply": self.apply}
        try:
            while True:
                # Hash caches are written while the engine works on the last answer.
                self.write_caches()
                line, first = first or self.stdin.readline(), b""
                if not line:
                    return 0
                try:
                    request = json.loads(line)
                    handler = handlers[request["op"]]
                except (ValueError, KeyError, TypeError):
                    raise ProtocolError(f"unreadable request {line[:80]!r}") from None
                handler(request)
        finally:
            self.write_caches()


def _nth(lists, i: int) -> list:
    return lists[i] if isinstance(lists, list) and i < len(lists) and isinstance(lists[i], list) else []


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "session" or not argv[1].startswith("/"):
        sys.stderr.write("usage: agent session ABSOLUTE_BASE\n")
        return 2
    stdin = sys.stdin.buffer
    first = stdin.readline()
    if first == FRAMED_STDIN:
        stdin, first = io.BufferedReader(FramedInput(stdin), CHUNK), b""
    return Session(argv[1], stdin, sys.stdout.buffer).serve(first)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
