"""What is named after a studio: :class:`StudioContext` and the names it derives.

The Deployment and Service name (:func:`kube_name`), the browser path, the
guard's ports and its Secret, the HTTP probe path as the server inside sees
it: shared by the manifests, the gateway routes and the runtimes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Literal

from codestudio.blockapi import BuildState

NAMESPACE = "codestudio"


@dataclass
class StudioContext:
    """Per-studio values that go into kubernetes.yaml and nginx.conf.

    ``codestudio render`` uses these defaults; the runtimes pass real ones.
    """

    project_key: str = "PROJECT"
    studio_id: str | None = None
    owner: str = "user"
    image: str | None = None
    host_ports: dict[int, int] = field(default_factory=dict)
    mode: Literal["studio", "webapp"] = "studio"
    webapp_id: str | None = None
    namespace: str = NAMESPACE
    session_secret: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Distinguishes runtimes sharing one container engine (the local runtime: its data dir).
    instance: str | None = None


#: First port the runner's guard listens on (docs/runner.md, "The guard"): above Linux's
#: default ephemeral range (32768-60999), so no outgoing connection in the pod takes it.
GUARD_PORT_BASE = 61000
#: Key of the guard secret in the studio's Secret ``<kube name>-guard`` (Kubernetes);
#: the local runtime writes the value into the manifest it plays instead.
GUARD_SECRET_KEY = "guard-secret"


def guard_ports(ports: list[int]) -> dict[int, int]:
    """Server port -> the guard port in front of it: 61000 and up, skipping the template's own ports."""
    taken = set(ports)
    out: dict[int, int] = {}
    candidate = GUARD_PORT_BASE
    for port in sorted(taken):
        while candidate in taken:
            candidate += 1
        if candidate > 65535:
            raise ValueError("too many ports for the guard's range (61000-65535)")
        out[port] = candidate
        candidate += 1
    return out


def port_name(port: int) -> str:
    """Name of the container port (the guard's) serving server port ``port``."""
    return f"p{port}"


def kube_name(project_key: str, studio_id: str, instance: str | None = None) -> str:
    """A DNS-1123 name for the studio's Deployment and Service (at most 63 characters).

    Readable (``cs-<project>-<studio>-``) but always ends in a hash of the
    exact project key, studio id and ``instance`` (the local runtime passes
    its data dir), because lowercasing and replacing ``_`` make different
    studios look alike: ``X-Y``/``z`` and ``X``/``y-z`` must never share a pod.
    """
    digest = hashlib.sha256(f"{project_key}\0{studio_id}\0{instance or ''}".encode()).hexdigest()[:10]
    readable = re.sub(r"[^a-z0-9-]", "-", f"cs-{project_key.lower()}-{studio_id}")
    readable = re.sub(r"-+", "-", readable).strip("-")
    # Room for "-<digest>" and podman's "-pod-0-studio" suffix on container names.
    readable = readable[: 63 - len(digest) - 1 - 13].rstrip("-")
    return f"{readable}-{digest}"


def browser_path(studio: StudioContext, template_id: str) -> str:
    studio_id = studio.studio_id or template_id
    if studio.mode == "webapp":
        return f"/web-apps-backends/{studio.project_key}/{studio.webapp_id or studio_id}_${{K8S_POD_NAME}}"
    return f"/code-studios/{studio.project_key}/{studio_id}"


def probe_path(state: BuildState, studio: StudioContext, template_id: str) -> str | None:
    """The HTTP probe path with ``${baseUrl}`` expanded, as the server inside sees it.

    For a port served with ``proxied_subpath: /`` the prefix is stripped by the
    gateway, so ``${baseUrl}`` expands to the empty string there.
    """
    probe = state.effective_probe()
    if probe is None or probe.kind != "http":
        return None
    strip = any(ep.port == probe.port and ep.proxied_subpath == "/" for _, ep in state.entrypoints)
    base = "" if strip else f"{browser_path(studio, template_id)}/{probe.port}"
    path = (probe.url or "${baseUrl}/").replace("${baseUrl}", base)
    return path if path.startswith("/") else "/" + path


def guard_secret_name(studio: StudioContext, template_id: str) -> str:
    """The Secret holding the guard secret: ``<kube name>-guard`` (a webapp's never shares a studio's)."""
    studio_id = studio.studio_id or template_id
    if studio.mode == "webapp":
        studio_id = f"webapp:{studio.webapp_id or studio_id}"
    return f"{kube_name(studio.project_key, studio_id, studio.instance)}-guard"
