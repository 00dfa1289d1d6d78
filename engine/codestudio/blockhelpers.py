"""Helpers for block authors: part of the public block-author API.

:mod:`codestudio.blockapi` holds the data a block returns; this module holds
small, generic building blocks that several block families need, so that no
plugin copies another's code:

- :data:`PipRequirement`: a validated pip requirement string for ``Params``
  models (``pandas==2.2.3``, ``scikit-learn>=1.4``, ``requests[socks]``).
- :func:`resolve_resource`: resolve a template resource or raise a
  :class:`~codestudio.blockapi.BlockProblem` naming the field.
- :func:`python_env`: the steps that create a Python virtual environment in
  the image and install packages and requirement files into it.
- :func:`pip_install`: the shell text that installs packages with a given
  interpreter (for a later step into an existing env, e.g. ``ipykernel``),
  with uv or pip (:mod:`codestudio.buildenv`).
- :func:`cache_dir`: a tool's download cache folder in RUN steps (npm, apt).
- :func:`check_dockerfile_statements`: the problems with admin-written
  Dockerfile statements (the instructions a template may use).
- :func:`browser_path_ref`: the ``${DKU_CODE_STUDIO_BROWSER_PATH_<port>}``
  reference the runner expands in entrypoint commands.
- :func:`code_env_problems`: the rule for a block running in a named code
  env (it exists and comes first), as ``validate_block`` problems.
- :class:`WebAppParams` and :class:`WebAppBlock`: the settings and hooks of a Python web app served from a zone
  (own env or a code env, starter files, start script, probe, webapp).

Every value that reaches a shell is validated by a type here or quoted with
:func:`~codestudio.blockapi.shell_quote`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field

from codestudio import hookimpl
from codestudio.blockapi import BlockParams, BlockProblem, Copy, Probe, Run, Step, shell_quote
from codestudio.resources import Resource, ResourceError
from codestudio.types import ContainerPath, Port, RelativePath, Slug, Zone

__all__ = [
    "PackageVersion",
    "PYTHON_COMMAND_RE",
    "PipRequirement",
    "PythonCommand",
    "WebAppBlock",
    "WebAppParams",
    "browser_path_ref",
    "cache_dir",
    "check_dockerfile_statements",
    "code_env_problems",
    "pip_install",
    "python_env",
    "resolve_resource",
]

#: A bare interpreter name found on PATH (``python3``, ``python3.11``).
PYTHON_COMMAND_RE = re.compile(r"^python[0-9.]*$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _requirement(value: str) -> str:
    from packaging.requirements import InvalidRequirement, Requirement

    text = value.strip()
    if not text or _CONTROL_RE.search(text):
        raise ValueError("empty, or contains a newline or control character")
    if text.startswith("-"):
        # pip would read it as an option (--index-url, -r, -e): not a requirement.
        raise ValueError("a pip option, not a requirement")
    try:
        Requirement(text)
    except InvalidRequirement as exc:
        raise ValueError(f"not a pip requirement: {exc}") from None
    return text


def _python_command(value: str) -> str:
    from codestudio.types import _container_path

    if PYTHON_COMMAND_RE.match(value):
        return value
    try:
        return _container_path(value)
    except ValueError:
        raise ValueError(
            "neither an interpreter name like python3 nor an absolute path in the image"
        ) from None


#: A pip requirement string (PEP 508), validated with ``packaging``; never a pip option.
PipRequirement = Annotated[str, AfterValidator(_requirement)]
#: An interpreter: a name on PATH matching ``python[0-9.]*`` or an absolute path in the image.
PythonCommand = Annotated[str, AfterValidator(_python_command)]


def ide_probe(probe: Probe | None, port: int, url: str) -> Probe | None:
    """What an IDE block returns from ``adjust_probe``: its own HTTP probe,
    unless an earlier block (another IDE, a ``kubernetes`` block) set one.

    The first IDE's port is the studio's main port, and an admin's explicit
    ``kubernetes`` probe is never overridden by an IDE's default.
    """
    if probe is not None:
        return None
    return Probe(kind="http", port=port, url=url)


def check_dockerfile_statements(text: str) -> list[str]:
    """The problems with admin-written Dockerfile statements (empty if fine).

    Only instructions that cannot break the build's structure pass (no
    ``FROM``, ``ENTRYPOINT``, ``CMD``, ``ONBUILD``); see docs/blocks.md.
    """
    from codestudio.dockerfile import check_statements

    return check_statements(text)


def browser_path_ref(port: int) -> str:
    """The reference to a port's browser path that the runner expands in commands and env."""
    return "${DKU_CODE_STUDIO_BROWSER_PATH_%d}" % int(port)


