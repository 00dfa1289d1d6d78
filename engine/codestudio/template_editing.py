"""The template editor's engine service: a stored template as a document, drafts, saves, uploads.

The YAML file stays the source of truth. The web editor opens a template as
a JSON document (its header fields and blocks), and a save applies the
edited document to the stored YAML as a minimal change with a round-trip
YAML library (ruamel.yaml): keys keep their order, comments stay, untouched
blocks and values keep their text. The result is validated with the
engine's own validation (:func:`codestudio.template.load_template` and
:func:`codestudio.plan.apply_blocks`) and stored exactly as
``codestudio template add`` stores a file (a new version when it changed).

A save whose template has problems is kept as the template's **draft**
(``<data dir>/templates/<id>/.draft/``) with the problems, each located at
its block and field; a template with a draft cannot be built until a valid
save replaces the draft by a new version.

Concurrent edits: every open answers a **revision** (a digest of the latest
version and the draft); a save names the revision it was made from and is
refused with :class:`Conflict` ("changed since you opened it") when the
template changed since, so nothing is overwritten unseen.

Uploads (resources, starter files) go to ``<data dir>/templates/<id>/.files/``
and are part of every later save, under the relative name they were uploaded
as; ``..``, absolute names and files above :data:`MAX_UPLOAD_BYTES` are refused.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from codestudio.access import Identity, require_admin
from codestudio.errors import PluginError, TemplateError, UsageError
from codestudio.store import Store, now
from codestudio.templates_store import DRAFT_DIR
from codestudio.types import SLUG_RE

#: Largest file an upload may add to a template.
MAX_UPLOAD_BYTES = 10 << 20
#: Header fields the editor edits (permissions are grants, edited in the General tab).
HEADER_FIELDS = ("label", "description", "base_image")
#: The project's own block distributions, grouped as docs/blocks.md ("standard") and docs/templates.md ("advanced") do.
STANDARD_DISTRIBUTIONS = frozenset({
    "codestudio-codeenv", "codestudio-jupyterlab", "codestudio-vscode", "codestudio-rstudio", "codestudio-streamlit",
    "codestudio-gradio", "codestudio-dash", "codestudio-voila",
})
FILES_DIR = ".files"
_NAME_PART_RE = re.compile(r"^[A-Za-z0-9._+@=-][A-Za-z0-9 ._+@=-]*$")
_BLOCK_RE = re.compile(r"blocks\[(\d+)\]")


class Conflict(UsageError):
    """The template changed since the editor opened it (another tab, the CLI)."""


class EditError(UsageError):
    """Bad editor input; ``field`` names the request field."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class AlreadyExists(EditError):
    """A create for a template id that exists (HTTP 409), also when two creates race."""


def _root(template_id: str) -> Path:
    from codestudio.templates_store import templates_dir

    return templates_dir() / template_id


def _draft_file(template_id: str) -> Path | None:
    folder = _root(template_id) / DRAFT_DIR
    meta = folder / "draft.json"
    if not meta.is_file():
        return None
    name = json.loads(meta.read_text())["file"]
    return folder / name


def _draft_meta(template_id: str) -> dict | None:
    from codestudio.templates_store import draft_info

    return draft_info(template_id)


def revision(template_id: str, *, store: Store | None = None) -> str:
    """The digest a save must name: changes with every new version and every draft save."""
    from codestudio.templates_store import get_template

    latest = get_template(template_id, store=store)
    draft = _draft_file(template_id)
    h = hashlib.sha256(f"{latest.version}\0{latest.digest}\0".encode())
    if draft is not None and draft.is_file():
        h.update(draft.read_bytes())
    return h.hexdigest()[:24]


# ---------------------------------------------------------------------- YAML round trip


