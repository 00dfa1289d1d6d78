"""The data dir (``$CODESTUDIO_HOME``) and the well-known paths inside it."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """Return the data dir, creating it (mode 0700) if needed.

    ``$CODESTUDIO_HOME`` wins; otherwise platformdirs' user data dir.
    """
    env = os.environ.get("CODESTUDIO_HOME")
    if env:
        path = Path(env).expanduser().resolve()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("codestudio", appauthor=False))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def install_dir() -> Path:
    """The engine's installation folder: what ``${dku.install.dir}`` names."""
    return Path(__file__).resolve().parent
