"""The Deployment adapted for this machine, and the ``podman run`` arguments of its pod.

:func:`adapt_for_podman` is the one place where the rendered manifest is
changed for this machine, :func:`relabel` names and labels it for one
replica, and :func:`run_args` (with :func:`env_file_text`) is the one place
that turns the adapted pod into ``podman run`` arguments; every adaptation
is listed in :data:`ADAPTATIONS` and in docs/runtimes.md. Nothing here runs
podman (see :mod:`.podman`).
"""

from __future__ import annotations

import copy
import socket
from pathlib import Path

from codestudio.errors import RuntimeFailure
from codestudio.runtime.local.ports import LOOPBACK

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


def relabel(docs: list[dict], deployment: str, labels: dict[str, str], secrets) -> list[dict]:
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
