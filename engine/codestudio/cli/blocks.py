"""``codestudio blocks`` and ``codestudio schema``."""

from __future__ import annotations

import json
import sys

import click

from codestudio.cli import output


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def blocks(as_json: bool) -> None:
    """List installed block types: type, distribution, version."""
    from codestudio.plugins import load_plugins

    loaded = load_plugins()
    rows = [
        {"type": t, "distribution": p.distribution, "version": p.version, "summary": p.summary, "status": "ok"}
        for t, p in sorted(loaded.by_type.items())
    ]
    rows += [
        {"type": pr.type, "distribution": pr.distribution, "version": "", "summary": pr.error, "status": "failed"}
        for pr in loaded.problems
    ]
    rows += [
        {"type": t, "distribution": d, "version": "", "summary": "disabled by environment", "status": "disabled"}
        for t, d in sorted(loaded.disabled.items())
    ]
    output.table(rows, ["type", "distribution", "version", "status"], as_json=as_json)


@click.command()
def schema() -> None:
    """Print the JSON Schema of template files (every installed block included)."""
    from codestudio.plugins import load_plugins
    from codestudio.schema import template_schema

    sys.stdout.write(json.dumps(template_schema(load_plugins()), indent=2, sort_keys=True) + "\n")
