"""Where the editor keeps a template's files: the uploads (``.files``), the draft (``.draft``), the staged save (``.edit``).

All three live in the template's folder of the data dir, next to its stored versions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path, PurePosixPath

from codestudio.access import Identity, require_admin
from codestudio.store import Store
from codestudio.template_editing.document import EditError
from codestudio.templates_store import DRAFT_DIR

#: Largest file an upload may add to a template.
MAX_UPLOAD_BYTES = 10 << 20
FILES_DIR = ".files"
_NAME_PART_RE = re.compile(r"^[A-Za-z0-9._+@=-][A-Za-z0-9 ._+@=-]*$")


def template_root(template_id: str) -> Path:
    from codestudio.templates_store import templates_dir

    return templates_dir() / template_id


def draft_file(template_id: str) -> Path | None:
    folder = template_root(template_id) / DRAFT_DIR
    meta = folder / "draft.json"
    if not meta.is_file():
        return None
    name = json.loads(meta.read_text())["file"]
    return folder / name


def stage_files(template_id: str, text: str, name: str, latest_dir: Path) -> Path:
    """A folder holding the latest version's resources, the uploads and ``text`` as the template file."""
    root = template_root(template_id)
    stage = root / ".edit"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    for source in (latest_dir, root / FILES_DIR):
        if not source.is_dir():
            continue
        for dirpath, _dirnames, filenames in os.walk(source):
            for fname in filenames:
                src = Path(dirpath, fname)
                rel = src.relative_to(source)
                if source == latest_dir and rel.as_posix() == name:
                    continue
                dst = stage / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
    (stage / name).write_text(text, encoding="utf-8")
    return stage / name


def check_upload_name(name: str) -> str:
    """A relative file name inside the template folder, or :class:`EditError` on field ``name``."""
    if not isinstance(name, str) or not name or len(name) > 255:
        raise EditError("name", "a file name of 1 to 255 characters is needed")
    if "\\" in name or name.startswith("/") or PurePosixPath(name).is_absolute():
        raise EditError("name", f"{name!r}: an absolute name; give a name relative to the template's folder")
    parts = PurePosixPath(name).parts
    if any(p in ("..", ".") for p in parts) or ".." in name.split("/"):
        raise EditError("name", f"{name!r}: '..' and '.' are not allowed in a resource name")
    for part in parts:
        if not _NAME_PART_RE.match(part) or part.startswith((DRAFT_DIR, FILES_DIR, ".edit")):
            raise EditError("name", f"{name!r}: each part must be letters, digits, spaces or ._+@=- "
                                    "(not starting with a space)")
    return "/".join(parts)


def upload_file(who: Identity, template_id: str, name: str, data: bytes, *, store: Store | None = None) -> dict:
    """Add a file (a resource, a starter file) to the template's folder, for the blocks to name."""
    from codestudio.templates_store import get_template

    require_admin(who, "upload template files")
    get_template(template_id, store=store)
    rel = check_upload_name(name)
    if len(data) > MAX_UPLOAD_BYTES:
        raise EditError("file", f"{len(data)} bytes: files are limited to {MAX_UPLOAD_BYTES} bytes")
    files = template_root(template_id) / FILES_DIR
    target = files / rel
    if target.is_dir():
        raise EditError("name", f"{rel!r} is a folder of uploaded files")
    for parent in PurePosixPath(rel).parents:
        if str(parent) != "." and (files / parent).is_file():
            raise EditError("name", f"{rel!r}: {parent.as_posix()!r} is an uploaded file, not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.upload")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return {"name": rel, "size": len(data)}


def list_files(template_id: str, *, store: Store | None = None) -> list[dict]:
    """Files in the template's folder: those stored with the latest version and the uploads."""
    from codestudio.templates_store import get_template

    latest = get_template(template_id, store=store)
    out: dict[str, dict] = {}
    for where, root in (("stored", latest.path.parent), ("uploaded", template_root(template_id) / FILES_DIR)):
        if not root.is_dir():
            continue
        for dirpath, _dirnames, filenames in os.walk(root):
            for fname in filenames:
                p = Path(dirpath, fname)
                rel = p.relative_to(root).as_posix()
                if where == "stored" and rel == latest.path.name or fname.endswith(".upload"):
                    continue
                out[rel] = {"name": rel, "size": p.stat().st_size, "where": where}
    return sorted(out.values(), key=lambda f: f["name"])
