"""A stand-in Kubernetes API server for exec and port-forward, on loopback (tests, benchmarks).

It speaks the websocket protocols the real API server (and kubelet) speak
at the URLs the engine calls, so the engine's transport code runs unchanged:

- ``GET /api/v1/namespaces/NS/pods/POD/exec?command=...&container=...&stdin=...``
  upgraded with ``v5.channel.k8s.io`` or ``v4.channel.k8s.io`` (whichever
  the stand-in supports, in its own order of preference, as the real server
  does): channel bytes 0-3, the v5 close message ``[255, channel]``, and the
  exit status as a ``metav1.Status`` on channel 3. The command runs as a
  subprocess on this machine: a "pod" is a folder, which plays the pod's
  ``/`` for the sync agent's base argument and for absolute paths under
  ``/home/codestudio`` and ``/opt/codestudio`` (``python3`` is this Python).
  A ``runner`` callable can run commands elsewhere instead (the benchmark
  runs them with ``podman exec`` in a real container).
- ``GET /api/v1/namespaces/NS/pods/POD/portforward?ports=P`` with the
  port-forward channel protocol: channel 0 data, channel 1 errors, each
  starting with the port number (2 bytes, little-endian); relayed to a TCP
  port on loopback registered for that pod port.
- Refusals as the real server sends them: 401 without the expected bearer
  token, 403 for a namespace not allowed, 404 for an unknown pod, 400 for an
  unknown container; each with a ``Status`` JSON body.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import websockets.http11
from websockets.datastructures import Headers
from websockets.http11 import Response
from websockets.sync.server import serve

# Request lines stay at websockets' 8 KiB limit, as in many proxies in front of API servers (the API
# server itself takes 1 MiB): long programs must travel over stdin, not in the exec URL.
assert websockets.http11.MAX_LINE_LENGTH <= 8192 or os.environ.get("WEBSOCKETS_MAX_LINE_LENGTH")

V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"
PREFIXES = ("/home/codestudio", "/opt/codestudio")


def status_body(code: int, reason: str, message: str) -> bytes:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": reason, "code": code}).encode()


class StandIn:
    """The server; ``pods`` maps pod name -> its folder. Use as a context manager or call :meth:`close`."""

    def __init__(self, pods: dict[str, Path], *, protocols: Sequence[str] = (V5, V4), namespace: str = "cs",
                 token: str | None = "test-token", container: str = "studio",
                 runner: Callable[[str, list[str], bool], subprocess.Popen] | None = None):
        self.pods = dict(pods)
        self.protocols = list(protocols)
        self.namespace = namespace
        self.token = token
        self.container = container
        self.runner = runner
        self.forwards: dict[tuple[str, int], int] = {}  # (pod, pod port) -> local TCP port
        self.execs: list[dict] = []  # what ran: argv, protocol, stdin
        self.forward_sockets: list = []
        self.forward_count = 0
        self._lock = threading.Lock()
        self.server = serve(self._handle, "127.0.0.1", 0, process_request=self._check,
                            select_subprotocol=self._select, compression=None, max_size=4 << 20,
                            ping_interval=None)
        self.port = self.server.socket.getsockname()[1]
        self.host = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    # --- client side -----------------------------------------------------------

    def configuration(self):
        """A ``kubernetes.client.Configuration`` for this server (as ``load_kube_config`` makes one)."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.host
        if self.token:
            cfg.api_key = {"authorization": self.token}
            cfg.api_key_prefix = {"authorization": "Bearer"}
        return cfg

    def api_client(self):
        from kubernetes import client

        return client.ApiClient(self.configuration())

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(10)

    def __enter__(self) -> StandIn:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def drop_forwards(self) -> None:
        """Cut every open port-forward websocket (what an API server restart or a network blip does)."""
        with self._lock:
            conns, self.forward_sockets = self.forward_sockets, []
        for conn in conns:
            try:
                conn.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # --- handshake -----------------------------------------------------------------

    def _route(self, path: str) -> tuple[str, str, str] | None:
        parts = urlsplit(path).path.split("/")
        # ['', 'api', 'v1', 'namespaces', NS, 'pods', POD, VERB]
        if len(parts) == 8 and parts[1:4] == ["api", "v1", "namespaces"] and parts[5] == "pods":
            return parts[4], parts[6], parts[7]
        return None

    def _refuse(self, code: int, reason: str, message: str) -> Response:
        body = status_body(code, reason, message)
        headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return Response(code, HTTPStatus(code).phrase, headers, body)

    def _check(self, connection, request) -> Response | None:
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._refuse(401, "Unauthorized", "Unauthorized")
        route = self._route(request.path)
        if route is None or route[2] not in ("exec", "portforward"):
            return self._refuse(404, "NotFound", "the server could not find the requested resource")
        namespace, pod, verb = route
        if namespace != self.namespace:
            return self._refuse(403, "Forbidden", f'pods "{pod}" is forbidden: User "test" cannot create resource '
                                f'"pods/{verb}" in API group "" in the namespace "{namespace}"')
        if pod not in self.pods:
            return self._refuse(404, "NotFound", f'pods "{pod}" not found')
        query = parse_qs(urlsplit(request.path).query)
        if verb == "exec" and query.get("container", [self.container])[0] != self.container:
            return self._refuse(400, "BadRequest", f"container {query['container'][0]} is not valid for pod {pod}")
        return None

    def _select(self, connection, offered):
        route = self._route(connection.request.path)
        if route and route[2] == "portforward":
            return V4 if V4 in offered else None
        for proto in self.protocols:
            if proto in offered:
                return proto
        return None

    def _handle(self, conn) -> None:
        _, pod, verb = self._route(conn.request.path)  # type: ignore[misc]
        query = parse_qs(urlsplit(conn.request.path).query)
        if verb == "exec":
            self._exec(conn, pod, query)
        else:
            self._forward(conn, pod, query)

    # --- exec --------------------------------------------------------------------------

    def _local_argv(self, pod: str, argv: list[str]) -> list[str]:
        root = self.pods[pod]
        out = list(argv)
        if out and out[0] in ("python3", "python"):
            out[0] = sys.executable
        if out[1:3] == ["-I", "-c"] and len(out) == 6 and out[4] == "session":
            out[5] = str(root / out[5].lstrip("/"))  # the agent's base: the pod's "/"
            return out
        return [str(root / a.lstrip("/")) if a.startswith(PREFIXES) else a for a in out]

    def _exec(self, conn, pod: str, query: dict) -> None:
        argv = query.get("command", [])
        stdin = query.get("stdin", ["false"])[0] == "true"
        protocol = conn.subprotocol
        self.execs.append({"pod": pod, "argv": argv, "protocol": protocol, "stdin": stdin})
        try:
            if self.runner is not None:
                proc = self.runner(pod, argv, stdin)
            else:
                root = self.pods[pod]
                env = dict(os.environ, HOME=str(root / "home/codestudio"),
                           CODESTUDIO_WORKSPACE=str(root / "home/codestudio/workspace"),
                           CODESTUDIO_RUNNER_JSON=str(root / "opt/codestudio/runner.json"))
                proc = subprocess.Popen(self._local_argv(pod, argv), cwd=root, env=env,
                                        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            # What the kubelet reports when the runtime cannot start the command.
            conn.send(b"\x03" + json.dumps({"metadata": {}, "status": "Failure", "reason": "InternalError",
                                            "message": f'exec: "{argv[0]}": executable file not found in $PATH '
                                                       f"({exc.strerror})"}).encode())
            conn.close()
            return

        def pump(pipe, channel: int) -> None:
            try:
                while chunk := pipe.read1(1 << 16):
                    conn.send(bytes((channel,)) + chunk)
            except Exception:  # noqa: BLE001 - the client went away: the command's output goes nowhere
                while pipe.read1(1 << 16):
                    pass

        pumps = [threading.Thread(target=pump, args=(proc.stdout, 1), daemon=True),
                 threading.Thread(target=pump, args=(proc.stderr, 2), daemon=True)]
        for t in pumps:
            t.start()

        def feed() -> None:
            try:
                for message in conn:
                    if isinstance(message, str):
                        message = message.encode()
                    if not message:
                        continue
                    if message[0] == 0 and proc.stdin is not None:
                        try:
                            proc.stdin.write(message[1:])
                            proc.stdin.flush()
                        except (BrokenPipeError, OSError):
                            pass
                    elif message[0] == 255 and protocol == V5 and message[1:2] == b"\x00" and proc.stdin:
                        proc.stdin.close()
            except Exception:  # noqa: BLE001 - the client went away
                pass
            finally:
                # The stream ended: the kubelet closes the command's stdin. A client that went
                # away without a status also ends the command here (no orphans left by tests).
                if proc.poll() is None and not conn_done.is_set():
                    proc.kill()
                if proc.stdin is not None and not proc.stdin.closed:
                    try:
                        proc.stdin.close()
                    except OSError:
                        pass

        conn_done = threading.Event()
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        for t in pumps:
            t.join()
        code = proc.wait()
        conn_done.set()
        if code == 0:
            status = {"metadata": {}, "status": "Success"}
        else:
            status = {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                      "message": f"command terminated with non-zero exit code: exit status {code}",
                      "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
        try:
            conn.send(b"\x03" + json.dumps(status).encode())
            conn.close()
        except Exception:  # noqa: BLE001
            pass

    # --- port-forward ----------------------------------------------------------------------

    def _forward(self, conn, pod: str, query: dict) -> None:
        port = int(query.get("ports", ["0"])[0])
        header = port.to_bytes(2, "little")
        conn.send(b"\x00" + header)
        conn.send(b"\x01" + header)
        target = self.forwards.get((pod, port))
        with self._lock:
            self.forward_count += 1
            self.forward_sockets.append(conn)
        try:
            tcp = socket.create_connection(("127.0.0.1", target), timeout=5) if target else None
        except OSError:
            tcp = None
        if tcp is None:
            conn.send(b"\x01" + f"error forwarding port {port} to pod {pod}: connection refused".encode())
            conn.close()
            return
        tcp.settimeout(None)

        def back() -> None:
            try:
                while data := tcp.recv(1 << 16):
                    conn.send(b"\x00" + data)
            except OSError:
                pass
            finally:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass

        t = threading.Thread(target=back, daemon=True)
        t.start()
        try:
            for message in conn:
                if isinstance(message, bytes) and message[:1] == b"\x00" and len(message) > 1:
                    tcp.sendall(message[1:])
        except Exception:  # noqa: BLE001
            pass
        finally:
            try:
                tcp.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            t.join(5)
            tcp.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


__all__ = ["LogStandIn", "StandIn", "V4", "V5", "free_port", "status_body"]


class LogStandIn:
    """The pod read and pod log API on loopback (plain HTTP, as the real server serves them).

    ``GET /api/v1/namespaces/NS/pods/POD`` answers a Pod whose studio
    container restarted once; ``GET .../POD/log`` answers ``logs[pod]``
    (``previous=true``: ``previous[pod]``), the last ``tailLines`` lines,
    and with ``follow=true`` keeps the response open and sends lines
    appended with :meth:`append` until :meth:`end`.
    """

    def __init__(self, pods: Sequence[str], *, namespace: str = "cs", token: str | None = "test-token"):
        import http.server

        self.logs: dict[str, list[bytes]] = {p: [] for p in pods}
        self.previous: dict[str, list[bytes]] = {p: [] for p in pods}
        self.namespace, self.token = namespace, token
        self.cond = threading.Condition()
        self.ended: set[str] = set()
        self.follows = 0
        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _json(self, code: int, doc: dict) -> None:
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                if standin.token and self.headers.get("Authorization") != f"Bearer {standin.token}":
                    return self._json(401, json.loads(status_body(401, "Unauthorized", "Unauthorized")))
                parts = urlsplit(self.path)
                segs = parts.path.split("/")
                query = parse_qs(parts.query)
                if len(segs) < 7 or segs[4] != standin.namespace:
                    return self._json(403, json.loads(status_body(403, "Forbidden", "pods is forbidden")))
                pod = segs[6]
                if pod not in standin.logs:
                    return self._json(404, json.loads(status_body(404, "NotFound", f'pods "{pod}" not found')))
                if len(segs) == 7:
                    return self._json(200, standin.pod_doc(pod))
                lines = standin.previous[pod] if query.get("previous") == ["true"] else standin.logs[pod]
                if query.get("previous") == ["true"] and not lines:
                    return self._json(400, json.loads(status_body(400, "BadRequest", "previous terminated container not found")))
                tail = int(query["tailLines"][0]) if "tailLines" in query else None
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                with standin.cond:
                    sent = len(lines) - tail if tail is not None and tail < len(lines) else 0
                follow = query.get("follow") == ["true"]
                if follow:
                    standin.follows += 1
                try:
                    while True:
                        with standin.cond:
                            chunk = b"".join(lines[sent:])
                            sent = len(lines)
                        if chunk:
                            self.wfile.write(chunk)
                            self.wfile.flush()
                        if not follow:
                            return
                        with standin.cond:
                            if pod in standin.ended and sent == len(lines):
                                return
                            standin.cond.wait(0.2)
                except OSError:
                    return  # the client went away

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def pod_doc(self, pod: str) -> dict:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": self.namespace},
                "status": {"phase": "Running", "containerStatuses": [{
                    "name": "studio", "ready": False, "restartCount": 1, "image": "reg/x@sha256:0", "imageID": "",
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting"}},
                    "lastState": {"terminated": {"exitCode": 3, "reason": "Error"}}}]}}

    def append(self, pod: str, line: bytes) -> None:
        with self.cond:
            self.logs[pod].append(line)
            self.cond.notify_all()

    def end(self, pod: str) -> None:
        with self.cond:
            self.ended.add(pod)
            self.cond.notify_all()

    def configuration(self):
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.host
        if self.token:
            cfg.api_key = {"authorization": self.token}
            cfg.api_key_prefix = {"authorization": "Bearer"}
        return cfg

    def api_client(self):
        from kubernetes import client

        return client.ApiClient(self.configuration())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> LogStandIn:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
