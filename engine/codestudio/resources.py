"""Resolving resource paths named in templates, without escaping their roots.

A resource is written relative to the template file's folder
(``${template.resources}``), or starts with ``${dku.install.dir}`` (the
engine's installation folder) or ``${dip.home}`` (the data dir). Absolute
paths are accepted only inside one of those roots. ``..``, and symlinks
(anywhere on the path, or inside a resource folder) that lead outside the
root, are refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

VARIABLES = ("${template.resources}", "${dku.install.dir}", "${dip.home}")


class ResourceError(ValueError):
    """A resource path is invalid; the message says why."""


@dataclass(frozen=True)
class Resource:
    """A resolved resource: ``path`` on disk and ``name``, its path relative to its root."""

    spec: str
    path: Path
    root: Path
    name: str

    @property
    def is_dir(self) -> bool:
        return self.path.is_dir()


class ResourceResolver:
    """Resolves resource specs against the template folder, install dir and data dir."""

    def __init__(self, template_dir: Path, install_dir: Path | None = None, data_dir: Path | None = None):
        self.roots: dict[str, Path] = {"${template.resources}": Path(template_dir).resolve()}
        if install_dir is not None:
            self.roots["${dku.install.dir}"] = Path(install_dir).resolve()
        if data_dir is not None:
            self.roots["${dip.home}"] = Path(data_dir).resolve()

    @property
    def template_dir(self) -> Path:
        return self.roots["${template.resources}"]

    def resolve(self, spec: str) -> Resource:
        """Resolve one spec to an existing file or folder inside its root."""
        if not spec or any(ord(c) < 32 or ord(c) == 127 for c in spec):
            raise ResourceError(f"{spec!r}: empty or contains a control character")
        root_var, rest = self._split(spec)
        root = self.roots.get(root_var)
        if root is None:
            raise ResourceError(f"{spec!r}: {root_var} is not available here")
        parts = Path(rest).parts
        if ".." in parts:
            raise ResourceError(f"{spec!r}: '..' is not allowed in resource paths")
        candidate = root.joinpath(*parts) if parts else root
        if not os.path.lexists(candidate):
            raise ResourceError(f"{spec!r}: no such file or folder ({candidate})")
        real = candidate.resolve()
        if not _inside(real, root):
            raise ResourceError(f"{spec!r}: resolves to {real}, outside {root_var} ({root})")
        if not real.is_dir() and not real.is_file():
            # A FIFO would hang the render, a device would be read forever.
            raise ResourceError(f"{spec!r}: not a regular file or folder (a pipe, socket or device)")
        if real.is_dir():
            for dirpath, dirnames, filenames in os.walk(real):
                for entry in dirnames + filenames:
                    p = Path(dirpath, entry)
                    if p.is_symlink() and not _inside(p.resolve(), root):
                        raise ResourceError(
                            f"{spec!r}: {p.relative_to(real)} is a symlink pointing outside {root_var}"
                        )
                    if entry in filenames and not p.is_file():
                        raise ResourceError(
                            f"{spec!r}: {p.relative_to(real)} is not a regular file (a pipe, socket or device)"
                        )
        name = real.relative_to(root).as_posix() if real != root else root.name
        return Resource(spec=spec, path=real, root=root, name=name)

    def _split(self, spec: str) -> tuple[str, str]:
        for var in VARIABLES:
            if spec == var or spec.startswith(var + "/"):
                return var, spec[len(var) :].lstrip("/")
        if "${" in spec:
            raise ResourceError(
                f"{spec!r}: unknown variable; use one of {', '.join(VARIABLES)}"
            )
        if os.path.isabs(spec):
            real = Path(spec)
            for var, root in self.roots.items():
                if _inside(Path(os.path.normpath(real)), root):
                    return var, os.path.relpath(os.path.normpath(real), root)
            raise ResourceError(
                f"{spec!r}: absolute paths must be inside the template folder, "
                "${dku.install.dir} or ${dip.home}"
            )
        return "${template.resources}", spec


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
