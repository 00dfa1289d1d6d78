"""Showing values that users chose, safely: printable, and bounded.

Names, labels and messages come from users (a studio named ``my notes[/]``,
a label holding an escape sequence). Everything printed for people goes
through :func:`printable`, which shows control and format characters as
escapes (``\\x1b``, ``\\u202e``) so no value can move the cursor, set a
terminal hyperlink, reorder text or hide it. :func:`shown` is the bounded
``repr`` error messages use: it stops building the text once it has enough,
so a huge value (a YAML alias bomb) costs nothing to mention.
"""

from __future__ import annotations

import re
import reprlib
import unicodedata
from typing import Any

#: Characters never shown as they are: C0 and C1 controls, DEL, and the
#: Unicode line/paragraph separators. Format characters (category Cf: bidi
#: overrides, zero-width characters) are found by category below.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _escape(c: str) -> str:
    code = ord(c)
    if c == "\t":
        return "\\t"
    if c == "\n":
        return "\\n"
    if c == "\r":
        return "\\r"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _unsafe(c: str) -> bool:
    return bool(_CONTROL.match(c)) or (ord(c) > 0x7F and unicodedata.category(c) in ("Cf", "Co", "Cn", "Cs", "Zl", "Zp"))


def printable(text: Any, *, keep: str = "") -> str:
    """``text`` with every control or format character shown as an escape.

    :param keep: characters left as they are (messages keep ``"\\n"`` and ``"\\t"``).
    """
    text = str(text)
    if not _CONTROL.search(text) and not _NON_ASCII.search(text):
        return text
    return "".join(_escape(c) if c not in keep and _unsafe(c) else c for c in text)


_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = _REPR.maxdeque = _REPR.maxarray = 6
_REPR.maxdict = 6
_REPR.maxstring = 90
_REPR.maxlong = 40
_REPR.maxother = 90


def shown(value: Any, width: int = 80) -> str:
    """A ``repr`` of ``value`` of at most ``width`` characters, built without
    formatting more of the value than that (nested or shared containers,
    long strings and recursive values are cut while being written)."""
    text = _REPR.repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
