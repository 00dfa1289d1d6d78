"""Template builds: render -> content hash -> ``buildah bud --layers`` -> tags -> history.

The image of a template is ``localhost/codestudio/<template-id>:<hash>``
(and ``:latest``), where the hash covers everything that decides the image
(:func:`content_manifest`). An image with that tag already in storage means
the build is skipped without running buildah. buildah applies both tags
itself once the image is committed (``-t``), so a failed build never moves a
tag; the build returns then, while buildah removes its step containers in
the background (:func:`codestudio.images.bud.run_bud`).

Each build gets ``<data dir>/builds/<template-id>/<build-id>/`` holding the
render (``render/``: Dockerfile, context, runner.json, ...), the inputs
behind the hash (``inputs.json``) and the full log (``build.log``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from codestudio import containers
from codestudio.images import history
from codestudio.images.bud import CA_TARGET, TIMELINE, Bud, BuildFailed, bud_args, run_bud  # noqa: F401 (re-exported)
from codestudio.images.progress import Reporter
from codestudio.errors import RuntimeFailure
from codestudio.locks import file_lock
from codestudio.store import Store

IMAGE_REPO = "localhost/codestudio"
#: Bump when a change in how images are built changes what they contain,
#: so that existing images stop matching.
RECIPE = 1
HASH_TAG_LENGTH = 16
#: Render folders kept per template (logs are always kept).
KEEP_RENDERS = 5


@dataclass
class BuildResult:
    """What :func:`build_rendered` did."""

    template_id: str
    outcome: str  # "succeeded" | "skipped"
    image: str  # localhost/codestudio/<id>:<hash>
    latest: str  # localhost/codestudio/<id>:latest
    image_id: str
    content_hash: str
    build_id: int
    log_path: Path | None = None
    seconds: float = 0.0
    steps: int = 0
    cached_steps: list[int] = field(default_factory=list)
    #: Wall time of each step buildah ran (step number -> seconds).
    step_seconds: dict[int, float] = field(default_factory=dict)
    #: buildah was still removing its step containers when the build returned (docs/building.md).
    cleaning_up: bool = False

    def as_dict(self) -> dict:
        return {
            "template_id": self.template_id,
            "outcome": self.outcome,
            "image": self.image,
            "image_id": self.image_id,
            "content_hash": self.content_hash,
            "build_id": self.build_id,
            "log_path": str(self.log_path) if self.log_path else None,
            "seconds": round(self.seconds, 3),
            "steps": self.steps,
            "cached_steps": self.cached_steps,
            "step_seconds": {str(k): round(v, 3) for k, v in self.step_seconds.items()},
            "cleaning_up": self.cleaning_up,
        }


def image_name(template_id: str, content_hash: str) -> str:
    return f"{IMAGE_REPO}/{template_id}:{content_hash[:HASH_TAG_LENGTH]}"


def latest_name(template_id: str) -> str:
    return f"{IMAGE_REPO}/{template_id}:latest"


# --------------------------------------------------------------------------
# Inputs


def content_manifest(rendered, base_image_id: str) -> dict:
    """Everything that decides the image, in a canonical form; its sha256 is the content hash.

    Proxies and the CA bundle are not part of it: they are only lent to RUN
    steps, never stored in the image.
    """
    return {
        "recipe": RECIPE,
        "template": rendered.template.id,
        "dockerfile": hashlib.sha256(rendered.dockerfile.encode()).hexdigest(),
        "context": {
            path: [f"{mode:o}", hashlib.sha256(data).hexdigest()]
            for path, (data, mode) in sorted(rendered.context_files.items())
        },
        "base_image_id": base_image_id,
        "plugins": dict(sorted(rendered.plugins.items())),
    }


def content_hash(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def ensure_base_image(ref: str) -> str:
    """The id of the template's base image, pulling it if it is not stored locally."""
    found = containers.image_id(ref)
    if found:
        return found
    from codestudio.plan import default_base_image

    if ref == default_base_image():
        raise RuntimeFailure(f"the base image {ref} is not built yet: run `codestudio base build` first")
    proc = containers.buildah("pull", ref, check=False)
    found = containers.image_id(ref) if proc.returncode == 0 else None
    if not found:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeFailure(f"base image {ref!r} is not in local storage and could not be pulled:\n{tail}")
    return found


# --------------------------------------------------------------------------
# Locks and folders


def builds_dir(template_id: str) -> Path:
    from codestudio.home import data_dir

    return data_dir() / "builds" / template_id


@contextmanager
def template_lock(template_id: str, reporter: Reporter | None = None) -> Iterator[None]:
    """One build per template at a time (across processes); different templates build in parallel."""
    from codestudio.home import data_dir

    def waiting() -> None:
        if reporter:
            reporter.note(f"waiting for another build of {template_id} to finish")

    with file_lock(data_dir() / "locks" / f"build-{template_id}.lock", waiting=waiting):
        yield


