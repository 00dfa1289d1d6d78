"""Which runtime a data dir uses: ``<data dir>/runtime.json`` (``codestudio runtime show|set``).

The file holds names only (context, namespace, registry, pull secret
name, gateway mode), never a credential: registry credentials stay in the
auth file or the cluster's pull secret, cluster credentials in the
kubeconfig. Values are validated here before anything talks to a cluster,
so every string that reaches a Kubernetes object or a URL is known good.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from codestudio.errors import UsageError

FILE = "runtime.json"
GATEWAY_MODES = ("in-cluster", "port-forward")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
#: host[:port][/path]: what ``buildah push`` and an image reference accept, no scheme, no credentials.
_REGISTRY = re.compile(r"^(?P<host>[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:]+\])(:(?P<port>[0-9]{1,5}))?"
                       r"(?P<path>(/[a-z0-9]+([._-][a-z0-9]+)*)*)$")
_CONTEXT = re.compile(r"^[^\x00-\x1f\x7f]{1,253}$")


@dataclass(frozen=True)
class RuntimeSettings:
    """The runtime setting of a data dir: ``local``, or ``kubernetes`` with where and how."""

    runtime: Literal["local", "kubernetes"] = "local"
    #: kubeconfig context; None: the current context, or the in-cluster service account.
    context: str | None = None
    namespace: str | None = None
    #: Registry images are pushed to (``host[:port][/path]``).
    registry: str | None = None
    #: Name of an image pull secret in the namespace (the pods' imagePullSecrets).
    pull_secret: str | None = None
    gateway: Literal["in-cluster", "port-forward"] = "port-forward"

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.runtime == "local":
            return {"runtime": "local"}
        return d


def check_namespace(value: str) -> str:
    if not _DNS_LABEL.match(value or ""):
        raise UsageError(f"--namespace {value!r}: not a Kubernetes namespace name (DNS-1123 label: lowercase "
                         "letters, digits and '-', at most 63 characters)")
    return value


def check_registry(value: str) -> str:
    m = _REGISTRY.match(value or "")
    if "@" in (value or "") or "://" in (value or ""):
        raise UsageError(f"--registry {_shown(value)}: give host[:port][/path] only, without a scheme or credentials "
                         "(credentials come from the auth file or the pull secret)")
    if not m or (m.group("port") and not 1 <= int(m.group("port")) <= 65535):
        raise UsageError(f"--registry {_shown(value)}: not a registry address (host[:port][/path], e.g. "
                         "registry.example.com:5000/codestudio)")
    return value


def check_pull_secret(value: str) -> str:
    if not _DNS_SUBDOMAIN.match(value or ""):
        raise UsageError(f"--pull-secret {value!r}: not a Secret name (DNS-1123 subdomain)")
    return value


def check_context(value: str) -> str:
    if not _CONTEXT.match(value or ""):
        raise UsageError("--context: 1-253 printable characters")
    return value


def _shown(value: str | None) -> str:
    # A registry value with "user:password@" must never be echoed back.
    if value and "@" in value:
        return repr("<hidden>@" + value.rpartition("@")[2])
    return repr(value)


def path(data_dir: Path | None = None) -> Path:
    if data_dir is None:
        from codestudio.home import data_dir as default

        data_dir = default()
    return Path(data_dir) / FILE


def load(data_dir: Path | None = None) -> RuntimeSettings:
    """The data dir's setting (``local`` when none was set)."""
    try:
        raw = json.loads(path(data_dir).read_text())
    except FileNotFoundError:
        return RuntimeSettings()
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path(data_dir)}: unreadable runtime setting ({exc}); set it again with "
                         "`codestudio runtime set`") from None
    if raw.get("runtime") != "kubernetes":
        return RuntimeSettings()
    try:
        return RuntimeSettings(
            runtime="kubernetes",
            context=check_context(raw["context"]) if raw.get("context") else None,
            namespace=check_namespace(raw["namespace"]),
            registry=check_registry(raw["registry"]),
            pull_secret=check_pull_secret(raw["pull_secret"]) if raw.get("pull_secret") else None,
            gateway=raw.get("gateway") if raw.get("gateway") in GATEWAY_MODES else "port-forward",
        )
    except (KeyError, UsageError) as exc:
        raise UsageError(f"{path(data_dir)}: invalid runtime setting ({exc}); set it again with "
                         "`codestudio runtime set`") from None


def save(settings: RuntimeSettings, data_dir: Path | None = None) -> None:
    """Write the setting atomically (a reader sees the old or the new one, never half)."""
    target = path(data_dir)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(settings.to_dict(), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, target)
