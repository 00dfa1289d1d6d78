"""End-to-end: the rstudio block, when RStudio Server's ``.deb`` can be fetched.

RStudio Server is not in Debian: its ``.deb`` comes from RStudio's own
download site, which networks limited to package registries and Debian
mirrors do not reach. The test tries the download first (its URL can be
overridden with ``CODESTUDIO_RSTUDIO_DEB_URL``) and is skipped, with the
reason printed, only when that download fails. With the file, the template
takes it as a resource (``deb:``), so no checksum needs pinning here; the
studio then serves RStudio through the gateway to its owner. The block's
render and configuration are tested in ``plugins/rstudio/tests`` either way.
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


import blocks_e2e as S  # noqa: E402  (tests/e2e is on pytest's pythonpath)

from codestudio_rstudio import PINNED  # noqa: E402

# The block's own pinned download (Debian 12 takes the Ubuntu 22.04 "jammy" build).
DEB_URL = os.environ.get("CODESTUDIO_RSTUDIO_DEB_URL", PINNED["bookworm"][0])
TEMPLATE = """\
id: e2e-blocks-rstudio
label: RStudio e2e
permissions:
  all: true
blocks:
  - type: rstudio
    deb: rstudio-server.deb
"""


def _fetch(url: str, dest: Path) -> None:
    with urllib.request.urlopen(url, timeout=30) as response, open(dest, "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)


@pytest.fixture(scope="module")
def rstudio(tmp_path_factory, debian_base):
    folder = tmp_path_factory.mktemp("rstudio-template")
    try:
        _fetch(DEB_URL, folder / "rstudio-server.deb")
    except OSError as exc:
        reason = f"RStudio Server .deb could not be fetched from {DEB_URL}: {exc}"
        print(f"SKIPPED: {reason}", file=sys.stderr, flush=True)
        pytest.skip(reason)
    (folder / "template.yaml").write_text(TEMPLATE)
    with S.block_studios(tmp_path_factory, "rstudio") as env:
        yield env.start(folder / "template.yaml", project="RS", name="main", timeout=600)


@pytest.fixture(autouse=True)
def _rstudio_env(rstudio, monkeypatch):
    monkeypatch.setenv("CODESTUDIO_HOME", str(rstudio.env.home))
    monkeypatch.setenv("CODESTUDIO_GATEWAY_PORT", str(rstudio.env.gateway_port))


def test_rstudio_serves_through_the_gateway(rstudio):
    url = f"{rstudio.base}/8787/"
    status, _ = S.Browser().get(url)
    assert status in (401, 403)
    browser = rstudio.login(8787)
    status, html = browser.get(url)
    assert status == 200, html[:500]
    assert b"RStudio" in html
    # R from Debian runs in the studio.
    assert "R version" in rstudio.exec("R", "--version")
