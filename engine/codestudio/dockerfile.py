"""Dockerfile text: checking admin-written statements and escaping values.

Engine-generated instructions use exec (JSON) form for ``RUN`` and
``COPY``, and double-quoted words with ``\\``, ``"`` and ``$`` escaped for
``ENV``/``LABEL``, so no value can end its instruction or start another.
Admin-written statements (the ``dockerfile`` block) are instructions by
design; :func:`check_statements` only lets through the instructions that
cannot break the build's structure.
"""

from __future__ import annotations

import json
import re

ALLOWED = {
    "RUN", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "LABEL",
    "EXPOSE", "VOLUME", "SHELL", "STOPSIGNAL", "HEALTHCHECK",
}
FORBIDDEN = {
    "FROM": "a FROM would discard every earlier block; set base_image in the template instead",
    "ENTRYPOINT": "the codestudio runner is the entrypoint; add an `entrypoint` block instead",
    "CMD": "the codestudio runner is the entrypoint; add an `entrypoint` block instead",
    "ONBUILD": "ONBUILD triggers are not supported in templates",
    "MAINTAINER": "MAINTAINER is deprecated; use LABEL",
}
_WORD = re.compile(r"^\s*([A-Za-z]+)\b")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def check_statements(text: str) -> list[str]:
    """Return the problems with admin-written Dockerfile statements (empty if fine)."""
    problems: list[str] = []
    if _CONTROL.search(text.replace("\r\n", "\n")):
        problems.append("contains a control character other than tab or newline")
    lines = text.replace("\r\n", "\n").split("\n")
    instruction: list[str] = []
    start = 0
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not instruction and (not stripped or stripped.startswith("#")):
            continue
        if not instruction:
            start = number
        if instruction and (not stripped or stripped.startswith("#")):
            # The parser drops comment and blank lines inside a continued
            # instruction, so the continuation goes on past them.
            continue
        instruction.append(line)
        if line.rstrip().endswith("\\"):
            continue
        problems += _check_one(" ".join(instruction), start)
        instruction = []
    if instruction:
        problems.append(
            f"line {start}: the last instruction ends with a line continuation '\\'; "
            "it would swallow the next block's first instruction"
        )
    return problems


def _check_one(instruction: str, line: int) -> list[str]:
    match = _WORD.match(instruction)
    if not match:
        return [f"line {line}: {instruction.strip()[:40]!r} does not start with a Dockerfile instruction"]
    word = match.group(1).upper()
    if word in FORBIDDEN:
        return [f"line {line}: {word} is not allowed: {FORBIDDEN[word]}"]
    if word not in ALLOWED:
        return [
            f"line {line}: unknown instruction {match.group(1)!r} "
            f"(allowed: {', '.join(sorted(ALLOWED))})"
        ]
    if word == "RUN" and re.search(r"<<-?\s*['\"]?[A-Za-z_]", instruction):
        return [f"line {line}: heredocs (RUN <<EOF) are not supported by buildah 1.28; use && or a script resource"]
    return []


def exec_form(words: list[str]) -> str:
    """A JSON array for exec-form instructions (``RUN [...]``, ``COPY [...]``)."""
    return json.dumps(list(words), ensure_ascii=True)


def quoted(value: str) -> str:
    """A double-quoted Dockerfile word for ENV/LABEL: ``\\``, ``"`` and ``$`` escaped.

    Newlines cannot be represented in a Dockerfile word and are refused.
    """
    if "\n" in value or "\r" in value:
        raise ValueError(f"value {value[:40]!r}... contains a newline, which ENV/LABEL cannot hold")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def comment(value: str) -> str:
    """Text safe inside a ``#`` comment line."""
    return _CONTROL.sub(" ", value).replace("\n", " ").replace("\r", " ")
