"""The local runtime's podman side: adapt the Deployment, run its pod's container, remove it.

Studios run from the same Deployment manifest the Kubernetes runtime applies
(:func:`codestudio.render.kubernetes_manifest`). :func:`adapt_for_podman` is
the one place where it is changed for this machine, and :func:`run_args` the
one place that turns the adapted pod into ``podman run`` arguments; every
adaptation is listed in :data:`ADAPTATIONS` and in docs/runtimes.md.

Each pod is one container (``podman run -d``), not a ``podman kube play``
pod: kube play adds an infra container and a pod to every start, which cost
0.2-0.3 s of CPU per start, most of what ten concurrent starts wait for
(measured: docs/runtimes.md). The played (adapted) manifest is still
written next to the pod set (0600), and is what :func:`play` runs.
All podman calls go through :mod:`codestudio.containers` (engine-owned
containers.conf: runc, cgroupfs, ulimits).
"""

from __future__ import annotations

import copy
import os
import socket
import subprocess
from collections.abc import Iterable, Iterator, Sequence
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

LOOPBACK = "127.0.0.1"

#: What :func:`adapt_for_podman` and :func:`run_args` change, and why (podman 4.3.1, measured).
ADAPTATIONS: tuple[tuple[str, str], ...] = (
    ("the pod is one container run by `podman run -d`, named <deployment>-pod-0-studio",
     "`podman kube play` would add an infra container and a pod per start: 10 concurrent starts "
     "took 1.6-1.8x as long with it (docs/runtimes.md); a studio's pod has one container"),
    ("env valueFrom fieldRef spec.nodeName / metadata.namespace / metadata.name / metadata.uid -> literal "
     "host name / namespace / pod name (<deployment>-pod-0) / a new UUID",
     "there is no API server to resolve them; the values are what kube play set"),
    ("env CODESTUDIO_GUARD_SECRET valueFrom secretKeyRef -> literal value",
     "no podman secret is needed: the adapted manifest and the env file podman reads it from are "
     "written 0600 in the engine's pod set folder, never on a command line; podman keeps the value in "
     "its root-only container config"),
    ("guard containerPort -> hostPort <free loopback port>, hostIP 127.0.0.1 (podman run -p 127.0.0.1:H:C)",
     "Kubernetes reaches pods over the cluster network; locally the gateway reaches them "
     "through the guard ports published on loopback only, never on other addresses"),
    ("securityContext -> --user, --cap-drop/--cap-add, --security-opt no-new-privileges; "
     "resources.limits cpu/memory -> --cpus/--memory; command/args/workingDir -> --entrypoint/args/--workdir; "
     "restartPolicy (Always for a Deployment) -> --restart always; hostname = pod name; pod labels -> container labels",
     "what kube play derived from the same fields; seccomp RuntimeDefault is podman's default profile"),
    ("readinessProbe kept as is",
     "podman creates no healthcheck from it; the engine probes through the guard"),
    ("Service and NetworkPolicy documents kept as is",
     "nothing local reads them; each pod gets its own slirp4netns network instead (see NETWORK)"),
)

#: ``podman run --network``: every pod gets its own user-mode network stack, with no
#: interface on the host and no route to any other pod; ``allow_host_loopback=false`` keeps
#: the host's 127.0.0.1 (the other studios' published ports) out of reach. rootlessport
#: publishes the guard ports on the host's loopback. Measured on podman 4.3.1/slirp4netns 1.2.
NETWORK = "slirp4netns:allow_host_loopback=false"