def _prune_renders(template_id: str) -> None:
    """Drop the render folders of old builds; their logs stay (history points at them)."""
    root = builds_dir(template_id)
    numbered = sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    for old in numbered[:-KEEP_RENDERS]:
        shutil.rmtree(old / "render", ignore_errors=True)


# --------------------------------------------------------------------------
# Building


def build_template_file(path: Path, *, template_version: int | None = None, no_cache: bool = False,
                        quiet: bool = False, store: Store | None = None) -> BuildResult:
    """Render the template file at ``path`` and build it.

    ``template_version`` is the stored version the file is (None for a file
    that was never added); resolving template ids is the caller's business
    (:func:`codestudio.templates_store.build_template`).
    """
    from codestudio.render import render_template

    rendered = render_template(path)
    return build_rendered(rendered, no_cache=no_cache, template_version=template_version, quiet=quiet, store=store)


def build_rendered(
    rendered,
    *,
    no_cache: bool = False,
    template_version: int | None = None,
    quiet: bool = False,
    store: Store | None = None,
) -> BuildResult:
    """Build a rendered template (:class:`codestudio.render.Rendered`) into its image.

    Skips buildah entirely when the content-hash tag already exists (unless
    ``no_cache``). Raises :class:`BuildFailed` (exit 1) naming the failing
    block; no tag is applied then.
    """
    containers.require_tools("buildah")
    store = store or Store.default()
    template_id = rendered.template.id
    started = time.monotonic()
    base_id = ensure_base_image(rendered.state.base_image)
    manifest = content_manifest(rendered, base_id)
    digest = content_hash(manifest)
    image, latest = image_name(template_id, digest), latest_name(template_id)

    def record(**fields) -> int:
        return history.start(
            store,
            template_id=template_id,
            template_version=template_version,
            content_hash=digest,
            image=image,
            plugins=rendered.plugins,
            **fields,
        )

    def skipped(existing: str) -> BuildResult:
        build_id = record(outcome="skipped", image_id=existing)
        return BuildResult(template_id, "skipped", image, latest, existing, digest, build_id,
                           seconds=time.monotonic() - started)

    if not no_cache:
        # Up to date and tagged: nothing to build or tag, so no need to queue on the
        # template's lock (every start of a studio passes here; ten at once waited
        # for each other's look-ups, about half a second each on a busy machine).
        existing = containers.image_id(image)
        if existing and containers.image_id(latest) == existing:
            return skipped(existing)

    with Reporter(f"building {template_id}", quiet=quiet) as reporter, template_lock(template_id, reporter):
        if not no_cache:
            existing = containers.image_id(image)
            if existing:
                if containers.image_id(latest) != existing:
                    containers.tag_image(existing, latest)
                return skipped(existing)

        build_id = record()
        work = builds_dir(template_id) / str(build_id)
        work.mkdir(parents=True, exist_ok=True)
        log_path = work / "build.log"
        history.set_log_path(store, build_id, str(log_path))
        try:
            from codestudio.render import write_rendered

            write_rendered(rendered, work / "render")
            (work / "inputs.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            bud = _bud(rendered, work, base_id, log_path, (image, latest), no_cache=no_cache, reporter=reporter)
            new_id, tracker = bud.image_id, bud.tracker
        except BaseException as exc:
            error = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
            history.finish(store, build_id, outcome="failed", error=error[:4000])
            raise
        history.finish(store, build_id, outcome="succeeded", image_id=new_id)
        _prune_renders(template_id)
        return BuildResult(
            template_id,
            "succeeded",
            image,
            latest,
            new_id,
            digest,
            build_id,
            log_path=log_path,
            seconds=time.monotonic() - started,
            steps=tracker.total,
            cached_steps=sorted(tracker.cached),
            step_seconds=dict(tracker.seconds),
            cleaning_up=bud.cleaning_up,
        )


def _bud(rendered, work: Path, base_id: str, log_path: Path, tags: tuple[str, str], *, no_cache: bool,
         reporter: Reporter) -> Bud:
    from codestudio import buildenv
    from codestudio.render import TOOLS_STEP_LABEL

    build_args = {}
    if rendered.build_tools is not None:
        from codestudio.images.tools import ensure_tools_image

        build_args[buildenv.TOOLS_IMAGE_ARG] = ensure_tools_image(rendered.build_tools, base_id, reporter)
    return run_bud(f"template {rendered.template.id!r}", work / "render", work, base_id, rendered.steps,
                   reporter=reporter, tags=tags, no_cache=no_cache, build_args=build_args, log_path=log_path,
                   # The tools' stage is an image (nothing to build): the others are what runs at once.
                   jobs=len({s.stage for s in rendered.steps if s.label != TOOLS_STEP_LABEL}))
