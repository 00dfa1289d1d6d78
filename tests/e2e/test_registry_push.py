"""``buildah push`` to a real registry on loopback (Debian's ``docker-registry``), digest read back.

The registry is the distribution project's own server (the one Docker Hub
ran), started per test module on a free loopback port with its storage in a
temporary folder; one instance requires htpasswd credentials.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from codestudio.errors import RuntimeFailure
from codestudio.images.push import push_image

pytestmark = pytest.mark.e2e

REGISTRY_BIN = "/usr/bin/docker-registry"
MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
])
USER, PASSWORD = "pusher", "s3cret-Pa55word-xyz"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    def __init__(self, root: Path, *, htpasswd: str | None = None):
        self.root, self.port = root, _free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
            "http": {"addr": self.host},
        }
        if htpasswd is not None:
            (root / "htpasswd").write_text(htpasswd)
            config["auth"] = {"htpasswd": {"realm": "test", "path": str(root / "htpasswd")}}
        (root / "config.yml").write_text(json.dumps(config))  # YAML is a superset of JSON
        self.log = open(root / "registry.log", "wb")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(root / "config.yml")], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://{self.host}/v2/", timeout=2).status_code in (200, 401):
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"docker-registry did not start: {(root / 'registry.log').read_text()[-2000:]}")
            time.sleep(0.1)

    def manifest(self, repo: str, ref: str, auth=None) -> httpx.Response:
        return httpx.get(f"http://{self.host}/v2/{repo}/manifests/{ref}", headers={"Accept": MANIFEST_TYPES},
                         auth=auth, timeout=10)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _start(tmp_path_factory, **kw) -> Registry:
    if not Path(REGISTRY_BIN).exists():
        pytest.skip("Debian's docker-registry is not installed (apt-get install -y docker-registry)")
    return Registry(tmp_path_factory.mktemp("registry"), **kw)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    reg = _start(tmp_path_factory)
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    bcrypt = pytest.importorskip("bcrypt")
    line = f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
    reg = _start(tmp_path_factory, htpasswd=line)
    yield reg
    reg.stop()


def _auth_doc(host: str, password: str = PASSWORD) -> dict:
    return {"auths": {host: {"auth": base64.b64encode(f"{USER}:{password}".encode()).decode()}}}


def _check_digest(reg: Registry, pushed: str, tag: str, auth=None) -> None:
    name, _, digest = pushed.partition("@")
    repo = name.split("/", 1)[1]
    by_tag = reg.manifest(repo, tag, auth=auth)
    assert by_tag.status_code == 200, by_tag.text
    # The digest buildah reported is the one the registry serves, and the hash of the manifest's bytes.
    assert by_tag.headers["Docker-Content-Digest"] == digest
    assert "sha256:" + hashlib.sha256(by_tag.content).hexdigest() == digest
    by_digest = reg.manifest(repo, digest, auth=auth)
    assert by_digest.status_code == 200 and by_digest.content == by_tag.content


def test_push_returns_the_digest_the_registry_serves(registry, tiny_base):
    pushed = push_image(tiny_base, registry.host)  # loopback: plain HTTP without asking
    repo_tag = tiny_base.removeprefix("localhost/")
    assert pushed.startswith(f"{registry.host}/{repo_tag.split(':')[0]}@sha256:")
    _check_digest(registry, pushed, repo_tag.split(":")[1])
    # Pushing the same image again gives the same reference (nothing moved).
    assert push_image(tiny_base, registry.host, tls_verify=False) == pushed


def test_push_under_a_registry_path_prefix(registry, tiny_base):
    pushed = push_image(tiny_base, f"{registry.host}/team/ml", tls_verify=False)
    assert pushed.startswith(f"{registry.host}/team/ml/codestudio-test-tiny@sha256:")
    _check_digest(registry, pushed, tiny_base.rsplit(":", 1)[1])


def test_push_with_pull_secret_credentials_and_auth_file(auth_registry, tiny_base, tmp_path):
    with pytest.raises(RuntimeFailure):
        push_image(tiny_base, auth_registry.host, tls_verify=False)  # no credentials
    pushed = push_image(tiny_base, auth_registry.host, auth=_auth_doc(auth_registry.host), tls_verify=False)
    _check_digest(auth_registry, pushed, tiny_base.rsplit(":", 1)[1], auth=(USER, PASSWORD))
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps(_auth_doc(auth_registry.host)))
    assert push_image(tiny_base, auth_registry.host, authfile=authfile, tls_verify=False) == pushed


def test_wrong_credentials_never_appear_in_the_error(auth_registry, tiny_base):
    wrong = "wr0ng-Pa55word-abc"
    doc = _auth_doc(auth_registry.host, wrong)
    with pytest.raises(RuntimeFailure) as info:
        push_image(tiny_base, auth_registry.host, auth=doc, tls_verify=False)
    message = str(info.value)
    assert "failed" in message
    for secret in (wrong, doc["auths"][auth_registry.host]["auth"], f"{USER}:{wrong}"):
        assert secret not in message


def test_unreachable_registry_is_a_clear_failure(tiny_base):
    port = _free_port()
    with pytest.raises(RuntimeFailure, match="buildah push"):
        push_image(tiny_base, f"127.0.0.1:{port}", tls_verify=False, timeout=120)


@pytest.fixture(autouse=True)
def _need_buildah():
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed")
