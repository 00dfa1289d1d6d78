"""``codestudio base build|show``: the base image templates start from."""

from __future__ import annotations

import click

from codestudio.cli import output


@click.group()
def base() -> None:
    """Build and inspect the base image."""


@base.command()
@click.option("--suite", default="bookworm", show_default=True, help="Debian suite to bootstrap.")
@click.option("--mirror", default=None, help="Debian mirror URL (default: the one in the host's apt sources).")
@click.option("--force", is_flag=True, help="Rebuild even if an image with the same inputs exists.")
@click.option("--refresh", is_flag=True, help="Also re-run debootstrap instead of using the cached root filesystem.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def build(suite: str, mirror: str | None, force: bool, refresh: bool, quiet: bool, as_json: bool) -> None:
    """Build localhost/codestudio-base:<version> with debootstrap (a no-op when nothing changed)."""
    from codestudio.images.base import build_base

    result = build_base(suite=suite, mirror=mirror, force=force, refresh=refresh, quiet=quiet or as_json)
    if as_json:
        output.data(result.as_dict(), as_json=True)
    elif result.outcome == "unchanged":
        output.info(f"{result.image} is up to date")
        output.line(result.image)
    else:
        output.info(f"built {result.image} in {result.seconds:.0f}s (log: {result.log_path})")
        output.line(result.image)


@base.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def show(as_json: bool) -> None:
    """Show the base image this engine version uses and whether it is built."""
    from codestudio.images.base import base_status

    output.data(base_status(), as_json=as_json)
