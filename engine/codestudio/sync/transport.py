"""How the engine reaches a studio's files: run the agent through exec.

A :class:`Transport` starts ``python3 -I -c <agent source> session BASE``
inside the studio and hands back a process with binary ``stdin``/``stdout``/
``stderr`` pipes; one such process serves a whole sync (see
:mod:`codestudio.sync.agent` for what travels through the pipes). :class:`PodmanTransport` uses ``podman exec -i``;
a Kubernetes transport will use the exec API the same way. The only fake is
:class:`LocalTransport`, which runs the same agent source as a local
subprocess against a folder (tests, benchmarks).
"""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import IO, Protocol


@cache
def agent_source() -> str:
    """The agent script sent through exec (well under the 128 KiB argument limit)."""
    return (Path(__file__).parent / "agent.py").read_text()


class AgentProcess(Protocol):
    """What a transport returns: a running agent (``subprocess.Popen`` fits)."""

    stdin: IO[bytes]
    stdout: IO[bytes]
    stderr: IO[bytes]

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...


class Transport(Protocol):
    """Runs the agent inside a studio."""

    #: Shown in error messages ("podman container cs-x", "local folder /tmp/x").
    description: str
    #: Folder in the studio, outside every synced folder, where the agent keeps its hash cache (or None).
    cache_dir: str | None

    def start_agent(self, op: str, root: str) -> AgentProcess:
        """Start ``agent OP ROOT`` with stdin, stdout and stderr as pipes.

        The engine calls it with ``op="session"`` and ``root="/"`` (the base
        the request's absolute roots are taken below).
        """
        ...


def _popen(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


class PodmanTransport:
    """``podman exec -i [--user U] CONTAINER python3 -I -c <agent> OP ROOT``.

    Uses the engine's podman settings (:func:`codestudio.containers.podman_command`
    and :func:`~codestudio.containers.podman_env`) unless ``podman_cmd`` and
    ``env`` are given. Files are written as ``user`` (the studio user by default)
    so they belong to whoever works in the studio.
    """

    def __init__(
        self,
        container: str,
        *,
        user: str | None = "codestudio",
        podman_cmd: list[str] | None = None,
        env: dict[str, str] | None = None,
        python: str = "python3",
        cache_dir: str | None = "/home/codestudio/.cache/codestudio-sync",
    ):
        self.container, self.user, self.python = container, user, python
        self._podman_cmd, self._env = podman_cmd, env
        self.description = f"podman container {container}"
        self.cache_dir = cache_dir

    def start_agent(self, op: str, root: str) -> AgentProcess:
        args = ["exec", "-i"]
        if self.user:
            args += ["--user", self.user]
        args += [self.container, self.python, "-I", "-c", agent_source(), op, root]
        if self._podman_cmd is not None:
            return _popen([*self._podman_cmd, *args], self._env)
        from codestudio.containers import podman_command, podman_env, require_tools

        require_tools("podman")
        return _popen(podman_command(*args), self._env or podman_env())


class LocalTransport:
    """The agent as a local subprocess; ``ROOT`` (and so every root of a session) is taken below ``base``.

    A mapping targeting ``/home/codestudio/workspace/x`` lands in
    ``base/home/codestudio/workspace/x``, so tests see what a container would.
    """

    def __init__(self, base: Path, python: str = sys.executable):
        self.base, self.python = Path(base), python
        self.description = f"local folder {self.base}"
        self.cache_dir = str(self.base / ".cache-codestudio-sync")

    def path(self, root: str) -> Path:
        return self.base / root.lstrip("/")

    def start_agent(self, op: str, root: str) -> AgentProcess:
        return _popen([self.python, "-I", "-c", agent_source(), op, str(self.path(root))])
