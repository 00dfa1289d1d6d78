"""Projects (issue 9 item 3): records, members and roles, and what they let a user do (no containers)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from codestudio import access
from codestudio.errors import NotFound, PermissionDenied, UsageError

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = "advanced-example"


@pytest.fixture
def as_user(monkeypatch, tmp_path):
    """``as_user(name)`` -> the Identity of that OS user; alice (the first) is the codestudio admin.

    The example template is added and granted to everybody, so only project
    membership decides what bob and carol may do.
    """
    groups: dict[str, set[str]] = {}
    monkeypatch.setattr(access, "os_groups", lambda user: groups.get(user, set()))

    def become(name: str):
        monkeypatch.setattr(access, "os_user", lambda: name)
        return access.identify()

    alice = become("alice")
    from codestudio.templates_store import add_template, grant

    folder = tmp_path / "tpl"
    shutil.copytree(REPO / "examples" / "files", folder / "files")
    shutil.copy(REPO / "examples" / "advanced.yaml", folder / "advanced.yaml")
    add_template(alice, folder / "advanced.yaml")
    grant(alice, TEMPLATE, "*")
    become.os_groups = groups
    return become


def test_a_user_cannot_create_a_studio_in_someone_elses_project(as_user):
    """The attack: any user could ``studio create`` in any project key and reach its zones."""
    from codestudio.projects import create_project
    from codestudio.runtime import studios

    bob = as_user("bob")
    create_project(bob, "BOBS")
    carol = as_user("carol")
    with pytest.raises(PermissionDenied, match="carol is not a member of project BOBS.*owner \\(bob\\)") as info:
        studios.create_studio(carol, "BOBS", "peek", TEMPLATE)
    assert info.value.exit_code == 2
    # A key nobody created is no free-for-all either.
    with pytest.raises(NotFound, match="no project 'NOBODY'.*codestudio project create NOBODY"):
        studios.create_studio(carol, "NOBODY", "peek", TEMPLATE)
    assert studios.list_studios() == []
    # The owner may; so may a codestudio admin.
    bob = as_user("bob")
    assert studios.create_studio(bob, "BOBS", "mine", TEMPLATE).owner == "bob"
    alice = as_user("alice")
    assert studios.create_studio(alice, "BOBS", "admin's", TEMPLATE).owner == "alice"
    # An admin creating for carol still needs carol to be a member.
    with pytest.raises(PermissionDenied, match="carol is not a member of project BOBS"):
        studios.create_studio(alice, "BOBS", "for carol", TEMPLATE, owner="carol")


def test_roles_users_and_groups(as_user):
    from codestudio.projects import create_project, get_project, grant, revoke, show_project
    from codestudio.runtime import studios

    bob = as_user("bob")
    create_project(bob, "P")
    carol = as_user("carol")
    with pytest.raises(PermissionDenied, match="only admins of project P"):
        grant(carol, "P", users=["carol"])
    with pytest.raises(PermissionDenied, match="carol is not a member of project P"):
        show_project(carol, "P")
    bob = as_user("bob")
    grant(bob, "P", users=["carol"])
    carol = as_user("carol")
    assert access.project_role("carol", "P") == "member"
    assert show_project(carol, "P")["your_role"] == "member"
    with pytest.raises(PermissionDenied, match="only admins of project P"):
        grant(carol, "P", users=["dave"])  # members do not manage members
    studios.create_studio(carol, "P", "carol's", TEMPLATE)
    # Groups: OS groups and state-DB groups both count; the strongest role wins.
    as_user.os_groups["dave"] = {"analysts"}
    bob = as_user("bob")
    grant(bob, "P", groups=["analysts"], role="admin")
    assert access.project_role("dave", "P") == "admin"
    alice = as_user("alice")
    access.add_member(alice, "ds", "erin")
    bob = as_user("bob")
    grant(bob, "P", groups=["ds"])
    assert access.project_role("erin", "P") == "member"
    dave = as_user("dave")
    grant(dave, "P", users=["frank"])  # a group admin manages members
    # Revoking a user who also holds a group grant says so.
    grant(dave, "P", users=["erin"], role="admin")
    [r] = revoke(dave, "P", users=["erin"])
    assert r == {"kind": "user", "name": "erin", "removed": True, "still": "member"}
    with pytest.raises(UsageError, match="bob owns project P; the owner cannot be revoked"):
        revoke(dave, "P", users=["bob"])
    with pytest.raises(UsageError, match="stays one of its admins"):
        grant(dave, "P", users=["bob"], role="member")
    with pytest.raises(UsageError, match="invalid project role"):
        grant(dave, "P", users=["x"], role="owner")
    with pytest.raises(UsageError, match="invalid user name"):
        grant(dave, "P", users=["../x"])
    members = {(m.kind, m.name): m.role for m in get_project("P").members}
    assert members == {("user", "bob"): "admin", ("user", "carol"): "member", ("group", "analysts"): "admin",
                       ("group", "ds"): "member", ("user", "frank"): "member"}


def test_revoked_member_cannot_start_and_no_longer_syncs_project_zones(as_user, fake_runtime):
    from codestudio.projects import create_project, grant, revoke
    from codestudio.runtime import studios
    from codestudio.runtime.base import PodSetSpec

    bob = as_user("bob")
    create_project(bob, "P")
    grant(bob, "P", users=["carol"])
    carol = as_user("carol")
    s = studios.create_studio(carol, "P", "work", TEMPLATE)
    plan = studios.plan_studio(s, studios.Store.default())
    full = studios.sync_studio_of(s, plan.state)
    kept, denied = studios.member_mappings(s, full, studios.Store.default())
    assert kept == full and denied == []
    bob = as_user("bob")
    revoke(bob, "P", users=["carol"])
    carol = as_user("carol")
    with pytest.raises(PermissionDenied, match="carol is not a member of project P, so may not start studios"):
        studios.start_studio(carol, s.id)
    # Checked again at every sync: a studio still running loses its project zones.
    kept, denied = studios.member_mappings(s, full, studios.Store.default())
    assert {m.zone for m in denied} == {"project-lib-versioned"}
    assert {m.zone for m in kept.mappings} == {"code_studio-versioned", "user-versioned"}
    s = studios.get_studio(s.id)
    fake_runtime.start(PodSetSpec(name=studios.pod_set_name(s), manifest=[], labels={}))  # it still runs
    studios._set_state(studios.Store.default(), s.id, studios.RUNNING)
    with pytest.raises(PermissionDenied, match="may not sync its zone project-lib-versioned"):
        studios.sync_files(carol, s.id, "both", "project-lib-versioned")


def test_project_keys_case_and_leftover_zone_files(as_user):
    from codestudio.home import data_dir
    from codestudio.projects import create_project

    bob = as_user("bob")
    create_project(bob, "Sales")
    with pytest.raises(UsageError, match="Sales already exists and differs from 'SALES' only in case"):
        create_project(bob, "SALES")
    with pytest.raises(UsageError, match="invalid project key"):
        create_project(bob, "../x")
    with pytest.raises(PermissionDenied, match="only codestudio admins may create a project for another owner"):
        create_project(bob, "Q", owner="carol")
    # Zone files left by a deleted project are not handed to whoever takes the key next.
    old = data_dir() / "zones" / "projects" / "OLD" / "project-lib-resources"
    old.mkdir(parents=True)
    (old / "secret.txt").write_text("payroll")
    with pytest.raises(PermissionDenied, match="still has zone files of a deleted project"):
        create_project(bob, "OLD")
    with pytest.raises(PermissionDenied, match="still has zone files"):
        create_project(bob, "old")
    alice = as_user("alice")
    project, adopted = create_project(alice, "OLD", owner="bob")
    assert project.owner == "bob" and adopted == [old.parent]


def test_delete_refuses_with_studios_force_deletes_them_and_zones_are_kept_or_purged(as_user, fake_runtime):
    from codestudio.projects import create_project, delete_project, grant
    from codestudio.runtime import studios
    from codestudio.sync import zone_dir

    bob = as_user("bob")
    create_project(bob, "P")
    grant(bob, "P", users=["carol"], role="admin")
    carol = as_user("carol")
    s = studios.create_studio(carol, "P", "carol's", TEMPLATE)
    lib = zone_dir("project-lib-resources", studio_id=s.id, project_key="P", user="carol")
    (lib / "data.csv").write_text("1,2\n")
    with pytest.raises(PermissionDenied, match="only the owner of project P \\(bob\\) or a codestudio admin"):
        delete_project(carol, "P", force=True)
    bob = as_user("bob")
    with pytest.raises(UsageError, match="still has 1 studio\\(s\\): carol-s; .*--force"):
        delete_project(bob, "P")
    result = delete_project(bob, "P", force=True)
    assert result["studios"] == ["carol-s"] and result["zones_kept"]
    assert studios.list_studios() == [] and (lib / "data.csv").exists()
    with pytest.raises(NotFound):
        delete_project(bob, "P")
    with pytest.raises(PermissionDenied, match="still has zone files"):
        create_project(bob, "P")
    alice = as_user("alice")
    create_project(alice, "P")
    assert delete_project(alice, "P", purge=True)["purged"]
    assert not lib.exists()
    create_project(bob := as_user("bob"), "P")  # nothing left: anybody may take the key


def test_migration_records_projects_that_studios_already_use(tmp_path):
    """A data dir from before projects: each key in use gets a record, its studios' owners are members."""
    from codestudio.store import MIGRATIONS, Store, _statements

    db = tmp_path / "state.db"
    conn = sqlite3.connect(db, isolation_level=None)
    before = next(i for i, m in enumerate(MIGRATIONS) if "CREATE TABLE projects" in m)
    for number, script in enumerate(MIGRATIONS[:before], start=1):
        for statement in _statements(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
    conn.execute("INSERT INTO admins (user) VALUES ('zed'), ('amy')")
    for sid, project, owner in (("a", "P1", "bob"), ("b", "P1", "carol"), ("c", "P1", "bob"), ("d", "P2", "dave")):
        conn.execute("INSERT INTO studios (id, project, name, owner, template_id, template_version, state, "
                     "state_since, created_at) VALUES (?, ?, ?, ?, 't', 1, 'STOPPED', 1, 1)", (sid, project, sid, owner))
    conn.close()
    store = Store(db)
    with store.connect() as c:
        projects = {r["key"]: dict(r) for r in c.execute("SELECT * FROM projects")}
        members = {(r["project"], r["name"]): r["role"] for r in c.execute("SELECT * FROM project_members")}
    assert set(projects) == {"P1", "P2"}
    assert {p["owner"] for p in projects.values()} == {"amy"} and {p["origin"] for p in projects.values()} == {"migrated"}
    assert members == {("P1", "amy"): "admin", ("P1", "bob"): "member", ("P1", "carol"): "member",
                       ("P2", "amy"): "admin", ("P2", "dave"): "member"}
    assert access.project_role("carol", "P1", store=store) == "member"
    assert access.project_role("dave", "P1", store=store) is None


def _cli(*args):
    from codestudio.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
        raise SystemExit(0)
    return info.value.code


def test_cli_project_verbs(as_user, capsys):
    as_user("bob")
    assert _cli("project", "create", "TEAM") == 0
    out = capsys.readouterr()
    assert out.out == "TEAM\n" and "created project TEAM owned by bob" in out.err
    assert _cli("project", "grant", "TEAM", "--user", "carol", "--group", "ds", "--role", "admin") == 0
    assert "user carol is admin of TEAM" in capsys.readouterr().err
    assert _cli("project", "list", "--json") == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row == {"key": "TEAM", "owner": "bob", "role": "admin", "members": 3, "studios": 0, "origin": "created"}
    assert _cli("project", "show", "TEAM", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert {(m["kind"], m["name"], m["role"]) for m in shown["members"]} == {
        ("user", "bob", "admin"), ("user", "carol", "admin"), ("group", "ds", "admin")}
    assert _cli("project", "revoke", "TEAM", "--user", "carol") == 0
    assert "user carol removed from TEAM" in capsys.readouterr().err
    assert _cli("project", "list", "--all") == 2
    assert "only codestudio admins may list every project" in capsys.readouterr().err
    as_user("carol")
    assert _cli("project", "show", "TEAM") == 2
    assert _cli("project", "list", "--json") == 0
    capsys.readouterr()
    assert _cli("project", "delete", "TEAM") == 2
    as_user("bob")
    assert _cli("project", "delete", "TEAM") == 0
    assert "project TEAM deleted" in capsys.readouterr().err
    assert _cli("project", "grant", "TEAM", "--user", "x") == 2
    assert "no project 'TEAM'" in capsys.readouterr().err


def test_a_studio_is_handed_only_to_a_member_of_its_project(as_user):
    from codestudio.projects import create_project, grant
    from codestudio.runtime import studios
    from codestudio.runtime.ownership import change_owner

    bob = as_user("bob")
    create_project(bob, "P")
    s = studios.create_studio(bob, "P", "gift", TEMPLATE)
    with pytest.raises(PermissionDenied, match="carol is not a member of project P, so may not own studios in it"):
        change_owner(bob, s.id, "carol")
    grant(bob, "P", users=["carol"])
    assert change_owner(bob, s.id, "carol").owner == "carol"


def test_revoked_member_neither_lists_nor_resolves_project_zone_conflicts(as_user, monkeypatch):
    from codestudio.projects import create_project, grant, revoke
    from codestudio.runtime import local, studios

    monkeypatch.setattr(local.podman, "container_running", lambda container: True)
    bob = as_user("bob")
    create_project(bob, "P")
    grant(bob, "P", users=["carol"])
    carol = as_user("carol")
    s = studios.create_studio(carol, "P", "work", TEMPLATE)
    store = studios.Store.default()
    with store.connect() as conn:
        for i, zone in enumerate(("project-lib-versioned", "user-versioned")):
            conn.execute(
                "INSERT INTO sync_conflicts (studio_id, mapping, zone, path, server_change, studio_change, detected_at)"
                " VALUES (?, ?, ?, ?, 'modified', 'modified', ?)",
                (s.id, f"{zone}::/home/codestudio/workspace/{zone}", zone, "a.txt", float(i)),
            )
    assert {c.zone for c in studios.studio_conflicts(carol, s.id)} == {"project-lib-versioned", "user-versioned"}
    revoke(as_user("bob"), "P", users=["carol"])
    carol = as_user("carol")
    assert [c.zone for c in studios.studio_conflicts(carol, s.id)] == ["user-versioned"]
    with pytest.raises(PermissionDenied, match="may not see the conflicts of its zone project-lib-versioned"):
        studios.studio_conflicts(carol, s.id, "project-lib-versioned")
    with pytest.raises(PermissionDenied):
        studios.studio_conflicts(carol, s.id, "project-lib-versioned", resolve=True)
    assert [c.zone for c in studios.studio_conflicts(carol, s.id, resolve=True)] == ["user-versioned"]
    with store.connect() as conn:
        left = conn.execute("SELECT zone FROM sync_conflicts WHERE resolved_at IS NULL").fetchall()
    assert [r["zone"] for r in left] == ["project-lib-versioned"]
