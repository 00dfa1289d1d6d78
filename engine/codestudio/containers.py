"""The one place that runs buildah and podman.

Everything else in the engine (builds, the local runtime, tests) goes
through the helpers here, so every call gets the same settings:

- the engine's own ``containers.conf`` (in ``<data dir>/containers/``),
  passed through ``CONTAINERS_CONF``: ulimits at or below this process's
  hard limits, the ``runc`` runtime and the ``cgroupfs`` cgroup manager
  where the host needs them (no systemd, cgroups v1/hybrid). Hosts need no
  hand-edited files (see CONTAINERS.md for the failures this avoids);
- one storage driver for all calls: ``overlay`` where a real probe shows it
  works, else ``vfs``; the decision is cached in the data dir;
- a signature policy: the host's ``/etc/containers/policy.json`` when it
  exists, else an engine-owned one passed with ``--signature-policy`` to
  the sub-commands that read it (an interrupted ``dpkg`` run leaves hosts
  without one);
- a clear error naming the ``apt-get install`` line when a tool is missing.

Public interface for other modules: :func:`buildah`, :func:`podman`
(completed processes), :func:`stream` with :func:`buildah_command` /
:func:`podman_command` (line by line), :func:`podman_env` /
:func:`tool_env` (the environment to run them with), :func:`require_tools`,
:func:`host_ca_bundle`, :func:`proxy_env`, and the image helpers
:func:`image_inspect`, :func:`image_exists`, :func:`image_id` (from the storage's
own image list where it can, see :func:`image_index`),
:func:`image_labels`, :func:`image_refs`, :func:`tag_image`, :func:`remove_image`.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from codestudio.errors import RuntimeFailure

#: Debian package providing each command the engine runs.
APT_PACKAGES: dict[str, str] = {
    "buildah": "buildah",
    "podman": "podman",
    "runc": "runc",
    "debootstrap": "debootstrap",
    "nginx": "nginx",
    "busybox": "busybox-static",
    "tar": "tar",
    "fuse-overlayfs": "fuse-overlayfs",
    "slirp4netns": "slirp4netns",
}

HOST_POLICY = Path("/etc/containers/policy.json")
DEBIAN_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CA_ENV_VARS = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT")
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")

#: Storage drivers the engine knows how to pick between, best first.
STORAGE_DRIVERS = ("overlay", "vfs")

# Caps for the container ulimits: generous enough for IDEs and file
# watchers, never above the hard limit this process may grant.
NOFILE_CAP = 65536
NPROC_CAP = 32768

# Sub-commands that read a signature policy (they copy images); the hidden
# ``--signature-policy`` flag is only accepted by these (checked on buildah
# 1.28 and podman 4.3).
_BUILDAH_POLICY_COMMANDS = {("bud",), ("build",), ("from",), ("commit",), ("pull",), ("push",), ("copy",), ("add",)}
_PODMAN_POLICY_COMMANDS = {
    ("run",),
    ("create",),
    ("pull",),
    ("push",),
    ("import",),
    ("load",),
    ("save",),
    ("build",),
    ("kube", "play"),
    ("play", "kube"),
    ("image", "pull"),
    ("image", "push"),
    ("image", "import"),
    ("image", "load"),
    ("image", "save"),
    ("image", "build"),
    ("container", "run"),
    ("container", "create"),
}

_PERMISSIVE_POLICY = {"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker-daemon": {"": [{"type": "insecureAcceptAnything"}]}}}

_lock = threading.Lock()
_checked_tools: set[str] = set()


class ToolFailure(RuntimeFailure):
    """A buildah or podman call exited non-zero.

    ``returncode``, ``command`` and ``output`` (its stderr, or merged output
    when streamed) are kept for callers that report more context.
    """

    def __init__(self, command: Sequence[str], returncode: int, output: str):
        self.command = list(command)
        self.returncode = returncode
        self.output = output
        tail = "\n".join(output.strip().splitlines()[-20:])
        super().__init__(f"{' '.join(command[:3])} ... failed (exit {returncode}):\n{tail}")


# --------------------------------------------------------------------------
# Tools


def require_tools(*names: str) -> None:
    """Check that each command is on PATH; raise naming the ``apt-get`` line if not."""
    missing = [name for name in names if name not in _checked_tools and shutil.which(name) is None]
    if missing:
        packages = sorted({APT_PACKAGES.get(name, name) for name in missing})
        raise RuntimeFailure(
            f"missing {', '.join(missing)}: install with\n"
            f"  apt-get update && apt-get install -y {' '.join(packages)}"
        )
    _checked_tools.update(names)


# --------------------------------------------------------------------------
# Configuration files


def config_dir() -> Path:
    """``<data dir>/containers``: the engine's containers configuration."""
    from codestudio.home import data_dir

    path = data_dir() / "containers"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class HostFacts:
    """What the containers.conf depends on; gathered by :func:`host_facts`."""

    nofile_hard: int
    nproc_hard: int
    systemd: bool
    cgroup_v2: bool
    runc: bool


