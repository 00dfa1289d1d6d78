"""The gateway's UI/API server block (real nginx, real server process, no containers).

With ``ui_port`` set, nginx listens on a second port (the UI origin) and
passes ``/`` and ``/api/v1`` to ``codestudio server``; studio and webapp
paths are 404 there; identity headers a client sends never reach the
server; server-sent events stream through; the content port still serves
no UI.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, headers: dict | None = None, data: bytes | None = None, method: str | None = None):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, headers=headers or {}, data=data, method=method)
    try:
        with opener.open(req, timeout=20) as resp:
            return resp.status, resp.read().decode(), resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers


@pytest.fixture
def stack(tmp_path, monkeypatch):
    from codestudio.gateway.process import Gateway

    gw_port, ui_port, server_port = _free_port(), _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and k != "CODESTUDIO_USER"}
    env.update(CODESTUDIO_HOME=str(tmp_path), CODESTUDIO_GATEWAY_PORT=str(gw_port), CODESTUDIO_GATEWAY_UI_PORT=str(ui_port),
               CODESTUDIO_GATEWAY_SERVER=f"127.0.0.1:{server_port}")
    for k in ("CODESTUDIO_HOME", "CODESTUDIO_GATEWAY_PORT", "CODESTUDIO_GATEWAY_UI_PORT", "CODESTUDIO_GATEWAY_SERVER"):
        monkeypatch.setenv(k, env[k])
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "codestudio", "server", "--port", str(server_port),
                             "--public-url", f"http://localhost:{ui_port}", "--trusted-proxy", "127.0.0.1",
                             "--content-url", f"http://127.0.0.1:{gw_port}"], env=env, stdout=log, stderr=subprocess.STDOUT)
    gw = Gateway(Path(tmp_path))
    try:
        gw.start()
        for _ in range(100):
            try:
                if _get(f"http://127.0.0.1:{server_port}/api/v1/openapi.json")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        yield {"ui": f"http://localhost:{ui_port}", "content": f"http://127.0.0.1:{gw_port}", "env": env, "home": tmp_path}
    finally:
        gw.stop()
        proc.terminate()
        proc.wait(10)
        log.close()


def _cli(stack, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "codestudio", *args], env=stack["env"], capture_output=True, text=True,
                          check=True, timeout=60).stdout


def test_ui_origin_serves_the_server_and_no_content(stack):
    ui, content = stack["ui"], stack["content"]
    status, body, _ = _get(f"{ui}/api/v1/openapi.json")
    assert status == 200 and json.loads(body)["openapi"]
    for path in ("/code-studios/P/s/8080/", "/webapps/P/w/", "/web-apps-backends/P/w_x/8080/"):
        assert _get(f"{ui}{path}")[0] == 404, path
    # The content origin has no UI.
    assert _get(f"{content}/api/v1/openapi.json")[0] == 404
    assert _get(f"{content}/signin")[0] == 404

    # Sign in through the gateway; a client's own identity headers never reach the server.
    link = _cli(stack, "login").strip().splitlines()[-1]
    assert link.startswith(f"{ui}/signin?key=")
    key = link.split("key=")[1]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor())
    with opener.open(urllib.request.Request(f"{ui}/signin", data=f"key={key}".encode(), method="POST"), timeout=20) as resp:
        assert resp.status == 200 and b'id="me"' in resp.read()
    with opener.open(urllib.request.Request(f"{ui}/api/v1/me", headers={"X-Forwarded-User": "mallory"}), timeout=20) as resp:
        me = json.loads(resp.read())
    assert me["user"] != "mallory" and me["via"] == "session"

    # Failed sign-ins are counted per client address (X-Forwarded-For from the gateway), not per gateway.
    status, _body, _ = _get(f"{ui}/signin", data=b"key=" + b"x" * 43, method="POST",
                            headers={"X-Forwarded-For": "203.0.113.9"})
    assert status == 401
    from codestudio.store import Store

    with Store(stack["home"] / "state.db").connect() as conn:
        clients = {r["client"] for r in conn.execute("SELECT client FROM signin_failures")}
    assert clients == {"127.0.0.1"}  # the gateway replaced the client's claim with the address it saw

    # Server-sent events pass through unbuffered: a job's stream arrives with its end event.
    token = _cli(stack, "token", "create", "gw").strip().splitlines()[-1]
    auth = {"Authorization": f"Bearer {token}"}
    tpl = stack["home"] / "t.yaml"
    tpl.write_text("id: gw-t\npermissions: {all: true}\nblocks:\n  - type: entrypoint\n    label: W\n"
                   "    command: [sleep, '100']\n    port: 8080\n")
    _cli(stack, "template", "add", str(tpl))
    _cli(stack, "project", "create", "GW")
    status, made, _ = _get(f"{ui}/api/v1/studios", headers={**auth, "Content-Type": "application/json"},
                           data=json.dumps({"project": "GW", "name": "s", "template": "gw-t"}).encode(), method="POST")
    assert status == 201, made
    status, job, _ = _get(f"{ui}/api/v1/studios/s/stop", headers=auth, method="POST")
    assert status == 202
    status, events, headers = _get(f"{ui}/api/v1/jobs/{json.loads(job)['id']}/events", headers=auth)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert "event: end" in events and "is not running" in events
