"""The editor's document of a template (header fields and blocks) and its round trip to the stored YAML.

A save applies the edited document to the stored YAML as a minimal change
with a round-trip YAML library (ruamel.yaml): keys keep their order,
comments stay, untouched blocks and values keep their text.
"""

from __future__ import annotations

import copy
import io
import json
import re
from typing import Any

from codestudio.errors import UsageError

#: Header fields the editor edits (permissions are grants, edited in the General tab).
HEADER_FIELDS = ("label", "description", "base_image")


class EditError(UsageError):
    """Bad editor input; ``field`` names the request field."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


def check_document(template_id: str, document: Any, origins: Any) -> None:
    if not isinstance(document, dict):
        raise EditError("document", "must be an object with the template's fields and blocks")
    if document.get("id", template_id) != template_id:
        raise EditError("document.id", f"a template's id cannot change (it is {template_id!r})")
    for key in document:
        if key not in ("id", "blocks", *HEADER_FIELDS):
            raise EditError(f"document.{key}", "not a field the editor saves (grants are changed in the General tab)")
    for key in HEADER_FIELDS:
        if document.get(key) is not None and not isinstance(document[key], str):
            raise EditError(f"document.{key}", "must be a string")
    blocks = document.get("blocks", [])
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise EditError("document.blocks", "must be a list of blocks, each an object with a 'type'")
    if origins is not None:
        if not isinstance(origins, list) or len(origins) != len(blocks) or not all(
                o is None or (isinstance(o, int) and not isinstance(o, bool) and o >= 0) for o in origins):
            raise EditError("origins", "must list, for each block, its index when the template was opened (or null)")


def _yaml(text: str):
    """A round-trip loader/dumper whose indentation follows the document's own."""
    from ruamel.yaml import YAML
    from ruamel.yaml.util import load_yaml_guess_indent

    _, sequence, offset = load_yaml_guess_indent(text) if text.strip() else (None, None, None)
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 1 << 16  # never re-wrap long lines
    offset = offset or 0
    # A "---" starting the document is kept.
    first = next((line for line in text.splitlines() if line.strip() and not line.startswith("#")), "")
    y.explicit_start = first.startswith("---")
    y.indent(mapping=_mapping_indent(text), sequence=max(sequence or 2, offset + 2), offset=offset)
    return y


def _mapping_indent(text: str) -> int:
    """The indentation of the first nested mapping (ruamel guesses only the sequences'); 2 when there is none."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for line, following in zip(lines, lines[1:]):
        if re.match(r"^[A-Za-z_][\w-]*:\s*(#.*)?$", line):
            stripped = following.lstrip()
            if not stripped.startswith("-"):
                return len(following) - len(stripped) or 2
    return 2


def _plain(value: Any) -> Any:
    """ruamel's node types -> plain JSON-like values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return str(value)  # dates and other YAML scalars: their text


def _same(a: Any, b: Any) -> bool:
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b if not (isinstance(a, (int, float)) and isinstance(b, (int, float))) else a == b


