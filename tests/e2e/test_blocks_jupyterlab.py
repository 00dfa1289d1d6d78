"""End-to-end: the jupyterlab block (with codeenv) as a user runs it.

Two templates on the default base, each built once (a no-op when a
previous session left the image) and run as one studio behind the real
gateway:

- ``examples/jupyter-lab-template.yaml`` exactly as shipped (one
  ``jupyterlab`` block): JupyterLab's own page through the gateway, only
  for the owner;
- code envs before and after the IDE: ``/api/kernelspecs`` through the
  gateway lists both (the first is the default), and the later one's
  kernel runs code in its env over the kernel WebSocket through the gateway;
  the same image carries an R code env (``language: r``, ``r-cran-jsonlite``
  from Debian), whose IRkernel kernel evaluates ``1 + 1`` and a jsonlite
  function, with the env's library first on R's library paths.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


import blocks_e2e as S  # noqa: E402  (tests/e2e is on pytest's pythonpath)

KERNELS_TEMPLATE = """\
id: e2e-blocks-jupyterlab-envs
label: JupyterLab with code envs
permissions:
  all: true
blocks:
  - type: codeenv
    name: before
    label: Before env
  - type: jupyterlab
  - type: codeenv
    name: after
    label: After env
  - type: codeenv
    name: r-stats
    label: R stats
    language: r
    debian_packages: [r-cran-jsonlite]
"""

@pytest.fixture(scope="module")
def lab(tmp_path_factory, debian_base):
    """Both studios, started in one data dir behind one gateway."""
    folder = tmp_path_factory.mktemp("jl-templates")
    (folder / "envs.yaml").write_text(KERNELS_TEMPLATE)
    with S.block_studios(tmp_path_factory, "jl") as env:
        example = env.start(S.EXAMPLES / "jupyter-lab-template.yaml", project="JL", name="example")
        envs = env.start(folder / "envs.yaml", project="JL", name="envs")
        yield {"env": env, "example": example, "envs": envs}


@pytest.fixture(autouse=True)
def _lab_env(lab, monkeypatch):
    monkeypatch.setenv("CODESTUDIO_HOME", str(lab["env"].home))
    monkeypatch.setenv("CODESTUDIO_GATEWAY_PORT", str(lab["env"].gateway_port))


def test_example_template_serves_jupyterlab_to_its_owner(lab):
    studio = lab["example"]
    url = f"{studio.base}/8888/lab"
    # Without the owner's cookie the gateway refuses before JupyterLab sees anything.
    status, _ = S.Browser().get(url)
    assert status in (401, 403)
    browser = studio.login(8888)
    status, html = browser.get(url)
    assert status == 200, html[:500]
    # JupyterLab's own page, its URLs under the studio's browser path.
    assert b"<title>JupyterLab</title>" in html
    assert f'"baseUrl": "/code-studios/JL/{studio.studio_id}/8888/"'.encode() in html
    status, body = browser.get(f"{studio.base}/8888/api/kernelspecs")
    assert status == 200
    specs = json.loads(body)
    # No code env: JupyterLab's own kernel only.
    assert specs["default"] == "python3" and list(specs["kernelspecs"]) == ["python3"]
    status, tree = browser.get(f"{studio.base}/8888/api/contents")
    assert status == 200 and json.loads(tree)["path"] == ""


def test_kernelspecs_list_code_envs_before_and_after(lab):
    studio = lab["envs"]
    browser = studio.login(8888)
    status, body = browser.get(f"{studio.base}/8888/api/kernelspecs")
    assert status == 200, body[:500]
    specs = json.loads(body)
    names = {name: spec["spec"]["display_name"] for name, spec in specs["kernelspecs"].items()}
    assert names["before"] == "Before env" and names["after"] == "After env"
    assert specs["default"] == "before"
    argv = specs["kernelspecs"]["after"]["spec"]["argv"]
    assert argv[0] == "/opt/codestudio/code-envs/after/bin/python"


def _execute_request(code: str, session: str) -> bytes:
    """A Jupyter ``execute_request`` on the shell channel, in the JSON form of the kernel WebSocket."""
    msg_id = uuid.uuid4().hex
    return json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": session, "msg_type": "execute_request",
                   "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }).encode()


def test_code_env_kernel_runs_code_through_the_gateway(lab):
    """Start the later code env's kernel and run code in it, over the kernel WebSocket through the gateway."""
    studio = lab["envs"]
    browser = studio.login(8888)
    # JupyterLab's XSRF check stays on: take its cookie from the page, as its front end does.
    status, _ = browser.get(f"{studio.base}/8888/lab")
    assert status == 200
    xsrf = browser.cookie("_xsrf")
    assert xsrf
    headers = {"X-XSRFToken": xsrf, "Content-Type": "application/json"}
    status, body, _ = browser.request(f"{studio.base}/8888/api/kernels", method="POST",
                                      data=json.dumps({"name": "after"}).encode(), headers=headers)
    assert status == 201, body[:500]
    kernel = json.loads(body)
    try:
        assert kernel["name"] == "after"
        session = uuid.uuid4().hex
        url = f"{studio.base}/8888/api/kernels/{kernel['id']}/channels?session_id={session}".replace("http://", "ws://", 1)
        ws = S.WebSocket(url, cookie=browser.cookie(), origin=studio.env.gateway_url)
        try:
            # Upper-cased, so the echoed code itself cannot match.
            ws.send(_execute_request("import sys; print(sys.prefix.upper())", session), opcode=1)
            ws.wait_for(b"/OPT/CODESTUDIO/CODE-ENVS/AFTER", timeout=90)
        finally:
            ws.close()
    finally:
        browser.request(f"{studio.base}/8888/api/kernels/{kernel['id']}", method="DELETE", headers=headers)


