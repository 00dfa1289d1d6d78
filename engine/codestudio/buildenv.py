"""What RUN steps of a template build find besides the image itself.

Three things are lent to a build and never stored in its image:

- **build tools** (:data:`TOOLS_DIR`): ``install-python``, which installs
  Python packages into an environment with uv (default) or pip, and the uv
  binary. They are an engine-owned image (:func:`tools_image`), made once
  per base image, installer, uv version and tools (like the base image, a
  template's ``--no-cache`` does not rebuild it) from the template's base
  image, so uv comes from the package index like every other Python package
  (no other network is needed) and matches the base's platform; a template's
  Dockerfile names it as a stage (:data:`TOOLS_STAGE`, ``FROM`` the build
  argument :data:`TOOLS_IMAGE_ARG`) and RUN steps that call the tools get it
  bind-mounted read-only.
- **download caches** (:data:`CACHES`): one folder per tool (uv, pip, npm,
  apt), mounted with ``RUN --mount=type=cache`` into the steps that name
  them. buildah keeps cache mounts under its temporary folder, which the
  builder points into the data dir (``<data dir>/cache/build/``).
- **index settings** (:data:`SETTINGS_DIR`): the host's package index
  settings as ``pip.conf`` and ``uv.toml``, mounted read-only by the builder
  (see :mod:`codestudio.images.indexes`).

This module holds the names both sides agree on: blocks (through
:mod:`codestudio.blockhelpers`) write them into RUN steps, the renderer adds
the mounts, the builder provides what the mounts point at.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

#: Where the build tools are mounted in RUN steps (never part of an image).
TOOLS_DIR = "/opt/codestudio-build"
#: The stage (of a template's Dockerfile) that is the build tools image.
TOOLS_STAGE = "codestudio-build-tools"
#: The build argument naming the build tools image (its id, passed by the builder).
TOOLS_IMAGE_ARG = "CODESTUDIO_BUILD_TOOLS_IMAGE"
#: Where the build tools images are (tag: :func:`tools_image`).
TOOLS_IMAGE_REPO = "localhost/codestudio-build-tools"
#: The label saying which tools an image carries (its value: :func:`tools_id`).
TOOLS_LABEL = "io.codestudio.build-tools"
#: ``install-python PYTHON [pip install arguments]``.
INSTALL_PYTHON = f"{TOOLS_DIR}/bin/install-python"
#: The uv release the tools stage installs (from the package index, with pip).
UV_VERSION = "0.13.9"
#: Index settings (pip.conf, uv.toml, indexes.txt), mounted read-only by the builder.
SETTINGS_DIR = "/run/codestudio-build"

#: Download cache of each tool: the folder RUN steps use; a step naming it gets it mounted.
CACHES: dict[str, str] = {
    "uv": "/var/cache/codestudio/uv",
    "pip": "/var/cache/codestudio/pip",
    "npm": "/var/cache/codestudio/npm",
    "apt": "/var/cache/codestudio/apt",
}
#: uv, pip and npm are safe for concurrent use of one cache (atomic writes,
#: their own locks); apt is not (it locks its archive folder and fails when
#: it is taken), so buildah gives apt's cache to one step at a time.
CACHE_SHARING: dict[str, str] = {"uv": "shared", "pip": "shared", "npm": "shared", "apt": "locked"}

#: What installs Python packages: uv by default, pip as the fallback.
INSTALLERS = ("uv", "pip")
DEFAULT_INSTALLER = "uv"
#: The data-dir setting: ``python_installer = "pip"`` in this file (TOML) falls back to pip.
SETTINGS_FILE = "config/build.toml"


#: The build tools, as files of the tools stage's ``bin/`` (name -> file in ``codestudio/files``).
TOOL_FILES = {"install-python": "install-python.sh", "verify-record.py": "verify-record.py",
              "ensurepip-wheels.py": "ensurepip-wheels.py"}


def tool_files() -> dict[str, bytes]:
    """The build tools' files (``install-python`` (POSIX sh), ``verify-record.py``, ``ensurepip-wheels.py``)."""
    root = resources.files("codestudio").joinpath("files")
    return {name: root.joinpath(source).read_bytes() for name, source in TOOL_FILES.items()}


