"""``codestudio webapp ...``: publish a template (and a studio's files) as a replicated webapp (thin over codestudio.webapps)."""

from __future__ import annotations

import sys

import click

from codestudio.cli import output


def _who(ctx: click.Context):
    from codestudio.access import identify

    return identify((ctx.obj or {}).get("user"))


def _timeout(value: float | None) -> float:
    from codestudio.cli.studio import _timeout as studio_timeout

    return studio_timeout(value)


TIMEOUT = click.option("--timeout", type=click.FloatRange(min=0.1), default=None,
                       help="Seconds to wait for each replica's probe (default 300, or $CODESTUDIO_START_TIMEOUT).")
QUIET = click.option("--quiet", "-q", is_flag=True, help="No progress output.")
JSON = click.option("--json", "as_json", is_flag=True, help="Print as JSON.")


@click.group()
def webapp() -> None:
    """Publish templates as webapps: N replicas, each probed, behind one stable URL."""


@webapp.command()
@click.argument("project")
@click.argument("name")
@click.option("--template", "template_id", required=True, metavar="ID", help="A stored template id (codestudio template list).")
@click.option("--replicas", type=int, default=1, show_default=True, help="How many replicas (pods) serve it.")
@click.option("--from-studio", "from_studio", default=None, metavar="STUDIO",
              help="Serve a snapshot of this studio's code_studio-versioned files (your own studio in PROJECT).")
@click.option("--share", default="owner", show_default=True, metavar="SHARE",
              help="Who may view it: owner, group:GROUP, users (signed-in) or public.")
@TIMEOUT
@QUIET
@click.pass_context
def publish(ctx, project, name, template_id, replicas, from_studio, share, timeout, quiet) -> None:
    """Publish webapp NAME in PROJECT from a template; prints PROJECT/NAME."""
    from codestudio.webapps import publish as do_publish

    w = do_publish(_who(ctx), project, name, template_id, replicas=replicas, from_studio=from_studio, share=share,
                   timeout=_timeout(timeout), quiet=quiet)
    snap = f", snapshot of studio {w.source_studio} at commit {w.snapshot_commit}" if w.source_studio else ""
    output.info(f"webapp {w.key} is {w.state} with {w.replicas} replica(s){snap}; "
                f"see: codestudio webapp status {w.key}")
    output.line(w.key)


@webapp.command("list")
@click.option("--all", "all_users", is_flag=True, help="Every user's webapps (admins only; default: yours).")
@JSON
@click.pass_context
def list_(ctx, all_users: bool, as_json: bool) -> None:
    """List webapps with their ready and running replica counts."""
    from codestudio.webapps import list_webapps

    rows = list_webapps(_who(ctx), all_users=all_users)
    output.table(rows, ["webapp", "owner", "template_id", "state", "ready", "replicas", "share", "snapshot_commit",
                        "message"], as_json=as_json)


@webapp.command()
@click.argument("ref", metavar="WEBAPP")
@JSON
@click.pass_context
def status(ctx, ref: str, as_json: bool) -> None:
    """WEBAPP's state and each replica's state and reason (dead replicas are replaced first)."""
    from codestudio.webapps import status as get_status

    data = get_status(_who(ctx), ref)
    if as_json:
        output.data(data, as_json=True)
        return
    replicas = data.pop("replicas_detail")
    output.data(data, as_json=False)
    output.table(replicas, ["pod", "generation", "state", "reason", "backend"], as_json=False)


@webapp.command()
@click.argument("ref", metavar="WEBAPP")
@click.argument("replicas", type=int)
@TIMEOUT
@QUIET
@click.pass_context
def scale(ctx, ref: str, replicas: int, timeout: float | None, quiet: bool) -> None:
    """Run REPLICAS replicas of WEBAPP; the others keep serving meanwhile."""
    from codestudio.webapps import scale as do_scale

    w = do_scale(_who(ctx), ref, replicas, timeout=_timeout(timeout), quiet=quiet)
    output.info(f"webapp {w.key} has {w.replicas} replica(s)")


@webapp.command()
@click.argument("ref", metavar="WEBAPP")
@click.option("--from-studio", "from_studio", default=None, metavar="STUDIO",
              help="Take the new snapshot from this studio (default: the one it was published from).")
@click.option("--keep-snapshot", is_flag=True, help="Keep the current snapshot (only rebuild from the template).")
@TIMEOUT
@QUIET
@click.pass_context
def update(ctx, ref: str, from_studio: str | None, keep_snapshot: bool, timeout: float | None, quiet: bool) -> None:
    """Roll WEBAPP onto its template's current build and a new snapshot, one replica at a time."""
    from codestudio.webapps import update as do_update

    w = do_update(_who(ctx), ref, from_studio=from_studio, keep_snapshot=keep_snapshot, timeout=_timeout(timeout),
                  quiet=quiet)
    output.info(f"webapp {w.key} runs generation {w.generation}"
                + (f" (snapshot commit {w.snapshot_commit})" if w.snapshot_commit else ""))


