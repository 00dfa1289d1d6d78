"""Pushing a built image to a registry with buildah, and reading its digest back.

The Kubernetes runtime runs images from a registry, never from this
machine's storage, and refers to them by **digest** (a tag can move under a
running Deployment). :func:`push_image` pushes a local image
(``localhost/codestudio/<template>:<hash>``) to
``<registry>/codestudio/<template>:<hash>`` with ``buildah push
--digestfile`` and returns ``<registry>/codestudio/<template>@sha256:...``.

Credentials come from an auth file (containers-auth.json(5), the format of
``podman login`` and of a ``kubernetes.io/dockerconfigjson`` pull secret) or
from such a document in memory (a pull secret's ``.dockerconfigjson``), which
is written to a private temporary file for the push and removed after it.
They are never passed on a command line (``ps`` shows those), and every
error message is scrubbed of them (:func:`scrub`) before it is raised.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from codestudio import containers
from codestudio.errors import RuntimeFailure, UsageError

#: A registry as the settings name it: ``host[:port]`` and an optional path
#: prefix (``registry.example.com:5000/team``); no scheme, no tag.
REGISTRY_RE = re.compile(
    r"^(?P<host>[a-zA-Z0-9](?:[a-zA-Z0-9.-]{0,251}[a-zA-Z0-9])?|\[[0-9a-fA-F:.]+\])(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)$"
)
#: One repository path component and a tag, as the distribution spec defines them.
_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
#: Local image names carry this registry part (``localhost/codestudio/<id>:<hash>``).
LOCAL_PREFIX = "localhost/"
PUSH_TIMEOUT = 900


def check_registry_name(registry: str, *, field: str = "registry") -> str:
    """``registry`` without a trailing slash, or :class:`UsageError` naming ``field``."""
    value = (registry or "").strip().rstrip("/")
    if "://" in value:
        raise UsageError(f"{field}: {registry!r} must not have a scheme (write host[:port][/path])")
    m = REGISTRY_RE.match(value)
    if not m or (m.group("port") and not 0 < int(m.group("port")) < 65536):
        raise UsageError(f"{field}: {registry!r} is not a registry name (host[:port][/path], "
                         "path in lower case letters, digits and . _ -)")
    return value


def remote_reference(image: str, registry: str) -> tuple[str, str]:
    """Where ``image`` (a local ``localhost/<repo>:<tag>`` name) goes: (``<registry>/<repo>``, tag)."""
    registry = check_registry_name(registry)
    name = image.removeprefix(LOCAL_PREFIX)
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:
        raise UsageError(f"image {image!r} has no tag to push")
    if not _TAG_RE.match(tag) or not all(_COMPONENT_RE.match(c) for c in repo.split("/")):
        raise UsageError(f"image {image!r} is not a pushable name (repository in lower case, a tag)")
    return f"{registry}/{repo}", tag


def secret_strings(auth: Mapping) -> list[str]:
    """Every credential string in an auth document (``auth``, its decoded ``user:password``, the password, tokens)."""
    found: list[str] = []
    for entry in (auth.get("auths") or {}).values() if isinstance(auth, Mapping) else ():
        if not isinstance(entry, Mapping):
            continue
        for key in ("auth", "password", "identitytoken", "registrytoken"):
            value = entry.get(key)
            if isinstance(value, str) and value:
                found.append(value)
        encoded = entry.get("auth")
        if isinstance(encoded, str):
            try:
                decoded = base64.b64decode(encoded, validate=False).decode()
            except (ValueError, UnicodeDecodeError):
                continue
            found.append(decoded)
            _, _, password = decoded.partition(":")
            if password:
                found.append(password)
    # Longest first, so a password inside "user:password" is not left half-replaced.
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret string replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _read_auth(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"registry auth file {path}: cannot be read ({exc.strerror})") from None
    except ValueError:
        raise UsageError(f"registry auth file {path}: not JSON (expected containers-auth.json or .dockerconfigjson)") from None
    if not isinstance(data, dict) or not isinstance(data.get("auths", {}), dict):
        raise UsageError(f"registry auth file {path}: no 'auths' object")
    return data


def is_loopback(registry: str) -> bool:
    """Whether the registry's host is this machine's loopback (``localhost``, ``127.x``, ``[::1]``)."""
    host = REGISTRY_RE.match(check_registry_name(registry)).group("host").strip("[]").lower()  # type: ignore[union-attr]
    return host in ("localhost", "::1") or host.startswith("127.")


def push_image(image: str, registry: str, *, authfile: Path | None = None, auth: Mapping | None = None,
               tls_verify: bool | None = None, timeout: float = PUSH_TIMEOUT) -> str:
    """Push ``image`` to ``registry`` and return ``<registry>/<repo>@sha256:<digest>``.

    :param image: a local image name, ``localhost/codestudio/<template>:<hash>``.
    :param registry: ``host[:port][/path]``; the image goes to ``<registry>/codestudio/<template>:<hash>``.
    :param authfile: a containers-auth.json / ``.dockerconfigjson`` file with the registry's credentials.
    :param auth: the same document in memory (a pull secret's ``.dockerconfigjson``); wins over ``authfile``.
    :param tls_verify: False for a plain-HTTP or self-signed registry (``--tls-verify=false``); None:
        verify, except for a registry on loopback (nothing between us and it to trust or distrust).
    :raises UsageError: a bad registry or image name, an unreadable auth file.
    :raises RuntimeFailure: buildah failed or timed out; the message never holds a credential.
    """
    target, tag = remote_reference(image, registry)
    if tls_verify is None:
        tls_verify = not is_loopback(registry)
    containers.require_tools("buildah")
    if auth is None and authfile is not None:
        auth = _read_auth(authfile)
    secrets = secret_strings(auth or {})
    work = Path(tempfile.mkdtemp(prefix="codestudio-push-"))  # 0700
    try:
        args = ["push", "--digestfile", str(work / "digest"), f"--tls-verify={'true' if tls_verify else 'false'}"]
        if auth is not None:
            # Written here even when it came from a file: buildah then reads exactly what we checked.
            fd = os.open(work / "auth.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(dict(auth), f)
            args += ["--authfile", str(work / "auth.json")]
        args += [image, f"docker://{target}:{tag}"]
        try:
            proc = containers.buildah(*args, check=False, timeout=timeout)
        except Exception as exc:  # subprocess.TimeoutExpired carries the command line
            if exc.__class__.__name__ == "TimeoutExpired":
                raise RuntimeFailure(f"buildah push of {image} to {target} did not finish within {timeout:g}s") from None
            raise
        if proc.returncode != 0:
            detail = scrub("\n".join(proc.stderr.strip().splitlines()[-15:]), secrets)
            raise RuntimeFailure(f"buildah push of {image} to {target}:{tag} failed (exit {proc.returncode}):\n{detail}")
        try:
            digest = (work / "digest").read_text().strip()
        except OSError:
            digest = ""
        if not DIGEST_RE.match(digest):
            raise RuntimeFailure(f"buildah push of {image} wrote no digest (read {digest[:80]!r})")
        return f"{target}@{digest}"
    finally:
        shutil.rmtree(work, ignore_errors=True)


__all__ = ["check_registry_name", "is_loopback", "push_image", "remote_reference", "scrub", "secret_strings"]
