"""Talking to a cluster: client configuration, timeouts, and API errors in words.

The official ``kubernetes`` client is imported only here and only when a
:class:`Cluster` is made, so commands that never touch a cluster stay fast.
Every call goes through :meth:`Cluster.call`, which adds a request timeout
(connect, read) and turns what can go wrong into a
:class:`~codestudio.errors.RuntimeFailure` whose message says what was
being done and why it failed (403 forbidden, 404, 409 conflict, 5xx, a
dead API server), without headers or credentials.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from codestudio.errors import RuntimeFailure, UsageError

#: Seconds to connect / to wait for an answer on an ordinary call.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
IN_CLUSTER = "in-cluster"


class ApiError(RuntimeFailure):
    """An API call the server answered with an error status; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason


def require_client():
    try:
        import kubernetes  # noqa: F401
    except ImportError:
        raise RuntimeFailure("the kubernetes runtime needs the official client: pip install 'codestudio[kubernetes]'") from None
    return kubernetes


def contexts(config_file: str | None = None) -> tuple[list[str], str | None]:
    """The kubeconfig's context names and its current context (``([], None)`` without a kubeconfig)."""
    require_client()
    from kubernetes import config

    try:
        items, current = config.list_kube_config_contexts(config_file=config_file)
    except config.ConfigException:
        return [], None
    return [c["name"] for c in items], (current or {}).get("name")


def in_cluster_available() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token")


def status_of(exc: Exception) -> tuple[int | None, str | None, str]:
    """(HTTP status, reason, message) of an ``ApiException`` from its Status body, never its headers."""
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    message = ""
    body = getattr(exc, "body", None)
    if body:
        try:
            doc = json.loads(body)
            message = str(doc.get("message") or "")
            reason = doc.get("reason") or reason
        except (ValueError, AttributeError):
            message = ""
    return status, reason, message[:500]


def describe_api_error(exc: Exception, doing: str, *, namespace: str | None = None) -> ApiError:
    """An :class:`ApiError` for ``exc`` raised while ``doing`` (``"apply Deployment cs-a-1"``)."""
    status, reason, message = status_of(exc)
    detail = f": {message}" if message else ""
    where = f" in namespace {namespace}" if namespace else ""
    if status == 401:
        text = f"could not {doing}: the cluster did not accept the credentials (401 Unauthorized); check the kubeconfig"
    elif status == 403:
        text = (f"could not {doing}{where}: forbidden (403){detail}. The engine's account needs the Role in "
                "docs/kubernetes.md (RBAC)")
    elif status == 404:
        text = f"could not {doing}{where}: not found (404){detail}"
    elif status == 409:
        text = (f"could not {doing}{where}: conflict (409){detail}. Another client changed or owns the object; "
                "run the command again")
    elif status == 410:
        text = f"could not {doing}: the resource version is too old (410 Gone)"
    elif status == 422:
        text = f"could not {doing}{where}: the cluster refused the object (422 Invalid){detail}"
    elif status is not None and status >= 500:
        text = f"could not {doing}: the API server failed (HTTP {status} {reason or ''}){detail}".replace(" )", ")")
    elif status is not None:
        text = f"could not {doing}: HTTP {status} {reason or ''}{detail}".strip()
    else:
        text = f"could not {doing}: {type(exc).__name__}"
    return ApiError(text, status, reason)


