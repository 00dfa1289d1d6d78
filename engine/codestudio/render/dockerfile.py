"""The image's Dockerfile and build context: block steps, parallel stages, the build tools, labels.

Rendered from the jinja2 templates in ``render/templates``, every value
through a filter of :mod:`codestudio.dockerfile`; steps are numbered as
buildah numbers them (:class:`StepInfo`), each attached to its block.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from codestudio import __version__
from codestudio.blockapi import CONTEXT_DIR, BuildState, Copy, Env, Raw, Run, Workdir
from codestudio.errors import PluginError

CA_ARGS = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS")
RUNNER_LABEL = "io.codestudio.runner"
TEMPLATE_LABEL = "io.codestudio.template"
BLOCKS_LABEL = "io.codestudio.blocks"
#: The label of the build tools' stage step (``FROM`` the tools image).
TOOLS_STEP_LABEL = "codestudio build tools"


@dataclass
class StepInfo:
    """One Dockerfile instruction as buildah numbers it (``STEP n/m``) and the block it belongs to."""

    number: int
    block_index: int | None
    block_type: str | None
    label: str
    instruction: str
    #: The stage (1-based, Dockerfile order) and the step's number in it, as buildah prints them.
    stage: int = 1
    stage_number: int = 0


def _jinja():
    import jinja2

    from codestudio import dockerfile

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("codestudio.render", "templates"),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    env.filters["exec_form"] = dockerfile.exec_form
    env.filters["quoted"] = dockerfile.quoted
    env.filters["comment"] = dockerfile.comment
    return env


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:60] or "file"


def _norm_mode(mode: int) -> int:
    return 0o755 if mode & 0o111 else 0o644


def _add_tree(files: dict[str, tuple[bytes, int]], rel: str, source: Path, resources) -> None:
    """Copy a file or folder into ``files`` under ``rel`` (modes normalised).

    The content comes from the resolver: exactly the files it checked when
    the resource was resolved, each re-checked as it is read.
    """
    for sub, data, mode in resources.contents(source):
        files[f"{rel}/{sub}" if sub else rel] = (data, _norm_mode(mode))


def build_dockerfile(template, state: BuildState, runner_json: str) -> tuple[str, dict[str, tuple[bytes, int]], list[StepInfo]]:
    """Render the Dockerfile and collect the build context."""
    from codestudio.runner import RUNNER_PATH

    files: dict[str, tuple[bytes, int]] = {}
    groups = []
    current_user = None  # the base image's user is unknown: always set it once
    installer = python_installer(template)
    uses_tools = False
    stages = []
    # The leading run of blocks that build on their own (contribute_stage) becomes parallel stages,
    # when it has two or more: a stage alone overlaps with nothing and only adds a copy of its result.
    leading = parallel_stages(template) and len(leading_stages(state)) > 1
    for gi, group in enumerate(state.groups):
        block = group.block
        prefix = f"{CONTEXT_DIR}/blocks/{gi:02d}-{_safe_name(block.type if block else 'engine')}"
        rendered_steps = []
        staged = leading = leading and bool(group.stage_paths) and block is not None
        if staged:
            # A stage starts from the base image: its first step says its user.
            image_user, current_user = current_user, None
        for si, step in enumerate(group.steps):
            item: dict = {"user_line": None}
            if step.user != current_user:
                item["user_line"] = step.user
                current_user = step.user
            if isinstance(step, Run):
                previous = rendered_steps[-1] if rendered_steps else None
                if (step.script is not None and item["user_line"] is None and previous is not None
                        and previous.get("scripts") is not None):
                    # Consecutive scripts of one block (as one user) run as one RUN: each RUN is a
                    # layer commit. Each keeps its own shell (a subshell): its exit, cd or variables
                    # reach the next no more than they did across RUN steps; a failure stops the RUN.
                    previous["scripts"].append(step.script)
                    previous["argv"] = ["/bin/sh", "-e", "-c", "\n".join(f"(\n{text.strip(chr(10))}\n)"
                                                                        for text in previous["scripts"])]
                    previous["mounts"] = run_mounts(previous["argv"], installer)
                    uses_tools |= bool(previous["mounts"])
                    continue
                item["kind"] = "run"
                item["argv"] = step.argv if step.argv is not None else ["/bin/sh", "-e", "-c", step.script]
                item["scripts"] = [step.script] if step.script is not None else None
                item["mounts"] = run_mounts(item["argv"], installer)
                uses_tools |= bool(item["mounts"])
            elif isinstance(step, Copy):
                item["kind"] = "copy"
                if step.content is not None:
                    name = _safe_name(Path(step.dest).name)
                    rel = f"{prefix}/{si}/{name}"
                    data = step.content.encode() if isinstance(step.content, str) else step.content
                    files[rel] = (data, step.mode)
                else:
                    name = _safe_name(step.source.name)
                    rel = f"{prefix}/{si}/{name}"
                    _add_tree(files, rel, step.source, state.resources)
                    if step.source.is_file():
                        files[rel] = (files[rel][0], step.mode if step.mode != 0o644 else files[rel][1])
                item["src"] = rel + ("/" if step.source is not None and step.source.is_dir() else "")
                item["dest"] = step.dest
                item["owner"] = step.owner
            elif isinstance(step, Env):
                item["kind"] = "env"
                item["env_items"] = sorted(step.values.items())
            elif isinstance(step, Workdir):
                item["kind"] = "workdir"
                item["path"] = step.path
            elif isinstance(step, Raw):
                item["kind"] = "raw"
                item["text"] = step.text.strip("\n")
                for name, source in sorted(step.resources.items()):
                    # Collisions were refused by the planner (plan.check_resource_names).
                    _add_tree(files, name, source, state.resources)
                # Raw text may switch users itself; force the next step to say its user.
                current_user = None
            else:
                raise PluginError(f"unknown step type {type(step).__name__}")
            rendered_steps.append(item)
        title = group.title + (f" ({block.type})" if block and group.title != block.type else "")
        if staged:
            name = f"codestudio-block-{gi:02d}"
            stages.append({"index": gi, "name": name, "title": title, "steps": rendered_steps})
            current_user = image_user
            rendered_steps = [{"user_line": None, "kind": "copy_from", "stage": name, "path": path}
                              for path in group.stage_paths]
        groups.append({"title": title, "steps": rendered_steps})

    # The runner and its plan go last: editing an entrypoint must not rebuild the blocks.
    files[f"{CONTEXT_DIR}/runner/runner.py"] = (RUNNER_PATH.read_bytes(), 0o755)
    files[f"{CONTEXT_DIR}/runner/runner.json"] = (runner_json.encode(), 0o644)
    groups.append(
        {
            "title": "codestudio runner",
            # One COPY (one layer) for both files: every instruction after the
            # last block costs a layer commit on each rebuild.
            "steps": [
                {"user_line": "root" if current_user != "root" else None, "kind": "copy", "owner": "root",
                 "src": f"{CONTEXT_DIR}/runner/", "dest": "/opt/codestudio/"},
            ],
        }
    )
    block_list = [
        {"type": b.type, "distribution": b.distribution, "version": b.version} for b in template.blocks
    ]
    labels = [
        (TEMPLATE_LABEL, template.id),
        (BLOCKS_LABEL, json.dumps(block_list, sort_keys=True, separators=(",", ":"))),
        (RUNNER_LABEL, json.dumps(json.loads(runner_json), sort_keys=True, separators=(",", ":"))),
    ]
    tools = _tools_stage(installer) if uses_tools else None
    text = _jinja().get_template("Dockerfile.j2").render(
        version=__version__,
        template_id=template.id,
        base_image=state.base_image,
        ca_args=CA_ARGS,
        tools=tools,
        stages=stages,
        groups=groups,
        labels=labels,
    )
    return text, dict(sorted(files.items())), _step_infos(text, state)


def leading_stages(state: BuildState) -> list[int]:
    """The groups of the template's leading run of independent blocks (``contribute_stage``)."""
    run = []
    for gi, group in enumerate(state.groups):
        if not group.stage_paths or group.block is None:
            break
        run.append(gi)
    return run


