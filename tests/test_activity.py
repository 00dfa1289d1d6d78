"""Reading a studio's activity: the real guard (from the runner) on loopback, and the report_activity hook."""

from __future__ import annotations

import http.server
import json
import threading
import time
from types import SimpleNamespace

import pytest

from codestudio import hookimpl
from codestudio.blockapi import Activity, Block, BlockInstance, BlockParams
from codestudio.runner import runner as rmod
from codestudio.runtime.base import Endpoint, Pod
from codestudio.runtime.model import Studio


class Recorder(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def do_GET(self):  # noqa: N802
        Recorder.seen.append((self.path, dict(self.headers)))
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class Out:
    def log(self, message):
        pass


@pytest.fixture
def live():
    """A studio record whose pod is a real guard in front of a recording HTTP server."""
    from codestudio.runtime.activity import guard_secret

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    studio = Studio("s1", "P", "s1", "alice", "t", 1, None, None, "RUNNING", time.time(), None, {}, "t0k" * 12,
                    time.time(), started_at=time.time())
    port = server.server_address[1]
    guard = rmod.Guard([(port, 0)], guard_secret(studio), Out(), bind="127.0.0.1", upstream_hosts=("127.0.0.1",))
    guard.start()
    Recorder.seen = []
    pod = Pod("pod", "running", {port: Endpoint("127.0.0.1", guard.ports[port])})
    try:
        yield SimpleNamespace(studio=studio, pod=pod, port=port, guard=guard)
    finally:
        guard.close()
        server.shutdown()


class ToolParams(BlockParams):
    port: int = 1
    busy: bool = False


class Tool(Block):
    """Asks its server through the guard, like the JupyterLab block."""

    Params = ToolParams

    @hookimpl
    def report_activity(self, block, studio):
        status, body = studio.get(block.params.port, f"{studio.browser_path(block.params.port)}/api/status")
        assert status == 200 and json.loads(body)["path"].endswith("/api/status")
        return Activity(busy=True, detail="working") if block.params.busy else Activity(at=1000.0, detail="idle tool")


def _template(port, busy):
    return SimpleNamespace(blocks=[BlockInstance(0, "tool", ToolParams(port=port, busy=busy), "acme", "1")])


def test_guard_activity_and_a_busy_tool(live, blocks):
    from codestudio.runtime.activity import read_activity

    blocks.register("tool", Tool(), "acme", "1")
    try:
        now = time.time()
        idle = read_activity(live.studio, live.pod, template=_template(live.port, False), blocks=blocks, now=now)
        # Nothing came through the gateway yet; the tool's own time (1000.0) is the latest known.
        assert idle.reachable and (idle.last, idle.source) == (1000.0, "tool: idle tool")
        # The hook's request reached the server, marked quiet, and did not count as activity.
        assert [p for p, _ in Recorder.seen] == ["/code-studios/P/s1/%d/api/status" % live.port]
        assert "X-Codestudio-Probe" not in Recorder.seen[0][1] and "X-Codestudio-Guard" not in Recorder.seen[0][1]
        assert live.guard.last_activity == {}
        busy = read_activity(live.studio, live.pod, template=_template(live.port, True), blocks=blocks, now=now)
        assert (busy.last, busy.source) == (now, "tool: working")
    finally:
        blocks.unregister("tool")


def test_a_request_through_the_guard_is_gateway_activity(live):
    from codestudio.runtime.activity import GuardConnection, guard_secret, read_activity

    conn = GuardConnection(live.studio, dict(live.pod.endpoints), guard_secret(live.studio))
    before = read_activity(live.studio, live.pod)
    assert before.reachable and before.last is None
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", live.pod.endpoints[live.port].port, timeout=5)
    c.request("GET", "/page", headers={"X-Codestudio-Guard": conn.secret})  # what the gateway sends
    assert c.getresponse().status == 200
    c.close()
    now = time.time()
    after = read_activity(live.studio, live.pod, now=now)
    assert after.source == "gateway" and now - 60 < after.last <= now


def test_a_tool_that_fails_is_no_activity_not_an_error(live, blocks, capsys):
    from codestudio.runtime.activity import read_activity

    class Broken(Block):
        Params = ToolParams

        @hookimpl
        def report_activity(self, block, studio):
            raise OSError("connection refused")

    blocks.register("tool", Broken(), "acme", "1")
    try:
        reading = read_activity(live.studio, live.pod, template=_template(live.port, False), blocks=blocks)
        assert reading.last is None and "report_activity" in capsys.readouterr().err
    finally:
        blocks.unregister("tool")


def test_record_activity_only_moves_forward(tmp_path):
    from codestudio.runtime.activity import Reading, record_activity

    studio = Studio("s1", "P", "s1", "alice", "t", 1, None, None, "RUNNING", 0.0, None, {}, "tok", 0.0, last_activity=50.0)

    class NoStore:
        def connect(self):
            raise AssertionError("nothing to write")

    assert record_activity(NoStore(), studio, Reading(40.0, "gateway")) is studio
