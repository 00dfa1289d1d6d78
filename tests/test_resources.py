"""Template resources stay inside their roots, through every symlink (issue 9 items 5 and 6).

Attacks: a directory symlink inside the template folder that leads to a
folder holding a symlink to a host file (``res/link -> ../other``,
``other/secret -> /host/file``), and ``${dip.home}`` resources naming the
state DB, the gateway folder, zones and the rest of the engine's state.
Each is refused at validate (exit 2, naming file, block and field), by
render, by starter files and by ``template add`` (nothing stored).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from codestudio import access
from codestudio.errors import TemplateError
from codestudio.plan import plan_template
from codestudio.resources import ResourceError, ResourceResolver

HOST_SECRET = "host secret: must never leave the host\n"


def cs(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codestudio", *args], capture_output=True, text=True,
                          env=dict(os.environ), cwd=cwd, timeout=120)


def write(folder: Path, blocks_yaml: str, name: str = "t.yaml", template_id: str = "res") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"id: {template_id}\nblocks:\n" + textwrap.indent(textwrap.dedent(blocks_yaml).strip("\n"), "  ") + "\n")
    return path


def problems_of(path: Path, blocks) -> str:
    with pytest.raises(TemplateError) as info:
        plan_template(path, blocks)
    assert info.value.exit_code == 2 and str(path) in str(info.value)
    return "\n".join(info.value.problems)


@pytest.fixture
def linked(tmp_path) -> Path:
    """tpl/res/link -> ../other, tpl/other/secret -> a host file outside tpl/."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret.txt").write_text(HOST_SECRET)
    tpl = tmp_path / "tpl"
    (tpl / "res").mkdir(parents=True)
    (tpl / "res" / "ok.txt").write_text("ok\n")
    (tpl / "other").mkdir()
    os.symlink("../other", tpl / "res" / "link")
    os.symlink(host / "secret.txt", tpl / "other" / "secret")
    return tpl


@pytest.fixture
def admin(monkeypatch):
    monkeypatch.setattr(access, "os_user", lambda: "alice")
    monkeypatch.setattr(access, "os_groups", lambda user: set())
    return access.identify()


BLOCKS = {
    "dockerfile": "- {type: dockerfile, statements: 'COPY res /opt/res', resources: [res]}",
    "starter-files": "- {type: starter-files, resources: [res]}",
}


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_directory_symlink_to_a_folder_holding_a_host_link_is_refused_at_validate(linked, blocks, block):
    path = write(linked, BLOCKS[block])
    problems = problems_of(path, blocks)
    assert f"blocks[0] (type: {block}): field 'resources.0'" in problems
    assert "res/link/secret resolves to" in problems and "outside ${template.resources}" in problems
    result = cs("validate", str(path))
    assert result.returncode == 2 and "res/link/secret" in result.stderr and str(path) in result.stderr


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_template_add_stores_nothing_through_the_link(linked, admin, codestudio_home, block):
    from codestudio.templates_store import add_template

    path = write(linked, BLOCKS[block])
    with pytest.raises(TemplateError, match="res/link/secret"):
        add_template(admin, path)
    stored = codestudio_home / "templates"
    leaked = [p for p in stored.rglob("*") if p.is_file() and HOST_SECRET in p.read_text(errors="replace")] if stored.exists() else []
    assert leaked == []
    assert not (stored / "res").exists() or not any((stored / "res").iterdir())


