"""Render-level tests of the rstudio block."""

import json
import subprocess
import sys
import textwrap
from importlib import resources

import pytest
import yaml

from codestudio.errors import TemplateError
from codestudio.render import StudioContext, render_template

FILES = resources.files("codestudio_rstudio").joinpath("files")
SHA = "ab" * 32
URL = "https://downloads.example.org/server/jammy/amd64/rstudio-server-2024.12.1-563-amd64.deb"


@pytest.fixture
def render(tmp_path, monkeypatch):
    monkeypatch.setenv("CODESTUDIO_HOME", str(tmp_path / "home"))

    def _render(blocks: str, studio=None):
        (tmp_path / "files").mkdir(exist_ok=True)
        (tmp_path / "files" / "rstudio-server.deb").write_bytes(b"!<arch>\n")
        path = tmp_path / "template.yaml"
        path.write_text("id: t\nblocks:\n" + textwrap.indent(textwrap.dedent(blocks), "  "))
        return render_template(path, studio)

    return _render


def test_deb_url_with_sha256(render):
    r = render(f"- type: rstudio\n  deb_url: {URL}\n  sha256: {SHA}\n  apt_packages: [r-cran-ggplot2]\n")
    fetch, install, start = r.state.groups[0].steps
    assert fetch.dest == "/opt/codestudio/rstudio/fetch_deb.py"
    assert f"python3 /opt/codestudio/rstudio/fetch_deb.py {URL} {SHA} /opt/codestudio/rstudio/rstudio-server.deb" in install.script
    assert "apt-get install -y --no-install-recommends r-base-core r-cran-ggplot2 /opt/codestudio/rstudio/rstudio-server.deb" in install.script
    # No downloaded .debs left in the layer (the base image has no apt clean-up hook).
    assert install.script.index("apt-get clean") > install.script.index("apt-get install")
    assert start.dest == "/opt/codestudio/rstudio/start.sh" and start.mode == 0o755
    doc = json.loads(r.runner_json)
    (ep,) = doc["entrypoints"]
    assert ep["command"] == ["/opt/codestudio/rstudio/start.sh", "8787", "${DKU_CODE_STUDIO_BROWSER_PATH_8787}"]
    assert ep["proxied_subpath"] == "/" and ep["port"] == 8787
    assert doc["probe"] == {"kind": "http", "port": 8787, "url": "${baseUrl}/"}
    assert "path: /\n" in render(f"- type: rstudio\n  deb_url: {URL}\n  sha256: {SHA}\n", StudioContext("P", "s")).kubernetes_yaml


def test_deb_resource(render):
    r = render("- type: rstudio\n  deb: files/rstudio-server.deb\n  port: 8788\n")
    copy = r.state.groups[0].steps[0]
    assert copy.dest == "/opt/codestudio/rstudio/rstudio-server.deb"
    assert "fetch_deb" not in r.dockerfile
    assert json.loads(r.runner_json)["entrypoints"][0]["port"] == 8788


@pytest.mark.parametrize(
    "params, expected",
    [
        ({}, "either as deb_url"),
        ({"deb_url": URL}, "needs sha256"),
        ({"deb_url": URL, "sha256": "nothex"}, "needs sha256"),
        ({"deb_url": "https://x.org/a.deb; rm -rf /", "sha256": SHA}, "must be an http(s) URL"),
        ({"deb": "files/rstudio-server.deb", "deb_url": URL, "sha256": SHA}, "either as deb_url"),
        ({"deb": "files/rstudio-server.deb", "sha256": SHA}, "sha256 goes with deb_url"),
        ({"deb": "files/missing.deb"}, "no such file"),
        ({"deb": "files/rstudio-server.deb", "apt_packages": ["r-base; id"]}, "not a Debian package name"),
    ],
)
def test_bad_params(render, params, expected):
    with pytest.raises(TemplateError) as exc:
        render(yaml.safe_dump([{"type": "rstudio", **params}]))
    assert "blocks[0] (type: rstudio)" in str(exc.value) and expected in str(exc.value)


def test_scripts(tmp_path):
    subprocess.run(["sh", "-n", str(FILES.joinpath("start.sh"))], check=True)
    start = FILES.joinpath("start.sh").read_text()
    for flag in ("--auth-none=1", '--www-root-path="$root_path"', '--server-user="$(id -un)"', "--server-daemonize=0"):
        assert flag in start
    # fetch_deb.py checks the digest: a wrong one fails and says so.
    src = tmp_path / "x.deb"
    src.write_bytes(b"payload")
    result = subprocess.run(
        [sys.executable, str(FILES.joinpath("fetch_deb.py")), src.as_uri(), "00" * 32, str(tmp_path / "out.deb")],
        capture_output=True, text=True,
    )
    assert result.returncode != 0 and "sha256 mismatch" in result.stderr
    import hashlib

    good = hashlib.sha256(b"payload").hexdigest()
    subprocess.run([sys.executable, str(FILES.joinpath("fetch_deb.py")), src.as_uri(), good, str(tmp_path / "ok.deb")], check=True)
    assert (tmp_path / "ok.deb").read_bytes() == b"payload"
