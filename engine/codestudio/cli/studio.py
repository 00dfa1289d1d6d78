"""``codestudio studio ...``: create, start, stop and use Code Studios (thin over codestudio.runtime.studios)."""

from __future__ import annotations

import sys

import click

from codestudio.cli import output


def _who(ctx: click.Context):
    from codestudio.access import identify

    return identify((ctx.obj or {}).get("user"))


def _timeout(value: float | None) -> float:
    import os

    from codestudio.runtime.studios import DEFAULT_TIMEOUT

    if value is not None:
        return value
    env = os.environ.get("CODESTUDIO_START_TIMEOUT")
    if env:
        try:
            return float(env)
        except ValueError:
            raise click.BadParameter(f"CODESTUDIO_START_TIMEOUT={env!r} is not a number of seconds") from None
    return DEFAULT_TIMEOUT


TIMEOUT = click.option("--timeout", type=click.FloatRange(min=0.1), default=None,
                       help="Seconds to wait for readiness (default 300, or $CODESTUDIO_START_TIMEOUT).")
QUIET = click.option("--quiet", "-q", is_flag=True, help="No progress output.")


@click.group()
def studio() -> None:
    """Create, start, stop and use Code Studios."""


@studio.command()
@click.argument("project")
@click.argument("name")
@click.option("--template", "template_id", required=True, metavar="ID", help="A stored template id (codestudio template list).")
@click.option("--owner", default=None, help="Owner (default: you; only admins may create for others).")
@click.pass_context
def create(ctx: click.Context, project: str, name: str, template_id: str, owner: str | None) -> None:
    """Create studio NAME in PROJECT from a template; prints the studio id."""
    from codestudio.runtime.studios import create_studio

    s = create_studio(_who(ctx), project, name, template_id, owner=owner)
    output.info(f"created studio {s.id} in {s.project} for {s.owner} (template {s.template_id} v{s.template_version})")
    output.line(s.id)


