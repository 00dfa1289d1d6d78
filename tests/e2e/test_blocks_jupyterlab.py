"""End-to-end: the jupyterlab and codeenv blocks built with the real builder
(buildah, on the real Debian base) and run with podman through the runner.

Checks that JupyterLab serves under the studio's browser path without a
token and that ``/api/kernelspecs`` lists every code env, placed before and
after the IDE block.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

pytestmark = pytest.mark.e2e

BROWSER_PATH = "/code-studios/PROJ/lab"


def _get(url: str, timeout: float = 5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read()


def _wait(url: str, container: str, deadline_s: float = 180):
    from codestudio import containers

    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return _get(url)
        except OSError:
            if time.monotonic() > deadline:
                logs = containers.podman("logs", container, check=False)
                pytest.fail(f"{url} never answered; container logs:\n{logs.stdout}{logs.stderr}")
            time.sleep(1)


def test_jupyterlab_serves_and_lists_code_envs(tmp_path, monkeypatch, debian_base, image_cleanup):
    from codestudio import containers
    from codestudio.build.builder import build_template
    from codestudio.runtime.local import free_ports

    monkeypatch.setenv("CODESTUDIO_HOME", str(tmp_path / "home"))
    template_id = f"test-blocks-jl-{int(time.time())}"
    image_cleanup(template_id)
    path = tmp_path / "template.yaml"
    path.write_text(
        f"id: {template_id}\nbase_image: {debian_base}\nblocks:\n"
        "  - {type: codeenv, name: before, label: Before env}\n"
        "  - {type: jupyterlab}\n"
        "  - {type: codeenv, name: after, label: After env}\n"
    )
    result = build_template(str(path), quiet=True)

    (port,) = free_ports(1)
    name = f"{template_id}-run"
    containers.podman(
        "run", "-d", "--name", name, "--user", "1000",
        "-p", f"127.0.0.1:{port}:8888",
        "-e", f"DKU_CODE_STUDIO_BROWSER_PATH={BROWSER_PATH}",
        "-e", f"DKU_CODE_STUDIO_BROWSER_PATH_8888={BROWSER_PATH}/8888",
        result.image,
    )
    try:
        base = f"http://127.0.0.1:{port}{BROWSER_PATH}/8888"
        status, _ = _wait(f"{base}/api", name)
        assert status == 200
        status, body = _get(f"{base}/api/kernelspecs")
        specs = json.loads(body)
        assert status == 200
        by_name = {n: s["spec"]["display_name"] for n, s in specs["kernelspecs"].items()}
        assert by_name["before"] == "Before env" and by_name["after"] == "After env"
        assert specs["default"] == "before"
        status, html = _get(f"{base}/lab")
        assert status == 200 and b"JupyterLab" in html
        # Served under the prefix only: the bare path is not JupyterLab's.
        with pytest.raises(urllib.error.HTTPError):
            _get(f"http://127.0.0.1:{port}/api/kernelspecs")
    finally:
        containers.podman("rm", "-f", name, check=False)