def _hard_limit(which: int) -> int:
    hard = resource.getrlimit(which)[1]
    return 1 << 62 if hard == resource.RLIM_INFINITY else hard


def host_facts() -> HostFacts:
    return HostFacts(
        nofile_hard=_hard_limit(resource.RLIMIT_NOFILE),
        nproc_hard=_hard_limit(resource.RLIMIT_NPROC),
        # systemd is the init only when this directory exists (sd_booted()).
        systemd=Path("/run/systemd/system").is_dir(),
        cgroup_v2=Path("/sys/fs/cgroup/cgroup.controllers").exists(),
        runc=shutil.which("runc") is not None,
    )


def render_containers_conf(facts: HostFacts) -> str:
    """The engine's containers.conf for a host (pure; unit-tested)."""
    nofile = min(facts.nofile_hard, NOFILE_CAP)
    nproc = min(facts.nproc_hard, NPROC_CAP)
    lines = [
        "# Written by codestudio; regenerated on every run. Do not edit.",
        "[containers]",
        # Default ulimits above the hard limit make the runtime's setrlimit fail.
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]',
    ]
    if not facts.systemd:
        lines.append('log_driver = "k8s-file"')
    lines.append("[engine]")
    if facts.runc:
        # crun refuses cgroups in hybrid mode; runc works on v1, hybrid and v2.
        lines.append('runtime = "runc"')
    if not facts.systemd:
        # Without systemd as init, neither the systemd cgroup manager nor journald exist.
        lines.append('cgroup_manager = "cgroupfs"')
        lines.append('events_logger = "file"')
    return "\n".join(lines) + "\n"


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.read_text() == text:
            return
    except FileNotFoundError:
        pass
    # Atomic: concurrent engine processes may write the same file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def containers_conf() -> Path:
    """Write (if needed) and return the engine's containers.conf."""
    path = config_dir() / "containers.conf"
    _write_if_changed(path, render_containers_conf(host_facts()))
    return path


def signature_policy() -> Path | None:
    """The policy to pass with ``--signature-policy``, or None to use the host's.

    When ``/etc/containers/policy.json`` is missing (usually an interrupted
    ``dpkg`` run: ``dpkg --configure -a`` restores it), the engine supplies
    the same permissive policy Debian ships, so builds work without host edits.
    """
    if HOST_POLICY.exists():
        return None
    path = config_dir() / "policy.json"
    _write_if_changed(path, json.dumps(_PERMISSIVE_POLICY, indent=2) + "\n")
    return path


def policy_note() -> str | None:
    """A line for ``base build`` / troubleshooting output when the host policy is missing."""
    if HOST_POLICY.exists():
        return None
    return (
        f"{HOST_POLICY} is missing (an interrupted dpkg run?); codestudio uses its own "
        "policy. To repair the host for other tools: dpkg --configure -a"
    )


def tool_env() -> dict[str, str]:
    """The environment buildah and podman run with: ours plus ``CONTAINERS_CONF``."""
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(containers_conf())
    return env