def resolve_resource(state, spec: str, field: str) -> Resource:
    """Resolve ``spec`` with ``state.resources``; a bad spec becomes a BlockProblem on ``field``."""
    try:
        return state.resources.resolve(spec)
    except ResourceError as exc:
        raise BlockProblem(field, str(exc)) from None


def pip_install(python: str, packages: Sequence[str] = (), requirement_files: Sequence[str] = (), *,
                venv: str | None = None) -> str:
    """Shell text installing ``packages`` and ``requirement_files`` into ``python``'s environment.

    With ``venv`` (an interpreter), the environment is created first with
    it, as ``venv -m venv <prefix>`` would (``python`` must then be
    ``<prefix>/bin/python``): the same pip and setuptools, the interpreter's
    own bundled wheels, installed offline by uv instead of ensurepip.

    For a root ``Run(script=...)`` step of the image build. It calls the
    build tools' ``install-python`` (:mod:`codestudio.buildenv`), which
    installs with uv, or with pip when the template or the data dir chooses
    pip (or the image carries its own pip configuration); the renderer
    mounts the tools and the download cache into the step, and the builder
    lends the host's CA bundle, proxies and package index settings. Nothing
    of that is written into the image: only the installed packages.
    """
    from codestudio.buildenv import INSTALL_PYTHON

    if venv is not None:
        prefix = python.removesuffix("/bin/python")
        if prefix == python:
            raise ValueError(f"{python!r}: a new environment's interpreter is <prefix>/bin/python")
        words = [INSTALL_PYTHON, "--venv", venv, prefix]
    else:
        words = [INSTALL_PYTHON, python]
    for req in requirement_files:
        words += ["-r", req]
    words += list(packages)
    return " ".join(shell_quote(w) for w in words)


def cache_dir(tool: str) -> str:
    """The download cache folder of ``tool`` (``uv``, ``pip``, ``npm`` or ``apt``) in a RUN step.

    A ``Run`` step whose text names it gets the cache mounted there for the
    build (``RUN --mount=type=cache``, kept in the data dir, never in the
    image); point the tool at it (``npm_config_cache=...``,
    ``-o Dir::Cache::Archives=...``).
    """
    from codestudio.buildenv import CACHES

    return CACHES[tool]


def python_env(
    path: str,
    *,
    python: str = "python3",
    packages: Sequence[str] = (),
    requirement_files: Sequence[Path] = (),
) -> list[Step]:
    """Steps (run as root) creating a virtual environment at ``path`` and installing into it.

    The environment is what ``python -m venv path`` makes (pip and
    setuptools included, the interpreter's own), created by the build
    tools' ``install-python --venv`` in the same step as the install.

    Requirement files (resolved resources) are copied to
    ``<path>/.codestudio/requirements/<n>-<name>`` first, so a changed file
    invalidates the install step and nothing after it.

    :param path: the environment's prefix in the image (a validated container path).
    :param python: the interpreter that creates it (``python3`` or an absolute path).
    :param packages: validated pip requirement strings.
    :param requirement_files: resolved resource files.
    """
    steps: list[Step] = []
    copied = []
    for index, source in enumerate(requirement_files):
        dest = f"{path}/.codestudio/requirements/{index}-{source.name}"
        steps.append(Copy(source=source, dest=dest))
        copied.append(dest)
    steps.append(Run(script=pip_install(f"{path}/bin/python", packages, copied, venv=python)))
    return steps


# --------------------------------------------------------------------------
# Python web apps served from a zone (gradio, dash, voila)


