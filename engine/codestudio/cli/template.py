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
    """Build TEMPLATE (a template file) into localhost/codestudio/<id>:<hash> and :latest."""
    from codestudio.build import build_template

    result = build_template(template_ref, no_cache=no_cache, quiet=quiet or as_json)
    if as_json:
        output.data(result.as_dict(), as_json=True)
        return
    if result.outcome == "skipped":
        output.info(f"{result.image} is up to date (nothing to build)")
    else:
        cached = f", {len(result.cached_steps)}/{result.steps} steps from cache" if result.steps else ""
        output.info(f"built {result.image} in {result.seconds:.1f}s{cached}")
    output.line(result.image)


@template.command()
@click.argument("template_id", metavar="ID")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show only the newest N builds.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def builds(template_id: str, limit: int | None, as_json: bool) -> None:
    """List the builds of template ID, newest first."""
    import datetime

    from codestudio.build import list_builds

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