def test_render_refuses_the_link_too(linked, tmp_path, blocks):
    from codestudio.render import render_template, write_rendered

    path = write(linked, BLOCKS["dockerfile"])
    with pytest.raises(TemplateError, match="res/link/secret"):
        write_rendered(render_template(path, blocks=blocks), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_links_that_stay_inside_are_followed_like_a_copy(tmp_path, blocks, admin):
    """A symlinked folder inside the root is content like any other: render, starter
    files and the stored copy all hold the same real files, under the names written."""
    from codestudio.render import render_template
    from codestudio.templates_store import add_template

    tpl = tmp_path / "tpl"
    (tpl / "res").mkdir(parents=True)
    (tpl / "other").mkdir()
    (tpl / "other" / "inner.txt").write_text("inner\n")
    os.symlink("../other", tpl / "res" / "link")
    os.symlink("res", tpl / "alias")
    path = write(tpl, """
        - {type: dockerfile, statements: 'COPY alias /opt/alias', resources: [alias]}
        - {type: starter-files, resources: [res]}
        """)
    rendered = render_template(path, blocks=blocks)
    assert rendered.context_files["alias/link/inner.txt"][0] == b"inner\n"
    _, state = plan_template(path, blocks)
    assert {f.path: f.content for _, f in state.starter_files} == {"res/link/inner.txt": b"inner\n"}
    stored, _ = add_template(admin, path)
    copy = stored.path.parent
    assert (copy / "alias" / "link" / "inner.txt").read_text() == "inner\n"
    assert not any(p.is_symlink() for p in copy.rglob("*"))
    again = render_template(stored.path, blocks=blocks)
    assert again.dockerfile == rendered.dockerfile and again.context_files == rendered.context_files


def test_symlink_loops_and_specials_are_refused(tmp_path, blocks):
    tpl = tmp_path / "tpl"
    (tpl / "res").mkdir(parents=True)
    os.symlink(".", tpl / "res" / "loop")
    assert "res/loop is a symlink loop" in problems_of(write(tpl, BLOCKS["dockerfile"]), blocks)
    os.unlink(tpl / "res" / "loop")
    os.mkfifo(tpl / "res" / "fifo")
    assert "res/fifo is not a regular file" in problems_of(write(tpl, BLOCKS["dockerfile"]), blocks)


def test_a_symlink_swapped_in_after_the_check_is_refused_when_read(tmp_path):
    host = tmp_path / "host.txt"
    host.write_text(HOST_SECRET)
    tpl = tmp_path / "tpl"
    (tpl / "res").mkdir(parents=True)
    (tpl / "res" / "a.txt").write_text("a\n")
    resolver = ResourceResolver(tpl)
    resource = resolver.resolve("res")
    (tpl / "res" / "a.txt").unlink()
    os.symlink(host, tpl / "res" / "a.txt")
    with pytest.raises(ResourceError, match="changed since it was checked"):
        resolver.contents(resource.path)


# --------------------------------------------------------------------------
# ${dip.home}: only config/ and resources/ (issue 9 item 6)


@pytest.fixture
def home(codestudio_home) -> Path:
    for rel in ("state.db", "state.db-wal", "state.db-shm", "gateway/nginx.conf", "zones/users/bob/user-versioned/notes.md",
                "studios/s1/log.txt", "locks/studio-s1.lock", "templates/other/1/t.yaml", "config/pip.conf",
                "resources/shared.txt"):
        (codestudio_home / rel).parent.mkdir(parents=True, exist_ok=True)
        (codestudio_home / rel).write_text(f"{rel}\n")
    return codestudio_home


@pytest.mark.parametrize(
    "spec, why",
    [
        ("${dip.home}/state.db", "the state DB, which holds every studio's session secret"),
        ("${dip.home}/state.db-wal", "write-ahead log"),
        ("${dip.home}/state.db-shm", "shared-memory"),
        ("${dip.home}/gateway", "the gateway's folder"),
        ("${dip.home}/gateway/nginx.conf", "the gateway's folder"),
        ("${dip.home}/zones/users/bob/user-versioned", "other users' and projects' files"),
        ("${dip.home}/studios/s1", "the studios' own folders"),
        ("${dip.home}/locks", "the engine's locks"),
        ("${dip.home}/templates/other/1/t.yaml", "the stored templates"),
        ("${dip.home}", "the whole data dir"),
        ("${dip.home}/", "the whole data dir"),
    ],
)
@pytest.mark.parametrize("block", ["dockerfile", "starter-files"])
def test_dip_home_resources_outside_config_and_resources_are_refused(tmp_path, home, blocks, spec, why, block):
    path = write(tmp_path / "tpl", f"- {{type: {block}, statements: RUN true, resources: [{spec!r}]}}"
                 if block == "dockerfile" else f"- {{type: {block}, resources: [{spec!r}]}}")
    problems = problems_of(path, blocks)
    assert f"blocks[0] (type: {block}): field 'resources.0'" in problems
    assert why in problems and "resources may name only ${dip.home}/config/ and ${dip.home}/resources/" in problems


def test_dip_home_is_refused_whichever_way_it_is_reached(tmp_path, home, blocks):
    # An absolute path.
    path = write(tmp_path / "a", f"- {{type: dockerfile, statements: RUN true, resources: ['{home}/state.db']}}")
    assert "the state DB" in problems_of(path, blocks)
    # A symlink inside config/.
    os.symlink("../state.db", home / "config" / "db")
    path = write(tmp_path / "b", "- {type: dockerfile, statements: RUN true, resources: ['${dip.home}/config/db']}")
    assert "the state DB" in problems_of(path, blocks)
    # A symlink in the template folder.
    (tmp_path / "c").mkdir()
    os.symlink(home / "gateway", tmp_path / "c" / "gw")
    path = write(tmp_path / "c", "- {type: dockerfile, statements: RUN true, resources: [gw]}")
    assert "outside ${template.resources}" in problems_of(path, blocks)
    # A template file inside the data dir, naming the DB relative to its folder.
    path = write(home, "- {type: dockerfile, statements: RUN true, resources: [state.db]}")
    assert "the state DB" in problems_of(path, blocks)


def test_a_template_folder_holding_the_data_dir_cannot_reach_it(tmp_path, monkeypatch, blocks):
    tpl = tmp_path / "tpl"
    data = tpl / "home" / "codestudio"
    data.mkdir(parents=True)
    (data / "state.db").write_text("secrets\n")
    monkeypatch.setenv("CODESTUDIO_HOME", str(data))
    path = write(tpl, "- {type: dockerfile, statements: RUN true, resources: [home]}")
    assert "'home': home/codestudio is the whole data dir" in problems_of(path, blocks)


def test_config_and_resources_of_dip_home_are_fine(tmp_path, home, blocks):
    os.symlink("pip.conf", home / "config" / "pip-link.conf")
    path = write(tmp_path / "tpl", """
        - type: dockerfile
          statements: RUN true
          resources: ['${dip.home}/config/pip.conf', '${dip.home}/resources/shared.txt', '${dip.home}/config/pip-link.conf']
        """)
    _, state = plan_template(path, blocks)
    assert set(state.groups[0].steps[0].resources) == {"pip.conf", "shared.txt", "pip-link.conf"}


def test_a_stored_template_reads_its_own_files(tmp_path, blocks, admin):
    from codestudio.render import render_template
    from codestudio.templates_store import add_template

    tpl = tmp_path / "tpl"
    (tpl / "files").mkdir(parents=True)
    (tpl / "files" / "a.txt").write_text("a\n")
    stored, _ = add_template(admin, write(tpl, "- {type: dockerfile, statements: RUN true, resources: [files]}"))
    assert render_template(stored.path, blocks=blocks).context_files["files/a.txt"][0] == b"a\n"
