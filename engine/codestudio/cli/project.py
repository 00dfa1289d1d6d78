"""``codestudio project ...``: projects and their members (thin over codestudio.projects)."""

from __future__ import annotations

import click

from codestudio.cli import output


def _who(ctx: click.Context):
    from codestudio.access import identify

    return identify((ctx.obj or {}).get("user"))


USERS = click.option("--user", "users", multiple=True, metavar="USER", help="A user (repeatable).")
GROUPS = click.option("--group", "groups", multiple=True, metavar="GROUP",
                      help="A group: state DB or OS group (repeatable).")


@click.group()
def project() -> None:
    """Create projects and manage their members (roles: member, admin)."""


@project.command()
@click.argument("key")
@click.option("--owner", default=None, help="Owner (default: you; only codestudio admins may name another).")
@click.pass_context
def create(ctx: click.Context, key: str, owner: str | None) -> None:
    """Create project KEY; its owner becomes its first admin."""
    from codestudio.projects import create_project

    p, adopted = create_project(_who(ctx), key, owner=owner)
    for folder in adopted:
        output.info(f"adopted the zone files left in {folder} by a deleted project")
    output.info(f"created project {p.key} owned by {p.owner}")
    output.line(p.key)


@project.command("list")
@click.option("--all", "all_projects", is_flag=True, help="Every project (codestudio admins only; default: yours).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def list_(ctx: click.Context, all_projects: bool, as_json: bool) -> None:
    """List the projects you are a member of, with your role."""
    from codestudio.projects import list_projects

    output.table(list_projects(_who(ctx), all_projects=all_projects),
                 ["key", "owner", "role", "members", "studios", "origin"], as_json=as_json)


@project.command()
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def show(ctx: click.Context, key: str, as_json: bool) -> None:
    """Owner, members with their roles, and studios of project KEY."""
    from codestudio.projects import show_project

    info = show_project(_who(ctx), key)
    if as_json:
        output.data(info, as_json=True)
        return
    import time

    flat = {k: v for k, v in info.items() if k not in ("members", "studios")}
    flat["created_at"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["created_at"]))
    output.data(flat, as_json=False)
    output.table(info["members"], ["kind", "name", "role"], as_json=False, title="members")
    if info["studios"]:
        output.table(info["studios"], ["id", "name", "owner", "state"], as_json=False, title="studios")


@project.command()
@click.argument("key")
@USERS
@GROUPS
@click.option("--role", type=click.Choice(["member", "admin"]), default="member", show_default=True,
              help="member: create and start studios, sync the project zones; admin: also manage members.")
@click.pass_context
def grant(ctx: click.Context, key: str, users: tuple[str, ...], groups: tuple[str, ...], role: str) -> None:
    """Give users or groups a role in project KEY (replaces their previous role)."""
    from codestudio.projects import grant as grant_role

    for c in grant_role(_who(ctx), key, users=users, groups=groups, role=role):
        was = f" (was {c['before']})" if c["before"] and c["before"] != c["role"] else ""
        output.info(f"{c['kind']} {c['name']} is {c['role']} of {key}{was}")


@project.command()
@click.argument("key")
@USERS
@GROUPS
@click.pass_context
def revoke(ctx: click.Context, key: str, users: tuple[str, ...], groups: tuple[str, ...]) -> None:
    """Remove users' or groups' roles in project KEY.

    Takes effect at once: a revoked user's studios there cannot be started
    again, and running ones no longer sync the project zones (at stop, those
    files go to the studio's recovery folder instead).
    """
    from codestudio.projects import revoke as revoke_role

    for r in revoke_role(_who(ctx), key, users=users, groups=groups):
        said = "removed from" if r["removed"] else "had no grant of its own in"
        output.info(f"{r['kind']} {r['name']} {said} {key}")
        if r["still"]:
            output.info(f"  note: {r['name']} is still {r['still']} of {key} through a group")


@project.command()
@click.argument("key")
@click.option("--force", is_flag=True, help="Stop and delete the project's studios first (their files are pulled "
                                            "or saved as a stop does).")
@click.option("--purge", is_flag=True, help="Also remove every zone file of the project (default: kept on disk).")
@click.pass_context
def delete(ctx: click.Context, key: str, force: bool, purge: bool) -> None:
    """Delete project KEY (owner or codestudio admins); refused while it has studios unless --force."""
    from codestudio.projects import delete_project

    result = delete_project(_who(ctx), key, force=force, purge=purge)
    if result["studios"]:
        output.info(f"deleted studios {', '.join(result['studios'])}")
    if result["zones_kept"]:
        output.info(f"zone files kept in {result['zones']} (only a codestudio admin can create {key} again; "
                    "--purge removes them)")
    output.info(f"project {key} deleted")