class Cluster:
    """One configured API client for a context (or the in-cluster account) and a namespace."""

    def __init__(self, *, context: str | None, namespace: str, config_file: str | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT,
                 api_client: Any = None):
        self.context = context
        self.namespace = namespace
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        if api_client is not None:
            self.api = api_client
        else:
            self.api = self._configure(context, config_file)
        from kubernetes import client

        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.networking = client.NetworkingV1Api(self.api)

    @staticmethod
    def _configure(context: str | None, config_file: str | None):
        require_client()
        from kubernetes import client, config

        cfg = client.Configuration()
        if context == IN_CLUSTER or (context is None and in_cluster_available()):
            try:
                config.load_incluster_config(client_configuration=cfg)
            except config.ConfigException as exc:
                raise UsageError(f"--context {IN_CLUSTER}: no service account here ({exc})") from None
        else:
            names, current = contexts(config_file)
            if not names:
                raise UsageError("no kubeconfig found (KUBECONFIG or ~/.kube/config), and not running in a pod; "
                                 "give --context of an existing kubeconfig")
            if context is not None and context not in names:
                raise UsageError(f"--context {context!r}: no such context in the kubeconfig (it has: "
                                 f"{', '.join(sorted(names))})")
            if context is None and current is None:
                raise UsageError("the kubeconfig has no current context: give --context")
            try:
                config.load_kube_config(config_file=config_file, context=context, client_configuration=cfg,
                                        persist_config=False)
            except (config.ConfigException, OSError, ValueError) as exc:
                raise UsageError(f"--context {context or current!r}: the kubeconfig entry is unusable "
                                 f"({type(exc).__name__})") from None
        # A dead API server must fail, not be retried for minutes.
        cfg.retries = 1
        return client.ApiClient(cfg)

    @property
    def host(self) -> str:
        return self.api.configuration.host

    def timeout(self, read: float | None = None) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout if read is None else read)

    def call(self, fn: Callable, *args, doing: str, read_timeout: float | None = None, not_found_ok: bool = False,
             **kwargs):
        """``fn(*args, **kwargs)`` with a request timeout; errors become :class:`ApiError`.

        :param doing: what the call does, in words, for the error message.
        :param not_found_ok: return None on 404 instead of raising.
        """
        from kubernetes.client.exceptions import ApiException

        kwargs.setdefault("_request_timeout", self.timeout(read_timeout))
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if not_found_ok and exc.status == 404:
                return None
            raise describe_api_error(exc, doing, namespace=self.namespace) from None
        except Exception as exc:  # urllib3: connection refused, read timeout, TLS
            if _is_transport_error(exc):
                raise ApiError(f"could not {doing}: the API server at {self.host} did not answer "
                               f"({_transport_reason(exc)})") from None
            raise

    def close(self) -> None:
        try:
            self.api.close()
        except Exception:  # noqa: BLE001
            pass


def _is_transport_error(exc: Exception) -> bool:
    import urllib3

    return isinstance(exc, urllib3.exceptions.HTTPError | OSError | TimeoutError)


def _transport_reason(exc: Exception) -> str:
    import urllib3

    inner = getattr(exc, "reason", None)
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError) or isinstance(inner, urllib3.exceptions.ReadTimeoutError):
        return "timed out waiting for an answer"
    if isinstance(inner, urllib3.exceptions.ConnectTimeoutError) or isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return "timed out connecting"
    if isinstance(inner, urllib3.exceptions.NewConnectionError) or isinstance(exc, ConnectionError):
        return "connection refused or unreachable"
    if isinstance(exc, urllib3.exceptions.SSLError) or isinstance(inner, urllib3.exceptions.SSLError):
        return "TLS failed"
    return type(inner or exc).__name__


def check_registry_answers(registry: str, *, timeout: float = 5.0) -> str:
    """GET ``/v2/`` of the registry (HTTPS, then plain HTTP for loopback hosts): what answered.

    200 and 401 both mean a registry answers (401: it wants credentials,
    which come from the auth file or pull secret, not from here).
    """
    import httpx

    host = registry.split("/", 1)[0]
    bare = host.rsplit(":", 1)[0].strip("[]") if not host.startswith("[") or "]:" in host else host.strip("[]")
    schemes = ["https"] + (["http"] if bare in ("localhost", "127.0.0.1", "::1") or bare.startswith("127.") else [])
    problems = []
    for scheme in schemes:
        url = f"{scheme}://{host}/v2/"
        try:
            resp = httpx.get(url, timeout=timeout, follow_redirects=False)
        except httpx.HTTPError as exc:
            problems.append(f"{scheme}: {type(exc).__name__}")
            continue
        if resp.status_code in (200, 401) and (resp.headers.get("docker-distribution-api-version")
                                                or resp.status_code == 200 or "www-authenticate" in resp.headers):
            return url
        problems.append(f"{scheme}: HTTP {resp.status_code}")
    raise RuntimeFailure(f"--registry {registry}: no registry answers at {host}/v2/ ({'; '.join(problems)})")
