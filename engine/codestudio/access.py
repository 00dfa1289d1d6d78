"""Who acts, and what they may do: identity, admins, groups, permission checks.

Rules (documented for users in docs/studios.md):

- The acting user is the OS user running the CLI. ``--user NAME`` (or
  ``CODESTUDIO_USER``) names someone else; only admins may act for others.
- ``root`` is always an admin. On a fresh data dir (no admin recorded yet)
  the first OS user that runs a command there is recorded as its first
  admin, so a single-user install needs no set-up.
- A user's groups are the memberships kept in the state DB
  (``codestudio admin group add``), the groups a trusted SSO proxy last sent
  for them (``codestudio server --auth proxy``), plus the user's OS groups
  (when the user exists on this machine).
- A user may create a studio from a template when they are an admin, the
  template is granted to everybody (``*``), or it is granted to one of
  their groups.
- A webapp is viewed by whom its share admits (:func:`may_view_webapp`): ``public``
  anybody; otherwise, among users who are not disabled, its owner and admins,
  plus for ``users`` everybody, for ``group:G`` the members of G. A studio is
  opened by its owner only, while not disabled and allowed in its project
  (:func:`may_open_studio`). A change that takes someone out of those
  audiences renews what they lost (:mod:`codestudio.revocation`).
- A user's role in a project (``member`` or ``admin``) is the highest role
  granted to them or to one of their groups (:func:`project_role`). Creating,
  starting and syncing a studio's project zones need the studio owner to hold
  a role then (or to be a codestudio admin); the records themselves are
  managed by :mod:`codestudio.projects`.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from codestudio.errors import NotFound, PermissionDenied, UsageError
from codestudio.store import Store

#: User and group names: they become folder names, git authors and env values.
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._@-]{0,63}$")
EVERYBODY = "*"
#: Project roles, weakest first: a member uses the project, an admin also manages its members.
PROJECT_ROLES = ("member", "admin")


def check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value) or value in (".", ".."):
        raise UsageError(f"invalid {kind} name {value!r}: letters, digits, '.', '_', '-', '@' (at most 64)")
    return value


def os_user() -> str:
    """The OS user running this process."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid{os.geteuid()}"


@dataclass(frozen=True)
class Identity:
    """The user a command acts as."""

    name: str
    is_admin: bool
    os_user: str

    @property
    def impersonated(self) -> bool:
        return self.name != self.os_user


def _bootstrap(conn, user: str) -> None:
    if conn.execute("SELECT 1 FROM admins LIMIT 1").fetchone() is None:
        conn.execute("INSERT OR IGNORE INTO admins (user) VALUES (?)", (user,))


#: Names that are admins whatever the state DB says (the engine's superusers). A trusted SSO
#: proxy may never sign them in (server/auth.py): a web user is never the host's root.
SUPERUSERS = frozenset({"root"})

# Whether OS groups count (groups_of). `codestudio server` in proxy mode turns them off: its
# users are SSO identities, and a host account of the same name must not lend them its groups.
_use_os_groups = True


def use_os_groups(enabled: bool) -> None:
    """Count (or not) the OS groups of a same-named host account in :func:`groups_of` (this process)."""
    global _use_os_groups
    _use_os_groups = bool(enabled)


def is_admin(user: str, *, store: Store | None = None) -> bool:
    if user in SUPERUSERS:
        return True
    store = store or Store.default()
    with store.connect() as conn:
        return conn.execute("SELECT 1 FROM admins WHERE user = ?", (user,)).fetchone() is not None


def identify(requested: str | None = None, *, store: Store | None = None) -> Identity:
    """The acting identity; ``requested`` is ``--user`` (None: the OS user).

    Records the OS user as the first admin of a fresh data dir. Raises
    :class:`PermissionDenied` when a non-admin asks to act as someone else.
    """
    store = store or Store.default()
    me = os_user()
    with store.connect() as conn:
        _bootstrap(conn, me)
    me_admin = is_admin(me, store=store)
    if requested is None or requested == me:
        return Identity(me, me_admin, me)
    check_name("user", requested)
    if not me_admin:
        raise PermissionDenied(f"only admins may act as another user (--user {requested}); you are {me}")
    return Identity(requested, is_admin(requested, store=store), me)


