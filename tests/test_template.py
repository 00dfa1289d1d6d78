"""Template validation: every kind of bad input is rejected with file, block, field and value."""

from __future__ import annotations

import os

import pytest

from codestudio.errors import TemplateError
from codestudio.plan import plan_template


def problems_of(path, blocks) -> str:
    with pytest.raises(TemplateError) as info:
        plan_template(path, blocks)
    assert info.value.exit_code == 2
    assert str(path) in str(info.value)
    return "\n".join(info.value.problems)


def test_valid_template_applies_in_order(write_template, blocks):
    path = write_template(
        """
        id: ok
        blocks:
          - type: dockerfile
            statements: RUN true
          - type: entrypoint
            label: API
            command: [python3, -m, http.server, "8000"]
            port: 8000
        """
    )
    template, state = plan_template(path, blocks)
    assert [b.type for b in template.blocks] == ["dockerfile", "entrypoint"]
    assert state.all_ports == [8000]
    assert state.effective_probe().kind == "tcp" and state.effective_probe().port == 8000


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("  - type: jupyter-lab\n", ["blocks[0]", "unknown block type 'jupyter-lab'", "Installed types"]),
        ("  - type: dockerfil\n    statements: RUN true\n", ["did you mean 'dockerfile'"]),
        ("  - type: dockerfile\n    statements: RUN true\n    colour: red\n", ["blocks[0] (type: dockerfile)", "unknown field 'colour'"]),
        ("  - type: entrypoint\n    label: x\n    command: [a]\n    port: '80a'\n", ["field 'port'", "'80a'"]),
        ("  - type: entrypoint\n    label: x\n    command: [a]\n    port: 70000\n", ["field 'port'", "65535", "70000"]),
        ("  - type: entrypoint\n    label: x\n    command: [a]\n    port: 0\n", ["field 'port'"]),
        ("  - type: entrypoint\n    label: x\n    command: [a]\n    port: 80\n    proxied_subpath: /foo\n", ["field 'proxied_subpath'", "'/foo'"]),
        ("  - type: entrypoint\n    label: \"two\\nlines\"\n    command: [a]\n", ["field 'label'", "control character"]),
        ("  - type: action\n    name: go\n    label: \"bell\\a\"\n    command: x\n", ["field 'label'"]),
        ("  - type: file-sync\n    exclusions: ['*.pyc', '!keep.pyc']\n", ["field 'exclusions'", "'!keep.pyc'"]),
        ("  - type: dockerfile\n    statements: FROM debian\n", ["field 'statements'", "FROM is not allowed"]),
        ("  - type: dockerfile\n    statements: \"RUN true \\\\\\n\"\n", ["line continuation"]),
        ("  - type: dockerfile\n    statements: \"apt-get install x\"\n", ["unknown instruction"]),
        ("  - type: dockerfile\n    statements: RUN true\n    resources: [../etc/passwd]\n", ["field 'resources.0'", "'..'"]),
        ("  - type: dockerfile\n    statements: RUN true\n    resources: [/etc/passwd]\n", ["field 'resources.0'", "absolute paths"]),
        ("  - type: dockerfile\n    statements: RUN true\n    resources: ['${nope}/x']\n", ["unknown variable"]),
        ("  - type: kubernetes\n    readiness_url: 'http://x y'\n", ["field 'readiness_url'"]),
        ("  - []\n", ["blocks[0]", "mapping with a 'type'"]),
        ("  - {label: no type}\n", ["field 'type' is required"]),
    ],
)
def test_bad_block_input(write_template, blocks, body, expected):
    path = write_template("id: bad\nblocks:\n" + body)
    text = problems_of(path, blocks)
    for fragment in expected:
        assert fragment in text, text


def test_problems_carry_yaml_line(write_template, blocks):
    path = write_template("id: lines\nblocks:\n  - type: dockerfile\n    statements: RUN true\n  - type: entrypoint\n    label: x\n    command: [a]\n    port: 99999\n")
    assert "line 8:" in problems_of(path, blocks)


def test_duplicate_action_names(write_template, blocks):
    path = write_template(
        """
        id: dup
        blocks:
          - {type: action, name: go, command: "true"}
          - {type: action, name: go, command: "false"}
        """
    )
    text = problems_of(path, blocks)
    assert "blocks[1] (type: action)" in text and "already used by blocks[0] (type: action)" in text


def test_two_entrypoints_on_one_port_name_both_blocks(write_template, blocks):
    path = write_template(
        """
        id: ports
        blocks:
          - {type: entrypoint, label: a, command: [a], port: 8080}
          - {type: entrypoint, label: b, command: [b], port: 8080}
        """
    )
    text = problems_of(path, blocks)
    assert "blocks[1] (type: entrypoint): field 'port': port 8080 is already used by blocks[0] (type: entrypoint)" in text


