"""Session-wide images and helpers for end-to-end tests (real buildah and podman).

- ``tiny_base``: a ~2 MB local image from Debian's ``busybox-static``
  (``FROM scratch``, ``/etc/passwd`` with ``codestudio`` uid 1000, its
  workspace): template builds on it take about a second. Its tag carries a
  hash of its recipe and of the busybox binary, so it is built once per
  machine and reused by later sessions.
- ``debian_base``: the real base image, built by the engine's own base build
  (about a minute and a half the first time; a no-op when the stored image
  carries the same inputs).
- ``tiny_template``: writes a template file using ``tiny_base``.
- ``image_cleanup``: removes the tags of templates a test built.
- ``sync_studios``: studios on ``debian_base`` whose templates serve port 8080
  and sync the mappings a test names, with their own gateway; every studio
  is purged and the gateway stopped afterwards.

Images live in the host's container storage (shared by buildah and podman),
not in the per-test data dir, so everything a test builds is cleaned up by
tag afterwards.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

BUSYBOX = Path("/bin/busybox")
TINY_REPO = "localhost/codestudio-test-tiny"
# The RUN step uses busybox itself, so the image needs nothing from the host.
TINY_DOCKERFILE = """\
FROM scratch
COPY rootfs/ /
RUN ["/bin/busybox", "sh", "-e", "-c", "mkdir -p /home/codestudio/workspace /opt/codestudio /usr/bin /tmp && chown -R 1000:1000 /home/codestudio && chmod 1777 /tmp"]
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
"""
PASSWD = "root:x:0:0:root:/root:/bin/sh\ncodestudio:x:1000:1000:codestudio:/home/codestudio:/bin/sh\n"
GROUP = "root:x:0:\ncodestudio:x:1000:\n"


def _tiny_tag() -> str:
    digest = hashlib.sha256()
    for part in (TINY_DOCKERFILE.encode(), PASSWD.encode(), GROUP.encode(), BUSYBOX.read_bytes()):
        digest.update(hashlib.sha256(part).digest())
    return f"{TINY_REPO}:{digest.hexdigest()[:16]}"


def build_tiny_base(work: Path) -> str:
    """Build (or reuse) the busybox base and return its reference."""
    from codestudio import containers

    containers.require_tools("buildah", "busybox")
    ref = _tiny_tag()
    if containers.image_exists(ref):
        return ref
    rootfs = work / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "etc").mkdir()
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text(PASSWD)
    (rootfs / "etc" / "group").write_text(GROUP)
    (work / "Dockerfile").write_text(TINY_DOCKERFILE)
    iid = work / "iid"
    containers.buildah("bud", "--isolation", "chroot", "--pull=never", "--iidfile", str(iid), "-f", str(work / "Dockerfile"), str(work))
    containers.tag_image(iid.read_text().strip().removeprefix("sha256:"), ref)
    return ref


@pytest.fixture(scope="session")
def session_home(request) -> Path:
    """A data dir for session-wide builds (per-test fixtures use their own).

    Kept in pytest's cache folder across sessions, so the base build's
    debootstrap tarball survives: after a runner change the base is rebuilt
    in seconds instead of a minute and a half.
    """
    cache = getattr(request.config, "cache", None)
    if cache is None:  # run with -p no:cacheprovider
        return request.getfixturevalue("tmp_path_factory").mktemp("codestudio-session-home")
    return Path(cache.mkdir("codestudio-session-home"))


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, session_home) -> str:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODESTUDIO_HOME", str(session_home))
        return build_tiny_base(tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture(scope="session")
def debian_base(session_home) -> str:
    """The real base image (localhost/codestudio-base:<version>), built by ``build_base``."""
    from codestudio.images.base import build_base

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODESTUDIO_HOME", str(session_home))
        return build_base(quiet=True).image


@pytest.fixture
def image_cleanup():
    """Call with a template id; its ``localhost/codestudio/<id>:*`` tags are removed after the test."""
    ids: list[str] = []
    yield ids.append
    from codestudio import containers

    for template_id in ids:
        for ref in containers.image_refs(f"localhost/codestudio/{template_id}"):
            containers.remove_image(ref)


@pytest.fixture
def tiny_template(tmp_path, tiny_base, image_cleanup):
    """Write a template on ``tiny_base``: ``tiny_template(blocks_yaml, files={}, name=...)`` -> path.

    The template id is unique per test run (so a first build is really
    cold) and its images are removed afterwards. ``blocks_yaml`` is the YAML
    list under ``blocks:``; ``files`` maps paths relative to the template's
    folder to their text.
    """
    run = uuid.uuid4().hex[:8]

    def write(blocks_yaml: str, *, files: dict[str, str] | None = None, name: str = "t", folder: str | None = None) -> Path:
        template_id = f"test-{name}-{run}"
        image_cleanup(template_id)
        root = tmp_path / (folder or name)
        root.mkdir(parents=True, exist_ok=True)
        for rel, text in (files or {}).items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        path = root / "template.yaml"
        path.write_text(f"id: {template_id}\nbase_image: {tiny_base}\nblocks:\n" + textwrap.indent(textwrap.dedent(blocks_yaml).strip() + "\n", "  "))
        return path

    return write


# --------------------------------------------------------------------------
# Studios on the real base image that sync zones (tests/e2e/test_sync_studios.py, test_stop_recovery.py)

SYNC_TEMPLATE = """\
id: {id}
base_image: {base}
permissions: {{all: true}}
blocks:
  - type: entrypoint
    label: Server
    command: [python3, -m, http.server, "8080"]
    port: 8080
  - type: file-sync
    mappings:
{mappings}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SyncStudios:
    """What :func:`sync_studios` gives a test: the user, the runtime's modules, template and CLI helpers."""

    who: object
    rts: ModuleType  # codestudio.runtime.studios
    local: ModuleType  # codestudio.runtime.local
    folder: Path
    base: str
    run: str
    cleanup: object

    def template(self, name: str, *mappings: str) -> str:
        """Add a template ``<name>-<run>`` syncing ``mappings`` (YAML flow mappings); return its id."""
        from codestudio.templates_store import add_template

        template_id = f"{name}-{self.run}"
        self.cleanup(template_id)
        path = self.folder / f"{name}.yaml"
        lines = "".join(f"      - {m}\n" for m in mappings)
        path.write_text(SYNC_TEMPLATE.format(id=template_id, base=self.base, mappings=lines))
        return add_template(self.who, path)[0].id

    def project(self, key: str) -> None:
        from codestudio.projects import create_project

        create_project(self.who, key)

    def pod(self, studio) -> str:
        """The studio's pod under the local runtime."""
        from codestudio.runtime.studios import pod_set_name

        return self.local.pod_name(pod_set_name(studio))

    def container(self, studio) -> str:
        """The studio's main container under the local runtime."""
        from codestudio.runtime.studios import pod_set_name

        return self.local.container_name(pod_set_name(studio))

    @staticmethod
    def cli(*args: str) -> subprocess.CompletedProcess:
        """``codestudio ARGS`` in a new process (the test's environment: its data dir and gateway port)."""
        return subprocess.run([sys.executable, "-m", "codestudio", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture
def sync_studios(tmp_path, debian_base, codestudio_home, monkeypatch, image_cleanup):
    """Studios that sync zones, on the real base image (the runner and the sync agent need Python).

    A gateway port of its own, the current user as the owner; afterwards
    every studio is stopped and purged and the gateway stopped.
    """
    monkeypatch.setenv("CODESTUDIO_GATEWAY_PORT", str(_free_port()))
    monkeypatch.delenv("CODESTUDIO_USER", raising=False)
    from codestudio.access import identify
    from codestudio.runtime import local
    from codestudio.runtime import studios as rts

    who = identify()
    env = SyncStudios(who, rts, local, tmp_path, debian_base, uuid.uuid4().hex[:6], image_cleanup)
    try:
        yield env
    finally:
        for left in rts.list_studios():
            rts.stop_studio(who, left.id, force=True, quiet=True)
            rts.delete_studio(who, left.id, purge=True)
        rts._gateway().stop()
