"""``codestudio admin ...``: admins and group memberships (thin over codestudio.access)."""

from __future__ import annotations

import click

from codestudio.cli import output


def _who(ctx: click.Context):
    from codestudio.access import identify

    return identify((ctx.obj or {}).get("user"))


@click.group()
def admin() -> None:
    """Manage admins and group memberships."""


@admin.command("add")
@click.argument("user")
@click.pass_context
def add(ctx: click.Context, user: str) -> None:
    """Make USER an admin."""
    from codestudio.access import add_admin

    output.info(f"{user} is {'now' if add_admin(_who(ctx), user) else 'already'} an admin")


@admin.command("remove")
@click.argument("user")
@click.pass_context
def remove(ctx: click.Context, user: str) -> None:
    """Remove USER from the admins."""
    from codestudio.access import remove_admin

    output.info(f"{user} {'is no longer' if remove_admin(_who(ctx), user) else 'was not'} an admin")


@admin.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def list_(as_json: bool) -> None:
    """List admins (root always is one)."""
    from codestudio.access import list_admins

    output.table([{"user": u} for u in list_admins()], ["user"], as_json=as_json)


@admin.command("whoami")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def whoami(ctx: click.Context, as_json: bool) -> None:
    """Who you act as, whether you are an admin, and your groups."""
    from codestudio.access import groups_of

    who = _who(ctx)
    output.data({"user": who.name, "admin": who.is_admin, "os_user": who.os_user,
                 "groups": sorted(groups_of(who.name))}, as_json=as_json)


@admin.group()
def group() -> None:
    """Group memberships kept in the state DB (OS groups also count)."""


@group.command("add")
@click.argument("group_name", metavar="GROUP")
@click.argument("users", nargs=-1, required=True, metavar="USER...")
@click.pass_context
def group_add(ctx: click.Context, group_name: str, users: tuple[str, ...]) -> None:
    """Add USERs to GROUP."""
    from codestudio.access import add_member

    who = _who(ctx)
    for user in users:
        add_member(who, group_name, user)
    output.info(f"added {', '.join(users)} to {group_name}")


@group.command("remove")
@click.argument("group_name", metavar="GROUP")
@click.argument("users", nargs=-1, required=True, metavar="USER...")
@click.pass_context
def group_remove(ctx: click.Context, group_name: str, users: tuple[str, ...]) -> None:
    """Remove USERs from GROUP."""
    from codestudio.access import remove_member

    who = _who(ctx)
    removed = [user for user in dict.fromkeys(users) if remove_member(who, group_name, user)]
    absent = [user for user in dict.fromkeys(users) if user not in removed]
    if removed:
        output.info(f"removed {', '.join(removed)} from {group_name}")
    if absent:
        output.info(f"{', '.join(absent)} {'was' if len(absent) == 1 else 'were'} not a member of {group_name}: "
                    "nothing removed (only memberships added with `admin group add` are; OS groups are not changed)")


@group.command("list")
@click.argument("group_name", metavar="GROUP", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def group_list(group_name: str | None, as_json: bool) -> None:
    """List memberships (of GROUP)."""
    from codestudio.access import list_members

    output.table(list_members(group_name), ["group", "user"], as_json=as_json)
