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


def _subclass_package(tmp_path, name: str, files: dict[str, str]):
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from codestudio_gradio import GradioBlock\n\nclass MyGradio(GradioBlock):\n    pass\n"
    )
    if files:
        (pkg / "files").mkdir()
        for file, text in files.items():
            (pkg / "files" / file).write_text(text)


def test_a_subclass_in_another_package_inherits_its_parents_files(tmp_path, monkeypatch):
    """A third-party ``class MyGradio(GradioBlock)`` without files/ of its own gets gradio's app.py and start.sh."""
    from importlib import resources

    gradio = resources.files("codestudio_gradio").joinpath("files")
    _subclass_package(tmp_path, "acme_mygradio", {})
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import acme_mygradio

        block = acme_mygradio.MyGradio()
        assert block.examples == {"app.py": gradio.joinpath("app.py").read_bytes()}
        assert block.start_script == gradio.joinpath("start.sh").read_bytes()
    finally:
        sys.modules.pop("acme_mygradio", None)


def test_a_subclass_with_its_own_file_overrides_only_that_file(tmp_path, monkeypatch):
    from importlib import resources

    gradio = resources.files("codestudio_gradio").joinpath("files")
    _subclass_package(tmp_path, "acme_mygradio_own", {"app.py": "print('mine')\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import acme_mygradio_own

        block = acme_mygradio_own.MyGradio()
        assert block.examples == {"app.py": b"print('mine')\n"}
        assert block.start_script == gradio.joinpath("start.sh").read_bytes()  # not overridden: gradio's
    finally:
        sys.modules.pop("acme_mygradio_own", None)


SINGLE_MODULE_BLOCK = '''
from codestudio.blockapi import Block
from codestudio.blockhelpers import WebAppBlock, WebAppParams


class Params(WebAppParams):
    port: int = 7000
    version: str = "1.0"
    app: str = "single/app.py"
    path: str = "/opt/codestudio/single"


class SingleBlock(WebAppBlock, Block):
    Params = Params
    home = "/opt/codestudio/single"
    tool = "single"
'''


def test_a_block_in_a_single_module_gets_an_error_naming_the_block_and_the_file(
        tmp_path, monkeypatch, codestudio_block, codestudio_render):
    """Not ``TypeError: 'x' is not a package``: the engine reports the hook's failure with the block's name."""
    import pytest

    from codestudio.errors import PluginError

    (tmp_path / "acme_single_webapp.py").write_text(SINGLE_MODULE_BLOCK)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import acme_single_webapp

        block = codestudio_block("acme-single", acme_single_webapp.SingleBlock(), distribution="acme-single")
        with pytest.raises(PluginError) as direct:
            block.start_script
        assert "block type 'acme-single'" in str(direct.value) and "files/start.sh" in str(direct.value)
        with pytest.raises(PluginError) as exc:
            codestudio_render("- type: acme-single\n")
        message = str(exc.value)
        assert "block plugin acme-single" in message and "blocks[0] (type: acme-single)" in message, message
        assert "block type 'acme-single'" in message and "files/app.py" in message, message
        assert "TypeError" not in message, message
    finally:
        sys.modules.pop("acme_single_webapp", None)
