"""What the studio and webapp halves of the gateway config share: escaping, route keys,
addresses, the access links' arguments and the jinja2 environment of the gateway's
templates. The lowest module of ``codestudio.gateway``."""

from __future__ import annotations

import hmac
import ipaddress
import re
from functools import cache

from codestudio.errors import UsageError
from codestudio.types import PROJECT_KEY_RE, SLUG_RE

TOKEN_ARG = "cs_token"
EXPIRES_ARG = "cs_expires"
DEFAULT_TOKEN_TTL = 600  # seconds an access URL stays valid

_UNQUOTABLE_RE = re.compile(r"[\x00-\x1f\x7f$]")
_ROUTE_KEY_RE = re.compile(r"[A-Za-z0-9_/-]+")
_SAFE_RE = re.compile(r"^[A-Za-z0-9_./:\[\]-]*$")
#: A session or guard secret as ``new_session_secret()`` makes them (studios and webapps).
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{32,128}$")


def _ip_literal(value: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except (ValueError, TypeError):
        raise UsageError(f"gateway: {what} must be an IP address, got {value!r}") from None


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def ngx_quote(value: object) -> str:
    """A double-quoted nginx string literal; refuses what could change its meaning."""
    text = str(value)
    if _UNQUOTABLE_RE.search(text):
        raise UsageError(f"gateway: {text!r} cannot be written into the nginx config")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ngx_safe(value: object) -> str:
    """A bare token for use inside an already-quoted string: only [A-Za-z0-9_./:[]-]."""
    text = str(value)
    if not _SAFE_RE.match(text):
        raise UsageError(f"gateway: {text!r} cannot be written into the nginx config")
    return text


def _is_secret(value: object) -> bool:
    return isinstance(value, str) and _SECRET_RE.match(value) is not None


def _check_names(project_key: object, name: object, noun: str) -> None:
    """UsageError unless ``project_key`` is a project key and ``name`` (a ``noun``: "studio id") a slug."""
    if not isinstance(project_key, str) or not PROJECT_KEY_RE.match(project_key):
        raise UsageError(
            f"gateway: {project_key!r} is not a project key "
            "(letters, digits, '_' and '-', starting with a letter or digit, at most 63 characters)"
        )
    if not isinstance(name, str) or not SLUG_RE.match(name):
        raise UsageError(
            f"gateway: {name!r} is not a {noun} "
            "(lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters)"
        )


def _derive(secret: str, purpose: str, name: str) -> str:
    """A value derived from ``secret`` for one purpose: hex HMAC-SHA256 of ``codestudio-<purpose>:<name>``."""
    return hmac.digest(secret.encode(), f"codestudio-{purpose}:{name}".encode(), "sha256").hex()


def _check_unique_prefixes(routes, what: str) -> None:
    """UsageError when two of ``routes`` (studios or webapps, named ``what``) have one URL prefix."""
    seen: set[str] = set()
    for r in routes:
        if r.prefix in seen:
            raise UsageError(f"gateway: two {what} share the URL prefix {r.prefix}")
        seen.add(r.prefix)


def _route_key(prefix: str, colliding: bool) -> str:
    """A map key matching exactly ``prefix``: a plain string, or a case-sensitive regex
    when another key differs from it only in case (map strings ignore case)."""
    if not _ROUTE_KEY_RE.fullmatch(prefix):
        raise UsageError(f"gateway: {prefix!r} cannot be a route key")
    return f'"~^{prefix}\\z"' if colliding else f'"{prefix}"'


@cache
def template_env():
    """The jinja2 environment of ``codestudio/gateway/templates`` (HTML autoescaped; the ``ngx_*`` filters)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("codestudio.gateway", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["ngx_quote"] = ngx_quote
    env.filters["ngx_safe"] = ngx_safe
    return env
