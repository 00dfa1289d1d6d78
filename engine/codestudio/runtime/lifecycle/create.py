"""Creating a studio: its id, its record (STOPPED) and its starter files."""

from __future__ import annotations

import re

from codestudio.access import Identity, check_name, require_project_use, require_template_use
from codestudio.errors import PermissionDenied, UsageError
from codestudio.runtime.model import STOPPED, Studio
from codestudio.runtime.records import delete_record, get_studio
from codestudio.store import Store, now
from codestudio.types import PROJECT_KEY_RE, SLUG_RE


def _slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:50].strip("-")
    return slug or "studio"


def create_studio(who: Identity, project: str, name: str, template_id: str, *, owner: str | None = None,
                  store: Store | None = None) -> Studio:
    """Create a studio (STOPPED) and write its starter files; return it."""
    from codestudio.templates_store import get_template

    store = store or Store.default()
    if not PROJECT_KEY_RE.match(project):
        raise UsageError(f"invalid project key {project!r}: letters, digits, '_' and '-', "
                         "starting with a letter or digit, at most 63 characters")
    if not name or len(name) > 100 or any(ord(c) < 32 for c in name):
        raise UsageError(f"invalid studio name {name!r}: 1-100 printable characters")
    owner = owner or who.name
    check_name("user", owner)
    if owner != who.name and not who.is_admin:
        raise PermissionDenied(f"only admins may create studios for another user ({owner})")
    stored = get_template(template_id, store=store)
    owner_identity = Identity(owner, who.is_admin if owner == who.name else False, who.os_user)
    if owner != who.name:
        from codestudio.access import is_admin

        owner_identity = Identity(owner, is_admin(owner, store=store), who.os_user)
    require_template_use(owner_identity, template_id, store=store)
    # Projects (issue 9 item 3): the owner must be a member (or a codestudio admin).
    require_project_use(owner, project, "create studios in it", admin=owner_identity.is_admin, store=store)
    # Plan first: a template that no longer renders must not leave a half-created studio.
    from codestudio.plan import plan_template

    _template, state = plan_template(stored.path)
    base = _slugify(name)
    with store.connect() as conn:
        if conn.execute("SELECT 1 FROM studios WHERE project = ? AND name = ?", (project, name)).fetchone():
            raise UsageError(f"project {project} already has a studio named {name!r}")
        if conn.execute("SELECT 1 FROM projects WHERE key = ?", (project,)).fetchone() is None:
            raise UsageError(f"project {project} was deleted meanwhile")
        studio_id, n = base, 2
        while (conn.execute("SELECT 1 FROM studios WHERE id = ?", (studio_id,)).fetchone()
               or _leftover_folders(project, studio_id)):
            studio_id = f"{base[:56]}-{n}"
            n += 1
        if not SLUG_RE.match(studio_id):
            raise UsageError(f"cannot make a studio id from {name!r}")
        t = now()
        conn.execute(
            "INSERT INTO studios (id, project, name, owner, template_id, template_version, state, state_since, "
            "ports, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '{}', ?)",
            (studio_id, project, name, owner, template_id, stored.version, STOPPED, t, t),
        )
    try:
        files = [f for _, f in state.starter_files]
        if files:
            from codestudio.sync import write_starter_files

            write_starter_files(files, studio_id=studio_id, project_key=project, user=owner)
    except BaseException:
        delete_record(store, studio_id)
        raise
    return get_studio(studio_id, store=store)


def _leftover_folders(project: str, studio_id: str) -> bool:
    """Whether a deleted studio left files under this id (recovery folder, kept zones): never reuse them."""
    from codestudio.home import data_dir

    home = data_dir()
    return (home / "studios" / studio_id).exists() or (home / "zones" / "projects" / project / "studios" / studio_id).exists()
