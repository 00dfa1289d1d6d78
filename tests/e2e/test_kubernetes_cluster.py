"""Against a real Kubernetes cluster: runtime set, build, push, start, gateway, sync, an action, stop.

Runs only when ``CODESTUDIO_TEST_KUBECONFIG`` names a kubeconfig (its
current context is used); ``CODESTUDIO_TEST_K8S_NAMESPACE`` (default
``codestudio-test``, which must exist) and ``CODESTUDIO_TEST_REGISTRY`` (a
registry the cluster pulls from and this machine pushes to, default
``localhost:5000``) say where. The gateway runs here, so the studios are
reached through port-forwards (``--gateway port-forward``). Without a
cluster it is skipped with that reason: the machines this project is tested
on have none (docs/kubernetes.md, "What was tested").
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

KUBECONFIG = os.environ.get("CODESTUDIO_TEST_KUBECONFIG")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not KUBECONFIG, reason="CODESTUDIO_TEST_KUBECONFIG is not set: no Kubernetes cluster to test against"),
]

TEMPLATE = """
id: {id}
permissions: {{all: true}}
blocks:
  - type: entrypoint
    label: files
    command: [python3, -m, http.server, "8765", --directory, /home/codestudio/workspace/code_studio-versioned]
    port: 8765
    expose_html: true
    proxied_subpath: /
  - type: action
    name: hello
    command: echo hello from the cluster > /home/codestudio/workspace/code_studio-versioned/hello.txt
    wait: true
  - type: starter-files
    zone: code_studio-versioned
    files: {{index.html: "served from a cluster\\n"}}
  - type: kubernetes
    cpu: 250m
    memory: 256Mi
"""


@pytest.fixture
def cluster_home(tmp_path):
    env = {**os.environ, "CODESTUDIO_HOME": str(tmp_path / "home"), "KUBECONFIG": KUBECONFIG,
           "CODESTUDIO_USER": os.environ.get("USER", "root")}

    def cs(*args, check=True, timeout=900):
        proc = subprocess.run([sys.executable, "-m", "codestudio", *args], env=env, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"codestudio {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    return cs, tmp_path


def test_a_studio_on_a_real_cluster(cluster_home):
    cs, tmp_path = cluster_home
    namespace = os.environ.get("CODESTUDIO_TEST_K8S_NAMESPACE", "codestudio-test")
    registry = os.environ.get("CODESTUDIO_TEST_REGISTRY", "localhost:5000")
    cs("runtime", "set", "kubernetes", "--namespace", namespace, "--registry", registry, "--gateway", "port-forward")
    template_id = f"k8s-e2e-{uuid.uuid4().hex[:6]}"
    (tmp_path / "t.yaml").write_text(TEMPLATE.format(id=template_id))
    cs("template", "add", str(tmp_path / "t.yaml"))
    cs("project", "create", "K8SE2E")
    studio = cs("studio", "create", "K8SE2E", "on-cluster", "--template", template_id).stdout.strip()
    try:
        start = cs("studio", "start", studio, "--timeout", "600")
        for step in ("applied Deployment", "scheduled:", "started"):
            assert step in start.stderr
        cs("gateway", "start")
        url = cs("studio", "url", studio).stdout.strip().splitlines()[0]
        # The owner's signed link, as `studio url` prints it, gets through the gateway to the pod.
        deadline = time.monotonic() + 60
        while True:
            try:
                body = urllib.request.urlopen(url, timeout=10).read().decode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        assert "served from a cluster" in body or "index.html" in body
        cs("studio", "run", studio, "hello")
        cs("studio", "pull", studio)
        zone = tmp_path / "home" / "zones" / "projects" / "K8SE2E" / "studios" / studio / "code_studio-versioned"
        assert "hello from the cluster" in (zone / "hello.txt").read_text()
        cs("studio", "stop", studio)
        assert "STOPPED" in cs("studio", "status", studio).stdout
    finally:
        cs("studio", "delete", studio, "--force", check=False)
        cs("gateway", "stop", check=False)
