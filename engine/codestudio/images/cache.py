"""The download caches of template builds (``codestudio cache show|clear``).

RUN steps get each tool's cache with ``RUN --mount=type=cache,id=codestudio-<tool>``
(:mod:`codestudio.buildenv`); buildah keeps such mounts under its temporary
folder, which the builder sets to ``<data dir>/cache/build``, so the caches
are ``<data dir>/cache/build/buildah-cache*/codestudio-<tool>/``. Builds hold
:func:`cache_lock` shared while buildah runs; clearing takes it exclusively,
so a cache is never removed under a running build.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from codestudio import buildenv


def cache_folders(tool: str) -> list[Path]:
    """Where ``tool``'s cache is (buildah names its cache folder ``buildah-cache`` or ``buildah-cache-<uid>``)."""
    root = buildenv.cache_root()
    if not root.is_dir():
        return []
    return sorted(p / f"codestudio-{tool}" for p in root.glob("buildah-cache*") if (p / f"codestudio-{tool}").is_dir())


def _usage(folder: Path) -> tuple[int, int]:
    size = files = 0
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            try:
                size += os.lstat(os.path.join(dirpath, name)).st_size
                files += 1
            except OSError:
                pass
    return size, files


def show() -> list[dict]:
    """One row per tool: its cache folder(s), size in bytes and file count."""
    rows = []
    for tool in buildenv.CACHES:
        folders = cache_folders(tool)
        size = files = 0
        for folder in folders:
            s, f = _usage(folder)
            size, files = size + s, files + f
        rows.append({
            "tool": tool,
            "path": str(folders[0]) if folders else str(buildenv.cache_root() / "buildah-cache" / f"codestudio-{tool}"),
            "bytes": size,
            "size": _human(size),
            "files": files,
            "sharing": buildenv.CACHE_SHARING[tool],
        })
    return rows


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def cache_lock_path() -> Path:
    """The lock builds hold shared (buildah's own runner too, until buildah exits) and clearing holds exclusive."""
    from codestudio.home import data_dir

    return data_dir() / "locks" / "build-cache.lock"


@contextmanager
def cache_lock(*, shared: bool, waiting=None) -> Iterator[None]:
    from codestudio.locks import file_lock

    with file_lock(cache_lock_path(), shared=shared, waiting=waiting):
        yield


def clear(tools: list[str] | None = None, *, waiting=None) -> list[dict]:
    """Remove the caches of ``tools`` (default: all), after running builds end. Returns what was removed."""
    from codestudio.errors import UsageError

    tools = list(tools or buildenv.CACHES)
    unknown = [t for t in tools if t not in buildenv.CACHES]
    if unknown:
        raise UsageError(f"no download cache named {', '.join(map(repr, unknown))}: use {', '.join(buildenv.CACHES)}")
    removed = []
    with cache_lock(shared=False, waiting=waiting):
        for tool in tools:
            for folder in cache_folders(tool):
                size, files = _usage(folder)
                shutil.rmtree(folder)
                removed.append({"tool": tool, "path": str(folder), "bytes": size, "files": files})
    return removed
