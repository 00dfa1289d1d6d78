"""Gateway routes of webapps: what the gateway needs to serve one webapp, validated.

Pure data, filled by the webapp service (``codestudio.webapps``) from its state
and fed to :class:`~codestudio.gateway.process.Gateway` next to the studio
routes. Every string that reaches the nginx config is validated here (project
key, webapp id, pod names, IP literals, ints, secrets, the share); the owner
never reaches the config.

URLs (DESIGN.md, "Webapps"):

- each replica's port at ``/web-apps-backends/<project>/<webapp>_<pod>/<port>/``
  (every replica, ready or not, for the owner and admins only: their per-replica
  link and cookie derive from their own purposes, so a viewer's stable-URL link or
  cookie never opens a replica, ready or not; the engine probes each replica
  through its published port and guard, not through the gateway);
- the stable URL ``/webapps/<project>/<webapp>/``, which serves
  :attr:`WebappRoutes.main_port` of one *ready* replica, kept per browser by a
  cookie (docs/gateway.md, "Webapps").
"""

from __future__ import annotations

import base64
import hashlib
import re
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
    _check_unique_prefixes,
    _derive,
    _host_port,
    _ip_literal,
    _is_secret,
    _route_key,
    ngx_quote,
)

STABLE_ROOT = "/webapps"
BACKEND_ROOT = "/web-apps-backends"
#: The access cookie (a viewer's for the stable prefix; the owner's, with another value,
#: for a replica's backend prefix) and the affinity cookie naming a browser's replica.
WEBAPP_COOKIE = "cs_webapp"
REPLICA_COOKIE = "cs_replica"
WEBAPP_COOKIE_NAMES = (WEBAPP_COOKIE, REPLICA_COOKIE)

#: Who may view a webapp. ``owner``: its owner (and admins); ``group:G``: members of G;
#: ``users``: every signed-in user; ``public``: anybody, no sign-in.
SHARE_OWNER, SHARE_USERS, SHARE_PUBLIC, SHARE_GROUP_PREFIX = "owner", "users", "public", "group:"
# The group name rule of codestudio.access.NAME_RE (kept here: the gateway sits below access).
_GROUP_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._@-]{0,63}$")
# A Kubernetes pod name as the local and Kubernetes runtimes make them: a DNS label
# (no dots: the name is part of a URL path segment and of the gateway's route keys).
POD_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


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
        object.__setattr__(self, "upstream_host", _ip_literal(self.upstream_host, f"replica port {self.port} upstream_host"))


@dataclass(frozen=True)
class ReplicaRoutes:
    """One replica (pod) of a webapp.

    ``ready``: the engine's HTTP probe passed; only ready replicas get browsers at
    the stable URL (every replica is reachable at its backend prefix, by the owner
    and admins only).
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
        if not _is_secret(self.guard_secret):
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
        _check_names(self.project_key, self.webapp_id, "webapp id")
        object.__setattr__(self, "share", parse_share(self.share))
        if self.session_secret is not None and not _is_secret(self.session_secret):
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
        return _derive_webapp(self, "webapp-cookie")

    @property
    def link_key(self) -> str:
        """Key signing access links (nginx secure_link), over the stable prefix."""
        return _derive_webapp(self, "webapp-link")

    @property
    def backend_cookie_value(self) -> str:
        """The owner's (and admins') ``cs_webapp`` cookie for a replica's backend prefix."""
        return _derive_webapp(self, "webapp-backend-cookie")

    @property
    def backend_link_key(self) -> str:
        """Key signing per-replica links (``webapp url --replica``), issued to the owner and admins only."""
        return _derive_webapp(self, "webapp-backend-link")


def _derive_webapp(webapp: WebappRoutes, purpose: str) -> str:
    if webapp.session_secret is None:
        raise UsageError(f"webapp {webapp.webapp_id} has no session secret")
    # The purpose names differ from a studio's ("cookie", "link"), and so does the message's
    # prefix: no webapp value can equal a studio value, whatever the secrets.
    return _derive(webapp.session_secret, purpose, f"{webapp.project_key}/{webapp.webapp_id}")


