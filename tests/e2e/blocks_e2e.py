"""What the standard blocks' end-to-end tests share (not a test module).

A user's path, through the runtime's own functions: ``template add``,
``studio create``, ``studio start`` (which builds the image when missing),
``studio url``, then HTTP through the real nginx gateway with the cookie
the owner's URL gives. :func:`block_studios` runs that for one or more
templates in one data dir, with one gateway, and removes every studio and
the gateway afterwards.

Images are kept: template ids are fixed, so the builder's content hash
finds an image a previous session built and skips the build (buildah's
layer cache helps after a block change). Older tags of the same template
ids are removed at the end so they do not pile up.

Each ``test_blocks_*`` module loads it by path (pytest runs in importlib
mode, so test folders are not importable) under one name in
``sys.modules``, so all of them share one copy.
"""

from __future__ import annotations

import http.cookiejar
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def say(msg: str) -> None:
    """Progress and timings on stderr (shown with ``pytest -s`` or when a test fails)."""
    print(f"[blocks-e2e] {msg}", file=sys.stderr, flush=True)


class Browser:
    """An HTTP client with its own cookie jar, never using a proxy."""

    def __init__(self):
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(self.jar)
        )

    def request(self, url: str, *, method: str = "GET", data: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, bytes, dict[str, str]]:
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            with self.opener.open(req, timeout=timeout) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    def get(self, url: str, **kw) -> tuple[int, bytes]:
        status, body, _ = self.request(url, **kw)
        return status, body

    def cookie(self, name: str | None = None) -> str:
        if name is not None:
            return next((c.value for c in self.jar if c.name == name), "")
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningStudio:
    """One started studio: its id, the owner and how long build + start took."""

    env: BlockEnv
    template_id: str
    studio_id: str
    project: str
    image: str
    start_seconds: float

    @property
    def base(self) -> str:
        """Gateway URL of the studio, without a trailing slash."""
        return f"{self.env.gateway_url}/code-studios/{self.project}/{self.studio_id}"

    def login(self, port: int | None = None) -> Browser:
        """A browser that opened the owner's access URL (so it holds the session cookie).

        RUNNING waits for the probed tab only: another tab's server may still be
        starting, which the guard answers with a 502 saying nothing listens yet.
        That answer is retried for a while; any other is final.
        """
        deadline = time.monotonic() + 90
        while True:
            url = self.env.rts.access_url(self.env.who, self.studio_id, port=port)
            browser = Browser()
            status, body = browser.get(url)
            if status != 502 or b"Nothing listens on port" not in body or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert status == 200, f"{url} -> {status}: {body[:300]!r}"
        return browser

    @property
    def container(self) -> str:
        from codestudio.runtime import local

        return local.container_name(self.env.rts.pod_set_name(self.env.rts.get_studio(self.studio_id)))

    def exec(self, *argv: str) -> str:
        """Run a command in the studio's container as the studio user; its stdout (fails on non-zero)."""
        from codestudio.runtime import local

        proc = local.exec_run(self.container, list(argv))
        assert proc.returncode == 0, f"{argv} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def logs(self) -> str:
        from codestudio import containers

        proc = containers.podman("logs", self.container, check=False)
        return proc.stdout + proc.stderr


@dataclass
class BlockEnv:
    """A data dir with its gateway, the acting (admin) user and the runtime module."""

    home: Path
    gateway_port: int
    who: object
    rts: object
    studios: list[RunningStudio] = field(default_factory=list)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def start(self, template: Path, *, project: str, name: str, timeout: float = 600) -> RunningStudio:
        """``template add`` + ``studio create`` + ``studio start`` (building the image if needed)."""
        from codestudio.templates_store import build_template
        from codestudio.templates_store import add_template

        stored, _ = add_template(self.who, template)
        t0 = time.monotonic()
        build = build_template(stored.id, quiet=True)
        build_s = time.monotonic() - t0
        say(f"{stored.id}: image {build.image} {build.outcome} in {build_s:.1f} s")
        from codestudio.projects import ensure_project

        ensure_project(self.who, project)
        studio = self.rts.create_studio(self.who, project, name, stored.id)
        t0 = time.monotonic()
        self.rts.start_studio(self.who, studio.id, timeout=timeout, quiet=True)
        start_s = time.monotonic() - t0
        say(f"{stored.id}: studio {project}/{studio.id} RUNNING {start_s:.1f} s after start")
        running = RunningStudio(self, stored.id, studio.id, project, build.image, start_s)
        self.studios.append(running)
        return running


