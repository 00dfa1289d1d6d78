"""Who may use the web UI and the API: one-time sign-in links, web sessions, API tokens.

Engine services called by both ``codestudio login|logout|token`` and the
server (``codestudio.server``); nothing here knows about HTTP.

- A **sign-in link** carries a random *link key*; the DB keeps only its
  sha256. Redeemed once (``used_at``), it becomes a **web session**.
- A **web session** is server-side: the browser holds the random *session
  key* in its cookie, the DB its sha256, the user, the CSRF token and the
  expiry. ``logout`` and admins revoke sessions; a revoked or expired
  session is refused at once.
- A **personal API token** (``cst_<id>_<secret>``) is shown once; the DB
  keeps its sha256. Revoked tokens stop working at once.
- A **disabled user** has every session and token revoked and can get no
  new one until an admin enables them again; the cookies of their studios
  and of the webapps they could view stop working at once
  (:mod:`codestudio.revocation`).
- Failed sign-ins are recorded per client address: more than
  :data:`MAX_FAILURES` in :data:`FAILURE_WINDOW` seconds and that client is
  refused (rate limit) until the window passes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass

from codestudio.access import Identity, check_name, require_admin, revoking
from codestudio.errors import NotFound, PermissionDenied, UsageError
from codestudio.store import Store, now

log = logging.getLogger("codestudio.signin")

DEFAULT_LINK_TTL = 600
MIN_LINK_TTL, MAX_LINK_TTL = 10, 7 * 24 * 3600
SESSION_TTL = 12 * 3600
MAX_FAILURES = 10
FAILURE_WINDOW = 300.0
TOKEN_PREFIX = "cst_"
_TOKEN_RE = re.compile(r"^cst_([a-z0-9]{12})_([A-Za-z0-9_-]{32,64})$")
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{20,100}$")


class SignInFailed(UsageError):
    """A sign-in link, session or token was refused; ``code`` says why (stable, for the API)."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


class RateLimited(SignInFailed):
    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        super().__init__("rate_limited", f"too many failed sign-ins from this address; try again in {retry_after} s")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str
    via: str
    expires_at: float


# --------------------------------------------------------------------------
# Users


def _check_enabled(conn, user: str) -> None:
    if conn.execute("SELECT 1 FROM disabled_users WHERE user = ?", (user,)).fetchone():
        raise SignInFailed("user_disabled", f"user {user} is disabled (an admin can enable them: codestudio login --user {user} --enable)")


def disable_user(who: Identity, user: str, *, store: Store) -> dict:
    """Revoke every session and token of ``user`` and refuse new ones until :func:`enable_user`."""
    require_admin(who, "disable users")
    check_name("user", user)
    if user == who.name:
        raise UsageError("you cannot disable yourself")
    t = now()
    # Their studios' and the webapps' cookies they hold stop working too (codestudio.revocation).
    with revoking({user}, store=store), store.connect() as conn:
        conn.execute("INSERT OR IGNORE INTO disabled_users (user, disabled_by, disabled_at) VALUES (?, ?, ?)", (user, who.name, t))
        sessions = conn.execute("UPDATE web_sessions SET revoked_at = ? WHERE user = ? AND revoked_at IS NULL", (t, user)).rowcount
        tokens = conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE user = ? AND revoked_at IS NULL", (t, user)).rowcount
        conn.execute("UPDATE signin_links SET used_at = ? WHERE user = ? AND used_at IS NULL", (t, user))
    log.warning("user %s disabled by %s (%d sessions, %d tokens revoked)", user, who.name, sessions, tokens)
    return {"user": user, "sessions_revoked": sessions, "tokens_revoked": tokens}


def enable_user(who: Identity, user: str, *, store: Store) -> bool:
    require_admin(who, "enable users")
    with store.connect() as conn:
        return conn.execute("DELETE FROM disabled_users WHERE user = ?", (user,)).rowcount > 0


def _target(who: Identity, user: str | None, what: str) -> str:
    user = user or who.name
    check_name("user", user)
    if user != who.name and not who.is_admin:
        raise PermissionDenied(f"only admins may {what} for another user ({user}); you are {who.name}")
    return user


# --------------------------------------------------------------------------
# Sign-in links and sessions


def new_link_key(who: Identity, user: str | None = None, *, ttl: int = DEFAULT_LINK_TTL, store: Store) -> tuple[str, str]:
    """A one-time link key for ``user`` (default: ``who``); returns (user, key). Admins may name others."""
    user = _target(who, user, "print sign-in links")
    if type(ttl) is not int or not MIN_LINK_TTL <= ttl <= MAX_LINK_TTL:
        raise UsageError(f"--ttl {ttl!r}: a sign-in link stays valid {MIN_LINK_TTL} to {MAX_LINK_TTL} seconds (7 days)")
    key = secrets.token_urlsafe(32)
    t = now()
    with store.connect() as conn:
        _check_enabled(conn, user)
        conn.execute("DELETE FROM signin_links WHERE expires_at < ?", (t - 86400,))
        conn.execute(
            "INSERT INTO signin_links (link_hash, user, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            (_hash(key), user, who.name, t, t + ttl),
        )
    return user, key


