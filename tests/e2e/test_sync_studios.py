"""End-to-end: the symlink-chain escape of issue 9 item 1, through two real studios of one project.

Two templates, built on the real base image (the sync agent needs Python):
the first maps ``project-lib-resources`` whole, the second only its
``data`` subfolder. In the first studio the chain ``l0 -> .``, ``l1 ->
l0/..``, ... and ``data -> lN/<host folder>`` is created and synced; the
second studio must then neither receive the host folder's files nor write
into it. On the code before the fix the links landed in the server zone
and the second studio got the host's files at its start.
"""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.e2e


WHOLE = "{zone: project-lib-resources}"
DATA_TARGET = "/home/codestudio/workspace/lib-data"
DATA = "{zone: project-lib-resources, subfolder: data, target: " + DATA_TARGET + "}"
LIB_TARGET = "/home/codestudio/workspace/project-lib-resources"


def _escaping_links(zone) -> list[str]:
    real = os.path.realpath(zone)
    out = []
    for dirpath, dirnames, filenames in os.walk(zone):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            r = os.path.realpath(p)
            if os.path.islink(p) and r != real and not r.startswith(real + "/"):
                out.append(os.path.relpath(p, zone))
    return sorted(out)


@pytest.fixture
def project(sync_studios):
    ids = {name: sync_studios.template(f"chain-{name}", mapping) for name, mapping in (("whole", WHOLE), ("data", DATA))}
    sync_studios.project("LEAKS")
    return {"who": sync_studios.who, "rts": sync_studios.rts, "local": sync_studios.local, "templates": ids}


def test_symlink_chain_in_one_studio_gives_another_nothing_of_the_host(project, sync_studios, tmp_path):
    from codestudio.sync import zone_dir

    rts, local, who = project["rts"], project["local"], project["who"]
    host = tmp_path / "host-folder"
    host.mkdir()
    (host / "secret.txt").write_text("host secret\n")

    first = rts.start_studio(who, rts.create_studio(who, "LEAKS", "first", project["templates"]["whole"]).id,
                             timeout=120, quiet=True)
    zone = zone_dir("project-lib-resources", studio_id=first.id, project_key="LEAKS", user=first.owner)
    depth = len(os.path.realpath(zone).strip("/").split("/"))
    chain = ["ln -s . l0", *(f"ln -s l{i - 1}/.. l{i}" for i in range(1, depth + 1)),
             f"ln -s l{depth}/{str(host).lstrip('/')} data", "echo ok > fine.txt"]
    proc = local.exec_run(sync_studios.container(first), ["sh", "-c", f"cd {LIB_TARGET} && " + " && ".join(chain)])
    assert proc.returncode == 0, proc.stderr
    result = sync_studios.cli("studio", "sync", first.id)
    # Refused and reported: each link leaving the mapping is named with the reason.
    assert "l1 (studio): symlink to 'l0/..' resolves outside the mapping" in result.stdout + result.stderr
    assert "data (studio)" in result.stdout + result.stderr
    assert _escaping_links(zone) == [] and (zone / "fine.txt").read_text() == "ok\n"

    second = rts.start_studio(who, rts.create_studio(who, "LEAKS", "second", project["templates"]["data"]).id,
                              timeout=120, quiet=True)
    listing = local.exec_run(sync_studios.container(second), ["sh", "-c", f"mkdir -p {DATA_TARGET} && ls -A {DATA_TARGET}"])
    assert listing.returncode == 0 and "secret.txt" not in listing.stdout
    proc = local.exec_run(sync_studios.container(second), ["sh", "-c", f"echo planted > {DATA_TARGET}/planted.txt"])
    assert proc.returncode == 0, proc.stderr
    result = sync_studios.cli("studio", "sync", second.id)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(host)) == ["secret.txt"]
    # The second studio's file went where its mapping says: a real folder inside the zone.
    assert not os.path.islink(zone / "data") and (zone / "data" / "planted.txt").read_text() == "planted\n"


# --------------------------------------------------------------------------
# data -> .git: one studio makes the zone's repository another's mapping folder


VWHOLE = "{zone: project-lib-versioned}"
VLIB_TARGET = "/home/codestudio/workspace/project-lib-versioned"
VDATA_TARGET = "/home/codestudio/workspace/lib-git"
VDATA = "{zone: project-lib-versioned, subfolder: data, target: " + VDATA_TARGET + "}"


@pytest.fixture
def git_project(sync_studios):
    ids = {name: sync_studios.template(f"git-{name}", mapping) for name, mapping in (("vwhole", VWHOLE), ("vdata", VDATA))}
    sync_studios.project("GITDIR")
    return {"who": sync_studios.who, "rts": sync_studios.rts, "local": sync_studios.local, "templates": ids}


def test_link_to_git_never_makes_the_zone_repository_a_mapping_folder(git_project, sync_studios, tmp_path):
    from codestudio.sync import zone_dir

    rts, local, who = git_project["rts"], git_project["local"], git_project["who"]
    marker = tmp_path / "ran-as-root"
    first = rts.start_studio(who, rts.create_studio(who, "GITDIR", "first", git_project["templates"]["vwhole"]).id,
                             timeout=120, quiet=True)
    # Started while data is still a plain (missing) folder: a start with the link in place is refused.
    second = rts.start_studio(who, rts.create_studio(who, "GITDIR", "second", git_project["templates"]["vdata"]).id,
                              timeout=120, quiet=True)
    zone = zone_dir("project-lib-versioned", studio_id=first.id, project_key="GITDIR", user=first.owner)
    os.rmdir(zone / "data")  # the empty folder the second studio's start made
    proc = local.exec_run(sync_studios.container(first), ["sh", "-c", f"cd {VLIB_TARGET} && ln -s .git data && echo ok > fine.txt"])
    assert proc.returncode == 0, proc.stderr
    result = sync_studios.cli("studio", "sync", first.id)
    assert "data (studio)" in result.stdout + result.stderr and "'.git'" in result.stdout + result.stderr
    assert not os.path.lexists(zone / "data") and (zone / "fine.txt").read_text() == "ok\n"

    # As if the link had been pulled by an older engine: the second studio's mapping folder is refused.
    if not os.path.lexists(zone / "data"):
        os.symlink(".git", zone / "data")
    config_before = (zone / ".git" / "config").read_text()
    plant = (f"mkdir -p {VDATA_TARGET}/hooks && printf '[core]\\n\\tfsmonitor = touch {marker}\\n' > {VDATA_TARGET}/config"
             f" && printf '#!/bin/sh\\ntouch {marker}\\n' > {VDATA_TARGET}/hooks/post-commit"
             f" && chmod +x {VDATA_TARGET}/hooks/post-commit")
    proc = local.exec_run(sync_studios.container(second), ["sh", "-c", plant])
    assert proc.returncode == 0, proc.stderr
    result = sync_studios.cli("studio", "sync", second.id)
    assert result.returncode != 0 and "'.git'" in result.stdout + result.stderr
    assert (zone / ".git" / "config").read_text() == config_before
    assert not (zone / ".git" / "hooks" / "post-commit").exists()

    # The engine's next commit of the zone runs nothing.
    proc = local.exec_run(sync_studios.container(first), ["sh", "-c", f"echo more > {VLIB_TARGET}/more.txt"])
    assert proc.returncode == 0, proc.stderr
    sync_studios.cli("studio", "sync", first.id)
    assert (zone / "more.txt").read_text() == "more\n"
    assert not marker.exists()