def adapt_for_podman(docs: list[dict], host_ports: dict[int, int], *, guard_secret: str | None = None,
                     node_name: str | None = None, pod_uid: str | None = None) -> list[dict]:
    """Return a copy of the manifest with what Kubernetes would resolve put in place (:data:`ADAPTATIONS`).

    ``host_ports`` maps every entrypoint (server) port to the loopback host port its
    guard port is published on; ``guard_secret`` is the value the guard requires.
    """
    import uuid

    from codestudio.render import port_name

    docs = copy.deepcopy(docs)
    node = node_name or socket.gethostname()
    for doc in docs:
        if doc.get("kind") != "Deployment":
            continue
        namespace = doc.get("metadata", {}).get("namespace") or "default"
        literal = {"spec.nodeName": node, "metadata.namespace": namespace,
                   "metadata.name": pod_name(doc["metadata"]["name"]), "metadata.uid": pod_uid or str(uuid.uuid4())}
        for container in doc["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                path = env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                if path in literal:
                    env.pop("valueFrom")
                    env["value"] = literal[path]
                if env["name"] == "CODESTUDIO_GUARD_SECRET" and "secretKeyRef" in env.get("valueFrom", {}):
                    if guard_secret is None:
                        raise RuntimeFailure("no guard secret for the studio's guard")
                    env.pop("valueFrom")
                    env["value"] = guard_secret
            by_name = {port_name(p): p for p in host_ports}
            for port in container.get("ports", []):
                server = by_name.get(port.get("name"))
                if server is None:
                    raise RuntimeFailure(f"no host port chosen for container port {port['containerPort']}")
                port["hostPort"] = host_ports[server]
                port["hostIP"] = LOOPBACK
    return docs


def free_ports(count: int, *, avoid: Iterable[int] = ()) -> list[int]:
    """``count`` distinct loopback ports that are free now (the kernel's ephemeral choice)."""
    avoid = set(avoid)
    out: list[int] = []
    socks = []
    try:
        while len(out) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)  # held until all are chosen, so the kernel hands out distinct ports
            port = s.getsockname()[1]
            if port not in avoid and port not in out:
                out.append(port)
    finally:
        for s in socks:
            s.close()
    return out


#: Attempts to run a pod when a chosen port was taken before podman bound it.
PLAY_ATTEMPTS = 3


def ports_taken(ports: Iterable[int]) -> bool:
    """True when any of ``ports`` cannot be bound on loopback now (someone else holds it)."""
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # As podman binds: connections of the last pod in TIME_WAIT do not count, a listener does.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                return True
    return False


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by this user only (it may hold a guard secret)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


def pod_name(kube_name: str) -> str:
    """podman 4.3 names a Deployment's pod ``<name>-pod-0``."""
    return f"{kube_name}-pod-0"


def container_name(kube_name: str, container: str = "studio") -> str:
    return f"{pod_name(kube_name)}-{container}"


def run_args(docs: list[dict], *, env_file: Path) -> list[str]:
    """The ``podman run`` arguments that run the adapted Deployment's pod (:data:`ADAPTATIONS`).

    Every env value goes to ``env_file`` (written 0600 by the caller), never
    onto the command line, which every user of the host can read.
    """
    from codestudio.quantities import cpu_millicores, memory_bytes

    [deployment] = [d for d in docs if d.get("kind") == "Deployment"]
    template = deployment["spec"]["template"]
    spec = template["spec"]
    if len(spec.get("containers") or ()) != 1:
        raise RuntimeFailure(f"deployment {deployment['metadata']['name']}: the local runtime runs pods of one container")
    [container] = spec["containers"]
    pod = pod_name(deployment["metadata"]["name"])
    args = ["run", "--detach", "--name", container_name(deployment["metadata"]["name"], container["name"]),
            "--hostname", pod, "--network", NETWORK, "--env-file", str(env_file),
            # A Deployment's pods are restarted when they exit by themselves (not when stopped or killed).
            "--restart", {"Always": "always", "OnFailure": "on-failure", "Never": "no"}[spec.get("restartPolicy", "Always")]]
    for key, value in sorted((template.get("metadata", {}).get("labels") or {}).items()):
        args += ["--label", f"{key}={value}"]
    security = {**(spec.get("securityContext") or {}), **(container.get("securityContext") or {})}
    if "runAsUser" in security:
        args += ["--user", f"{security['runAsUser']}" + (f":{security['runAsGroup']}" if "runAsGroup" in security else "")]
    for cap in (security.get("capabilities") or {}).get("drop") or ():
        args += ["--cap-drop", str(cap)]
    for cap in (security.get("capabilities") or {}).get("add") or ():
        args += ["--cap-add", str(cap)]
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    limits = (container.get("resources") or {}).get("limits") or {}
    if "memory" in limits:
        args += ["--memory", str(memory_bytes(limits["memory"]))]
    if "cpu" in limits:
        args += ["--cpus", f"{cpu_millicores(limits['cpu']) / 1000:g}"]
    for port in container.get("ports") or ():
        args += ["--publish", f"{port['hostIP']}:{port['hostPort']}:{port['containerPort']}/{port.get('protocol', 'TCP').lower()}"]
    if container.get("workingDir"):
        args += ["--workdir", str(container["workingDir"])]
    if container.get("command"):
        import json

        args += ["--entrypoint", json.dumps([str(a) for a in container["command"]])]
    args.append(str(container["image"]))
    args += [str(a) for a in container.get("args") or ()]
    return args