def check_rate(client: str, *, store: Store) -> None:
    """Raise :class:`RateLimited` when ``client`` failed too often lately."""
    t = now()
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT at FROM signin_failures WHERE client = ? AND at > ? ORDER BY at", (client, t - FAILURE_WINDOW)
        ).fetchall()
    if len(rows) >= MAX_FAILURES:
        oldest = rows[-MAX_FAILURES]["at"]
        raise RateLimited(max(1, int(oldest + FAILURE_WINDOW - t) + 1))


def record_failure(client: str, reason: str, *, store: Store) -> None:
    t = now()
    with store.connect() as conn:
        conn.execute("DELETE FROM signin_failures WHERE at < ?", (t - 86400,))
        conn.execute("INSERT INTO signin_failures (client, at, reason) VALUES (?, ?, ?)", (client, t, reason))
    log.warning("failed sign-in from %s: %s", client, reason)


def _new_session(conn, user: str, via: str, ttl: int) -> tuple[str, Session]:
    key = secrets.token_urlsafe(32)
    t = now()
    session = Session(user=user, csrf=secrets.token_urlsafe(24), via=via, expires_at=t + ttl)
    conn.execute("DELETE FROM web_sessions WHERE expires_at < ?", (t - 86400,))
    conn.execute(
        "INSERT INTO web_sessions (session_hash, user, csrf, via, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        (_hash(key), user, session.csrf, via, t, session.expires_at),
    )
    return key, session


def redeem_link(key: str, client: str, *, ttl: int = SESSION_TTL, store: Store) -> tuple[str, Session]:
    """Use a link key once: returns (session key, session). Failures are recorded and rate-limited."""
    check_rate(client, store=store)
    t = now()
    try:
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise SignInFailed("link_invalid", "this sign-in link is not valid (it was changed or cut short)")
        with store.connect() as conn:
            row = conn.execute("SELECT * FROM signin_links WHERE link_hash = ?", (_hash(key),)).fetchone()
            if row is None:
                raise SignInFailed("link_invalid", "this sign-in link is not valid (it was changed or cut short)")
            if row["used_at"] is not None:
                raise SignInFailed("link_used", "this sign-in link was already used; ask for a new one (codestudio login)")
            if row["expires_at"] < t:
                raise SignInFailed("link_expired", "this sign-in link has expired; ask for a new one (codestudio login)")
            _check_enabled(conn, row["user"])
            # Mark used in the same transaction that creates the session: a link works once.
            conn.execute("UPDATE signin_links SET used_at = ? WHERE link_hash = ? AND used_at IS NULL", (t, row["link_hash"]))
            session_key, session = _new_session(conn, row["user"], "link", ttl)
    except SignInFailed as exc:
        record_failure(client, exc.code, store=store)
        raise
    log.info("user %s signed in with a link from %s", session.user, client)
    return session_key, session


def proxy_session(user: str, *, ttl: int = SESSION_TTL, store: Store) -> tuple[str, Session]:
    """A session for a user a trusted SSO proxy vouched for."""
    check_name("user", user)
    with store.connect() as conn:
        _check_enabled(conn, user)
        return _new_session(conn, user, "proxy", ttl)


def session_for(session_key: str | None, *, store: Store) -> Session | None:
    """The live session behind a cookie value, or None (unknown, expired, revoked, disabled user)."""
    if not session_key or not _KEY_RE.match(session_key):
        return None
    with store.connect() as conn:
        row = conn.execute(
            "SELECT s.* FROM web_sessions s WHERE session_hash = ? AND revoked_at IS NULL AND expires_at > ? "
            "AND NOT EXISTS (SELECT 1 FROM disabled_users d WHERE d.user = s.user)",
            (_hash(session_key), now()),
        ).fetchone()
    if row is None:
        return None
    return Session(user=row["user"], csrf=row["csrf"], via=row["via"], expires_at=row["expires_at"])


def end_session(session_key: str, *, store: Store) -> None:
    with store.connect() as conn:
        conn.execute("UPDATE web_sessions SET revoked_at = ? WHERE session_hash = ? AND revoked_at IS NULL",
                     (now(), _hash(session_key)))


