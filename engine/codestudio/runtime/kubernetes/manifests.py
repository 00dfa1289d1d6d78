"""The rendered manifest made ready for a cluster, and applied with server-side apply.

:func:`prepare` takes the documents :func:`codestudio.render.kubernetes_manifest`
rendered (Deployment, Service, NetworkPolicy) and returns what is applied:

- every object named like the pod set, in the configured namespace, with the
  engine's labels (:data:`~codestudio.runtime.base.MANAGED_BY`, the instance,
  the pod set, the studio's id/project/owner/kind) on the objects and the pods;
- the Deployment's image is the pushed **digest** (``registry/...@sha256:...``),
  never a tag; ``imagePullSecrets`` when a pull secret is set; the pod
  security settings of DESIGN.md enforced (uid 1000, non-root, no privilege
  escalation, every capability dropped, ``RuntimeDefault`` seccomp); no
  service-account token unless the template names a service account;
- one Secret per ``spec.secrets`` entry (the guard secret), never written to disk.

:func:`apply` applies them in dependency order (Secrets, NetworkPolicy,
Service, Deployment) with field manager ``codestudio`` and ``force``.
"""

from __future__ import annotations

import copy

from codestudio.errors import RuntimeFailure, UsageError
from codestudio.runtime.base import INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_VALUE, PodSetSpec

FIELD_MANAGER = "codestudio"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
#: Label naming the pod set an object belongs to (replicas share it).
PODSET_LABEL = "codestudio.io/podset"
ORDER = ("Secret", "NetworkPolicy", "Service", "Deployment")

POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "allowPrivilegeEscalation": False,
                      "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def labels_of(spec: PodSetSpec, instance: str) -> dict[str, str]:
    return {**spec.labels, MANAGED_BY: MANAGED_BY_VALUE, INSTANCE_LABEL: instance, PODSET_LABEL: spec.name}


def prepare(spec: PodSetSpec, *, namespace: str, instance: str, image: str | None,
            pull_secret: str | None = None) -> list[dict]:
    """The documents to apply for ``spec`` (see the module docstring)."""
    labels = labels_of(spec, instance)
    docs: list[dict] = []
    for secret, values in spec.secrets.items():
        docs.append({"apiVersion": "v1", "kind": "Secret",
                     "metadata": {"name": secret, "namespace": namespace, "labels": dict(labels)},
                     "type": "Opaque", "stringData": dict(values)})
    for doc in copy.deepcopy(list(spec.manifest)):
        kind = doc.get("kind")
        if kind not in ("Deployment", "Service", "NetworkPolicy"):
            raise RuntimeFailure(f"the manifest has a {kind} document, which the kubernetes runtime does not apply")
        meta = doc.setdefault("metadata", {})
        meta["name"] = spec.name
        meta["namespace"] = namespace
        meta.setdefault("labels", {}).update(labels)
        if kind == "Deployment":
            _deployment(doc, spec, labels, image, pull_secret)
        docs.append(doc)
    return sorted(docs, key=lambda d: ORDER.index(d["kind"]))


#: The engine's own service account in docs/kubernetes.md's sample manifest: never a studio's.
ENGINE_SERVICE_ACCOUNT = "codestudio-engine"
#: Names another engine service account to refuse as well (docs/kubernetes.md).
ENGINE_SERVICE_ACCOUNT_ENV = "CODESTUDIO_ENGINE_SERVICE_ACCOUNT"
IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def _in_cluster_account(token_path: str) -> tuple[str, str] | None:
    """(namespace, name) of the service account the engine runs as, from its token's ``sub`` claim."""
    import base64
    import json

    try:
        token = open(token_path).read().strip()  # noqa: SIM115 - a tiny file; never logged
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        parts = str(claims.get("sub", "")).split(":")
    except (OSError, IndexError, ValueError):
        return None
    if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
        return parts[2], parts[3]
    return None


def engine_service_accounts(namespace: str, *, token_path: str = IN_CLUSTER_TOKEN) -> set[str]:
    """Service-account names in ``namespace`` that are the engine's own (a studio must never get its token)."""
    import os

    names = {ENGINE_SERVICE_ACCOUNT}
    if os.environ.get(ENGINE_SERVICE_ACCOUNT_ENV):
        names.add(os.environ[ENGINE_SERVICE_ACCOUNT_ENV].strip())
    own = _in_cluster_account(token_path)
    if own is not None and own[0] == namespace:
        names.add(own[1])
    return names


def check_service_account(spec: PodSetSpec, namespace: str, *, token_path: str = IN_CLUSTER_TOKEN) -> None:
    """Refuse (UsageError, exit 2) a pod set whose ``service_account`` is the engine's own: its API token."""
    for doc in spec.manifest:
        if doc.get("kind") != "Deployment":
            continue
        name = ((doc.get("spec") or {}).get("template") or {}).get("spec", {}).get("serviceAccountName")
        if name and name in engine_service_accounts(namespace, token_path=token_path):
            raise UsageError(
                f"pod set {spec.name}: the kubernetes block's field 'service_account' is {name!r}, the engine's "
                f"own service account in namespace {namespace}: a studio or webapp running as it would hold the "
                "engine's API token. Create a service account for studios and name that one (docs/kubernetes.md)")


def _deployment(doc: dict, spec: PodSetSpec, labels: dict, image: str | None, pull_secret: str | None) -> None:
    doc["spec"]["replicas"] = spec.replicas
    template = doc["spec"]["template"]
    template.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    pod = template["spec"]
    pod["securityContext"] = {**(pod.get("securityContext") or {}), **POD_SECURITY}
    pod["enableServiceLinks"] = False  # no other Service's address in the studio's environment
    if not pod.get("serviceAccountName"):
        pod["automountServiceAccountToken"] = False
    if pull_secret:
        pod["imagePullSecrets"] = [{"name": pull_secret}]
    for container in pod["containers"]:
        container["securityContext"] = {**(container.get("securityContext") or {}), **CONTAINER_SECURITY}
    main = pod["containers"][0]
    if image is not None:
        if "@sha256:" not in image:
            raise RuntimeFailure(f"image {image} is not a pushed digest (registry/name@sha256:...)")
        main["image"] = image
        main["imagePullPolicy"] = "IfNotPresent"


def apply(cluster, docs: list[dict]) -> None:
    """Server-side apply of every document (field manager ``codestudio``, conflicts forced)."""
    apis = {
        "Secret": cluster.core.patch_namespaced_secret,
        "NetworkPolicy": cluster.networking.patch_namespaced_network_policy,
        "Service": cluster.core.patch_namespaced_service,
        "Deployment": cluster.apps.patch_namespaced_deployment,
    }
    for doc in docs:
        name, ns = doc["metadata"]["name"], doc["metadata"]["namespace"]
        cluster.call(apis[doc["kind"]], name, ns, doc, field_manager=FIELD_MANAGER, force=True,
                     _content_type=APPLY_CONTENT_TYPE, _preload_content=False,
                     doing=f"apply {doc['kind']} {name}")


def without_secrets(docs: list[dict]) -> list[dict]:
    """The documents as kept on disk: Secret values replaced by their key names."""
    out = copy.deepcopy(docs)
    for doc in out:
        if doc["kind"] == "Secret":
            doc["stringData"] = {k: "<hidden>" for k in doc.get("stringData", {})}
    return out
