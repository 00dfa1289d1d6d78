"""The runtime interface: the one seam between the studio lifecycle and where pods run.

A **runtime** runs *pod sets* from the rendered Deployment manifest
(:func:`codestudio.render.kubernetes_manifest`): one pod for a studio, N
replicas for a webapp. The lifecycle (:mod:`codestudio.runtime.studios`),
file sync and actions talk only to a :class:`Runtime`; nothing above this
module knows podman or Kubernetes. Adding a runtime is adding one module
with a subclass (docs/runtimes.md).

The data passed across the seam is plain and runtime-neutral:

- :class:`PodSetSpec` -- what to run: a name, the manifest, labels, a
  replica count, and the secret values its ``secretKeyRef`` env entries
  refer to;
- :class:`PodSet` / :class:`Pod` -- what runs: each pod's name, phase and
  :class:`Endpoint` per container port (where the gateway reaches it);
- :class:`RuntimeEvent` -- what happened (scheduled, pulling, started,
  ready, failed with a reason, stopped), as a stream;
- :class:`ExecProcess` -- a command running in a pod with binary stdin,
  stdout and stderr pipes and an exit status (closing stdin ends its input).

Every method raises :class:`~codestudio.errors.RuntimeFailure` (exit 1)
when the runtime itself fails (podman or the API server refuses, times
out); "not there" is never an error: :meth:`Runtime.pods` returns ``[]`` and
:meth:`Runtime.stop` of a missing pod set does nothing, which is what makes
reconciliation after a crash or a reboot safe to repeat.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, Protocol

#: The label every object the engine creates carries (Kubernetes' convention).
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "codestudio"
#: Which engine instance (data dir, or cluster namespace) owns an object.
INSTANCE_LABEL = "codestudio.io/instance"
#: Kind of workload: ``studio`` or ``webapp``.
KIND_LABEL = "codestudio.io/kind"
#: The studio (or webapp) id, its project and its owner.
ID_LABEL = "codestudio.io/studio"
PROJECT_LABEL = "codestudio.io/project"
OWNER_LABEL = "codestudio.io/owner"

#: Phases of a pod as the lifecycle sees them.
PodPhase = Literal["pending", "running", "exited", "gone"]
#: Kinds of :class:`RuntimeEvent`, in the order a healthy start produces them.
EventKind = Literal["scheduled", "pulling", "pulled", "started", "ready", "failed", "stopped"]
EVENT_KINDS: tuple[str, ...] = ("scheduled", "pulling", "pulled", "started", "ready", "failed", "stopped")


@dataclass(frozen=True)
class Endpoint:
    """Where the gateway reaches one container port of one pod (``host:port``)."""

    host: str
    port: int


@dataclass(frozen=True)
class Pod:
    """One pod of a pod set, as the runtime sees it now.

    ``endpoints`` maps each container (server) port of the template to where
    the gateway reaches it; ``message`` says why a pod is not running.
    """

    name: str
    phase: PodPhase
    endpoints: Mapping[int, Endpoint] = field(default_factory=dict)
    message: str | None = None

    @property
    def running(self) -> bool:
        return self.phase == "running"


@dataclass(frozen=True)
class PodSet:
    """A pod set the runtime runs: its name, its labels and its pods (replicas)."""

    name: str
    labels: Mapping[str, str]
    pods: tuple[Pod, ...] = ()

    @property
    def running(self) -> bool:
        """Every pod is running (and there is at least one)."""
        return bool(self.pods) and all(p.running for p in self.pods)


@dataclass(frozen=True)
class PodSetSpec:
    """What :meth:`Runtime.start` runs.

    :param name: the pod set's name (the Deployment's, DNS-1123, at most 63
        characters); unique per studio or webapp and engine instance.
    :param manifest: the rendered Deployment (and Service, ...) documents,
        unadapted: the runtime makes its own adaptations.
    :param labels: codestudio's labels (:data:`ID_LABEL`, :data:`PROJECT_LABEL`,
        :data:`OWNER_LABEL`, :data:`KIND_LABEL`); the runtime adds
        :data:`MANAGED_BY` and :data:`INSTANCE_LABEL` and puts them on every
        object and pod, so :meth:`Runtime.list` finds them after a crash.
    :param replicas: how many pods (1 for a studio).
    :param secrets: secret name -> key -> value for the manifest's
        ``secretKeyRef`` env entries (a Kubernetes Secret; literal values
        locally). Never logged.
    :param ports: the container (server) ports the gateway must reach; the
        runtime reports an :class:`Endpoint` for each in every pod.
    :param workdir: an engine folder for this pod set (the manifest as run,
        private files); the runtime may write there.
    """

    name: str
    manifest: Sequence[dict]
    labels: Mapping[str, str]
    replicas: int = 1
    secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    ports: Sequence[int] = ()
    workdir: Path | None = None


@dataclass(frozen=True)
class RuntimeEvent:
    """Something that happened to a pod set: one of :data:`EVENT_KINDS`.

    ``reason`` is set for ``failed`` (a short cause in words: "the container
    exited with status 3", "ImagePullBackOff: ..."); ``pod`` names the pod
    when the event concerns one.
    """

    kind: EventKind
    message: str
    pod: str | None = None
    reason: str | None = None
    time: float = field(default_factory=time.time)


class ExecProcess(Protocol):
    """A command running in a pod (``subprocess.Popen`` fits).

    ``stdin``, ``stdout`` and ``stderr`` are binary pipes (``stdin`` is None
    when the command was started without input); closing ``stdin`` ends the
    command's input; :meth:`wait` returns its exit status.
    """

    stdin: IO[bytes] | None
    stdout: IO[bytes] | None
    stderr: IO[bytes] | None

    def wait(self, timeout: float | None = None) -> int: ...

    def communicate(self, input: bytes | None = None, timeout: float | None = None) -> tuple[bytes, bytes]: ...

    def kill(self) -> None: ...


@dataclass(frozen=True)
class ExecResult:
    """A finished command: exit status and captured output (text)."""

    returncode: int
    stdout: str
    stderr: str


class Runtime(ABC):
    """Runs pod sets. One instance per engine instance (data dir); see the module docstring.

    Implementations: :class:`codestudio.runtime.local.LocalRuntime` (podman).
    :class:`tests.fake_runtime.FakeRuntime` drives the lifecycle in unit tests.
    """

    #: The runtime's name as ``codestudio runtime show`` prints it (``local``).
    name: str = ""

    @abstractmethod
    def start(self, spec: PodSetSpec) -> PodSet:
        """Create the pod set's pods and return them with their endpoints.

        Returns once the pods are created (scheduled, or started: local
        podman starts them right away); readiness is the caller's business
        (:meth:`events` and its own probe through the endpoints). A pod set
        of the same name must not exist (call :meth:`stop` first).

        :param spec: what to run.
        :return: the pod set, one :class:`Pod` per replica, each with an
            :class:`Endpoint` for every port in ``spec.ports``.
        :raises RuntimeFailure: the runtime refused; nothing of the pod set is
            left behind.
        """

    @abstractmethod
    def pods(self, name: str) -> list[Pod]:
        """The pod set's pods now; ``[]`` when it does not exist (never raises for that).

        :param name: the pod set's name.
        """

    @abstractmethod
    def events(self, name: str, *, timeout: float | None = None) -> Iterator[RuntimeEvent]:
        """Follow what happens to the pod set, as :class:`RuntimeEvent` items.

        The stream yields events as they happen (a runtime without native
        events derives them from state changes) and ends after ``failed`` or
        ``stopped``, when the consumer stops iterating, or after ``timeout``
        seconds. The lifecycle stops reading once its own probe says ready.

        :param name: the pod set's name.
        :param timeout: seconds to follow at most (None: until it ends).
        """

    @abstractmethod
    def exec(self, pod: str, argv: Sequence[str], *, user: str | None = "codestudio",
             stdin: bool = False) -> ExecProcess:
        """Start ``argv`` in the pod's main container with streamed pipes.

        :param pod: a pod name from :meth:`pods`.
        :param argv: the command (no shell unless ``argv`` runs one).
        :param user: the user to run as (None: the image's user).
        :param stdin: give the command a stdin pipe (closing it ends its input).
        :return: the running command; its ``wait()`` is the exit status.
        :raises RuntimeFailure: the command could not be started at all.
        """

    def exec_framed(self, pod: str, argv: Sequence[str], *, user: str | None = "codestudio") -> ExecProcess:
        """:meth:`exec` with a stdin pipe, for a command that understands framed stdin (the sync agent).

        A runtime whose exec cannot close a command's stdin (the Kubernetes
        exec API's ``v4.channel.k8s.io``) sends such a command
        :data:`codestudio.sync.agent.FRAMED_STDIN` and frames the input, so
        closing ``stdin`` still ends it. The command accepts plain stdin too:
        runtimes whose exec closes stdin need not override this.
        """
        return self.exec(pod, argv, user=user, stdin=True)

    @abstractmethod
    def exec_detached(self, pod: str, argv: Sequence[str], *, user: str | None = "codestudio") -> None:
        """Start ``argv`` in the pod and return without waiting for it (actions that do not wait).

        :raises RuntimeFailure: the command could not be started.
        """

    @abstractmethod
    def logs(self, pod: str, *, follow: bool = False, tail: int | None = None) -> Iterator[bytes]:
        """The main container's output (stdout and stderr merged), in chunks.

        The iterator has a ``close()`` that may be called from another thread
        (a server whose client went away) and ends a ``follow``.

        :param pod: a pod name from :meth:`pods`.
        :param follow: keep yielding as the container writes, until it ends.
        :param tail: only the last ``tail`` lines first.
        """

    @abstractmethod
    def save_logs(self, pod: str, target: Path) -> bool:
        """Write the pod's logs (and what the runtime knows of its end) to ``target``.

        :return: False when there is no such pod (nothing written).
        """

    @abstractmethod
    def copy_out(self, pod: str, path: str, out: IO[bytes]) -> bool:
        """Write a tar of ``path`` (absolute, inside the pod's main container) to ``out``.

        Works on a container that is no longer running (a crash, a reboot), so
        a stop can save a dead studio's files before its pod is removed.

        :return: False when ``path`` does not exist in the container (nothing written).
        :raises RuntimeFailure: the copy failed, or the runtime cannot copy
            out of this pod (a runtime without the feature says so).
        """

    @abstractmethod
    def stop(self, name: str, *, timeout: float = 10) -> None:
        """Remove every pod (and object) of the pod set and wait until they are gone.

        Idempotent: a missing pod set is not an error.

        :param timeout: seconds each container gets to stop before it is killed.
        """

    @abstractmethod
    def scale(self, name: str, replicas: int, *, remove: Sequence[str] = ()) -> PodSet:
        """Keep ``replicas`` pods: running pods are kept, stopped ones replaced, new ones get endpoints.

        Scaling to the current count replaces pods that stopped (what a
        Kubernetes Deployment does by itself). When pods must go, the ones
        named in ``remove`` go first (the webapp lifecycle drains them from
        the gateway before), then stopped ones, then the newest; a runtime
        that cannot choose which pod goes (a Deployment without deletion
        costs) says so in its docs.

        :param remove: pod names to remove whatever the count.
        :raises RuntimeFailure: the pod set does not exist or the runtime refused.
        """

    @abstractmethod
    def list(self) -> list[PodSet]:
        """Every pod set of this engine instance (by :data:`MANAGED_BY` and
        :data:`INSTANCE_LABEL`), whatever the state database says: what
        reconciliation compares the database with."""

    # Helpers built on the methods above; runtimes need not override them.

    def run(self, pod: str, argv: Sequence[str], *, user: str | None = "codestudio",
            timeout: float = 60) -> ExecResult:
        """Run ``argv`` to completion and capture its output."""
        import subprocess

        proc = self.exec(pod, argv, user=user)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            from codestudio.errors import RuntimeFailure

            raise RuntimeFailure(f"{' '.join(argv[:2])} in pod {pod} did not finish within {timeout:g}s") from None
        code = proc.wait()
        return ExecResult(code, (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace"))

    def running(self, name: str) -> bool:
        """The pod set exists and every pod of it runs."""
        pods = self.pods(name)
        return bool(pods) and all(p.running for p in pods)

    def wait_rollout(self, name: str, *, timeout: float) -> None:
        """Return once the runtime itself counts the pod set as ready (after the engine's own probe passed).

        The local runtime has nothing more to wait for; the Kubernetes runtime
        waits for the Deployment's rollout (every replica Ready by its
        readiness probe).

        :raises RuntimeFailure: it did not complete within ``timeout`` seconds, or a pod failed.
        """


__all__ = [
    "EVENT_KINDS",
    "Endpoint",
    "ExecProcess",
    "ExecResult",
    "ID_LABEL",
    "INSTANCE_LABEL",
    "KIND_LABEL",
    "MANAGED_BY",
    "MANAGED_BY_VALUE",
    "OWNER_LABEL",
    "PROJECT_LABEL",
    "Pod",
    "PodSet",
    "PodSetSpec",
    "Runtime",
    "RuntimeEvent",
]