@pytest.mark.parametrize("template_id", ["Upper", "-lead", "has space", "a" * 64, "dot.ted", ""])
def test_template_id_must_be_a_slug(write_template, blocks, template_id):
    path = write_template(f"id: {template_id!r}\nblocks: []\n")
    assert "field 'id'" in problems_of(path, blocks)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty"),
        ("   \n# only a comment\n", "empty"),
        ("id: x\nblocks: [\n", "invalid YAML"),
        ("id: x\nid: y\n", "duplicate key 'id'"),
        ("- just\n- a list\n", "a template is a mapping"),
        ("id: x\nblocks: {type: dockerfile}\n", "field 'blocks'"),
        ("id: x\nbogus: 1\n", "unknown field 'bogus'"),
    ],
)
def test_broken_files(write_template, blocks, text, expected):
    path = write_template(text)
    assert expected in problems_of(path, blocks)


def test_missing_file(tmp_path, blocks):
    with pytest.raises(TemplateError, match="file not found"):
        plan_template(tmp_path / "nope.yaml", blocks)


def test_symlinked_resource_pointing_outside_is_refused(tmp_path, write_template, blocks):
    (tmp_path / "files").mkdir()
    os.symlink("/etc/hostname", tmp_path / "files" / "host")
    path = write_template("id: link\nblocks:\n  - {type: dockerfile, statements: RUN true, resources: [files/host]}\n")
    assert "outside ${template.resources}" in problems_of(path, blocks)


def test_symlink_inside_resource_folder_pointing_outside_is_refused(tmp_path, write_template, blocks):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "ok.txt").write_text("ok")
    os.symlink("/etc", tmp_path / "files" / "etc")
    path = write_template("id: link\nblocks:\n  - {type: dockerfile, statements: RUN true, resources: [files]}\n")
    assert "'files': files/etc resolves to /etc, outside ${template.resources}" in problems_of(path, blocks)


def test_resources_under_dip_home_and_install_dir(tmp_path, write_template, blocks, codestudio_home):
    (codestudio_home / "config").mkdir()
    (codestudio_home / "config" / "pip.conf").write_text("[global]\n")
    path = write_template(
        """
        id: roots
        blocks:
          - type: dockerfile
            statements: COPY pip.conf /etc/pip.conf
            resources: ["${dip.home}/config/pip.conf", "${dku.install.dir}/runner/runner.py"]
            run_as_root: true
        """
    )
    _, state = plan_template(path, blocks)
    raw = state.groups[0].steps[0]
    assert set(raw.resources) == {"pip.conf", "runner.py"}


def test_unknown_standard_block_names_its_distribution(write_template, monkeypatch):
    from codestudio.plugins import load_plugins

    monkeypatch.setenv("CODESTUDIO_DISABLED_PLUGINS", "codestudio-vscode")
    path = write_template("id: v\nblocks:\n  - type: vscode\n")
    text = problems_of(path, load_plugins())
    assert "codestudio-vscode" in text


def test_all_problems_reported_at_once(write_template, blocks):
    path = write_template(
        """
        id: many
        blocks:
          - {type: entrypoint, label: a, command: [a], port: 70000}
          - {type: nope}
          - {type: file-sync, exclusions: ["!x"]}
        """
    )
    with pytest.raises(TemplateError) as info:
        plan_template(path, blocks)
    assert len(info.value.problems) == 3


def test_block_whose_distribution_is_not_installed_names_it(write_template):
    from codestudio.plugins import load_plugins

    nothing_installed = load_plugins(entry_points=[])
    path = write_template("id: v\nblocks:\n  - type: jupyterlab\n")
    text = problems_of(path, nothing_installed)
    assert "needs the distribution codestudio-jupyterlab, which is not installed" in text
    assert "pip install codestudio-jupyterlab" in text


def test_fifo_resource_is_refused_not_hung_on(tmp_path, write_template, blocks):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "ok.txt").write_text("ok")
    os.mkfifo(tmp_path / "files" / "pipe")
    direct = write_template("id: f\nblocks:\n  - {type: dockerfile, statements: RUN true, resources: [files/pipe]}\n")
    assert "not a regular file or folder" in problems_of(direct, blocks)
    folder = write_template("id: f\nblocks:\n  - {type: dockerfile, statements: RUN true, resources: [files]}\n", "b.yaml")
    assert "pipe is not a regular file" in problems_of(folder, blocks)


@pytest.mark.parametrize("make", ["fifo", "device", "huge", "folder"])
def test_template_path_that_is_not_a_small_regular_file(tmp_path, blocks, make):
    path = tmp_path / "t.yaml"
    if make == "fifo":
        os.mkfifo(path)
    elif make == "device":
        path = "/dev/zero"
    elif make == "huge":
        path.write_text("id: big\ndescription: " + "x" * (5 << 20) + "\n")
    else:
        path.mkdir()
    text = problems_of(path, blocks)
    assert "not a regular file" in text or "larger than" in text


def test_starter_files_may_not_write_git_metadata(write_template, blocks):
    path = write_template("id: g\nblocks:\n  - {type: starter-files, files: {.git/config: x}}\n")
    assert "'.git' is reserved" in problems_of(path, blocks)
