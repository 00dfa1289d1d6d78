"""Sequential block application: a template -> one build state.

Blocks apply in template order. For each block the engine calls its
plugin's block hooks (see :mod:`codestudio.hookspecs` for the order),
checks what they return, and appends it to the :class:`BuildState`; then it
broadcasts code envs through ``register_code_env`` so that IDEs and code envs
meet whichever order they appear in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
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
    Activity,
    Entrypoint,
    LifecyclePolicy,
    PodSettings,
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
from codestudio.text import shown

DEFAULT_BASE_IMAGE = "localhost/codestudio-base"


def default_base_image() -> str:
    from codestudio import __version__

    return f"{DEFAULT_BASE_IMAGE}:{__version__}"


class _WrongReturn(Exception):
    """A hook returned something its row of :data:`HOOK_RETURNS` does not allow."""


def _items(kind: type) -> Callable[[object], list]:
    """One ``kind``, a list of them, or None -> a list."""

    def check(value: object) -> list:
        if value is None:
            return []
        items = list(value) if isinstance(value, list | tuple) else [value]
        for item in items:
            if not isinstance(item, kind):
                raise _WrongReturn(f"{type(item).__name__} {_short(item)}")
        return items

    return check


def _list_of(kind: type) -> Callable[[object], list]:
    """A list of ``kind``, or None -> a list."""
    one = _items(kind)

    def check(value: object) -> list:
        if value is not None and not isinstance(value, list | tuple):
            raise _WrongReturn(f"{type(value).__name__} {_short(value)}")
        return one(value)

    return check


def _sync_return(value: object) -> tuple[list, list] | None:
    if value is None:
        return None
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise _WrongReturn(f"{type(value).__name__} {_short(value)}")
    mappings, exclusions = value
    mappings = _list_of(SyncMapping)(mappings)
    if not isinstance(exclusions, list | tuple) or not all(isinstance(e, str) for e in exclusions):
        raise _WrongReturn(f"exclusions {_short(exclusions)}")
    return mappings, list(exclusions)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_return(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _WrongReturn(f"{type(value).__name__} {_short(value)}")
    for name, val in value.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise _WrongReturn(f"the variable name {_short(name)}")
        if not isinstance(val, str):
            raise _WrongReturn(f"{type(val).__name__} {_short(val)} as the value of {name}")
    return dict(value)


def _ports_return(value: object) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise _WrongReturn(f"{type(value).__name__} {_short(value)}")
    for port in value:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise _WrongReturn(f"{type(port).__name__} {_short(port)}")
    return list(value)


def _stage_return(value: object) -> tuple[str, ...]:
    from codestudio.types import _container_path

    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise _WrongReturn(f"{type(value).__name__} {_short(value)}")
    paths = []
    for path in value:
        try:
            checked = _container_path(path) if isinstance(path, str) else None
        except ValueError:
            checked = None
        if checked is None or checked in ("/", "/opt", "/opt/codestudio", "/usr", "/etc", "/home", "/home/codestudio"):
            raise _WrongReturn(f"the folder {_short(path)}")
        paths.append(checked)
    return tuple(paths)


def _probe_return(value: object) -> Probe | None:
    if value is not None and not isinstance(value, Probe):
        raise _WrongReturn(f"{type(value).__name__} {_short(value)}")
    return value


def _pod_return(value: object) -> PodSettings | None:
    if value is None:
        return None
    if not isinstance(value, PodSettings):
        raise _WrongReturn(f"{type(value).__name__} {_short(value)}")
    try:  # model_copy(update=...) does not validate: check the quantities here
        return PodSettings.model_validate(value.model_dump())
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _WrongReturn(f"PodSettings with {'.'.join(map(str, first['loc']))} {_short(first.get('input'))}") from None


def _lifecycle_return(value: object) -> LifecyclePolicy | None:
    if value is not None and not isinstance(value, LifecyclePolicy):
        raise _WrongReturn(f"{type(value).__name__} {_short(value)}")
    return value


def _activity_return(value: object) -> Activity | None:
    if value is None:
        return None
    if (not isinstance(value, Activity) or not isinstance(value.busy, bool) or not isinstance(value.detail, str)
            or not (value.at is None or (isinstance(value.at, int | float) and not isinstance(value.at, bool)))):
        raise _WrongReturn(f"{type(value).__name__} {_short(value)}")
    return value


def _problems_return(value: object) -> list[tuple[str | None, str]]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise _WrongReturn(f"{type(value).__name__} {_short(value)}")
    for item in value:
        if (not isinstance(item, tuple | list) or len(item) != 2 or not isinstance(item[1], str)
                or not (item[0] is None or isinstance(item[0], str))):
            raise _WrongReturn(f"the problem {_short(item)}")
    return [tuple(item) for item in value]


def _short(value: object) -> str:
    return shown(value)


#: What every hook may return (in words, as the error says it) and the check
#: that enforces it; :func:`call_hook` applies it to every hook call. Every
#: hook in :mod:`codestudio.hookspecs` has a row (a test checks this).
HOOK_RETURNS: dict[str, tuple[str, Callable[[object], object]]] = {
    "contribute_dockerfile": ("a list of Step (Run, Copy, Env, Workdir, Raw) or None", _items(Step)),
    "contribute_stage": ("a list of absolute folder paths (not / or a system folder) or None", _stage_return),
    "contribute_code_env": ("a CodeEnv, a list of them, or None", _items(CodeEnv)),
    "contribute_entrypoint": ("an Entrypoint, a list of them, or None", _items(Entrypoint)),
    "contribute_action": ("an Action, a list of them, or None", _items(Action)),
    "contribute_starter_files": ("a list of StarterFile or None", _items(StarterFile)),
    "contribute_sync": ("a tuple (list of SyncMapping, list of str patterns) or None", _sync_return),
    "contribute_env": ("a dict of variable names to str values, or None", _env_return),
    "contribute_ports": ("a list of port numbers (int 1-65535) or None", _ports_return),
    "adjust_probe": ("a Probe or None", _probe_return),
    "adjust_pod": ("a PodSettings or None", _pod_return),
    "adjust_lifecycle": ("a LifecyclePolicy or None", _lifecycle_return),
    "report_activity": ("an Activity (at: float or None, busy: bool, detail: str) or None", _activity_return),
    "register_code_env": ("a list of Step or None", _items(Step)),
    "validate_block": ("a list of (field or None, message) tuples, or None", _problems_return),
}


def _plugin_name(blocks: Blocks, block: BlockInstance) -> str:
    plugin = blocks.by_type.get(block.type)
    dist = block.distribution or (plugin.distribution if plugin else "") or "?"
    version = block.version or (plugin.version if plugin else "")
    return f"{dist} {version}".strip()


def call_hook(blocks: Blocks, hook: str, block: BlockInstance, **kwargs):
    """Call ``hook`` on ``block``'s plugin and check the result against :data:`HOOK_RETURNS`.

    Returns the checked (normalised) value. A hook that raises, other than
    the ways a block reports bad input (:class:`BlockProblem`,
    :class:`ResourceError`, pydantic's ``ValidationError``), and a wrong
    return value both become a :class:`PluginError` (exit 1) naming the
    distribution and version, the hook and the block.
    """
    rule, check = HOOK_RETURNS[hook]
    try:
        value = blocks.call(hook, block.type, block=block, **kwargs)
    except (BlockProblem, ResourceError, ValidationError):
        raise
    except Exception as exc:  # noqa: BLE001 - a third-party block's bug, reported with its name
        message = str(exc).strip() or "(no message)"
        raise PluginError(
            f"block plugin {_plugin_name(blocks, block)}: hook {hook} failed for {block.where}: "
            f"{type(exc).__name__}: {message}"
        ) from exc
    try:
        return check(value)
    except _WrongReturn as exc:
        raise PluginError(
            f"block plugin {_plugin_name(blocks, block)}: hook {hook} returned {exc} for {block.where}; "
            f"it must return {rule}"
        ) from None


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
    details: list[dict] = []

    def problem(block: BlockInstance, field: str | None, message: str) -> None:
        what = f"field {field!r}: " if field else ""
        loc = ("blocks", block.index) + ((field.split(".")[0],) if field else ())
        line = template.lines.line(loc) if template.lines else None
        prefix = f"line {line}: " if line else ""
        problems.append(f"{prefix}{block.where}: {what}{message}")
        details.append({"block": block.index, "type": block.type, "field": field or None, "line": line,
                        "message": problems[-1]})

    index = _Index()
    for block in template.blocks:
        try:
            _apply_one(block, state, blocks, problem, index)
        except BlockProblem as exc:
            problem(block, exc.field, exc.message)
        except ResourceError as exc:
            problem(block, "resources", str(exc))
        except ValidationError as exc:
            # A hook built a model from block input (e.g. a path) that failed validation.
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                problem(block, loc or None, f"{err['msg']} (got {shown(err.get('input'))})")
    if index.starter_replaced:
        # A later starter file of the same zone and path replaces the earlier one.
        state.starter_files = [
            entry for position, entry in enumerate(state.starter_files)
            if index.starter_files[(entry[1].zone, entry[1].path)] == position
        ]
    if not problems:
        # Cross-block rules see the whole template, so they hold whichever
        # order the blocks were written in.
        for block in template.blocks:
            for field, message in call_hook(blocks, "validate_block", block, state=state):
                problem(block, field, message)
    if problems:
        raise TemplateError(str(template.path), problems, details)
    return state


class _Index:
    """What the blocks applied so far claimed, by key: every clash check is one lookup,
    so planning grows linearly with the number of blocks."""

    def __init__(self) -> None:
        self.code_envs: dict[str, BlockInstance] = {}
        self.ports: dict[int, BlockInstance] = {}
        self.actions: dict[str, BlockInstance] = {}
        self.starter_files: dict[tuple[str, str], int] = {}  # (zone, path) -> position in state.starter_files
        self.starter_replaced = False
        self.exclusions: set[str] = set()
        self.extra_ports: set[int] = set()
        self.resource_names: dict[str, tuple[BlockInstance, Path]] = {}
        #: Blocks whose plugin implements register_code_env (the broadcast only reaches them).
        self.code_env_listeners: list[BlockInstance] = []


def _listens(blocks: Blocks, block: BlockInstance) -> bool:
    """Whether the block's plugin implements ``register_code_env``."""
    plugin = blocks.by_type.get(block.type)
    hook = getattr(blocks.pm.hook, "register_code_env", None)
    return plugin is not None and hook is not None and any(impl.plugin is plugin for impl in hook.get_hookimpls())


def _apply_one(block: BlockInstance, state: BuildState, blocks: Blocks, problem, index: _Index | None = None) -> None:
    index = index or _Index()

    def call(hook: str, target: BlockInstance = block, **kwargs):
        return call_hook(blocks, hook, target, state=state, **kwargs)

    group = StepGroup(block=block, title=block.label)

    group.steps += call("contribute_dockerfile")
    group.stage_paths = call("contribute_stage")
    _check_resource_names(block, group, state, problem, index.resource_names)

    for env in call("contribute_code_env"):
        existing = index.code_envs.get(env.name)
        if existing is not None:
            problem(block, "name", f"code env {env.name!r} is already defined by {existing.where}")
            continue
        index.code_envs[env.name] = block
        state.code_envs.append((block, env))
        # Earlier blocks hear of the new env; their steps join this (later) block's group.
        for earlier in index.code_env_listeners:
            group.steps += call("register_code_env", earlier, code_env=env)

    for ep in call("contribute_entrypoint"):
        if ep.port is not None:
            owner = index.ports.get(ep.port)
            if owner is not None:
                same = " (the same block)" if owner.index == block.index else ""
                problem(block, "port", f"port {ep.port} is already used by {owner.where}{same}")
                continue
            index.ports[ep.port] = block
        state.entrypoints.append((block, ep))

    for action in call("contribute_action"):
        clash = index.actions.get(action.name)
        if clash is not None:
            problem(block, "name", f"action name {action.name!r} is already used by {clash.where}")
            continue
        index.actions[action.name] = block
        state.actions.append((block, action))

    for starter in call("contribute_starter_files"):
        key = (starter.zone, starter.path)
        index.starter_replaced |= key in index.starter_files
        index.starter_files[key] = len(state.starter_files)
        state.starter_files.append((block, starter))

    sync = call("contribute_sync")
    if sync is not None:
        mappings, exclusions = sync
        state.sync_mappings += mappings
        for e in exclusions:
            if e not in index.exclusions:
                index.exclusions.add(e)
                state.sync_exclusions.append(e)
        state.sync_configured = True

    state.env.update(call("contribute_env"))

    for port in call("contribute_ports"):
        if port not in index.extra_ports:
            index.extra_ports.add(port)
            state.extra_ports.append(port)

    probe = call("adjust_probe", probe=state.probe)
    if probe is not None:
        state.probe = probe

    pod = call("adjust_pod", pod=state.pod)
    if pod is not None:
        if pod.memory != state.pod.memory:
            state.memory_block = block
        state.pod = pod

    policy = call("adjust_lifecycle", policy=state.lifecycle)
    if policy is not None:
        state.lifecycle = policy

    # Envs announced before this block reach it now; steps join its own group.
    if _listens(blocks, block):
        for announcer, env in list(state.code_envs):
            if announcer.index == block.index:
                continue
            group.steps += call("register_code_env", code_env=env)
        index.code_env_listeners.append(block)

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


def _check_resource_names(block: BlockInstance, group: StepGroup, state: BuildState, problem,
                          taken: dict[str, tuple[BlockInstance, Path]] | None = None) -> None:
    """Resources sit at the build context's root under their own names: one name, one source.

    ``taken`` holds the names earlier blocks claimed (kept by the caller, so
    each block's resources are checked once, not every block's again).
    """
    taken = {} if taken is None else taken
    for step in group.steps:
        if not isinstance(step, Raw):
            continue
        for name, path in step.resources.items():
            shown_name = f"{name!r} ({_shown(path, state.resources)})"
            if name in RESERVED_CONTEXT_NAMES:
                what = ("the folder of the engine's own context files" if name == CONTEXT_DIR
                        else "a file the builder reads from the build context")
                problem(block, "resources", f"resource {shown_name} takes the name {name!r}, reserved for {what}; "
                        "rename the file or folder")
                continue
            other = taken.get(name)
            if other is not None and other[1] != path:
                owner = "this block" if other[0] is block else other[0].where
                problem(block, "resources", f"resource {shown_name} has the same name as {name!r} "
                        f"({_shown(other[1], state.resources)}) of {owner}; resources are placed "
                        "next to the Dockerfile under their own names: rename one of them")
                continue
            taken.setdefault(name, (block, path))


def plan_template(path: Path | str, blocks: Blocks | None = None) -> tuple[Template, BuildState]:
    """Load, validate and apply a template file in one go."""
    from codestudio.plugins import load_plugins
    from codestudio.template import load_template

    blocks = blocks or load_plugins()
    template = load_template(path, blocks)
    return template, apply_blocks(template, blocks)


def iter_block_types(template: Template) -> Iterable[str]:
    return (b.type for b in template.blocks)
