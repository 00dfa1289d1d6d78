"""The data dir (``$CODESTUDIO_HOME``) and the well-known paths inside it."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """Return the data dir, creating it (mode 0700) if needed.

    ``$CODESTUDIO_HOME`` wins; otherwise platformdirs' user data dir. An existing
    data dir open to others is narrowed to 0700: it holds the state DB (session
    secrets), the gateway config and logs, and nothing in it is meant for other
    users (the gateway's workers get their own folder outside it).
    """
    env = os.environ.get("CODESTUDIO_HOME")
    if env:
        path = Path(env).expanduser().resolve()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("codestudio", appauthor=False))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        os.chmod(path, 0o700)
    return path


def install_dir() -> Path:
    """The engine's installation folder: what ``${dku.install.dir}`` names."""
    return Path(__file__).resolve().parent
