"""In a real browser: what a webapp's page can do to its viewer's studio, by origin.

A viewer signed in to their own studio opens someone's public webapp whose page
tries to read that studio with the viewer's cookies. On the content origin (no
webapp host) it can: that is the attack docs/security.md ("Webapps") describes,
shown here so the test can fail. With a webapp host the page runs on another
origin and site, and the read fails.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from codestudio.gateway.config import GatewaySettings, PortRoute, StudioRoutes, make_access_url, new_session_secret
from codestudio.gateway.process import Gateway
from codestudio.gateway.webapps import ReplicaPort, ReplicaRoutes, WebappRoutes

pytestmark = pytest.mark.e2e
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMEDRIVER = "/usr/bin/chromedriver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(body: bytes, content_type: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def browser():
    if not Path(CHROMEDRIVER).exists() or not shutil.which("chromium"):
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--no-proxy-server"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.parametrize("webapp_host", [None, "webapps.localhost"])
def test_a_webapp_page_reads_the_viewers_studio_only_without_a_webapp_host(tmp_path, browser, webapp_host):
    port = free_port()
    gw = Gateway(tmp_path / "data", settings=GatewaySettings(port=port, webapp_host=webapp_host))
    studio_server = serve(json.dumps({"notebook": "the viewer's secret"}).encode(), "application/json")
    studio = StudioRoutes(project_key="PROJ", studio_id="mine", owner="bob", session_secret=new_session_secret(),
                          ports=(PortRoute(8888, studio_server.server_address[1], "/", "Lab"),))
    target = f"http://127.0.0.1:{port}{studio.prefix}8888/api/contents"
    page = f"""<!doctype html><title>loading</title><script>
fetch({json.dumps(target)}, {{credentials: "include"}})
  .then(r => r.text()).then(t => {{ document.title = "read " + t; }})
  .catch(() => {{ document.title = "blocked"; }});
</script>""".encode()
    app_server = serve(page, "text/html")
    webapp = WebappRoutes(project_key="PROJ", webapp_id="dashboard", owner="mallory", share="public",
                          session_secret=new_session_secret(), main_port=8501,
                          replicas=(ReplicaRoutes("dashboard-0", True, (ReplicaPort(8501, app_server.server_address[1], "/"),),
                                                  new_session_secret()),))
    try:
        gw.apply([studio], [webapp])
        browser.get(make_access_url(studio, gw.settings.base_url, port=8888))  # bob signs in to his studio
        assert "the viewer's secret" in browser.page_source
        browser.get(gw.settings.webapp_base_url + webapp.prefix)  # and opens mallory's public webapp
        WebDriverWait(browser, 20).until(lambda d: d.title != "loading")
        if webapp_host is None:
            assert browser.current_url.startswith(f"http://127.0.0.1:{port}/webapps/")
            assert "the viewer's secret" in browser.title  # the attack: one origin for both
        else:
            assert browser.current_url.startswith(f"http://webapps.localhost:{port}/webapps/")
            assert browser.title == "blocked"
    finally:
        gw.stop()
        studio_server.shutdown()
        app_server.shutdown()
