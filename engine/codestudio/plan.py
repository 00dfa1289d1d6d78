"""Sequential block application: a template -> one build state.

Blocks apply in template order. For each block the engine calls its
plugin's block hooks (see :mod:`codestudio.hookspecs` for the order),
checks what they return, and appends it to the :class:`BuildState`; then it
broadcasts code envs through ``register_kernel`` so that IDEs and code envs
meet whichever order they appear in.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from codestudio.blockapi import (
    CONTEXT_DIR,
    RESERVED_CONTEXT_NAMES,
    Action,
    BlockInstance,
    BlockProblem,
    BuildState,
    CodeEnv,
    Entrypoint,
    Probe,
    Raw,
    StarterFile,
    Step,
    StepGroup,
    SyncMapping,
)
from codestudio.errors import PluginError, TemplateError
from codestudio.plugins import Blocks
from codestudio.resources import ResourceError, ResourceResolver
from codestudio.template import Template

DEFAULT_BASE_IMAGE = "localhost/codestudio-base"


def default_base_image() -> str:
    from codestudio import __version__

    return f"{DEFAULT_BASE_IMAGE}:{__version__}"


def _as_list(value, kind: type, block: BlockInstance, hook: str) -> list:
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else [value]
    for item in items:
        if not isinstance(item, kind):
            raise PluginError(
                f"block {block.type!r} ({block.distribution}): {hook} returned "
                f"{type(item).__name__}, expected {kind.__name__}"
            )
    return list(items)


def apply_blocks(template: Template, blocks: Blocks, resolver: ResourceResolver | None = None) -> BuildState:
    """Apply the template's blocks in order and return the final build state.

    Raises :class:`TemplateError` for input problems found while applying
    (port collisions, duplicate action or code env names, bad resources).
    """
    if resolver is None:
        from codestudio.home import data_dir, install_dir

        resolver = ResourceResolver(template.folder, install_dir(), data_dir())
    state = BuildState(
        template_id=template.id,
        base_image=template.base_image or default_base_image(),
        resources=resolver,
    )
    problems: list[str] = []

    def problem(block: BlockInstance, field: str | None, message: str) -> None:
        what = f"field {field!r}: " if field else ""
        loc = ("blocks", block.index) + ((field.split(".")[0],) if field else ())
        line = template.lines.line(loc) if template.lines else None
        prefix = f"line {line}: " if line else ""
        problems.append(f"{prefix}{block.where}: {what}{message}")

    for block in template.blocks:
        try:
            _apply_one(block, state, blocks, problem)
        except BlockProblem as exc:
            problem(block, exc.field, exc.message)
        except ResourceError as exc:
            problem(block, "resources", str(exc))
        except ValidationError as exc:
            # A hook built a model from block input (e.g. a path) that failed validation.
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                problem(block, loc or None, f"{err['msg']} (got {err.get('input')!r})")
    if not problems:
        # Cross-block rules see the whole template, so they hold whichever
        # order the blocks were written in.
        for block in template.blocks:
            for field, message in blocks.call("validate_block", block.type, block=block, state=state) or []:
                problem(block, field, message)
    if problems:
        raise TemplateError(str(template.path), problems)
    return state


def _apply_one(block: BlockInstance, state: BuildState, blocks: Blocks, problem) -> None:
    call = blocks.call
    t = block.type
    group = StepGroup(block=block, title=block.label)

    group.steps += _as_list(call("contribute_dockerfile", t, block=block, state=state), Step, block, "contribute_dockerfile")
    _check_resource_names(block, group, state, problem)

    new_envs = _as_list(call("contribute_code_env", t, block=block, state=state), CodeEnv, block, "contribute_code_env")
    for env in new_envs:
        existing = [(b, e) for b, e in state.code_envs if e.name == env.name]
        if existing:
            problem(block, "name", f"code env {env.name!r} is already defined by {existing[0][0].where}")
            continue
        state.code_envs.append((block, env))
        # Earlier blocks hear of the new env; their steps join this (later) block's group.
        for earlier in state.blocks:
            group.steps += _as_list(
                call("register_kernel", earlier.type, block=earlier, code_env=env, state=state),
                Step,
                earlier,
                "register_kernel",
            )

    for ep in _as_list(call("contribute_entrypoint", t, block=block, state=state), Entrypoint, block, "contribute_entrypoint"):
        if ep.port is not None:
            owner = state.port_owner(ep.port)
            if owner is not None:
                same = " (the same block)" if owner.index == block.index else ""
                problem(block, "port", f"port {ep.port} is already used by {owner.where}{same}")
                continue
        state.entrypoints.append((block, ep))

    for action in _as_list(call("contribute_action", t, block=block, state=state), Action, block, "contribute_action"):
        clash = [b for b, a in state.actions if a.name == action.name]
        if clash:
            problem(block, "name", f"action name {action.name!r} is already used by {clash[0].where}")
            continue
        state.actions.append((block, action))

    for starter in _as_list(call("contribute_starter_files", t, block=block, state=state), StarterFile, block, "contribute_starter_files"):
        state.starter_files = [
            (b, f) for b, f in state.starter_files if (f.zone, f.path) != (starter.zone, starter.path)
        ]
        state.starter_files.append((block, starter))

    sync = call("contribute_sync", t, block=block, state=state)
    if sync is not None:
        mappings, exclusions = sync
        state.sync_mappings += _as_list(mappings, SyncMapping, block, "contribute_sync")
        state.sync_exclusions += [e for e in exclusions if e not in state.sync_exclusions]
        state.sync_configured = True

    env = call("contribute_env", t, block=block, state=state)
    if env:
        state.env.update(env)

    for port in call("contribute_ports", t, block=block, state=state) or []:
        if port not in state.extra_ports:
            state.extra_ports.append(port)

    probe = call("adjust_probe", t, block=block, state=state, probe=state.probe)
    if probe is not None:
        if not isinstance(probe, Probe):
            raise PluginError(f"block {t!r} ({block.distribution}): adjust_probe returned {type(probe).__name__}")
        state.probe = probe

    # Envs announced before this block reach it now; steps join its own group.
    for announcer, env in list(state.code_envs):
        if announcer.index == block.index:
            continue
        group.steps += _as_list(
            call("register_kernel", t, block=block, code_env=env, state=state), Step, block, "register_kernel"
        )

    state.groups.append(group)
    state.blocks.append(block)


def _shown(path: Path, resolver: ResourceResolver) -> str:
    """A resource path as the template writes it (relative to its root variable)."""
    for var, root in resolver.roots.items():
        if path == root or root in path.parents:
            rel = path.relative_to(root).as_posix()
            if var == "${template.resources}":
                return rel if rel != "." else path.name
            return f"{var}/{rel}"
    return str(path)


def _check_resource_names(block: BlockInstance, group: StepGroup, state: BuildState, problem) -> None:
    """Resources sit at the build context's root under their own names: one name, one source."""
    taken: dict[str, tuple[BlockInstance, Path]] = {}
    for earlier in [*state.groups, group]:
        for step in earlier.steps:
            if not isinstance(step, Raw):
                continue
            for name, path in step.resources.items():
                shown = f"{name!r} ({_shown(path, state.resources)})"
                if name in RESERVED_CONTEXT_NAMES:
                    if earlier is group:
                        what = ("the folder of the engine's own context files" if name == CONTEXT_DIR
                                else "a file the builder reads from the build context")
                        problem(block, "resources", f"resource {shown} takes the name {name!r}, reserved for {what}; "
                                "rename the file or folder")
                    continue
                other = taken.get(name)
                if other is not None and other[1] != path and earlier is group:
                    owner = "this block" if other[0] is block else other[0].where
                    problem(block, "resources", f"resource {shown} has the same name as {name!r} "
                            f"({_shown(other[1], state.resources)}) of {owner}; resources are placed "
                            "next to the Dockerfile under their own names: rename one of them")
                    continue
                taken.setdefault(name, (earlier.block or block, path))


def plan_template(path: Path | str, blocks: Blocks | None = None) -> tuple[Template, BuildState]:
    """Load, validate and apply a template file in one go."""
    from codestudio.plugins import load_plugins
    from codestudio.template import load_template

    blocks = blocks or load_plugins()
    template = load_template(path, blocks)
    return template, apply_blocks(template, blocks)


def iter_block_types(template: Template) -> Iterable[str]:
    return (b.type for b in template.blocks)
