"""The host's Python package index settings, lent to the RUN steps of a build.

Read as pip reads them, so a host already set up for pip needs nothing
more: pip's configuration files (global, then user, then
``PIP_CONFIG_FILE``; ``[global]`` then ``[install]``), then the
environment (``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``,
``PIP_FIND_LINKS``, ``PIP_TRUSTED_HOST``, ``PIP_NO_INDEX``). They become
``pip.conf`` and ``uv.toml`` in a folder the builder mounts read-only at
:data:`codestudio.buildenv.SETTINGS_DIR` for the duration of the build
(the files may hold credentials: mode 0600, deleted afterwards), never in
the image and not part of the content hash (like proxies).

Local indexes and find-links folders (paths or ``file://`` URLs) are
mounted read-only at the same path, so the settings mean inside the build
what they mean on the host; a local index is mounted with its parent
folder, where the usual ``simple/`` + ``files/`` layout keeps the wheels.
"""

from __future__ import annotations

import configparser
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from codestudio.errors import UsageError

_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


@dataclass
class IndexSettings:
    """pip's index settings (each value as the host wrote it) and where each came from."""

    index_url: str | None = None
    extra_index_urls: list[str] = field(default_factory=list)
    find_links: list[str] = field(default_factory=list)
    trusted_hosts: list[str] = field(default_factory=list)
    no_index: bool = False
    sources: dict[str, str] = field(default_factory=dict)

    def urls(self) -> list[str]:
        """Every index and find-links location, shown in messages with credentials masked."""
        shown = [mask(u) for u in ([self.index_url] if self.index_url else [])]
        shown += [mask(u) for u in self.extra_index_urls]
        shown += [f"find-links {mask(u)}" for u in self.find_links]
        return shown


