"""Admin-written Dockerfile statements are split exactly as buildah's parser splits them.

The reference is the official Go parser (moby/buildkit's
frontend/dockerfile/parser, through the ``dockerfile`` package); buildah's
parser (openshift/imagebuilder) applies the same continuation rule, and
tests/e2e/test_escaping.py checks the Unicode-space case with real buildah.
"""

from __future__ import annotations

import re

import dockerfile as go_parser
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from codestudio.dockerfile import FORBIDDEN, GO_SPACE, check_statements, split_instructions

#: Unicode whitespace that is not a continuation's space or tab: the parser
#: ends the instruction at "\\" followed by any of these.
UNICODE_SPACES = sorted(GO_SPACE - {"\t", "\n", "\r", "\v", "\f", " "}) + ["\u200b", "\ufeff", "\u180e"]


@pytest.mark.parametrize("space", UNICODE_SPACES, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("word", sorted(set(FORBIDDEN) - {"MAINTAINER"}))
def test_a_unicode_space_after_the_backslash_ends_the_instruction(space, word):
    text = f"RUN true \\{space}\n{word} [\"/bin/sh\"]\n"
    (first, second) = go_parser.parse_string(text)
    assert (first.cmd.upper(), second.cmd.upper()) == ("RUN", word)  # what buildah sees: two instructions
    problems = check_statements(text)
    assert problems and f"line 2: {word} is not allowed" in problems[0]


@pytest.mark.parametrize("tail", [" ", "\t", " \t  "])
def test_spaces_and_tabs_after_the_backslash_continue(tail):
    text = f"RUN true \\{tail}\nFROM x\n"
    assert [c.cmd.upper() for c in go_parser.parse_string(text)] == ["RUN"]
    assert check_statements(text) == []


@pytest.mark.parametrize(
    "text, problem",
    [
        ("FR\\\nOM x\n", "FROM is not allowed"),  # joined without a separator
        ("RUN a \\\n# comment \\\n\n  \u00a0\nENTRYPOINT x\n", None),  # comments, blank lines skipped: one RUN
        ("RUN a \\\n  # indented comment\nCMD x\n", None),
        ("ENTRYPO\u0130NT [\"x\"]\n", "is not a Dockerfile instruction"),  # Go lowercases U+0130 to 'i'
        ("RUN\u00a0FROM x\n", "is not a Dockerfile instruction"),
        ("\u00a0\u3000FROM x\n", "FROM is not allowed"),  # leading Unicode spaces are trimmed
        ("RUN --mount=type=bind,source=/,target=/host cat /host/etc/shadow\n", "RUN '--mount' is not allowed"),
        ("RUN --network=host true\n", "RUN '--network' is not allowed"),
        ("COPY --from=localhost/other /secret /s\n", "COPY '--from' is not allowed"),
        ("COPY --chown=codestudio:codestudio a /b\n", None),
        ("RUN true \\", "ends with a line continuation"),
        ("RUN echo a\\\\\nFROM x\n", "ends with an escaped backslash"),
        ("RUN echo a\\\\ \t\nRUN b\n", "ends with an escaped backslash"),
        ("RUN true \\\n\n", "ends with a line continuation"),
    ],
)
def test_statement_cases(text, problem):
    problems = check_statements(text)
    if problem is None:
        assert problems == []
    else:
        assert problems and problem in problems[0], problems


ALPHABET = st.sampled_from(
    ["RUN", "FROM", "CMD", "ENV", "ONBUILD", "ENTRYPOINT", "run", "x", "\\", "\\", " ", "\t", "\n", "\n", "#",
     "\u00a0", "\u2028", "\u3000", "\u0085", "\u2009", "\u200b", "\ufeff", "\u1680", "\u202f", "\x0b", "\x0c",
     "\r", "\r\n", "'", '"', "=", "--", "[", "]"]
)
STATEMENTS = st.lists(ALPHABET, max_size=30).map("".join)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(STATEMENTS)
def test_split_matches_the_official_parser(text):
    # The one rule buildkit changed after buildah 1.28's parser: an escaped
    # backslash at the end of a line. check_statements refuses such lines;
    # tests/e2e/test_escaping.py shows what buildah itself does with them.
    assume(not any(re.search(r"\\\\[ \t]*\r?$", line) for line in text.split("\n")))
    # A carriage return that does not end a line is a control character:
    # check_statements refuses it, so how parsers split around it never
    # reaches a build (and buildkit, unlike buildah 1.28, trims every
    # trailing \r of a line).
    assume("\r" not in text.replace("\r\n", "\n"))
    try:
        # Statements are never the first line of a Dockerfile (where a BOM is dropped).
        reference = go_parser.parse_string("# rendered by codestudio\n" + text)
    except go_parser.GoParseError:
        assume(False)
    ours = split_instructions(text)
    assert [(i.start + 1, i.end + 1) for i in ours] == [(c.start_line, c.end_line) for c in reference]
    # The package reports the instruction word as written.
    assert [i.word for i in ours] == [c.cmd or "" for c in reference]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(STATEMENTS)
def test_accepted_statements_cannot_break_the_dockerfile_structure(text):
    assume(check_statements(text) == [])
    # As the renderer places them: between engine-written instructions.
    full = f"FROM base\nUSER codestudio\n{text.strip(chr(10))}\nUSER root\nCOPY a /b\n"
    try:
        commands = [c.cmd.upper() for c in go_parser.parse_string(full)]
    except go_parser.GoParseError:
        return  # buildah would fail the build, not run something else
    assert commands[0] == "FROM" and commands[-2:] == ["USER", "COPY"]
    assert not set(commands[1:]) & {"FROM", "ENTRYPOINT", "CMD", "ONBUILD"}
