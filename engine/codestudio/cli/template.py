"""``codestudio template ...``: templates, their builds and grants."""

from __future__ import annotations

import click

from codestudio.cli import output


@click.group()
def template() -> None:
    """Add, list, build and grant templates."""


@template.command()
@click.argument("template_ref", metavar="TEMPLATE")
@click.option("--no-cache", is_flag=True, help="Rebuild every layer, even if an identical image exists.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def build(template_ref: str, no_cache: bool, quiet: bool, as_json: bool) -> None:
    """Build TEMPLATE (a stored template id or a template file) into localhost/codestudio/<id>:<hash> and :latest."""
    from codestudio.templates_store import build_template

    result = build_template(template_ref, no_cache=no_cache, quiet=quiet or as_json)
    if as_json:
        output.data(result.as_dict(), as_json=True)
        return
    if result.outcome == "skipped":
        output.info(f"{result.image} is up to date (nothing to build)")
    else:
        cached = f", {len(result.cached_steps)}/{result.steps} steps from cache" if result.steps else ""
        output.info(f"built {result.image} in {result.seconds:.1f}s{cached}")
        if result.cleaning_up:
            output.info(f"buildah removes its step containers in the background (done when {result.log_path} ends with '# exit status')")
    output.line(result.image)


@template.command()
@click.argument("template_id", metavar="ID")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show only the newest N builds.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def builds(template_id: str, limit: int | None, as_json: bool) -> None:
    """List the builds of template ID, newest first."""
    import datetime

    from codestudio.images import list_builds

    rows = list_builds(template_id, limit=limit)
    if as_json:
        output.table(rows, [], as_json=True)
        return
    for row in rows:
        row["started"] = datetime.datetime.fromtimestamp(row["started_at"]).strftime("%Y-%m-%d %H:%M:%S")
        row["seconds"] = f"{row['ended_at'] - row['started_at']:.1f}" if row.get("ended_at") else ""
        row["hash"] = row["content_hash"][:16]
    output.table(rows, ["id", "started", "outcome", "seconds", "hash", "log_path"], as_json=False,
                 title=f"builds of {template_id}")


# --- stored templates and grants (runtime helper) --------------------------------


def _who(ctx: click.Context):
    from codestudio.access import identify

    return identify((ctx.obj or {}).get("user"))


@template.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the stored template as JSON.")
@click.pass_context
def add(ctx: click.Context, file: str, as_json: bool) -> None:
    """Store FILE and the resources it uses (a changed file makes a new version)."""
    from codestudio.templates_store import add_template

    stored, new = add_template(_who(ctx), file)
    if as_json:
        output.data({**stored.as_dict(), "new_version": new}, as_json=True)
        return
    output.info(f"{'stored' if new else 'unchanged:'} {stored.id} version {stored.version}")
    output.line(stored.id)


@template.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def list_(as_json: bool) -> None:
    """List stored templates (latest versions) with their grants."""
    from codestudio.templates_store import list_templates

    rows = list_templates()
    if not as_json:
        for row in rows:
            row["grants"] = ", ".join("everybody" if g == "*" else g for g in row["grants"]) or "admins only"
    output.table(rows, ["id", "version", "label", "grants", "studios"], as_json=as_json)


@template.command()
@click.argument("template_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def show(template_id: str, as_json: bool) -> None:
    """Show a stored template: versions, grants, studios."""
    from codestudio.templates_store import show_template

    output.data(show_template(template_id), as_json=as_json)


@template.command()
@click.argument("template_id", metavar="ID")
@click.option("--force", is_flag=True, help="Remove it even though studios use it.")
@click.pass_context
def remove(ctx: click.Context, template_id: str, force: bool) -> None:
    """Remove a stored template (every version and grant)."""
    from codestudio.templates_store import remove_template

    remove_template(_who(ctx), template_id, force=force)
    output.info(f"template {template_id} removed")


def _group_arg(group: str | None, everybody: bool) -> str:
    if bool(group) == everybody:
        raise click.UsageError("give exactly one of --group G or --all")
    return "*" if everybody else group  # type: ignore[return-value]


@template.command("grant")
@click.argument("template_id", metavar="ID")
@click.option("--group", "group", default=None, help="Group allowed to create studios from it.")
@click.option("--all", "everybody", is_flag=True, help="Allow everybody.")
@click.pass_context
def grant_(ctx: click.Context, template_id: str, group: str | None, everybody: bool) -> None:
    """Let a group (or everybody) create studios from template ID."""
    from codestudio.templates_store import grant

    g = _group_arg(group, everybody)
    changed = grant(_who(ctx), template_id, g)
    output.info(f"{template_id}: {'granted to' if changed else 'already granted to'} {'everybody' if g == '*' else g}")


@template.command("revoke")
@click.argument("template_id", metavar="ID")
@click.option("--group", "group", default=None, help="Group to revoke.")
@click.option("--all", "everybody", is_flag=True, help="Revoke the grant to everybody.")
@click.pass_context
def revoke_(ctx: click.Context, template_id: str, group: str | None, everybody: bool) -> None:
    """Revoke a grant of template ID."""
    from codestudio.templates_store import revoke

    g = _group_arg(group, everybody)
    changed = revoke(_who(ctx), template_id, g)
    output.info(f"{template_id}: {'revoked' if changed else 'had no grant for'} {'everybody' if g == '*' else g}")
