"""``action``: a custom command users run in their studio."""

from __future__ import annotations

from pydantic import Field, StringConstraints
from typing import Annotated

from codestudio import hookimpl
from codestudio.blockapi import Action, Block, BlockParams
from codestudio.types import Label, Text

ActionName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


class ActionParams(BlockParams):
    name: ActionName = Field(
        description="The action's id, unique in the template: lowercase letters, digits, '-' and '_', "
        "at most 63 characters (codestudio studio run STUDIO NAME).",
        examples=["clear-cache"],
    )
    label: Label | None = Field(default=None, description="Display name of the action; default: its name.")
    description: Text = Field(default="", description="A sentence shown with the action, saying what it does.")
    command: Text = Field(
        description="Shell command, run with /bin/sh -c as the studio user.", examples=["rm -rf ~/.cache/pip"]
    )
    wait: bool = Field(
        default=True,
        description="Wait for the command, streaming its output and returning its exit status; "
        "false: start it in the background and return at once.",
    )


class ActionBlock(Block):
    """Runs ``command`` with ``/bin/sh -c`` as the studio user; ``wait`` streams its output."""

    Params = ActionParams
    summary = "A custom action users run in the studio"

    @hookimpl
    def contribute_action(self, block, state):
        p: ActionParams = block.params
        return Action(name=p.name, label=p.label or p.name, description=p.description, command=p.command, wait=p.wait)