@studio.command("list")
@click.option("--all", "all_users", is_flag=True, help="Every user's studios (admins only; default: yours).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def list_(ctx: click.Context, all_users: bool, as_json: bool) -> None:
    """List studios."""
    import dataclasses

    from codestudio.runtime.studios import list_studios

    rows = []
    for s in list_studios(_who(ctx), all_users=all_users):
        d = dataclasses.asdict(s)
        d.pop("token", None)
        rows.append(d)
    output.table(rows, ["id", "project", "name", "owner", "template_id", "state", "message"], as_json=as_json)


@studio.command()
@click.argument("ref", metavar="STUDIO")
@TIMEOUT
@QUIET
@click.pass_context
def start(ctx: click.Context, ref: str, timeout: float | None, quiet: bool) -> None:
    """Start STUDIO (building its image if needed) and wait until it is ready."""
    from codestudio.runtime.studios import start_studio

    s = start_studio(_who(ctx), ref, timeout=_timeout(timeout), quiet=quiet)
    output.info(f"studio {s.id} is {s.state}; open it with: codestudio studio url {s.id}")


@studio.command()
@click.argument("ref", metavar="STUDIO")
@click.option("--force", is_flag=True,
              help="Remove the pod even when its files can be neither pulled nor saved to a recovery folder: "
                   "its unsynced changes are LOST.")
@QUIET
@click.pass_context
def stop(ctx: click.Context, ref: str, force: bool, quiet: bool) -> None:
    """Stop STUDIO (files are pulled back to their zones first).

    When the pull fails, its files are saved to the studio's recovery folder
    before the pod is removed; when that fails too, the studio keeps running
    (exit 1) until the cause is fixed, or until --force.
    """
    from codestudio.runtime.studios import stop_studio

    s = stop_studio(_who(ctx), ref, force=force, quiet=quiet)
    output.info(f"studio {s.id} is {s.state}")


@studio.command()
@click.argument("ref", metavar="STUDIO")
@TIMEOUT
@QUIET
@click.pass_context
def restart(ctx: click.Context, ref: str, timeout: float | None, quiet: bool) -> None:
    """Stop then start STUDIO (picks up a newer build of its template)."""
    from codestudio.runtime.studios import restart_studio

    s = restart_studio(_who(ctx), ref, timeout=_timeout(timeout), quiet=quiet)
    output.info(f"studio {s.id} is {s.state}")


@studio.command()
@click.argument("ref", metavar="STUDIO")
@click.option("--force", is_flag=True, help="Stop it first if it runs.")
@click.option("--purge", is_flag=True, help="Also remove the studio's own zones (code_studio-*).")
@click.pass_context
def delete(ctx: click.Context, ref: str, force: bool, purge: bool) -> None:
    """Delete STUDIO (its studio-scoped zones are kept unless --purge)."""
    from codestudio.runtime.studios import delete_studio

    delete_studio(_who(ctx), ref, force=force, purge=purge)
    output.info(f"studio {ref} deleted")


@studio.command()
@click.argument("ref", metavar="STUDIO")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def status(ctx: click.Context, ref: str, as_json: bool) -> None:
    """State, image, tabs with their URLs, and zones of STUDIO."""
    from codestudio.runtime.studios import studio_status

    st = studio_status(_who(ctx), ref)
    if as_json:
        output.data(st, as_json=True)
        return
    flat = {k: v for k, v in st.items() if k not in ("tabs", "zones", "ports")}
    if st["newer_build"]:
        flat["image"] = f"{st['image']} (a newer build exists: restart to use it)"
    flat.pop("newer_build")
    output.data(flat, as_json=False)
    for tab in st["tabs"]:
        output.line(f"tab: {tab['label']} (port {tab['port']}): {tab['url']}")
    for z in st["zones"]:
        output.line(f"zone: {z['zone']} -> {z['target']}{' (one way)' if z['one_way'] else ''}: {z['server']}")


@studio.command()
@click.argument("ref", metavar="STUDIO")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output.")
@click.option("--tail", type=click.IntRange(min=0), default=None, help="Only the last N lines.")
@click.pass_context
def logs(ctx: click.Context, ref: str, follow: bool, tail: int | None) -> None:
    """Output of STUDIO's runner and entrypoints (saved logs when it is not running)."""
    from codestudio.runtime.studios import stream_logs

    sys.exit(stream_logs(_who(ctx), ref, follow=follow, tail=tail))


@studio.command()
@click.argument("ref", metavar="STUDIO")
@click.option("--port", type=int, default=None, help="Link to this tab instead of the landing page.")
@click.option("--ttl", type=click.IntRange(min=10, max=604800), default=None,
              help="Seconds the link stays valid (default 600, at most 604800 = 7 days).")
@click.pass_context
def url(ctx: click.Context, ref: str, port: int | None, ttl: int | None) -> None:
    """Print the owner's signed gateway URL of STUDIO (warns when the gateway is stopped)."""
    from codestudio.runtime.studios import access_url

    output.line(access_url(_who(ctx), ref, port=port, ttl=ttl))


@studio.command()
@click.argument("ref", metavar="STUDIO")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def actions(ctx: click.Context, ref: str, as_json: bool) -> None:
    """List STUDIO's custom actions (run one with `codestudio studio run STUDIO ACTION`)."""
    from codestudio.runtime.studios import list_actions

    output.table(list_actions(_who(ctx), ref), ["name", "label", "wait", "description"], as_json=as_json)


@studio.command()
@click.argument("ref", metavar="STUDIO")
@click.argument("action")
@click.pass_context
def run(ctx: click.Context, ref: str, action: str) -> None:
    """Run ACTION in STUDIO as the studio user; waits and exits with its status when the action says wait."""
    from codestudio.runtime.studios import detached_log_path, run_action

    code, waited = run_action(_who(ctx), ref, action)
    if not waited:
        output.info(f"action {action} started in the background (it does not wait); "
                    f"its output goes to {detached_log_path(action)} inside the studio")
    sys.exit(code)


def _print_report(report, as_json: bool) -> None:
    if as_json:
        output.data(report.to_dict(), as_json=True)
        return
    rows = [
        {
            "zone": m.zone + (f"/{m.subfolder}" if m.subfolder else ""),
            "target": m.target,
            "pushed": len(m.pushed),
            "pulled": len(m.pulled),
            "deleted": len(m.deleted_in_studio) + len(m.deleted_on_server),
            "conflicts": len(m.conflicts),
            "refused": len(m.refused) + len(m.skipped),
        }
        for m in report.mappings
    ]
    output.table(rows, ["zone", "target", "pushed", "pulled", "deleted", "conflicts", "refused"], as_json=False)
    for m in report.mappings:
        for what, entries in (("refused", m.refused), ("skipped", m.skipped)):
            for side, path, why in entries:
                output.info(f"{m.zone}: {what} {path} ({side}): {why}")


def _sync_command(name: str, direction: str, doc: str):
    @studio.command(name, help=doc)
    @click.argument("ref", metavar="STUDIO")
    @click.argument("zone", required=False)
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    @click.pass_context
    def command(ctx: click.Context, ref: str, zone: str | None, as_json: bool) -> None:
        from codestudio.runtime.studios import sync_files
        from codestudio.sync import SyncConflictError

        try:
            report = sync_files(_who(ctx), ref, direction, zone)
        except SyncConflictError as exc:
            _print_report(exc.report, as_json)
            raise
        _print_report(report, as_json)

    return command


_sync_command("sync", "both", "Sync STUDIO's files both ways with the server (all zones, or ZONE). "
              "Files changed on both sides are kept in both versions and reported (exit 1).")
_sync_command("push", "push", "Send server-side changes of the zones (or ZONE) into STUDIO.")
_sync_command("pull", "pull", "Bring STUDIO's changes back to the server (committed in versioned zones).")


@studio.command()
@click.argument("ref", metavar="STUDIO")
@click.argument("zone", required=False)
@click.option("--resolve", "resolve", is_flag=True, help="Mark the listed conflicts (or PATHs) resolved.")
@click.option("--path", "paths", multiple=True, help="With --resolve: only these zone-relative paths.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def conflicts(ctx: click.Context, ref: str, zone: str | None, resolve: bool, paths: tuple[str, ...], as_json: bool) -> None:
    """List the open sync conflicts of STUDIO (in ZONE), with server commits at the last sync and now."""
    from dataclasses import asdict

    from codestudio.runtime.studios import studio_conflicts

    found = studio_conflicts(_who(ctx), ref, zone, resolve=resolve, paths=list(paths))
    rows = [
        {
            "zone": c.zone,
            "path": c.path,
            "server": c.server_change,
            "studio": c.studio_change,
            "studio version kept as": c.copy or "",
            "commit at last sync": (c.commit_at_last_sync or "")[:12],
            "commit now": (c.commit_now or "")[:12],
        }
        for c in found
    ]
    if as_json:
        output.data([asdict(c) for c in found], as_json=True)
        return
    if resolve:
        output.info(f"{len(found)} conflict(s) marked resolved")
    output.table(rows, list(rows[0]) if rows else ["zone", "path"], as_json=False)
