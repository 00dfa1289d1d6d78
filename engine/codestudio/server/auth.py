"""Who a request is, and whether a state-changing request may go on (CSRF).

- ``Authorization: Bearer cst_...``: a personal API token (no CSRF check: it
  is not sent by browsers on their own).
- Sign-in mode ``link``: the ``cs_ui_session`` cookie (server-side session).
- Sign-in mode ``proxy``: the user (and email, groups) from the configured
  headers, only on requests whose peer address is a trusted proxy; every
  other request is refused (403). ``root`` (an engine superuser) is never
  accepted from the proxy, and OS groups of a same-named host account do
  not count (``create_app`` turns them off in this mode).

CSRF: a request that is not GET/HEAD/OPTIONS and rides on ambient browser
credentials (cookie or proxy headers) must carry the session's CSRF token in
``X-CSRF-Token`` (or a ``csrf_token`` form field), and its ``Origin``, when
sent, must be the UI origin.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import Request

from codestudio.access import SUPERUSERS, Identity
from codestudio.store import Store

log = logging.getLogger("codestudio.server")

COOKIE = "cs_ui_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ApiError(Exception):
    """An HTTP error with a stable ``code`` (rendered as JSON under /api, as a page elsewhere)."""

    def __init__(self, status: int, code: str, message: str, **extra):
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
        super().__init__(message)


@dataclass
class Caller:
    who: Identity
    via: str  # session | token | proxy
    csrf: str | None = None  # None for tokens
    session_key: str | None = None
    email: str | None = None
    groups: tuple[str, ...] = field(default_factory=tuple)

    @property
    def user(self) -> str:
        return self.who.name


def server_secret(data_dir: Path) -> bytes:
    """A random per-data-dir key (``server.key``, 0600) for CSRF tokens in proxy mode."""
    path = data_dir / "server.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
    finally:
        os.close(fd)
    return key


def client_address(request, settings) -> str:
    """The client's address: the peer, or X-Forwarded-For's last hop when the peer is a trusted proxy."""
    peer = request.client.host if request.client else ""
    if settings.is_trusted_proxy(peer):
        forwarded = request.headers.get("x-forwarded-for", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-1]
    return peer


def authenticate(request, settings, store: Store, secret: bytes) -> Caller | None:
    """The caller of ``request``, None when it carries no credentials; ApiError when they are wrong."""
    from codestudio import signin

    peer = request.client.host if request.client else ""
    if settings.auth == "proxy" and not settings.is_trusted_proxy(peer):
        log.warning("refused request from %s: not a trusted proxy", peer)
        raise ApiError(403, "untrusted_proxy", f"this server accepts requests only through its sign-in proxy; {peer} is not one")
    auth = request.headers.get("authorization", "")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "token_invalid", "Authorization must be 'Bearer <token>' (a personal API token)")
        user = signin.token_user(token.strip(), store=store)
        if user is None:
            raise ApiError(401, "token_invalid", "this API token is not valid (unknown, revoked, or its user is disabled)")
        return Caller(signin.identity_of(user, store=store), "token")
    if settings.auth == "proxy":
        user = request.headers.get(settings.user_header, "").strip()
        if not user:
            raise ApiError(401, "proxy_user_missing", f"the sign-in proxy sent no {settings.user_header} header")
        from codestudio.access import check_name
        from codestudio.errors import UsageError

        try:
            check_name("user", user)
        except UsageError as exc:
            raise ApiError(400, "proxy_user_invalid", str(exc)) from None
        if user in SUPERUSERS:
            log.warning("refused proxied user %s from %s: an engine superuser is never signed in by the proxy", user, peer)
            raise ApiError(403, "proxy_user_refused",
                           f"user {user} cannot sign in through the proxy (an engine superuser; use the CLI on the host)")
        with store.connect() as conn:
            if conn.execute("SELECT 1 FROM disabled_users WHERE user = ?", (user,)).fetchone():
                raise ApiError(401, "user_disabled", f"user {user} is disabled")
        sent = request.headers.get(settings.groups_header)
        if sent is None:
            # No groups header: no information (a proxy route or hop that does not pass it), not
            # "in no group", which would revoke what the user opens through their groups on every
            # such request. The groups last sent stay. An empty header (present) means no group.
            groups = tuple(sorted(signin.sso_groups(user, store=store)))
        else:
            groups = tuple(g.strip() for g in sent.split(",") if g.strip())
            try:
                signin.set_sso_groups(user, set(groups), store=store)
            except UsageError as exc:
                raise ApiError(400, "proxy_groups_invalid", str(exc)) from None
        csrf = hmac.new(secret, f"csrf:{user}".encode(), hashlib.sha256).hexdigest()
        return Caller(signin.identity_of(user, store=store), "proxy", csrf=csrf,
                      email=request.headers.get(settings.email_header) or None, groups=groups)
    key = request.cookies.get(COOKIE)
    if not key:
        return None
    session = signin.session_for(key, store=store)
    if session is None:
        return None
    return Caller(signin.identity_of(session.user, store=store), "session", csrf=session.csrf, session_key=key)


async def check_csrf(request, caller: Caller, settings) -> None:
    """Refuse a state-changing browser request without the right CSRF token or from another origin."""
    if request.method in SAFE_METHODS or caller.via == "token":
        return
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() != settings.ui_origin:
        log.warning("refused %s %s for %s: Origin %s is not the UI origin", request.method, request.url.path, caller.user, origin)
        raise ApiError(403, "csrf_origin", f"cross-origin request refused (Origin {origin} is not {settings.ui_origin})")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent:
        log.warning("refused %s %s for %s: no CSRF token", request.method, request.url.path, caller.user)
        raise ApiError(403, "csrf_missing", f"missing CSRF token ({CSRF_HEADER} header)")
    if not hmac.compare_digest(sent, caller.csrf or ""):
        log.warning("refused %s %s for %s: wrong CSRF token", request.method, request.url.path, caller.user)
        raise ApiError(403, "csrf_invalid", "wrong CSRF token (reload the page)")


async def require_caller(request: Request) -> Caller:
    """FastAPI dependency: the signed-in caller (401 without credentials), CSRF-checked."""
    state = request.app.state.cs  # the server's AppState
    caller = getattr(request.state, "caller", None)
    if caller is None:
        caller = authenticate(request, state.settings, state.store, state.secret)
        if caller is None:
            raise ApiError(401, "not_signed_in", "sign in first (codestudio login prints a link) or send an API token")
        request.state.caller = caller
    await check_csrf(request, caller, state.settings)
    return caller
