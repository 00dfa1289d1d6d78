"""Discovering and registering block plugins.

Each entry point in the group ``codestudio.blocks`` is one block type: its
name is the ``type`` used in templates, its value a :class:`~codestudio.blockapi.Block`
subclass. :func:`load_plugins` runs once per process (never at import time)
and returns a :class:`Blocks` registry wrapping the pluggy manager.

Environment:

- ``CODESTUDIO_PLUGINS``: comma-separated allow-list of block types (or
  distributions); only those load.
- ``CODESTUDIO_DISABLED_PLUGINS``: comma-separated block-list.
- ``CODESTUDIO_STRICT_PLUGINS=1``: a block that fails to import is fatal
  instead of being reported and skipped.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from codestudio import ENTRY_POINT_GROUP, PROJECT_NAME, hookspecs
from codestudio.blockapi import Block
from codestudio.errors import PluginError


@dataclass
class LoadProblem:
    """A block that could not be loaded: reported, then skipped."""

    type: str
    distribution: str
    error: str


@dataclass
class Blocks:
    """The loaded block types and the plugin manager that calls their hooks."""

    pm: pluggy.PluginManager
    by_type: dict[str, Block] = field(default_factory=dict)
    problems: list[LoadProblem] = field(default_factory=list)
    #: Block types that exist in installed distributions but were disabled by env.
    disabled: dict[str, str] = field(default_factory=dict)
    _callers: dict[tuple[str, str], object] = field(default_factory=dict, repr=False)

    def register(self, block_type: str, plugin: Block, distribution: str = "", version: str = "") -> None:
        """Register a block object under ``block_type`` (tests use this for temporary blocks)."""
        if block_type in self.by_type:
            other = self.by_type[block_type]
            raise PluginError(
                f"block type {block_type!r} is provided by two distributions: "
                f"{other.distribution or '?'} and {distribution or '?'}; uninstall or disable one "
                "(CODESTUDIO_DISABLED_PLUGINS)"
            )
        plugin.type = block_type
        plugin.distribution = distribution or plugin.distribution or type(plugin).__module__.split(".")[0]
        plugin.version = version or plugin.version
        self.pm.register(plugin, name=block_type)
        self.by_type[block_type] = plugin
        self._callers.clear()

    def unregister(self, block_type: str) -> None:
        plugin = self.by_type.pop(block_type)
        self.pm.unregister(plugin)
        self._callers.clear()

    def call(self, hook: str, block_type: str, **kwargs):
        """Call ``hook`` on the plugin owning ``block_type`` only; returns its result or None."""
        key = (hook, block_type)
        caller = self._callers.get(key)
        if caller is None:
            owner = self.by_type[block_type]
            others = [p for p in self.by_type.values() if p is not owner]
            caller = self.pm.subset_hook_caller(hook, remove_plugins=others)
            self._callers[key] = caller
        results = caller(**kwargs)
        return results[0] if results else None

    def types(self) -> list[str]:
        return sorted(self.by_type)


def _split_env(name: str) -> set[str]:
    return {item.strip() for item in os.environ.get(name, "").split(",") if item.strip()}


def new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def load_plugins(*, entry_points: list[metadata.EntryPoint] | None = None) -> Blocks:
    """Load every installed block type; see the module docstring for the env vars.

    ``entry_points`` overrides discovery (tests).
    """
    strict = os.environ.get("CODESTUDIO_STRICT_PLUGINS", "") not in ("", "0")
    allow = _split_env("CODESTUDIO_PLUGINS")
    deny = _split_env("CODESTUDIO_DISABLED_PLUGINS")
    blocks = Blocks(pm=new_manager())
    if entry_points is None:
        entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    # Sorted so that duplicate errors and listings are stable; application
    # order never depends on this (only the template's order does).
    for ep in sorted(entry_points, key=lambda e: (e.name, _dist_name(e))):
        dist, version = _dist_name(ep), _dist_version(ep)
        if (allow and ep.name not in allow and dist not in allow) or ep.name in deny or dist in deny:
            blocks.disabled[ep.name] = dist
            continue
        try:
            obj = ep.load()
            plugin = obj() if isinstance(obj, type) else obj
            if not isinstance(plugin, Block):
                raise TypeError(f"{ep.value} is not a codestudio.blockapi.Block subclass")
        except Exception as exc:  # noqa: BLE001 - any import failure of a third-party block
            problem = LoadProblem(ep.name, dist, f"{type(exc).__name__}: {exc}")
            if strict:
                raise PluginError(
                    f"block {ep.name!r} from {dist} failed to load: {problem.error}"
                ) from exc
            blocks.problems.append(problem)
            print(
                f"codestudio: warning: skipping block {ep.name!r} from {dist}: {problem.error} "
                "(set CODESTUDIO_STRICT_PLUGINS=1 to make this fatal)",
                file=sys.stderr,
            )
            continue
        blocks.register(ep.name, plugin, dist, version)
    # A hookimpl whose name matches no spec is a typo: fail loudly.
    try:
        blocks.pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a block implements an unknown hook: {exc}") from exc
    return blocks


def _dist_name(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else "?"


def _dist_version(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.version if dist is not None else ""


def installed_distributions(entry_points: list[metadata.EntryPoint] | None = None) -> dict[str, str]:
    """Block type -> distribution for every installed entry point, loaded or not."""
    if entry_points is None:
        entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    return {ep.name: _dist_name(ep) for ep in entry_points}
