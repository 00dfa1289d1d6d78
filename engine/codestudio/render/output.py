"""Writing a render to a folder (``codestudio render -o DIR``): all or nothing, never over foreign files.

The marker (:data:`MARKER`) a render leaves lists what it wrote, so the next
render replaces exactly a previous render and refuses any other folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codestudio.render import Rendered

#: mtime of every file in context/ (1980-01-01, as in zip and wheels).
FIXED_MTIME = 315532800
OUTPUTS = frozenset({"Dockerfile", "context", "runner.json", "kubernetes.yaml", "nginx.conf"})
#: Written by every render: what it wrote, so the next render knows the folder is exactly that.
MARKER = ".codestudio-render.json"


def _listing(folder: Path) -> tuple[dict[str, str], list[str], list[str]]:
    """(files -> sha256, folders, other entries) below ``folder``, the marker left out; no link followed."""
    files: dict[str, str] = {}
    dirs: list[str] = []
    others: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = p.relative_to(folder).as_posix()
            if rel == MARKER:
                continue
            if p.is_symlink():
                others.append(rel)
            elif name in dirnames:
                dirs.append(rel)
            elif p.is_file():
                files[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                others.append(rel)
    return files, sorted(dirs), sorted(others)


def _check_replaceable(out_dir: Path) -> None:
    """Refuse ``out_dir`` unless it is missing, empty, or exactly what a previous render wrote."""
    from codestudio.errors import UsageError

    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise UsageError(f"{out_dir} exists and is not a folder")
    if not any(out_dir.iterdir()):
        return
    advice = "render replaces the whole folder: choose an empty or new one"
    marker = out_dir / MARKER
    try:
        if marker.is_symlink() or not marker.is_file():
            raise ValueError
        recorded = json.loads(marker.read_text(encoding="utf-8"))
        recorded_files = dict(recorded["files"])
        recorded_dirs = set(recorded["dirs"])
    except (OSError, ValueError, KeyError, TypeError):
        names = sorted(p.name for p in out_dir.iterdir())
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise UsageError(
            f"{out_dir} is not empty and not a previous render (it holds {shown} and no valid {MARKER}); {advice}"
        ) from None
    files, dirs, others = _listing(out_dir)
    problems = [f"{rel} (not a regular file or folder)" for rel in others]
    problems += [f"{rel}/ (not written by render)" for rel in dirs if rel not in recorded_dirs]
    for rel, digest in sorted(files.items()):
        if rel not in recorded_files:
            problems.append(f"{rel} (not written by render)")
        elif recorded_files[rel] != digest:
            problems.append(f"{rel} (changed since it was rendered)")
    if problems:
        shown = ", ".join(problems[:5]) + (f", and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise UsageError(f"{out_dir} is a previous render with other content: {shown}; it would be lost, so {advice}")


def write_rendered(rendered: Rendered, out_dir: Path | str) -> None:
    """Write the five outputs (and the marker) into ``out_dir``, all or nothing.

    ``out_dir`` must be missing, empty, or exactly a previous render: its
    marker (:data:`MARKER`) lists every file and folder that render wrote,
    with each file's sha256, and the folder must hold nothing else and no
    changed file. It is replaced as a whole, so any other folder is refused
    (exit 2) and left untouched. Files are written into a temporary sibling
    folder which then replaces ``out_dir``; on any error ``out_dir`` is left
    as it was.
    """
    out_dir = Path(out_dir).resolve()
    _check_replaceable(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (tmp / "Dockerfile").write_text(rendered.dockerfile, encoding="utf-8")
        (tmp / "runner.json").write_text(rendered.runner_json, encoding="utf-8")
        (tmp / "kubernetes.yaml").write_text(rendered.kubernetes_yaml, encoding="utf-8")
        (tmp / "nginx.conf").write_text(rendered.nginx_conf, encoding="utf-8")
        context = tmp / "context"
        context.mkdir()
        for rel, (data, mode) in rendered.context_files.items():
            target = context / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            os.chmod(target, mode)
        files, dirs, _ = _listing(tmp)
        (tmp / MARKER).write_text(
            json.dumps({"codestudio_render": 1, "files": files, "dirs": dirs}, indent=1, sort_keys=True) + "\n",
            encoding="utf-8",
        )
        for dirpath, dirnames, filenames in os.walk(tmp, topdown=False):
            for name in filenames + dirnames:
                os.utime(Path(dirpath, name), (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)
            os.chmod(dirpath, 0o755)
        os.utime(tmp, (FIXED_MTIME, FIXED_MTIME))
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
            os.rename(out_dir, old / "x")
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
