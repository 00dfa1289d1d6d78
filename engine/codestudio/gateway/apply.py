"""Serving a new config: render, ``nginx -t``, write, then start or reload; batched applies; the pages.

:class:`ConfigApply` is the half of :class:`~codestudio.gateway.process.Gateway`
that decides what nginx serves; starting, reloading and stopping the
process (which it calls) stay in :mod:`codestudio.gateway.process`. A new
config is only ever written over the live one after ``nginx -t`` accepted it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from codestudio.errors import RuntimeFailure
from codestudio.gateway.config import (
    GatewaySettings,
    StudioRoutes,
    _check_prefixes,
    _landing_html,
    error_pages,
    landing_file,
    render_gateway_config,
)
from codestudio.gateway.webapps import WebappRoutes, check_webapp_prefixes
from codestudio.gateway.workers import ensure_dir, worker_identity, write_private
from codestudio.locks import file_lock


class ConfigApply:
    """:meth:`apply` and what it needs: the mixin of :class:`~codestudio.gateway.process.Gateway` (whose
    paths, settings, lock and process methods it uses)."""

    def render(self, studios: Sequence[StudioRoutes], webapps: Sequence[WebappRoutes] = ()) -> str:
        """The ``nginx.conf`` this gateway would serve ``studios`` (and ``webapps``) with (workers included)."""
        settings = self.settings
        return render_gateway_config(studios, settings, self._workers(settings), webapps=webapps)

    def check(self, text: str) -> None:
        """Run ``nginx -t`` on ``text``; raise RuntimeFailure with nginx's message if it fails."""
        self._prepare_dirs(self.settings)
        tmp = self.prefix / f"nginx.conf.check-{os.getpid()}"
        write_private(tmp, text, durable=False)
        try:
            proc = self._nginx("-t", "-q", conf=tmp)
        finally:
            tmp.unlink(missing_ok=True)
        if proc.returncode != 0:
            message = proc.stderr.strip().replace(str(tmp), "<new config>")
            raise RuntimeFailure(f"the new gateway config was rejected by nginx -t; the running one is unchanged:\n{message}")

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
        write_private(self.conf_path, text, replace=True)
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
        write_private(self._ticket_path, json.dumps(data), replace=True, durable=False)

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
                ensure_dir(folder, 0, gid, dir_mode)

        def write(path: Path, content: str) -> None:
            write_private(path, content, replace=True, mode=file_mode, gid=gid)

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


def _save_settings(path: Path, settings: GatewaySettings) -> None:
    data = dataclasses.asdict(settings)
    write_private(path, json.dumps(data, indent=2, sort_keys=True) + "\n", replace=True)
