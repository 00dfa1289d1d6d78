"""Projects: records with an owner and members (users and groups) in two roles.

A project owns the project zones (``project-lib-versioned``,
``project-lib-resources``, ``recipes``) and the studios created in it. The
rules (documented for users in docs/studios.md, "Projects"):

- Any user may create a project; they become its owner, an ``admin`` member.
  Codestudio admins may create one for someone else (``owner=``).
- A key is refused when it differs only in case from an existing project's
  (their zone folders would be one folder on a case-insensitive file system)
  and, for everybody but codestudio admins, when zone files of a deleted
  project are still on disk under that key (they would be inherited).
- ``member`` may create and start studios in the project and sync its zones;
  ``admin`` also grants and revokes roles. The owner always stays an admin.
  A user's role is the strongest of their own grant and their groups'
  (:func:`codestudio.access.project_role`). Codestudio admins may do everything.
- Revoking takes effect at once: the user can no longer create or start
  studios there, and their running studios stop syncing the project zones
  (at stop, those files are saved to the studio's recovery folder instead of
  the zone, see :mod:`codestudio.runtime.studios`).
- Only the owner or a codestudio admin deletes a project: refused while it has
  studios unless ``force`` (which stops and deletes them); its zone files are
  kept unless ``purge``.

Project keys follow :data:`codestudio.types.PROJECT_KEY_RE`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from codestudio.access import PROJECT_ROLES, Identity, check_name, project_role, revoking
from codestudio.errors import NotFound, PermissionDenied, UsageError
from codestudio.store import Store, now
from codestudio.types import PROJECT_KEY_RE


@dataclass(frozen=True)
class Member:
    kind: str  # user | group
    name: str
    role: str  # member | admin


@dataclass(frozen=True)
class Project:
    key: str
    owner: str
    created_by: str
    created_at: float
    origin: str  # created | migrated
    members: tuple[Member, ...]


def check_key(key: str) -> str:
    if not isinstance(key, str) or not PROJECT_KEY_RE.match(key):
        raise UsageError(f"invalid project key {key!r}: letters, digits, '_' and '-', "
                         "starting with a letter or digit, at most 63 characters")
    return key


def check_role(role: str) -> str:
    if role not in PROJECT_ROLES:
        raise UsageError(f"invalid project role {role!r}: one of {', '.join(PROJECT_ROLES)}")
    return role


def zones_root(key: str) -> Path:
    """The folder holding every zone of the project (layout: :mod:`codestudio.sync.zones`)."""
    from codestudio.home import data_dir

    return data_dir() / "zones" / "projects" / check_key(key)


def _load(conn, key: str) -> Project:
    row = conn.execute("SELECT * FROM projects WHERE key = ?", (key,)).fetchone()
    if row is None:
        raise NotFound(f"no project {key!r} (see `codestudio project list`)")
    members = tuple(
        Member(r["kind"], r["name"], r["role"])
        for r in conn.execute("SELECT kind, name, role FROM project_members WHERE project = ? ORDER BY kind DESC, name",
                              (key,))
    )
    return Project(row["key"], row["owner"], row["created_by"], row["created_at"], row["origin"], members)


def get_project(key: str, *, store: Store | None = None) -> Project:
    store = store or Store.default()
    with store.connect() as conn:
        return _load(conn, key)


def _role(who: Identity, key: str, store: Store) -> str | None:
    return project_role(who.name, key, store=store)


def _require_project_admin(who: Identity, project: Project, what: str, store: Store) -> None:
    if who.is_admin or _role(who, project.key, store) == "admin":
        return
    raise PermissionDenied(
        f"only admins of project {project.key} (its owner is {project.owner}) or codestudio admins may {what}; "
        f"{who.name} is not one"
    )


def _require_visible(who: Identity, project: Project, store: Store) -> None:
    if who.is_admin or _role(who, project.key, store) is not None:
        return
    raise PermissionDenied(f"{who.name} is not a member of project {project.key}; ask its owner ({project.owner})")


# --------------------------------------------------------------------------
# Create, list, show


def _leftover_zone_folders(key: str) -> list[Path]:
    """Zone folders on disk whose name equals ``key`` ignoring case (the project record is gone)."""
    parent = zones_root(key).parent
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.name.lower() == key.lower())


def create_project(who: Identity, key: str, *, owner: str | None = None,
                   store: Store | None = None) -> tuple[Project, list[Path]]:
    """Create project ``key`` owned by ``owner`` (default: ``who``).

    Returns the project and the leftover zone folders it adopted (only a
    codestudio admin adopts; everybody else is refused).
    """
    store = store or Store.default()
    check_key(key)
    owner = owner or who.name
    check_name("user", owner)
    if owner != who.name and not who.is_admin:
        raise PermissionDenied(f"only codestudio admins may create a project for another owner ({owner})")
    with store.connect() as conn:
        clash = conn.execute("SELECT key FROM projects WHERE lower(key) = lower(?)", (key,)).fetchone()
        if clash is not None:
            raise UsageError(
                f"project {clash['key']} already exists" if clash["key"] == key else
                f"project {clash['key']} already exists and differs from {key!r} only in case; choose another key"
            )
        leftovers = _leftover_zone_folders(key)
        if leftovers and not who.is_admin:
            raise PermissionDenied(
                f"project key {key!r} still has zone files of a deleted project ({leftovers[0]}); "
                "choose another key, or ask a codestudio admin to create it (they adopt the files) or purge them"
            )
        conn.execute("INSERT INTO projects (key, owner, created_by, created_at) VALUES (?, ?, ?, ?)",
                     (key, owner, who.name, now()))
        conn.execute("INSERT INTO project_members (project, kind, name, role) VALUES (?, 'user', ?, 'admin')",
                     (key, owner))
        return _load(conn, key), leftovers


def _studio_counts(conn) -> dict[str, int]:
    return {r["project"]: r["n"] for r in conn.execute("SELECT project, COUNT(*) AS n FROM studios GROUP BY project")}


def list_projects(who: Identity, *, all_projects: bool = False, store: Store | None = None) -> list[dict]:
    """Projects where ``who`` has a role (every project with ``all_projects``: codestudio admins only)."""
    if all_projects and not who.is_admin:
        raise PermissionDenied(f"only codestudio admins may list every project (--all); {who.name} is not an admin")
    store = store or Store.default()
    with store.connect() as conn:
        keys = [r["key"] for r in conn.execute("SELECT key FROM projects ORDER BY key")]
        counts = _studio_counts(conn)
        projects = [_load(conn, k) for k in keys]
    rows = []
    for p in projects:
        role = _role(who, p.key, store)
        if role is None and not all_projects:
            continue
        rows.append({"key": p.key, "owner": p.owner, "role": role or "", "members": len(p.members),
                     "studios": counts.get(p.key, 0), "origin": p.origin})
    return rows


def show_project(who: Identity, key: str, *, store: Store | None = None) -> dict:
    """A project's record, members and studios (members and codestudio admins)."""
    store = store or Store.default()
    project = get_project(key, store=store)
    _require_visible(who, project, store)
    with store.connect() as conn:
        studios = [dict(r) for r in conn.execute(
            "SELECT id, name, owner, state FROM studios WHERE project = ? ORDER BY id", (key,))]
    return {
        "key": project.key,
        "owner": project.owner,
        "created_by": project.created_by,
        "created_at": project.created_at,
        "origin": project.origin,
        "your_role": _role(who, key, store) or ("codestudio admin" if who.is_admin else ""),
        "members": [{"kind": m.kind, "name": m.name, "role": m.role} for m in project.members],
        "studios": studios,
        "zones": str(zones_root(key)),
    }


