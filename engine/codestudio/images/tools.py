"""The build tools image: ``install-python``, ``verify-record.py`` and uv, made once per base image.

:func:`ensure_tools_image` gives the id of
``localhost/codestudio-build-tools:<tools id>-<base>``
(:func:`codestudio.buildenv.tools_image`), building it first when it is not
in storage. Template builds name it as a stage and bind-mount it into the RUN
steps that install Python packages; it is never part of a template's image.
It is engine-owned like the base image: a template's ``--no-cache`` does
not rebuild it, ``codestudio cache clear`` leaves it (it is no download
cache), and a new uv version or a change of the tools gives a new tag.

Concurrent builds in one data dir make it once (a lock, then a second look);
two data dirs making it at the same moment both succeed with the same
content, the last tag winning.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from codestudio import containers
from codestudio.images.progress import Reporter


def tools_work_dir(name: str) -> Path:
    from codestudio.home import data_dir

    return data_dir() / "builds" / ".build-tools" / name.rsplit(":", 1)[1]


def ensure_tools_image(installer: str, base_id: str, reporter: Reporter) -> str:
    """The id of the build tools image of ``installer`` on the base ``base_id``, built when missing.

    Raises :class:`~codestudio.images.bud.BuildFailed` (exit 1) naming
    the build tools and the log when the build fails.
    """
    from codestudio import buildenv
    from codestudio.home import data_dir
    from codestudio.locks import file_lock

    name = buildenv.tools_image(installer, base_id)
    found = containers.image_id(name)
    if found:
        return found

    def waiting() -> None:
        reporter.note("waiting for another build to make the build tools")

    with file_lock(data_dir() / "locks" / "build-tools.lock", waiting=waiting):
        found = containers.image_id(name)
        if found:
            return found
        reporter.note(f"making the build tools {name} (once per base image and uv version)")
        return _build(installer, base_id, name, reporter)


def _build(installer: str, base_id: str, name: str, reporter: Reporter) -> str:
    from codestudio.images.bud import run_bud
    from codestudio.render import StepInfo, TOOLS_STEP_LABEL, tools_dockerfile

    work = tools_work_dir(name)
    shutil.rmtree(work, ignore_errors=True)
    render = work / "render"
    (render / "context").mkdir(parents=True)
    text, files = tools_dockerfile(installer)
    (render / "Dockerfile").write_text(text, encoding="utf-8")
    for rel, (data, mode) in files.items():
        target = render / "context" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode)
    from codestudio.dockerfile import split_instructions

    steps = [StepInfo(number=n, block_index=None, block_type=None, label=TOOLS_STEP_LABEL,
                      instruction=" ".join(i.text.split()), stage=1, stage_number=n)
             for n, i in enumerate((i for i in split_instructions(text) if not i.text.startswith("ARG CODESTUDIO_BASE")), 1)]
    return run_bud(f"the build tools {name}", render, work, base_id, steps, reporter=reporter, tags=(name,)).image_id
