"""Running ``buildah bud`` for the engine's builds (templates and the build tools image).

:func:`bud_args` is the command line (the base image's id and other build
arguments, the CA bundle, the index settings and local index folders lent
to RUN steps, ``--jobs`` for parallel stages, the tags); :func:`run_bud`
runs it with the download caches' folder as buildah's temporary folder
(under the shared cache lock), through :mod:`codestudio.images.budrun`,
which writes ``build.log`` and ``timeline.txt``; it follows the steps,
returns once buildah has tagged the image (buildah removes its step
containers in the background) and turns a failure into
:class:`BuildFailed` naming the block.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from codestudio import containers
from codestudio.errors import RuntimeFailure
from codestudio.images import budrun
from codestudio.images.progress import Reporter, StepTracker

CA_TARGET = "/etc/ssl/certs/ca-certificates.crt"
#: Next to build.log: each buildah output line with the seconds since buildah started
#: (``bench/builds.py --timeline`` prints it; see docs/building.md).
TIMELINE = "timeline.txt"


class BuildFailed(RuntimeFailure):
    """buildah failed on a step; the message names the block, statement and last output."""

    def __init__(self, message: str, *, step: int | None, block_index: int | None, log_path: Path):
        super().__init__(message)
        self.step = step
        self.block_index = block_index
        self.log_path = log_path


def bud_args(render_dir: Path, base_id: str, iidfile: Path, *, no_cache: bool,
             settings_dir: Path | None = None, local_paths: tuple[Path, ...] = (), jobs: int = 1,
             build_args: dict[str, str] | None = None, tags: tuple[str, ...] = ()) -> list[str]:
    """The ``buildah bud`` arguments of a template build (without the global flags).

    ``settings_dir`` (the index settings of :mod:`codestudio.images.indexes`)
    and ``local_paths`` (local indexes and find-links folders) are mounted
    read-only into every RUN step. ``build_args`` are passed as they are
    (the build tools image's id).
    """
    from codestudio import buildenv

    args = [
        "bud",
        "--layers",
        "--isolation", "chroot",
        # The base was resolved (and pulled if needed) before hashing: build
        # exactly that image (every stage's FROM), never a newer one fetched meanwhile.
        "--build-arg", f"CODESTUDIO_BASE_IMAGE={base_id}",
    ]
    for name, value in sorted((build_args or {}).items()):
        args += ["--build-arg", f"{name}={value}"]
    args += [
        "--pull=never",
        "--force-rm",
        # Proxy variables reach RUN steps but are never written to the image.
        "--http-proxy=true",
        "--iidfile", str(iidfile),
        "-f", str(render_dir / "Dockerfile"),
    ]
    for tag in tags:
        # buildah tags only a committed image: the first name at the commit, then the others.
        args += ["-t", tag]
    ca = containers.host_ca_bundle()
    if ca is not None:
        # Lent to RUN steps read-only, never copied into a layer.
        args += ["-v", f"{ca}:{CA_TARGET}:ro"]
    if settings_dir is not None:
        args += ["-v", f"{settings_dir}:{buildenv.SETTINGS_DIR}:ro"]
    for path in local_paths:
        args += ["-v", f"{path}:{path}:ro"]
    if jobs > 1:
        # Stages that do not depend on each other (contribute_stage blocks) build at once.
        args += ["--jobs", str(jobs)]
    if no_cache:
        args.append("--no-cache")
    args.append(str(render_dir / "context"))
    return args


@dataclass
class Bud:
    """What :func:`run_bud` gives back: the steps it followed and the new image's id."""

    tracker: StepTracker
    image_id: str
    #: buildah was still removing its step containers when run_bud returned.
    cleaning_up: bool = False


def run_bud(what: str, render_dir: Path, work: Path, base_id: str, steps, *, reporter: Reporter,
            tags: tuple[str, ...], no_cache: bool = False, build_args: dict[str, str] | None = None,
            log_path: Path | None = None, jobs: int = 1) -> Bud:
    """Run ``buildah bud`` on ``render_dir`` with the build's mounts, logging into ``work``; tag the image ``tags``.

    buildah applies the tags itself, only once the image is committed, so a
    failed build moves none. Returns as soon as buildah has tagged the
    image: buildah then removes its step containers and exits in the
    background (:mod:`codestudio.images.budrun`), which ``build.log`` and
    ``timeline.txt`` record with ``# exit status N``. The log goes to
    ``log_path`` (default ``work/build.log``), each line with its time to
    ``work/timeline.txt``. Raises :class:`BuildFailed` naming ``what`` and
    the failing step's block.
    """
    from codestudio import buildenv
    from codestudio.images import indexes
    from codestudio.images.cache import cache_lock, cache_lock_path

    log_path = log_path or work / "build.log"
    settings = indexes.host_settings()
    settings_dir = work / "index-settings"
    indexes.write_settings(settings_dir, settings)
    local = tuple(indexes.local_paths(settings))
    argv = containers.buildah_command(*bud_args(render_dir, base_id, work / "iid", no_cache=no_cache,
                                                settings_dir=settings_dir, local_paths=local, jobs=jobs,
                                                build_args=build_args, tags=tags))
    containers.require_tools(argv[0])
    tracker = StepTracker(steps={s.number: s for s in steps})
    env = containers.tool_env()
    # buildah keeps RUN --mount=type=cache folders under its temporary folder: the data dir's.
    cache = buildenv.cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    env["TMPDIR"] = str(cache)

    def waiting() -> None:
        reporter.note("waiting for `codestudio cache clear` to finish")

    try:
        with cache_lock(shared=True, waiting=waiting):
            with open(log_path, "w", encoding="utf-8") as log:
                log.write(f"# codestudio build of {what}\n# command: {' '.join(argv)}\n")
                proxies = sorted(containers.proxy_env())
                # Names only: proxy URLs may carry credentials.
                log.write(f"# proxies passed to RUN steps: {', '.join(proxies) or 'none'}\n")
                log.write(f"# package indexes: {', '.join(settings.urls()) or 'the default (https://pypi.org/simple)'}\n")
            (work / TIMELINE).write_text("", encoding="utf-8")
            began = time.monotonic()
            spec = {"argv": argv, "cwd": str(work), "log": str(log_path), "timeline": str(work / TIMELINE),
                    "lock": str(cache_lock_path()), "began": began, "tags": list(tags)}
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(Path(budrun.__file__)), json.dumps(spec)],
                cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                # Its own session: neither a Ctrl-C at the shell once the build returned nor
                # the command's exit reaches buildah while it removes its containers.
                start_new_session=True,
                text=True, errors="replace", bufsize=1,
            )
            try:
                tagged, image_id = _follow(proc, tracker, reporter, tags)
                if image_id is not None:
                    with open(work / TIMELINE, "a", encoding="utf-8") as timeline:
                        timeline.write(f"{time.monotonic() - began:8.2f} # tagged; buildah cleans up in the background\n")
                    _leave(proc)
                    return Bud(tracker, image_id, cleaning_up=True)
                returncode = proc.wait()
            except BaseException:
                _stop(proc)
                raise
    finally:
        # The settings may hold credentials: they live only as long as the build's steps.
        shutil.rmtree(settings_dir, ignore_errors=True)
    iid = work / "iid"
    if tagged:
        # Committed and tagged; only buildah's clean-up may have failed (then it writes no id file).
        found = iid.read_text().strip().removeprefix("sha256:") if iid.exists() else containers.image_id(tags[0])
        if found:
            return Bud(tracker, found)
    if returncode != 0:
        raise _failure(what, tracker, log_path)
    # buildah exited without the lines saying it tagged the image (another buildah
    # version?): its id file says what it built, and the tags are applied here.
    image_id = iid.read_text().strip().removeprefix("sha256:")
    containers.tag_image(image_id, *tags)
    return Bud(tracker, image_id)


