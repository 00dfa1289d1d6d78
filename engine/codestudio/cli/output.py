"""All CLI output goes through here: rich tables for people, JSON for machines.

Every value is printed as plain text: rich markup is never interpreted
(a studio named ``my notes[/]`` or ``[link=...]`` prints as written), and
control characters are shown escaped (:func:`codestudio.text.printable`).
JSON output keeps values exact (``json.dumps`` escapes control characters).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from codestudio.text import printable


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False, emoji=False)


def _text(value: Any, *, keep: str = ""):
    from rich.text import Text

    return Text("" if value is None else printable(value, keep=keep))


def table(rows: Iterable[dict[str, Any]], columns: Sequence[str], *, as_json: bool, title: str | None = None) -> None:
    """Print rows as a table, or as a JSON list of objects with ``as_json``."""
    rows = list(rows)
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, sort_keys=True, default=str) + "\n")
        return
    from rich.table import Table

    t = Table(title=_text(title) if title is not None else None, show_edge=False, header_style="bold")
    for col in columns:
        t.add_column(_text(col))
    for row in rows:
        t.add_row(*(_text(row.get(col)) for col in columns))
    _console().print(t)


def data(obj: Any, *, as_json: bool) -> None:
    """Print one object: JSON with ``as_json``, else ``key: value`` lines."""
    if as_json:
        sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
        return
    for key, value in obj.items():
        sys.stdout.write(f"{printable(key)}: {printable(value)}\n")


def line(text: str) -> None:
    """A plain line on stdout (ids, URLs: things scripts capture)."""
    sys.stdout.write(printable(text) + "\n")


def info(text: str) -> None:
    """Progress and notes on stderr, so stdout stays machine-readable."""
    _console(stderr=True).print(_text(text, keep="\n\t"))


def error(text: str) -> None:
    _console(stderr=True).print(_text(f"error: {text}", keep="\n\t"), style="red")
