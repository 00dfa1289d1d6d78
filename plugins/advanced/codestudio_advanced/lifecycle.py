"""``lifecycle``: when the engine stops a studio by itself (idle timeout, maximum lifetime)."""

from __future__ import annotations

from pydantic import Field

from codestudio import hookimpl
from codestudio.blockapi import Block, BlockParams, LifecyclePolicy
from codestudio.types import Duration


class LifecycleParams(BlockParams):
    idle_timeout: Duration | None = Field(
        default=None,
        description="Stop the studio after this long without activity (a duration with a unit); "
        "default: the data dir's (codestudio lifecycle set), off unless set.",
        examples=["2h", "90m"],
    )
    max_lifetime: Duration | None = Field(
        default=None,
        description="Stop the studio this long after it started, active or not; default: the data dir's, "
        "off unless set.",
        examples=["12h", "1d"],
    )


class LifecycleBlock(Block):
    """Sets the studio's idle timeout and maximum lifetime (docs/lifecycle.md).

    A field left out falls back to the data dir's default (``codestudio
    lifecycle set``; off unless set). A later ``lifecycle`` block replaces
    the fields it sets."""

    Params = LifecycleParams
    summary = "Idle timeout and maximum lifetime of the studio"

    @hookimpl
    def adjust_lifecycle(self, block, policy):
        p: LifecycleParams = block.params
        update = {k: v for k, v in (("idle_timeout", p.idle_timeout), ("max_lifetime", p.max_lifetime)) if v is not None}
        return policy.model_copy(update=update) if update else None
