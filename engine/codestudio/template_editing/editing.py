"""The editor's operations on a stored template: open, create, save (a version or the draft), discard, and its palette.

Every open answers a revision; a save naming another revision is refused
with :class:`Conflict`. A valid save is stored as ``codestudio template
add`` stores a file; one with problems is kept as the draft.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from codestudio.access import Identity, require_admin
from codestudio.errors import PluginError, TemplateError, UsageError
from codestudio.store import Store, now
from codestudio.template_editing.document import EditError, apply_document, check_document, document_of
from codestudio.template_editing.files import draft_file, list_files, stage_files, template_root
from codestudio.templates_store import DRAFT_DIR
from codestudio.types import SLUG_RE

#: The project's own block distributions, grouped as docs/blocks.md ("standard") and docs/templates.md ("advanced") do.
STANDARD_DISTRIBUTIONS = frozenset({
    "codestudio-codeenv", "codestudio-jupyterlab", "codestudio-vscode", "codestudio-rstudio", "codestudio-streamlit",
    "codestudio-gradio", "codestudio-dash", "codestudio-voila",
})
_BLOCK_RE = re.compile(r"blocks\[(\d+)\]")


class Conflict(UsageError):
    """The template changed since the editor opened it (another tab, the CLI)."""


class AlreadyExists(EditError):
    """A create for a template id that exists (HTTP 409), also when two creates race."""


def _draft_meta(template_id: str) -> dict | None:
    from codestudio.templates_store import draft_info

    return draft_info(template_id)


def revision(template_id: str, *, store: Store | None = None) -> str:
    """The digest a save must name: changes with every new version and every draft save."""
    from codestudio.templates_store import get_template

    latest = get_template(template_id, store=store)
    draft = draft_file(template_id)
    h = hashlib.sha256(f"{latest.version}\0{latest.digest}\0".encode())
    if draft is not None and draft.is_file():
        h.update(draft.read_bytes())
    return h.hexdigest()[:24]


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


def open_template(template_id: str, *, store: Store | None = None) -> dict:
    """What the editor shows: the draft if there is one, else the latest version."""
    from codestudio.templates_store import get_template

    latest = get_template(template_id, store=store)
    draft = draft_file(template_id)
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


def save_template(who: Identity, template_id: str, document: dict, *, origins: list[int | None] | None,
                  revision_seen: str, store: Store | None = None) -> dict:
    """Apply ``document`` to the stored YAML, validate, and store a version (valid) or the draft (problems).

    Refused with :class:`Conflict` when ``revision_seen`` is not the current
    revision; nothing is stored then.
    """
    from codestudio.templates_store import add_template, edit_lock, get_template

    require_admin(who, "edit templates")
    check_document(template_id, document, origins)
    with edit_lock(template_id):
        latest = get_template(template_id, store=store)
        current = revision(template_id, store=store)
        if revision_seen != current:
            raise Conflict(
                f"template {template_id!r} changed since you opened it (saved from another tab or the CLI); "
                "your edits are still in this page: reload to see the other change, then apply yours again"
            )
        draft = draft_file(template_id)
        base_text = (draft if draft is not None else latest.path).read_text(encoding="utf-8")
        text = apply_document(base_text, document, origins)
        name = latest.path.name
        path = stage_files(template_id, text, name, latest.path.parent)
        try:
            problems = [_clean(p, str(path)) for p in problems_of(path)]
            if problems:
                _write_draft(template_id, name, text, problems, who, latest.version)
                return {"saved": "draft", "version": latest.version, "new_version": False, "problems": problems,
                        "revision": revision(template_id, store=store), "yaml": text}
            stored, new = add_template(who, path, store=store, edit_locked=True)
            shutil.rmtree(template_root(template_id) / DRAFT_DIR, ignore_errors=True)
        finally:
            shutil.rmtree(path.parent, ignore_errors=True)
        return {"saved": "version", "version": stored.version, "new_version": new, "problems": [],
                "revision": revision(template_id, store=store), "yaml": stored.path.read_text(encoding="utf-8")}


def _write_draft(template_id: str, name: str, text: str, problems: list[dict], who: Identity, base_version: int) -> None:
    folder = template_root(template_id) / DRAFT_DIR
    tmp = Path(tempfile.mkdtemp(prefix=".draft-", dir=template_root(template_id)))
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
    folder = template_root(template_id) / DRAFT_DIR
    existed = folder.exists()
    shutil.rmtree(folder, ignore_errors=True)
    return existed


def stored_text(template_id: str, *, version: int | None = None, draft: bool = False,
                store: Store | None = None) -> tuple[str, bytes]:
    """(file name, exact bytes) of a stored version, or of the draft."""
    from codestudio.errors import NotFound
    from codestudio.templates_store import get_template

    if draft:
        path = draft_file(template_id)
        get_template(template_id, store=store)
        if path is None:
            raise NotFound(f"template {template_id!r} has no draft")
        return path.name, path.read_bytes()
    stored = get_template(template_id, version, store=store)
    return stored.path.name, stored.path.read_bytes()


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
