"""Render-level tests of the rstudio block."""

import json
import subprocess
import sys
from importlib import resources

import pytest
import yaml

from codestudio.errors import TemplateError
from codestudio.render import StudioContext

FILES = resources.files("codestudio_rstudio").joinpath("files")
SHA = "ab" * 32
URL = "https://downloads.example.org/server/jammy/amd64/rstudio-server-2024.12.1-563-amd64.deb"


@pytest.fixture
def render(codestudio_render):
    """A template made of the given blocks, rendered, with a stand-in .deb next to it (codestudio.testing)."""

    def _render(blocks: str, studio=None):
        return codestudio_render(blocks, studio=studio, files={"files/rstudio-server.deb": b"!<arch>\n"})

    return _render


def test_deb_url_with_sha256(render):
    r = render(f"- type: rstudio\n  deb_url: {URL}\n  sha256: {SHA}\n  apt_packages: [r-cran-ggplot2]\n")
    fetch, install, start = r.state.groups[0].steps
    assert fetch.dest == "/opt/codestudio/rstudio/fetch_deb.py"
    sources = json.dumps({"*": [URL, SHA]})
    assert (f"python3 /opt/codestudio/rstudio/fetch_deb.py /opt/codestudio/rstudio/rstudio-server.deb "
            f"'rstudio block blocks[0] (type: rstudio)' '{sources}'") in install.script
    assert "apt-get install -y --no-install-recommends r-base-core r-cran-ggplot2 /opt/codestudio/rstudio/rstudio-server.deb" in install.script
    # No downloaded .debs left in the layer (the base image has no apt clean-up hook).
    assert install.script.index("apt-get clean") > install.script.index("apt-get install")
    assert start.dest == "/opt/codestudio/rstudio/start.sh" and start.mode == 0o755
    doc = json.loads(r.runner_json)
    (ep,) = doc["entrypoints"]
    assert ep["command"] == ["/opt/codestudio/rstudio/start.sh", "8787", "${DKU_CODE_STUDIO_BROWSER_PATH_8787}"]
    assert ep["proxied_subpath"] == "/" and ep["port"] == 8787
    assert doc["probe"] == {"kind": "http", "port": 8787, "url": "${baseUrl}/"}
    assert "path: /\n" in render(f"- type: rstudio\n  deb_url: {URL}\n  sha256: {SHA}\n", studio=StudioContext("P", "s")).kubernetes_yaml


def test_no_settings_downloads_the_pinned_official_build(render):
    from codestudio_rstudio import PINNED

    r = render("- type: rstudio\n")
    fetch, install, _ = r.state.groups[0].steps
    assert fetch.dest == "/opt/codestudio/rstudio/fetch_deb.py"
    url, sha = PINNED["bookworm"]
    assert url.startswith("https://download2.rstudio.org/server/jammy/amd64/rstudio-server-") and url.endswith("-amd64.deb")
    assert len(sha) == 64 and int(sha, 16) >= 0
    assert f"'{json.dumps({'bookworm': [url, sha]})}'" in install.script
    assert install.script.index("fetch_deb.py") < install.script.index("apt-get install")
    assert "apt-get install -y --no-install-recommends r-base-core  /opt/codestudio/rstudio/rstudio-server.deb" in install.script


def test_deb_resource(render):
    r = render("- type: rstudio\n  deb: files/rstudio-server.deb\n  port: 8788\n")
    copy = r.state.groups[0].steps[0]
    assert copy.dest == "/opt/codestudio/rstudio/rstudio-server.deb"
    assert "fetch_deb" not in r.dockerfile
    assert json.loads(r.runner_json)["entrypoints"][0]["port"] == 8788


@pytest.mark.parametrize(
    "params, expected",
    [
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


@pytest.fixture
def file_server(tmp_path):
    """A python http.server on loopback serving tmp_path/www (stands in for the download site)."""
    import functools
    import http.server
    import threading

    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _fetch(tmp_path, sources):
    env = {k: v for k, v in __import__("os").environ.items() if "proxy" not in k.lower()}
    return subprocess.run(
        [sys.executable, str(FILES.joinpath("fetch_deb.py")), str(tmp_path / "out.deb"),
         "rstudio block blocks[0] (type: rstudio)", json.dumps(sources)],
        capture_output=True, text=True, env=env,
    )


def test_fetch_deb_downloads_and_checks_the_sha256(tmp_path, file_server):
    import hashlib

    www, base = file_server
    (www / "rstudio-server-fake-amd64.deb").write_bytes(b"!<arch>\nfake deb")
    good = hashlib.sha256(b"!<arch>\nfake deb").hexdigest()
    url = f"{base}/rstudio-server-fake-amd64.deb"
    ok = _fetch(tmp_path, {"*": [url, good]})
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out.deb").read_bytes() == b"!<arch>\nfake deb"
    # A wrong checksum fails, naming the block, the URL and how to give the .deb instead.
    bad = _fetch(tmp_path, {"*": [url, "00" * 32]})
    assert bad.returncode != 0
    assert "rstudio block blocks[0] (type: rstudio): sha256 mismatch for " + url in bad.stderr
    assert "deb: <file>.deb" in bad.stderr
    # So does a failed download.
    missing = _fetch(tmp_path, {"*": [f"{base}/nothing.deb", good]})
    assert missing.returncode != 0
    assert f"could not download RStudio Server from {base}/nothing.deb" in missing.stderr and "deb: <file>.deb" in missing.stderr


def test_fetch_deb_picks_the_release_of_the_image(tmp_path, file_server):
    import hashlib

    www, base = file_server
    (www / "a.deb").write_bytes(b"a")
    release = next(
        (l.split("=", 1)[1].strip().strip('"') for l in open("/etc/os-release") if l.startswith("VERSION_CODENAME=")), ""
    )
    sha = hashlib.sha256(b"a").hexdigest()
    assert _fetch(tmp_path, {release: [f"{base}/a.deb", sha], "other": [f"{base}/missing.deb", sha]}).returncode == 0
    unknown = _fetch(tmp_path, {"no-such-release": [f"{base}/a.deb", sha]})
    assert unknown.returncode != 0 and "no pinned RStudio Server download for Debian release" in unknown.stderr
