"""Handing a studio to another user (``PUT /api/v1/studios/<id>/owner``, as dataikuapi's ``change_owner``).

Rules: the owner or an admin may do it; the studio must not be running (its
gateway cookie and running pod belong to the old owner); the new owner must
be allowed to use the studio's template and be a member of its project. The
studio's own zones go with it;
the old owner's user zones stay theirs.
"""

from __future__ import annotations

from codestudio.access import Identity, check_name, is_admin, require_project_use, require_template_use
from codestudio.errors import PermissionDenied, UsageError
from codestudio.store import Store, now


def change_owner(who: Identity, ref: str, owner: str, *, store: Store | None = None):
    from codestudio.runtime import studios as rt

    store = store or Store.default()
    check_name("user", owner)
    studio = rt.get_studio(ref, store=store)
    if who.name != studio.owner and not who.is_admin:
        raise PermissionDenied(f"studio {studio.id} belongs to {studio.owner}; {who.name} may not change its owner")
    if owner == studio.owner:
        return studio
    owner_admin = is_admin(owner, store=store)
    require_template_use(Identity(owner, owner_admin, who.os_user), studio.template_id, store=store)
    # The new owner must be a member of the project (issue 9 item 3), as for create.
    require_project_use(owner, studio.project, "own studios in it", admin=owner_admin, store=store)
    with rt.studio_lock(studio.id):
        with store.connect() as conn:
            row = conn.execute("SELECT state FROM studios WHERE id = ?", (studio.id,)).fetchone()
            if row is None:
                return rt.get_studio(studio.id, store=store)  # raises NotFound
            if row["state"] not in (rt.STOPPED, rt.FAILED):
                raise UsageError(f"studio {studio.id} is {row['state']}; stop it before changing its owner")
            conn.execute("UPDATE studios SET owner = ?, state_since = ? WHERE id = ?", (owner, now(), studio.id))
    return rt.get_studio(studio.id, store=store)
