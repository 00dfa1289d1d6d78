"""The codestudio base image: Debian from debootstrap, the user, the runner.

``codestudio base build`` makes ``localhost/codestudio-base:<engine version>``:

1. a root filesystem from ``debootstrap --variant=minbase`` with
   :data:`PACKAGES`, cleaned (apt lists and caches removed) and packed into a
   tarball cached in ``<data dir>/cache/debootstrap/`` under a key of suite,
   mirror, architecture and package list, so a forced rebuild skips the
   download and install;
2. a ``FROM scratch`` build that adds the tarball, creates the user
   ``codestudio`` (uid 1000) and its workspace, copies the runner to
   ``/opt/codestudio/runner.py`` and sets the entrypoint (tini, then the
   runner). The image is labelled with a hash of all inputs; when a stored
   image carries the same label the build is a no-op.

The mirror defaults to the Debian mirror of the host's own apt sources, else
debootstrap's default: no host name is written into the engine.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from codestudio import __version__, containers
from codestudio.images.progress import Reporter
from codestudio.errors import RuntimeFailure, UsageError

PACKAGES = ("python3", "python3-venv", "ca-certificates", "tini")
DEFAULT_SUITE = "bookworm"
VARIANT = "minbase"
INPUTS_LABEL = "io.codestudio.base.inputs"
SUITE_LABEL = "io.codestudio.base.suite"
MIRROR_LABEL = "io.codestudio.base.mirror"
#: Bump when the base recipe below changes what the image contains.
RECIPE = 1
SUITE_RE = re.compile(r"^[a-z][a-z0-9-]{1,30}$")
MIRROR_RE = re.compile(r"^(https?|file)://[A-Za-z0-9._~:/?#@!$&'()*+,;=%-]+$")
ENTRYPOINT = ["/usr/bin/tini", "--", "python3", "/opt/codestudio/runner.py"]

# The user and its folders, created inside the image with the image's own tools.
_SETUP = (
    "groupadd --gid 1000 codestudio"
    " && useradd --uid 1000 --gid 1000 --home-dir /home/codestudio --create-home --shell /bin/bash codestudio"
    " && install -d -o codestudio -g codestudio -m 0755 /home/codestudio/workspace"
    " && install -d -m 0755 /opt/codestudio"
)

SOURCES_LIST = Path("/etc/apt/sources.list")
SOURCES_DIR = Path("/etc/apt/sources.list.d")


@dataclass
class BaseResult:
    image: str
    image_id: str
    outcome: str  # "built" | "unchanged"
    inputs_hash: str
    suite: str
    mirror: str | None
    seconds: float
    log_path: Path | None = None

    def as_dict(self) -> dict:
        return {
            "image": self.image,
            "image_id": self.image_id,
            "outcome": self.outcome,
            "inputs_hash": self.inputs_hash,
            "suite": self.suite,
            "mirror": self.mirror,
            "seconds": round(self.seconds, 3),
            "log_path": str(self.log_path) if self.log_path else None,
        }


def base_image() -> str:
    """``localhost/codestudio-base:<engine version>``: what templates start from by default."""
    from codestudio.plan import default_base_image

    return default_base_image()


# --------------------------------------------------------------------------
# Mirror from the host's apt sources


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def _one_line_sources(text: str) -> list[AptSource]:
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        # Drop "[arch=amd64 signed-by=...]" options.
        line = re.sub(r"\[[^\]]*\]", " ", line[4:])
        words = line.split()
        if len(words) >= 2:
            out.append(AptSource(words[0], (words[1],), tuple(words[2:])))
    return out


def _deb822_sources(text: str) -> list[AptSource]:
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for raw in stanza.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[0] in " \t" and key:
                fields[key] += " " + raw.strip()
                continue
            if ":" in raw:
                key, value = raw.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            out.append(AptSource(uri, tuple(fields.get("suites", "").split()), tuple(fields.get("components", "").split())))
    return out


def host_apt_sources(sources_list: Path = SOURCES_LIST, sources_dir: Path = SOURCES_DIR) -> list[AptSource]:
    """Every ``deb`` source configured on the host, in apt's reading order."""
    out: list[AptSource] = []
    if sources_list.is_file():
        out += _one_line_sources(sources_list.read_text(errors="replace"))
    if sources_dir.is_dir():
        for path in sorted(sources_dir.iterdir()):
            if path.suffix == ".list":
                out += _one_line_sources(path.read_text(errors="replace"))
            elif path.suffix == ".sources":
                out += _deb822_sources(path.read_text(errors="replace"))
    return out


def _host_is_debian() -> bool:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return False
    return bool(re.search(r"^ID=\"?debian\"?$", text, re.MULTILINE))