def podman_env() -> dict[str, str]:
    """Environment for running podman yourself (e.g. ``subprocess.Popen`` for logs).

    Use it together with :func:`podman_command`; both are what :func:`podman`
    uses, so containers started either way see the same settings.
    """
    return tool_env()


# --------------------------------------------------------------------------
# Storage driver


def _configured_driver() -> str | None:
    """The driver a host storage.conf sets explicitly, if any: honour the admin's choice."""
    import tomllib

    candidates = []
    if os.environ.get("CONTAINERS_STORAGE_CONF"):
        candidates.append(Path(os.environ["CONTAINERS_STORAGE_CONF"]))
    candidates += [Path("/etc/containers/storage.conf"), Path("/usr/share/containers/storage.conf")]
    for path in candidates:
        try:
            conf = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError):
            continue
        driver = conf.get("storage", {}).get("driver")
        if driver:
            return str(driver)
    return None


def _storage_decision() -> dict:
    """The cached storage decision: ``driver`` to use, ``default`` the tools pick unaided."""
    env = os.environ.get("CODESTUDIO_STORAGE_DRIVER")
    if env:
        if env not in STORAGE_DRIVERS:
            from codestudio.errors import UsageError

            raise UsageError(f"CODESTUDIO_STORAGE_DRIVER={env!r}: use one of {', '.join(STORAGE_DRIVERS)}")
        return {"driver": env, "default": None}
    configured = _configured_driver()
    if configured:
        # The tools read the same storage.conf: nothing to pass.
        return {"driver": configured, "default": configured}
    cache = config_dir() / "storage-driver.json"
    with _lock:
        try:
            decision = json.loads(cache.read_text())
            if decision.get("driver") in STORAGE_DRIVERS:
                return decision
        except (OSError, ValueError):
            pass
        info = _store_info()
        ok, detail = probe_overlay(info.get("GraphRoot"))
        decision = {"driver": "overlay" if ok else "vfs", "default": info.get("GraphDriverName"), "detail": detail}
        _write_if_changed(cache, json.dumps(decision, indent=2) + "\n")
        return decision


def storage_driver() -> str:
    """The storage driver every call uses.

    ``$CODESTUDIO_STORAGE_DRIVER`` wins, then a driver set in the host's
    storage.conf, then the cached probe result in the data dir, else a probe:
    overlay if a container can be created, written to and committed with it
    next to the real storage, otherwise vfs (slow but works everywhere).
    """
    return _storage_decision()["driver"]


def _storage_flags() -> list[str]:
    """``--storage-driver`` only when the decision differs from what the tools pick by themselves.

    podman records the driver in its database on first use and refuses a
    different explicit one later ("database configuration mismatch"), so the
    flag is passed only when it is really needed (the vfs fallback).
    """
    decision = _storage_decision()
    if decision.get("default") == decision["driver"]:
        return []
    return ["--storage-driver", decision["driver"]]


def _store_info() -> dict:
    """``buildah info``'s store section: the graph root and the driver chosen without flags."""
    require_tools("buildah")
    proc = subprocess.run(["buildah", "info"], capture_output=True, text=True, env=tool_env())
    if proc.returncode != 0:
        return {}
    try:
        return dict(json.loads(proc.stdout)["store"])
    except (ValueError, KeyError, TypeError):
        return {}


