"""The engine's web-app helpers: restart_on_change.py, the code env rule, WebAppBlock's package files."""

from __future__ import annotations

import subprocess
import sys
import time

from codestudio.blockhelpers import restart_on_change_script


def _wait_for(path, count: int, timeout: float = 20) -> list[str]:
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        time.sleep(0.1)
    raise AssertionError(f"expected {count} lines in {path}, got {lines}")


def test_restart_on_change_restarts_the_app_on_an_edit_and_survives_a_crash(tmp_path):
    script = tmp_path / "restart_on_change.py"
    script.write_bytes(restart_on_change_script())
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    app = app_dir / "app.py"
    log = tmp_path / "log"
    app.write_text(f"open({str(log)!r}, 'a').write('v1\\n')\nimport time\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(script), str(app_dir), "--", sys.executable, str(app)])
    try:
        assert _wait_for(log, 1) == ["v1"]
        # A sync replaces the file (new inode): the app restarts with the new code.
        new = app_dir / ".app.py.tmp"
        new.write_text(f"open({str(log)!r}, 'a').write('v2\\n')\nraise SystemExit(1)\n")
        new.replace(app)
        assert _wait_for(log, 2) == ["v1", "v2"]
        # The edited app exited by itself: the watcher waits for the next edit instead of exiting.
        time.sleep(2)
        assert proc.poll() is None
        assert log.read_text().splitlines() == ["v1", "v2"]
        app.write_text(f"open({str(log)!r}, 'a').write('v3\\n')\nimport time\ntime.sleep(60)\n")
        assert _wait_for(log, 3) == ["v1", "v2", "v3"]
    finally:
        proc.terminate()
        assert proc.wait(20) != 0


def test_a_webapp_block_reads_its_example_and_start_script_from_its_own_package(tmp_path, monkeypatch):
    """From the package a WebAppBlock class is defined in, also when that is a submodule of it."""
    import importlib

    pkg = tmp_path / "acme_webapp"
    (pkg / "files").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "block.py").write_text(
        "from codestudio.blockhelpers import WebAppBlock\n\n"
        "class AcmeBlock(WebAppBlock):\n    example_files = ('main.py', 'data.csv')\n"
    )
    (pkg / "files" / "main.py").write_text("print('hi')\n")
    (pkg / "files" / "data.csv").write_text("a,b\n")
    (pkg / "files" / "start.sh").write_text("#!/bin/sh\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        block = importlib.import_module("acme_webapp.block").AcmeBlock()
        assert block.examples == {"main.py": b"print('hi')\n", "data.csv": b"a,b\n"}
        assert block.start_script == b"#!/bin/sh\n"
    finally:
        for name in ("acme_webapp.block", "acme_webapp"):
            sys.modules.pop(name, None)
