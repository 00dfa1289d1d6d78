"""User-chosen text reaches the terminal as text: no rich markup, control characters escaped."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from codestudio import access
from codestudio.cli import output

REPO = Path(__file__).resolve().parent.parent
HOSTILE = ["my notes[/]", "[link=https://evil.example]click[/link]", "[white on white]hidden[/]", "[bold red]"]


@pytest.mark.parametrize("value", HOSTILE)
def test_table_cells_and_titles_are_plain_text(value, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    output.table([{"name": value, "n": 1}], ["name", "n"], as_json=False, title=value)
    out = capsys.readouterr().out
    assert out.count(value) == 2  # the cell and the title, exactly as written
    assert "\x1b]8;" not in out  # no terminal hyperlink


@pytest.mark.parametrize("show", [output.info, output.error])
def test_messages_are_plain_text(show, capsys):
    show("studio [link=https://evil.example]x[/link] and my notes[/]")
    assert "studio [link=https://evil.example]x[/link] and my notes[/]" in capsys.readouterr().err


@pytest.mark.parametrize(
    "value, shown",
    [
        ("a\x1b]8;;https://evil.example\x07b", "a\\x1b]8;;https://evil.example\\x07b"),
        ("up\x1b[2Aclear\x1b[2J", "up\\x1b[2Aclear\\x1b[2J"),
        ("bell\x07cr\rdel\x7fnel\x85", "bell\\x07cr\\rdel\\x7fnel\\x85"),
        ("rtl\u202eevil\u2066", "rtl\\u202eevil\\u2066"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
    ],
)
def test_control_characters_are_shown_escaped_everywhere(value, shown, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    output.table([{"name": value}], ["name"], as_json=False)
    output.data({"name": value}, as_json=False)
    output.line(value)
    out = capsys.readouterr().out
    assert out.count(shown) == 3
    output.info(value)
    output.error(value)
    err = capsys.readouterr().err
    assert err.count(shown) == 2
    for c in value:
        if not c.isprintable():
            assert c not in out and c not in err


def test_messages_keep_their_line_breaks(capsys):
    output.error("template.yaml: invalid template\n  line 2: bad")
    assert "template.yaml: invalid template\n  line 2: bad" in capsys.readouterr().err


def test_json_output_keeps_values_exact(capsys):
    output.table([{"name": "my notes[/]\x1b"}], ["name"], as_json=True)
    assert '"my notes[/]\\u001b"' in capsys.readouterr().out


def test_studio_list_shows_a_hostile_studio_name(tmp_path, monkeypatch, capsys):
    from codestudio.cli import main
    from codestudio.runtime import studios
    from codestudio.templates_store import add_template

    monkeypatch.setattr(access, "os_user", lambda: "alice")
    monkeypatch.setattr(access, "os_groups", lambda user: set())
    folder = tmp_path / "tpl"
    shutil.copytree(REPO / "examples" / "files", folder / "files")
    shutil.copy(REPO / "examples" / "advanced.yaml", folder / "advanced.yaml")
    who = access.identify()
    add_template(who, folder / "advanced.yaml")
    from codestudio.projects import create_project

    create_project(who, "PROJ")
    studios.create_studio(who, "PROJ", "my notes[/]", "advanced-example")
    studios.create_studio(who, "PROJ", "[link=https://evil.example]x[/link] [white on white]y", "advanced-example")
    monkeypatch.setenv("COLUMNS", "400")  # one table row per line
    for args in (["studio", "list"], ["studio", "list", "--all"]):
        try:
            main(args)
        except SystemExit as exc:  # main() exits only on errors
            pytest.fail(f"exit {exc.code}: {capsys.readouterr().err}")
        out = capsys.readouterr().out
        assert "my notes[/]" in out
        assert "[link=https://evil.example]x[/link] [white on white]y" in out