def probe_overlay(graph_root: str | None = None) -> tuple[bool, str]:
    """Try overlay for real in a scratch store beside the real one.

    Returns (works, detail). The scratch store sits on the same filesystem
    as the real storage, because that is what decides whether overlay works.
    """
    require_tools("buildah")
    root = Path(graph_root) if graph_root else None
    parent = root.parent if root and root.parent.is_dir() else config_dir()
    try:
        tmp = Path(tempfile.mkdtemp(prefix="codestudio-probe-", dir=parent))
    except OSError:
        tmp = Path(tempfile.mkdtemp(prefix="codestudio-probe-", dir=config_dir()))
    base = ["buildah", "--root", str(tmp / "root"), "--runroot", str(tmp / "run"), "--storage-driver", "overlay"]
    env = tool_env()
    policy = signature_policy()
    policy_args = ["--signature-policy", str(policy)] if policy else []

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*base, *args], capture_output=True, text=True, env=env, timeout=120)

    try:
        proc = run("from", *policy_args, "scratch")
        if proc.returncode != 0:
            return False, proc.stderr.strip()
        ctr = proc.stdout.strip()
        proc = run("mount", ctr)
        if proc.returncode != 0:
            return False, proc.stderr.strip()
        (Path(proc.stdout.strip()) / "probe").write_text("overlay\n")
        proc = run("commit", *policy_args, ctr, "localhost/codestudio-probe")
        if proc.returncode != 0:
            return False, proc.stderr.strip()
        return True, f"overlay works on {parent}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    finally:
        run("rm", "--all")
        run("rmi", "--all", "--force")
        # A scratch store's leftover mounts would make rmtree fail; buildah
        # unmounted everything above, so a failure here is only noise.
        subprocess.run(["umount", "--recursive", "--lazy", str(tmp / "root" / "overlay")], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# Commands


def _with_policy(args: Sequence[str], commands: set[tuple[str, ...]]) -> list[str]:
    args = list(args)
    policy = signature_policy()
    if policy is None:
        return args
    for size in (2, 1):
        if tuple(args[:size]) in commands:
            return [*args[:size], "--signature-policy", str(policy), *args[size:]]
    return args


def buildah_command(*args: str) -> list[str]:
    """The argv for ``buildah ARGS`` with the engine's storage driver and policy."""
    return ["buildah", *_storage_flags(), *_with_policy(args, _BUILDAH_POLICY_COMMANDS)]


def podman_command(*args: str) -> list[str]:
    """The argv for ``podman ARGS`` with the engine's storage driver and policy.

    Run it with :func:`podman_env` (``CONTAINERS_CONF`` points at the
    engine's containers.conf: ulimits, runtime, cgroup manager).
    """
    return ["podman", *_storage_flags(), *_with_policy(args, _PODMAN_POLICY_COMMANDS)]


def _run(argv: list[str], *, check: bool, input: str | bytes | None, timeout: float | None) -> subprocess.CompletedProcess:
    text = not isinstance(input, bytes)
    proc = subprocess.run(argv, input=input, capture_output=True, text=text, env=tool_env(), timeout=timeout)
    if check and proc.returncode != 0:
        err = proc.stderr if text else proc.stderr.decode(errors="replace")
        raise ToolFailure(argv, proc.returncode, err)
    return proc


def buildah(*args: str, check: bool = True, input: str | bytes | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ``buildah ARGS`` to completion, capturing output; raise :class:`ToolFailure` if ``check``."""
    require_tools("buildah")
    return _run(buildah_command(*args), check=check, input=input, timeout=timeout)


def podman(*args: str, check: bool = True, input: str | bytes | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ``podman ARGS`` to completion, capturing output; raise :class:`ToolFailure` if ``check``."""
    require_tools("podman")
    return _run(podman_command(*args), check=check, input=input, timeout=timeout)


class Stream:
    """A running tool whose merged stdout/stderr is read line by line.

    Iterate for lines (without newlines); afterwards ``returncode`` is set.
    Use as a context manager so an abandoned iteration kills the process.
    """

    def __init__(self, argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None):
        self.argv = argv
        self.returncode: int | None = None
        self._proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env if env is not None else tool_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            bufsize=1,
            text=True,
            errors="replace",
        )

    def __iter__(self) -> Iterator[str]:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            yield line.rstrip("\n")
        self.returncode = self._proc.wait()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        terminate(self._proc)
        self.returncode = self._proc.returncode
        if self._proc.stdout:
            self._proc.stdout.close()


def terminate(proc: subprocess.Popen, grace: float = 10) -> None:
    """Stop ``proc`` if it still runs: SIGTERM, then SIGKILL after ``grace`` seconds; reaped either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stream(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> Stream:
    """Start ``argv`` (from :func:`buildah_command` / :func:`podman_command`) streaming lines.

    ``env`` defaults to :func:`tool_env`; pass a modified copy of it to add variables.
    """
    require_tools(argv[0])
    return Stream(argv, cwd=cwd, env=env)


# --------------------------------------------------------------------------
# Network settings passed into builds


def host_ca_bundle() -> Path | None:
    """The host's CA bundle: ``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE``, ``PIP_CERT``, then Debian's.

    The first that names an existing file wins. Paths containing ``:`` or
    ``,`` cannot be expressed in a ``-v`` mount and are skipped.
    """
    candidates = [os.environ.get(name) for name in CA_ENV_VARS] + [str(DEBIAN_CA_BUNDLE)]
    for candidate in candidates:
        if not candidate:
            continue
        path = Path(candidate).expanduser()
        if path.is_file():
            resolved = path.resolve()
            if ":" in str(resolved) or "," in str(resolved):
                continue
            return resolved
    return None


def proxy_env() -> dict[str, str]:
    """Proxy variables set in this process (buildah passes them to RUN steps, never into the image)."""
    return {name: os.environ[name] for name in PROXY_VARS if os.environ.get(name)}


# --------------------------------------------------------------------------
# Images


def image_inspect(ref: str) -> dict | None:
    """``buildah inspect --type image`` as a dict, or None if no such image is stored."""
    proc = buildah("inspect", "--type", "image", ref, check=False)
    if proc.returncode != 0:
        if "image not known" in proc.stderr or "not found" in proc.stderr or "unknown" in proc.stderr:
            return None
        raise ToolFailure(["buildah", "inspect", ref], proc.returncode, proc.stderr)
    return json.loads(proc.stdout)


def image_exists(ref: str) -> bool:
    return image_id(ref) is not None


def image_id(ref: str) -> str | None:
    """The full image id (hex, no ``sha256:``) of a stored image, or None.

    A fully qualified ``name:tag`` found in the storage's own image list
    (:func:`indexed_image_id`) is answered without running buildah; anything
    else (not found, an id, a short name, an unreadable list) is buildah's call.
    """
    found = indexed_image_id(ref)
    if found is not None:
        return found
    info = image_inspect(ref)
    return None if info is None else info["FromImageID"]


# The image list of containers/storage: every template build and every studio start
# asks for a few image ids by name, and a ``buildah inspect`` costs 50-100 ms (far
# more on a busy machine, and the calls of concurrent starts queue on the CPU).
# containers/storage keeps its images in ``<graph root>/<driver>-images/images.json``
# and replaces that file atomically (write to a temporary file, rename) under its
# lock whenever an image is added, removed or (re)tagged, so a plain read is one
# consistent snapshot of what buildah itself would answer for a stored name.

_index_lock = threading.Lock()
_index_cache: dict[Path, tuple[tuple[int, int, int], dict[str, str]]] = {}


def _storage_confs() -> list[Path]:
    paths = [Path(os.environ["CONTAINERS_STORAGE_CONF"])] if os.environ.get("CONTAINERS_STORAGE_CONF") else []
    user = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "containers" / "storage.conf"
    return paths + [user, Path("/etc/containers/storage.conf"), Path("/usr/share/containers/storage.conf")]


#: What containers/storage reads besides its storage.conf files to choose the driver and its options.
_STORAGE_ENV = ("STORAGE_DRIVER", "STORAGE_OPTS")


def _index_driver() -> str | None:
    """The driver buildah runs with as the engine calls it; None when the index cannot be sure (ask buildah).

    ``--storage-driver`` (:func:`_storage_flags`) wins over ``$STORAGE_DRIVER``;
    without it, ``$STORAGE_DRIVER`` wins over storage.conf and the tools' own
    pick, so one other than :func:`storage_driver` means another image list.
    ``$STORAGE_OPTS`` may move the image store: the index does not read it.
    """
    if os.environ.get("STORAGE_OPTS"):
        return None
    flags = _storage_flags()
    if flags:
        return flags[flags.index("--storage-driver") + 1]
    driver = storage_driver()
    forced = os.environ.get("STORAGE_DRIVER")
    return None if forced and forced != driver else driver


def _graph_root() -> Path | None:
    """The storage's graph root (``buildah info``), cached in the data dir until a storage.conf,
    ``$STORAGE_DRIVER``/``$STORAGE_OPTS`` or the engine's storage flags change."""

    def stamp(path: Path) -> list | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return [str(path), st.st_mtime_ns, st.st_size]

    key = {"uid": os.geteuid(), "confs": [stamp(p) for p in _storage_confs()],
           "xdg": os.environ.get("XDG_DATA_HOME"), "home": str(Path.home()),
           "env": {name: os.environ.get(name) for name in _STORAGE_ENV}, "flags": _storage_flags()}
    cache = config_dir() / "storage-location.json"
    try:
        saved = json.loads(cache.read_text())
        if saved.get("key") == key and saved.get("graph_root"):
            return Path(saved["graph_root"])
    except (OSError, ValueError, AttributeError):
        pass
    root = _store_info().get("GraphRoot")
    if not root:
        return None
    _write_if_changed(cache, json.dumps({"key": key, "graph_root": root}, indent=2) + "\n")
    return Path(root)


def _qualified_name(ref: str) -> str | None:
    """``ref`` as containers/storage records names (``domain/path:tag``), or None if it is not that simple.

    Short names (``debian:12``), digests and ids are left to buildah, which
    knows the registries' rules for them.
    """
    if "@" in ref or ref != ref.strip() or not ref:
        return None
    domain, slash, _rest = ref.partition("/")
    if not slash or not (domain == "localhost" or "." in domain or ":" in domain):
        return None
    return ref if ":" in ref.rsplit("/", 1)[1] else f"{ref}:latest"


def image_index() -> dict[str, str] | None:
    """Every stored image name -> its id, read from containers/storage's image list.

    None if unreadable, or if the engine's buildah may read another list (:func:`_index_driver`).
    """
    try:
        driver = _index_driver()
        root = _graph_root() if driver else None
        if root is None:
            return None
        path = root / f"{driver}-images" / "images.json"
        st = path.stat()
    except (OSError, RuntimeFailure):
        return None
    # A new file (rename) or a rewrite changes the inode, mtime or size: reread only then.
    stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
    with _index_lock:
        cached = _index_cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    try:
        images = json.loads(path.read_bytes())
        index = {str(name): str(image["id"]) for image in images for name in image.get("names") or ()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    with _index_lock:
        _index_cache[path] = (stamp, index)
    return index


def indexed_image_id(ref: str) -> str | None:
    """The id of ``ref`` if the storage's image list names it; None when not found there (ask buildah)."""
    name = _qualified_name(ref)
    if name is None:
        return None
    index = image_index()
    return None if index is None else index.get(name)


def image_labels(ref: str) -> dict[str, str] | None:
    """The OCI config labels of a stored image, or None if there is no such image."""
    info = image_inspect(ref)
    if info is None:
        return None
    return dict(info.get("OCIv1", {}).get("config", {}).get("Labels") or {})


def image_refs(repository: str) -> list[str]:
    """Every ``repository:tag`` stored for a repository (e.g. ``localhost/codestudio/<id>``), sorted."""
    for _ in range(3):
        # Listing fails ("image not known") when another process removes an
        # image meanwhile; a second look is consistent again.
        proc = buildah("images", "--format", "{{.Name}}:{{.Tag}}", check=False)
        if proc.returncode == 0:
            break
    else:
        raise ToolFailure(["buildah", "images"], proc.returncode, proc.stderr)
    return sorted({ref for ref in proc.stdout.split() if ref.startswith(repository + ":")})


def tag_image(image: str, *names: str) -> None:
    """Point each name at ``image`` (an id or name)."""
    buildah("tag", image, *names)


def remove_image(ref: str) -> None:
    """Remove one tag or image; missing ones are ignored."""
    buildah("rmi", ref, check=False)
