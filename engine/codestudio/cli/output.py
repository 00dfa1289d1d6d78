"""All CLI output goes through here: rich tables for people, JSON for machines."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def table(rows: Iterable[dict[str, Any]], columns: Sequence[str], *, as_json: bool, title: str | None = None) -> None:
    """Print rows as a table, or as a JSON list of objects with ``as_json``."""
    rows = list(rows)
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, sort_keys=True, default=str) + "\n")
        return
    from rich.table import Table

    t = Table(title=title, show_edge=False, header_style="bold")
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*("" if row.get(col) is None else str(row.get(col)) for col in columns))
    _console().print(t)


def data(obj: Any, *, as_json: bool) -> None:
    """Print one object: JSON with ``as_json``, else ``key: value`` lines."""
    if as_json:
        sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
        return
    for key, value in obj.items():
        sys.stdout.write(f"{key}: {value}\n")


def line(text: str) -> None:
    """A plain line on stdout (ids, URLs: things scripts capture)."""
    sys.stdout.write(text + "\n")


def info(text: str) -> None:
    """Progress and notes on stderr, so stdout stays machine-readable."""
    _console(stderr=True).print(text, markup=False)


def error(text: str) -> None:
    _console(stderr=True).print(f"error: {text}", style="red", markup=False)
