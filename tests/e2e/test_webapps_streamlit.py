"""End-to-end: the Streamlit example published as a webapp with 2 replicas, behind the real gateway.

``examples/streamlit.yaml`` as shipped (the image the streamlit block tests
build), a studio of it whose versioned zone holds the app (never started:
its zone is the snapshot), published with ``--from-studio``. The example app
prints ``DKU_CODE_STUDIO_BROWSER_PATH`` (``st.code`` in an expander), and
Streamlit sends the page's elements over its websocket as protobuf, whose
strings are plain UTF-8: so what a websocket receives tells which replica
served it. Requests go through nginx with the owner's signed links.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

pytestmark = pytest.mark.e2e

import blocks_e2e as S  # noqa: E402  (tests/e2e is on pytest's pythonpath)

RERUN = b"\x5a\x00"  # a BackMsg asking for a run (see test_blocks_streamlit.py)
TITLE = b"Hello from your Code Studio"


@pytest.fixture(scope="module")
def app(tmp_path_factory, debian_base):
    home = tmp_path_factory.mktemp("webapp-streamlit-home")
    port = S.free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODESTUDIO_HOME", str(home))
        mp.setenv("CODESTUDIO_GATEWAY_PORT", str(port))
        mp.delenv("CODESTUDIO_USER", raising=False)
        from codestudio.access import identify
        from codestudio.projects import create_project
        from codestudio.runtime import studios as rts
        from codestudio.templates_store import add_template, build_template
        from codestudio.webapps import delete, publish

        who = identify()
        stored, _ = add_template(who, S.EXAMPLES / "streamlit.yaml")
        build_template(stored.id, quiet=True)
        create_project(who, "ST")
        studio = rts.create_studio(who, "ST", "src", stored.id)
        try:
            w = publish(who, "ST", "app", stored.id, replicas=2, from_studio=studio.id, timeout=300, quiet=True)
            yield type("App", (), {"who": who, "studio": studio, "webapp": w, "home": home,
                                   "gateway": f"http://127.0.0.1:{port}"})
        finally:
            try:
                delete(who, "ST/app")
            except Exception as exc:  # noqa: BLE001
                S.say(f"cleanup: {exc}")
            rts._gateway().stop()


@pytest.fixture(autouse=True)
def _env(app, monkeypatch):
    monkeypatch.setenv("CODESTUDIO_HOME", str(app.home))


def _pods() -> list[str]:
    from codestudio.webapps import status

    return [r["pod"] for r in status(_who(), "ST/app")["replicas_detail"]]


def _who():
    from codestudio.access import identify

    return identify()


def _links() -> dict:
    from codestudio.webapps import urls

    return urls(_who(), "ST/app")


def _open(link: str) -> S.Browser:
    browser = S.Browser()
    status, body = browser.get(link)
    assert status == 200, (link, status, body[:300])
    return browser


def _served_by(app, browser, url: str) -> str:
    """The replica whose browser path the app's page carries, over Streamlit's websocket at ``url``."""
    ws = S.WebSocket(url.replace("http://", "ws://", 1) + "_stcore/stream", cookie=browser.cookie(),
                     origin=app.gateway, protocols=("streamlit",))
    try:
        ws.send(RERUN)
        seen = ws.wait_for(TITLE, timeout=90)
        seen += ws.wait_for(b"/web-apps-backends/ST/app_", timeout=30) if b"/web-apps-backends/" not in seen else b""
    finally:
        ws.close()
    found = [p for p in _pods() if f"/web-apps-backends/ST/app_{p}".encode() in seen]
    assert len(found) == 1, (found, seen[-500:])
    return found[0]


def test_each_replica_answers_at_its_own_prefix_with_its_own_pod_name(app):
    pods = _pods()
    assert len(pods) == 2
    links = _links()
    for pod in pods:
        prefix = f"{app.gateway}/web-apps-backends/ST/app_{pod}/8501/"
        assert S.Browser().get(prefix)[0] in (401, 403)  # owner share: a link first
        browser = _open(links["replicas"][pod])
        status, body = browser.get(prefix + "_stcore/health")
        assert status == 200 and body.strip() == b"ok"  # Streamlit's base path carries the pod's name
        assert _served_by(app, browser, prefix) == pod


def test_the_stable_url_serves_the_app_and_keeps_a_browser_on_one_replica(app):
    stable = f"{app.gateway}/webapps/ST/app/"
    assert S.Browser().get(stable)[0] == 401
    browser = _open(_links()["url"])
    status, html = browser.get(stable)
    assert status == 200 and b"<title>Streamlit</title>" in html
    first = _served_by(app, browser, stable)
    assert first in _pods()
    for _ in range(3):
        assert browser.get(stable + "_stcore/health")[0] == 200
        assert _served_by(app, browser, stable) == first
    assert browser.cookie("cs_replica") == first


def test_killed_replica_the_stable_url_keeps_serving_and_it_is_replaced(app):
    from codestudio import containers

    browser = _open(_links()["url"])
    stable = f"{app.gateway}/webapps/ST/app/"
    victim = _served_by(app, browser, stable)
    containers.podman("kill", f"{victim}-studio")
    # The gateway moves this browser to the other replica before the engine notices anything.
    status, body = browser.get(stable + "_stcore/health")
    assert status == 200 and body.strip() == b"ok"
    assert browser.cookie("cs_replica") != victim
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        pods = _pods()  # each status reconciles: the dead replica is replaced
        from codestudio.webapps import status as webapp_status

        states = [r["state"] for r in webapp_status(_who(), "ST/app")["replicas_detail"]]
        if victim not in pods and len(pods) == 2 and states == ["ready", "ready"]:
            break
        time.sleep(2)
    else:
        raise AssertionError(f"replica {victim} was not replaced: {pods} {states}")


def test_update_during_requests_fails_none_and_every_replica_serves_the_new_snapshot(app):
    from codestudio.sync import zone_dir
    from codestudio.webapps import update

    marker = f"Updated app {uuid.uuid4().hex[:8]}"
    zone = zone_dir("code_studio-versioned", studio_id=app.studio.id, project_key="ST", user=app.studio.owner)
    path = zone / "streamlit" / "app.py"
    path.write_text(path.read_text().replace("Hello from your Code Studio", marker))
    stable = f"{app.gateway}/webapps/ST/app/"
    link = _links()["url"]
    results: list[int] = []
    stop = threading.Event()

    def loop():
        browsers = [_open(link) for _ in range(3)]  # three browsers, each kept on its replica
        while not stop.is_set() and len(results) < 20000:
            for b in browsers:
                results.append(b.get(stable + "_stcore/health", timeout=30)[0])
            time.sleep(0.01)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        w = update(_who(), "ST/app", timeout=300, quiet=True)
    finally:
        stop.set()
        thread.join(60)
    failed = [s for s in results if s != 200]
    assert len(results) > 50 and not failed, f"{len(failed)} of {len(results)} requests failed: {sorted(set(failed))}"
    assert w.generation == 2
    pods = _pods()
    assert len(pods) == 2 and all("-g2-" in p for p in pods)
    links = _links()
    for pod in pods:
        browser = _open(links["replicas"][pod])
        url = f"{app.gateway}/web-apps-backends/ST/app_{pod}/8501/"
        ws = S.WebSocket(url.replace("http://", "ws://", 1) + "_stcore/stream", cookie=browser.cookie(),
                         origin=app.gateway, protocols=("streamlit",))
        try:
            ws.send(RERUN)
            ws.wait_for(marker.encode(), timeout=90)
        finally:
            ws.close()