def _follow(proc: subprocess.Popen, tracker: StepTracker, reporter: Reporter,
            tags: tuple[str, ...]) -> tuple[bool, str | None]:
    """Read the build's lines until buildah has tagged the image or has exited: (tagged, id when known)."""
    assert proc.stdout is not None
    tagged = False
    for line in proc.stdout:
        line = line.rstrip("\n")
        if line == budrun.TAGGED:
            tagged = True
            tracker.finish()
            found = _tagged_id(tags)
            if found is not None:
                return True, found
            # Not readable from the storage's image list: wait for buildah's exit.
            continue
        # Lines without the prefix are the runner's own (a traceback): report them too.
        line = line.removeprefix(budrun.OUTPUT)
        if tracker.feed(line):
            reporter.step(tracker)
    tracker.finish()
    return tagged, None


def _tagged_id(tags: tuple[str, ...]) -> str | None:
    """The id every tag names in the storage's image list, without waiting for buildah's locks.

    ``buildah inspect`` or ``tag`` would wait until buildah has removed its
    containers (they take the storage's locks); the image list is replaced
    atomically under them, so it is consistent when read.
    """
    found = {containers.indexed_image_id(tag) for tag in tags}
    return found.pop() if len(found) == 1 and None not in found else None


#: Runners left removing their step containers, reaped by a thread each (see :func:`wait_for_cleanups`).
_cleanups: set[subprocess.Popen] = set()
_cleanups_lock = threading.Lock()


def _leave(proc: subprocess.Popen) -> None:
    """Stop reading ``proc`` (it carries on alone) and reap it when it exits, so no zombie stays."""
    assert proc.stdout is not None
    proc.stdout.close()
    with _cleanups_lock:
        _cleanups.add(proc)

    def reap() -> None:
        proc.wait()
        with _cleanups_lock:
            _cleanups.discard(proc)

    threading.Thread(target=reap, name=f"buildah-cleanup-{proc.pid}", daemon=True).start()


def wait_for_cleanups(timeout: float | None = None) -> bool:
    """Wait until the buildah runs this process left cleaning up have exited; False on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        with _cleanups_lock:
            pending = list(_cleanups)
        if not pending:
            return True
        try:
            pending[0].wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
        # The reaper thread drops it from the set right after.
        time.sleep(0.01)


def _stop(proc: subprocess.Popen) -> None:
    """Stop a build that is abandoned (Ctrl-C, an error here) before buildah tagged the image."""
    if proc.poll() is None:
        # The whole session: the runner passes on waiting, buildah stops its running step.
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):  # a second Ctrl-C: no more waiting
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _failure(what: str, tracker: StepTracker, log_path: Path) -> BuildFailed:
    info = tracker.step
    if tracker.number == 0:
        head = f"build of {what} failed before its first step"
        statement = ""
    else:
        head = (
            f"build of {what} failed at step {tracker.number}/{tracker.total} "
            f"in {tracker.where()}"
        )
        statement = f"\nfailing statement: {tracker.instruction}"
    output = "\n".join(f"  | {line}" for line in tracker.tail) or "  (no output)"
    return BuildFailed(
        f"{head}{statement}\nlast output:\n{output}\nfull log: {log_path}",
        step=tracker.number or None,
        block_index=info.block_index if info is not None else None,
        log_path=log_path,
    )
