"""``file-sync``: which zones are synced with which folders of the studio."""

from __future__ import annotations

import pathspec
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from codestudio import hookimpl
from codestudio.blockapi import Block, BlockParams, SyncMapping
from codestudio.types import ContainerPath, Zone, ZoneSubfolder, default_target


class MappingParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    zone: Zone = Field(description="The zone to sync.")
    subfolder: ZoneSubfolder | None = Field(
        default=None, description="Only this folder of the zone; default: the whole zone.", examples=["python"]
    )
    target: ContainerPath | None = Field(
        default=None,
        description="Folder in the studio; default: the zone's default target (plus the subfolder).",
        examples=["/home/codestudio/workspace/project-lib-versioned/python"],
    )
    one_way: bool = Field(
        default=False, description="Only server to studio: edits made in the studio are never written back."
    )


class FileSyncParams(BlockParams):
    mappings: list[MappingParams] = Field(
        default_factory=list,
        description="Zones (or their subfolders) and the studio folders they sync with: only these are synced "
        "(without a file-sync block every zone maps two-way to its default target).",
    )
    exclusions: list[str] = Field(
        default_factory=list,
        description="Paths never synced, in gitignore syntax relative to each mapped folder; '!' is refused.",
        examples=[["*.pyc", ".ipynb_checkpoints/", "node_modules/"]],
    )

    @field_validator("exclusions")
    @classmethod
    def _gitignore_without_negation(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if any(ord(c) < 32 for c in pattern):
                raise ValueError(f"{pattern!r} contains a control character")
            if pattern.lstrip().startswith("!"):
                raise ValueError(f"{pattern!r}: '!' (re-include) patterns are not supported")
        pathspec.PathSpec.from_lines("gitignore", patterns)
        return patterns

    @model_validator(mode="after")
    def _distinct_targets(self):
        seen = {}
        for m in self.mappings:
            target = m.target or default_target(m.zone)
            if target in seen:
                raise ValueError(f"two mappings target {target}")
            seen[target] = m
        return self


class FileSyncBlock(Block):
    """With no ``file-sync`` block every zone maps two-way to its default target."""

    Params = FileSyncParams
    summary = "Map zones (or subfolders) to folders in the studio, with exclusions"

    @hookimpl
    def contribute_sync(self, block, state):
        p: FileSyncParams = block.params
        mappings = [
            SyncMapping(
                zone=m.zone,
                subfolder=m.subfolder,
                target=m.target or default_target(m.zone) + (f"/{m.subfolder}" if m.subfolder else ""),
                one_way=m.one_way,
            )
            for m in p.mappings
        ]
        return mappings, list(p.exclusions)