# --------------------------------------------------------------------------
# Grant, revoke


def _targets(users, groups) -> list[tuple[str, str]]:
    targets = [("user", check_name("user", u)) for u in users] + [("group", check_name("group", g)) for g in groups]
    if not targets:
        raise UsageError("name at least one --user or --group")
    return list(dict.fromkeys(targets))


def grant(who: Identity, key: str, *, users=(), groups=(), role: str = "member",
          store: Store | None = None) -> list[dict]:
    """Give users/groups ``role`` in the project (replacing their previous role); returns what changed."""
    store = store or Store.default()
    check_role(role)
    targets = _targets(users, groups)
    project = get_project(key, store=store)
    _require_project_admin(who, project, "grant roles", store)
    changes = []
    with store.connect() as conn:
        for kind, name in targets:
            if kind == "user" and name == project.owner and role != "admin":
                raise UsageError(f"{name} owns project {key} and stays one of its admins")
            before = conn.execute("SELECT role FROM project_members WHERE project = ? AND kind = ? AND name = ?",
                                  (key, kind, name)).fetchone()
            conn.execute("INSERT INTO project_members (project, kind, name, role) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (project, kind, name) DO UPDATE SET role = excluded.role", (key, kind, name, role))
            changes.append({"kind": kind, "name": name, "role": role, "before": before["role"] if before else None})
    return changes