def require_admin(who: Identity, what: str) -> None:
    if not who.is_admin:
        raise PermissionDenied(f"only admins may {what}; {who.name} is not an admin (see `codestudio admin list`)")


# --------------------------------------------------------------------------
# Groups


def os_groups(user: str) -> set[str]:
    """The user's OS groups (primary and supplementary); empty if no such OS user."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return set()
    names = set()
    for gid in os.getgrouplist(user, entry.pw_gid):
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return names


def db_groups(user: str, *, store: Store | None = None) -> set[str]:
    """Memberships in the state DB: recorded by admins, or last sent by a trusted SSO proxy (the server's proxy mode)."""
    store = store or Store.default()
    with store.connect() as conn:
        return {r["grp"] for r in conn.execute(
            "SELECT grp FROM group_members WHERE user = ? UNION SELECT grp FROM sso_groups WHERE user = ?", (user, user))}


def groups_of(user: str, *, store: Store | None = None) -> set[str]:
    """Every group ``user`` is in: the state DB's memberships and the OS groups (unless turned off)."""
    return db_groups(user, store=store) | (os_groups(user) if _use_os_groups else set())


def is_disabled(user: str, *, store: Store | None = None) -> bool:
    """Whether an admin disabled ``user`` (``codestudio login --user U --disable``)."""
    store = store or Store.default()
    with store.connect() as conn:
        return conn.execute("SELECT 1 FROM disabled_users WHERE user = ?", (user,)).fetchone() is not None


def may_view_webapp(user: str, owner: str, share: str, *, admin: bool | None = None,
                    store: Store | None = None) -> bool:
    """Whether ``user`` may view a webapp of ``owner`` shared as ``share`` (docs/webapps.md, "Sharing")."""
    from codestudio.gateway.webapps import SHARE_PUBLIC, SHARE_USERS, parse_share, share_group

    store = store or Store.default()
    share = parse_share(share)
    if share == SHARE_PUBLIC:
        return True
    if is_disabled(user, store=store):
        return False  # owners and admins too: a disabled user gets no new link (docs/security.md)
    if user == owner or (admin if admin is not None else is_admin(user, store=store)):
        return True
    if share == SHARE_USERS:
        return True
    group = share_group(share)
    return group is not None and group in groups_of(user, store=store)


def may_manage_webapp(user: str, owner: str, *, store: Store | None = None) -> bool:
    """Whether ``user`` may have a webapp's owner/admin-only links (a replica's backend prefix): its
    ``owner`` or an admin (read from the store now), and not disabled. An audience of its own in
    :func:`reachable`, whatever the share (``public`` too: its replicas' prefixes are not public)."""
    store = store or Store.default()
    return not is_disabled(user, store=store) and (user == owner or is_admin(user, store=store))


def may_open_studio(owner: str, project: str, *, store: Store | None = None) -> bool:
    """Whether a studio's ``owner`` may reach it through the gateway now (get a link, keep its cookie):
    not disabled, and allowed in its ``project`` (:func:`may_use_project`)."""
    store = store or Store.default()
    return not is_disabled(owner, store=store) and may_use_project(owner, project, store=store)


#: Studio states whose gateway routes exist (the ones a cookie can open).
_SERVED_STUDIOS = ("STARTING", "RUNNING")


def reachable(users, *, store: Store) -> set[tuple[str, str, str]]:
    """What each of ``users`` may open through the gateway now: ``(user, "studio", id)`` for their
    served studios, ``(user, "webapp", "PROJECT/ID")`` for the non-public webapps they may view,
    ``(user, "webapp-manage", "PROJECT/ID")`` for the webapps whose per-replica (backend) cookie
    and links they may have (:func:`may_manage_webapp`, public ones too)."""
    from codestudio.gateway.webapps import SHARE_PUBLIC

    users = set(users)
    if not users:
        return set()
    with store.connect(write=False) as conn:
        marks = ", ".join("?" * len(_SERVED_STUDIOS))
        studios = conn.execute(f"SELECT id, project, owner FROM studios WHERE state IN ({marks})",
                               _SERVED_STUDIOS).fetchall()
        webapps = conn.execute("SELECT project, id, owner, share FROM webapps").fetchall()
    out: set[tuple[str, str, str]] = set()
    for row in studios:
        if row["owner"] in users and may_open_studio(row["owner"], row["project"], store=store):
            out.add((row["owner"], "studio", row["id"]))
    for row in webapps:
        key = f"{row['project']}/{row['id']}"
        for user in users:
            # Managing (owner or admin, not disabled) is an audience of its own: it brings the
            # per-replica backend cookie and links, public webapps included.
            if may_manage_webapp(user, row["owner"], store=store):
                out.add((user, "webapp-manage", key))
            if row["share"] != SHARE_PUBLIC and may_view_webapp(user, row["owner"], row["share"], store=store):
                out.add((user, "webapp", key))  # a public one's viewers hold no cookie: nothing to end
    return out


@contextmanager
def revoking(users, *, store: Store) -> Iterator[None]:
    """Around a change that may take ``users`` out of audiences: what they could open before and
    cannot after is renewed (:func:`codestudio.revocation.renew`), so the cookies and links they
    hold stop working at once. Nothing is renewed when the change raises (it did not happen)."""
    users = set(users)
    before = reachable(users, store=store)
    yield
    lost = before - reachable(users, store=store) if before else set()
    if lost:
        from codestudio.revocation import renew

        renew(lost, store=store)


def template_grants(template_id: str, *, store: Store | None = None) -> list[str]:
    store = store or Store.default()
    with store.connect() as conn:
        return sorted(r["grp"] for r in conn.execute("SELECT grp FROM grants WHERE template_id = ?", (template_id,)))


def may_use_template(user: str, template_id: str, *, admin: bool | None = None, store: Store | None = None) -> bool:
    store = store or Store.default()
    if admin if admin is not None else is_admin(user, store=store):
        return True
    grants = set(template_grants(template_id, store=store))
    return EVERYBODY in grants or bool(grants & groups_of(user, store=store))


def require_template_use(who: Identity, template_id: str, *, store: Store | None = None) -> None:
    """Refuse (exit 2) unless ``who`` may create studios from the template."""
    store = store or Store.default()
    if may_use_template(who.name, template_id, admin=who.is_admin, store=store):
        return
    grants = template_grants(template_id, store=store)
    allowed = ", ".join(grants) if grants else "admins only"
    raise PermissionDenied(
        f"{who.name} may not create studios from template {template_id!r}: it is granted to {allowed}; "
        f"{who.name} is in {', '.join(sorted(groups_of(who.name, store=store))) or 'no group'}. "
        "Ask an admin: codestudio template grant ID --group G, or codestudio admin group add G USER"
    )


# --------------------------------------------------------------------------
# Project membership (the records: codestudio.projects)


def project_role(user: str, project: str, *, store: Store | None = None) -> str | None:
    """``user``'s role in ``project``: ``"admin"``, ``"member"`` or None (no record, or not a member).

    The strongest of the user's own grant and their groups' grants (state DB
    and OS groups). Codestudio admins are not members by this function; callers
    decide what admins may do (:func:`may_use_project`).
    """
    store = store or Store.default()
    with store.connect() as conn:
        rows = conn.execute("SELECT kind, name, role FROM project_members WHERE project = ?", (project,)).fetchall()
    if not rows:
        return None
    groups = groups_of(user, store=store) if any(r["kind"] == "group" for r in rows) else set()
    roles = {r["role"] for r in rows
             if (r["kind"] == "user" and r["name"] == user) or (r["kind"] == "group" and r["name"] in groups)}
    return next((role for role in reversed(PROJECT_ROLES) if role in roles), None)


def project_exists(project: str, *, store: Store | None = None) -> bool:
    store = store or Store.default()
    with store.connect() as conn:
        return conn.execute("SELECT 1 FROM projects WHERE key = ?", (project,)).fetchone() is not None


def may_use_project(user: str, project: str, *, admin: bool | None = None, store: Store | None = None) -> bool:
    """Whether ``user`` may have studios in ``project`` and sync its zones now: a member, or a codestudio admin."""
    store = store or Store.default()
    if not project_exists(project, store=store):
        return False
    if admin if admin is not None else is_admin(user, store=store):
        return True
    return project_role(user, project, store=store) is not None


def require_project_use(user: str, project: str, what: str, *, admin: bool | None = None,
                        store: Store | None = None) -> None:
    """Refuse (exit 2) unless ``user`` may :func:`may_use_project`; the message says who to ask."""
    store = store or Store.default()
    if may_use_project(user, project, admin=admin, store=store):
        return
    if not project_exists(project, store=store):
        raise NotFound(f"no project {project!r}, so {user} may not {what}; "
                       f"create it first: codestudio project create {project}")
    with store.connect() as conn:
        owner = conn.execute("SELECT owner FROM projects WHERE key = ?", (project,)).fetchone()["owner"]
    raise PermissionDenied(
        f"{user} is not a member of project {project}, so may not {what}; ask its owner ({owner}) or another "
        f"project admin to run: codestudio project grant {project} --user {user}"
    )


# --------------------------------------------------------------------------
# Admin commands


def add_admin(who: Identity, user: str, *, store: Store | None = None) -> bool:
    require_admin(who, "add admins")
    check_name("user", user)
    store = store or Store.default()
    with store.connect() as conn:
        return conn.execute("INSERT OR IGNORE INTO admins (user) VALUES (?)", (user,)).rowcount > 0


def remove_admin(who: Identity, user: str, *, store: Store | None = None) -> bool:
    """Remove ``user`` from the admins; what only an admin could open (others' webapps) is renewed."""
    require_admin(who, "remove admins")
    if user == "root":
        # is_admin() says yes for root whatever the table holds: "removed" would be a lie.
        raise UsageError("root is always an admin and cannot be removed")
    store = store or Store.default()
    with revoking({user}, store=store):
        with store.connect() as conn:
            others = conn.execute("SELECT COUNT(*) FROM admins WHERE user != ?", (user,)).fetchone()[0]
            if others == 0:
                raise UsageError(f"{user} is the last admin; add another admin first")
            return conn.execute("DELETE FROM admins WHERE user = ?", (user,)).rowcount > 0


def list_admins(*, store: Store | None = None) -> list[str]:
    store = store or Store.default()
    with store.connect() as conn:
        return sorted({r["user"] for r in conn.execute("SELECT user FROM admins")} | {"root"})


def add_member(who: Identity, group: str, user: str, *, store: Store | None = None) -> bool:
    require_admin(who, "manage groups")
    check_name("group", group)
    check_name("user", user)
    store = store or Store.default()
    with store.connect() as conn:
        return conn.execute("INSERT OR IGNORE INTO group_members (grp, user) VALUES (?, ?)", (group, user)).rowcount > 0


def remove_member(who: Identity, group: str, user: str, *, store: Store | None = None) -> bool:
    """Remove ``user`` from ``group``; every studio and webapp ``user`` could open only through it is
    renewed at once (:func:`revoking`): their cookies and links stop working."""
    require_admin(who, "manage groups")
    store = store or Store.default()
    with revoking({user}, store=store):
        with store.connect() as conn:
            return conn.execute("DELETE FROM group_members WHERE grp = ? AND user = ?", (group, user)).rowcount > 0


def list_members(group: str | None = None, *, store: Store | None = None) -> list[dict]:
    store = store or Store.default()
    sql, args = "SELECT grp AS \"group\", user FROM group_members", ()
    if group is not None:
        sql, args = sql + " WHERE grp = ?", (group,)
    with store.connect() as conn:
        return [dict(r) for r in conn.execute(sql + " ORDER BY grp, user", args)]
