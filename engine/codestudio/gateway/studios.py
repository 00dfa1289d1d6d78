"""Gateway routes of studios: what the gateway needs to serve one running studio, validated,
and the secrets derived from its session secret (cookie value, link key, guard secret, access URLs).

Pure data, filled by the runtime from its state; every value that reaches the
nginx config is validated here (project key, studio id, ints, IP literals,
secrets). Labels and action names only reach the landing page, HTML-escaped.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlencode

from codestudio.errors import UsageError
from codestudio.gateway.common import (
    DEFAULT_TOKEN_TTL,
    EXPIRES_ARG,
    TOKEN_ARG,
    _check_names,
    _derive,
    _ip_literal,
    _is_secret,
)

URL_ROOT = "/code-studios"


@dataclass(frozen=True)
class PortRoute:
    """One routed container port of a studio and where it is published.

    Every port is served with the same owner-only access; ``listed`` says
    whether it is also shown as a tab (an entrypoint's ``expose_html``):
    an unlisted port is reachable by its URL only.
    """

    port: int  # container port (appears in the URL)
    upstream_port: int  # loopback host port it is published on
    proxied_subpath: Literal["/", "$request_uri"]
    label: str  # shown on the landing page only (HTML-escaped), never in nginx config
    listed: bool = True

    def __post_init__(self) -> None:
        for name in ("port", "upstream_port"):
            value = getattr(self, name)
            if type(value) is not int or not 1 <= value <= 65535:
                raise UsageError(f"gateway route: {name} must be an integer 1-65535, got {value!r}")
        if self.proxied_subpath not in ("/", "$request_uri"):
            raise UsageError(
                f"gateway route for port {self.port}: proxied_subpath must be '/' or '$request_uri', "
                f"got {self.proxied_subpath!r}"
            )
        if not isinstance(self.label, str):
            raise UsageError(f"gateway route for port {self.port}: label must be text")
        if type(self.listed) is not bool:
            raise UsageError(f"gateway route for port {self.port}: listed must be true or false")


@dataclass(frozen=True)
class StudioRoutes:
    """Everything the gateway needs to serve one running studio."""

    project_key: str
    studio_id: str
    owner: str
    session_secret: str | None  # per-studio secret behind the owner's cookie; None = render preview
    ports: tuple[PortRoute, ...]
    actions: tuple[tuple[str, str], ...] = ()  # (name, label) for the landing page
    upstream_host: str = "127.0.0.1"
    # Raised when the owner loses access (codestudio.revocation): a new cookie value and link key, same guard.
    access_epoch: int = 0

    def __post_init__(self) -> None:
        _check_names(self.project_key, self.studio_id, "studio id")
        if self.session_secret is not None and not _is_secret(self.session_secret):
            raise UsageError(
                f"gateway: studio {self.studio_id}: session secret must be 32-128 URL-safe characters "
                "(use new_session_secret())"
            )
        ports = tuple(self.ports)
        object.__setattr__(self, "ports", ports)
        object.__setattr__(self, "actions", tuple(tuple(a) for a in self.actions))
        seen: set[int] = set()
        for route in ports:
            if not isinstance(route, PortRoute):
                raise UsageError(f"gateway: studio {self.studio_id}: ports must be PortRoute values")
            if route.port in seen:
                raise UsageError(f"gateway: studio {self.studio_id}: port {route.port} is listed twice")
            seen.add(route.port)
        _ip_literal(self.upstream_host, f"studio {self.studio_id} upstream_host")
        if type(self.access_epoch) is not int or self.access_epoch < 0:
            raise UsageError(f"gateway: studio {self.studio_id}: access_epoch must be a non-negative integer")

    @property
    def prefix(self) -> str:
        """``/code-studios/<project>/<studio>/`` (with the trailing slash)."""
        return f"{URL_ROOT}/{self.project_key}/{self.studio_id}/"

    @property
    def cookie_value(self) -> str:
        """What the owner's cookie carries (derived, so the stored secret never leaves the engine)."""
        return _derive_studio(self, "cookie", self.access_epoch)

    @property
    def link_key(self) -> str:
        """Key signing access URLs (nginx secure_link)."""
        return _derive_studio(self, "link", self.access_epoch)

    @property
    def guard_secret(self) -> str:
        """What the gateway sends in :data:`GUARD_HEADER` on every request to the studio's pod."""
        return _derive_studio(self, "guard")


def _derive_studio(studio: StudioRoutes, purpose: str, epoch: int = 0) -> str:
    if studio.session_secret is None:
        raise UsageError(f"studio {studio.studio_id} has no session secret (render preview)")
    # Epoch 0 gives the values of before epochs existed; '#' is in no project key or studio id.
    return _derive(studio.session_secret, purpose, f"{studio.project_key}/{studio.studio_id}{f'#{epoch}' if epoch else ''}")


def new_session_secret() -> str:
    """A fresh random 256-bit session secret (rotate it on every studio start)."""
    return secrets.token_urlsafe(32)


def access_token(studio: StudioRoutes, expires: int) -> str:
    """The secure_link checksum nginx expects: base64url(md5("<expires><prefix> <link key>"))."""
    raw = f"{expires}{studio.prefix} {studio.link_key}".encode()
    return base64.urlsafe_b64encode(hashlib.md5(raw).digest()).decode().rstrip("=")


def make_access_url(
    studio: StudioRoutes,
    base_url: str,
    ttl: int = DEFAULT_TOKEN_TTL,
    *,
    port: int | None = None,
    now: float | None = None,
) -> str:
    """A URL that lets the owner in: the gateway swaps its token for the session cookie.

    ``base_url`` is the gateway's (``GatewaySettings.base_url``); ``port`` points
    at one tab instead of the landing page. The token is valid for ``ttl``
    seconds and for this studio only (any path under its prefix).
    """
    if port is not None and port not in {r.port for r in studio.ports}:
        raise UsageError(f"studio {studio.studio_id} exposes no port {port}")
    expires = int((time.time() if now is None else now) + ttl)
    path = studio.prefix + (f"{port}/" if port is not None else "")
    query = urlencode({EXPIRES_ARG: expires, TOKEN_ARG: access_token(studio, expires)})
    return f"{base_url.rstrip('/')}{path}?{query}"