def host_debian_mirror(suite: str, sources: list[AptSource] | None = None, *, host_is_debian: bool | None = None) -> str | None:
    """The Debian mirror the host's apt uses for ``suite``, or None.

    First a source listing ``suite`` itself with ``main``; else, on a Debian
    host, its first plain release source (not -security/-updates/-backports).
    """
    sources = host_apt_sources() if sources is None else sources
    usable = [s for s in sources if MIRROR_RE.match(s.uri) and not s.uri.startswith("file:")]
    for source in usable:
        if suite in source.suites and "main" in source.components:
            return source.uri.rstrip("/")
    if host_is_debian if host_is_debian is not None else _host_is_debian():
        for source in usable:
            if "main" in source.components and any("-" not in s and "/" not in s for s in source.suites):
                if "security" not in source.uri:
                    return source.uri.rstrip("/")
    return None


# --------------------------------------------------------------------------
# Inputs


def _runner_path() -> Path:
    from codestudio.runner import RUNNER_PATH

    return RUNNER_PATH


def _arch() -> str:
    proc = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True)
    if proc.returncode == 0 and proc.stdout.strip():
        return proc.stdout.strip()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def rootfs_key(suite: str, mirror: str | None, arch: str) -> str:
    """Cache key of the debootstrap tarball."""
    data = json.dumps({"suite": suite, "mirror": mirror, "arch": arch, "variant": VARIANT, "packages": sorted(PACKAGES)}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:24]


def dockerfile_text() -> str:
    """The Dockerfile that turns the rootfs tarball into the base image (labels come as ``--label``)."""
    run = json.dumps(["/bin/sh", "-e", "-c", _SETUP])
    return (
        "FROM scratch\n"
        "ADD rootfs.tar /\n"
        f"RUN {run}\n"
        "COPY runner.py /opt/codestudio/runner.py\n"
        "ENV LANG=C.UTF-8\n"
        f"ENTRYPOINT {json.dumps(ENTRYPOINT)}\n"
    )


def labels(inputs: str, suite: str, mirror: str | None) -> dict[str, str]:
    """The base image's labels: what it was built from, so ``base show`` can tell if it is current."""
    return {
        INPUTS_LABEL: inputs,
        SUITE_LABEL: suite,
        MIRROR_LABEL: mirror or "",
        "io.codestudio.base.version": __version__,
    }


def inputs_hash(suite: str, mirror: str | None, arch: str) -> str:
    data = {
        "recipe": RECIPE,
        "rootfs": rootfs_key(suite, mirror, arch),
        "engine": __version__,
        "runner": hashlib.sha256(_runner_path().read_bytes()).hexdigest(),
        "dockerfile": hashlib.sha256(dockerfile_text().encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------
# Building


def _run_logged(argv: list[str], log, reporter: Reporter, what: str, *, env: dict | None = None) -> None:
    log.write(f"# {' '.join(argv)}\n")
    log.flush()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=env)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)
        tail = (tail + [line.rstrip()])[-20:]
        if line.startswith("I: "):
            reporter.status(f"{what}: {line[3:].strip()}")
    if proc.wait() != 0:
        log.flush()
        raise RuntimeFailure(f"{what} failed (exit {proc.returncode}):\n" + "\n".join(f"  | {t}" for t in tail) + f"\nfull log: {log.name}")


def _clean_rootfs(root: Path) -> None:
    """Remove what should not ship: apt lists and caches, logs, host files debootstrap copied in."""
    for pattern in ("var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb",
                    "var/cache/debconf/*-old", "var/lib/dpkg/*-old", "var/log/*.log", "var/log/apt/*",
                    "tmp/*", "var/tmp/*", "root/.bash_history"):
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.name != "partial":
                path.unlink(missing_ok=True)
    # Filled in by the container engine at run time; the host's copies must not leak in.
    for name in ("etc/resolv.conf", "etc/hostname", "etc/hosts"):
        (root / name).unlink(missing_ok=True)
    (root / "etc/hostname").write_text("codestudio\n")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    (root / "etc/machine-id").unlink(missing_ok=True)