def _yaml(text: str):
    """A round-trip loader/dumper whose indentation follows the document's own."""
    from ruamel.yaml import YAML
    from ruamel.yaml.util import load_yaml_guess_indent

    _, sequence, offset = load_yaml_guess_indent(text) if text.strip() else (None, None, None)
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 1 << 16  # never re-wrap long lines
    offset = offset or 0
    # A "---" starting the document is kept.
    first = next((line for line in text.splitlines() if line.strip() and not line.startswith("#")), "")
    y.explicit_start = first.startswith("---")
    y.indent(mapping=_mapping_indent(text), sequence=max(sequence or 2, offset + 2), offset=offset)
    return y


def _mapping_indent(text: str) -> int:
    """The indentation of the first nested mapping (ruamel guesses only the sequences'); 2 when there is none."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for line, following in zip(lines, lines[1:]):
        if re.match(r"^[A-Za-z_][\w-]*:\s*(#.*)?$", line):
            stripped = following.lstrip()
            if not stripped.startswith("-"):
                return len(following) - len(stripped) or 2
    return 2


def _plain(value: Any) -> Any:
    """ruamel's node types -> plain JSON-like values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return str(value)  # dates and other YAML scalars: their text


def _same(a: Any, b: Any) -> bool:
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b if not (isinstance(a, (int, float)) and isinstance(b, (int, float))) else a == b


