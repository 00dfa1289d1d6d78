"""Server settings: listen address, UI origin, content origin, sign-in mode.

Stored in ``<data dir>/server.json`` by ``codestudio server`` (so
``codestudio login`` prints links to the right origin) and overridable by
``CODESTUDIO_SERVER_*`` environment variables and command-line options.
Every field is validated; the UI origin and the content origin must differ
(studio pages run code their authors wrote and must never run on the origin
that serves the UI and the API).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from codestudio.errors import UsageError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8801
MAX_UPLOAD = 1 << 20  # bytes of a template upload
_URL_RE = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~/-]*)?$")
_HOST_PATTERN_RE = re.compile(r"^\{studio\}\.[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_HEADER_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass(frozen=True)
class ServerSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    public_url: str | None = None  # the UI/API origin users open (default http://localhost:<port>)
    content_url: str | None = None  # where studio content is served (default: the gateway's base URL)
    # One host name per studio: "{studio}.studios.localhost:8800" (scheme from content_url).
    studio_host_pattern: str | None = None
    auth: str = "link"  # link | proxy
    trusted_proxies: tuple[str, ...] = ()  # addresses or networks whose X-Forwarded-* headers are believed
    user_header: str = "X-Forwarded-User"
    email_header: str = "X-Forwarded-Email"
    groups_header: str = "X-Forwarded-Groups"
    cookie_secure: bool | None = None  # None: on when public_url is https://
    max_upload: int = MAX_UPLOAD
    jobs: int = 4  # background jobs running at once
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise UsageError(f"server: host {self.host!r} must be an IP address (e.g. 127.0.0.1)") from None
        if type(self.port) is not int or not 1 <= self.port <= 65535:
            raise UsageError(f"server: port must be 1-65535, got {self.port!r}")
        for name in ("public_url", "content_url"):
            value = getattr(self, name)
            if value is not None and not _URL_RE.match(value):
                raise UsageError(f"server: {name} {value!r} must be http(s)://host[:port][/path]")
        if self.studio_host_pattern is not None and not _HOST_PATTERN_RE.match(self.studio_host_pattern):
            raise UsageError(
                f"server: studio_host_pattern {self.studio_host_pattern!r} must look like {{studio}}.studios.example.com[:port]"
            )
        if self.auth not in ("link", "proxy"):
            raise UsageError(f"server: auth must be 'link' or 'proxy', got {self.auth!r}")
        nets = []
        for p in self.trusted_proxies:
            try:
                nets.append(ipaddress.ip_network(p, strict=False))
            except ValueError:
                raise UsageError(f"server: trusted proxy {p!r} is not an IP address or network") from None
        if self.auth == "proxy" and not nets:
            raise UsageError("server: auth 'proxy' needs at least one trusted proxy address (--trusted-proxy)")
        for name in ("user_header", "email_header", "groups_header"):
            if not _HEADER_RE.match(getattr(self, name)):
                raise UsageError(f"server: {name} must be a header name")
        if type(self.max_upload) is not int or self.max_upload < 1024:
            raise UsageError("server: max_upload must be at least 1024 bytes")
        if type(self.jobs) is not int or not 1 <= self.jobs <= 64:
            raise UsageError("server: jobs must be 1-64")

    # ------------------------------------------------------------------

    @property
    def ui_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "localhost" if self.host in ("127.0.0.1", "0.0.0.0", "::1", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def ui_origin(self) -> str:
        return origin_of(self.ui_url)

    @property
    def secure_cookie(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.ui_url.startswith("https://")

    def content_base(self, gateway_base: str | None = None) -> str:
        if self.content_url:
            return self.content_url.rstrip("/")
        if gateway_base:
            return gateway_base.rstrip("/")
        from codestudio.gateway.config import GatewaySettings

        return GatewaySettings.from_env().base_url

    def studio_base(self, studio_id: str, gateway_base: str | None = None) -> str:
        """The content origin (and path base) a studio's links use."""
        base = self.content_base(gateway_base)
        if not self.studio_host_pattern:
            return base
        scheme = urlsplit(base).scheme or "http"
        return f"{scheme}://{self.studio_host_pattern.replace('{studio}', studio_id)}"

    def check_origins(self, gateway_base: str | None = None) -> None:
        content = origin_of(self.content_base(gateway_base))
        if content == self.ui_origin:
            raise UsageError(
                f"server: the UI origin {self.ui_origin} and the content origin {content} are the same; "
                "studio pages would run with the UI's privileges. Serve content from another host or port "
                "(--content-url, or the gateway's public URL)"
            )
        ui_host = urlsplit(self.ui_url).hostname
        content_host = urlsplit(content).hostname
        if ui_host and ui_host == content_host:
            raise UsageError(
                f"server: the UI ({self.ui_url}: public_url, --public-url) and the studio content "
                f"({content}: content_url, --content-url, or the gateway's public URL) share the host name "
                f"{ui_host}; browsers send cookies to every port of a host name, so the UI's session cookie "
                "would reach studio pages. Use another host name for one of them "
                "(e.g. http://localhost:8801 for the UI, http://127.0.0.1:8800 or http://content.localhost:8800 for content)"
            )
        from codestudio.gateway.config import GatewaySettings

        webapp_host = GatewaySettings.from_env().webapp_host
        if ui_host and webapp_host and webapp_host == ui_host.lower():
            raise UsageError(
                f"server: the UI ({self.ui_url}) and the webapp origin (CODESTUDIO_GATEWAY_WEBAPP_HOST={webapp_host}) "
                "share the host name; webapp pages would be sent the UI's session cookie. Use another host name "
                "for the webapps (e.g. webapps.localhost)"
            )

    def is_trusted_proxy(self, address: str | None) -> bool:
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(p, strict=False) for p in self.trusted_proxies)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("extra", None)
        d["trusted_proxies"] = list(self.trusted_proxies)
        return d

    # ------------------------------------------------------------------

    @classmethod
    def load(cls, data_dir: Path) -> ServerSettings:
        """Saved settings (or defaults) with ``CODESTUDIO_SERVER_*`` applied on top."""
        values: dict = {}
        path = data_dir / "server.json"
        if path.is_file():
            try:
                values = json.loads(path.read_text())
            except ValueError as exc:
                raise UsageError(f"{path}: not valid JSON: {exc}") from None
        env = os.environ
        for name, conv in (("host", str), ("port", int), ("public_url", str), ("content_url", str),
                           ("studio_host_pattern", str), ("auth", str)):
            raw = env.get(f"CODESTUDIO_SERVER_{name.upper()}")
            if raw:
                try:
                    values[name] = conv(raw)
                except ValueError:
                    raise UsageError(f"CODESTUDIO_SERVER_{name.upper()}={raw!r} is not valid") from None
        if env.get("CODESTUDIO_SERVER_TRUSTED_PROXIES"):
            values["trusted_proxies"] = [p.strip() for p in env["CODESTUDIO_SERVER_TRUSTED_PROXIES"].split(",") if p.strip()]
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict) -> ServerSettings:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = set(values) - known
        if unknown:
            raise UsageError(f"server settings: unknown key(s) {', '.join(sorted(unknown))}")
        values = dict(values)
        if "trusted_proxies" in values:
            values["trusted_proxies"] = tuple(values["trusted_proxies"])
        return cls(**values)

    def save(self, data_dir: Path) -> None:
        path = data_dir / "server.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
