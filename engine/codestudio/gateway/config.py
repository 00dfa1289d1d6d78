"""Gateway nginx configuration: route models, access secrets, rendering.

Owns everything that turns "which studios run, on which loopback ports" into
text: the nginx ``location`` blocks of one studio, the full ``nginx.conf``,
the static landing and error pages, and the signed access URLs that
``codestudio studio url`` prints. Nothing here starts processes (see
:mod:`codestudio.gateway.process`).

Injection rule: every value that reaches the nginx config is either validated
here (project key, studio id, ints, IP literals, hex secrets) or passed through
the ``ngx_quote``/``ngx_safe`` filters, which refuse anything they cannot
render safely. Free text (labels, owner, action names) never reaches the
config; it only appears HTML-escaped in the static landing pages.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal
from urllib.parse import urlencode, urlsplit

from codestudio.errors import UsageError
from codestudio.gateway.common import (  # noqa: F401 (re-exported: the gateway's public names)
    _SAFE_RE,
    DEFAULT_TOKEN_TTL,
    EXPIRES_ARG,
    TOKEN_ARG,
    _host_port,
    _ip_literal,
    _route_key,
    ngx_quote,
    ngx_safe,
)
from codestudio.gateway.webapps import WEBAPP_COOKIE_NAMES, WEBAPP_ERROR_PAGES, check_webapp_prefixes, webapp_table
from codestudio.types import PROJECT_KEY_RE, SLUG_RE

URL_ROOT = "/code-studios"
HEALTH_PATH = "/_codestudio/health"
COOKIE_NAME = "cs_session"
#: The web UI's cookies (``codestudio server``: ``cs_ui_session``). Browsers scope cookies by
#: host name, not port, so a UI on another port of the content host would have them sent
#: here; the content server strips them like its own before any request reaches a studio.
UI_COOKIE_NAMES = ("cs_ui_session",)
DEFAULT_PORT = 8800
DEFAULT_HOST = "127.0.0.1"
#: Request header carrying a studio's guard secret from the gateway to the guard in its pod
#: (the runner's ``GUARD_HEADER``; the guard refuses connections without it and strips it).
GUARD_HEADER = "X-Codestudio-Guard"
# `cs_session` cookies stripped from one request before it reaches a studio; a request
# carrying more is refused (400). A browser sends one, or a few a hostile page planted.
COOKIE_STRIP_PASSES = 8

_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
_DURATION_RE = re.compile(r"^[0-9]{1,6}(ms|s|m|h|d)?$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
DEFAULT_IDENTITY_HEADERS = ("X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups")
_WORKERS_RE = re.compile(r"^(auto|[1-9][0-9]{0,2})$")
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")


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

    def __post_init__(self) -> None:
        if not isinstance(self.project_key, str) or not PROJECT_KEY_RE.match(self.project_key):
            raise UsageError(
                f"gateway: {self.project_key!r} is not a project key "
                "(letters, digits, '_' and '-', starting with a letter or digit, at most 63 characters)"
            )
        if not isinstance(self.studio_id, str) or not SLUG_RE.match(self.studio_id):
            raise UsageError(
                f"gateway: {self.studio_id!r} is not a studio id "
                "(lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters)"
            )
        if self.session_secret is not None and not (
            isinstance(self.session_secret, str) and _SECRET_RE.match(self.session_secret)
        ):
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

    @property
    def prefix(self) -> str:
        """``/code-studios/<project>/<studio>/`` (with the trailing slash)."""
        return f"{URL_ROOT}/{self.project_key}/{self.studio_id}/"

    @property
    def cookie_value(self) -> str:
        """What the owner's cookie carries (derived, so the stored secret never leaves the engine)."""
        return _derive(self, "cookie")

    @property
    def link_key(self) -> str:
        """Key signing access URLs (nginx secure_link)."""
        return _derive(self, "link")

    @property
    def guard_secret(self) -> str:
        """What the gateway sends in :data:`GUARD_HEADER` on every request to the studio's pod."""
        return _derive(self, "guard")


