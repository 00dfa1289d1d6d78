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
  interpreter (for a later step into an existing env, e.g. ``ipykernel``).
- :func:`check_dockerfile_statements`: the problems with admin-written
  Dockerfile statements (the instructions a template may use).
- :func:`browser_path_ref`: the ``${DKU_CODE_STUDIO_BROWSER_PATH_<port>}``
  reference the runner expands in entrypoint commands.

Every value that reaches a shell is validated by a type here or quoted with
:func:`~codestudio.blockapi.shell_quote`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

from codestudio.blockapi import BlockProblem, Copy, Probe, Run, Step, shell_quote
from codestudio.resources import Resource, ResourceError

__all__ = [
    "PYTHON_COMMAND_RE",
    "PipRequirement",
    "PythonCommand",
    "browser_path_ref",
    "check_dockerfile_statements",
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


def pip_install(python: str, packages: Sequence[str] = (), requirement_files: Sequence[str] = ()) -> str:
    """Shell text installing ``packages`` and ``requirement_files`` with ``python -m pip``.

    ``--no-cache-dir`` keeps pip's cache out of the image layer. The builder
    makes the host CA bundle available through build arguments, so nothing
    about certificates is written here.
    """
    words = [python, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check", "--no-input"]
    for req in requirement_files:
        words += ["-r", req]
    words += list(packages)
    return " ".join(shell_quote(w) for w in words)


def python_env(
    path: str,
    *,
    python: str = "python3",
    packages: Sequence[str] = (),
    requirement_files: Sequence[Path] = (),
) -> list[Step]:
    """Steps (run as root) creating a virtual environment at ``path`` and installing into it.

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
    script = f"{shell_quote(python)} -m venv {shell_quote(path)}"
    if packages or copied:
        script += "\n" + pip_install(f"{path}/bin/python", packages, copied)
    steps.append(Run(script=script))
    return steps
