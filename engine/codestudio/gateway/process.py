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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from codestudio.errors import RuntimeFailure, UsageError
from codestudio.locks import file_lock
from codestudio.gateway.config import (
    HEALTH_PATH,
    GatewaySettings,
    StudioRoutes,
    Workers,
    _check_prefixes,
    _landing_html,
    error_pages,
    landing_file,
    render_gateway_config,
    routed_studios,
)
from codestudio.gateway.webapps import WebappRoutes, check_webapp_prefixes

StudioSource = Callable[[], Iterable[StudioRoutes]]
#: Returns the routes of every webapp to serve (``codestudio.webapps`` provides it).
WebappSource = Callable[[], Iterable[WebappRoutes]]

_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")

# Root of the workers' folders when the engine runs as root: on disk rather than
# under /run (a tmpfs), since proxy temp files can be large.
WORKER_BASE = Path("/var/lib/codestudio-gateway")
# Preferred worker user when it exists (create it with `adduser --system --group
# --no-create-home codestudio-gateway`); `nobody` otherwise.
WORKER_USER = "codestudio-gateway"
FALLBACK_WORKER_USER = "nobody"


@dataclass(frozen=True)
class WorkerIdentity:
    user: str
    uid: int
    group: str
    gid: int


def worker_identity(settings: GatewaySettings) -> WorkerIdentity:
    """The unprivileged user nginx's workers switch to when the engine runs as root.

    ``settings.worker_user`` (CODESTUDIO_GATEWAY_USER) if set, else
    :data:`WORKER_USER` if that user exists, else ``nobody``; the group is the
    user's primary group. Refuses root (uid or gid 0) and users that do not exist
    (``nginx -t`` would fail on them anyway, less clearly).
    """
    import grp
    import pwd

    name = settings.worker_user
    if name is None:
        try:
            pwd.getpwnam(WORKER_USER)
            name = WORKER_USER
        except KeyError:
            name = FALLBACK_WORKER_USER
    # A user named in the settings (CODESTUDIO_GATEWAY_USER or settings.json) is
    # input: a wrong one is a usage error (exit 2). A missing default user is the
    # host's problem (exit 1).
    bad_input = UsageError if settings.worker_user is not None else RuntimeFailure
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise bad_input(
            f"gateway worker user {name!r} does not exist on this host: create it, or set "
            "CODESTUDIO_GATEWAY_USER to an existing unprivileged user"
        ) from None
    if pw.pw_uid == 0 or pw.pw_gid == 0:
        raise bad_input(f"gateway worker user {name!r} has uid or gid 0: nginx workers must not run as root")
    try:
        group = grp.getgrgid(pw.pw_gid).gr_name
    except KeyError:
        raise RuntimeFailure(f"gateway worker user {name!r}: its primary group {pw.pw_gid} has no name") from None
    return WorkerIdentity(user=name, uid=pw.pw_uid, group=group, gid=pw.pw_gid)


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


