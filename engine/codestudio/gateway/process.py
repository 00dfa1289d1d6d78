"""The gateway nginx process: its prefix dir, start/stop/status, safe config apply.

Layout under ``<data dir>/gateway/`` (mode 0700)::

    nginx.conf        live config (0600: holds cookie values and link keys)
    settings.json     the GatewaySettings nginx last started/reloaded with successfully
    nginx.pid         master pid (written by nginx)
    logs/             access.log (no query strings, no cookies), error.log
    temp/             nginx temp paths        } only when the engine is not root;
    html/             landing and error pages } as root, see below
    .lock             serialises concurrent CLI calls

Started as root, nginx's master (root) reads the config and opens the logs
and the pid file here, but its workers run as an unprivileged user
(:func:`worker_identity`) that cannot enter the data dir. What they need lives
in a per-data-dir folder outside it, ``WORKER_BASE/<digest of the prefix>/``::

    (WORKER_BASE: root 0711)
    <digest>/         root:<worker group> 0750
      html/           root:<worker group> 0750, pages 0640
      temp/           root:<worker group> 0750
        client_body/  <worker user> 0700 (and proxy/, fastcgi/, uwsgi/, scgi/)

A new config is only ever written over the live one after ``nginx -t``
accepted it; a failed check raises :class:`RuntimeFailure` carrying nginx's
message and leaves the running gateway untouched.

This module holds :class:`Gateway` and its process control (start, reload,
stop, status, old workers); the config apply it inherits is in
:mod:`~codestudio.gateway.apply`, the worker user and private files in
:mod:`~codestudio.gateway.workers`, what ``/proc`` says about nginx in
:mod:`~codestudio.gateway.procfs`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from codestudio.errors import RuntimeFailure
from codestudio.gateway.apply import ConfigApply
from codestudio.gateway.config import HEALTH_PATH, GatewaySettings, StudioRoutes, Workers, routed_studios
from codestudio.gateway.procfs import accepting, children, file_size, is_nginx_master, read_from, shutting_down, start_time, tail
from codestudio.gateway.webapps import WebappRoutes
from codestudio.gateway.workers import TEMP_DIRS, WORKER_BASE, ensure_dir, worker_identity, write_private
from codestudio.locks import file_lock

StudioSource = Callable[[], Iterable[StudioRoutes]]
#: Returns the routes of every webapp to serve (``codestudio.webapps`` provides it).
WebappSource = Callable[[], Iterable[WebappRoutes]]


def find_nginx() -> str:
    """The nginx binary: ``$CODESTUDIO_NGINX``, then PATH, then Debian's /usr/sbin/nginx."""
    for candidate in (os.environ.get("CODESTUDIO_NGINX"), shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeFailure("nginx not found: install the Debian package 'nginx' or set CODESTUDIO_NGINX")


def _no_studios() -> list[StudioRoutes]:
    return []


def _no_webapps() -> list[WebappRoutes]:
    return []


@dataclass(frozen=True)
class GatewayStatus:
    running: bool
    pid: int | None
    url: str
    listen: str
    prefix: str
    config: str | None  # generation (digest) of the live config, if running
    studios: int | None  # studios in the live config file

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class Gateway(ConfigApply):
    """One nginx instance with its prefix under ``data_dir/gateway``.

    ``studios`` returns the routes of every running studio and ``webapps`` those of
    every webapp; :meth:`start` and :meth:`apply` (without an argument) call them
    to build the config.
    ``settings`` defaults to the saved settings with CODESTUDIO_GATEWAY_* on top.
    """

    def __init__(
        self,
        data_dir: Path,
        studios: StudioSource | None = None,
        settings: GatewaySettings | None = None,
        *,
        webapps: WebappSource | None = None,
        ready_timeout: float = 10.0,
    ):
        self.prefix = Path(data_dir) / "gateway"
        self._studios = studios or _no_studios
        self._webapps = webapps or _no_webapps
        self._explicit_settings = settings
        self.ready_timeout = ready_timeout

    # --- paths -------------------------------------------------------------------

    @property
    def conf_path(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def error_log(self) -> Path:
        return self.prefix / "logs" / "error.log"

    @property
    def access_log(self) -> Path:
        return self.prefix / "logs" / "access.log"

    @property
    def settings(self) -> GatewaySettings:
        if self._explicit_settings is not None:
            return self._explicit_settings
        saved = None
        path = self.prefix / "settings.json"
        if path.exists():
            try:
                saved = GatewaySettings(**json.loads(path.read_text()))
            except (ValueError, TypeError):
                saved = None  # unreadable: fall back to defaults rather than refuse to run
        settings = GatewaySettings.from_env(saved)
        return dataclasses.replace(settings, identity_headers=(*settings.identity_headers,
                                                               *_server_identity_headers(self.prefix.parent)))

    @property
    def as_root(self) -> bool:
        return os.geteuid() == 0

    @property
    def worker_dir(self) -> Path:
        """The folder holding ``html/`` and ``temp/``: the prefix itself unless running as root."""
        if not self.as_root:
            return self.prefix
        digest = hashlib.sha256(str(self.prefix.resolve()).encode()).hexdigest()[:16]
        return WORKER_BASE / digest

    @property
    def html_dir(self) -> Path:
        return self.worker_dir / "html"

    def _workers(self, settings: GatewaySettings) -> Workers | None:
        if not self.as_root:
            return None
        who = worker_identity(settings)
        return Workers(user=who.user, group=who.group, dir=str(self.worker_dir))

    def _prepare_dirs(self, settings: GatewaySettings | None = None) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.prefix, 0o700)
        (self.prefix / "logs").mkdir(exist_ok=True, mode=0o700)
        if not self.as_root:
            for sub in ("html", "temp", *(f"temp/{t}" for t in TEMP_DIRS)):
                (self.prefix / sub).mkdir(exist_ok=True, mode=0o700)
            return
        if settings is None:
            return  # the lock only needs the prefix
        who = worker_identity(settings)
        ensure_dir(WORKER_BASE, 0, 0, 0o711, parents=True)
        tree = self.worker_dir
        ensure_dir(tree, 0, who.gid, 0o750)
        ensure_dir(tree / "html", 0, who.gid, 0o750)
        ensure_dir(tree / "temp", 0, who.gid, 0o750)
        for sub in TEMP_DIRS:
            ensure_dir(tree / "temp" / sub, who.uid, who.gid, 0o700)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._prepare_dirs()
        with file_lock(self.prefix / ".lock"):
            yield

    # --- nginx invocations ---------------------------------------------------------

    def _nginx(self, *args: str, conf: Path | None = None) -> subprocess.CompletedProcess:
        cmd = [
            find_nginx(),
            "-p", f"{self.prefix}/",
            "-c", str(conf or self.conf_path),
            "-e", str(self.error_log),
            *args,
        ]
        # stderr goes to a file, not a pipe: the daemonised master inherits it and a
        # pipe would keep us waiting for EOF.
        err_path = self.prefix / "logs" / "nginx-cli.err"
        with open(err_path, "w+") as err:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, check=False)
            err.seek(0)
            proc.stderr = err.read()
        return proc

    # --- process state ---------------------------------------------------------------

    def pid(self) -> int | None:
        """The master's pid if our nginx is running, else None."""
        try:
            pid = int((self.prefix / "nginx.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if is_nginx_master(pid) else None

    def status(self) -> GatewayStatus:
        settings = self.settings
        pid = self.pid()
        generation = self._live_generation(settings) if pid else None
        studios = routed_studios(self.conf_path.read_text()) if self.conf_path.exists() else None
        return GatewayStatus(
            running=pid is not None,
            pid=pid,
            url=settings.base_url,
            listen=settings.listen,
            prefix=str(self.prefix),
            config=generation,
            studios=studios,
        )

    def _live_generation(self, settings: GatewaySettings) -> str | None:
        import http.client

        host = "127.0.0.1" if settings.host == "0.0.0.0" else "::1" if settings.host == "::" else settings.host
        conn = http.client.HTTPConnection(host, settings.port, timeout=2)
        try:
            conn.request("GET", HEALTH_PATH)
            return json.loads(conn.getresponse().read()).get("config")
        except (OSError, ValueError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    def _wait_for_generation(self, settings: GatewaySettings, generation: str) -> bool:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._live_generation(settings) == generation:
                return True
            time.sleep(0.003)
        return False

    # --- public operations ---------------------------------------------------------

    def start(self) -> GatewayStatus:
        """Start nginx (or re-apply the current studios if it already runs)."""
        self.apply()
        return self.status()

    def _start_locked(self, settings: GatewaySettings, generation: str, previous: str | None) -> None:
        proc = self._nginx()
        if proc.returncode != 0:
            # Nothing runs: put the last config back so the files describe the last
            # gateway that did run.
            if previous is not None:
                write_private(self.conf_path, previous, replace=True)
            else:
                self.conf_path.unlink(missing_ok=True)
            raise RuntimeFailure(
                f"the gateway did not start on {settings.listen}:\n{proc.stderr.strip()}\n"
                "(set CODESTUDIO_GATEWAY_PORT to use another port)"
            )
        if not self._wait_for_generation(settings, generation):
            raise RuntimeFailure(
                f"the gateway started but does not answer on {settings.listen}; see {self.error_log}:\n"
                + tail(self.error_log)
            )

    def _reload_locked(self, pid: int, settings: GatewaySettings, generation: str, previous: str | None) -> None:
        old_workers = children(pid)
        log_start = file_size(self.error_log)
        os.kill(pid, signal.SIGHUP)
        # nginx starts the new workers, lets both generations accept for 100 ms, then
        # tells the old ones to stop. Done when no old worker accepts any more and the
        # health endpoint reports the new generation: every request after apply() then
        # sees the new config.
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if not any(accepting(w) for w in old_workers):
                if self._live_generation(settings) == generation:
                    self._bound_old_workers(pid, settings.max_old_workers)
                    return
            elif "[emerg]" in read_from(self.error_log, log_start):
                break  # the master refused the new config and keeps the old one
            time.sleep(0.003)
        # nginx keeps the old config when a reload fails (e.g. the new port is taken);
        # put the file back so disk and process agree.
        if previous is not None:
            write_private(self.conf_path, previous, replace=True)
        raise RuntimeFailure(
            f"nginx did not take the new gateway config; the previous one keeps running. See {self.error_log}:\n"
            + tail(self.error_log)
        )

    def end_old_workers(self) -> int:
        """End every worker still shutting down after a reload (their open connections close):
        after an access renewal, a websocket opened with a revoked cookie must not outlive it.
        Returns how many were told to stop."""
        with self._locked():
            pid = self.pid()
            if pid is None:
                return 0
            return self._bound_old_workers(pid, 0)

    def _bound_old_workers(self, master: int, limit: int) -> int:
        """End the oldest shutting-down workers beyond ``limit``: each keeps the config it
        started with for as long as a connection (an IDE websocket) holds it, up to
        ``shutdown_timeout``, so a burst of reloads would otherwise pile them up."""
        old = sorted((start_time(w), w) for w in children(master) if shutting_down(w))
        ended = old[: max(0, len(old) - limit)]
        for _, worker in ended:
            try:
                os.kill(worker, signal.SIGTERM)  # a worker's fast shutdown: its connections close
            except ProcessLookupError:
                pass
        return len(ended)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop nginx (fast shutdown: open connections are closed). True if it was running.

        As root, the workers' folder goes too: the next start rewrites it.
        """
        with self._locked():
            pid = self.pid()
            if pid is None:
                self._remove_worker_dir()
                return False
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            delay = 0.002
            while is_nginx_master(pid):
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    break
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
            (self.prefix / "nginx.pid").unlink(missing_ok=True)
            self._remove_worker_dir()
            return True

    def _remove_worker_dir(self) -> None:
        if self.as_root and self.worker_dir.is_dir():
            shutil.rmtree(self.worker_dir, ignore_errors=True)


def _server_identity_headers(data_dir: Path) -> tuple[str, ...]:
    """The proxy headers ``codestudio server`` trusts (its settings), which the UI block must blank."""
    from codestudio.errors import CodestudioError
    from codestudio.server.settings import ServerSettings

    try:
        s = ServerSettings.load(data_dir)
    except CodestudioError:
        return ()  # the server refuses such settings too; the defaults are still blanked
    return (s.user_header, s.email_header, s.groups_header)