@webapp.command()
@click.argument("ref", metavar="WEBAPP")
@click.option("--replica", default=None, metavar="POD", help="Open this replica's own prefix (owner and admins).")
@click.option("--ttl", type=click.IntRange(min=10, max=604800), default=None,
              help="Seconds the link stays valid (default 600, at most 604800 = 7 days).")
@JSON
@click.pass_context
def url(ctx, ref: str, replica: str | None, ttl: int | None, as_json: bool) -> None:
    """Print a link into WEBAPP for you, if its share admits you (--json: also one per replica, owner and admins).

    A public webapp's link is its stable URL; any other's is signed, valid for
    --ttl seconds: opening it gives your browser the webapp's cookie.
    """
    from codestudio.webapps import urls

    data = urls(_who(ctx), ref, replica=replica, ttl=ttl)
    if as_json:
        output.data(data, as_json=True)
    else:
        output.line(data["url"])


@webapp.command()
@click.argument("ref", metavar="WEBAPP")
@click.argument("share", metavar="SHARE")
@JSON
@click.pass_context
def share(ctx, ref: str, share: str, as_json: bool) -> None:
    """Share WEBAPP with SHARE: owner, group:GROUP, users (signed-in) or public (owner and admins).

    Every viewer's cookie and link stop working (the webapp's secret is renewed,
    also when SHARE does not change): viewers get new links with `webapp url`.
    """
    from codestudio.webapps.sharing import describe, set_share

    w = set_share(_who(ctx), ref, share)
    if as_json:
        output.data({"webapp": w.key, "share": w.share}, as_json=True)
    else:
        output.info(f"webapp {w.key} is now shared with {describe(w.share)}; earlier links and cookies no longer work")
        output.line(w.share)


@webapp.command()
@click.argument("ref", metavar="WEBAPP")
@click.option("--replica", default=None, metavar="POD", help="A replica's pod name or index (default: the first).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing as the replica writes.")
@click.option("--tail", type=click.IntRange(min=0), default=None, help="Only the last N lines first.")
@click.pass_context
def logs(ctx, ref: str, replica: str | None, follow: bool, tail: int | None) -> None:
    """Output of one replica's runner and entrypoints."""
    from codestudio.runtime.current import get_runtime
    from codestudio.webapps import logs_target

    pod = logs_target(_who(ctx), ref, replica)
    stream = get_runtime().logs(pod, follow=follow, tail=tail)
    try:
        for chunk in stream:
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


@webapp.command()
@click.argument("ref", metavar="WEBAPP")
@click.pass_context
def stop(ctx, ref: str) -> None:
    """Remove WEBAPP's replicas; its definition, snapshot and share are kept."""
    from codestudio.webapps import stop as do_stop

    w = do_stop(_who(ctx), ref)
    output.info(f"webapp {w.key} is {w.state}")


@webapp.command()
@click.argument("ref", metavar="WEBAPP")
@TIMEOUT
@QUIET
@click.pass_context
def start(ctx, ref: str, timeout: float | None, quiet: bool) -> None:
    """Start a stopped WEBAPP again (its template as it is now, its snapshot)."""
    from codestudio.webapps import start as do_start

    w = do_start(_who(ctx), ref, timeout=_timeout(timeout), quiet=quiet)
    output.info(f"webapp {w.key} is {w.state}")


@webapp.command()
@click.argument("ref", metavar="WEBAPP")
@click.pass_context
def delete(ctx, ref: str) -> None:
    """Remove WEBAPP entirely: replicas, definition, snapshots and logs."""
    from codestudio.webapps import delete as do_delete

    do_delete(_who(ctx), ref)
    output.info(f"webapp {ref} deleted")


@webapp.command()
@click.option("--interval", type=click.FloatRange(min=0.5), default=5.0, show_default=True,
              help="Seconds between rounds.")
@click.option("--once", is_flag=True, help="One round, then exit.")
def supervise(interval: float, once: bool) -> None:
    """Keep every webapp's replicas running and probed: replace dead ones, route ready ones (a loop)."""
    from codestudio.webapps import supervise as loop

    loop(interval=interval, once=once)


@webapp.command()
@click.option("--max-replicas", type=int, default=None, help="Set the most replicas a webapp may have (admins).")
@JSON
@click.pass_context
def settings(ctx, max_replicas: int | None, as_json: bool) -> None:
    """Show (or, for admins, change) this data dir's webapp settings."""
    from codestudio.access import require_admin
    from codestudio.webapps.model import max_replicas as current, set_max_replicas

    if max_replicas is not None:
        require_admin(_who(ctx), "change webapp settings")
        set_max_replicas(max_replicas)
    output.data({"max_replicas": current()}, as_json=as_json)