def _node(value: Any) -> Any:
    """A new value as ruamel nodes: multi-line strings as literal blocks (``|``)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

    if isinstance(value, dict):
        m = CommentedMap()
        for k, v in value.items():
            m[k] = _node(v)
        return m
    if isinstance(value, list):
        return CommentedSeq([_node(v) for v in value])
    if isinstance(value, str) and _needs_escapes(value):
        return DoubleQuotedScalarString(value)
    if isinstance(value, str) and "\n" in value:
        return LiteralScalarString(value)
    return value


def _needs_escapes(text: str) -> bool:
    """Characters a plain or block scalar would not carry as they are (YAML reads NEL, LS, PS as line breaks)."""
    import unicodedata

    return any(c != "\n" and unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs") for c in text)


def _merge(old: Any, new: Any) -> Any:
    """``new`` applied to ``old`` keeping every part of ``old`` that did not change."""
    from ruamel.yaml.scalarstring import (DoubleQuotedScalarString, LiteralScalarString, FoldedScalarString,
                                          SingleQuotedScalarString)

    if _same(_plain(old), new):
        return old
    if isinstance(old, dict) and isinstance(new, dict):
        _update_map(old, new)
        return old
    if isinstance(old, list) and isinstance(new, list):
        for i in range(min(len(old), len(new))):
            old[i] = _merge(old[i], new[i])
        del old[len(new):]
        for extra in new[len(old):]:
            old.append(_node(extra))
        return old
    if isinstance(new, str) and not _needs_escapes(new):
        for style in (LiteralScalarString, FoldedScalarString, DoubleQuotedScalarString, SingleQuotedScalarString):
            if isinstance(old, style):
                return style(new)
    return _node(new)


def _update_map(old: dict, new: dict) -> None:
    for key in [k for k in old if k not in new]:
        del old[key]
    for key, value in new.items():
        old[key] = _merge(old[key], value) if key in old else _node(value)


def apply_document(text: str, document: dict, origins: list[int | None] | None = None) -> str:
    """The stored YAML ``text`` with the editor's ``document`` applied as a minimal change.

    ``document`` holds the header fields (:data:`HEADER_FIELDS`, ``None`` or
    ``""`` removes one) and ``blocks``; ``origins[i]`` is the index block
    ``i`` had in ``text`` (``None`` for a new block), so a moved, duplicated
    or edited block keeps its comments and the text of what did not change.
    Returns ``text`` itself when nothing changed.
    """
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    y = _yaml(text)
    doc = y.load(text) if text.strip() else None
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, dict):
        raise EditError("document", "the stored template is not a YAML mapping; upload a fixed file instead")
    before = _plain(doc)
    for key in HEADER_FIELDS:
        value = document.get(key)
        if value is None or value == "":
            doc.pop(key, None)
        elif key in doc:
            doc[key] = _merge(doc[key], value)
        else:
            _insert_header(doc, key, value)
    blocks = document.get("blocks", [])
    old_blocks = doc.get("blocks")
    old_list = old_blocks if isinstance(old_blocks, list) else []
    origins = origins if origins is not None else [None] * len(blocks)
    used: set[int] = set()
    items = []
    for block, origin in zip(blocks, origins):
        if origin is not None and 0 <= origin < len(old_list) and isinstance(old_list[origin], dict):
            node = old_list[origin]
            if origin in used:  # a duplicate: a copy of the original, comments included
                node = copy.deepcopy(node)
            used.add(origin)
            items.append(_merge(node, block))
        else:
            items.append(_node(block))
    if not _same([_plain(i) for i in items], _plain(old_list)) or len(items) != len(old_list):
        if isinstance(old_blocks, CommentedSeq):
            if [id(i) for i in items] != [id(i) for i in old_list]:
                old_blocks.ca.items.clear()  # comments after moved items would land on other blocks
            old_blocks[:] = items
        else:
            doc["blocks"] = CommentedSeq(items)
    if _same(_plain(doc), before):
        return text
    out = io.StringIO()
    y.dump(doc, out)
    return out.getvalue()


def _insert_header(doc: dict, key: str, value: Any) -> None:
    """A new header field goes after the ones before it in the usual order (id, label, ...)."""
    order = ("id", "label", "description", "base_image", "permissions", "blocks")
    position = 0
    for i, existing in enumerate(doc):
        if existing in order and order.index(existing) < order.index(key):
            position = i + 1
    doc.insert(position, key, _node(value))


def document_of(text: str) -> tuple[dict, list[int]]:
    """The editor's view of a template's YAML text: (document, origins)."""
    from codestudio.template import parse_yaml

    data, _lines = parse_yaml(text, "template")
    if not isinstance(data, dict):
        data = {}
    doc = {k: data.get(k) for k in ("id", *HEADER_FIELDS)}
    blocks = data.get("blocks") if isinstance(data.get("blocks"), list) else []
    doc["blocks"] = [json.loads(json.dumps(b, default=str)) for b in blocks]
    return doc, list(range(len(blocks)))


# ---------------------------------------------------------------------- validation


def problems_of(path: Path) -> list[dict]:
    """Every problem of the template file at ``path`` (header, blocks, plan), located; [] when valid."""
    from codestudio.home import data_dir, install_dir
    from codestudio.plan import apply_blocks
    from codestudio.plugins import load_plugins
    from codestudio.resources import ResourceResolver
    from codestudio.template import load_template

    blocks = load_plugins()
    try:
        template = load_template(path, blocks)
        apply_blocks(template, blocks, ResourceResolver(template.folder, install_dir(), data_dir()))
    except TemplateError as exc:
        return [_clean(d, str(path)) for d in exc.details]
    except PluginError as exc:  # a block's hook failed: named at its block
        m = _BLOCK_RE.search(str(exc))
        return [{"block": int(m.group(1)) if m else None, "type": None, "field": None, "line": None, "message": str(exc)}]
    return []


def _clean(detail: dict, path: str) -> dict:
    d = dict(detail)
    d["message"] = d["message"].replace(path, "template")
    return d


# ---------------------------------------------------------------------- open, create, save


def open_template(template_id: str, *, store: Store | None = None) -> dict:
    """What the editor shows: the draft if there is one, else the latest version."""
    from codestudio.templates_store import get_template

    latest = get_template(template_id, store=store)
    draft = _draft_file(template_id)
    meta = _draft_meta(template_id) if draft is not None else None
    text = (draft if draft is not None else latest.path).read_text(encoding="utf-8")
    document, origins = document_of(text)
    return {
        "id": template_id,
        "version": latest.version,
        "draft": meta,
        "revision": revision(template_id, store=store),
        "document": document,
        "origins": origins,
        "yaml": text,
        "problems": meta["problems"] if meta else [],
        "files": list_files(template_id, store=store),
    }


def create_template(who: Identity, template_id: str, *, label: str | None = None, description: str | None = None,
                    base_image: str | None = None, store: Store | None = None):
    """A new template with no blocks (version 1), as if its file had been added."""
    from codestudio.errors import NotFound
    from codestudio.templates_store import add_template, edit_lock, get_template

    require_admin(who, "create templates")
    if not isinstance(template_id, str) or not SLUG_RE.match(template_id):
        raise EditError("id", f"{template_id!r} is not a template id: lowercase letters, digits and '-', "
                              "starting with a letter or digit, at most 63 characters")
    text = apply_document(f"id: {template_id}\n", {"label": label, "description": description, "base_image": base_image,
                                                    "blocks": []})
    if "blocks" not in text:
        text += "blocks: []\n"
    work = Path(tempfile.mkdtemp(prefix=".create-"))
    try:
        path = work / "template.yaml"
        path.write_text(text, encoding="utf-8")
        problems = problems_of(path)
        if problems:
            raise TemplateError("template", [p["message"] for p in problems], problems)
        # The existence check and the add are one step under the edit lock: of two creates of one id,
        # the second is refused instead of becoming version 2.
        with edit_lock(template_id):
            try:
                get_template(template_id, store=store)
            except NotFound:
                pass
            else:
                raise AlreadyExists("id", f"template {template_id!r} already exists")
            stored, _new = add_template(who, path, store=store, edit_locked=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return stored


def _stage(template_id: str, text: str, name: str, latest_dir: Path) -> Path:
    """A folder holding the latest version's resources, the uploads and ``text`` as the template file."""
    root = _root(template_id)
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


