"""Small templates cannot tie up CPU or memory (issue 9 item 8).

Limits (docs/templates.md, "Limits") are checked from the YAML event stream,
before anything is built: 1 MiB, 32 levels, 100,000 nodes with every alias
counted as what it expands to, 1,000 blocks. Clash checks are lookups, so
planning grows linearly with the number of blocks (counted in executed
lines, not timed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from codestudio.errors import TemplateError
from codestudio.plan import plan_template

ROOT = Path(__file__).resolve().parent.parent

#: The 9^9 "billion laughs": 387 million strings once expanded, in a few hundred bytes.
BOMB = """id: bomb
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
label: [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def validate(path: Path) -> subprocess.CompletedProcess:
    # A subprocess with a timeout: on code without the limits these run for minutes or run out of memory.
    return subprocess.run([sys.executable, "-m", "codestudio", "validate", str(path)], capture_output=True,
                          text=True, env=dict(os.environ), timeout=60)


def problems_of(path: Path, blocks) -> list[str]:
    with pytest.raises(TemplateError) as info:
        plan_template(path, blocks)
    assert info.value.exit_code == 2 and str(path) in str(info.value)
    return info.value.problems


def test_alias_bomb_is_refused_before_it_expands(write_template, blocks):
    path = write_template(BOMB)
    assert len(BOMB) < 500
    (problem,) = problems_of(path, blocks)
    assert problem.startswith("line 7: more than 100000 YAML nodes, counting each alias as what it expands to")
    result = validate(path)
    assert result.returncode == 2 and "more than 100000 YAML nodes" in result.stderr and len(result.stderr) < 500


def test_a_smaller_bomb_in_a_field_is_refused_by_the_node_limit_not_by_the_field(write_template, blocks):
    # 9^6 = 531,441 strings: code that expands it reports the label's type instead.
    path = write_template("\n".join(BOMB.splitlines()[:6]) + "\nlabel: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n")
    (problem,) = problems_of(path, blocks)
    assert "more than 100000 YAML nodes" in problem


def test_aliases_within_the_limits_are_fine(write_template, blocks):
    path = write_template(
        """
        id: anchors
        blocks:
          - &tool {type: action, name: one, command: "echo one"}
          - {type: action, name: two, command: "echo two", description: &d "shared text"}
          - {type: action, name: three, command: "echo three", description: *d}
        """
    )
    _, state = plan_template(path, blocks)
    assert [a.description for _, a in state.actions] == ["", "shared text", "shared text"]


@pytest.mark.parametrize("text", ["id: x\nlabel: &a [*a]\n", "id: x\nlabel: &a {k: *a}\n"])
def test_recursive_alias_is_refused(write_template, blocks, text):
    (problem,) = problems_of(write_template(text), blocks)
    assert "line 2: the alias *a refers to a node it is inside" in problem


def test_a_list_nested_5000_deep_is_exit_2_not_a_recursion_error(write_template):
    path = write_template("id: deep\nblocks: " + "[" * 5000 + "]" * 5000 + "\n")
    result = validate(path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "line 2: nested deeper than 32 levels" in result.stderr and "Traceback" not in result.stderr


def test_block_style_nesting_and_aliases_count_towards_the_depth(write_template, blocks):
    deep = "id: deep\nblocks:\n" + "  - " * 40 + "x\n"
    assert "nested deeper than 32 levels" in problems_of(write_template(deep), blocks)[0]
    # 20 levels, used 20 levels down: 40 once expanded.
    inner = "[" * 20 + "]" * 20
    via_alias = f"id: deep\na: &a {inner}\nlabel: " + "[" * 18 + "*a" + "]" * 18 + "\n"
    assert "nested deeper than 32 levels" in problems_of(write_template(via_alias), blocks)[0]


def test_20000_action_blocks_are_refused_at_the_block_limit(write_template):
    blocks_yaml = "".join(f"  - {{type: action, name: a{i}, command: x}}\n" for i in range(20_000))
    path = write_template("id: many\nblocks:\n" + blocks_yaml)
    result = validate(path)
    assert result.returncode == 2 and "line 1003: more than 1000 blocks (the limit)" in result.stderr


def test_template_size_limit(write_template, blocks):
    path = write_template("id: big\ndescription: " + "x" * (1 << 20) + "\n")
    assert "larger than 1 MiB" in problems_of(path, blocks)[0]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("id: x\nlabel: " + "1" * 5000 + "\n", "invalid YAML value"),  # int() refuses more than 4300 digits
        ("id: x\n? [a, b]\n: c\n", "a mapping key must be a plain value, not list"),
    ],
)
def test_values_pyyaml_cannot_build_are_template_errors(write_template, text, expected):
    result = validate(write_template(text))
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr


def test_messages_show_a_bounded_part_of_a_huge_value(write_template, blocks):
    from codestudio.text import shown

    a = ["lol"] * 9
    for _ in range(8):
        a = [a] * 9  # 9^9 strings through shared lists: repr() would build gigabytes
    assert len(shown(a)) <= 80
    assert len(shown("x" * 10_000_000)) <= 80
    assert len(shown(b"\0" * 10_000_000)) <= 80
    path = write_template("id: x\nlabel: [" + ", ".join(["long-item-" * 5] * 5000) + "]\n")
    (problem,) = problems_of(path, blocks)
    assert "field 'label'" in problem and len(problem) < 300


def _executed_lines(path: Path, blocks) -> int:
    """Lines of codestudio and its plugins executed while planning ``path``."""
    roots = (str(ROOT / "engine"), str(ROOT / "plugins"))
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        if not frame.f_code.co_filename.startswith(roots):
            return None
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        plan_template(path, blocks)
    finally:
        sys.settrace(None)
    return count


def test_clash_checks_grow_linearly_with_the_block_count(tmp_path, blocks):
    """Twice the blocks must cost about twice the work (a quadratic check costs four times)."""

    def template(n: int) -> Path:
        folder = tmp_path / str(n)
        (folder / "files").mkdir(parents=True)
        lines = [f"id: many-{n}", "blocks:"]
        for i in range(n):
            (folder / "files" / f"f{i}.txt").write_text("x")
            lines += [
                f"  - {{type: action, name: a{i}, command: x}}",
                f"  - {{type: entrypoint, label: e{i}, command: [x], port: {2000 + i}, expose_html: false}}",
                f"  - {{type: dockerfile, statements: 'RUN true', resources: [files/f{i}.txt]}}",
                f"  - {{type: starter-files, files: {{f{i}.txt: x}}}}",
            ]
        path = folder / "t.yaml"
        path.write_text("\n".join(lines) + "\n")
        return path

    small, large = _executed_lines(template(60), blocks), _executed_lines(template(120), blocks)
    assert large / small < 2.5, (small, large)