class Gateway:
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
            for sub in ("html", "temp", *(f"temp/{t}" for t in _TEMP_DIRS)):
                (self.prefix / sub).mkdir(exist_ok=True, mode=0o700)
            return
        if settings is None:
            return  # the lock only needs the prefix
        who = worker_identity(settings)
        _ensure_dir(WORKER_BASE, 0, 0, 0o711, parents=True)
        tree = self.worker_dir
        _ensure_dir(tree, 0, who.gid, 0o750)
        _ensure_dir(tree / "html", 0, who.gid, 0o750)
        _ensure_dir(tree / "temp", 0, who.gid, 0o750)
        for sub in _TEMP_DIRS:
            _ensure_dir(tree / "temp" / sub, who.uid, who.gid, 0o700)

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

    def render(self, studios: Sequence[StudioRoutes], webapps: Sequence[WebappRoutes] = ()) -> str:
        """The ``nginx.conf`` this gateway would serve ``studios`` (and ``webapps``) with (workers included)."""
        settings = self.settings
        return render_gateway_config(studios, settings, self._workers(settings), webapps=webapps)

    def check(self, text: str) -> None:
        """Run ``nginx -t`` on ``text``; raise RuntimeFailure with nginx's message if it fails."""
        self._prepare_dirs(self.settings)
        tmp = self.prefix / f"nginx.conf.check-{os.getpid()}"
        _write_private(tmp, text, durable=False)
        try:
            proc = self._nginx("-t", "-q", conf=tmp)
        finally:
            tmp.unlink(missing_ok=True)
        if proc.returncode != 0:
            message = proc.stderr.strip().replace(str(tmp), "<new config>")
            raise RuntimeFailure(f"the new gateway config was rejected by nginx -t; the running one is unchanged:\n{message}")

    # --- process state ---------------------------------------------------------------

    def pid(self) -> int | None:
        """The master's pid if our nginx is running, else None."""
        try:
            pid = int((self.prefix / "nginx.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _is_nginx_master(pid) else None

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

    def apply(
        self, studios: Sequence[StudioRoutes] | None = None, webapps: Sequence[WebappRoutes] | None = None
    ) -> str:
        """Serve exactly ``studios`` and ``webapps`` (default: their sources); start nginx if needed.

        Returns the generation of the config now live. A config that fails
        ``nginx -t`` never replaces the live one.

        Without ``studios``, concurrent calls are batched: each caller takes a
        ticket after its own change is committed, and an apply that read the
        studio source after that ticket was taken serves it too, so a caller
        that finds its ticket covered returns without applying again (a burst
        of N starts and stops costs at most two applies, not N).
        """
        ticket = self._take_ticket() if studios is None else None
        with self._locked():
            if ticket is not None:
                done, latest, live = self._tickets()
                if done >= ticket and live:
                    return live  # an apply that read the source after our change is live
            # Read the studio list under the lock: concurrent calls then apply in
            # order and the last one reflects the latest state.
            if studios is None:
                studios = list(self._studios())
            if webapps is None:
                webapps = list(self._webapps())
            generation = self._apply_locked(studios, webapps)
            if ticket is not None:
                self._set_done(latest, generation)
            return generation

    def _apply_locked(self, studios: Sequence[StudioRoutes], webapps: Sequence[WebappRoutes] = ()) -> str:
        settings = self.settings
        workers = self._workers(settings)
        self._prepare_dirs(settings)
        _check_prefixes(studios)
        check_webapp_prefixes(webapps)
        text = render_gateway_config(studios, settings, workers, webapps=webapps)
        generation = _generation_of(text)
        pages = {landing_file(s).rsplit("/", 1)[1]: s for s in studios}
        self._write_pages(pages, settings)
        pid = self.pid()
        previous = self.conf_path.read_text() if self.conf_path.exists() else None
        if pid is not None and previous == text and self._live_generation(settings) == generation:
            return generation
        self.check(text)
        _write_private(self.conf_path, text, replace=True)
        if pid is None:
            self._start_locked(settings, generation, previous)
        else:
            self._reload_locked(pid, settings, generation, previous)
        # Only now that nginx serves the new config: a failed start or reload
        # (e.g. the new port is taken) must not move later links to that port.
        _save_settings(self.prefix / "settings.json", settings)
        self._prune_pages(set(pages))
        return generation

    # Apply tickets: "requested" counts callers whose change awaits an apply, "applied"
    # the highest ticket an apply is known to serve (it read the source after it).
    @property
    def _ticket_path(self) -> Path:
        return self.prefix / "apply-tickets.json"

    @contextmanager
    def _ticket_lock(self) -> Iterator[None]:
        self._prepare_dirs()
        with file_lock(self.prefix / ".tickets.lock"):
            yield

    def _tickets(self) -> tuple[int, int, str]:
        """(applied, requested, generation of that apply), read under the ticket lock."""
        with self._ticket_lock():
            return self._read_tickets()

    def _read_tickets(self) -> tuple[int, int, str]:
        try:
            data = json.loads(self._ticket_path.read_text())
            return int(data["applied"]), int(data["requested"]), str(data["generation"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0, 0, ""

    def _write_tickets(self, applied: int, requested: int, generation: str) -> None:
        data = {"applied": applied, "requested": requested, "generation": generation}
        _write_private(self._ticket_path, json.dumps(data), replace=True, durable=False)

    def _take_ticket(self) -> int:
        with self._ticket_lock():
            applied, requested, generation = self._read_tickets()
            self._write_tickets(applied, requested + 1, generation)
            return requested + 1

    def _set_done(self, ticket: int, generation: str) -> None:
        with self._ticket_lock():
            applied, requested, _ = self._read_tickets()
            if ticket >= applied:
                self._write_tickets(ticket, requested, generation)

    def _start_locked(self, settings: GatewaySettings, generation: str, previous: str | None) -> None:
        proc = self._nginx()
        if proc.returncode != 0:
            # Nothing runs: put the last config back so the files describe the last
            # gateway that did run.
            if previous is not None:
                _write_private(self.conf_path, previous, replace=True)
            else:
                self.conf_path.unlink(missing_ok=True)
            raise RuntimeFailure(
                f"the gateway did not start on {settings.listen}:\n{proc.stderr.strip()}\n"
                "(set CODESTUDIO_GATEWAY_PORT to use another port)"
            )
        if not self._wait_for_generation(settings, generation):
            raise RuntimeFailure(
                f"the gateway started but does not answer on {settings.listen}; see {self.error_log}:\n"
                + _tail(self.error_log)
            )

    def _reload_locked(self, pid: int, settings: GatewaySettings, generation: str, previous: str | None) -> None:
        old_workers = _children(pid)
        log_start = _size(self.error_log)
        os.kill(pid, signal.SIGHUP)
        # nginx starts the new workers, lets both generations accept for 100 ms, then
        # tells the old ones to stop. Done when no old worker accepts any more and the
        # health endpoint reports the new generation: every request after apply() then
        # sees the new config.
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if not any(_accepting(w) for w in old_workers):
                if self._live_generation(settings) == generation:
                    self._bound_old_workers(pid, settings.max_old_workers)
                    return
            elif "[emerg]" in _read_from(self.error_log, log_start):
                break  # the master refused the new config and keeps the old one
            time.sleep(0.003)
        # nginx keeps the old config when a reload fails (e.g. the new port is taken);
        # put the file back so disk and process agree.
        if previous is not None:
            _write_private(self.conf_path, previous, replace=True)
        raise RuntimeFailure(
            f"nginx did not take the new gateway config; the previous one keeps running. See {self.error_log}:\n"
            + _tail(self.error_log)
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
        old = sorted((_start_time(w), w) for w in _children(master) if _shutting_down(w))
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
            while _is_nginx_master(pid):
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

    # --- static files ----------------------------------------------------------------

    def _write_pages(self, pages: dict[str, StudioRoutes], settings: GatewaySettings) -> None:
        """Write the error pages and, of ``pages`` (``{landing file name: studio}``), the
        landing pages not written yet."""
        html = self.html_dir
        # As root the workers read pages through their group; otherwise they are us.
        gid = worker_identity(settings).gid if self.as_root else None
        dir_mode, file_mode = (0o750, 0o640) if gid is not None else (0o700, 0o600)
        for folder in (html / "_codestudio", html / "_codestudio" / "errors", html / "landing"):
            if gid is None:
                folder.mkdir(exist_ok=True, mode=dir_mode)
            else:
                _ensure_dir(folder, 0, gid, dir_mode)

        def write(path: Path, content: str) -> None:
            _write_private(path, content, replace=True, mode=file_mode, gid=gid)

        for rel, content in error_pages().items():
            path = html / rel
            if not path.exists() or path.read_text() != content or (gid is not None and path.stat().st_gid != gid):
                write(path, content)
        # Landing pages are named by a digest of what they show: one listing tells which
        # are missing, so an apply with thousands of studios renders only the new ones.
        landing = html / "landing"
        present = {e.name: e for e in os.scandir(landing)}
        for name, s in pages.items():
            entry = present.get(name)
            if entry is None or (gid is not None and entry.stat(follow_symlinks=False).st_gid != gid):
                write(landing / name, _landing_html(s))

    def _prune_pages(self, keep: set[str]) -> None:
        root = self.html_dir / "landing"
        if not root.exists():
            return
        for entry in os.scandir(root):
            if entry.name not in keep:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)  # the per-studio folders of older versions
                else:
                    os.unlink(entry.path)


def _generation_of(text: str) -> str:
    marker = '"config": "'
    start = text.index(marker) + len(marker)
    return text[start : text.index('"', start)]


def _write_private(
    path: Path, text: str, *, replace: bool = False, mode: int = 0o600, gid: int | None = None, durable: bool = True
) -> None:
    """Write ``text`` to ``path`` with ``mode`` (and group ``gid``) from the first byte;
    atomically if ``replace``; flushed to disk unless not ``durable`` (scratch files)."""
    target = path.with_name(path.name + f".tmp-{os.getpid()}") if replace else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode & 0o700)
    with os.fdopen(fd, "w") as fh:
        if gid is not None:
            os.fchown(fh.fileno(), -1, gid)
        os.fchmod(fh.fileno(), mode)
        fh.write(text)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    if replace:
        os.replace(target, path)


def _ensure_dir(path: Path, uid: int, gid: int, mode: int, *, parents: bool = False) -> None:
    """``path`` as a real directory (never a symlink) owned by ``uid:gid`` with ``mode``."""
    try:
        path.mkdir(mode=0o700, parents=parents)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise RuntimeFailure(f"gateway: {path} should be a directory (is it a symlink?); remove it and retry")
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid, follow_symlinks=False)
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


def _server_identity_headers(data_dir: Path) -> tuple[str, ...]:
    """The proxy headers ``codestudio server`` trusts (its settings), which the UI block must blank."""
    from codestudio.errors import CodestudioError
    from codestudio.server.settings import ServerSettings

    try:
        s = ServerSettings.load(data_dir)
    except CodestudioError:
        return ()  # the server refuses such settings too; the defaults are still blanked
    return (s.user_header, s.email_header, s.groups_header)


def _save_settings(path: Path, settings: GatewaySettings) -> None:
    data = dataclasses.asdict(settings)
    _write_private(path, json.dumps(data, indent=2, sort_keys=True) + "\n", replace=True)


def _is_nginx_master(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and cmdline.startswith(b"nginx: master process")


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[-1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _accepting(worker: int) -> bool:
    """A worker that still takes new connections: alive and not yet shutting down."""
    try:
        cmdline = Path(f"/proc/{worker}/cmdline").read_bytes()
        state = Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X") and b"shutting down" not in cmdline


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(65536).decode(errors="replace")
    except OSError:
        return ""


def _shutting_down(worker: int) -> bool:
    try:
        return b"shutting down" in Path(f"/proc/{worker}/cmdline").read_bytes()
    except OSError:
        return False


def _start_time(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no error log)"