def save_template(who: Identity, template_id: str, document: dict, *, origins: list[int | None] | None,
                  revision_seen: str, store: Store | None = None) -> dict:
    """Apply ``document`` to the stored YAML, validate, and store a version (valid) or the draft (problems).

    Refused with :class:`Conflict` when ``revision_seen`` is not the current
    revision; nothing is stored then.
    """
    from codestudio.templates_store import add_template, edit_lock, get_template

    require_admin(who, "edit templates")
    _check_document(template_id, document, origins)
    with edit_lock(template_id):
        latest = get_template(template_id, store=store)
        current = revision(template_id, store=store)
        if revision_seen != current:
            raise Conflict(
                f"template {template_id!r} changed since you opened it (saved from another tab or the CLI); "
                "your edits are still in this page: reload to see the other change, then apply yours again"
            )
        draft = _draft_file(template_id)
        base_text = (draft if draft is not None else latest.path).read_text(encoding="utf-8")
        text = apply_document(base_text, document, origins)
        name = latest.path.name
        path = _stage(template_id, text, name, latest.path.parent)
        try:
            problems = [_clean(p, str(path)) for p in problems_of(path)]
            if problems:
                _write_draft(template_id, name, text, problems, who, latest.version)
                return {"saved": "draft", "version": latest.version, "new_version": False, "problems": problems,
                        "revision": revision(template_id, store=store), "yaml": text}
            stored, new = add_template(who, path, store=store, edit_locked=True)
            shutil.rmtree(_root(template_id) / DRAFT_DIR, ignore_errors=True)
        finally:
            shutil.rmtree(path.parent, ignore_errors=True)
        return {"saved": "version", "version": stored.version, "new_version": new, "problems": [],
                "revision": revision(template_id, store=store), "yaml": stored.path.read_text(encoding="utf-8")}


def _check_document(template_id: str, document: Any, origins: Any) -> None:
    if not isinstance(document, dict):
        raise EditError("document", "must be an object with the template's fields and blocks")
    if document.get("id", template_id) != template_id:
        raise EditError("document.id", f"a template's id cannot change (it is {template_id!r})")
    for key in document:
        if key not in ("id", "blocks", *HEADER_FIELDS):
            raise EditError(f"document.{key}", "not a field the editor saves (grants are changed in the General tab)")
    for key in HEADER_FIELDS:
        if document.get(key) is not None and not isinstance(document[key], str):
            raise EditError(f"document.{key}", "must be a string")
    blocks = document.get("blocks", [])
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise EditError("document.blocks", "must be a list of blocks, each an object with a 'type'")
    if origins is not None:
        if not isinstance(origins, list) or len(origins) != len(blocks) or not all(
                o is None or (isinstance(o, int) and not isinstance(o, bool) and o >= 0) for o in origins):
            raise EditError("origins", "must list, for each block, its index when the template was opened (or null)")