def mask(url: str) -> str:
    """``url`` with any user and password, and every query value (``?token=...``), replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable URL)"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        # Keys stay (they say what is set), values go: an index token often rides in the query.
        query = "&".join(f"{item.partition('=')[0]}=***" if "=" in item else "***" for item in query.split("&") if item)
    fragment = "***" if parts.fragment else ""
    if netloc == parts.netloc and query == parts.query and fragment == parts.fragment:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def pip_config_files() -> list[Path]:
    """pip's configuration files, lowest precedence first (pip's own order on Linux)."""
    if os.environ.get("PIP_CONFIG_FILE") == os.devnull:
        return []
    xdg_dirs = [d for d in os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":") if d]
    files = [Path(d) / "pip" / "pip.conf" for d in reversed(xdg_dirs)] + [Path("/etc/pip.conf")]
    home = Path(os.path.expanduser("~"))
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    files += [home / ".pip" / "pip.conf", config_home / "pip" / "pip.conf"]
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    return files


def host_settings(files: list[Path] | None = None, environ: dict[str, str] | None = None) -> IndexSettings:
    """The host's settings: pip's files, then its environment variables (later wins, as in pip)."""
    environ = dict(os.environ) if environ is None else environ
    settings = IndexSettings()
    for path in pip_config_files() if files is None else files:
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: not a valid pip configuration file: {exc}") from None
        for section in ("global", "install"):
            if not parser.has_section(section):
                continue
            where = f"{path} [{section}]"
            for key, value in parser.items(section):
                _set(settings, key.replace("_", "-"), value, f"{where} {key}")
    for name, value in environ.items():
        if name.startswith("PIP_") and value:
            _set(settings, name[4:].lower().replace("_", "-"), value, name)
    _check(settings)
    return settings


def _set(settings: IndexSettings, key: str, value: str, where: str) -> None:
    if key == "index-url":
        settings.index_url = value.strip()
        settings.sources["index_url"] = where
    elif key in ("extra-index-url", "find-links", "trusted-host"):
        attr = {"extra-index-url": "extra_index_urls", "find-links": "find_links", "trusted-host": "trusted_hosts"}[key]
        setattr(settings, attr, value.split())
        settings.sources[attr] = where
    elif key == "no-index":
        settings.no_index = value.strip().lower() in ("1", "true", "yes", "on")
        settings.sources["no_index"] = where


def _check(settings: IndexSettings) -> None:
    """Refuse what would break every build (exit 2), naming the setting and its source."""
    problems = []
    for attr in ("index_url", "extra_index_urls", "find_links"):
        values = getattr(settings, attr)
        for value in [values] if isinstance(values, str) else (values or []):
            why = _bad_location(value, local_ok=attr == "find_links")
            if why:
                problems.append(f"{settings.sources.get(attr, attr)}: {mask(value)!r} {why}")
    for host in settings.trusted_hosts:
        if not _HOST_RE.match(host):
            problems.append(f"{settings.sources.get('trusted_hosts')}: {host!r} is not a host name")
    if problems:
        raise UsageError("the host's Python package index settings are not usable in builds:\n  "
                         + "\n  ".join(problems))


def _bad_location(value: str, *, local_ok: bool) -> str | None:
    if any(c in value for c in "\n\r\t\"'\\") or not value:
        return "contains a quote, backslash or control character"
    if local_ok and value.startswith("/"):
        return None
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if parts.scheme not in ("http", "https", "file"):
        return "is not an http://, https:// or file:// URL"
    if parts.scheme != "file" and not parts.hostname:
        return "has no host"
    return None


def local_paths(settings: IndexSettings) -> list[Path]:
    """Host folders the settings point at, to mount read-only at the same path (existing ones only)."""
    paths: list[Path] = []
    for value in ([settings.index_url] if settings.index_url else []) + settings.extra_index_urls:
        if value.startswith("file://"):
            # A local index: its parent holds the files its pages link to (../../files/...).
            paths.append(Path(urlsplit(value).path).parent)
    for value in settings.find_links:
        if value.startswith("file://"):
            paths.append(Path(urlsplit(value).path))
        elif value.startswith("/"):
            paths.append(Path(value))
    out: list[Path] = []
    for path in paths:
        # ":" and "," cannot be written in a -v mount.
        if path.is_dir() and path != Path("/") and not set(str(path)) & {":", ","} and path not in out:
            out.append(path)
    return out


def pip_conf(settings: IndexSettings) -> str:
    lines = ["# Written by codestudio for one build; mounted read-only, never in the image.", "[global]"]
    if settings.index_url:
        lines.append(f"index-url = {settings.index_url}")
    if settings.extra_index_urls:
        lines.append("extra-index-url = " + " ".join(settings.extra_index_urls))
    if settings.find_links:
        lines.append("find-links = " + " ".join(settings.find_links))
    if settings.trusted_hosts:
        lines.append("trusted-host = " + " ".join(settings.trusted_hosts))
    if settings.no_index:
        lines.append("no-index = true")
    return "\n".join(lines) + "\n"


def uv_toml(settings: IndexSettings) -> str:
    """The same settings for uv; JSON strings are valid TOML basic strings for these values."""
    lines = [
        "# Written by codestudio for one build; mounted read-only, never in the image.",
        # pip considers every index and picks the best version; uv's default stops at
        # the first index that has the package. Same versions as pip: pip's rule.
        'index-strategy = "unsafe-best-match"',
    ]
    if settings.index_url:
        lines.append(f"index-url = {json.dumps(settings.index_url)}")
    if settings.extra_index_urls:
        lines.append(f"extra-index-url = {json.dumps(settings.extra_index_urls)}")
    if settings.find_links:
        lines.append(f"find-links = {json.dumps(settings.find_links)}")
    if settings.trusted_hosts:
        lines.append(f"allow-insecure-host = {json.dumps(settings.trusted_hosts)}")
    if settings.no_index:
        lines.append("no-index = true")
    return "\n".join(lines) + "\n"


def write_settings(folder: Path, settings: IndexSettings) -> None:
    """Write pip.conf, uv.toml and indexes.txt (masked, for messages) into ``folder`` (mode 0700/0600)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    shown = settings.urls() or []
    if not settings.index_url and not settings.no_index:
        shown.insert(0, "https://pypi.org/simple (the default)")
    for name, text in (("pip.conf", pip_conf(settings)), ("uv.toml", uv_toml(settings)),
                       ("indexes.txt", ", ".join(shown) + "\n")):
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    # The build runs as root inside a chroot: root reads 0600 files.