def revoke(who: Identity, key: str, *, users=(), groups=(), store: Store | None = None) -> list[dict]:
    """Remove users'/groups' grants; each result says whether a grant was removed and any role still held.

    A running studio of a revoked user keeps running, but from now on it may
    not sync the project's zones and cannot be started again (module docstring),
    and its owner no longer reaches it: its cookie and links are renewed and no
    new link is signed for them (:mod:`codestudio.revocation`).
    """
    store = store or Store.default()
    targets = _targets(users, groups)
    project = get_project(key, store=store)
    _require_project_admin(who, project, "revoke roles", store)
    for kind, name in targets:
        if kind == "user" and name == project.owner:
            raise UsageError(f"{name} owns project {key}; the owner cannot be revoked (delete the project instead)")
    results = []
    with store.connect(write=False) as conn:  # whose studios may lose their member: every owner here
        owners = {r["owner"] for r in conn.execute("SELECT owner FROM studios WHERE project = ?", (key,))}
    # A studio whose owner is no longer allowed here stops admitting them at once (its cookie renewed).
    with revoking(owners, store=store), store.connect() as conn:
        for kind, name in targets:
            removed = conn.execute("DELETE FROM project_members WHERE project = ? AND kind = ? AND name = ?",
                                   (key, kind, name)).rowcount > 0
            results.append({"kind": kind, "name": name, "removed": removed})
    for r in results:
        # Say so when a user keeps access through a group: revoking them did not cut them off.
        r["still"] = project_role(r["name"], key, store=store) if r["kind"] == "user" else None
    return results


# --------------------------------------------------------------------------
# Delete


def delete_project(who: Identity, key: str, *, force: bool = False, purge: bool = False,
                   store: Store | None = None) -> dict:
    """Delete the project record; ``force`` first stops and deletes its studios, ``purge`` its zone files.

    Returns {"studios": deleted studio ids, "zones": the zone folder, "purged": bool}.
    """
    from codestudio.runtime import studios as rt

    store = store or Store.default()
    project = get_project(key, store=store)
    if not (who.is_admin or who.name == project.owner):
        raise PermissionDenied(
            f"only the owner of project {key} ({project.owner}) or a codestudio admin may delete it; {who.name} may not"
        )
    with store.connect() as conn:
        ids = [r["id"] for r in conn.execute("SELECT id FROM studios WHERE project = ? ORDER BY id", (key,))]
    if ids and not force:
        raise UsageError(f"project {key} still has {len(ids)} studio(s): {', '.join(ids)}; delete them first, "
                         f"or pass --force to stop and delete them")
    deleted = rt.delete_project_studios(key, purge=purge, store=store) if ids else []
    # Webapps of the project go with it (their snapshots are copies; nothing of a zone is lost).
    from codestudio.webapps.lifecycle import delete_project_webapps

    webapps = delete_project_webapps(key, store=store)
    with store.connect() as conn:
        # Checked again in the deleting transaction: a studio created meanwhile keeps the project.
        left = [r["id"] for r in conn.execute("SELECT id FROM studios WHERE project = ?", (key,))]
        if left:
            raise UsageError(f"project {key} got new studios while it was being deleted ({', '.join(left)}); not deleted")
        conn.execute("DELETE FROM projects WHERE key = ?", (key,))
    root = zones_root(key)
    if purge:
        shutil.rmtree(root, ignore_errors=True)
    return {"studios": deleted, "webapps": webapps, "zones": str(root), "purged": purge, "zones_kept": root.exists()}


def ensure_project(who: Identity, key: str, *, store: Store | None = None) -> tuple[Project, bool]:
    """The project, created for ``who`` when it does not exist yet: (project, created). For the demo."""
    store = store or Store.default()
    try:
        return get_project(key, store=store), False
    except NotFound:
        return create_project(who, key, store=store)[0], True


__all__ = [
    "Member",
    "Project",
    "check_key",
    "check_role",
    "create_project",
    "delete_project",
    "ensure_project",
    "get_project",
    "grant",
    "list_projects",
    "revoke",
    "show_project",
    "zones_root",
]
