"""Running ``buildah bud`` for the engine's builds (templates and the build tools image).

:func:`bud_args` is the command line (the base image's id and other build
arguments, the CA bundle, the index settings and local index folders lent
to RUN steps, ``--jobs`` for parallel stages); :func:`run_bud` runs it with
the download caches' folder as buildah's temporary folder (under the shared
cache lock), writes ``build.log`` and ``timeline.txt``, follows the steps
and turns a failure into :class:`BuildFailed` naming the block.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from codestudio import containers
from codestudio.errors import RuntimeFailure
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
             build_args: dict[str, str] | None = None, tag: str | None = None) -> list[str]:
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
    if tag is not None:
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


def run_bud(what: str, render_dir: Path, work: Path, base_id: str, steps, *, reporter: Reporter,
            no_cache: bool = False, build_args: dict[str, str] | None = None, log_path: Path | None = None,
            jobs: int = 1, tag: str | None = None) -> StepTracker:
    """Run ``buildah bud`` on ``render_dir`` with the build's mounts, logging into ``work``.

    The image id goes to ``work/iid``; the log to ``log_path`` (default
    ``work/build.log``), each line with its time to ``work/timeline.txt``.
    Raises :class:`BuildFailed` naming ``what`` and the failing step's block.
    """
    from codestudio import buildenv
    from codestudio.images import indexes

    log_path = log_path or work / "build.log"
    settings = indexes.host_settings()
    settings_dir = work / "index-settings"
    indexes.write_settings(settings_dir, settings)
    local = tuple(indexes.local_paths(settings))
    argv = containers.buildah_command(*bud_args(render_dir, base_id, work / "iid", no_cache=no_cache,
                                                settings_dir=settings_dir, local_paths=local, jobs=jobs,
                                                build_args=build_args, tag=tag))
    tracker = StepTracker(steps={s.number: s for s in steps})
    env = containers.tool_env()
    # buildah keeps RUN --mount=type=cache folders under its temporary folder: the data dir's.
    cache = buildenv.cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    env["TMPDIR"] = str(cache)
    from codestudio.images.cache import cache_lock

    def waiting() -> None:
        reporter.note("waiting for `codestudio cache clear` to finish")

    try:
        with cache_lock(shared=True, waiting=waiting), open(log_path, "w", encoding="utf-8") as log, \
                open(work / TIMELINE, "w", encoding="utf-8") as timeline:
            log.write(f"# codestudio build of {what}\n# command: {' '.join(argv)}\n")
            proxies = sorted(containers.proxy_env())
            # Names only: proxy URLs may carry credentials.
            log.write(f"# proxies passed to RUN steps: {', '.join(proxies) or 'none'}\n")
            log.write(f"# package indexes: {', '.join(settings.urls()) or 'the default (https://pypi.org/simple)'}\n")
            log.flush()
            began = time.monotonic()
            with containers.stream(argv, cwd=work, env=env) as proc:
                for line in proc:
                    log.write(line + "\n")
                    log.flush()
                    timeline.write(f"{time.monotonic() - began:8.2f} {line}\n")
                    timeline.flush()
                    if tracker.feed(line):
                        reporter.step(tracker)
                tracker.finish()
            timeline.write(f"{time.monotonic() - began:8.2f} # exit status {proc.returncode}\n")
            log.write(f"# exit status {proc.returncode}\n")
    finally:
        # The settings may hold credentials: they live only as long as the build.
        shutil.rmtree(settings_dir, ignore_errors=True)
    if proc.returncode != 0:
        raise _failure(what, tracker, log_path)
    return tracker


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
