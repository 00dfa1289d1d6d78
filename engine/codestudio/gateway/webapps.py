"""Gateway routes of webapps: what the gateway needs to serve one webapp, validated.

Pure data, filled by the webapp service (``codestudio.webapps``) from its state
and fed to :class:`~codestudio.gateway.process.Gateway` next to the studio
routes. Every string that reaches the nginx config is validated here (project
key, webapp id, pod names, IP literals, ints, secrets, the share); the owner
never reaches the config.

URLs (DESIGN.md, "Webapps"):

- each replica's port at ``/web-apps-backends/<project>/<webapp>_<pod>/<port>/``
  (every replica, ready or not: the engine and the owner can look at one);
- the stable URL ``/webapps/<project>/<webapp>/``, which serves
  :attr:`WebappRoutes.main_port` of one *ready* replica, kept per browser by a
  cookie (docs/gateway.md, "Webapps").
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Literal

from codestudio.errors import UsageError
from codestudio.types import PROJECT_KEY_RE, SLUG_RE

STABLE_ROOT = "/webapps"
BACKEND_ROOT = "/web-apps-backends"

#: Who may view a webapp. ``owner``: its owner (and admins); ``group:G``: members of G;
#: ``users``: every signed-in user; ``public``: anybody, no sign-in.
SHARE_OWNER, SHARE_USERS, SHARE_PUBLIC, SHARE_GROUP_PREFIX = "owner", "users", "public", "group:"
# The group name rule of codestudio.access.NAME_RE (kept here: the gateway sits below access).
_GROUP_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._@-]{0,63}$")
# A Kubernetes pod name as the local and Kubernetes runtimes make them: a DNS label
# (no dots: the name is part of a URL path segment and of the gateway's route keys).
POD_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{32,128}$")


def parse_share(value: object) -> str:
    """``value`` if it is a share (``owner``, ``users``, ``public``, ``group:<name>``), else UsageError."""
    if isinstance(value, str):
        if value in (SHARE_OWNER, SHARE_USERS, SHARE_PUBLIC):
            return value
        if value.startswith(SHARE_GROUP_PREFIX):
            group = value[len(SHARE_GROUP_PREFIX):]
            if _GROUP_RE.match(group) and group not in (".", ".."):
                return value
    raise UsageError(
        f"share {value!r} is not one of owner, group:<group>, users, public "
        "(group names: letters, digits, '.', '_', '-', '@', at most 64)"
    )


def share_group(share: str) -> str | None:
    """The group of a ``group:<name>`` share, else None."""
    return share[len(SHARE_GROUP_PREFIX):] if share.startswith(SHARE_GROUP_PREFIX) else None


def _port_number(value: object, what: str) -> int:
    if type(value) is not int or not 1 <= value <= 65535:
        raise UsageError(f"gateway: {what} must be an integer 1-65535, got {value!r}")
    return value


@dataclass(frozen=True)
class ReplicaPort:
    """One routed container port of one replica and where it is reachable."""

    port: int  # container port (appears in the URL)
    upstream_port: int  # where the gateway reaches it (loopback host port locally)
    proxied_subpath: Literal["/", "$request_uri"]
    upstream_host: str = "127.0.0.1"  # an IP literal

    def __post_init__(self) -> None:
        _port_number(self.port, "replica port")
        _port_number(self.upstream_port, f"replica port {self.port}: upstream_port")
        if self.proxied_subpath not in ("/", "$request_uri"):
            raise UsageError(
                f"gateway: replica port {self.port}: proxied_subpath must be '/' or '$request_uri', "
                f"got {self.proxied_subpath!r}"
            )
        from codestudio.gateway.config import _ip_literal

        object.__setattr__(self, "upstream_host", _ip_literal(self.upstream_host, f"replica port {self.port} upstream_host"))


@dataclass(frozen=True)
class ReplicaRoutes:
    """One replica (pod) of a webapp.

    ``ready``: the engine's HTTP probe passed; only ready replicas get browsers at
    the stable URL (every replica is reachable at its backend prefix).
    ``guard_secret``: what the gateway sends in ``X-Codestudio-Guard`` to this pod
    (the runner's guard compares it with its own; one per pod start, like a
    studio's).
    """

    pod_name: str
    ready: bool
    ports: tuple[ReplicaPort, ...]
    guard_secret: str

    def __post_init__(self) -> None:
        if not isinstance(self.pod_name, str) or not POD_NAME_RE.match(self.pod_name):
            raise UsageError(
                f"gateway: {self.pod_name!r} is not a pod name "
                "(lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63)"
            )
        if type(self.ready) is not bool:
            raise UsageError(f"gateway: replica {self.pod_name}: ready must be true or false")
        if not isinstance(self.guard_secret, str) or not _SECRET_RE.match(self.guard_secret):
            raise UsageError(f"gateway: replica {self.pod_name}: guard secret must be 32-128 URL-safe characters")
        ports = tuple(self.ports)
        object.__setattr__(self, "ports", ports)
        seen: set[int] = set()
        for p in ports:
            if not isinstance(p, ReplicaPort):
                raise UsageError(f"gateway: replica {self.pod_name}: ports must be ReplicaPort values")
            if p.port in seen:
                raise UsageError(f"gateway: replica {self.pod_name}: port {p.port} is listed twice")
            seen.add(p.port)

    def port(self, number: int) -> ReplicaPort | None:
        return next((p for p in self.ports if p.port == number), None)


@dataclass(frozen=True)
class WebappRoutes:
    """Everything the gateway needs to serve one webapp.

    ``session_secret`` is the webapp's access secret (256 random bits,
    :func:`~codestudio.gateway.config.new_session_secret`): the viewers' cookie
    value and the link key derive from it, so rotating it (on a share change)
    ends every viewer's access at the reload. ``None``: nobody but a ``public``
    share gets in (a preview). ``main_port``: the container port the stable URL
    serves (the first exposed ``launch_in_webapp`` entrypoint).
    """

    project_key: str
    webapp_id: str
    owner: str  # never in the config
    share: str
    session_secret: str | None
    main_port: int
    replicas: tuple[ReplicaRoutes, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.project_key, str) or not PROJECT_KEY_RE.match(self.project_key):
            raise UsageError(
                f"gateway: {self.project_key!r} is not a project key "
                "(letters, digits, '_' and '-', starting with a letter or digit, at most 63 characters)"
            )
        if not isinstance(self.webapp_id, str) or not SLUG_RE.match(self.webapp_id):
            raise UsageError(
                f"gateway: {self.webapp_id!r} is not a webapp id "
                "(lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters)"
            )
        object.__setattr__(self, "share", parse_share(self.share))
        if self.session_secret is not None and not (
            isinstance(self.session_secret, str) and _SECRET_RE.match(self.session_secret)
        ):
            raise UsageError(f"gateway: webapp {self.webapp_id}: session secret must be 32-128 URL-safe characters")
        _port_number(self.main_port, f"webapp {self.webapp_id}: main_port")
        replicas = tuple(self.replicas)
        object.__setattr__(self, "replicas", replicas)
        seen: set[str] = set()
        for r in replicas:
            if not isinstance(r, ReplicaRoutes):
                raise UsageError(f"gateway: webapp {self.webapp_id}: replicas must be ReplicaRoutes values")
            if r.pod_name in seen:
                raise UsageError(f"gateway: webapp {self.webapp_id}: pod {r.pod_name} is listed twice")
            seen.add(r.pod_name)

    @property
    def public(self) -> bool:
        return self.share == SHARE_PUBLIC

    @property
    def prefix(self) -> str:
        """The stable URL's path, ``/webapps/<project>/<webapp>/``."""
        return f"{STABLE_ROOT}/{self.project_key}/{self.webapp_id}/"

    def backend_prefix(self, pod_name: str) -> str:
        """``/web-apps-backends/<project>/<webapp>_<pod>`` (no trailing slash: ``/<port>/`` follows)."""
        return f"{BACKEND_ROOT}/{self.project_key}/{self.webapp_id}_{pod_name}"

    @property
    def ready_replicas(self) -> tuple[ReplicaRoutes, ...]:
        """Replicas that take browsers at the stable URL: ready, and serving the main port."""
        return tuple(r for r in self.replicas if r.ready and r.port(self.main_port) is not None)

    @property
    def cookie_value(self) -> str:
        """What a viewer's ``cs_webapp`` cookie carries (derived: the secret never leaves the engine)."""
        return _derive(self, "webapp-cookie")

    @property
    def link_key(self) -> str:
        """Key signing access links (nginx secure_link), over the stable prefix."""
        return _derive(self, "webapp-link")


def _derive(webapp: WebappRoutes, purpose: str) -> str:
    if webapp.session_secret is None:
        raise UsageError(f"webapp {webapp.webapp_id} has no session secret")
    # The purpose names differ from a studio's ("cookie", "link"), and so does the message's
    # prefix: no webapp value can equal a studio value, whatever the secrets.
    msg = f"codestudio-{purpose}:{webapp.project_key}/{webapp.webapp_id}".encode()
    return hmac.digest(webapp.session_secret.encode(), msg, "sha256").hex()


def check_webapp_prefixes(webapps) -> None:
    seen: set[str] = set()
    for w in webapps:
        if w.prefix in seen:
            raise UsageError(f"gateway: two webapps share the URL prefix {w.prefix}")
        seen.add(w.prefix)