def revoke_sessions(who: Identity, user: str | None = None, *, store: Store) -> int:
    """End every web session of ``user`` (default: ``who``); admins may name others. Returns how many."""
    user = _target(who, user, "end sessions")
    with store.connect() as conn:
        n = conn.execute("UPDATE web_sessions SET revoked_at = ? WHERE user = ? AND revoked_at IS NULL", (now(), user)).rowcount
    log.info("%d session(s) of %s ended by %s", n, user, who.name)
    return n


def list_sessions(who: Identity, user: str | None = None, *, store: Store) -> list[dict]:
    user = _target(who, user, "list sessions")
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT user, via, created_at, expires_at FROM web_sessions WHERE user = ? AND revoked_at IS NULL AND expires_at > ? "
            "ORDER BY created_at", (user, now())
        ).fetchall()
    return [dict(r) for r in rows]


# --------------------------------------------------------------------------
# API tokens


def create_token(who: Identity, name: str, *, user: str | None = None, store: Store) -> tuple[dict, str]:
    """A new personal API token: (its listing row, the token itself, shown only now)."""
    user = _target(who, user, "create API tokens")
    if not isinstance(name, str) or not 1 <= len(name) <= 100 or any(ord(c) < 32 for c in name):
        raise UsageError(f"invalid token name {name!r}: 1-100 printable characters")
    token_id = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))
    token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    t = now()
    with store.connect() as conn:
        _check_enabled(conn, user)
        conn.execute(
            "INSERT INTO api_tokens (id, user, name, token_hash, created_at) VALUES (?, ?, ?, ?, ?)",
            (token_id, user, name, _hash(token), t),
        )
    return {"id": token_id, "user": user, "name": name, "created_at": t, "last_used": None}, token


def list_tokens(who: Identity, user: str | None = None, *, store: Store) -> list[dict]:
    user = _target(who, user, "list API tokens")
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT id, user, name, created_at, last_used FROM api_tokens WHERE user = ? AND revoked_at IS NULL ORDER BY created_at",
            (user,),
        ).fetchall()
    return [dict(r) for r in rows]


def revoke_token(who: Identity, token_id: str, *, store: Store) -> None:
    with store.connect() as conn:
        row = conn.execute("SELECT user FROM api_tokens WHERE id = ? AND revoked_at IS NULL", (token_id,)).fetchone()
        if row is None or (row["user"] != who.name and not who.is_admin):
            raise NotFound(f"no API token {token_id!r} (see `codestudio token list`)")
        conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ?", (now(), token_id))


def token_user(token: str | None, *, store: Store) -> str | None:
    """The user of a live token, or None (malformed, unknown, revoked, disabled user)."""
    if not token or not _TOKEN_RE.match(token):
        return None
    digest = _hash(token)
    with store.connect() as conn:
        row = conn.execute(
            "SELECT t.id, t.user, t.token_hash, t.last_used FROM api_tokens t WHERE token_hash = ? AND revoked_at IS NULL "
            "AND NOT EXISTS (SELECT 1 FROM disabled_users d WHERE d.user = t.user)",
            (digest,),
        ).fetchone()
        if row is None or not hmac.compare_digest(row["token_hash"], digest):
            return None
        t = now()
        if row["last_used"] is None or t - row["last_used"] > 60:  # not a write on every request
            conn.execute("UPDATE api_tokens SET last_used = ? WHERE id = ?", (t, row["id"]))
    return row["user"]


def sso_groups(user: str, *, store: Store) -> set[str]:
    """The groups a trusted SSO proxy last sent for ``user``."""
    with store.connect(write=False) as conn:
        return {r["grp"] for r in conn.execute("SELECT grp FROM sso_groups WHERE user = ?", (user,))}


def set_sso_groups(user: str, groups: set[str], *, store: Store) -> None:
    """Record the groups a trusted SSO proxy sent for ``user`` (they count like state-DB memberships);
    a group no longer sent renews what ``user`` could open only through it (:mod:`codestudio.revocation`)."""
    groups = {check_name("group", g) for g in groups}
    with store.connect(write=False) as conn:
        current = {r["grp"] for r in conn.execute("SELECT grp FROM sso_groups WHERE user = ?", (user,))}
    if current == groups:
        return

    def record() -> None:
        with store.connect() as conn:
            conn.execute("DELETE FROM sso_groups WHERE user = ?", (user,))
            conn.executemany("INSERT INTO sso_groups (user, grp) VALUES (?, ?)", [(user, g) for g in sorted(groups)])

    if current <= groups:
        record()
        return
    with revoking({user}, store=store):  # a group the proxy no longer sends: what it opened is renewed
        record()


def identity_of(user: str, *, store: Store) -> Identity:
    """The engine identity of a signed-in user (admin flag from the state DB)."""
    from codestudio.access import is_admin

    return Identity(user, is_admin(user, store=store), user)
