"""Background jobs: long engine calls run in threads, their output captured line by line.

A job is one engine call (start, stop, restart, sync, an action, a build)
for one user. It runs in a bounded thread pool; whatever the engine prints
on stderr/stdout from that thread (progress lines, build steps) becomes the
job's log, kept in memory and in ``<data dir>/jobs/<id>.log``. Clients poll
``GET /api/v1/jobs/<id>`` or follow ``/events`` (server-sent events).

Doubled work is avoided twice: a second request for the same operation on
the same target while one is queued or running gets the running job back,
and the engine's own per-studio and per-template locks serialise the server
with CLI commands acting on the same data dir.
"""

from __future__ import annotations

import io
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
MAX_LINES = 5000
KEEP_FINISHED = 500


@dataclass
class Job:
    id: str
    kind: str  # studio.start, studio.stop, studio.sync, studio.action, template.build, ...
    target: str  # studio id or template id
    user: str
    state: str = QUEUED
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None
    lines: list[str] = field(default_factory=list)
    result: dict | None = None
    error: dict | None = None  # {"code": ..., "message": ...}
    log_path: str | None = None
    _partial: str = ""

    @property
    def done(self) -> bool:
        return self.state in (SUCCEEDED, FAILED)

    def as_dict(self, *, lines: bool = True) -> dict:
        d = {
            "id": self.id, "kind": self.kind, "target": self.target, "user": self.user, "state": self.state,
            "created_at": self.created_at, "started_at": self.started_at, "ended_at": self.ended_at,
            "result": self.result, "error": self.error, "line_count": len(self.lines),
        }
        if lines:
            d["lines"] = list(self.lines)
        return d


class _Capture(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: a job thread's writes go to its job."""

    def __init__(self, real, local: threading.local, manager: Jobs):
        self._real = real
        self._local = local
        self._manager = manager

    def write(self, text: str) -> int:
        job = getattr(self._local, "job", None)
        if job is None:
            return self._real.write(text)
        self._manager._append(job, text)
        return len(text)

    def flush(self) -> None:
        if getattr(self._local, "job", None) is None:
            self._real.flush()

    def isatty(self) -> bool:
        return False if getattr(self._local, "job", None) is not None else self._real.isatty()

    def fileno(self) -> int:
        return self._real.fileno()

    @property
    def encoding(self):  # type: ignore[override]
        return getattr(self._real, "encoding", "utf-8")


class Jobs:
    def __init__(self, log_dir: Path, *, workers: int = 4, error_of: Callable[[BaseException], dict] | None = None):
        self.log_dir = log_dir
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="codestudio-job")
        self._jobs: dict[str, Job] = {}
        self._active: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._local = threading.local()
        self._error_of = error_of or (lambda exc: {"code": "failed", "message": str(exc)})
        self._installed = False

    def install_capture(self) -> None:
        """Route this process's stdout/stderr writes from job threads into their jobs (once)."""
        # Checked again before every job: something (a test runner) may have swapped the streams.
        if not (isinstance(sys.stdout, _Capture) and sys.stdout._manager is self):
            sys.stdout = _Capture(sys.stdout, self._local, self)
        if not (isinstance(sys.stderr, _Capture) and sys.stderr._manager is self):
            sys.stderr = _Capture(sys.stderr, self._local, self)
        self._installed = True

    def uninstall_capture(self) -> None:
        if self._installed:
            # Only undo our own wrapper (something else may have replaced it since).
            if isinstance(sys.stdout, _Capture) and sys.stdout._manager is self:
                sys.stdout = sys.stdout._real
            if isinstance(sys.stderr, _Capture) and sys.stderr._manager is self:
                sys.stderr = sys.stderr._real
            self._installed = False

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.uninstall_capture()

    # ------------------------------------------------------------------

    def submit(self, kind: str, target: str, user: str, fn: Callable[[Job], dict | None]) -> tuple[Job, bool]:
        """Queue ``fn(job)``; returns (job, created). The same kind+target already active is returned instead."""
        with self._lock:
            active = self._active.get((kind, target))
            if active is not None and not self._jobs[active].done:
                return self._jobs[active], False
            job = Job(id=secrets.token_hex(8), kind=kind, target=target, user=user)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            job.log_path = str(self.log_dir / f"{job.id}.log")
            self._jobs[job.id] = job
            self._active[(kind, target)] = job.id
            self._prune()
        self._pool.submit(self._run, job, fn)
        return job, True

    def _run(self, job: Job, fn: Callable[[Job], dict | None]) -> None:
        self._local.job = job
        with self._lock:
            if self._installed:
                self.install_capture()
            job.state, job.started_at = RUNNING, time.time()
            self._changed.notify_all()
        try:
            result = fn(job)
        except BaseException as exc:  # the job's failure is its result; the server goes on
            error = self._error_of(exc)
            if error.get("code") == "internal_error":
                self._append(job, traceback.format_exc())
            with self._lock:
                job.state, job.error = FAILED, error
        else:
            with self._lock:
                job.state, job.result = SUCCEEDED, result
        finally:
            self._local.job = None
            with self._lock:
                if job._partial:
                    self._add_line(job, job._partial)
                    job._partial = ""
                job.ended_at = time.time()
                if self._active.get((job.kind, job.target)) == job.id:
                    del self._active[(job.kind, job.target)]
                self._changed.notify_all()

    def _append(self, job: Job, text: str) -> None:
        with self._lock:
            text = job._partial + text.replace("\r\n", "\n").replace("\r", "\n")
            *complete, job._partial = text.split("\n")
            for line in complete:
                self._add_line(job, line)
            if complete:
                self._changed.notify_all()

    def _add_line(self, job: Job, line: str) -> None:
        if len(job.lines) < MAX_LINES:
            job.lines.append(line)
        try:
            with open(job.log_path, "a", encoding="utf-8") as f:  # type: ignore[arg-type]
                f.write(line + "\n")
        except OSError:
            pass

    def line(self, job: Job, text: str) -> None:
        """Add a line to a job from outside its thread (e.g. a subprocess reader)."""
        self._append(job, text if text.endswith("\n") else text + "\n")

    def _prune(self) -> None:
        finished = [j for j in self._jobs.values() if j.done]
        for j in sorted(finished, key=lambda j: j.ended_at or 0)[:-KEEP_FINISHED]:
            self._jobs.pop(j.id, None)

    # ------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def list(self, user: str | None = None) -> list[Job]:
        with self._lock:
            jobs = [j for j in self._jobs.values() if user is None or j.user == user]
        return sorted(jobs, key=lambda j: j.created_at, reverse=True)

    def snapshot(self, job: Job, since: int) -> tuple[list[str], str, bool]:
        with self._lock:
            return list(job.lines[since:]), job.state, job.done

    def wait(self, job: Job, since: int, timeout: float) -> None:
        """Block until the job has more than ``since`` lines, changes state, or ``timeout`` passes."""
        with self._changed:
            state = job.state
            self._changed.wait_for(lambda: len(job.lines) > since or job.state != state, timeout=timeout)

    def wait_done(self, job: Job, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: job.done, timeout=timeout)
