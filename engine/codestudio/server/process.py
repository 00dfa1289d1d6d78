"""The server as a background process (what ``make demo`` uses): start once, find it again.

``<data dir>/server.pid`` names the running server; its output goes to
``<data dir>/logs/server.log``. Stop it with ``kill $(cat <data dir>/server.pid)``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from codestudio.errors import RuntimeFailure


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{url}/api/v1/openapi.json", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def running_pid(data_dir: Path) -> int | None:
    try:
        pid = int((data_dir / "server.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def ensure_server(data_dir: Path, *, timeout: float = 30) -> tuple[str, int]:
    """Start ``codestudio server`` in the background unless it runs; returns (UI URL, pid)."""
    from codestudio.server.settings import ServerSettings

    settings = ServerSettings.load(data_dir)
    pid = running_pid(data_dir)
    if pid is not None and _answers(settings.ui_url):
        return settings.ui_url, pid
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "server.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "codestudio", "server"], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    (data_dir / "server.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeFailure(f"codestudio server exited with status {proc.returncode}; see {log_dir / 'server.log'}")
        if _answers(settings.ui_url):
            return settings.ui_url, proc.pid
        time.sleep(0.3)
    raise RuntimeFailure(f"codestudio server did not answer on {settings.ui_url} within {timeout:.0f}s; see {log_dir / 'server.log'}")
