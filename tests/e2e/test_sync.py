"""File sync with real podman containers from the codestudio base image."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import uuid

import pytest

from codestudio.blockapi import SyncMapping
from codestudio.sync import (
    ExecTransport,
    SyncConflictError,
    SyncError,
    SyncStudio,
    conflicts,
    pull_on_stop,
    push_on_start,
    sync,
)

pytestmark = pytest.mark.e2e

ZONE = "code_studio-versioned"
TARGET = f"/home/codestudio/workspace/{ZONE}"
RESOURCES = "/home/codestudio/workspace/code_studio-resources"


@pytest.fixture
def start_container(debian_base):
    """Start a container from the base image (a stand-in for a studio): returns its name."""
    from codestudio import containers

    names: list[str] = []

    def start() -> str:
        # Named like a pod's main container, so the local runtime's exec reaches it.
        name = f"cs-sync-{uuid.uuid4().hex[:10]}-studio"
        containers.podman("run", "-d", "--rm", "--name", name, "--entrypoint", "/bin/sleep", debian_base, "3600")
        names.append(name)
        return name

    yield start
    for name in names:
        containers.podman("rm", "-f", "-t", "0", name, check=False)


def transport(container: str, **kw) -> ExecTransport:
    """The sync transport of a studio: the agent through the local runtime's exec."""
    from codestudio.runtime.local import LocalRuntime

    return ExecTransport(LocalRuntime(), container.removesuffix("-studio"), **kw)


def sh(container: str, script: str, user: str = "codestudio") -> str:
    from codestudio import containers

    return containers.podman("exec", "--user", user, container, "sh", "-c", script).stdout


def make_studio(*mappings: SyncMapping) -> SyncStudio:
    return SyncStudio("s1", "PROJ", "alice", tuple(mappings) or (SyncMapping(zone=ZONE, target=TARGET),))


def git(path, *args) -> str:
    return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, check=True).stdout


def test_streamlit_app_survives_stop_and_start_and_is_committed(start_container):
    studio = make_studio()
    zone = studio.zone_path(ZONE)
    (zone / "app.py").write_text("import streamlit as st\nst.write('v1')\n")
    (zone / "run.sh").write_text("#!/bin/sh\nstreamlit run app.py\n")
    (zone / "run.sh").chmod(0o755)

    ctr = start_container()
    push_on_start(studio, transport(ctr))
    assert "st.write('v1')" in sh(ctr, f"cat {TARGET}/app.py")
    assert sh(ctr, f"test -x {TARGET}/run.sh && stat -c %U {TARGET}/app.py").strip() == "codestudio"

    sh(ctr, f"sed -i s/v1/v2/ {TARGET}/app.py && echo data > {TARGET}/new.csv")
    pull_on_stop(studio, transport(ctr))
    assert "v2" in (zone / "app.py").read_text()
    assert git(zone, "log", "-1", "--format=%an <%ae>|%cn").strip() == "alice <alice@codestudio.local>|codestudio"
    assert sorted(git(zone, "show", "--name-only", "--format=", "HEAD").split()) == ["app.py", "new.csv"]

    # Stop and start: a new container gets the edited app.
    ctr2 = start_container()
    push_on_start(studio, transport(ctr2))
    assert "v2" in sh(ctr2, f"cat {TARGET}/app.py")
    assert sh(ctr2, f"cat {TARGET}/new.csv").strip() == "data"


