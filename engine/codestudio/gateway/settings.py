"""How the gateway's nginx listens and behaves (:class:`GatewaySettings`) and who its workers run as (:class:`Workers`).

Every field is validated when the object is made: the values reach the nginx config.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from codestudio.errors import UsageError
from codestudio.gateway.common import _SAFE_RE, _host_port, _ip_literal

DEFAULT_PORT = 8800
DEFAULT_HOST = "127.0.0.1"

_DURATION_RE = re.compile(r"^[0-9]{1,6}(ms|s|m|h|d)?$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
DEFAULT_IDENTITY_HEADERS = ("X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups")
_WORKERS_RE = re.compile(r"^(auto|[1-9][0-9]{0,2})$")
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")


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