def check_webapp_prefixes(webapps) -> None:
    _check_unique_prefixes(webapps, "webapps")


WEBAPP_ERROR_PAGES = {
    401: ("Sign-in needed", "This webapp is not public. Open the link printed by "
          "<code>codestudio webapp url PROJECT NAME</code> (or the webapp's link in the web UI) to get in."),
    403: ("Link invalid or expired", "This access link is not valid any more. Ask for a new one with "
          "<code>codestudio webapp url PROJECT NAME</code>."),
    404: ("Not found", "No webapp is served here. <code>codestudio webapp list</code> shows the published ones."),
    502: ("Webapp not answering", "No replica of this webapp answers right now. "
          "<code>codestudio webapp status PROJECT NAME</code> shows its replicas."),
    503: ("Webapp not ready", "No replica of this webapp is ready yet: it may still be starting. "
          "<code>codestudio webapp status PROJECT NAME</code> shows its replicas."),
    504: ("Webapp timed out", "The webapp did not answer in time."),
}


# --- the route table's webapp rows -----------------------------------------------------


@dataclass(frozen=True)
class WebappTable:
    """The webapps' lines of the route table (see docs/gateway.md, "Webapps").

    - ``webapp_rows``: map ``$cs_wkey -> "<prefix> <o|l|p> <cookie value> <link key>
      <backend cookie value> <backend link key>"`` (``o``: public, ``l``: cookie or link
      needed, ``p``: no secret, nobody gets in; the backend pair opens replicas' prefixes);
    - ``port_rows``: every replica's ports, in the studios' port map, with the pod's
      guard secret as a fifth field;
    - ``replica_rows``: map ``"<prefix>|<pod>" -> "<pod> <s|f> <pool> <pick> <address>
      <guard> <pass prefix> <next pod>"``, ready replicas only: the stable URL's targets;
    - ``splits``: one ``split_clients`` per webapp with a ready replica, spreading new
      browsers evenly over the ready replicas (values: their replica rows);
    - ``new_rows``: map ``$cs_wkey -> $cs_wa_split_<n>``.
    """

    webapp_rows: list[str]
    port_rows: list[str]
    replica_rows: list[str]
    splits: list[str]
    new_rows: list[str]

    @property
    def webapp_text(self) -> str:
        return "\n".join(self.webapp_rows)

    @property
    def replica_text(self) -> str:
        return "\n".join(self.replica_rows)

    @property
    def new_text(self) -> str:
        return "\n".join(self.new_rows)


def _percentages(n: int) -> list[str]:
    """``split_clients`` shares for ``n`` replicas: equal, two decimals, the last one ``*``."""
    share = int(10000 / n) / 100
    return [f"{share:.2f}%"] * (n - 1) + ["*"]


def webapp_table(webapps, place) -> WebappTable:
    """The rows serving ``webapps``; ``place(address)`` gives each replica port its
    place in the shared upstream pools (pool name, pick key)."""
    folded: dict[str, int] = {}
    for w in webapps:
        folded[w.prefix.lower()] = folded.get(w.prefix.lower(), 0) + 1
    webapp_rows, port_rows, replica_rows, splits, new_rows = [], [], [], [], []
    for w in webapps:
        prefix = w.prefix
        colliding = folded[prefix.lower()] > 1
        if w.public:
            row = f"{prefix} o - -"
        elif w.session_secret is None:
            row = f"{prefix} p - -"
        else:
            row = f"{prefix} l {w.cookie_value} {w.link_key}"
        # Replicas' backend prefixes: the owner's and admins' own cookie and link key, whatever the share.
        row += f" {w.backend_cookie_value} {w.backend_link_key}" if w.session_secret is not None else " - -"
        webapp_rows.append(f"        {_route_key(prefix, colliding)} {ngx_quote(row)};")
        targets: dict[str, str] = {}
        for r in sorted(w.replicas, key=lambda r: r.pod_name):
            base = w.backend_prefix(r.pod_name)
            for p in sorted(r.ports, key=lambda p: p.port):
                address = _host_port(p.upstream_host, p.upstream_port)
                pool, pick = place(address)
                mode = "s" if p.proxied_subpath == "/" else "f"
                port_rows.append(f"        {_route_key(f'{base}/{p.port}/', colliding)} "
                                 f"{ngx_quote(f'{mode} {pool} {pick} {address} {r.guard_secret}')};")
                if p.port == w.main_port and r.ready:
                    pass_prefix = "/" if mode == "s" else f"{base}/{p.port}/"
                    targets[r.pod_name] = f"{r.pod_name} {mode} {pool} {pick} {address} {r.guard_secret} {pass_prefix}"
        if not targets:
            continue
        pods = list(targets)
        # A browser whose replica stops answering is moved to the next ready one (a ring).
        for i, pod in enumerate(pods):
            key = _pair_key(prefix, pod, colliding)
            replica_rows.append(f"        {key} {ngx_quote(targets[pod] + ' ' + pods[(i + 1) % len(pods)])};")
        n = len(splits)
        lines = [f"    split_clients \"${{request_id}}\" $cs_wa_split_{n} {{"]
        for share, pod in zip(_percentages(len(pods)), pods):
            lines.append(f"        {share} {ngx_quote(targets[pod] + ' ' + pods[(pods.index(pod) + 1) % len(pods)])};")
        lines.append("    }")
        splits.append("\n".join(lines))
        new_rows.append(f"        {_route_key(prefix, colliding)} $cs_wa_split_{n};")
    return WebappTable(webapp_rows, port_rows, replica_rows, splits, new_rows)


