"""Resolving resource paths named in templates, without escaping their roots.

A resource is written relative to the template file's folder
(``${template.resources}``), or starts with ``${dku.install.dir}`` (the
engine's installation folder) or ``${dip.home}`` (the data dir). Absolute
paths are accepted only inside one of those roots.

Every component of a resource path is resolved, and so is every file and
folder below a resource folder, following directory symlinks as a copy
would: anything that really lands outside its root is refused, as are
``..``, symlink loops, FIFOs, sockets and devices. Inside the data dir only
``config/`` and ``resources/`` may be named (an allow-list: the data dir
holds the state DB with every studio's secret, the gateway config, other
people's zones), whichever way a path gets there.

The files listed when a resource is resolved are exactly the files that
render, ``template add`` and starter files read, each re-checked as it is
read (:meth:`ResourceResolver.contents`), so what was checked is what is
copied.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

VARIABLES = ("${template.resources}", "${dku.install.dir}", "${dip.home}")
#: What ``${dip.home}`` resources may name: these folders of the data dir, nothing else.
DATA_DIR_ALLOWED = ("config", "resources")
#: Files and folders below one resource folder; a symlinked folder counts each time it is reached.
MAX_ENTRIES = 10_000

#: Why the rest of the data dir is refused (top-level name -> what it is).
_DATA_DIR_PARTS = {
    "state.db": "the state DB, which holds every studio's session secret",
    "state.db-wal": "the state DB's write-ahead log, which holds every studio's session secret",
    "state.db-shm": "the state DB's shared-memory file",
    "state.db-journal": "the state DB's journal",
    "gateway": "the gateway's folder, whose config holds every studio's cookie value and link key",
    "zones": "the zones: other users' and projects' files",
    "studios": "the studios' own folders (logs, sync state)",
    "locks": "the engine's locks",
    "templates": "the stored templates",
    "builds": "build folders and logs",
    "containers": "the engine's container settings",
    "cache": "the engine's caches",
}


class ResourceError(ValueError):
    """A resource path is invalid; the message says why."""


@dataclass(frozen=True)
class Resource:
    """A resolved resource.

    ``path`` is the path as written, joined to its root (what a block names
    it by: ``path.name`` is the resource's own name); ``real`` is where it
    resolves; ``name`` is ``path`` relative to the root; ``files`` lists
    every regular file it consists of: ``(sub, real file)`` with ``sub`` the
    path below the resource as a copy would name it (``""`` for a file).
    """

    spec: str
    path: Path
    root: Path
    name: str
    real: Path
    files: tuple[tuple[str, Path], ...] = field(default=(), repr=False)

    @property
    def is_dir(self) -> bool:
        return self.real.is_dir()

    def read_files(self) -> list[tuple[str, bytes, int]]:
        """``(sub, content, mode)`` of every file, each re-checked as it is read."""
        return [(sub, *_read_checked(real, self.spec)) for sub, real in self.files]


class ResourceResolver:
    """Resolves resource specs against the template folder, install dir and data dir."""

    def __init__(self, template_dir: Path, install_dir: Path | None = None, data_dir: Path | None = None):
        self.roots: dict[str, Path] = {"${template.resources}": Path(template_dir).resolve()}
        if install_dir is not None:
            self.roots["${dku.install.dir}"] = Path(install_dir).resolve()
        self.data_dir = Path(data_dir).resolve() if data_dir is not None else None
        if self.data_dir is not None:
            self.roots["${dip.home}"] = self.data_dir
        self._resolved: dict[Path, Resource] = {}

    @property
    def template_dir(self) -> Path:
        return self.roots["${template.resources}"]

    def resolve(self, spec: str) -> Resource:
        """Resolve one spec to an existing file or folder inside its root."""
        if not spec or any(ord(c) < 32 or ord(c) == 127 for c in spec):
            raise ResourceError(f"{_q(spec)}: empty or contains a control character")
        root_var, rest = self._split(spec)
        root = self.roots.get(root_var)
        if root is None:
            raise ResourceError(f"{_q(spec)}: {root_var} is not available here")
        parts = [p for p in Path(rest).parts if p != "."]
        if ".." in parts:
            raise ResourceError(f"{_q(spec)}: '..' is not allowed in resource paths")
        lexical = root.joinpath(*parts) if parts else root
        if not os.path.lexists(lexical):
            raise ResourceError(f"{_q(spec)}: no such file or folder ({lexical})")
        real = Path(os.path.realpath(lexical))
        self._check_place(spec, root_var, root, real)
        files = tuple(self._walk(spec, root_var, root, real))
        name = lexical.relative_to(root).as_posix() if lexical != root else root.name
        resource = Resource(spec=spec, path=lexical, root=root, name=name, real=real, files=files)
        self._resolved[lexical] = resource
        return resource

    def contents(self, path: Path) -> list[tuple[str, bytes, int]]:
        """``(sub, content, mode)`` of the file or folder at ``path``, checked as when resolved.

        ``path`` is a resolved resource's ``path`` (what blocks pass on in
        ``Copy.source`` and ``Raw.resources``); a path no resource named (a
        block's own file) must stay inside itself: no symlink out of it.
        """
        path = Path(path)
        resource = self._resolved.get(path)
        if resource is None:
            real = Path(os.path.realpath(path))
            root = real if real.is_dir() else real.parent
            resource = Resource(spec=str(path), path=path, root=root, name=path.name, real=real,
                                files=tuple(self._walk(str(path), str(root), root, real)))
        return resource.read_files()

    # ------------------------------------------------------------------

    def _check_place(self, spec: str, root_var: str, root: Path, real: Path, *, shown: str | None = None) -> None:
        """Refuse ``real`` outside ``root``, or in a part of the data dir resources may not name.

        ``shown`` names the entry inside a resource folder (None: the resource itself).
        """
        subject = f"{_q(spec)}: {shown} " if shown else f"{_q(spec)} "
        if not _inside(real, root):
            raise ResourceError(f"{subject}resolves to {real}, outside {root_var} ({root})")
        problem = self._data_dir_problem(real)
        if problem:
            raise ResourceError(f"{subject}{problem}")

    def _data_dir_problem(self, real: Path) -> str | None:
        data = self.data_dir
        if data is None or not _inside(real, data):
            return None
        if any(_inside(real, data / part) for part in DATA_DIR_ALLOWED):
            return None
        # A stored template (data/templates/<id>/<version>/) reads its own files.
        stored = data / "templates"
        if (_inside(self.template_dir, stored) and len(self.template_dir.relative_to(stored).parts) >= 2
                and _inside(real, self.template_dir)):
            return None
        allowed = " and ".join(f"${{dip.home}}/{p}/" for p in DATA_DIR_ALLOWED)
        if real == data:
            what = "is the whole data dir, which holds the engine's state and every studio's secret"
        else:
            top = real.relative_to(data).parts[0]
            why = _DATA_DIR_PARTS.get(top, "part of the data dir, which holds the engine's state and secrets")
            what = f"is {real.relative_to(data).as_posix()} in the data dir ({data}): {why}"
        return f"{what}; resources may name only {allowed}"

    def _walk(self, spec: str, root_var: str, root: Path, real: Path):
        """Yield ``(sub, real file)`` below ``real``, every entry resolved and checked."""
        if real.is_file():
            yield "", real
            return
        if not real.is_dir():
            # A FIFO would hang the render, a device would be read forever.
            raise ResourceError(f"{_q(spec)}: not a regular file or folder (a pipe, socket or device)")
        count = 0
        # (real folder, its sub path, the real folders above it: a link back to one is a loop)
        stack: list[tuple[Path, str, frozenset[Path]]] = [(real, "", frozenset({real}))]
        while stack:
            folder, sub, above = stack.pop()
            try:
                names = sorted(os.listdir(folder))
            except OSError as exc:
                raise ResourceError(f"{_q(spec)}: cannot read {sub or folder}: {exc.strerror}") from None
            for name in reversed(names):
                entry_sub = f"{sub}/{name}" if sub else name
                entry = folder / name
                target = Path(os.path.realpath(entry))
                self._check_place(spec, root_var, root, target, shown=_shown_sub(spec, entry_sub))
                count += 1
                if count > MAX_ENTRIES:
                    raise ResourceError(
                        f"{_q(spec)}: more than {MAX_ENTRIES} files and folders (a symlinked folder counts each time it is reached)"
                    )
                if target.is_dir():
                    if target in above:
                        raise ResourceError(f"{_q(spec)}: {_shown_sub(spec, entry_sub)} is a symlink loop (it leads back to {target})")
                    stack.append((target, entry_sub, above | {target}))
                elif target.is_file():
                    yield entry_sub, target
                else:
                    raise ResourceError(
                        f"{_q(spec)}: {_shown_sub(spec, entry_sub)} is not a regular file (a pipe, socket or device)"
                    )

    def _split(self, spec: str) -> tuple[str, str]:
        for var in VARIABLES:
            if spec == var or spec.startswith(var + "/"):
                return var, spec[len(var) :].lstrip("/")
        if "${" in spec:
            raise ResourceError(
                f"{_q(spec)}: unknown variable; use one of {', '.join(VARIABLES)}"
            )
        if os.path.isabs(spec):
            real = Path(os.path.normpath(spec))
            # The most specific root first: the template folder may lie inside the data dir.
            for var, root in sorted(self.roots.items(), key=lambda item: -len(item[1].parts)):
                if _inside(real, root):
                    return var, os.path.relpath(real, root)
            raise ResourceError(
                f"{_q(spec)}: absolute paths must be inside the template folder, "
                "${dku.install.dir} or ${dip.home}"
            )
        return "${template.resources}", spec


def _read_checked(real: Path, spec: str) -> tuple[bytes, int]:
    """Read a listed file, refusing it if a symlink was swapped in since it was checked."""
    if os.path.realpath(real) != str(real):
        raise ResourceError(f"{_q(spec)}: {real} changed since it was checked (it now resolves elsewhere)")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ResourceError(f"{_q(spec)}: cannot read {real}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ResourceError(f"{_q(spec)}: {real} is no longer a regular file")
        return f.read(), st.st_mode


def _shown_sub(spec: str, sub: str) -> str:
    return f"{spec.rstrip('/')}/{sub}"


def _q(spec: str) -> str:
    from codestudio.text import shown

    return shown(spec, 200)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
