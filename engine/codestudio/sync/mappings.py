"""What a studio syncs: its mappings (zone, subfolder, target, one-way) and exclusions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pathspec

from codestudio.blockapi import SyncMapping
from codestudio.errors import UsageError
from codestudio.sync.zones import zone_dir
from codestudio.types import ZONES, default_target

Direction = Literal["both", "push", "pull"]


@dataclass(frozen=True)
class SyncStudio:
    """What sync needs to know about a studio (built by the runtime from its state)."""

    studio_id: str
    project_key: str
    owner: str
    mappings: tuple[SyncMapping, ...]
    exclusions: tuple[str, ...] = ()
    owner_email: str | None = None

    def zone_path(self, zone: str) -> Path:
        return zone_dir(zone, studio_id=self.studio_id, project_key=self.project_key, user=self.owner)


def default_mappings() -> list[SyncMapping]:
    """Every zone, two-way, to its default target: what a template without ``file-sync`` gets."""
    return [SyncMapping(zone=z, target=default_target(z)) for z in ZONES]


def mappings_for(state) -> tuple[list[SyncMapping], list[str]]:
    """Mappings and exclusions of a build state (:class:`~codestudio.blockapi.BuildState`).

    With no ``file-sync`` block every zone maps two-way to its default target.
    """
    exclusions = check_exclusions(list(getattr(state, "sync_exclusions", []) or []))
    if not getattr(state, "sync_configured", False):
        return default_mappings(), exclusions
    return list(state.sync_mappings), exclusions


def check_exclusions(patterns: Iterable[str]) -> list[str]:
    """Validate gitignore patterns (no ``!``: an exclusion can't be re-included)."""
    out = []
    for p in patterns:
        if not isinstance(p, str) or not p.strip() or "\n" in p or "\x00" in p:
            raise UsageError(f"invalid sync exclusion {p!r}")
        if p.lstrip().startswith("!"):
            raise UsageError(f"sync exclusion {p!r}: '!' (re-include) is not supported")
        out.append(p)
    try:
        pathspec.GitIgnoreSpec.from_lines(out)
    except Exception as exc:  # pathspec raises several types for bad patterns
        raise UsageError(f"invalid sync exclusion: {exc}") from None
    return out


def exclusion_regexes(patterns: Iterable[str]) -> list[str]:
    """The patterns as regular expressions, so the stdlib-only agent matches exactly as pathspec does."""
    spec = pathspec.GitIgnoreSpec.from_lines(check_exclusions(patterns))
    return [p.regex.pattern for p in spec.patterns if p.include and p.regex is not None]


def mapping_key(m: SyncMapping) -> str:
    return f"{m.zone}:{m.subfolder or ''}:{m.target}"
