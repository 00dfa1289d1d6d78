"""``action``: a custom command users run in their studio."""

from __future__ import annotations

from pydantic import StringConstraints
from typing import Annotated

from codestudio import hookimpl
from codestudio.blockapi import Action, Block, BlockParams
from codestudio.types import Text

ActionName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


class ActionParams(BlockParams):
    name: ActionName
    description: Text = ""
    command: Text
    wait: bool = True


class ActionBlock(Block):
    """Runs ``command`` with ``/bin/sh -c`` as the studio user; ``wait`` streams its output."""

    Params = ActionParams
    summary = "A custom action users run in the studio"

    @hookimpl
    def contribute_action(self, block, state):
        p: ActionParams = block.params
        return Action(name=p.name, label=p.label or p.name, description=p.description, command=p.command, wait=p.wait)
