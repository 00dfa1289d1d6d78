"""Gateway nginx configuration: the full ``nginx.conf`` with its route table.

Owns everything that turns "which studios run, on which loopback ports" into
the config text; its parts have their modules, whose public names are
importable from here too: the studio routes, their derived secrets and the
signed access URLs that ``codestudio studio url`` prints in
:mod:`~codestudio.gateway.studios`, the settings in
:mod:`~codestudio.gateway.settings`, the static landing and error pages in
:mod:`~codestudio.gateway.pages`, the webapps' routes in
:mod:`~codestudio.gateway.webapps`. Nothing here starts processes (see
:mod:`codestudio.gateway.process`).

Injection rule: every value that reaches the nginx config is either validated
(project key, studio id, ints, IP literals, hex secrets) or passed through
the ``ngx_quote``/``ngx_safe`` filters, which refuse anything they cannot
render safely. Free text (labels, owner, action names) never reaches the
config; it only appears HTML-escaped in the static landing pages.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit

from codestudio.errors import UsageError
from codestudio.gateway.common import (  # noqa: F401 (re-exported: the gateway's public names)
    _SAFE_RE,
    DEFAULT_TOKEN_TTL,
    EXPIRES_ARG,
    TOKEN_ARG,
    _host_port,
    _ip_literal,
    _check_unique_prefixes,
    _route_key,
    ngx_quote,
    ngx_safe,
    template_env,
)
from codestudio.gateway.pages import (  # noqa: F401 (re-exported)
    ERROR_PAGES,
    _landing_html,
    error_pages,
    landing_digest,
    landing_file,
    landing_pages,
)
from codestudio.gateway.settings import (  # noqa: F401 (re-exported)
    DEFAULT_HOST,
    DEFAULT_IDENTITY_HEADERS,
    DEFAULT_PORT,
    GatewaySettings,
    Workers,
)
from codestudio.gateway.studios import (  # noqa: F401 (re-exported)
    URL_ROOT,
    PortRoute,
    StudioRoutes,
    access_token,
    make_access_url,
    new_session_secret,
)
from codestudio.gateway.webapps import WEBAPP_COOKIE_NAMES, check_webapp_prefixes, webapp_table

HEALTH_PATH = "/_codestudio/health"
COOKIE_NAME = "cs_session"
#: The web UI's cookies (``codestudio server``: ``cs_ui_session``). Browsers scope cookies by
#: host name, not port, so a UI on another port of the content host would have them sent
#: here; the content server strips them like its own before any request reaches a studio.
UI_COOKIE_NAMES = ("cs_ui_session",)
#: Request header carrying a studio's guard secret from the gateway to the guard in its pod
#: (the runner's ``GUARD_HEADER``; the guard refuses connections without it and strips it).
GUARD_HEADER = "X-Codestudio-Guard"
# `cs_session` cookies stripped from one request before it reaches a studio; a request
# carrying more is refused (400). A browser sends one, or a few a hostile page planted.
COOKIE_STRIP_PASSES = 8


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
    return template_env().get_template("route_table.conf.j2").render(table=_table([studio]))


def config_generation(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_prefixes(studios: Sequence[StudioRoutes]) -> None:
    _check_unique_prefixes(studios, "studios")


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
    body = template_env().get_template("nginx.conf.j2").render(
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
