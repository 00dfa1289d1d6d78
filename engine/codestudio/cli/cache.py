"""``codestudio cache show|clear``: the download caches of template builds."""

from __future__ import annotations

import click

from codestudio.cli import output


@click.group()
def cache() -> None:
    """Show and clear the download caches builds share (uv, pip, npm, apt)."""


@cache.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def show(as_json: bool) -> None:
    """Each cache's folder, size and file count."""
    from codestudio.images.cache import show as show_caches

    output.table(show_caches(), ["tool", "size", "files", "sharing", "path"], as_json=as_json)


@cache.command()
@click.argument("tools", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
def clear(tools: tuple[str, ...], as_json: bool) -> None:
    """Remove the caches of TOOLS (default: all); waits for running builds to finish first."""
    from codestudio.images.cache import clear as clear_caches

    removed = clear_caches(list(tools), waiting=lambda: output.info("waiting for running builds to finish"))
    if as_json:
        output.data({"removed": removed}, as_json=True)
        return
    total = sum(r["bytes"] for r in removed)
    output.info(f"removed {len(removed)} cache folder(s), {total} bytes" if removed else "the caches were empty")
