"""``starter-files``: files written into a zone once, when a studio is created."""

from __future__ import annotations

import os
from pathlib import Path
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
    zone: Zone = "code_studio-versioned"
    files: dict[Annotated[RelativePath, AfterValidator(_not_git)], Text] = Field(default_factory=dict)
    #: Resource files or folders copied into the zone root under their own name.
    resources: list[str] = Field(default_factory=list)


class StarterFilesBlock(Block):
    Params = StarterFilesParams
    summary = "Files written into a zone once, when a studio is created"

    @hookimpl
    def contribute_starter_files(self, block, state):
        p: StarterFilesParams = block.params
        out = [StarterFile(zone=p.zone, path=path, content=text.encode()) for path, text in p.files.items()]
        for index, spec in enumerate(p.resources):
            resource = resolve_resource(state, spec, f"resources.{index}")
            if resource.is_dir:
                for dirpath, dirnames, filenames in os.walk(resource.path):
                    dirnames.sort()
                    for name in sorted(filenames):
                        source = Path(dirpath, name)
                        rel = Path(resource.path.name, source.relative_to(resource.path)).as_posix()
                        if any(is_git_name(part) for part in rel.split("/")):
                            continue  # a resource folder's own git metadata is not a starter file
                        out.append(_file(p.zone, rel, source))
            else:
                out.append(_file(p.zone, resource.path.name, resource.path))
        return out


def _file(zone: str, rel: str, source: Path) -> StarterFile:
    mode = 0o755 if source.stat().st_mode & 0o111 else 0o644
    return StarterFile(zone=zone, path=rel, content=source.read_bytes(), mode=mode)
