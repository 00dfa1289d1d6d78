"""Commands, files and logs in pods: the Kubernetes exec websocket API and the log API.

:class:`PodTransport` gives the Kubernetes runtime the ``exec``,
``exec_detached``, ``logs``, ``save_logs`` and ``copy_out`` of
:class:`~codestudio.runtime.base.Runtime`; a command runs as a
:class:`KubeExecProcess`, which has the ``subprocess.Popen`` surface the
engine uses (binary ``stdin``/``stdout``/``stderr`` pipes, ``wait``,
``poll``, ``communicate``, ``kill``), so file sync streams its tar frames
through it exactly as through ``podman exec -i``.

The pieces: the exec protocol and :class:`KubeExecProcess` in
:mod:`~codestudio.runtime.kubernetes.command`, opening websockets to the API
server (shared with port-forwarding) in
:mod:`~codestudio.runtime.kubernetes.connection`, the log API in
:mod:`~codestudio.runtime.kubernetes.logs`. Their public names are
importable from here too.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import IO

from codestudio.errors import RuntimeFailure
from codestudio.runtime.kubernetes.command import (
    EXEC_PROTOCOLS,
    MAIN_CONTAINER,
    V4,
    V5,
    KubeExecProcess,
    exec_in_pod,
    exec_process,
    exit_status,
)
from codestudio.runtime.kubernetes.connection import CONNECT_TIMEOUT, ExecFailure, connect
from codestudio.runtime.kubernetes.logs import LogStream, PodLogs

#: The only user a pod's commands can run as: the pod's own (uid 1000, runAsNonRoot).
POD_USER = "codestudio"


#: ``exec_detached``: start the command in the background with its own session and return at once.
#: ``command -v`` first, so a missing program is reported (status 127) instead of vanishing.
_DETACH = ('command -v "$1" >/dev/null 2>&1 || { echo "$1: not found" >&2; exit 127; }; '
           'if command -v setsid >/dev/null 2>&1; then setsid "$@" </dev/null >/dev/null 2>&1 & '
           'else "$@" </dev/null >/dev/null 2>&1 & fi')

#: ``copy_out``: a tar of one absolute path, as ``/``-relative names; status 3 when it does not exist.
_TAR = 'cd / && [ -e "$1" ] || exit 3; exec tar -cf - -- "$1"'


class PodTransport(PodLogs):
    """The exec and log side of the Kubernetes runtime, with the :class:`~codestudio.runtime.base.Runtime` signatures.

    :class:`~codestudio.sync.transport.ExecTransport` can run the sync agent
    through it directly (it has ``name``, ``exec`` and ``exec_framed``).

    :param api_client: the official client's ``ApiClient`` (its configuration:
        kubeconfig context or in-cluster account).
    :param namespace: the runtime's namespace.
    :param container: the studio container's name in every pod.
    """

    name = "kubernetes"

    def __init__(self, api_client, namespace: str, *, container: str = MAIN_CONTAINER,
                 connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = 30.0,
                 protocols: Sequence[str] = EXEC_PROTOCOLS):
        self.api_client = api_client
        self.namespace = namespace
        self.container = container
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.protocols = tuple(protocols)

    @property
    def configuration(self):
        return self.api_client.configuration

    def _core(self):
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    @staticmethod
    def check_user(user: str | None) -> None:
        # The exec API has no user: commands run as the container's user, which the pod
        # security settings fix to codestudio (uid 1000, non-root, no escalation).
        if user not in (None, POD_USER, "1000"):
            raise RuntimeFailure(f"the kubernetes runtime runs commands as the pod's user ({POD_USER}, uid 1000); "
                                 f"it cannot run them as {user!r}")

    # --- Runtime.exec and friends --------------------------------------------

    def exec(self, pod: str, argv: Sequence[str], *, user: str | None = POD_USER, stdin: bool = False,
             framed_stdin: bool = False) -> KubeExecProcess:
        self.check_user(user)
        return exec_in_pod(self.configuration, self.namespace, pod, argv, container=self.container, stdin=stdin,
                           framed_stdin=framed_stdin, protocols=self.protocols, timeout=self.connect_timeout)

    def exec_framed(self, pod: str, argv: Sequence[str], *, user: str | None = POD_USER) -> KubeExecProcess:
        return self.exec(pod, argv, user=user, stdin=True, framed_stdin=True)

    def exec_detached(self, pod: str, argv: Sequence[str], *, user: str | None = POD_USER) -> None:
        if not argv:
            raise RuntimeFailure("exec: no command")
        proc = self.exec(pod, ["/bin/sh", "-c", _DETACH, "sh", *argv], user=user)
        out, err = proc.communicate(timeout=self.read_timeout + self.connect_timeout)
        if proc.returncode != 0:
            detail = (err or out).decode(errors="replace").strip()[-300:]
            raise RuntimeFailure(f"could not start {argv[0]} in pod {pod}: {detail or f'status {proc.returncode}'}")

    def copy_out(self, pod: str, path: str, out: IO[bytes]) -> bool:
        """A tar of ``path`` (names relative to ``/``) through exec: only while the container runs.

        The exec API cannot reach a stopped container's files (``podman cp``
        can): for a pod that is not running this raises, and the lifecycle
        keeps what it can say about it.
        """
        if not path.startswith("/"):
            raise RuntimeFailure(f"copy_out: {path!r} is not an absolute path")
        rel = path.strip("/") or "."
        proc = self.exec(pod, ["/bin/sh", "-c", _TAR, "sh", rel])
        err = bytearray()

        def drain() -> None:
            while chunk := proc.stderr.read1(1 << 16):
                err.extend(chunk)
                del err[:-4096]

        t = threading.Thread(target=drain, daemon=True)
        t.start()
        import shutil

        shutil.copyfileobj(proc.stdout, out, 1 << 20)
        code = proc.wait()
        t.join()
        if code == 3:
            return False
        if code != 0:
            raise RuntimeFailure(f"tar of {path} in pod {pod} exited with status {code}: "
                                 f"{bytes(err).decode(errors='replace').strip()[-300:]}")
        return True


__all__ = [
    "CONNECT_TIMEOUT",
    "EXEC_PROTOCOLS",
    "ExecFailure",
    "KubeExecProcess",
    "LogStream",
    "PodTransport",
    "V4",
    "V5",
    "connect",
    "exec_in_pod",
    "exec_process",
    "exit_status",
]