def _derive(studio: StudioRoutes, purpose: str) -> str:
    if studio.session_secret is None:
        raise UsageError(f"studio {studio.studio_id} has no session secret (render preview)")
    msg = f"codestudio-{purpose}:{studio.project_key}/{studio.studio_id}".encode()
    return hmac.digest(studio.session_secret.encode(), msg, "sha256").hex()


def new_session_secret() -> str:
    """A fresh random 256-bit session secret (rotate it on every studio start)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class GatewaySettings:
    """How the gateway nginx listens and behaves; every field is validated."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    public_url: str | None = None  # base URL printed to users (default http://host:port)
    # `Secure` on the session cookie; None: on when public_url is https:// (a TLS proxy fronts the gateway).
    cookie_secure: bool | None = None
    worker_processes: str = "auto"
    worker_connections: int = 1024
    # Who nginx's workers run as when the engine runs as root (None: the dedicated
    # WORKER_USER if it exists, else `nobody`); ignored otherwise. Never root.
    worker_user: str | None = None
    idle_timeout: str = "1d"  # proxy read/send timeout: IDE websockets stay idle for long
    shutdown_timeout: str = "60s"  # how long old workers keep open connections after a reload
    # Old workers allowed to linger at once (each holds the config it started with); after a
    # reload the oldest beyond this are ended, closing their connections (IDEs reconnect).
    max_old_workers: int = 8
    client_max_body_size: str = "0"  # 0 = unlimited (notebook uploads)
    # The UI/API origin (the server's room): a second server block on host:ui_port that passes
    # `/` and `/api/v1` to `codestudio server` at server_upstream and serves no studio content.
    ui_port: int | None = None
    server_upstream: str = "127.0.0.1:8801"
    # Headers the UI block blanks on every request: the names `codestudio server` trusts from
    # an SSO proxy (its user_header/email_header/groups_header, read from <data dir>/server.json
    # by the Gateway). The defaults are always blanked too.
    identity_headers: tuple[str, ...] = DEFAULT_IDENTITY_HEADERS
    # The webapp origin's host name (CODESTUDIO_GATEWAY_WEBAPP_HOST): a server block of its
    # own on the same address serves webapps, and the content host redirects them there.
    # None: webapps are served by the content server, next to studios (docs/security.md).
    webapp_host: str | None = None

    def __post_init__(self) -> None:
        headers = tuple(self.identity_headers)
        for name in headers:
            if not isinstance(name, str) or not _HEADER_NAME_RE.match(name):
                raise UsageError(f"gateway: identity header {name!r} (server user_header/email_header/groups_header) "
                                 "is not a header name (letters, digits and '-', at most 64)")
        object.__setattr__(self, "identity_headers", tuple(dict.fromkeys((*DEFAULT_IDENTITY_HEADERS, *headers))))
        if self.ui_port is not None and (type(self.ui_port) is not int or not 1 <= self.ui_port <= 65535
                                         or self.ui_port == self.port):
            raise UsageError(f"gateway: ui_port (CODESTUDIO_GATEWAY_UI_PORT) must be 1-65535 and not the content port, "
                             f"got {self.ui_port!r}")
        up_host, _, up_port = self.server_upstream.rpartition(":")
        if not up_port.isdigit() or not 1 <= int(up_port) <= 65535:
            raise UsageError(f"gateway: server_upstream (CODESTUDIO_GATEWAY_SERVER) {self.server_upstream!r} must be IP:PORT")
        _ip_literal(up_host.strip("[]"), "server_upstream (CODESTUDIO_GATEWAY_SERVER)")
        object.__setattr__(self, "host", _ip_literal(self.host, "host (CODESTUDIO_GATEWAY_HOST)"))
        if type(self.port) is not int or not 1 <= self.port <= 65535:
            raise UsageError(f"gateway: port (CODESTUDIO_GATEWAY_PORT) must be 1-65535, got {self.port!r}")
        if self.public_url is not None and not re.match(r"^https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~/-]*)?$", self.public_url):
            raise UsageError(f"gateway: public_url {self.public_url!r} must be http(s)://host[:port][/path]")
        if not _WORKERS_RE.match(str(self.worker_processes)):
            raise UsageError(f"gateway: worker_processes must be 'auto' or a number, got {self.worker_processes!r}")
        if type(self.worker_connections) is not int or not 16 <= self.worker_connections <= 65535:
            raise UsageError("gateway: worker_connections must be an integer 16-65535")
        if type(self.max_old_workers) is not int or not 0 <= self.max_old_workers <= 1024:
            raise UsageError("gateway: max_old_workers must be an integer 0-1024")
        if self.worker_user is not None and not _USER_RE.match(self.worker_user):
            raise UsageError(
                f"gateway: worker_user (CODESTUDIO_GATEWAY_USER) {self.worker_user!r} is not a user name"
            )
        if self.worker_user == "root":
            raise UsageError("gateway: worker_user (CODESTUDIO_GATEWAY_USER) must not be root")
        for name in ("idle_timeout", "shutdown_timeout"):
            if not _DURATION_RE.match(getattr(self, name)):
                raise UsageError(f"gateway: {name} must be an nginx duration like 60s or 1d")
        if not re.match(r"^[0-9]{1,6}[kmg]?$", self.client_max_body_size):
            raise UsageError("gateway: client_max_body_size must be like 0, 100m or 2g")
        if self.webapp_host is not None:
            if not isinstance(self.webapp_host, str) or not _HOSTNAME_RE.match(self.webapp_host):
                raise UsageError(f"gateway: webapp_host (CODESTUDIO_GATEWAY_WEBAPP_HOST) {self.webapp_host!r} must be a "
                                 "host name of lowercase letters, digits, '-' and '.' (e.g. webapps.localhost)")
            content_host = (urlsplit(self.base_url).hostname or "").lower()
            if self.webapp_host == content_host:
                raise UsageError(f"gateway: webapp_host (CODESTUDIO_GATEWAY_WEBAPP_HOST) {self.webapp_host} is the content "
                                 "host's name: webapps need a host name of their own (e.g. webapps.localhost)")

    @property
    def secure_cookie(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return bool(self.public_url and self.public_url.startswith("https://"))

    @property
    def listen(self) -> str:
        return _host_port(self.host, self.port)

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host == "0.0.0.0" else "[::1]" if self.host == "::" else self.host
        return f"http://{_host_port(host, self.port)}"

    @property
    def webapp_base_url(self) -> str:
        """Where webapps are served: the webapp host (scheme, port and path of the base URL),
        or the content base URL when no webapp host is set."""
        if not self.webapp_host:
            return self.base_url
        parts = urlsplit(self.base_url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{self.webapp_host}{port}{parts.path}".rstrip("/")

    @classmethod
    def from_env(cls, base: GatewaySettings | None = None) -> GatewaySettings:
        """``base`` (or defaults) with CODESTUDIO_GATEWAY_HOST/_PORT/_URL/_USER applied on top."""
        import dataclasses

        values = dataclasses.asdict(base) if base else {}
        if os.environ.get("CODESTUDIO_GATEWAY_HOST"):
            values["host"] = os.environ["CODESTUDIO_GATEWAY_HOST"]
        if os.environ.get("CODESTUDIO_GATEWAY_PORT"):
            raw = os.environ["CODESTUDIO_GATEWAY_PORT"]
            if not raw.isdigit():
                raise UsageError(f"CODESTUDIO_GATEWAY_PORT must be a port number, got {raw!r}")
            values["port"] = int(raw)
        if os.environ.get("CODESTUDIO_GATEWAY_URL"):
            values["public_url"] = os.environ["CODESTUDIO_GATEWAY_URL"]
        if os.environ.get("CODESTUDIO_GATEWAY_USER"):
            values["worker_user"] = os.environ["CODESTUDIO_GATEWAY_USER"]
        if os.environ.get("CODESTUDIO_GATEWAY_UI_PORT"):
            raw = os.environ["CODESTUDIO_GATEWAY_UI_PORT"]
            if not raw.isdigit():
                raise UsageError(f"CODESTUDIO_GATEWAY_UI_PORT must be a port number, got {raw!r}")
            values["ui_port"] = int(raw)
        if os.environ.get("CODESTUDIO_GATEWAY_SERVER"):
            values["server_upstream"] = os.environ["CODESTUDIO_GATEWAY_SERVER"]
        if os.environ.get("CODESTUDIO_GATEWAY_WEBAPP_HOST"):
            values["webapp_host"] = os.environ["CODESTUDIO_GATEWAY_WEBAPP_HOST"]
        return cls(**values)


@dataclass(frozen=True)
class Workers:
    """Who nginx's workers run as, and the one folder they may use (engine running as root).

    ``dir`` holds ``html/`` (pages, readable by ``group``) and ``temp/`` (owned by
    ``user``); it lies outside the data dir, which the workers cannot enter.
    """

    user: str
    group: str
    dir: str  # absolute path

    def __post_init__(self) -> None:
        for name in ("user", "group"):
            if not _USER_RE.match(getattr(self, name)) or getattr(self, name) == "root":
                raise UsageError(f"gateway: worker {name} {getattr(self, name)!r} is not an unprivileged name")
        if not self.dir.startswith("/") or not _SAFE_RE.match(self.dir) or "/../" in self.dir + "/":
            raise UsageError(f"gateway: worker dir {self.dir!r} must be an absolute path of plain characters")


# --- rendering ---------------------------------------------------------------


@cache
def _env():
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


# Ports per upstream pool. A pool is one `upstream` block with a keep-alive cache; nginx
# finds a pool by name with a linear search and a server inside it by walking its list,
# so pools of ~sqrt(ports) keep both short (16 pools for 2,000 ports, 79 for 20,000).
POOL_SIZE = 256


@cache
def _pick_keys(n: int) -> tuple[str, ...]:
    """For a pool of ``n`` servers, the ``hash`` key that selects each one.

    nginx's ``hash $key`` (not consistent) picks server number
    ``((crc32(key) >> 16) & 0x7fff) % n`` when it is up; with ``max_fails=0``
    every server always is, so the table can name the exact server of a port
    by its key. Keys are the first decimal strings hitting each residue.
    """
    keys: list[str | None] = [None] * n
    missing, candidate = n, 0
    while missing:
        text = str(candidate)
        slot = ((zlib.crc32(text.encode()) >> 16) & 0x7FFF) % n
        if keys[slot] is None:
            keys[slot] = text
            missing -= 1
        candidate += 1
    return tuple(keys)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RouteTable:
    """The route table's lines: map rows per studio and per port, and the upstream pools."""

    studio_rows: list[str]
    port_rows: list[str]
    pools: list[str]  # the server lines of each pool
    webapps: object = None  # codestudio.gateway.webapps.WebappTable: the webapps' own rows

    @property
    def studio_text(self) -> str:
        return "\n".join(self.studio_rows)

    @property
    def port_text(self) -> str:
        return "\n".join(self.port_rows)


def _table(studios: Sequence[StudioRoutes], webapps: Sequence = ()) -> RouteTable:
    """The route table of ``studios`` (and ``webapps``), as config lines.

    A studio row is ``"<prefix> <l|p> <cookie value> <link key> <guard secret> <landing>"``
    (``p``, a render preview, carries no secret and lets nobody in); a port row is
    ``"<s|f> <pool> <pick key> <upstream address>"`` (``s``: proxied_subpath ``/``,
    ``f``: ``$request_uri``). Built here rather than by a template loop: with 10,000
    studios a per-row template costs more than nginx takes to parse the result. Every
    value goes through :func:`ngx_quote`, every key through :func:`_route_key`, every
    address is an IP literal and an int. Webapp replicas' ports take places in the same
    pools (:mod:`codestudio.gateway.webapps` writes their rows).
    """
    folded: dict[str, int] = {}
    for s in studios:
        folded[s.prefix.lower()] = folded.get(s.prefix.lower(), 0) + 1
    n_ports = sum(len(s.ports) for s in studios) + sum(len(r.ports) for w in webapps for r in w.replicas)
    studio_rows: list[str] = []
    port_rows: list[str] = []
    pools: list[list[str]] = []
    index = 0

    def place(address: str) -> tuple[str, str]:
        """A place in a pool for ``address``: (pool name, the pick key selecting it)."""
        nonlocal index
        pool, slot = divmod(index, POOL_SIZE)
        if slot == 0:
            pools.append([])
        size = min(POOL_SIZE, n_ports - pool * POOL_SIZE)
        pools[-1].append(f"        server {ngx_safe(address)} max_fails=0;")
        index += 1
        return f"cs_pool_{pool}", _pick_keys(size)[slot]

    for s in studios:
        prefix = s.prefix
        colliding = folded[prefix.lower()] > 1
        if s.session_secret is None:
            row = f"{prefix} p - - - {landing_digest(s)}"
        else:
            row = f"{prefix} l {s.cookie_value} {s.link_key} {s.guard_secret} {landing_digest(s)}"
        studio_rows.append(f"        {_route_key(prefix, colliding)} {ngx_quote(row)};")
        for r in sorted(s.ports, key=lambda r: r.port):
            address = _host_port(s.upstream_host, r.upstream_port)
            pool, pick = place(address)
            mode = "s" if r.proxied_subpath == "/" else "f"
            row = f"{mode} {pool} {pick} {address}"
            port_rows.append(f"        {_route_key(f'{prefix}{r.port}/', colliding)} {ngx_quote(row)};")
    table = webapp_table(webapps, place)
    return RouteTable(studio_rows, port_rows + table.port_rows, ["\n".join(p) for p in pools], table)


def render_studio_locations(studio: StudioRoutes, settings: GatewaySettings | None = None) -> str:
    """The route table rows serving one studio (what ``codestudio render`` writes).

    Studios have no locations of their own: the gateway's generic locations look
    these rows up. With ``session_secret=None`` (a render preview) the studio row
    is marked ``p`` and every request under its prefix is refused.
    """
    return _env().get_template("route_table.conf.j2").render(table=_table([studio]))


def config_generation(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_prefixes(studios: Sequence[StudioRoutes]) -> None:
    seen: set[str] = set()
    for s in studios:
        if s.prefix in seen:
            raise UsageError(f"gateway: two studios share the URL prefix {s.prefix}")
        seen.add(s.prefix)


def render_gateway_config(
    studios: Sequence[StudioRoutes], settings: GatewaySettings, workers: Workers | None = None,
    *, webapps: Sequence = (),
) -> str:
    """The whole ``nginx.conf``, route table included: run with ``nginx -p <prefix>``.

    One file, so the routes and the locations that read them are replaced (and
    rolled back) together by one rename. Without ``workers`` every path is
    prefix-relative and no ``user`` is set (nginx started by an ordinary user).
    With ``workers`` (nginx started as root) the workers switch to that user and
    group, and the pages and temp paths are absolute paths under ``workers.dir``;
    pid and logs stay prefix-relative (the master opens them as root).
    """
    studios = sorted(studios, key=lambda s: s.prefix)
    _check_prefixes(studios)
    webapps = sorted(webapps, key=lambda w: w.prefix)
    check_webapp_prefixes(webapps)
    body = _env().get_template("nginx.conf.j2").render(
        settings=settings,
        workers=workers,
        html_root=ngx_quote(f"{workers.dir}/html") if workers else "html",
        temp_root=f"{ngx_safe(workers.dir)}/temp" if workers else "temp",
        listen=settings.listen,
        table=_table(studios, webapps),
        cookie_secure=settings.secure_cookie,
        cookie_passes=COOKIE_STRIP_PASSES,
        stripped_cookies="|".join(ngx_safe(n) for n in (COOKIE_NAME, *UI_COOKIE_NAMES, *WEBAPP_COOKIE_NAMES)),
        generation="@@GENERATION@@",
        webapp_host=ngx_safe(settings.webapp_host) if settings.webapp_host else None,
        webapp_origin=ngx_safe(settings.webapp_base_url) if settings.webapp_host else None,
        content_origin=ngx_safe(_origin(settings.base_url)),
        ui={"listen": _host_port(settings.host, settings.ui_port), "upstream": ngx_safe(settings.server_upstream),
            "identity_headers": [ngx_safe(h) for h in settings.identity_headers]}
        if settings.ui_port else None,
    )
    # The health endpoint reports which config is live, so apply() can tell when a reload took.
    return body.replace("@@GENERATION@@", config_generation(body))


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, as a browser sends it in ``Origin`` (lowercase)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def routed_studios(text: str) -> int | None:
    """How many studios a rendered config routes (from its route table header)."""
    found = re.search(r"^    # route table: ([0-9]+) studios", text, flags=re.M)
    return int(found.group(1)) if found else None


# --- static pages --------------------------------------------------------------


def _landing_inputs(studio: StudioRoutes) -> dict:
    return {
        "project": studio.project_key,
        "studio": studio.studio_id,
        "owner": studio.owner,
        "tabs": [
            {"label": r.label, "href": f"{r.port}/", "port": r.port}
            for r in sorted(studio.ports, key=lambda r: r.port)
            if r.listed
        ],
        "actions": [{"name": n, "label": lbl} for n, lbl in studio.actions],
    }


def _landing_html(studio: StudioRoutes) -> str:
    return _env().get_template("landing.html.j2").render(**_landing_inputs(studio))


@cache
def _landing_template_digest() -> bytes:
    source, _, _ = _env().loader.get_source(_env(), "landing.html.j2")
    return hashlib.sha256(source.encode()).digest()


def landing_digest(studio: StudioRoutes) -> str:
    """Names the studio's landing page: a digest of the page's inputs and template, so a
    rejected config never changes what the running one serves, and an apply renders
    only pages it has not written yet."""
    # repr() of a tuple of str, int and bool is unambiguous, and cheaper than JSON.
    inputs = (
        studio.project_key,
        studio.studio_id,
        studio.owner,
        tuple((r.port, r.label) for r in sorted(studio.ports, key=lambda r: r.port) if r.listed),
        studio.actions,
    )
    return hashlib.sha256(_landing_template_digest() + repr(inputs).encode()).hexdigest()[:16]


def landing_file(studio: StudioRoutes) -> str:
    """Path of the studio's landing page, relative to the html dir's root."""
    return f"/landing/{landing_digest(studio)}.html"


def landing_pages(studios: Sequence[StudioRoutes]) -> dict[str, str]:
    """``{path relative to the html dir: HTML}`` for every studio's landing page."""
    return {landing_file(s).lstrip("/"): _landing_html(s) for s in studios}


ERROR_PAGES = {
    401: ("Sign-in needed", "This studio is only open to its owner. Open the link printed by "
          "<code>codestudio studio url STUDIO</code> to get in."),
    403: ("Link invalid or expired", "This access link is not valid any more. Ask for a new one with "
          "<code>codestudio studio url STUDIO</code>."),
    404: ("Not found", "Nothing is served here. Is the studio running? "
          "<code>codestudio studio status STUDIO</code> lists its tabs."),
    502: ("Studio not answering", "The studio does not answer on this port: it may still be starting, "
          "or the server behind this tab stopped. <code>codestudio studio logs STUDIO</code> shows why."),
    504: ("Studio timed out", "The studio did not answer in time."),
}


def error_pages() -> dict[str, str]:
    """``{path relative to the html dir: HTML}`` for the gateway's own error responses."""
    template = _env().get_template("error.html.j2")
    from markupsafe import Markup

    pages = {
        f"_codestudio/errors/{code}.html": template.render(code=code, title=title, text=Markup(text))
        for code, (title, text) in ERROR_PAGES.items()
    }
    pages.update({
        f"_codestudio/errors/webapp-{code}.html": template.render(code=code, title=title, text=Markup(text))
        for code, (title, text) in WEBAPP_ERROR_PAGES.items()
    })
    return pages


# --- access URLs -----------------------------------------------------------------


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