def code_env_problems(block, state, name: str | None, field: str = "code_env") -> list[tuple[str, str]] | None:
    """``validate_block`` problems for a block that runs in the code env ``name``.

    The env must exist and come before the block (its interpreter path is
    only known once the code env block has applied); the message names both
    blocks. Returns None when ``name`` is None or the env is fine.
    """
    if not name:
        return None
    owners = [owner for owner, env in state.code_envs if env.name == name]
    if not owners:
        known = ", ".join(env.name for _, env in state.code_envs) or "none"
        return [(field, f"no code env named {name!r} in the template (defined: {known})")]
    if owners[0].index > block.index:
        return [(field, f"code env {name!r} is defined by {owners[0].where}, after this block, so this "
                        "block's tool is not installed in it when the app starts: move the code env block first")]
    env = state.find_code_env(name)
    if env is not None and env.language != "python":
        return [(field, f"code env {name!r} ({owners[0].where}) is an R env; this block runs in a Python code env")]
    return None


def restart_on_change_script() -> bytes:
    """The stdlib script that runs an app and restarts it when its folder changes."""
    from importlib import resources

    return resources.files("codestudio").joinpath("files", "restart_on_change.py").read_bytes()


def _version(value: str) -> str:
    from packaging.version import InvalidVersion, Version

    try:
        Version(value)
    except InvalidVersion:
        raise ValueError(f"{value!r} is not a version number") from None
    return value


#: A version number of a PyPI distribution (PEP 440), e.g. ``5.1.0``.
PackageVersion = Annotated[str, AfterValidator(_version)]


class WebAppParams(BlockParams):
    """The settings every :class:`WebAppBlock` takes; each block redeclares the defaults
    of ``port``, ``version``, ``app`` and ``path``."""

    port: Port = Field(description="Container port the app listens on.")
    version: PackageVersion = Field(description="The tool's version from PyPI.")
    packages: list[PipRequirement] = Field(
        default_factory=list,
        description="Extra pip requirements installed with the tool.",
        examples=[["pandas==2.2.3", "plotly"]],
    )
    code_env: Slug | None = Field(
        default=None,
        description="A code env, defined before this block, that runs the app (the tool is installed into it); "
        "default: the block's own env at path.",
        examples=["py-ml"],
    )
    zone: Zone = Field(default="code_studio-versioned", description="The zone holding the app.")
    app: RelativePath = Field(description="The app's path in the zone.")
    path: ContainerPath = Field(description="The block's own environment (when code_env is not set).")


