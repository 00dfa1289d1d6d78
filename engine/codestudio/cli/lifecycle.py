"""``codestudio cull`` and ``codestudio lifecycle show|set``: thin over codestudio.runtime.culler and .limits."""

from __future__ import annotations

import click

from codestudio.cli import output


def _who(ctx: click.Context):
    from codestudio.access import identify

    return identify((ctx.obj or {}).get("user"))


@click.command()
@click.option("--dry-run", is_flag=True, help="Say what would be stopped, stop nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
@click.pass_context
def cull(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """Stop running studios past their idle_timeout or max_lifetime, and webapps past their max_lifetime
    (admins; for cron).

    Each studio is stopped the normal way: files pulled back first, conflicts kept.
    """
    from codestudio.access import require_admin
    from codestudio.runtime.culler import cull as run
    from codestudio.runtime.culler import cull_webapps

    require_admin(_who(ctx), "cull studios")
    decisions = run(dry_run=dry_run, say=output.info) + cull_webapps(dry_run=dry_run, say=output.info)
    rows = [d.as_dict() for d in decisions]
    for row in rows:
        row["result"] = "stopped" if row["stopped"] else ("would stop" if row["action"] == "stop" else row["action"])
    output.table(rows, ["studio", "project", "owner", "result", "reason"], as_json=as_json)


@click.group()
def lifecycle() -> None:
    """Idle timeout and lifetime defaults, and running-studio quotas, of this data dir."""


@lifecycle.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def show(as_json: bool) -> None:
    """Print the lifecycle settings (off: not set)."""
    from codestudio.runtime.limits import describe, load_settings

    output.data(describe(load_settings()), as_json=as_json)


@lifecycle.command("set")
@click.argument("changes", nargs=-1, required=True, metavar="FIELD=VALUE...")
@click.pass_context
def set_(ctx: click.Context, changes: tuple[str, ...]) -> None:
    """Change settings (admins), e.g. idle_timeout=2h max_running_per_user=3; VALUE off clears one.

    Fields: idle_timeout, max_lifetime (defaults for templates that set none),
    cull_interval, max_running_per_user, max_running_per_template, max_running_total.
    """
    from codestudio.errors import UsageError
    from codestudio.runtime.limits import describe, set_settings

    parsed = {}
    for change in changes:
        field, sep, value = change.partition("=")
        if not sep:
            raise UsageError(f"{change!r}: write FIELD=VALUE (e.g. idle_timeout=2h)")
        parsed[field.strip()] = value.strip()
    output.data(describe(set_settings(_who(ctx), parsed)), as_json=False)
