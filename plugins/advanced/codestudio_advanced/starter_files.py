"""``starter-files``: files written into a zone once, when a studio is created."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from codestudio import hookimpl
from codestudio.blockapi import Block, BlockParams, StarterFile, is_git_name
from codestudio.blockhelpers import resolve_resource
from codestudio.types import RelativePath, Text, Zone


def _not_git(path: str) -> str:
    if any(is_git_name(part) for part in path.split("/")):
        raise ValueError(f"{path!r}: '.git' is reserved, and so is every name Git takes for it (versioned zones are git repositories)")
    return path


class StarterFilesParams(BlockParams):
    zone: Zone = Field(
        default="code_studio-versioned",
        description="The zone the files are written into, once, when a studio is created (never on restart).",
    )
    files: dict[Annotated[RelativePath, AfterValidator(_not_git)], Text] = Field(
        default_factory=dict,
        description="Files to write: their path in the zone and their text.",
        examples=[{"notes/README.md": "Start here\n"}],
    )
    resources: list[str] = Field(
        default_factory=list,
        description="Resource files or folders copied into the zone's root under their own name: relative to "
        "the template's folder, or under ${dku.install.dir} or ${dip.home}.",
        examples=[["files/starter"]],
    )


class StarterFilesBlock(Block):
    Params = StarterFilesParams
    summary = "Files written into a zone once, when a studio is created"

    @hookimpl
    def contribute_starter_files(self, block, state):
        p: StarterFilesParams = block.params
        out = [StarterFile(zone=p.zone, path=path, content=text.encode()) for path, text in p.files.items()]
        for index, spec in enumerate(p.resources):
            resource = resolve_resource(state, spec, f"resources.{index}")
            for sub, data, mode in resource.read_files():
                rel = f"{resource.path.name}/{sub}" if sub else resource.path.name
                if sub and any(is_git_name(part) for part in rel.split("/")):
                    continue  # a resource folder's own git metadata is not a starter file
                out.append(StarterFile(zone=p.zone, path=rel, content=data, mode=0o755 if mode & 0o111 else 0o644))
        return out
