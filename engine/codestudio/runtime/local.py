"""The local runtime's podman side: adapt the Deployment, play it, take it down.

Studios run from the same Deployment manifest the Kubernetes runtime applies
(:func:`codestudio.render.kubernetes_manifest`). :func:`adapt_for_podman` is
the one place where it is changed for ``podman kube play`` (podman 4.3);
every adaptation is listed in :data:`ADAPTATIONS` and in docs/studios.md.
All podman calls go through :mod:`codestudio.containers` (engine-owned
containers.conf: runc, cgroupfs, ulimits).
"""

from __future__ import annotations

import copy
import os
import socket
import subprocess
from collections.abc import Iterable
from pathlib import Path

from codestudio import containers
from codestudio.errors import RuntimeFailure

LOOPBACK = "127.0.0.1"

#: What :func:`adapt_for_podman` changes, and why (podman 4.3.1, measured).
ADAPTATIONS: tuple[tuple[str, str], ...] = (
    ("env valueFrom fieldRef spec.nodeName -> literal host name",
     "podman rejects it: 'fieldPath spec.nodeName is either not valid or not supported'"),
    ("env valueFrom fieldRef metadata.namespace -> literal namespace",
     "podman rejects it the same way (metadata.name and metadata.uid resolve)"),
    ("env CODESTUDIO_GUARD_SECRET valueFrom secretKeyRef -> literal value",
     "podman would need a podman secret; the played manifest is written 0600 in the engine's "
     "studio folder, and podman keeps the value in its root-only container config"),
    ("guard containerPort -> hostPort <free loopback port>, hostIP 127.0.0.1",
     "Kubernetes reaches pods over the cluster network; locally the gateway reaches them "
     "through the guard ports published on loopback only, never on other addresses"),
    ("readinessProbe kept as is",
     "podman 4.3 ignores it (no healthcheck is created); the engine probes through the guard"),
    ("Service and NetworkPolicy documents kept as is",
     "podman kube play ignores both; each pod gets its own slirp4netns network instead (see play())"),
)

#: ``podman kube play --network``: every pod gets its own user-mode network stack, with no
#: interface on the host and no route to any other pod; ``allow_host_loopback=false`` keeps
#: the host's 127.0.0.1 (the other studios' published ports) out of reach. rootlessport
#: publishes the guard ports on the host's loopback. Measured on podman 4.3.1/slirp4netns 1.2.
NETWORK = "slirp4netns:allow_host_loopback=false"

_UNSUPPORTED_FIELDREFS = ("spec.nodeName", "metadata.namespace")


def adapt_for_podman(docs: list[dict], host_ports: dict[int, int], *, guard_secret: str | None = None,
                     node_name: str | None = None) -> list[dict]:
    """Return a copy of the manifest that ``podman kube play`` runs as Kubernetes would.

    ``host_ports`` maps every entrypoint (server) port to the loopback host port its
    guard port is published on; ``guard_secret`` is the value the guard requires.
    """
    from codestudio.render import port_name

    docs = copy.deepcopy(docs)
    node = node_name or socket.gethostname()
    for doc in docs:
        if doc.get("kind") != "Deployment":
            continue
        namespace = doc.get("metadata", {}).get("namespace") or "default"
        literal = {"spec.nodeName": node, "metadata.namespace": namespace}
        for container in doc["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                path = env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                if path in _UNSUPPORTED_FIELDREFS:
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


#: ``podman kube play`` attempts when a chosen port was taken before podman bound it.
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


def play(manifest_path: Path, *, timeout: float = 300) -> None:
    """``podman kube play``; on failure nothing it created is left behind."""
    containers.require_tools("slirp4netns")  # podman only recommends it; the network depends on it
    proc = containers.podman("kube", "play", "--network", NETWORK, str(manifest_path), check=False, timeout=timeout)
    if proc.returncode != 0:
        down(manifest_path)
        raise RuntimeFailure(f"podman kube play failed:\n{proc.stderr.strip()}")


def down(manifest_path: Path | None, pod: str | None = None) -> None:
    """Remove the studio's pod: ``podman kube down`` on its manifest, then ``pod rm -f`` if still there."""
    if manifest_path is not None and Path(manifest_path).exists():
        containers.podman("kube", "down", str(manifest_path), check=False, timeout=120)
    if pod and pod_exists(pod):
        containers.podman("pod", "rm", "-f", "-t", "10", pod, check=False, timeout=120)


def pod_exists(pod: str) -> bool:
    return containers.podman("pod", "exists", pod, check=False).returncode == 0


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
    proc = containers.podman("pod", "ps", "--format", "{{.Name}}", check=False)
    return [n for n in proc.stdout.split() if n.startswith(prefix)]