def _write_draft(template_id: str, name: str, text: str, problems: list[dict], who: Identity, base_version: int) -> None:
    folder = _root(template_id) / DRAFT_DIR
    tmp = Path(tempfile.mkdtemp(prefix=".draft-", dir=_root(template_id)))
    (tmp / name).write_text(text, encoding="utf-8")
    (tmp / "draft.json").write_text(json.dumps({"file": name, "problems": problems, "saved_by": who.name,
                                                "saved_at": now(), "base_version": base_version}))
    if folder.exists():
        shutil.rmtree(folder)
    os.rename(tmp, folder)


def discard_draft(who: Identity, template_id: str, *, store: Store | None = None) -> bool:
    from codestudio.templates_store import get_template

    require_admin(who, "edit templates")
    get_template(template_id, store=store)
    folder = _root(template_id) / DRAFT_DIR
    existed = folder.exists()
    shutil.rmtree(folder, ignore_errors=True)
    return existed


def stored_text(template_id: str, *, version: int | None = None, draft: bool = False,
                store: Store | None = None) -> tuple[str, bytes]:
    """(file name, exact bytes) of a stored version, or of the draft."""
    from codestudio.errors import NotFound
    from codestudio.templates_store import get_template

    if draft:
        path = _draft_file(template_id)
        get_template(template_id, store=store)
        if path is None:
            raise NotFound(f"template {template_id!r} has no draft")
        return path.name, path.read_bytes()
    stored = get_template(template_id, version, store=store)
    return stored.path.name, stored.path.read_bytes()


# ---------------------------------------------------------------------- uploads


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
    files = _root(template_id) / FILES_DIR
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
    for where, root in (("stored", latest.path.parent), ("uploaded", _root(template_id) / FILES_DIR)):
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


# ---------------------------------------------------------------------- block types, build results


def block_types() -> list[dict]:
    """Every installed block type for "Add a block": summary, distribution, group, parameter schema."""
    from codestudio.plugins import load_plugins

    blocks = load_plugins()
    out = []
    for block_type in blocks.types():
        plugin = blocks.by_type[block_type]
        schema = plugin.Params.model_json_schema()
        dist = plugin.distribution or ""
        group = "advanced" if dist == "codestudio-advanced" else "standard" if dist in STANDARD_DISTRIBUTIONS else "other"
        out.append({"type": block_type, "summary": plugin.summary, "distribution": dist, "version": plugin.version,
                    "group": group, "schema": schema})
    return out


def reused_blocks(template_id: str, result: dict, *, store: Store | None = None) -> list[dict]:
    """For a build result: each block and whether its image layers came from the cache."""
    from codestudio.plugins import load_plugins
    from codestudio.render import build_dockerfile, runner_json
    from codestudio.plan import apply_blocks
    from codestudio.template import load_template
    from codestudio.templates_store import get_template

    stored = get_template(template_id, store=store)
    blocks = load_plugins()
    template = load_template(stored.path, blocks)
    state = apply_blocks(template, blocks)
    _text, _files, steps = build_dockerfile(template, state, runner_json(template, state))
    cached = set(result.get("cached_steps") or [])
    skipped = result.get("outcome") == "skipped"
    out = []
    for block in template.blocks:
        numbers = [s.number for s in steps if s.block_index == block.index]
        out.append({"block": block.index, "type": block.type, "steps": len(numbers),
                    "reused": bool(numbers) and (skipped or all(n in cached for n in numbers))})
    return out
