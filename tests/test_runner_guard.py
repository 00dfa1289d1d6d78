"""The runner's guard: only connections carrying the per-start secret reach a server.

Real sockets on loopback: an upstream server thread that records every byte
it receives (and echoes, or answers like a websocket server), and the
runner's :class:`Guard` in front of it. No container is involved.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from codestudio.runner import runner as rmod

SECRET = "a" * 64
DEADLINE = 10.0


class Upstream:
    """A TCP server that records what each connection sent; ``mode`` says how it answers."""

    def __init__(self, mode: str = "echo") -> None:
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytearray] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            buf = bytearray()
            with self.lock:
                self.received.append(buf)
            threading.Thread(target=self._serve, args=(conn, buf), daemon=True).start()

    def _serve(self, conn: socket.socket, buf: bytearray) -> None:
        upgraded = self.mode != "websocket"
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                with self.lock:
                    buf.extend(data)
                if not upgraded and b"\r\n\r\n" in buf:
                    upgraded = True
                    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                    conn.sendall(b"server-push")
                    rest = bytes(buf).split(b"\r\n\r\n", 1)[1]
                    if rest:
                        conn.sendall(rest)
                elif upgraded:
                    conn.sendall(data)

    def all_received(self) -> list[bytes]:
        with self.lock:
            return [bytes(b) for b in self.received]

    def close(self) -> None:
        self.sock.close()


class Recorder:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


@pytest.fixture
def upstream():
    up = Upstream()
    yield up
    up.close()


def start_guard(server_port: int, secret: str | None = SECRET) -> rmod.Guard:
    guard = rmod.Guard([(server_port, 0)], secret, Recorder(), bind="127.0.0.1", upstream_hosts=("127.0.0.1",))
    guard.start()
    return guard


@pytest.fixture
def guarded(upstream):
    guard = start_guard(upstream.port)
    yield upstream, guard.ports[upstream.port]
    guard.close()


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    return s


def recv_until(s: socket.socket, needle: bytes) -> bytes:
    buf = b""
    while needle not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def recv_all(s: socket.socket) -> bytes:
    buf = b""
    while chunk := s.recv(65536):
        buf += chunk
    return buf


def head(*headers: str, path: str = "/x") -> bytes:
    return ("\r\n".join([f"GET {path} HTTP/1.1", "Host: studio", *headers]) + "\r\n\r\n").encode()


def wait_for(cond, what: str):
    end = time.monotonic() + DEADLINE
    while not (value := cond()):
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
    return value


def test_good_secret_passes_and_the_header_is_stripped(guarded):
    up, port = guarded
    with connect(port) as s:
        s.sendall(head(f"X-Codestudio-Guard: {SECRET}", "Accept: */*"))
        echoed = recv_until(s, b"\r\n\r\n")
    assert echoed == head("Accept: */*")
    got = wait_for(up.all_received, "the upstream connection")
    assert got == [head("Accept: */*")]
    assert SECRET.encode() not in got[0]


@pytest.mark.parametrize(
    "headers",
    [
        (),
        ("X-Codestudio-Guard: " + "b" * 64,),
        ("X-Codestudio-Guard: " + SECRET[:-1],),
        ("X-Codestudio-Guard: ",),
        (f"X-Codestudio-Guard: {SECRET}", "X-Codestudio-Guard: wrong"),
        (f"X-Codestudio-Guard-Extra: {SECRET}",),
        (f"X-Other: X-Codestudio-Guard: {SECRET}",),
    ],
    ids=["no-header", "bad-secret", "truncated", "empty", "one-of-two-bad", "other-name", "in-a-value"],
)
def test_anything_but_the_secret_is_refused_before_the_server(guarded, headers):
    up, port = guarded
    with connect(port) as s:
        s.sendall(head(*headers) + b"body")
        answer = recv_all(s)
    assert answer.startswith(b"HTTP/1.1 403 ")
    time.sleep(0.05)
    assert up.all_received() == []


def test_header_split_across_reads(guarded):
    up, port = guarded
    data = head(f"X-Codestudio-Guard: {SECRET}")
    with connect(port) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(data), 7):
            s.sendall(data[i : i + 7])
            time.sleep(0.005)
        assert recv_until(s, b"\r\n\r\n") == head()


def test_oversized_head_is_refused(guarded):
    up, port = guarded
    with connect(port) as s:
        s.sendall(b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"p" * (rmod.MAX_HEAD + 10) + b"\r\n")
        answer = recv_all(s)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert up.all_received() == []


def test_no_secret_configured_refuses_everything(upstream):
    guard = start_guard(upstream.port, secret=None)
    try:
        with connect(guard.ports[upstream.port]) as s:
            s.sendall(head("X-Codestudio-Guard: "))
            assert recv_all(s).startswith(b"HTTP/1.1 403 ")
    finally:
        guard.close()
    assert upstream.all_received() == []


def test_pipelined_keep_alive_requests_all_arrive_in_order(guarded):
    up, port = guarded
    first = head(f"X-Codestudio-Guard: {SECRET}", path="/1")
    rest = b"POST /2 HTTP/1.1\r\nHost: studio\r\nContent-Length: 5\r\n\r\nhello" + head(path="/3")
    with connect(port) as s:
        s.sendall(first + rest)  # one write: the guard reads past the first head
        expected = head(path="/1") + rest
        assert recv_until(s, b"GET /3 HTTP/1.1\r\nHost: studio\r\n\r\n") == expected
    assert wait_for(up.all_received, "upstream")[0] == expected


def test_websocket_upgrade_pipes_both_ways():
    up = Upstream("websocket")
    guard = start_guard(up.port)
    try:
        with connect(guard.ports[up.port]) as s:
            s.sendall(head(f"X-Codestudio-Guard: {SECRET}", "Upgrade: websocket", "Connection: Upgrade"))
            assert recv_until(s, b"server-push").startswith(b"HTTP/1.1 101 ")
            for i in range(3):
                msg = f"frame-{i}".encode() * 1000
                s.sendall(msg)
                assert recv_until(s, msg).endswith(msg)
    finally:
        guard.close()
        up.close()


def test_server_down_gives_502_and_probe_says_503():
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # nothing listens there
    guard = start_guard(port)
    try:
        with connect(guard.ports[port]) as s:
            s.sendall(head(f"X-Codestudio-Guard: {SECRET}"))
            answer = recv_all(s)
            assert answer.startswith(b"HTTP/1.1 502 ")
            assert f"Nothing listens on port {port}".encode() in answer
        with connect(guard.ports[port]) as s:
            s.sendall(head(f"X-Codestudio-Guard: {SECRET}", "X-Codestudio-Probe: tcp"))
            assert recv_all(s).startswith(b"HTTP/1.1 503 ")
    finally:
        guard.close()


def test_tcp_probe_answers_itself_and_sends_nothing_to_the_server(guarded):
    up, port = guarded
    with connect(port) as s:
        s.sendall(head(f"X-Codestudio-Guard: {SECRET}", "X-Codestudio-Probe: tcp"))
        assert recv_all(s).startswith(b"HTTP/1.1 204 ")
    with connect(port) as s:  # the probe header alone is no way in
        s.sendall(head("X-Codestudio-Probe: tcp"))
        assert recv_all(s).startswith(b"HTTP/1.1 403 ")
    assert all(r == b"" for r in up.all_received())


def test_server_closing_ends_the_client_connection(upstream):
    guard = start_guard(upstream.port)
    try:
        with connect(guard.ports[upstream.port]) as s:
            s.sendall(head(f"X-Codestudio-Guard: {SECRET}"))
            recv_until(s, b"\r\n\r\n")
            s.shutdown(socket.SHUT_WR)  # the client is done: the echo server closes, so do we
            assert recv_all(s) == b""
    finally:
        guard.close()


def test_guard_ports_are_parsed_and_checked():
    assert rmod.parse_guard_ports("8888:61000, 8080:61001") == [(8888, 61000), (8080, 61001)]
    for bad in ("8888", "a:1", "8888:8888", "0:61000", "8888:70000"):
        with pytest.raises(rmod.ConfigError, match="CODESTUDIO_GUARD_PORTS"):
            rmod.parse_guard_ports(bad)


def test_a_taken_guard_port_fails_loudly(upstream):
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        guard = rmod.Guard([(upstream.port, taken.getsockname()[1])], SECRET, Recorder(), bind="127.0.0.1")
        with pytest.raises(rmod.ConfigError, match="cannot listen on port"):
            guard.start()
    finally:
        taken.close()


def test_runner_run_starts_the_guard_and_hides_its_variables(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from codestudio.runner import RUNNER_PATH

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        guard_port = free.getsockname()[1]
    server = socket.create_server(("127.0.0.1", 0))
    server_port = server.getsockname()[1]
    cfg = tmp_path / "runner.json"
    code = "import os; print('ENV', sorted(k for k in os.environ if 'GUARD' in k), flush=True)"
    cfg.write_text(json.dumps({"schema": 1, "template": "t", "entrypoints": [
        {"label": "app", "command": [sys.executable, "-c", code + "; import time; time.sleep(60)"], "port": server_port}]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODESTUDIO_")}
    env.update(CODESTUDIO_RUNNER_JSON=str(cfg), CODESTUDIO_WORKSPACE=str(tmp_path),
               CODESTUDIO_GUARD_PORTS=f"{server_port}:{guard_port}", CODESTUDIO_GUARD_SECRET=SECRET)
    log = tmp_path / "log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(RUNNER_PATH), "run"], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: "[app] ENV" in log.read_text(), "the entrypoint's output")
        assert "[app] ENV []" in log.read_text()
        assert SECRET not in log.read_text()
        with connect(guard_port) as s:
            s.sendall(head())
            assert recv_all(s).startswith(b"HTTP/1.1 403 ")
        with connect(guard_port) as s:
            s.sendall(head(f"X-Codestudio-Guard: {SECRET}", "X-Codestudio-Probe: tcp"))
            assert recv_all(s).startswith(b"HTTP/1.1 204 ")
        printed = subprocess.run([sys.executable, str(RUNNER_PATH), "env"], capture_output=True, text=True, env=env)
        assert "GUARD" not in printed.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=DEADLINE)
        server.close()


# --------------------------------------------------------------------------
# Activity: what the guard counts (docs/lifecycle.md, "Activity")


def ws_frame(opcode: int, payload: bytes, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    """A masked client frame (RFC 6455)."""
    n = len(payload)
    if n < 126:
        length = bytes([0x80 | n])
    elif n < 65536:
        length = bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        length = bytes([0x80 | 127]) + n.to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode]) + length + mask + masked


LONG_AGO = -1e9


def report(port: int) -> dict:
    import json

    with connect(port) as s:
        s.sendall(head(f"X-Codestudio-Guard: {SECRET}", "X-Codestudio-Probe: activity"))
        answer = recv_all(s)
    assert answer.startswith(b"HTTP/1.1 200 ")
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


def test_frames_split_anywhere_count_data_frames_only():
    ping, text = ws_frame(0x9, b"p" * 10), ws_frame(0x1, b"t" * 300)
    big, pong = ws_frame(0x2, b"b" * 70000), ws_frame(0xA, b"")
    frames = rmod.WebSocketFrames()
    assert frames.feed(ping) is False and frames.feed(pong) is False
    stream = ping + text + pong
    frames = rmod.WebSocketFrames()
    assert [frames.feed(stream[i:i + 1]) for i in range(len(stream))].count(True) == 1
    frames = rmod.WebSocketFrames()
    assert frames.feed(big[:5]) is False  # header not complete yet
    assert frames.feed(big[5:]) is True and frames.feed(ping + pong) is False


def test_activity_report_counts_requests_not_probes_or_quiet_ones(guarded):
    up, port = guarded
    first = report(port)
    assert first["ports"] == {str(up.port): None} and first["idle"] is None
    with connect(port) as s:  # the engine's own requests to a tool
        s.sendall(head(f"X-Codestudio-Guard: {SECRET}", "X-Codestudio-Probe: quiet"))
        recv_until(s, b"GET")
    with connect(port) as s:
        s.sendall(head(f"X-Codestudio-Guard: {SECRET}", "X-Codestudio-Probe: tcp"))
        recv_all(s)
    with connect(port) as s:  # refused: not activity either
        s.sendall(head("X-Codestudio-Guard: wrong"))
        recv_all(s)
    assert report(port)["ports"][str(up.port)] is None
    with connect(port) as s:
        s.sendall(head(f"X-Codestudio-Guard: {SECRET}"))
        recv_until(s, b"GET")
    age = report(port)["ports"][str(up.port)]
    assert age is not None and age >= 0
    # The quiet request reached the server without the probe header.
    assert any(b"GET /x" in r and b"X-Codestudio-Probe" not in r for r in up.all_received())


def test_a_silent_websocket_is_not_activity_a_message_is():
    up = Upstream("websocket")
    guard = start_guard(up.port)
    try:
        with connect(guard.ports[up.port]) as s:
            s.sendall(head(f"X-Codestudio-Guard: {SECRET}", "Upgrade: websocket", "Connection: Upgrade"))
            assert recv_until(s, b"server-push").startswith(b"HTTP/1.1 101 ")
            guard.last_activity[up.port] = LONG_AGO
            # The upstream echoes every byte: once a frame is back, the guard has seen it.
            for _ in range(3):  # keep-alive pings and pongs: the websocket is open but silent
                frames = ws_frame(0x9, b"ping") + ws_frame(0xA, b"")
                s.sendall(frames)
                recv_until(s, frames)
            assert guard.last_activity[up.port] == LONG_AGO
            msg = ws_frame(0x1, b"hello")
            s.sendall(msg)
            recv_until(s, msg)
            assert guard.last_activity[up.port] > LONG_AGO
    finally:
        guard.close()
        up.close()


def test_activity_report_carries_the_memory_counters(guarded):
    up, port = guarded
    got = report(port)
    assert set(got) == {"uptime", "idle", "ports", "oom_kills", "memory_limit"}
    assert got["oom_kills"] is None or got["oom_kills"] >= 0
