"""``kubernetes.yaml``: the Deployment, Service and NetworkPolicy a studio (or webapp replica) runs as.

Data serialised with ``yaml.safe_dump``, so values are escaped by
construction; the local runtime adapts the same documents for podman.
"""

from __future__ import annotations

import re

from codestudio.blockapi import BuildState
from codestudio.render.studio import (
    GUARD_SECRET_KEY,
    StudioContext,
    browser_path,
    guard_ports,
    guard_secret_name,
    kube_name,
    port_name,
    probe_path,
)

#: Labels of the gateway's pods: the only ones a studio's NetworkPolicy admits.
GATEWAY_POD_LABELS = {"app.kubernetes.io/name": "codestudio-gateway", "app.kubernetes.io/managed-by": "codestudio"}


def _label_value(value: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:63].strip("-_.")
    return value or "x"


def container_env(state: BuildState, studio: StudioContext, template_id: str) -> list[dict]:
    base = browser_path(studio, template_id)
    env = [
        {"name": "DKU_CODE_STUDIO_BROWSER_PATH", "value": base},
        *({"name": f"DKU_CODE_STUDIO_BROWSER_PATH_{port}", "value": f"{base}/{port}"} for port in state.all_ports),
        {"name": "CODESTUDIO_MODE", "value": studio.mode},
        {"name": "CODESTUDIO_PROJECT_KEY", "value": studio.project_key},
        {"name": "CODESTUDIO_STUDIO_ID", "value": studio.studio_id or template_id},
        {"name": "CODESTUDIO_OWNER", "value": studio.owner},
        *({"name": k, "value": v} for k, v in sorted(studio.extra_env.items())),
        {"name": "CODESTUDIO_GUARD_PORTS",
         "value": ",".join(f"{p}:{g}" for p, g in guard_ports(state.all_ports).items())},
        {"name": "CODESTUDIO_GUARD_SECRET", "valueFrom": {"secretKeyRef": {
            "name": guard_secret_name(studio, template_id), "key": GUARD_SECRET_KEY}}},
        {"name": "K8S_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "K8S_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "K8S_POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "K8S_POD_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
    ]
    return env


def pod_resources(state: BuildState) -> dict:
    """The container's ``resources``: each quantity the blocks set is both its request and its limit;
    GPUs are a limit of their extended resource (Kubernetes sets the request equal)."""
    values = {k: v for k, v in (("cpu", state.pod.cpu), ("memory", state.pod.memory)) if v is not None}
    out = {"requests": dict(values), "limits": dict(values)} if values else {}
    if state.pod.gpu is not None and state.pod.gpu_resource:
        out.setdefault("limits", {})[state.pod.gpu_resource] = str(state.pod.gpu)
    return out


def pod_scheduling(state: BuildState) -> dict:
    """Pod spec fields from the blocks: node selector, tolerations, service account (and its token)."""
    pod = state.pod
    out: dict = {}
    if pod.node_selector:
        out["nodeSelector"] = dict(pod.node_selector)
    if pod.tolerations:
        out["tolerations"] = [t.manifest() for t in pod.tolerations]
    if pod.service_account:
        out["serviceAccountName"] = pod.service_account
    else:
        # No API token in a studio unless the template asks for an account.
        out["automountServiceAccountToken"] = False
    return out


def kubernetes_manifest(state: BuildState, studio: StudioContext, template_id: str) -> list[dict]:
    """The Deployment (1 replica) and Service a studio runs as, on Kubernetes and under podman."""
    studio_id = studio.studio_id or template_id
    name = kube_name(studio.project_key, studio_id, studio.instance)
    labels = {
        "app.kubernetes.io/name": "codestudio-studio",
        "app.kubernetes.io/managed-by": "codestudio",
        "codestudio.io/project": _label_value(studio.project_key),
        "codestudio.io/studio": _label_value(studio_id),
        "codestudio.io/template": _label_value(template_id),
    }
    selector = {k: labels[k] for k in ("codestudio.io/project", "codestudio.io/studio")}
    # Only the guard's ports are declared (and published locally); servers stay inside the pod.
    guarded = guard_ports(state.all_ports)
    ports = [{"name": port_name(p), "containerPort": guarded[p], "protocol": "TCP"} for p in state.all_ports]
    container: dict = {
        "name": "studio",
        "image": studio.image or f"localhost/codestudio/{template_id}:latest",
        "imagePullPolicy": "IfNotPresent",
        "env": container_env(state, studio, template_id),
        "ports": ports,
        # DESIGN.md: uid 1000, non-root, no privilege escalation, every capability dropped, RuntimeDefault seccomp.
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    resources = pod_resources(state)
    if resources:
        container["resources"] = resources
    probe = state.effective_probe()
    if probe is not None:
        # A webapp's HTTP probe is the engine's (per replica, at its own prefix); rollouts
        # need a probe that passes at the pod level, so its Kubernetes probe is TCP.
        action = (
            {"httpGet": {"path": probe_path(state, studio, template_id), "port": probe.port}}
            if probe.kind == "http" and studio.mode != "webapp"
            else {"tcpSocket": {"port": probe.port}}
        )
        container["readinessProbe"] = {**action, "periodSeconds": 2, "timeoutSeconds": 2, "failureThreshold": 3}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": studio.namespace,
            "labels": labels,
            "annotations": {"codestudio.io/owner": studio.owner, "codestudio.io/project-key": studio.project_key},
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [container],
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"fsGroup": 1000, "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    **pod_scheduling(state),
                },
            },
        },
    }
    docs = [deployment]
    if ports:
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": studio.namespace, "labels": labels},
                "spec": {
                    "selector": selector,
                    "ports": [{"name": port_name(p), "port": p, "targetPort": port_name(p), "protocol": "TCP"}
                              for p in state.all_ports],
                },
            }
        )
    # Only the gateway's pods may connect, and only to the guard ports; no ingress rule
    # at all (no ports) denies everything. Kubelet probes come from the node.
    docs.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": studio.namespace, "labels": labels},
            "spec": {
                "podSelector": {"matchLabels": selector},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": dict(GATEWAY_POD_LABELS)}}],
                        "ports": [{"protocol": "TCP", "port": p["containerPort"]} for p in ports],
                    }
                ] if ports else [],
            },
        }
    )
    return docs


def kubernetes_yaml(state: BuildState, studio: StudioContext, template_id: str) -> str:
    import yaml

    return yaml.safe_dump_all(kubernetes_manifest(state, studio, template_id), sort_keys=True, default_flow_style=False)