def _node(value: Any) -> Any:
    """A new value as ruamel nodes: multi-line strings as literal blocks (``|``)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

    if isinstance(value, dict):
        m = CommentedMap()
        for k, v in value.items():
            m[k] = _node(v)
        return m
    if isinstance(value, list):
        return CommentedSeq([_node(v) for v in value])
    if isinstance(value, str) and _needs_escapes(value):
        return DoubleQuotedScalarString(value)
    if isinstance(value, str) and "\n" in value:
        return LiteralScalarString(value)
    return value


def _needs_escapes(text: str) -> bool:
    """Characters a plain or block scalar would not carry as they are (YAML reads NEL, LS, PS as line breaks)."""
    import unicodedata

    return any(c != "\n" and unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs") for c in text)


def _merge(old: Any, new: Any) -> Any:
    """``new`` applied to ``old`` keeping every part of ``old`` that did not change."""
    from ruamel.yaml.scalarstring import (DoubleQuotedScalarString, LiteralScalarString, FoldedScalarString,
                                          SingleQuotedScalarString)

    if _same(_plain(old), new):
        return old
    if isinstance(old, dict) and isinstance(new, dict):
        _update_map(old, new)
        return old
    if isinstance(old, list) and isinstance(new, list):
        for i in range(min(len(old), len(new))):
            old[i] = _merge(old[i], new[i])
        del old[len(new):]
        for extra in new[len(old):]:
            old.append(_node(extra))
        return old
    if isinstance(new, str) and not _needs_escapes(new):
        for style in (LiteralScalarString, FoldedScalarString, DoubleQuotedScalarString, SingleQuotedScalarString):
            if isinstance(old, style):
                return style(new)
    return _node(new)


def _update_map(old: dict, new: dict) -> None:
    for key in [k for k in old if k not in new]:
        del old[key]
    for key, value in new.items():
        old[key] = _merge(old[key], value) if key in old else _node(value)


def apply_document(text: str, document: dict, origins: list[int | None] | None = None) -> str:
    """The stored YAML ``text`` with the editor's ``document`` applied as a minimal change.

    ``document`` holds the header fields (:data:`HEADER_FIELDS`, ``None`` or
    ``""`` removes one) and ``blocks``; ``origins[i]`` is the index block
    ``i`` had in ``text`` (``None`` for a new block), so a moved, duplicated
    or edited block keeps its comments and the text of what did not change.
    Returns ``text`` itself when nothing changed.
    """
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    y = _yaml(text)
    doc = y.load(text) if text.strip() else None
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, dict):
        raise EditError("document", "the stored template is not a YAML mapping; upload a fixed file instead")
    before = _plain(doc)
    for key in HEADER_FIELDS:
        value = document.get(key)
        if value is None or value == "":
            doc.pop(key, None)
        elif key in doc:
            doc[key] = _merge(doc[key], value)
        else:
            _insert_header(doc, key, value)
    blocks = document.get("blocks", [])
    old_blocks = doc.get("blocks")
    old_list = old_blocks if isinstance(old_blocks, list) else []
    origins = origins if origins is not None else [None] * len(blocks)
    used: set[int] = set()
    items = []
    for block, origin in zip(blocks, origins):
        if origin is not None and 0 <= origin < len(old_list) and isinstance(old_list[origin], dict):
            node = old_list[origin]
            if origin in used:  # a duplicate: a copy of the original, comments included
                node = copy.deepcopy(node)
            used.add(origin)
            items.append(_merge(node, block))
        else:
            items.append(_node(block))
    if not _same([_plain(i) for i in items], _plain(old_list)) or len(items) != len(old_list):
        if isinstance(old_blocks, CommentedSeq):
            if [id(i) for i in items] != [id(i) for i in old_list]:
                old_blocks.ca.items.clear()  # comments after moved items would land on other blocks
            old_blocks[:] = items
        else:
            doc["blocks"] = CommentedSeq(items)
    if _same(_plain(doc), before):
        return text
    out = io.StringIO()
    y.dump(doc, out)
    return out.getvalue()


def _insert_header(doc: dict, key: str, value: Any) -> None:
    """A new header field goes after the ones before it in the usual order (id, label, ...)."""
    order = ("id", "label", "description", "base_image", "permissions", "blocks")
    position = 0
    for i, existing in enumerate(doc):
        if existing in order and order.index(existing) < order.index(key):
            position = i + 1
    doc.insert(position, key, _node(value))


def document_of(text: str) -> tuple[dict, list[int]]:
    """The editor's view of a template's YAML text: (document, origins)."""
    from codestudio.template import parse_yaml

    data, _lines = parse_yaml(text, "template")
    if not isinstance(data, dict):
        data = {}
    doc = {k: data.get(k) for k in ("id", *HEADER_FIELDS)}
    blocks = data.get("blocks") if isinstance(data.get("blocks"), list) else []
    doc["blocks"] = [json.loads(json.dumps(b, default=str)) for b in blocks]
    return doc, list(range(len(blocks)))