def test_edits_on_both_sides_conflict_with_both_versions_kept(start_container):
    studio = make_studio()
    zone = studio.zone_path(ZONE)
    (zone / "app.py").write_text("base\n")
    ctr = start_container()
    t = transport(ctr)
    push_on_start(studio, t)
    (zone / "app.py").write_text("server\n")
    sh(ctr, f"echo studio > {TARGET}/app.py; echo pushed-only > {TARGET}/other.txt")
    (zone / "gone.txt").write_text("x")
    with pytest.raises(SyncConflictError, match="app.py") as info:
        sync(studio, t)
    (c,) = info.value.report.conflicts
    assert (zone / "app.py").read_text() == "server\n"
    assert (zone / c.copy).read_text() == "studio\n"
    assert sh(ctr, f"cat {TARGET}/app.py {TARGET}/{c.copy}") == "server\nstudio\n"
    assert (zone / "other.txt").read_text() == "pushed-only\n"
    listed = conflicts(studio, ZONE)
    assert [x.path for x in listed] == ["app.py"] and listed[0].commit_now

    # Deleted on one side, unchanged on the other: deleted on both.
    sh(ctr, f"rm {TARGET}/gone.txt")
    (zone / "other.txt").unlink()
    report = sync(studio, t).mappings[0]
    assert report.deleted_on_server == ["gone.txt"] and report.deleted_in_studio == ["other.txt"]
    assert sh(ctr, f"ls {TARGET}").split() == sorted(["app.py", c.copy])


def test_exclusions_one_way_and_subfolder(start_container):
    lib = "/home/codestudio/workspace/project-lib-versioned/python"
    studio = SyncStudio(
        "s1", "PROJ", "alice",
        (
            SyncMapping(zone=ZONE, target=TARGET),
            SyncMapping(zone="project-lib-versioned", subfolder="python", target=lib, one_way=True),
        ),
        exclusions=("*.pyc", "node_modules/"),
    )
    zone, libzone = studio.zone_path(ZONE), studio.zone_path("project-lib-versioned")
    (zone / "keep.py").write_text("k")
    (zone / "skip.pyc").write_text("c")
    (libzone / "python").mkdir()
    (libzone / "python/lib.py").write_text("lib")
    (libzone / "README").write_text("outside the subfolder")
    ctr = start_container()
    t = transport(ctr)
    sync(studio, t)
    assert sh(ctr, f"cd {TARGET} && ls -A").split() == ["keep.py"]
    assert sh(ctr, f"ls -A {lib}").split() == ["lib.py"]
    sh(ctr, f"mkdir -p {TARGET}/node_modules && echo x > {TARGET}/node_modules/a.js && echo y > {TARGET}/m.pyc; echo edit > {lib}/lib.py; echo new > {lib}/new.py")
    sync(studio, t)
    assert sorted(p.name for p in zone.iterdir() if p.name != ".git") == ["keep.py", "skip.pyc"]
    assert (libzone / "python/lib.py").read_text() == "lib"
    assert not (libzone / "python/new.py").exists()


#: Inside the container, in place of the agent: the real agent with its ``get``
#: answer replaced by /tmp/evil.tar (argv as python3 gets it: -I -c SOURCE session BASE).
EVIL_AGENT = r"""
import sys
namespace = {"__name__": "agent"}
exec(sys.argv[3], namespace)
def get(self, request):
    out = namespace["FrameWriter"](self.stdout)
    out.write(open("/tmp/evil.tar", "rb").read())
    out.end()
namespace["Session"].get = get
sys.exit(namespace["main"](sys.argv[4:]))
"""


def test_malicious_container_archive_is_refused(start_container, tmp_path):
    """The container's ``python3`` is replaced by a script that answers with a crafted archive."""
    studio = make_studio()
    ctr = start_container()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("0/../escape", "0//etc/evil", "0/app.py", "../escape"):
            info = tarfile.TarInfo(name)
            if name == "0/app.py":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = 4
                tar.addfile(info, io.BytesIO(b"evil"))
    (tmp_path / "evil.tar").write_bytes(buf.getvalue())
    (tmp_path / "evil.py").write_text(EVIL_AGENT)
    from codestudio import containers

    containers.podman("cp", str(tmp_path / "evil.tar"), f"{ctr}:/tmp/evil.tar")
    containers.podman("cp", str(tmp_path / "evil.py"), f"{ctr}:/tmp/evil.py")
    sh(ctr, "chmod 644 /tmp/evil.tar /tmp/evil.py && printf '#!/bin/sh\\nexec python3 /tmp/evil.py \"$@\"\\n' > /tmp/py && chmod 755 /tmp/py", user="root")
    sh(ctr, f"mkdir -p {TARGET} && echo innocent > {TARGET}/app.py")
    with pytest.raises(SyncError, match="refused") as info:
        sync(studio, transport(ctr, python="/tmp/py"))
    refused = {path for _, path, _ in info.value.report.refused}
    assert refused == {"../escape", "/etc/evil", "app.py"}
    zone = studio.zone_path(ZONE)
    assert not (zone.parent / "escape").exists() and not os.path.lexists(zone / "app.py")


