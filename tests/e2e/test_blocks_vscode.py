"""End-to-end: the vscode block (code-server from npm) with two code envs.

One template on the default base (VS Code first, then two code envs, the
order docs/blocks.md recommends so a code env change keeps code-server's
layers), built once: the npm install compiles VS Code's native modules and
takes minutes cold, seconds when a previous session left the image or its
layers. One studio behind the real gateway; the checks: code-server's own
page and health endpoint through the gateway (prefix stripped), the
workspace's ``.vscode/settings.json`` and ``launch.json`` naming each code
env's interpreter (read through code-server itself), and those interpreters
running in the studio.
"""

from __future__ import annotations

import json
import sys
import urllib.parse
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


import blocks_e2e as S  # noqa: E402  (tests/e2e is on pytest's pythonpath)

TEMPLATE = """\
id: e2e-blocks-vscode
label: VS Code e2e
permissions:
  all: true
blocks:
  - type: vscode
  - type: codeenv
    name: py-tools
    label: Python (tools)
  - type: codeenv
    name: py-extra
    label: Python (extra)
"""
ENVS = {
    "py-tools": ("Python (tools)", "/opt/codestudio/code-envs/py-tools/bin/python"),
    "py-extra": ("Python (extra)", "/opt/codestudio/code-envs/py-extra/bin/python"),
}
VSCODE_DIR = "/home/codestudio/workspace/.vscode"


@pytest.fixture(scope="module")
def vscode(tmp_path_factory, debian_base):
    folder = tmp_path_factory.mktemp("vscode-template")
    (folder / "template.yaml").write_text(TEMPLATE)
    with S.block_studios(tmp_path_factory, "vscode") as env:
        yield env.start(folder / "template.yaml", project="VS", name="main")


@pytest.fixture(autouse=True)
def _vscode_env(vscode, monkeypatch):
    monkeypatch.setenv("CODESTUDIO_HOME", str(vscode.env.home))
    monkeypatch.setenv("CODESTUDIO_GATEWAY_PORT", str(vscode.env.gateway_port))


def test_code_server_page_through_the_gateway(vscode):
    url = f"{vscode.base}/8080/"
    status, _ = S.Browser().get(url)
    assert status in (401, 403)
    browser = vscode.login(8080)
    status, html = browser.get(url)
    assert status == 200, html[:500]
    # code-server's workbench page, with relative URLs only (the gateway strips the prefix).
    assert b'id="vscode-workbench-web-configuration"' in html, html[:1000]
    assert b'href="/' not in html and b'src="/' not in html
    status, body = browser.get(f"{vscode.base}/8080/healthz")
    assert status == 200 and json.loads(body)["status"] in ("alive", "expired")


def _read_through_code_server(vscode, browser, path: str) -> bytes:
    """A file of the studio as VS Code's front end reads it (its remote resource route)."""
    query = urllib.parse.urlencode({"path": path})
    status, body = browser.get(f"{vscode.base}/8080/vscode-remote-resource?{query}")
    assert status == 200, f"{path}: {status} {body[:300]!r}"
    return body


def test_workspace_settings_name_each_code_env(vscode):
    browser = vscode.login(8080)
    settings = json.loads(_read_through_code_server(vscode, browser, f"{VSCODE_DIR}/settings.json"))
    launch = json.loads(_read_through_code_server(vscode, browser, f"{VSCODE_DIR}/launch.json"))
    assert settings["python.defaultInterpreterPath"] == ENVS["py-tools"][1]
    assert settings["codestudio.codeEnvs"] == {name: {"label": label, "python": python} for name, (label, python) in ENVS.items()}
    assert "/opt/codestudio/code-envs" in settings["python.venvFolders"]
    configs = {c["codestudioCodeEnv"]: c for c in launch["configurations"]}
    assert set(configs) == set(ENVS)
    for name, (label, python) in ENVS.items():
        assert configs[name]["python"] == python
        assert configs[name]["type"] == "debugpy" and configs[name]["name"] == f"Python: current file ({label})"


def test_code_env_interpreters_run_and_settings_belong_to_the_user(vscode):
    for name, (_label, python) in ENVS.items():
        prefix = vscode.exec(python, "-c", "import sys; print(sys.prefix)").strip()
        assert prefix == f"/opt/codestudio/code-envs/{name}"
    # The studio user may edit the workspace settings (they were written as root at build time).
    owner = vscode.exec("stat", "-c", "%U", f"{VSCODE_DIR}/settings.json", f"{VSCODE_DIR}/launch.json").split()
    assert owner == ["codestudio", "codestudio"]
    # User settings are links into the user-versioned zone, so they follow the user.
    target = vscode.exec("readlink", "/home/codestudio/.local/share/code-server/User/settings.json").strip()
    assert target == "/home/codestudio/workspace/user-versioned/.vscode-user/settings.json"


def test_workbench_websocket_through_the_gateway(vscode):
    """The workbench talks to code-server over a WebSocket at its base URL: the upgrade must pass the gateway.

    code-server checks that the Origin matches the Host it sees, so this
    also checks that the gateway forwards the browser's Host.
    """
    browser = vscode.login(8080)
    query = urllib.parse.urlencode({"reconnectionToken": str(uuid.uuid4()), "reconnection": "false",
                                    "skipWebSocketFrames": "false"})
    url = f"{vscode.base}/8080/?{query}".replace("http://", "ws://", 1)
    ws = S.WebSocket(url, cookie=browser.cookie(), origin=vscode.env.gateway_url)  # fails unless 101
    ws.close()
