"""``codestudio runtime show|set``: what the data dir runs studios on, checked before it is saved.

:func:`set_kubernetes` checks every value (the context exists, the
namespace is reachable, the pull secret exists, the registry answers)
and saves only when all pass; a failed check saves nothing. Bad values
and unknown names are :class:`~codestudio.errors.UsageError` (exit 2); a
cluster that fails while being asked is a :class:`RuntimeFailure` (exit 1).
"""

from __future__ import annotations

from codestudio.errors import RuntimeFailure, UsageError
from codestudio.runtime.kubernetes import settings as runtime_settings
from codestudio.runtime.kubernetes.settings import RuntimeSettings


def show() -> dict:
    """The setting as ``runtime show`` prints it (names only: no credential is ever stored)."""
    s = runtime_settings.load()
    out = s.to_dict()
    if s.runtime == "kubernetes":
        out["context"] = s.context or "(current context, or in-cluster)"
        out["pull_secret"] = s.pull_secret or "(none)"
    return out


def set_local() -> RuntimeSettings:
    s = RuntimeSettings()
    runtime_settings.save(s)
    return s


def set_kubernetes(*, context: str | None, namespace: str, registry: str, pull_secret: str | None = None,
                   gateway: str = "port-forward", check_registry: bool = True, say=lambda m: None) -> RuntimeSettings:
    """Check and save the kubernetes setting; raise before saving anything when a check fails."""
    if context is not None:
        runtime_settings.check_context(context)
    runtime_settings.check_namespace(namespace)
    runtime_settings.check_registry(registry)
    if pull_secret is not None:
        runtime_settings.check_pull_secret(pull_secret)
    if gateway not in runtime_settings.GATEWAY_MODES:
        raise UsageError(f"--gateway {gateway!r}: one of {', '.join(runtime_settings.GATEWAY_MODES)}")
    s = RuntimeSettings("kubernetes", context, namespace, registry, pull_secret, gateway)  # type: ignore[arg-type]
    from codestudio.runtime.kubernetes.client import Cluster, check_registry_answers

    cluster = Cluster(context=context, namespace=namespace)
    try:
        check_namespace_reachable(cluster)
        say(f"namespace {namespace} is reachable at {cluster.host}")
        if pull_secret is not None:
            found = cluster.call(cluster.core.read_namespaced_secret, pull_secret, namespace,
                                 doing=f"read the pull secret {pull_secret}", not_found_ok=True)
            if found is None:
                raise UsageError(f"--pull-secret {pull_secret}: no such Secret in namespace {namespace}")
    finally:
        cluster.close()
    if check_registry:
        try:
            url = check_registry_answers(registry)
        except RuntimeFailure as exc:
            raise UsageError(str(exc)) from None
        say(f"registry answers at {url}")
    runtime_settings.save(s)
    return s


def check_namespace_reachable(cluster) -> None:
    """The namespace exists (read it) or, when reading namespaces is not allowed, pods can be listed in it."""
    from codestudio.runtime.kubernetes.client import ApiError

    ns = cluster.namespace
    try:
        found = cluster.call(cluster.core.read_namespace, ns, doing=f"read namespace {ns}", not_found_ok=True)
    except ApiError as exc:
        if exc.status != 403:
            raise
        # A namespaced Role cannot read Namespace objects: listing pods there is what the engine needs.
        try:
            cluster.call(cluster.core.list_namespaced_pod, ns, limit=1, doing=f"list pods in namespace {ns}")
        except ApiError as inner:
            if inner.status in (401, 403, 404):
                raise UsageError(f"--namespace {ns}: {inner}") from None
            raise
        return
    if found is None:
        raise UsageError(f"--namespace {ns}: no such namespace at {cluster.host}")