def env_file_text(docs: list[dict]) -> str:
    """The ``--env-file`` of the adapted Deployment's container: ``NAME=value`` lines, in order."""
    [deployment] = [d for d in docs if d.get("kind") == "Deployment"]
    lines = []
    for env in deployment["spec"]["template"]["spec"]["containers"][0].get("env") or ():
        if "value" not in env:
            raise RuntimeFailure(f"env {env.get('name')} has no literal value to run it with")
        value = str(env["value"])
        if "\n" in value or "\r" in value or "=" in env["name"] or not env["name"]:
            # An env file has one variable per line; nothing in a rendered manifest needs more.
            raise RuntimeFailure(f"env {env['name']!r} cannot be passed to podman (a line break in its value)")
        lines.append(f"{env['name']}={value}\n")
    return "".join(lines)


def _yaml():
    """PyYAML and its libyaml (C) loader and dumper where present: 5-7x faster than the pure-Python ones."""
    import yaml

    return yaml, getattr(yaml, "CSafeLoader", yaml.SafeLoader), getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def play(manifest_path: Path, *, docs: list[dict] | None = None, timeout: float = 300) -> None:
    """Run the pod of the adapted manifest at ``manifest_path``; on failure nothing it created is left behind.

    ``docs``: the manifest as just written there (saves reading it back).
    Its env goes through ``<manifest>.env`` (0600, removed again once podman
    has read it: podman keeps the values in its root-only container config).
    """
    containers.require_tools("slirp4netns")  # podman only recommends it; the network depends on it
    if docs is None:
        yaml, loader, _ = _yaml()
        docs = [d for d in yaml.load_all(manifest_path.read_text(), Loader=loader) if d]
    env_file = manifest_path.with_suffix(".env")
    write_private(env_file, env_file_text(docs))
    try:
        proc = containers.podman(*run_args(docs, env_file=env_file), check=False, timeout=timeout)
    finally:
        env_file.unlink(missing_ok=True)
    if proc.returncode != 0:
        down(manifest_path)
        raise RuntimeFailure(f"podman run failed:\n{proc.stderr.strip()}")


def down(manifest_path: Path | None, pod: str | None = None, *, grace: float = 10) -> None:
    """Remove the studio's pod (named ``pod``, or after ``manifest_path``): :func:`remove_pods`."""
    pod = pod or (pod_name(Path(manifest_path).stem) if manifest_path is not None else None)
    if pod:
        remove_pods([pod], grace=grace)