def rootfs_tarball(suite: str, mirror: str | None, *, refresh: bool, log, reporter: Reporter) -> Path:
    """The cached debootstrap tarball for these inputs, made if missing (or ``refresh``)."""
    from codestudio.home import data_dir

    arch = _arch()
    cache = data_dir() / "cache" / "debootstrap"
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"{suite}-{arch}-{rootfs_key(suite, mirror, arch)}.tar"
    if tarball.exists() and not refresh:
        reporter.note(f"using cached root filesystem {tarball.name}")
        return tarball
    containers.require_tools("debootstrap", "tar")
    if os.geteuid() != 0:
        raise RuntimeFailure("building the base image runs debootstrap, which needs root: run `sudo codestudio base build`")
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=cache))
    try:
        root = work / "root"
        argv = ["debootstrap", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}", "--components=main",
                f"--arch={arch}", suite, str(root)]
        if mirror:
            argv.append(mirror)
        reporter.note(f"debootstrap {suite} from {mirror or 'the default Debian mirror'} (about a minute)")
        _run_logged(argv, log, reporter, "debootstrap")
        _clean_rootfs(root)
        tmp_tar = work / "rootfs.tar"
        # Sorted names and numeric owners: the same tree gives the same archive layout.
        _run_logged(
            ["tar", "--sort=name", "--numeric-owner", "--xattrs", "--xattrs-include=security.capability",
             "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*",
             "-C", str(root), "-cf", str(tmp_tar), "."],
            log, reporter, "tar",
        )
        os.replace(tmp_tar, tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tarball


def build_base(
    *,
    suite: str = DEFAULT_SUITE,
    mirror: str | None = None,
    force: bool = False,
    refresh: bool = False,
    quiet: bool = False,
) -> BaseResult:
    """Build the base image unless an image with the same inputs is stored (``force`` rebuilds).

    ``mirror`` defaults to the host's Debian mirror (see :func:`host_debian_mirror`).
    ``refresh`` also re-runs debootstrap instead of using the cached tarball.
    """
    from codestudio.home import data_dir

    if not SUITE_RE.match(suite):
        raise UsageError(f"--suite {suite!r}: not a Debian suite name")
    if mirror is not None and not MIRROR_RE.match(mirror):
        raise UsageError(f"--mirror {mirror!r}: expected an http://, https:// or file:// URL")
    containers.require_tools("buildah")
    started = time.monotonic()
    mirror = mirror.rstrip("/") if mirror else host_debian_mirror(suite)
    arch = _arch()
    digest = inputs_hash(suite, mirror, arch)
    image = base_image()

    stored = containers.image_labels(image)
    if stored is not None and stored.get(INPUTS_LABEL) == digest and not (force or refresh):
        return BaseResult(image, containers.image_id(image) or "", "unchanged", digest, suite, mirror, time.monotonic() - started)

    logs = data_dir() / "builds" / "_base"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    with Reporter("building the base image", quiet=quiet) as reporter, open(log_path, "w", encoding="utf-8") as log:
        note = containers.policy_note()
        if note:
            reporter.note(note)
            log.write(f"# {note}\n")
        tarball = rootfs_tarball(suite, mirror, refresh=refresh, log=log, reporter=reporter)
        context = Path(tempfile.mkdtemp(prefix="base-context-", dir=logs))
        try:
            try:
                os.link(tarball, context / "rootfs.tar")
            except OSError:
                shutil.copy2(tarball, context / "rootfs.tar")
            shutil.copy2(_runner_path(), context / "runner.py")
            os.chmod(context / "runner.py", 0o755)
            (context / "Dockerfile").write_text(dockerfile_text())
            label_args = [arg for k, v in labels(digest, suite, mirror).items() for arg in ("--label", f"{k}={v}")]
            iid = context / "iid"
            reporter.note(f"importing as {image}")
            argv = containers.buildah_command(
                "bud", "--isolation", "chroot", "--layers=false", "--pull=never", "--force-rm",
                "--iidfile", str(iid), *label_args, "-f", str(context / "Dockerfile"), str(context),
            )
            log.write(f"# {' '.join(argv)}\n")
            tail: list[str] = []
            with containers.stream(argv, cwd=context) as proc:
                for line in proc:
                    log.write(line + "\n")
                    tail = (tail + [line])[-20:]
            if proc.returncode != 0:
                log.flush()
                raise RuntimeFailure(
                    "importing the base image failed:\n" + "\n".join(f"  | {t}" for t in tail) + f"\nfull log: {log_path}"
                )
            new_id = iid.read_text().strip().removeprefix("sha256:")
            containers.tag_image(new_id, image)
        finally:
            shutil.rmtree(context, ignore_errors=True)
    return BaseResult(image, new_id, "built", digest, suite, mirror, time.monotonic() - started, log_path)


def base_status() -> dict:
    """What ``codestudio base show`` prints: the image, whether it exists, and whether it is current."""
    image = base_image()
    found = containers.image_labels(image)
    if found is None:
        return {"image": image, "present": False, "current": False}
    suite = found.get(SUITE_LABEL) or DEFAULT_SUITE
    mirror = found.get(MIRROR_LABEL) or None
    image_id = containers.image_id(image)
    from codestudio import buildenv

    # Made by the first template build that installs Python packages (docs/building.md).
    tools = buildenv.tools_image(buildenv.DEFAULT_INSTALLER, image_id or "")
    return {
        "image": image,
        "present": True,
        "image_id": image_id,
        "suite": suite,
        "mirror": mirror,
        # False when the engine's runner or recipe changed since: `base build` would rebuild.
        "current": found.get(INPUTS_LABEL) == inputs_hash(suite, mirror, _arch()),
        "build_tools_image": tools,
        "build_tools_present": containers.image_exists(tools),
    }
