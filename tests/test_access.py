"""Identity, admins, groups, stored templates and grants (no containers)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from codestudio import access
from codestudio.errors import NotFound, PermissionDenied, UsageError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def as_os_user(monkeypatch):
    def set_user(name: str) -> None:
        monkeypatch.setattr(access, "os_user", lambda: name)
        monkeypatch.setattr(access, "os_groups", lambda user: set())

    return set_user


def test_first_user_of_a_fresh_data_dir_is_admin(as_os_user):
    as_os_user("alice")
    alice = access.identify()
    assert alice.is_admin and alice.name == "alice"
    as_os_user("bob")
    bob = access.identify()
    assert not bob.is_admin
    assert access.list_admins() == ["alice", "root"]


def test_only_admins_act_for_others(as_os_user):
    as_os_user("alice")
    assert access.identify("carol").name == "carol"
    as_os_user("bob")
    with pytest.raises(PermissionDenied, match="only admins may act as another user"):
        access.identify("carol")
    as_os_user("alice")
    with pytest.raises(UsageError, match="invalid user name"):
        access.identify("bad name;rm")


def test_admin_and_group_management(as_os_user):
    as_os_user("alice")
    alice = access.identify()
    assert access.add_admin(alice, "bob")
    assert not access.add_admin(alice, "bob")
    assert access.remove_admin(alice, "bob")
    with pytest.raises(UsageError, match="last admin"):
        access.remove_admin(alice, "alice")
    access.add_member(alice, "data-science", "bob")
    assert access.groups_of("bob") == {"data-science"}
    assert access.list_members("data-science") == [{"group": "data-science", "user": "bob"}]
    as_os_user("bob")
    bob = access.identify()
    with pytest.raises(PermissionDenied, match="only admins may manage groups"):
        access.add_member(bob, "data-science", "eve")


def test_root_cannot_be_removed_from_the_admins(as_os_user):
    as_os_user("alice")
    alice = access.identify()
    with pytest.raises(UsageError, match="root is always an admin") as info:
        access.remove_admin(alice, "root")
    assert info.value.exit_code == 2
    assert access.is_admin("root") and "root" in access.list_admins()


def _cli(*args):
    from codestudio.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
        raise SystemExit(0)
    return info.value.code


def test_cli_admin_and_group_remove_say_what_happened(as_os_user, capsys):
    as_os_user("alice")
    assert _cli("admin", "remove", "root") == 2
    assert "root is always an admin" in capsys.readouterr().err
    assert _cli("admin", "remove", "nobody-here") == 0
    assert "nobody-here was not an admin" in capsys.readouterr().err
    assert _cli("admin", "group", "add", "ds", "bob") == 0
    capsys.readouterr()
    assert _cli("admin", "group", "remove", "ds", "bob", "carol") == 0
    err = capsys.readouterr().err
    assert "removed bob from ds" in err
    assert "carol was not a member of ds: nothing removed" in err and "removed carol" not in err
    assert _cli("admin", "group", "remove", "ds", "bob") == 0
    err = capsys.readouterr().err
    assert "bob was not a member of ds" in err and "removed bob" not in err
    assert access.list_members("ds") == []


def test_os_groups_count():
    import grp
    import os
    import pwd

    me = pwd.getpwuid(os.geteuid()).pw_name
    primary = grp.getgrgid(pwd.getpwuid(os.geteuid()).pw_gid).gr_name
    assert primary in access.groups_of(me)
    assert access.os_groups("no-such-user-here") == set()


@pytest.fixture
def template_dir(tmp_path):
    folder = tmp_path / "tpl"
    shutil.copytree(REPO / "examples" / "files", folder / "files")
    shutil.copy(REPO / "examples" / "advanced.yaml", folder / "advanced.yaml")
    (folder / "unrelated-big-file.bin").write_bytes(b"x" * 1000)
    return folder


def test_add_stores_used_resources_and_versions_on_change(as_os_user, template_dir):
    from codestudio.templates_store import add_template, get_template, list_templates

    as_os_user("alice")
    alice = access.identify()
    first, new = add_template(alice, template_dir / "advanced.yaml")
    assert new and first.version == 1
    stored = first.path.parent
    assert (stored / "files" / "hello_server.py").exists()
    assert (stored / "files" / "starter" / "hello.py").exists()
    assert not (stored / "unrelated-big-file.bin").exists()
    again, new = add_template(alice, template_dir / "advanced.yaml")
    assert not new and again.version == 1
    (template_dir / "files" / "hello_server.py").write_text("# changed\n")
    second, new = add_template(alice, template_dir / "advanced.yaml")
    assert new and second.version == 2
    assert (first.path.parent / "files" / "hello_server.py").read_text() != "# changed\n"
    assert get_template("advanced-example").version == 2
    assert get_template("advanced-example", 1).digest == first.digest
    [row] = list_templates()
    assert row["grants"] == ["data-science"] and row["version"] == 2


def test_only_admins_manage_templates_and_grants_decide_use(as_os_user, template_dir):
    from codestudio.templates_store import add_template, grant, remove_template, revoke

    as_os_user("alice")
    alice = access.identify()
    add_template(alice, template_dir / "advanced.yaml")
    as_os_user("bob")
    bob = access.identify()
    with pytest.raises(PermissionDenied):
        add_template(bob, template_dir / "advanced.yaml")
    with pytest.raises(PermissionDenied):
        grant(bob, "advanced-example", "everyone-else")
    with pytest.raises(PermissionDenied, match="granted to data-science"):
        access.require_template_use(bob, "advanced-example")
    access.add_member(alice, "data-science", "bob")
    access.require_template_use(bob, "advanced-example")
    assert revoke(alice, "advanced-example", "data-science")
    with pytest.raises(PermissionDenied, match="admins only"):
        access.require_template_use(bob, "advanced-example")
    assert grant(alice, "advanced-example", "*")
    access.require_template_use(bob, "advanced-example")
    with pytest.raises(PermissionDenied):
        remove_template(bob, "advanced-example")
    remove_template(alice, "advanced-example")
    with pytest.raises(NotFound):
        grant(alice, "advanced-example", "x")


def test_permissions_all_becomes_a_grant_to_everybody(as_os_user, tmp_path):
    from codestudio.templates_store import add_template

    as_os_user("alice")
    alice = access.identify()
    path = tmp_path / "t.yaml"
    path.write_text(textwrap.dedent("""\
        id: open-one
        permissions: {all: true}
        blocks:
          - type: entrypoint
            label: x
            command: [sleep, "1"]
    """))
    add_template(alice, path)
    assert access.template_grants("open-one") == ["*"]
    as_os_user("zed")
    access.require_template_use(access.identify(), "open-one")


def test_stored_id_resolves_for_template_build(as_os_user, template_dir):
    from codestudio.templates_store import resolve_template
    from codestudio.templates_store import add_template

    as_os_user("alice")
    stored, _ = add_template(access.identify(), template_dir / "advanced.yaml")
    assert resolve_template("advanced-example") == (stored.path, 1)
    assert resolve_template(str(template_dir / "advanced.yaml")) == (template_dir / "advanced.yaml", None)


@pytest.mark.parametrize("share,admitted", [
    ("owner", {"alice", "admin"}),
    ("group:team", {"alice", "admin", "tess"}),
    ("users", {"alice", "admin", "tess", "bob"}),
    ("public", {"alice", "admin", "tess", "bob", "dora"}),
])
def test_who_may_view_a_webapp(as_os_user, share, admitted):
    from codestudio import signin

    as_os_user("admin")
    admin = access.identify()
    access.add_member(admin, "team", "tess")
    signin.disable_user(admin, "dora", store=access.Store.default())  # disabled: a signed-in user no more
    viewers = {u for u in ("alice", "admin", "tess", "bob", "dora") if access.may_view_webapp(u, "alice", share)}
    assert viewers == admitted
    with pytest.raises(UsageError, match="share"):
        access.may_view_webapp("bob", "alice", "group:")