def _pair_key(prefix: str, pod: str, colliding: bool) -> str:
    """Map key matching exactly ``"<prefix>|<pod>"`` (see config._route_key)."""
    _route_key(prefix, colliding)  # validates the prefix's characters
    if not POD_NAME_RE.match(pod):
        raise UsageError(f"gateway: {pod!r} cannot be a route key")
    return f'"~^{prefix}\\|{pod}\\z"' if colliding else f'"{prefix}|{pod}"'


# --- access links ------------------------------------------------------------------------


def webapp_access_token(webapp: WebappRoutes, expires: int, *, backend: bool = False) -> str:
    """The secure_link checksum the gateway expects: base64url(md5("<expires><stable prefix> <link key>")),
    with the backend link key for a replica's prefix (``backend``)."""
    key = webapp.backend_link_key if backend else webapp.link_key
    raw = f"{expires}{webapp.prefix} {key}".encode()
    return base64.urlsafe_b64encode(hashlib.md5(raw).digest()).decode().rstrip("=")


def make_webapp_access_url(
    webapp: WebappRoutes,
    base_url: str,
    ttl: int = DEFAULT_TOKEN_TTL,
    *,
    pod: str | None = None,
    port: int | None = None,
    now: float | None = None,
) -> str:
    """A link that lets a viewer in: the gateway swaps its token for the ``cs_webapp`` cookie.

    ``base_url`` is the webapp origin's (``GatewaySettings.webapp_base_url``). By
    default the link opens the stable URL; with ``pod`` (and ``port``, default the
    main port) it opens that replica's backend prefix. Valid for ``ttl`` seconds,
    for this webapp only. A public webapp's stable URL needs no link: it is returned as
    is. A replica's link is signed with the backend link key, whatever the share: give
    it to the owner and admins only (viewers are routed to ready replicas only).
    """
    if pod is not None:
        replica = next((r for r in webapp.replicas if r.pod_name == pod), None)
        if replica is None:
            raise UsageError(f"webapp {webapp.webapp_id} has no replica {pod}")
        port = webapp.main_port if port is None else port
        if replica.port(port) is None:
            raise UsageError(f"replica {pod} of webapp {webapp.webapp_id} serves no port {port}")
        path = f"{webapp.backend_prefix(pod)}/{port}/"
    elif port is not None:
        raise UsageError("a port is only given with a replica (pod)")
    else:
        path = webapp.prefix
    url = f"{base_url.rstrip('/')}{path}"
    if webapp.public and pod is None:
        return url
    expires = int((time.time() if now is None else now) + ttl)
    token = webapp_access_token(webapp, expires, backend=pod is not None)
    return f"{url}?{urlencode({EXPIRES_ARG: expires, TOKEN_ARG: token})}"
