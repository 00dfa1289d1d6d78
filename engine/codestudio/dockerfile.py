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
from dataclasses import dataclass

from codestudio.text import shown

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
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

# buildah's Dockerfile parser (openshift/imagebuilder dockerfile/parser, the
# same rules as moby/buildkit frontend/dockerfile/parser), ported exactly so
# that the check sees the instructions buildah will see:
#: a line continues only when ``\`` is followed by nothing but spaces and tabs;
_CONTINUATION = re.compile(r"\\[ \t]*\Z")
#: parsers disagree on ``\\\\`` at the end of a line (buildkit since 2023: no continuation);
_ESCAPED_BACKSLASH_AT_END = re.compile(r"\\\\[ \t]*\Z")
#: the instruction word ends at the first of these (``tokenWhitespace``);
_TOKEN_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
#: ``unicode.IsSpace`` of Go: what ``TrimLeftFunc`` / ``TrimSpace`` strip.
GO_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
#: bufio.Scanner's default limit: a longer line fails the whole build.
MAX_LINE_BYTES = 64 * 1024
#: Flags an instruction may carry. RUN gets none: ``--mount`` binds paths of
#: the build host (CVE-2024-1753 on buildah before 1.35.1), ``--network``
#: and ``--security`` change the build sandbox. ``COPY --from`` reads other
#: images on this machine.
ALLOWED_FLAGS = {
    "COPY": {"--chown", "--chmod"},
    "ADD": {"--chown", "--chmod"},
    "HEALTHCHECK": {"--interval", "--timeout", "--start-period", "--start-interval", "--retries"},
}


@dataclass(frozen=True)
class Instruction:
    """One instruction as buildah's parser assembles it from continued lines."""

    start: int  # 1-based first line
    end: int  # 1-based last line
    text: str  # the lines joined as the parser joins them (continuations removed, no separator)
    continued: bool = False  # the last line asked for a continuation the text does not have

    @property
    def word(self) -> str:
        """The instruction word as written (``splitCommand``: up to the first space, tab, ``\\v``, ``\\f``, ``\\r``)."""
        return _TOKEN_WHITESPACE.split(_go_trim(self.text), maxsplit=1)[0]

    @property
    def args(self) -> str:
        parts = _TOKEN_WHITESPACE.split(_go_trim(self.text), maxsplit=1)
        return _go_trim(parts[1]) if len(parts) > 1 else ""


def _trim_left(text: str) -> str:
    i = 0
    while i < len(text) and text[i] in GO_SPACE:
        i += 1
    return text[i:]


def _go_trim(text: str) -> str:
    text = _trim_left(text)
    j = len(text)
    while j > 0 and text[j - 1] in GO_SPACE:
        j -= 1
    return text[:j]


def _trim_comment(line: str) -> str:
    # tokenComment is `^#.*$` on one line: a line starting with '#' becomes empty.
    return "" if line.startswith("#") else line


def _trim_continuation(line: str) -> tuple[str, bool]:
    """(line without its continuation, True if the instruction ends here)."""
    match = _CONTINUATION.search(line)
    if match:
        return line[: match.start()], False
    return line, True


def split_instructions(text: str) -> list[Instruction]:
    """Split Dockerfile text into instructions exactly as buildah's parser does.

    Lines are split at ``\\n`` only (a trailing ``\\r`` dropped); the first
    line of an instruction loses its leading whitespace (Go's
    ``unicode.IsSpace``) and a comment line becomes empty; an instruction
    continues while its line ends with ``\\`` and only spaces and tabs after
    it; inside a continued instruction, lines that are blank or comments
    (after leading whitespace) are skipped, and the others are appended
    without a separator after their own continuation is removed.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # "a\n" is one line for bufio.Scanner
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    out: list[Instruction] = []
    i = 0
    while i < len(lines):
        line = _trim_comment(_trim_left(lines[i]))
        i += 1
        start = i
        line, ends = _trim_continuation(line)
        if ends and line == "":
            continue
        while not ends and i < len(lines):
            more = _trim_comment(lines[i])
            i += 1
            if _trim_comment(_trim_left(more)) == "":
                continue  # isEmptyContinuationLine
            more, ends = _trim_continuation(more)
            line += more
        out.append(Instruction(start=start, end=i, text=line, continued=not ends))
    return out


def check_statements(text: str) -> list[str]:
    """Return the problems with admin-written Dockerfile statements (empty if fine)."""
    problems: list[str] = []
    if _CONTROL.search(text.replace("\r\n", "\n")):
        problems.append("contains a control character other than tab or newline")
    for number, line in enumerate(text.split("\n"), start=1):
        if len(line.encode("utf-8")) > MAX_LINE_BYTES:
            problems.append(f"line {number}: longer than {MAX_LINE_BYTES} bytes, which buildah cannot read")
    for number, line in enumerate(text.split("\n"), start=1):
        if _ESCAPED_BACKSLASH_AT_END.search(line.removesuffix("\r")) and not _trim_left(line).startswith("#"):
            problems.append(
                f"line {number}: ends with an escaped backslash ('\\\\'): buildah 1.28 reads it as a line "
                "continuation, newer Dockerfile parsers as a literal backslash; write it another way"
            )
    for instruction in split_instructions(text):
        if instruction.continued:
            problems.append(
                f"line {instruction.start}: the last instruction ends with a line continuation '\\'; "
                "it would swallow the next block's first instruction"
            )
            continue
        problems += _check_one(instruction)
    return problems


def _check_one(instruction: Instruction) -> list[str]:
    line = instruction.start
    word = instruction.word
    if not word.isascii():
        # Non-ASCII letters are refused too: Go lowercases 'İ' (U+0130) to 'i',
        # so 'ENTRYPOİNT' would be an ENTRYPOINT to buildah.
        return [f"line {line}: {shown(word, 40)} is not a Dockerfile instruction (instruction words are ASCII letters)"]
    upper = word.upper()
    if upper in FORBIDDEN:
        return [f"line {line}: {upper} is not allowed: {FORBIDDEN[upper]}"]
    if upper not in ALLOWED:
        return [f"line {line}: unknown instruction {word!r} (allowed: {', '.join(sorted(ALLOWED))})"]
    allowed_flags = ALLOWED_FLAGS.get(upper, set())
    for token in _TOKEN_WHITESPACE.split(instruction.args):
        if not token.startswith("--"):
            break
        if token == "--":
            break
        flag = token.split("=", 1)[0]
        if flag not in allowed_flags:
            what = ", ".join(sorted(allowed_flags)) if allowed_flags else "none"
            return [f"line {line}: {upper} {shown(flag, 40)} is not allowed in templates (allowed flags: {what})"]
    if upper == "RUN" and re.search(r"<<-?\s*['\"]?[A-Za-z_]", instruction.text):
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