def remove_pods(pods: list[str], *, grace: float = 10, in_pods: Iterable[str] = ()) -> None:
    """Stop ``pods`` (SIGTERM, SIGKILL after ``grace`` seconds), then remove them; missing ones are skipped.

    The runner stops its entrypoints and exits by itself within its own grace
    (docs/runner.md), so a stop usually takes a fraction of a second.
    ``in_pods``: those of ``pods`` that are real podman pods (played by
    ``kube play`` before the local runtime ran containers): their pods go too.
    One ``podman rm --force --time GRACE`` per call: for a container it sends
    SIGTERM and waits the grace (measured on podman 4.3: 0.36 s against
    0.57 s for ``stop`` then ``rm``); ``pod rm -f`` and ``kube down`` of a
    running pod kill with no grace at all (docs/runtimes.md).
    """
    if not pods:
        return
    names = [f"{pod}-studio" for pod in pods]
    containers.podman("rm", "--ignore", "--force", "--time", str(max(0, round(grace))), *names, check=False,
                      timeout=grace + 120)
    legacy = [pod for pod in pods if pod in set(in_pods)]
    if legacy:
        containers.podman("pod", "rm", "--ignore", "-f", *legacy, check=False, timeout=120)


def pod_exists(pod: str) -> bool:
    """Whether the pod's container exists (running or not)."""
    return containers.podman("container", "exists", f"{pod}-studio", check=False).returncode == 0


def container_running(container: str) -> bool:
    proc = containers.podman("container", "inspect", "--format", "{{.State.Running}}", container, check=False)
    return proc.returncode == 0 and proc.stdout.strip() == "true"


def save_logs(container: str, target: Path) -> bool:
    """Write the container's logs to ``target``; False if there is no such container."""
    target.parent.mkdir(parents=True, exist_ok=True)
    argv = containers.podman_command("logs", container)
    with open(target, "wb") as out:
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=containers.podman_env())
    if proc.returncode != 0:
        target.unlink(missing_ok=True)
        return False
    return True


def logs_command(container: str, *, follow: bool = False, tail: int | None = None) -> list[str]:
    args = ["logs"]
    if follow:
        args.append("--follow")
    if tail is not None:
        args += ["--tail", str(tail)]
    return containers.podman_command(*args, container)


def exec_command(container: str, argv: list[str], *, user: str | None = "codestudio", detach: bool = False,
                 interactive: bool = False) -> list[str]:
    args = ["exec"]
    if detach:
        args.append("--detach")
    if interactive:
        args.append("--interactive")
    if user:
        args += ["--user", user]
    return containers.podman_command(*args, container, *argv)


def exec_run(container: str, argv: list[str], *, user: str | None = "codestudio", timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(exec_command(container, argv, user=user), capture_output=True, text=True,
                          env=containers.podman_env(), timeout=timeout)


def leftover_pods(prefix: str = "cs-") -> list[str]:
    """Pods whose name starts with ``prefix`` (tests and ``doctor``-style checks)."""
    proc = containers.podman("ps", "-a", "--format", "{{.Names}}", check=False)
    return [n.removesuffix("-studio") for n in proc.stdout.split() if n.startswith(prefix) and n.endswith("-pod-0-studio")]


# --------------------------------------------------------------------------
# The Runtime interface over the helpers above


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

        yaml, _, dumper = _yaml()
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
            docs = _relabel(copy.deepcopy(list(saved["manifest"])), deployment, saved["labels"], saved["secrets"])
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
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _relabel(docs: list[dict], deployment: str, labels: dict[str, str], secrets) -> list[dict]:
    """Name the Deployment, label it and its pod, and put secret values in place of ``secretKeyRef``."""
    for doc in docs:
        if doc.get("kind") != "Deployment":
            continue
        doc["metadata"]["name"] = deployment
        doc["metadata"].setdefault("labels", {}).update(labels)
        template = doc["spec"]["template"]
        template.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
        doc["spec"]["replicas"] = 1
        for container in template["spec"]["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref is None:
                    continue
                try:
                    value = secrets[ref["name"]][ref["key"]]
                except KeyError:
                    raise RuntimeFailure(f"no value for secret {ref.get('name')}/{ref.get('key')} "
                                         f"(env {env.get('name')})") from None
                env.pop("valueFrom")
                env["value"] = value
    return docs
