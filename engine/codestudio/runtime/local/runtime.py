"""The :class:`LocalRuntime`: the runtime interface over the podman helpers (pod sets, replicas, ports)."""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from codestudio import containers
from codestudio.errors import RuntimeFailure
from codestudio.runtime.base import (
    INSTANCE_LABEL,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    Endpoint,
    Pod,
    PodSet,
    PodSetSpec,
    Runtime,
    RuntimeEvent,
)
from codestudio.runtime.local.adapt import adapt_for_podman, pod_name, relabel
from codestudio.runtime.local.podman import down, fast_yaml, logs_command, play, remove_pods, save_logs, write_private
from codestudio.runtime.local.ports import LOOPBACK, free_ports, ports_taken

#: Attempts to run a pod when a chosen port was taken before podman bound it.
PLAY_ATTEMPTS = 3


def instance_id(data_dir: Path) -> str:
    """The :data:`~codestudio.runtime.base.INSTANCE_LABEL` value of a data dir (a label-safe hash)."""
    import hashlib

    return hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]


#: Label naming the pod set a pod belongs to (replicas share it).
PODSET_LABEL = "codestudio.io/podset"


def replica_name(name: str, index: int) -> str:
    """The Deployment name podman plays for replica ``index`` (replica 0 keeps the pod set's name)."""
    return name if index == 0 else f"{name}-r{index}"


def _replica_index(name: str, pod: str) -> int:
    """The replica index of ``pod`` in pod set ``name`` (the inverse of :func:`replica_name`)."""
    deployment = pod.removesuffix("-pod-0")
    tail = deployment[len(name):]
    return int(tail[2:]) if tail.startswith("-r") and tail[2:].isdigit() else 0


#: The spec a pod set was started with, kept (0600) in its workdir so scale() can play more replicas.
SPEC_FILE = "podset.json"


def _json_dumps(obj) -> str:
    import json

    return json.dumps(obj, sort_keys=True)