def parallel_stages(template) -> bool:
    """The template's ``build.parallel_stages``, else the data dir's setting, else false."""
    from codestudio import buildenv

    chosen = getattr(getattr(template, "build", None), "parallel_stages", None)
    return buildenv.default_parallel_stages() if chosen is None else chosen


def python_installer(template) -> str:
    """uv or pip: the template's ``build.python_installer``, else the data dir's setting, else uv."""
    from codestudio import buildenv

    build = getattr(template, "build", None)
    chosen = getattr(build, "python_installer", None)
    return chosen or buildenv.default_installer()


def run_mounts(argv: list[str], installer: str) -> list[str]:
    """The ``--mount`` values of a RUN step: what its text names.

    A step calling the build tools gets them (bind-mounted from their
    stage) and the download cache of the installer they use; a step naming
    a tool's cache folder (``blockhelpers.cache_dir``) gets that cache.
    """
    from codestudio import buildenv

    text = "\0".join(argv)
    mounts = []
    tools = buildenv.TOOLS_DIR + "/" in text
    if tools:
        mounts.append(f"type=bind,from={buildenv.TOOLS_STAGE},source={buildenv.TOOLS_DIR},target={buildenv.TOOLS_DIR}")
    for tool, folder in buildenv.CACHES.items():
        if folder in text or (tools and tool == installer):
            mounts.append(buildenv.cache_mount(tool))
    return mounts


