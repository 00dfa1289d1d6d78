"""Stored templates: versioned copies of template files and their resources, and grants.

``codestudio template add FILE`` validates the template, then copies the
file and every resource it uses from the template's folder into
``<data dir>/templates/<id>/<version>/`` (same relative layout, so the
stored copy renders exactly like the original). The version is bumped only
when the stored content (file names, modes, bytes) changes: re-adding an
unchanged template returns the same version. Resources named with
``${dip.home}`` or ``${dku.install.dir}`` are not copied (they already
live in the data dir or the engine).

The first ``add`` of a template id turns the file's ``permissions`` into
grants; after that, grants change only with ``template grant|revoke``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from codestudio.access import EVERYBODY, Identity, check_name, require_admin
from codestudio.errors import NotFound, UsageError
from codestudio.resources import Resource
from codestudio.runtime.model import ACTIVE_STATES
from codestudio.store import Store, now
from codestudio.types import SLUG_RE


@dataclass(frozen=True)
class StoredTemplate:
    id: str
    version: int
    path: Path  # the stored template file
    digest: str
    source_path: str
    added_by: str
    added_at: float
    label: str | None = None
    description: str | None = None

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "version": self.version,
            "path": str(self.path),
            "digest": self.digest,
            "source_path": self.source_path,
            "added_by": self.added_by,
            "added_at": self.added_at,
            "label": self.label,
            "description": self.description,
        }


#: The web editor's draft of a template (:mod:`codestudio.template_editing`): saved with problems, never built.
DRAFT_DIR = ".draft"


def draft_info(template_id: str) -> dict | None:
    """The editor's draft of a stored template (who saved it, its problems), or None."""
    meta = templates_dir() / template_id / DRAFT_DIR / "draft.json"
    return json.loads(meta.read_text()) if meta.is_file() else None


def check_buildable(template_id: str) -> None:
    """Refuse to build a template whose draft has problems: what the admin edited is not what would be built."""
    meta = draft_info(template_id)
    if meta is None:
        return
    from codestudio.errors import TemplateError

    head = (f"template {template_id!r} has a draft saved by {meta['saved_by']} with {len(meta['problems'])} problem(s); "
            "fix them and save in the template editor (or discard the draft) before building")
    raise TemplateError(f"template {template_id}", [head] + [p["message"] for p in meta["problems"]],
                        [{"block": None, "type": None, "field": None, "line": None, "message": head}] + meta["problems"])


def templates_dir() -> Path:
    from codestudio.home import data_dir

    return data_dir() / "templates"


class _RecordingResolver:
    """Wraps a ResourceResolver and remembers every resource resolved under the template folder."""

    def __init__(self, inner):
        self._inner = inner
        self.used: dict[str, Resource] = {}

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def resolve(self, spec: str):
        resource = self._inner.resolve(spec)
        if resource.root == self._inner.template_dir:
            rel = resource.path.relative_to(resource.root).as_posix() if resource.path != resource.root else "."
            self.used[rel] = resource
        return resource


def _plan_recording(path: Path):
    from codestudio.home import data_dir, install_dir
    from codestudio.plan import apply_blocks
    from codestudio.plugins import load_plugins
    from codestudio.resources import ResourceResolver
    from codestudio.template import load_template

    blocks = load_plugins()
    template = load_template(path, blocks)
    resolver = _RecordingResolver(ResourceResolver(template.folder, install_dir(), data_dir()))
    state = apply_blocks(template, blocks, resolver)
    return template, state, resolver.used


def _copy_into(stage: Path, template_file: Path, used: dict[str, Resource]) -> None:
    """Copy the template file and exactly the files its resources were checked to hold.

    Each resource is stored under the path the template names it by, as real
    files (never symlinks), so the stored copy resolves as the original did
    and holds nothing the checks did not see.
    """
    from codestudio.errors import TemplateError
    from codestudio.resources import ResourceError

    shutil.copy2(template_file, stage / template_file.name)
    for rel, resource in sorted(used.items()):
        if rel == ".":
            raise UsageError(f"{template_file}: a resource names the whole template folder; name its files instead")
        try:
            contents = resource.read_files()
        except ResourceError as exc:
            raise TemplateError(str(template_file), [str(exc)]) from None
        for sub, data, mode in contents:
            target = stage / rel / sub if sub else stage / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            os.chmod(target, 0o755 if mode & 0o111 else 0o644)


