"""The container runner: a stdlib-only script baked into every image.

``runner.py`` is not imported by the engine at run time; the renderer copies
it into the build context (``context/codestudio/runner.py``) and the image
runs it as ``python3 /opt/codestudio/runner.py``. See docs/runner.md.
"""

from pathlib import Path

#: The runner script to copy into build contexts.
RUNNER_PATH: Path = Path(__file__).with_name("runner.py")

__all__ = ["RUNNER_PATH"]