class WebAppBlock:
    """Mixin for blocks serving a Python web app from a zone (``gradio``, ``dash``, ``voila``).

    A subclass (also a :class:`~codestudio.blockapi.Block`) declares a
    ``Params`` model with ``port``, ``version``, ``packages``, ``code_env``,
    ``zone``, ``app`` and ``path`` fields, and sets:

    - ``home``: the folder of its own files in the image;
    - ``tool``: the pip distribution it installs at ``version``
      (``extra_requirements`` go with it);
    - ``example_files``: the names of the working example's files in the
      ``files/`` folder of the block's own package (default ``app.py``; a
      subclass without its own ``files/<name>`` uses its base class's, see
      :meth:`package_file`),
      copied to ``<home>/example/`` and written into the zone when a studio
      is created (:meth:`starter_paths` says where);
    - a ``files/start.sh`` next to them, called as
      ``start.sh PYTHON APP PORT BASE_PATH``; ``<home>/restart_on_change.py``
      is there for it to use (unless ``restart_on_change`` is false);
    - ``probe_url``, ``proxied_subpath``, ``default_label``.

    ``examples`` (``{file name: bytes}``) and ``start_script`` (bytes) read
    those files; a block may set them instead.

    The app runs in the block's own env at ``path`` or, with ``code_env``,
    in that env (the tool is installed into it when it is announced; the
    env must come first). The entrypoint is launchable as a webapp.
    """

    home: str = ""
    tool: str = ""
    extra_requirements: tuple[str, ...] = ()
    example_files: tuple[str, ...] = ("app.py",)
    probe_url: str = "${baseUrl}/"
    proxied_subpath: str = "$request_uri"
    default_label: str = ""
    #: Copy ``restart_on_change.py`` into ``home`` (tools that do not reload an edited app).
    restart_on_change: bool = True

    def package_file(self, name: str) -> bytes:
        """``files/<name>`` of the first class in the block's MRO whose package has it.

        A subclass in another package inherits its parent's files unless its
        own package has a ``files/<name>``. None having it (a block defined in
        a single module, not a package, has no ``files/`` of its own) is a
        :class:`~codestudio.errors.PluginError` naming the block type and the file.
        """
        import sys
        from importlib import resources

        from codestudio.errors import PluginError

        searched: list[str] = []
        for cls in type(self).__mro__:
            if cls is WebAppBlock or not issubclass(cls, WebAppBlock):
                continue
            module = sys.modules.get(cls.__module__)
            spec = getattr(module, "__spec__", None)
            if spec is None:
                continue
            # A package's own __init__, or a module inside a package; a top-level module has none.
            package = spec.name if spec.submodule_search_locations is not None else spec.parent
            if not package or package in searched:
                continue
            searched.append(package)
            try:
                target = resources.files(package).joinpath("files", name)
                if target.is_file():
                    return target.read_bytes()
            except (ImportError, TypeError, OSError):
                continue
        cls = type(self)
        raise PluginError(
            f"block type {getattr(self, 'type', '') or '?'!r} ({cls.__module__}.{cls.__qualname__}): no files/{name} "
            + (f"in the package of its class or of a base class ({', '.join(searched)})" if searched
               else "(its class is defined in a single module, not a package, so it has no files/ folder)")
        )

    @property
    def examples(self) -> dict[str, bytes]:
        return {name: self.package_file(name) for name in self.example_files}

    @property
    def start_script(self) -> bytes:
        return self.package_file("start.sh")

    def requirements(self, p) -> list[str]:
        return [f"{self.tool}=={p.version}", *self.extra_requirements, *p.packages]

    def starter_paths(self, p) -> dict[str, str]:
        """``{path in the zone: example file name}``; default: ``app`` is the one example file."""
        (name,) = self.examples
        return {p.app: name}

    @hookimpl
    def contribute_dockerfile(self, block):
        p = block.params
        steps: list[Step] = [] if p.code_env else python_env(p.path, packages=self.requirements(p))
        steps += [Copy(content=content, dest=f"{self.home}/example/{name}") for name, content in sorted(self.examples.items())]
        if self.restart_on_change:
            steps.append(Copy(content=restart_on_change_script(), dest=f"{self.home}/restart_on_change.py"))
        steps.append(Copy(content=self.start_script, dest=f"{self.home}/start.sh", mode=0o755))
        return steps

    @hookimpl
    def contribute_stage(self, block):
        p = block.params
        return None if p.code_env else sorted({p.path, self.home})

    @hookimpl
    def register_code_env(self, block, code_env):
        p = block.params
        if code_env.name != p.code_env or code_env.language != "python":
            return None  # another env, or an R env (refused by validate_block)
        return [Run(script=pip_install(code_env.python, self.requirements(p)))]

    @hookimpl
    def contribute_entrypoint(self, block, state):
        from codestudio.blockapi import Entrypoint
        from codestudio.types import default_target

        p = block.params
        if p.code_env:
            env = state.find_code_env(p.code_env)
            # A missing or later env is reported by validate_block; the path is a placeholder.
            python = env.python if env and env.python else f"/opt/codestudio/code-envs/{p.code_env}/bin/python"
        else:
            python = f"{p.path}/bin/python"
        return Entrypoint(
            label=p.label or self.default_label,
            command=[f"{self.home}/start.sh", python, f"{default_target(p.zone)}/{p.app}", str(p.port),
                     browser_path_ref(p.port)],
            port=p.port,
            expose_html=True,
            launch_in_webapp=True,
            proxied_subpath=self.proxied_subpath,
        )

    @hookimpl
    def contribute_starter_files(self, block):
        from codestudio.blockapi import StarterFile

        p = block.params
        return [StarterFile(zone=p.zone, path=path, content=self.examples[name])
                for path, name in sorted(self.starter_paths(p).items())]

    @hookimpl
    def adjust_probe(self, block, probe):
        return ide_probe(probe, block.params.port, self.probe_url)

    @hookimpl
    def validate_block(self, block, state):
        return code_env_problems(block, state, block.params.code_env)
