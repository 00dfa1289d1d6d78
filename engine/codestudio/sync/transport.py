"""How the engine reaches a studio's files: run the agent through exec.

A :class:`Transport` starts ``python3 -I -c <agent source> session BASE``
inside the studio and hands back a process with binary ``stdin``/``stdout``/
``stderr`` pipes; one such process serves a whole sync (see
:mod:`codestudio.sync.agent` for what travels through the pipes). :class:`ExecTransport` runs it through the studio runtime's exec
(``podman exec -i`` locally, the exec API on Kubernetes). The only fake is
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


class ExecTransport:
    """The agent in a studio's pod through the runtime's exec (:meth:`codestudio.runtime.base.Runtime.exec`).

    ``python3 -I -c <agent> OP ROOT`` runs as ``user`` (the studio user by
    default) so files belong to whoever works in the studio; any runtime
    (podman locally, the Kubernetes exec API) serves it the same way.
    """

    def __init__(
        self,
        runtime,
        pod: str,
        *,
        user: str | None = "codestudio",
        python: str = "python3",
        cache_dir: str | None = "/home/codestudio/.cache/codestudio-sync",
    ):
        self.runtime, self.pod, self.user, self.python = runtime, pod, user, python
        self.description = f"{runtime.name} pod {pod}"
        self.cache_dir = cache_dir

    def start_agent(self, op: str, root: str) -> AgentProcess:
        argv = [self.python, "-I", "-c", agent_source(), op, root]
        framed = getattr(self.runtime, "exec_framed", None)  # duck-typed runtimes may only have exec
        if framed is not None:
            return framed(self.pod, argv, user=self.user)
        return self.runtime.exec(self.pod, argv, user=self.user, stdin=True)


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
