"""End-to-end: the gradio, dash and voila blocks, from ``examples/web-apps.yaml`` as shipped.

One image carries the three apps (one build instead of three), one studio
runs behind the real gateway. For each app the test checks that it is
refused without the owner's cookie, that the bootstrapped example in the
``code_studio-versioned`` zone is what it serves, and that after the file
is edited on the server and ``codestudio studio sync`` runs, the app
serves the edit:

- Gradio (prefix stripped, ``GRADIO_ROOT_PATH``): the page, ``/config``
  (the app's components) and a call of the app's function over Gradio's
  queue API, whose result streams back as server-sent events;
- Dash (full path, ``DASH_URL_BASE_PATHNAME``): the page, the layout and a
  callback;
- Voila (full path, ``--base_url``): the rendered notebook, and the kernel
  websocket of that page upgraded through the gateway.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


import blocks_e2e as S  # noqa: E402  (tests/e2e is on pytest's pythonpath)

EXAMPLE_TEXT = b"Hello from your Code Studio"


@pytest.fixture(scope="module")
def apps(tmp_path_factory, debian_base):
    with S.block_studios(tmp_path_factory, "webapps") as env:
        yield env.start(S.EXAMPLES / "web-apps.yaml", project="WA", name="apps")


@pytest.fixture(autouse=True)
def _apps_env(apps, monkeypatch):
    monkeypatch.setenv("CODESTUDIO_HOME", str(apps.env.home))
    monkeypatch.setenv("CODESTUDIO_GATEWAY_PORT", str(apps.env.gateway_port))


def _zone_file(apps, rel: str) -> Path:
    from codestudio.sync import zone_dir

    studio = apps.env.rts.get_studio(apps.studio_id)
    return zone_dir("code_studio-versioned", studio_id=studio.id, project_key=studio.project, user=studio.owner) / rel


def _sync(apps) -> None:
    proc = subprocess.run([sys.executable, "-m", "codestudio", "studio", "sync", apps.studio_id, "code_studio-versioned"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _eventually(fetch, needle: bytes, timeout: float = 90) -> bytes:
    """Poll ``fetch()`` (-> (status, body)) until a 200 body contains ``needle``."""
    deadline = time.monotonic() + timeout
    status, body = 0, b""
    while time.monotonic() < deadline:
        status, body = fetch()
        if status == 200 and needle in body:
            return body
        time.sleep(1)
    raise AssertionError(f"{needle!r} not served within {timeout:g}s (last: {status} {body[:300]!r})")


def _gradio_call(browser, base: str, name: str) -> bytes:
    status, body, _ = browser.request(f"{base}/gradio_api/call/greet", method="POST",
                                      data=json.dumps({"data": [name]}).encode(),
                                      headers={"Content-Type": "application/json"})
    assert status == 200, body[:300]
    event = json.loads(body)["event_id"]
    status, stream = browser.get(f"{base}/gradio_api/call/greet/{event}", timeout=60)
    assert status == 200
    return stream


def test_gradio_app_served_edited_and_synced(apps):
    base = f"{apps.base}/7860"
    assert S.Browser().get(f"{base}/")[0] in (401, 403)
    browser = apps.login(7860)
    status, html = browser.get(f"{base}/")
    assert status == 200 and b"gradio" in html.lower()
    # Gradio writes the browser path into the page (GRADIO_ROOT_PATH), though the prefix is stripped.
    assert f"/code-studios/WA/{apps.studio_id}/7860".encode() in html
    assert EXAMPLE_TEXT in _zone_file(apps, "gradio/app.py").read_bytes()
    _eventually(lambda: browser.get(f"{base}/config"), EXAMPLE_TEXT)
    stream = _gradio_call(browser, base, "Ada")
    assert b"event: complete" in stream and b"Hello, Ada!" in stream

    marker = f"Edited on the server {uuid.uuid4().hex[:8]}"
    path = _zone_file(apps, "gradio/app.py")
    path.write_text(path.read_text().replace("Hello from your Code Studio", marker))
    _sync(apps)
    _eventually(lambda: browser.get(f"{base}/config"), marker.encode())


def test_dash_app_served_edited_and_synced(apps):
    base = f"{apps.base}/8050"
    assert S.Browser().get(f"{base}/")[0] in (401, 403)
    browser = apps.login(8050)
    status, html = browser.get(f"{base}/")
    assert status == 200 and b"_dash-config" in html
    # Dash serves the full browser path (DASH_URL_BASE_PATHNAME), JSON-escaped in its config.
    assert f"/code-studios/WA/{apps.studio_id}/8050/".replace("/", "\\u002f").encode() in html
    assert EXAMPLE_TEXT in _zone_file(apps, "dash/app.py").read_bytes()
    layout = _eventually(lambda: browser.get(f"{base}/_dash-layout"), EXAMPLE_TEXT)
    assert b'"id":"greeting"' in layout.replace(b" ", b"")
    # A callback, as the page makes it.
    payload = {"output": "greeting.children", "outputs": {"id": "greeting", "property": "children"},
               "inputs": [{"id": "name", "property": "value", "value": "Ada"}], "changedPropIds": ["name.value"]}
    status, body, _ = browser.request(f"{base}/_dash-update-component", method="POST",
                                      data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    assert status == 200 and b"Hello, Ada!" in body, body[:300]

    marker = f"Edited on the server {uuid.uuid4().hex[:8]}"
    path = _zone_file(apps, "dash/app.py")
    path.write_text(path.read_text().replace("Hello from your Code Studio", marker))
    _sync(apps)
    _eventually(lambda: browser.get(f"{base}/_dash-layout"), marker.encode())


def test_voila_dashboard_served_edited_and_synced(apps):
    base = f"{apps.base}/8866"
    assert S.Browser().get(f"{base}/")[0] in (401, 403)
    browser = apps.login(8866)
    status, tree = browser.get(f"{base}/")
    assert status == 200 and "Voilà".encode() in tree  # the folder's page (listed by its script)
    page = _eventually(lambda: browser.get(f"{base}/voila/render/app.ipynb", timeout=120), EXAMPLE_TEXT)
    # The notebook's code ran in the studio: its output carries the browser path.
    assert f"/code-studios/WA/{apps.studio_id}".encode() in page
    # Widgets talk to the page's kernel over Jupyter's kernel websocket, through the gateway.
    kernel = re.search(rb'"kernelId":\s*"([0-9a-f-]{36})"', page)
    assert kernel, page[:500]
    ws_url = f"{base}/api/kernels/{kernel.group(1).decode()}/channels".replace("http://", "ws://", 1)
    S.WebSocket(ws_url, cookie=browser.cookie(), origin=apps.env.gateway_url).close()

    marker = f"Edited on the server {uuid.uuid4().hex[:8]}"
    path = _zone_file(apps, "voila/app.ipynb")
    path.write_text(path.read_text().replace("Hello from your Code Studio", marker))
    _sync(apps)
    _eventually(lambda: browser.get(f"{base}/voila/render/app.ipynb", timeout=120), marker.encode())
