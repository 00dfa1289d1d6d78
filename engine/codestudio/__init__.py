"""codestudio: build Code Studio templates into images and run studios from them.

Block authors import from here: ``hookimpl`` to implement hooks, and the
public block-author API in :mod:`codestudio.blockapi`.
"""

import pluggy

__version__ = "0.1.0"

PROJECT_NAME = "codestudio"
ENTRY_POINT_GROUP = "codestudio.blocks"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["ENTRY_POINT_GROUP", "PROJECT_NAME", "__version__", "hookimpl"]
