"""codestudio: build Code Studio templates into images and run studios from them.

Block authors import from here: ``hookimpl`` to implement hooks, and the
public block-author API in :mod:`codestudio.blockapi`.
"""

from __future__ import annotations

__version__ = "0.1.0"

PROJECT_NAME = "codestudio"
ENTRY_POINT_GROUP = "codestudio.blocks"

__all__ = ["ENTRY_POINT_GROUP", "PROJECT_NAME", "__version__", "hookimpl"]


def __getattr__(name: str):
    # pluggy is imported on first use of ``hookimpl`` so that CLI start-up
    # (``codestudio --help``) does not pay for it.
    if name == "hookimpl":
        import pluggy

        marker = pluggy.HookimplMarker(PROJECT_NAME)
        globals()["hookimpl"] = marker
        return marker
    raise AttributeError(f"module 'codestudio' has no attribute {name!r}")