class LocalRuntime(Runtime):
    """:class:`~codestudio.runtime.base.Runtime` on this machine with podman (``podman run``).

    Each replica is one container run from the adapted Deployment
    (:func:`play`), whose Deployment is named ``<name>`` for replica 0 and
    ``<name>-r<i>`` after; its pod is called ``<deployment>-pod-0`` (the
    name ``kube play`` gave it) and its container ``<pod>-studio``. The
    pod set's labels are the container's, which is what :meth:`pods` and
    :meth:`list` select by. Ports are chosen and published
    on loopback under one lock per data dir, and recorded next to the
    played manifest (``<workdir>/<pod>.ports.json``) so endpoints survive
    the engine process.
    """

    name = "local"

    def __init__(self, data_dir: Path | None = None):
        from codestudio.home import data_dir as default_data_dir

        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.instance = instance_id(self.data_dir)
        #: Pods seen to be real podman pods (played by ``kube play`` before): removed with their pod.
        self._in_pods: set[str] = set()

    # --- helpers -------------------------------------------------------------------

    def _podsets_dir(self) -> Path:
        return self.data_dir / "runtime" / "local"

    def _workdir(self, name: str) -> Path:
        return self._podsets_dir() / name

    def _pod_json(self, *filters: str) -> list[dict]:
        """``podman ps -a`` of the pods' containers matching ``filters``, as dicts."""
        import json

        args = ["ps", "--all", "--format", "json"]
        for f in filters:
            args += ["--filter", f]
        proc = containers.podman(*args, check=False, timeout=60)
        if proc.returncode != 0:
            raise RuntimeFailure(f"podman ps failed: {proc.stderr.strip()}")
        found = [c for c in json.loads(proc.stdout or "[]") or [] if not c.get("IsInfra")]
        for info in found:
            info["Name"] = (info.get("Names") or [""])[0].removesuffix("-studio")
            if info.get("Pod"):
                self._in_pods.add(info["Name"])
        return found

    def _pod_from(self, info: dict) -> Pod:
        import json

        pod = info["Name"]
        state = (info.get("State") or "").lower()
        if state == "running":
            phase, message = "running", None
        elif state in ("created", "configured", "initialized"):
            phase, message = "pending", f"the container is {state}"
        else:
            phase, message = "exited", self._exit_message(f"{pod}-studio")
        endpoints: dict[int, Endpoint] = {}
        workdir = (info.get("Labels") or {}).get(PODSET_LABEL)
        try:
            saved = json.loads((self._workdir(workdir or "") / f"{pod}.ports.json").read_text())
            endpoints = {int(k): Endpoint(LOOPBACK, int(v)) for k, v in saved.items()}
        except (OSError, ValueError):
            pass
        return Pod(pod, phase, endpoints, message)

    def _exit_message(self, container: str) -> str:
        proc = containers.podman("container", "inspect", "--format",
                                 "{{.State.OOMKilled}} {{.HostConfig.Memory}} {{.State.ExitCode}} {{.State.Error}}",
                                 container, check=False, timeout=30)
        if proc.returncode != 0:
            return "the container is gone"
        oom, memory, code, error = (proc.stdout.strip().split(" ", 3) + ["", "", "", ""])[:4]
        if oom == "true":  # its main process went past the memory limit (docs/lifecycle.md)
            from codestudio.quantities import format_bytes

            limit = f" (memory limit {format_bytes(int(memory))})" if memory.isdigit() and int(memory) > 0 else ""
            return f"killed for memory{limit}: the container exited with status {code}"
        return f"the container exited with status {code}" + (f": {error}" if error else "")

    # --- Runtime -------------------------------------------------------------------

    def start(self, spec: PodSetSpec) -> PodSet:
        if spec.replicas < 1:
            raise RuntimeFailure(f"pod set {spec.name}: replicas must be at least 1, not {spec.replicas}")
        workdir = self._workdir(spec.name)
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        labels = {**spec.labels, MANAGED_BY: MANAGED_BY_VALUE, INSTANCE_LABEL: self.instance, PODSET_LABEL: spec.name}
        # What scale() replays for a new replica (it holds the guard secret: private like the manifest).
        saved = {"manifest": list(spec.manifest), "labels": labels, "secrets": {k: dict(v) for k, v in spec.secrets.items()},
                 "ports": list(spec.ports), "next_index": spec.replicas}
        write_private(workdir / SPEC_FILE, _json_dumps(saved))
        played: list[Path] = []
        pods: list[Pod] = []
        try:
            for index in range(spec.replicas):
                played.append(workdir / f"{replica_name(spec.name, index)}.yaml")
                pods.append(self._play_replica(spec.name, index, saved))
        except BaseException:
            for manifest in played:
                down(manifest, pod_name(manifest.stem))
            raise
        return PodSet(spec.name, labels, tuple(pods))

    def _reserved_ports(self) -> set[int]:
        """Host ports recorded for this data dir's pods (``*.ports.json``), played or being played."""
        import json

        out: set[int] = set()
        for path in self._podsets_dir().glob("*/*.ports.json"):
            try:
                out.update(int(v) for v in json.loads(path.read_text()).values())
            except (OSError, ValueError, AttributeError):
                continue
        return out

    def _play_replica(self, name: str, index: int, saved: dict) -> Pod:
        """Play replica ``index`` of the pod set from its saved spec (start and scale)."""
        import json

        from codestudio.locks import file_lock

        yaml, _, dumper = fast_yaml()
        workdir = self._workdir(name)
        deployment = replica_name(name, index)
        manifest = workdir / f"{deployment}.yaml"
        pod = pod_name(deployment)
        ports = [int(p) for p in saved["ports"]]
        for attempt in range(1, PLAY_ATTEMPTS + 1):
            # Ports are chosen under one lock per data dir and reserved in the pod's
            # ports.json before it is let go; the play itself runs unlocked, so
            # concurrent starts overlap in podman instead of queueing behind each
            # other's play (0.3-0.9 s each).
            with file_lock(self.data_dir / "locks" / "local-ports.lock"):
                host_ports = dict(zip(ports, free_ports(len(ports), avoid=self._reserved_ports()), strict=True))
                (workdir / f"{pod}.ports.json").write_text(json.dumps({str(k): v for k, v in host_ports.items()}))
            docs = relabel(copy.deepcopy(list(saved["manifest"])), deployment, saved["labels"], saved["secrets"])
            docs = adapt_for_podman(docs, host_ports)
            write_private(manifest, yaml.dump_all(docs, Dumper=dumper, sort_keys=True))
            try:
                play(manifest, docs=docs)
                break
            except RuntimeFailure:
                # Another process (another data dir) took a chosen port between our
                # choice and podman's bind: podman fails rather than share it.
                if attempt == PLAY_ATTEMPTS or not ports_taken(host_ports.values()):
                    raise
        return Pod(pod, "running", {p: Endpoint(LOOPBACK, h) for p, h in host_ports.items()})

    def pods(self, name: str) -> list[Pod]:
        if not self._workdir(name).is_dir():
            # No podman call at all: every pod set's folder is made before its first pod runs
            # and removed only after its last one is gone (stop), so without it there is no
            # pod (every start of a stopped studio asks first; ten at once queued on podman).
            return []
        # One podman call (each costs 50 ms here, far more on a busy machine; a start and a
        # stop ask several times): every container named after the pod set's replicas, kept
        # when it carries this pod set's labels, or none (pods played before labels existed).
        found = []
        for info in self._pod_json(f"name=^{name}(-r[0-9]+)?-pod-0-studio$"):
            labels = info.get("Labels") or {}
            if PODSET_LABEL in labels:
                if labels[PODSET_LABEL] == name and labels.get(INSTANCE_LABEL) == self.instance:
                    found.append(info)
            elif info.get("Name") == pod_name(name):
                found.append(info)
        return sorted((self._pod_from(p) for p in found), key=lambda p: p.name)

    def events(self, name: str, *, timeout: float | None = None) -> Iterator[RuntimeEvent]:
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        seen: dict[str, str] = {}
        delay = 0.05
        while deadline is None or time.monotonic() < deadline:
            pods = self.pods(name)
            if not pods and seen:
                yield RuntimeEvent("stopped", f"pod set {name} is gone")
                return
            for pod in pods:
                if seen.get(pod.name) == pod.phase:
                    continue
                if pod.name not in seen:
                    yield RuntimeEvent("scheduled", f"pod {pod.name} created", pod=pod.name)
                seen[pod.name] = pod.phase
                if pod.phase == "running":
                    yield RuntimeEvent("started", f"container of {pod.name} started", pod=pod.name)
                elif pod.phase in ("exited", "gone"):
                    yield RuntimeEvent("failed", f"pod {pod.name} stopped", pod=pod.name, reason=pod.message)
                    return
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def exec(self, pod: str, argv, *, user: str | None = "codestudio", stdin: bool = False):
        args = ["exec"]
        if stdin:
            args.append("--interactive")
        if user:
            args += ["--user", user]
        containers.require_tools("podman")
        return subprocess.Popen(
            containers.podman_command(*args, f"{pod}-studio", *argv),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=containers.podman_env(),
        )

    def exec_detached(self, pod: str, argv, *, user: str | None = "codestudio") -> None:
        args = ["exec", "--detach"] + (["--user", user] if user else [])
        proc = containers.podman(*args, f"{pod}-studio", *argv, check=False, timeout=60)
        if proc.returncode != 0:
            raise RuntimeFailure(f"could not start {argv[0]} in {pod}: {proc.stderr.strip()}")

    def logs(self, pod: str, *, follow: bool = False, tail: int | None = None) -> Iterator[bytes]:
        containers.require_tools("podman")
        proc = subprocess.Popen(logs_command(f"{pod}-studio", follow=follow, tail=tail), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=containers.podman_env())
        return _LogStream(proc)

    def save_logs(self, pod: str, target: Path) -> bool:
        return save_logs(f"{pod}-studio", target)

    def copy_out(self, pod: str, path: str, out) -> bool:
        # podman cp resolves the path inside the container's root, running or not.
        containers.require_tools("podman")
        proc = subprocess.run(containers.podman_command("cp", f"{pod}-studio:{path}", "-"), stdout=out,
                              stderr=subprocess.PIPE, env=containers.podman_env())
        detail = proc.stderr.decode(errors="replace").strip()
        if proc.returncode != 0 and "could not be found on container" in detail:
            return False
        if proc.returncode != 0:
            raise RuntimeFailure(f"podman cp {path} exited with status {proc.returncode}: {detail[-300:]}")
        return True

    def stop(self, name: str, *, timeout: float = 10) -> None:
        import time

        workdir = self._workdir(name)
        pods = self.pods(name)
        published = {e.port for pod in pods for e in pod.endpoints.values()}
        remove_pods([pod.name for pod in pods], grace=timeout, in_pods=self._in_pods)
        # podman's port forwarder (rootlessport) lets go of the published ports a moment
        # after the pod is gone; "stopped" means they are free for the next start.
        deadline = time.monotonic() + timeout
        while published and ports_taken(published) and time.monotonic() < deadline:
            time.sleep(0.05)
        for leftover in workdir.glob("*.ports.json") if workdir.is_dir() else ():
            leftover.unlink(missing_ok=True)
        (workdir / SPEC_FILE).unlink(missing_ok=True)
        # The played manifests hold the guard secret; a stopped pod set needs none of it.
        for played in [*workdir.glob("*.yaml"), *workdir.glob("*.env")] if workdir.is_dir() else ():
            played.unlink(missing_ok=True)
        try:
            workdir.rmdir()
        except OSError:
            pass

    def scale(self, name: str, replicas: int, *, remove: Sequence[str] = ()) -> PodSet:
        """Keep ``replicas`` pods: the ``remove`` ones and pods that stopped go first, then the newest.

        Running pods that are kept are not touched; each new pod is a new
        run of the saved spec under the next replica index
        (names are never reused within a pod set, as Kubernetes names a
        replacement pod anew).
        """
        import json

        from codestudio.locks import file_lock

        if replicas < 0:
            raise RuntimeFailure(f"pod set {name}: replicas must be at least 0, not {replicas}")
        workdir = self._workdir(name)
        try:
            saved = json.loads((workdir / SPEC_FILE).read_text())
        except (OSError, ValueError):
            raise RuntimeFailure(f"pod set {name} does not exist (or was started before scale was supported)") from None
        # One scale at a time per pod set (ports are reserved per replica by _play_replica).
        with file_lock(self.data_dir / "locks" / f"podset-{name}.lock"):
            pods = self.pods(name)
            doomed = [p for p in pods if p.name in remove or not p.running]
            kept = [p for p in pods if p not in doomed]
            kept.sort(key=lambda p: _replica_index(name, p.name))
            doomed += kept[replicas:]
            kept = kept[:replicas]
            remove_pods([pod.name for pod in doomed], in_pods=self._in_pods)
            for pod in doomed:
                (workdir / f"{pod.name}.ports.json").unlink(missing_ok=True)
                (workdir / f"{pod.name.removesuffix('-pod-0')}.yaml").unlink(missing_ok=True)
            added: list[Pod] = []
            try:
                while len(kept) + len(added) < replicas:
                    index = max([int(saved.get("next_index", 1))] + [_replica_index(name, p.name) + 1 for p in pods])
                    saved["next_index"] = index + 1
                    write_private(workdir / SPEC_FILE, _json_dumps(saved))
                    added.append(self._play_replica(name, index, saved))
            except BaseException:
                remove_pods([pod.name for pod in added])
                raise
        return PodSet(name, saved["labels"], tuple(sorted(kept + added, key=lambda p: _replica_index(name, p.name))))

    def list(self) -> list[PodSet]:
        groups: dict[str, list[dict]] = {}
        labels: dict[str, dict] = {}
        for info in self._pod_json(f"label={MANAGED_BY}={MANAGED_BY_VALUE}", f"label={INSTANCE_LABEL}={self.instance}"):
            name = (info.get("Labels") or {}).get(PODSET_LABEL) or info["Name"].removesuffix("-pod-0")
            groups.setdefault(name, []).append(info)
            labels[name] = dict(info.get("Labels") or {})
        return [PodSet(n, labels[n], tuple(sorted((self._pod_from(i) for i in infos), key=lambda p: p.name)))
                for n, infos in sorted(groups.items())]


class _LogStream:
    """``podman logs`` output in chunks; :meth:`close` (from any thread) stops following."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    def __iter__(self) -> _LogStream:
        return self

    def __next__(self) -> bytes:
        assert self.proc.stdout is not None
        chunk = self.proc.stdout.read1(65536) if not self.proc.stdout.closed else b""
        if not chunk:
            self.close()
            raise StopIteration
        return chunk

    def close(self) -> None:
        containers.terminate(self.proc)