def test_r_code_env_kernel_runs_r_through_the_gateway(lab):
    """Start the R env's IRkernel kernel over JupyterLab's kernel WebSocket through the gateway."""
    studio = lab["envs"]
    browser = studio.login(8888)
    status, body = browser.get(f"{studio.base}/8888/api/kernelspecs")
    spec = json.loads(body)["kernelspecs"]["r-stats"]["spec"]
    assert spec["language"] == "R" and spec["display_name"] == "R stats"
    status, _ = browser.get(f"{studio.base}/8888/lab")
    headers = {"X-XSRFToken": browser.cookie("_xsrf"), "Content-Type": "application/json"}
    status, body, _ = browser.request(f"{studio.base}/8888/api/kernels", method="POST",
                                      data=json.dumps({"name": "r-stats"}).encode(), headers=headers)
    assert status == 201, body[:500]
    kernel = json.loads(body)
    try:
        session = uuid.uuid4().hex
        url = f"{studio.base}/8888/api/kernels/{kernel['id']}/channels?session_id={session}".replace("http://", "ws://", 1)
        ws = S.WebSocket(url, cookie=browser.cookie(), origin=studio.env.gateway_url)
        try:
            ws.send(_execute_request("1 + 1", session), opcode=1)
            ws.wait_for(b"[1] 2", timeout=120)
            # A function of the r-cran-* package; upper-cased so the echoed code cannot match.
            ws.send(_execute_request('cat(toupper(jsonlite::toJSON(list(answer = "forty-two"))))', session), opcode=1)
            ws.wait_for(b"FORTY-TWO", timeout=60)
            ws.send(_execute_request("cat(toupper(.libPaths()[1]))", session), opcode=1)
            ws.wait_for(b"/OPT/CODESTUDIO/CODE-ENVS/R-STATS/LIBRARY", timeout=60)
        finally:
            ws.close()
    finally:
        browser.request(f"{studio.base}/8888/api/kernels/{kernel['id']}", method="DELETE", headers=headers)