def tree_digest(root: Path) -> str:
    """sha256 over (relative path, executable bit, content) of every file below ``root``."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath, name)
            rel = p.relative_to(root).as_posix()
            data = p.read_bytes()
            h.update(json.dumps([rel, bool(p.stat().st_mode & 0o111), len(data)]).encode())
            h.update(data)
    return h.hexdigest()


def _row_to_stored(row) -> StoredTemplate:
    meta = {}
    try:
        import yaml

        meta = yaml.safe_load(row["yaml"]) or {}
    except Exception:  # the stored text was validated on add; meta is cosmetic
        meta = {}
    stored_dir = Path(row["stored_dir"])
    name = Path(row["source_path"]).name
    return StoredTemplate(
        id=row["id"],
        version=row["version"],
        path=stored_dir / name,
        digest=row["digest"],
        source_path=row["source_path"],
        added_by=row["added_by"],
        added_at=row["added_at"],
        label=meta.get("label") if isinstance(meta, dict) else None,
        description=meta.get("description") if isinstance(meta, dict) else None,
    )


def edit_lock(template_id: str):
    """The lock every new version of ``template_id`` is stored under (the editor's save and create, ``template add``).

    The editor's revision check and its add are one step under it, so a
    ``template add`` from the CLI lands before or after a save, never between.
    """
    from codestudio.home import data_dir
    from codestudio.locks import file_lock

    return file_lock(data_dir() / "locks" / f"edit-{template_id}.lock")


def add_template(who: Identity, file: Path | str, *, store: Store | None = None,
                 edit_locked: bool = False) -> tuple[StoredTemplate, bool]:
    """Store a template file and its resources; return (stored, created_new_version).

    Takes the template's :func:`edit_lock` unless the caller holds it (``edit_locked``).
    """
    require_admin(who, "add templates")
    store = store or Store.default()
    file = Path(file)
    if not file.is_file():
        raise UsageError(f"{file}: no such template file")
    file = file.resolve()
    template, _state, used = _plan_recording(file)
    if not edit_locked:
        with edit_lock(template.id):
            return _store_version(who, file, template, used, store)
    return _store_version(who, file, template, used, store)


def _store_version(who: Identity, file: Path, template, used, store: Store) -> tuple[StoredTemplate, bool]:
    root = templates_dir() / template.id
    root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".add-", dir=root))
    try:
        _copy_into(stage, file, used)
        digest = tree_digest(stage)
        with store.connect() as conn:
            latest = conn.execute(
                "SELECT * FROM templates WHERE id = ? ORDER BY version DESC LIMIT 1", (template.id,)
            ).fetchone()
            if latest is not None and latest["digest"] == digest and Path(latest["stored_dir"]).is_dir():
                return _row_to_stored(latest), False
            version = (latest["version"] + 1) if latest is not None else 1
            target = root / str(version)
            if target.exists():  # left by an add that failed after the copy
                shutil.rmtree(target)
            os.rename(stage, target)
            conn.execute(
                "INSERT INTO templates (id, version, yaml, source_path, stored_dir, digest, added_by, added_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (template.id, version, file.read_text(encoding="utf-8"), str(file), str(target), digest, who.name, now()),
            )
            if latest is None:
                perms = template.permissions
                grants = [EVERYBODY] if perms.all else list(perms.groups)
                conn.executemany(
                    "INSERT OR IGNORE INTO grants (template_id, grp) VALUES (?, ?)",
                    [(template.id, g) for g in grants],
                )
            row = conn.execute("SELECT * FROM templates WHERE id = ? AND version = ?", (template.id, version)).fetchone()
        return _row_to_stored(row), True
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def get_template(template_id: str, version: int | None = None, *, store: Store | None = None) -> StoredTemplate:
    store = store or Store.default()
    with store.connect() as conn:
        if version is None:
            row = conn.execute(
                "SELECT * FROM templates WHERE id = ? ORDER BY version DESC LIMIT 1", (template_id,)
            ).fetchone()
        else:
            row = conn.execute("SELECT * FROM templates WHERE id = ? AND version = ?", (template_id, version)).fetchone()
    if row is None:
        what = f"template {template_id!r}" + (f" version {version}" if version is not None else "")
        raise NotFound(f"{what} is not stored; add it with `codestudio template add FILE` (see `codestudio template list`)")
    return _row_to_stored(row)


def list_templates(*, store: Store | None = None) -> list[dict]:
    """Latest version of every stored template, with its version count and grants."""
    store = store or Store.default()
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT t.* FROM templates t JOIN (SELECT id, MAX(version) AS v FROM templates GROUP BY id) m "
            "ON t.id = m.id AND t.version = m.v ORDER BY t.id"
        ).fetchall()
        grants: dict[str, list[str]] = {}
        for r in conn.execute("SELECT template_id, grp FROM grants ORDER BY grp"):
            grants.setdefault(r["template_id"], []).append(r["grp"])
        studios: dict[str, int] = {
            r["template_id"]: r["n"] for r in conn.execute("SELECT template_id, COUNT(*) AS n FROM studios GROUP BY template_id")
        }
    out = []
    for row in rows:
        st = _row_to_stored(row)
        d = st.as_dict()
        d["grants"] = grants.get(st.id, [])
        d["studios"] = studios.get(st.id, 0)
        out.append(d)
    return out


def show_template(template_id: str, *, store: Store | None = None) -> dict:
    store = store or Store.default()
    latest = get_template(template_id, store=store)
    with store.connect() as conn:
        versions = [
            {"version": r["version"], "digest": r["digest"][:16], "added_by": r["added_by"], "added_at": r["added_at"]}
            for r in conn.execute("SELECT * FROM templates WHERE id = ? ORDER BY version", (template_id,))
        ]
        grants = [r["grp"] for r in conn.execute("SELECT grp FROM grants WHERE template_id = ? ORDER BY grp", (template_id,))]
        studios = [
            f"{r['project']}/{r['id']} ({r['state']})"
            for r in conn.execute("SELECT * FROM studios WHERE template_id = ? ORDER BY project, id", (template_id,))
        ]
    out = latest.as_dict()
    out.update(versions=versions, grants=grants, studios=studios)
    return out


def remove_template(who: Identity, template_id: str, *, force: bool = False, store: Store | None = None) -> None:
    """Remove every version and grant.

    Refused while studios use it unless ``force``; refused even with ``force``
    while one of them is RUNNING, STARTING or STOPPING, since stopping it pulls its files
    through the stored template (removing it first would lose the studio's work).
    With ``force``, stopped studios keep their rows and zones; they cannot start
    again until the template is re-added.
    """
    require_admin(who, "remove templates")
    store = store or Store.default()
    get_template(template_id, store=store)
    with store.connect() as conn:
        rows = conn.execute("SELECT id, state FROM studios WHERE template_id = ? ORDER BY id", (template_id,)).fetchall()
        live = [f"{r['id']} ({r['state']})" for r in rows if r["state"] in ACTIVE_STATES]
        if live:
            raise UsageError(
                f"template {template_id!r} is used by running studio(s) {', '.join(live)}; stop them first "
                "(codestudio studio stop STUDIO), even with --force: their files are pulled back through the template"
            )
        if rows and not force:
            raise UsageError(
                f"template {template_id!r} is used by studio(s) {', '.join(r['id'] for r in rows)}; "
                "delete them first or pass --force"
            )
        conn.execute("DELETE FROM templates WHERE id = ?", (template_id,))
        conn.execute("DELETE FROM grants WHERE template_id = ?", (template_id,))
    shutil.rmtree(templates_dir() / template_id, ignore_errors=True)


def grant(who: Identity, template_id: str, group: str, *, store: Store | None = None) -> bool:
    require_admin(who, "grant templates")
    store = store or Store.default()
    get_template(template_id, store=store)
    if group != EVERYBODY:
        check_name("group", group)
    with store.connect() as conn:
        return conn.execute("INSERT OR IGNORE INTO grants (template_id, grp) VALUES (?, ?)", (template_id, group)).rowcount > 0


def revoke(who: Identity, template_id: str, group: str, *, store: Store | None = None) -> bool:
    require_admin(who, "revoke templates")
    store = store or Store.default()
    get_template(template_id, store=store)
    with store.connect() as conn:
        return conn.execute("DELETE FROM grants WHERE template_id = ? AND grp = ?", (template_id, group)).rowcount > 0


def resolve_ref(ref: str, *, store: Store | None = None) -> tuple[Path, int | None] | None:
    """A stored template id -> (stored file of its latest version, version); None if ``ref`` is not one.

    :func:`resolve_template` asks this first, so ``template build ID``
    builds the stored copy; a file path falls through to it.
    """
    if not SLUG_RE.match(ref) or Path(ref).exists():
        return None
    try:
        st = get_template(ref, store=store)
    except NotFound:
        return None
    return st.path, st.version


def resolve_template(ref: str, *, store: Store | None = None) -> tuple[Path, int | None]:
    """A template reference -> (template file, stored version or None).

    A stored template id (``codestudio template add``) builds its latest
    stored copy; anything else must be a template file.
    """
    stored = resolve_ref(ref, store=store)
    if stored is not None:
        return stored
    path = Path(ref)
    if path.is_file():
        return path, None
    if path.exists():
        raise UsageError(f"{ref}: not a template file")
    if SLUG_RE.match(ref):
        raise NotFound(f"{ref}: neither a template file nor a stored template id (see `codestudio template list`)")
    raise UsageError(f"{ref}: no such template file")


def build_template(ref: str, *, no_cache: bool = False, quiet: bool = False, store: Store | None = None):
    """``codestudio template build``: resolve ``ref`` (file or stored id), render, build.

    Returns the :class:`~codestudio.images.BuildResult`.
    """
    from codestudio.images import build_rendered
    from codestudio.render import render_template

    path, version = resolve_template(ref, store=store)
    if version is not None:  # a stored id: the editor's draft, if any, must be valid first
        check_buildable(ref)
    rendered = render_template(path)
    result = build_rendered(rendered, no_cache=no_cache, template_version=version, quiet=quiet, store=store)
    warn_memory_shortfall(path, state=rendered.state)  # the plan just made: not planned again
    return result


def warn_memory_shortfall(path: Path, *, state=None) -> str | None:
    """Say on stderr when the template's memory limit is below what its tools need (a start refuses it).

    ``state``: the template's build state if the caller has it (else it is planned).
    """
    import sys

    if state is None:
        from codestudio.plan import plan_template

        state = plan_template(path)[1]
    shortfall = state.memory_shortfall()
    if shortfall:
        print(f"warning: {path}: {shortfall}; studios of this template will not start", file=sys.stderr, flush=True)
    return shortfall