def install_python_script() -> bytes:
    """The ``install-python`` tool (POSIX sh)."""
    return tool_files()["install-python"]


def tools_id(installer: str) -> str:
    """What decides the build tools' behaviour; a RUN step that uses them is rebuilt when it changes.

    buildah's layer cache keys a RUN step by its text and build arguments,
    not by what a mounted stage holds: this id goes into a build argument of
    every stage that mounts the tools.
    """
    digest = hashlib.sha256(b"".join(hashlib.sha256(data).digest() for _, data in sorted(tool_files().items())))
    digest = digest.hexdigest()[:12]
    return f"{installer}-{UV_VERSION}-{digest}" if installer == "uv" else f"{installer}-{digest}"


def tools_image(installer: str, base_image_id: str) -> str:
    """The build tools image for ``installer`` on a base image: ``localhost/codestudio-build-tools:<tools id>-<base>``.

    The uv binary is the base's (its platform and libc); pip's tools hold no
    binary and do not depend on the base.
    """
    suffix = f"-{base_image_id.removeprefix('sha256:')[:12]}" if installer == "uv" else ""
    return f"{TOOLS_IMAGE_REPO}:{tools_id(installer)}{suffix}"


def cache_mount(tool: str) -> str:
    """The ``--mount`` value of a tool's download cache."""
    return f"type=cache,id=codestudio-{tool},target={CACHES[tool]},sharing={CACHE_SHARING[tool]}"


def cache_root(data: Path | None = None) -> Path:
    """``<data dir>/cache/build``: buildah's temporary folder during builds, holding its cache mounts."""
    if data is None:
        from codestudio.home import data_dir

        data = data_dir()
    return data / "cache" / "build"


def build_settings(data: Path | None = None) -> dict:
    """The data dir's build settings (:data:`SETTINGS_FILE`, TOML); {} when there is no such file.

    An unreadable or invalid file is an error naming it (exit 2).
    """
    import tomllib

    from codestudio.errors import UsageError

    if data is None:
        from codestudio.home import data_dir

        data = data_dir()
    path = data / SETTINGS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None


def default_installer(data: Path | None = None) -> str:
    """The data dir's choice (``python_installer`` in :data:`SETTINGS_FILE`), else uv.

    A bad value is an error naming the file and the setting (exit 2).
    """
    from codestudio.errors import UsageError

    value = build_settings(data).get("python_installer", DEFAULT_INSTALLER)
    if value not in INSTALLERS:
        raise UsageError(f"{_settings_path(data)}: python_installer = {value!r}: "
                         f"use one of {', '.join(map(repr, INSTALLERS))}")
    return value


#: Parallel stages are off unless asked for: on the 2-core machines codestudio is developed on,
#: the data-science example built cold took 187 s with them and 157 s without (docs/building.md).
DEFAULT_PARALLEL_STAGES = False


def default_parallel_stages(data: Path | None = None) -> bool:
    """The data dir's ``parallel_stages`` (true/false in :data:`SETTINGS_FILE`), else false.

    A value that is not a boolean is an error naming the file and the setting (exit 2).
    """
    from codestudio.errors import UsageError

    value = build_settings(data).get("parallel_stages", DEFAULT_PARALLEL_STAGES)
    if not isinstance(value, bool):
        raise UsageError(f"{_settings_path(data)}: parallel_stages = {value!r}: use true or false")
    return value


def _settings_path(data: Path | None) -> Path:
    if data is None:
        from codestudio.home import data_dir

        data = data_dir()
    return data / SETTINGS_FILE