@contextmanager
def block_studios(tmp_path_factory, name: str) -> Iterator[BlockEnv]:
    """A fresh data dir and gateway port for a module's studios; everything but images removed afterwards.

    The caller needs the base image (the ``debian_base`` fixture) first.
    """
    import pytest

    home = tmp_path_factory.mktemp(f"{name}-home")
    port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODESTUDIO_HOME", str(home))
        mp.setenv("CODESTUDIO_GATEWAY_PORT", str(port))
        mp.delenv("CODESTUDIO_USER", raising=False)
        from codestudio.access import identify
        from codestudio.runtime import studios as rts

        env = BlockEnv(home, port, identify(), rts)
        try:
            yield env
        finally:
            for s in rts.list_studios(all_users=True):
                try:
                    rts.delete_studio(env.who, s.id, force=True)
                except Exception as exc:  # keep cleaning up the others
                    say(f"cleanup of studio {s.id}: {exc}")
            rts._gateway().stop()
            _prune_old_tags({s.template_id: s.image for s in env.studios})


def _prune_old_tags(current: dict[str, str]) -> None:
    from codestudio import containers

    for template_id, image in current.items():
        for ref in containers.image_refs(f"localhost/codestudio/{template_id}"):
            if ref != image and not ref.endswith(":latest"):
                containers.remove_image(ref)


# --------------------------------------------------------------------------
# A minimal WebSocket client (RFC 6455), enough to talk to an app through
# the gateway the way its browser page does.


class WebSocket:
    def __init__(self, url: str, *, cookie: str = "", origin: str | None = None,
                 protocols: tuple[str, ...] = (), timeout: float = 30):
        import base64
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [
            f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", "Upgrade: websocket", "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
        ]
        if cookie:
            lines.append(f"Cookie: {cookie}")
        if origin:
            lines.append(f"Origin: {origin}")
        if protocols:
            lines.append(f"Sec-WebSocket-Protocol: {', '.join(protocols)}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.reader = self.sock.makefile("rb")
        status = self.reader.readline()
        headers = []
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            headers.append(line)
        if b" 101 " not in status:
            raise AssertionError(f"WebSocket upgrade refused: {status!r} {headers!r}")

    def send(self, data: bytes, opcode: int = 2) -> None:
        import struct

        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            head = bytes([0x80 | opcode, 0x80 | n])
        elif n < 65536:
            head = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack(">H", n)
        else:
            head = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack(">Q", n)
        self.sock.sendall(head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(data)))

    def recv(self) -> tuple[int, bytes]:
        """One frame (opcode, payload); pings are answered, fragments joined."""
        import struct

        chunks: list[bytes] = []
        first_op = None
        while True:
            head = self.reader.read(2)
            if len(head) < 2:
                raise ConnectionError("WebSocket closed")
            fin, op, n = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x7F
            if n == 126:
                n = struct.unpack(">H", self.reader.read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self.reader.read(8))[0]
            payload = self.reader.read(n)
            if op == 9:  # ping
                self.send(payload, opcode=10)
                continue
            if op == 8:
                raise ConnectionError(f"WebSocket closed by the server: {payload!r}")
            if first_op is None:
                first_op = op
            chunks.append(payload)
            if fin:
                return first_op, b"".join(chunks)

    def wait_for(self, needle: bytes, timeout: float) -> bytes:
        """Read frames until one contains ``needle``; return everything read (fails after ``timeout``)."""
        seen = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                _, payload = self.recv()
            except (TimeoutError, socket.timeout):
                break
            seen += payload
            if needle in payload:
                return bytes(seen)
        raise AssertionError(f"{needle!r} not received within {timeout:g}s; got {len(seen)} bytes")

    def close(self) -> None:
        try:
            self.send(b"", opcode=8)
        except OSError:
            pass
        self.sock.close()