def _tools_stage(installer: str) -> dict:
    """The build tools as a stage of the template's Dockerfile: the tools image the builder makes."""
    from codestudio import buildenv

    return {"name": buildenv.TOOLS_STAGE, "arg": buildenv.TOOLS_IMAGE_ARG, "id": buildenv.tools_id(installer),
            "installer": installer}


def tools_dockerfile(installer: str) -> tuple[str, dict[str, tuple[bytes, int]]]:
    """The Dockerfile and context files of the build tools image (:func:`codestudio.buildenv.tools_image`).

    With uv: ``install-python`` and ``verify-record.py``, and uv installed
    with pip from the package index into a venv, ``FROM`` the base image (the
    build argument ``CODESTUDIO_BASE_IMAGE``). With pip: the two scripts
    alone, ``FROM scratch``.
    """
    from codestudio import buildenv

    files = {f"build-tools/{name}": (data, 0o755) for name, data in sorted(buildenv.tool_files().items())}
    venv = f"{buildenv.TOOLS_DIR}/uv"
    script = (f"python3 -m venv {venv}\n"
              f"CODESTUDIO_INSTALLER=pip {buildenv.INSTALL_PYTHON} {venv}/bin/python uv=={buildenv.UV_VERSION}\n"
              f"{venv}/bin/uv --version\n")
    text = _jinja().get_template("BuildTools.Dockerfile.j2").render(
        version=__version__,
        installer=installer,
        ca_args=CA_ARGS,
        files_src="build-tools/",
        tools_dir=buildenv.TOOLS_DIR,
        pip_cache=buildenv.cache_mount("pip"),
        script=script,
        label=buildenv.TOOLS_LABEL,
        tools_id=buildenv.tools_id(installer),
    )
    return text, files


def _step_infos(text: str, state: BuildState) -> list[StepInfo]:
    """Number instructions as buildah does and attach each to its block group.

    Instructions come from :func:`codestudio.dockerfile.split_instructions`
    (buildah's own continuation rule); each belongs to the group whose
    ``# [n]`` marker comment is the last one above its first line. buildah
    counts steps per stage (``[stage/stages] STEP n/m``, the prefix only when
    there are several stages), from the stage's ``FROM``; arguments before
    the first ``FROM`` are no step. ``number`` runs over all stages in
    Dockerfile order.
    """
    from codestudio.dockerfile import split_instructions

    marker = re.compile(r"^# \[(\d+|labels|tools|image)\]")
    groups_at: list[tuple[int, int | str | None]] = []  # (line, group index or "tools")
    for number, line in enumerate(text.split("\n"), start=1):
        m = marker.match(line)
        if m:
            key = m.group(1)
            groups_at.append((number, int(key) if key.isdigit() else key if key == "tools" else None))
    infos: list[StepInfo] = []
    g = -1
    stage = 0
    in_stage = 0
    for instruction in split_instructions(text):
        if instruction.text.split(None, 1)[0].upper() == "FROM":
            stage += 1
            in_stage = 0
        if stage == 0:
            continue
        in_stage += 1
        while g + 1 < len(groups_at) and groups_at[g + 1][0] < instruction.start:
            g += 1
        group_index = groups_at[g][1] if g >= 0 else None
        block = None
        label = "codestudio"
        if group_index == "tools":
            label = TOOLS_STEP_LABEL
        elif group_index is not None and group_index < len(state.groups):
            block = state.groups[group_index].block
            label = state.groups[group_index].title
        elif group_index is not None:
            label = "codestudio runner"
        infos.append(
            StepInfo(
                number=len(infos) + 1,
                block_index=block.index if block else None,
                block_type=block.type if block else None,
                label=label,
                instruction=" ".join(instruction.text.split()),
                stage=stage,
                stage_number=in_stage,
            )
        )
    return infos
