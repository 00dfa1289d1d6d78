"""End-to-end: the rstudio block's build-time download, against a local file server.

The official download site is not reachable here, so a python http.server
on loopback serves a fake .deb and the template overrides the URL
(``deb_url``) with a checksum that does not match: the real build (buildah,
on the real base image) runs the download step, which fails before
anything is installed, and the build error names the block, the URL and
how to give the .deb instead. The pinned default and the success path of
the download script are tested in plugins/rstudio/tests.
"""

from __future__ import annotations

import functools
import http.server
import threading
import uuid

import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture
def file_server(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield www, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_checksum_failure_is_a_build_error_naming_block_url_and_the_deb_option(
    tmp_path, file_server, debian_base, codestudio_home, image_cleanup
):
    from codestudio.images import BuildFailed, build_template_file

    www, base = file_server
    (www / "rstudio-server-fake-amd64.deb").write_bytes(b"!<arch>\nnot really a package\n")
    url = f"{base}/rstudio-server-fake-amd64.deb"
    template_id = f"test-rstudio-dl-{uuid.uuid4().hex[:8]}"
    image_cleanup(template_id)
    path = tmp_path / "template.yaml"
    path.write_text(
        f"id: {template_id}\nbase_image: {debian_base}\nblocks:\n"
        f"  - type: rstudio\n    deb_url: {url}\n    sha256: '{'0' * 64}'\n"
    )
    with pytest.raises(BuildFailed) as err:
        build_template_file(path, quiet=True)
    message = str(err.value)
    assert "rstudio block blocks[0] (type: rstudio): sha256 mismatch for " + url in message
    assert "deb: <file>.deb" in message