MEMORY_SCRIPT = r"""
import os, resource, sys
from codestudio.blockapi import SyncMapping
from codestudio.runtime.local import LocalRuntime
from codestudio.sync import ExecTransport, SyncStudio, sync
studio = SyncStudio("s1", "PROJ", "alice", (SyncMapping(zone="code_studio-resources", target=sys.argv[2]),))
big = studio.zone_path("code_studio-resources") / "big.bin"
block = os.urandom(1 << 20)
with open(big, "wb") as f:
    for _ in range(200):
        f.write(block)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sync(studio, ExecTransport(LocalRuntime(), sys.argv[1].removesuffix("-studio")))
print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_200mb_file_through_podman_in_bounded_memory(start_container):
    ctr = start_container()
    proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, ctr, RESOURCES], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    base_kb, peak_kb = map(int, proc.stdout.split())
    assert peak_kb - base_kb < 40_000, (base_kb, peak_kb)
    assert sh(ctr, f"stat -c %s {RESOURCES}/big.bin").strip() == str(200 << 20)


# --------------------------------------------------------------------------
# Issue 9 item 1: a chain of symlinks, each lexically inside the mapping,
# that really resolves up to / on the server.

LIB = "project-lib-resources"
LIB_TARGET = f"/home/codestudio/workspace/{LIB}"


def _chain_script(depth: int, host_rel: str) -> str:
    """Shell that creates l0 -> ., l1 -> l0/.., ..., l<depth> -> l<depth-1>/.. and data -> l<depth>/<host_rel>."""
    cmds = ["ln -s . l0"] + [f"ln -s l{i - 1}/.. l{i}" for i in range(1, depth + 1)]
    cmds.append(f"ln -s l{depth}/{host_rel} data")
    return " && ".join(cmds)


def _host_folder(tmp_path):
    host = tmp_path / "host-folder"
    host.mkdir()
    (host / "secret.txt").write_text("host secret\n")
    return host


def _escaping_links(zone) -> list[str]:
    real = os.path.realpath(zone)
    out = []
    for dirpath, dirnames, filenames in os.walk(zone):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                r = os.path.realpath(p)
                if r != real and not r.startswith(real + "/"):
                    out.append(os.path.relpath(p, zone))
    return sorted(out)


def _studio_two(zone: str, target: str, one_way: bool = False) -> SyncStudio:
    # A second studio of the project whose template maps the zone with ``subfolder: data``.
    return SyncStudio("s2", "PROJ", "bob", (SyncMapping(zone=zone, subfolder="data", target=target, one_way=one_way),))


def test_symlink_chain_from_a_studio_never_reaches_host_files(start_container, tmp_path):
    host = _host_folder(tmp_path)
    studio1 = SyncStudio("s1", "PROJ", "alice", (SyncMapping(zone=LIB, target=LIB_TARGET),))
    zone = studio1.zone_path(LIB)
    depth = len(os.path.realpath(zone).strip("/").split("/"))
    ctr1 = start_container()
    t1 = transport(ctr1)
    push_on_start(studio1, t1)
    sh(ctr1, f"cd {LIB_TARGET} && echo ok > fine.txt && ln -s fine.txt alias && {_chain_script(depth, str(host).lstrip('/'))}")
    try:
        report = sync(studio1, t1)
    except SyncError as exc:
        report = exc.report
    # Every link that really leaves the mapping is refused and reported; the inside ones sync.
    assert _escaping_links(zone) == []
    assert (zone / "fine.txt").read_text() == "ok\n" and os.readlink(zone / "alias") == "fine.txt"
    reported = {p for m in report.mappings for _, p, _ in m.skipped + m.refused}
    assert {"data", *(f"l{i}" for i in range(1, depth + 1))} <= reported

    # The second studio, mapping the zone's ``data`` subfolder, gets nothing of the host's.
    target2 = f"/home/codestudio/workspace/{LIB}/data"
    studio2 = _studio_two(LIB, target2)
    ctr2 = start_container()
    t2 = transport(ctr2)
    try:
        push_on_start(studio2, t2)
    except SyncError:
        pass
    assert "secret.txt" not in sh(ctr2, f"mkdir -p {target2} && ls -A {target2}")
    sh(ctr2, f"echo planted > {target2}/planted.txt")
    try:
        sync(studio2, t2)
    except SyncError:
        pass
    assert sorted(os.listdir(host)) == ["secret.txt"]


@pytest.mark.parametrize(
    "zone_name, one_way",
    [("project-lib-resources", False), ("project-lib-versioned", True)],
    ids=["resources-two-way", "versioned-one-way"],
)
def test_zone_holding_an_escaping_chain_leaks_nothing(start_container, tmp_path, zone_name, one_way):
    """The chain is already in the server zone (put there by an older codestudio, or by hand)."""
    host = _host_folder(tmp_path)
    studio2 = _studio_two(zone_name, f"/home/codestudio/workspace/{zone_name}/data", one_way)
    zone = studio2.zone_path(zone_name)
    depth = len(os.path.realpath(zone).strip("/").split("/"))
    subprocess.run(["sh", "-c", f"cd {zone} && {_chain_script(depth, str(host).lstrip('/'))}"], check=True)
    assert os.path.realpath(zone / "data") == str(host)  # the attack is in place
    target2 = studio2.mappings[0].target
    ctr = start_container()
    t = transport(ctr)
    with pytest.raises(SyncError, match="data.*outside the zone"):
        push_on_start(studio2, t)
    assert "secret.txt" not in sh(ctr, f"mkdir -p {target2} && ls -A {target2}")
    sh(ctr, f"echo planted > {target2}/planted.txt")
    with pytest.raises(SyncError, match="outside the zone"):
        sync(studio2, t)
    assert sorted(os.listdir(host)) == ["secret.txt"]
    assert "secret.txt" not in sh(ctr, f"ls -A {target2}")


# Issue 9 item 4: names Git takes for ".git" poisoned a versioned zone (every later pull failed).
GIT_VARIANTS = [".GIT", ".Git", "git~1", "GIT~1", ".git.", ".git ", ".git:x", "\u200c.git", ".g\u200dit", ".git\ufeff"]


def test_git_name_variants_never_reach_a_versioned_zone(start_container):
    studio = make_studio()
    zone = studio.zone_path(ZONE)
    ctr = start_container()
    t = transport(ctr)
    push_on_start(studio, t)
    script = " && ".join(f"mkdir -p '{TARGET}/{n}' && printf '[core]\\n' > '{TARGET}/{n}/config'" for n in GIT_VARIANTS)
    sh(ctr, f"{script} && echo v1 > {TARGET}/notebook.ipynb")
    report = pull_on_stop(studio, t).mappings[0]
    assert sorted(p for side, p, _ in report.skipped if side == "studio") == sorted(GIT_VARIANTS)
    assert sorted(os.listdir(zone)) == [".git", "notebook.ipynb"]
    assert git(zone, "status", "--porcelain") == ""
    # The zone still takes pulls (another user's work is not stuck behind the bad name).
    sh(ctr, f"echo v2 > {TARGET}/notebook.ipynb")
    pull_on_stop(studio, t)
    assert (zone / "notebook.ipynb").read_text() == "v2\n"
    assert git(zone, "log", "-1", "--format=%an").strip() == "alice"
