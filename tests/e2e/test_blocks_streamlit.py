"""End-to-end: the streamlit block, from ``examples/streamlit.yaml`` as shipped.

One studio behind the real gateway. Streamlit's page is a JavaScript shell;
the app itself reaches the browser over Streamlit's WebSocket
(``/_stcore/stream``) as protobuf messages, whose strings are plain UTF-8.
So the test talks to that socket through the gateway, as the page does: it
asks for a run and looks for the app's text in what comes back. Then it
edits ``streamlit/app.py`` in the ``code_studio-versioned`` zone on the
server, runs ``codestudio studio sync``, and waits for Streamlit to rerun
the app on the same connection (``runOnSave``) with the new text.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


import blocks_e2e as S  # noqa: E402  (tests/e2e is on pytest's pythonpath)

#: A BackMsg asking for a run: field 11 (``rerun_script``), an empty ClientState.
RERUN = b"\x5a\x00"
EXAMPLE_TEXT = b"Hello from your Code Studio"


@pytest.fixture(scope="module")
def app(tmp_path_factory, debian_base):
    with S.block_studios(tmp_path_factory, "streamlit") as env:
        yield env.start(S.EXAMPLES / "streamlit.yaml", project="ST", name="app")


@pytest.fixture(autouse=True)
def _app_env(app, monkeypatch):
    monkeypatch.setenv("CODESTUDIO_HOME", str(app.env.home))
    monkeypatch.setenv("CODESTUDIO_GATEWAY_PORT", str(app.env.gateway_port))


def _stream(app, browser) -> S.WebSocket:
    url = f"{app.base}/8501/_stcore/stream".replace("http://", "ws://", 1)
    ws = S.WebSocket(url, cookie=browser.cookie(), origin=app.env.gateway_url, protocols=("streamlit",))
    ws.send(RERUN)
    return ws


def _app_file(app) -> Path:
    from codestudio.sync import zone_dir

    studio = app.env.rts.get_studio(app.studio_id)
    return zone_dir("code_studio-versioned", studio_id=studio.id, project_key=studio.project, user=studio.owner) / "streamlit" / "app.py"


def test_bootstrapped_app_served_through_the_gateway(app):
    url = f"{app.base}/8501/"
    status, _ = S.Browser().get(url)
    assert status in (401, 403)
    browser = app.login(8501)
    status, html = browser.get(url)
    assert status == 200 and b"<title>Streamlit</title>" in html
    status, body = browser.get(f"{app.base}/8501/_stcore/health")
    assert status == 200 and body.strip() == b"ok"
    # The starter file is in the versioned zone on the server, and it is what runs.
    assert EXAMPLE_TEXT in _app_file(app).read_bytes()
    ws = _stream(app, browser)
    try:
        ws.wait_for(EXAMPLE_TEXT, timeout=90)
    finally:
        ws.close()


def test_app_reruns_after_edit_in_zone_and_sync(app):
    browser = app.login(8501)
    ws = _stream(app, browser)
    try:
        ws.wait_for(EXAMPLE_TEXT, timeout=90)
        marker = f"Edited on the server {uuid.uuid4().hex[:8]}"
        _app_file(app).write_text(f"import streamlit as st\n\nst.title({marker!r})\n")
        proc = subprocess.run([sys.executable, "-m", "codestudio", "studio", "sync", app.studio_id, "code_studio-versioned"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        # Streamlit sees the file change and reruns the app for the open session.
        ws.wait_for(marker.encode(), timeout=60)
    finally:
        ws.close()
    # A new visitor gets the new app too.
    ws = _stream(app, browser)
    try:
        ws.wait_for(marker.encode(), timeout=60)
    finally:
        ws.close()
    in_studio = app.exec("cat", "/home/codestudio/workspace/code_studio-versioned/streamlit/app.py")
    assert marker in in_studio
