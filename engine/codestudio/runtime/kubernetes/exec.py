"""Commands, files and logs in pods: the Kubernetes exec websocket API and the log API.

:class:`PodTransport` gives the Kubernetes runtime the ``exec``,
``exec_detached``, ``logs``, ``save_logs`` and ``copy_out`` of
:class:`~codestudio.runtime.base.Runtime`; a command runs as a
:class:`KubeExecProcess`, which has the ``subprocess.Popen`` surface the
engine uses (binary ``stdin``/``stdout``/``stderr`` pipes, ``wait``,
``poll``, ``communicate``, ``kill``), so file sync streams its tar frames
through it exactly as through ``podman exec -i``.

The exec protocol (``/api/v1/namespaces/NS/pods/POD/exec``, a websocket):
every message starts with a channel byte -- 0 stdin, 1 stdout, 2 stderr,
3 status (a ``metav1.Status`` JSON document once the command ends:
``Success``, or ``Failure`` with reason ``NonZeroExitCode`` and an
``ExitCode`` cause), 4 resize. The engine offers ``v5.channel.k8s.io``
first: there a message ``[255, 0]`` closes stdin and the command sees the
end of its input. With ``v4.channel.k8s.io`` (API servers before 1.30)
stdin cannot be closed; a command that understands codestudio's stdin
framing (the sync agent, :data:`codestudio.sync.agent.FRAMED_STDIN`) then
gets its input as frames (the preamble line, then 4-byte big-endian lengths
and data, a zero length at the end), so it knows where its input ends.

Why not the client's own ``kubernetes.stream``: it offers v5 and closes
stdin, but it connects without any timeout, reports every handshake error
as status 0, and buffers whole channels in memory by string concatenation
(a sync's tar streams). This module uses the same websocket library
(``websocket-client``, a dependency of the official client) and the official
client's configuration (kubeconfig or in-cluster account: host, TLS files,
bearer token with its refresh hook, proxy), with a timeout on the connect
and the handshake, TCP keepalive on the open connection (a dead API server
ends the command within about a minute), and errors in words (401, 403,
404, 400, refused upgrades, unreachable servers), never with a header.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from codestudio.errors import RuntimeFailure

STDIN, STDOUT, STDERR, STATUS, RESIZE = 0, 1, 2, 3, 4
#: v5: ``[CLOSE, channel]`` closes a channel (stdin).
CLOSE = 255
V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
#: What the engine offers, best first.
EXEC_PROTOCOLS = (V5, V4)
#: Seconds to connect and finish the websocket handshake.
CONNECT_TIMEOUT = 30.0
#: The exit status reported when the connection ended without a status document.
LOST = 255
#: Largest stdin message sent (the pipe hands out at most this much at once anyway).
STDIN_CHUNK = 1 << 16
#: TCP keepalive on open exec and port-forward connections: idle seconds, interval, probes.
KEEPALIVE = (30, 10, 3)
#: Read timeout of a log follow (the client wants a number): a day of silence ends it.
FOLLOW_READ_TIMEOUT = 86400.0
#: The container every studio pod runs its studio in (render/ names it).
MAIN_CONTAINER = "studio"
#: The only user a pod's commands can run as: the pod's own (uid 1000, runAsNonRoot).
POD_USER = "codestudio"


class ExecFailure(RuntimeFailure):
    """The exec (or port-forward) websocket could not be opened; ``status`` is the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------
# Connecting with the official client's configuration


def _ssl_context(cfg) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if not getattr(cfg, "verify_ssl", True):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        if getattr(cfg, "ssl_ca_cert", None):
            ctx.load_verify_locations(cafile=cfg.ssl_ca_cert)
        if getattr(cfg, "ca_cert_data", None):
            data = cfg.ca_cert_data
            ctx.load_verify_locations(cadata=data.decode() if isinstance(data, bytes) else data)
        if getattr(cfg, "assert_hostname", None) is False:
            ctx.check_hostname = False
    if getattr(cfg, "cert_file", None):
        ctx.load_cert_chain(cfg.cert_file, getattr(cfg, "key_file", None) or None)
    return ctx


def _auth_headers(cfg) -> list[str]:
    """``authorization`` from the configuration (its refresh hook runs: exec plugins, in-cluster tokens)."""
    headers = []
    for setting in (cfg.auth_settings() or {}).values():
        if setting.get("in") == "header" and setting.get("value"):
            headers.append(f"{setting['key']}: {setting['value']}")
    return headers


def _keepalive(sock: socket.socket) -> None:
    idle, interval, count = KEEPALIVE
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
    except (OSError, AttributeError):
        pass  # not every platform has every option; keepalive is best effort


def websocket_url(host: str, path: str, query: Sequence[tuple[str, str]]) -> str:
    """``ws(s)://`` URL of an API path on ``host`` (the configuration's ``https://...``)."""
    parts = urlsplit(host)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    base = parts.path.rstrip("/")
    return urlunsplit((scheme, parts.netloc, base + path, urlencode(list(query), quote_via=quote), ""))


def connect(cfg, path: str, query: Sequence[tuple[str, str]], *, protocols: Sequence[str], doing: str,
            timeout: float = CONNECT_TIMEOUT):
    """Open a websocket to the API server; return the connected ``websocket.WebSocket``.

    :param cfg: a ``kubernetes.client.Configuration`` (what ``load_kube_config`` filled in).
    :param doing: what it is for, in words, for error messages ("exec in pod cs-x").
    :raises ExecFailure: the server is unreachable, timed out, refused (401/403/404/...) or did not upgrade.
    """
    import websocket

    url = websocket_url(cfg.host, path, query)
    options: dict[str, Any] = {"header": _auth_headers(cfg), "subprotocols": list(protocols), "timeout": timeout,
                               "suppress_origin": True}
    if getattr(cfg, "proxy", None):
        proxy = urlsplit(cfg.proxy)
        options.update(http_proxy_host=proxy.hostname, http_proxy_port=proxy.port or 80, proxy_type="http")
        if getattr(cfg, "no_proxy", None):
            options["http_no_proxy"] = [h.strip() for h in cfg.no_proxy.split(",") if h.strip()]
    else:
        # The REST client ignores proxy variables; so does its websocket.
        options["http_no_proxy"] = ["*"]
    sslopt: dict[str, Any] = {}
    if url.startswith("wss://"):
        sslopt = {"context": _ssl_context(cfg)}
        if getattr(cfg, "tls_server_name", None):
            sslopt["server_hostname"] = cfg.tls_server_name
        if not getattr(cfg, "verify_ssl", True) or getattr(cfg, "assert_hostname", None) is False:
            sslopt["check_hostname"] = False
    ws = websocket.WebSocket(sslopt=sslopt, skip_utf8_validation=True, enable_multithread=True)
    server = urlsplit(cfg.host).netloc or cfg.host
    try:
        ws.connect(url, **options)
    except websocket.WebSocketBadStatusException as exc:
        raise _refused(exc.status_code, exc.resp_body, doing) from None
    except websocket.WebSocketTimeoutException:
        raise ExecFailure(f"could not {doing}: the API server at {server} did not answer within {timeout:g}s") from None
    except (ConnectionError, socket.gaierror, socket.timeout, TimeoutError) as exc:
        raise ExecFailure(f"could not {doing}: the API server at {server} is unreachable ({type(exc).__name__})") from None
    except ssl.SSLError as exc:
        raise ExecFailure(f"could not {doing}: TLS with the API server at {server} failed ({exc.reason or exc})") from None
    except websocket.WebSocketException as exc:
        # The handshake completed without an upgrade we accept (no subprotocol, a proxy answering instead).
        raise ExecFailure(f"could not {doing}: the API server at {server} refused the websocket upgrade "
                          f"({str(exc)[:200]}; offered {', '.join(protocols)})") from None
    except OSError as exc:
        raise ExecFailure(f"could not {doing}: the API server at {server} is unreachable ({exc.strerror or exc})") from None
    ws.settimeout(None)  # a command may be silent for long; keepalive notices a dead peer
    if ws.sock is not None:
        _keepalive(ws.sock)
    return ws


def _refused(status: int, body: bytes | None, doing: str) -> ExecFailure:
    message = ""
    try:
        doc = json.loads(body or b"")
        message = str(doc.get("message") or "")[:300]
    except (ValueError, AttributeError):
        text = (body or b"").decode(errors="replace").strip()
        message = text[:300] if text and "<" not in text[:1] else ""
    detail = f": {message}" if message else ""
    if status == 401:
        text = f"could not {doing}: the cluster did not accept the credentials (401 Unauthorized); check the kubeconfig"
    elif status == 403:
        text = (f"could not {doing}: forbidden (403){detail}. The engine's account needs 'create' on pods/exec "
                "(and pods/portforward for the gateway) in the Role in docs/kubernetes.md")
    elif status == 404:
        text = f"could not {doing}: not found (404){detail}; the pod is gone (restart the studio)"
    elif status == 400:
        text = f"could not {doing}: the API server refused the request (400){detail}"
    elif status >= 500:
        text = f"could not {doing}: the API server failed (HTTP {status}){detail}"
    else:
        text = f"could not {doing}: the API server refused the websocket upgrade (HTTP {status}){detail}"
    return ExecFailure(text, status)


# --------------------------------------------------------------------------
# A command in a pod


def exit_status(doc: dict) -> tuple[int, str | None]:
    """(exit status, message when it did not run) from the status channel's ``metav1.Status``."""
    if doc.get("status") == "Success":
        return 0, None
    details = doc.get("details") or {}
    for cause in details.get("causes") or ():
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message")), None
            except (TypeError, ValueError):
                break
    message = str(doc.get("message") or doc.get("reason") or "the command failed")
    # The runtime could not start it: the shell's statuses for "not found" and "cannot run".
    missing = "not found" in message or "no such file" in message.lower()
    return (127 if missing else 126), message


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class KubeExecProcess:
    """A command running in a pod through the exec websocket (``subprocess.Popen``'s surface).

    Two threads serve it: one reads the websocket into the ``stdout`` and
    ``stderr`` pipes and takes the exit status from the status channel; one
    sends what is written to ``stdin`` (closing ``stdin`` ends the command's
    input: a v5 close message, or the end frame of framed stdin). A reader
    that does not read ``stdout`` holds the websocket (as a full pipe holds
    a local process), so big outputs never pile up in memory.
    """

    def __init__(self, ws, *, stdin: bool, framed_stdin: bool, description: str, stdin_prefix: bytes = b""):
        from codestudio.sync import agent

        self.ws = ws
        self.description = description
        self.protocol: str = getattr(ws, "subprotocol", None) or ""
        self.returncode: int | None = None
        self.failure: str | None = None  # why it did not run, or why the connection ended
        self.framed = bool(stdin and framed_stdin and self.protocol != V5)
        self._killed = False
        self._done = threading.Event()
        out_r, self._out_w = os.pipe()
        err_r, self._err_w = os.pipe()
        self.stdout: IO[bytes] = os.fdopen(out_r, "rb")
        self.stderr: IO[bytes] = os.fdopen(err_r, "rb")
        self.stdin: IO[bytes] | None = None
        self._in_r: int | None = None
        if stdin:
            self._in_r, in_w = os.pipe()
            self.stdin = os.fdopen(in_w, "wb")
        self._status = bytearray()
        self._wake_r, self._wake_w = os.pipe()
        self._reader = threading.Thread(target=self._read, name=f"exec-read {description}", daemon=True)
        self._writer = (threading.Thread(target=self._write, name=f"exec-write {description}", daemon=True)
                        if stdin else None)
        for i in range(0, len(stdin_prefix), STDIN_CHUNK):
            self._send(STDIN, stdin_prefix[i : i + STDIN_CHUNK])
        if self.framed:
            self._send(STDIN, agent.FRAMED_STDIN)
        self._reader.start()
        if self._writer is not None:
            self._writer.start()

    # --- the websocket side ----------------------------------------------------

    def _send(self, channel: int, data: bytes) -> None:
        import websocket

        self.ws.send(bytes((channel,)) + data, opcode=websocket.ABNF.OPCODE_BINARY)

    def _write(self) -> None:
        """stdin pipe -> websocket; at its end, close stdin (v5) or send the end frame (framed v4)."""
        import select

        assert self._in_r is not None
        poller = select.poll()
        poller.register(self._in_r, select.POLLIN | select.POLLHUP)
        poller.register(self._wake_r, select.POLLIN | select.POLLHUP)
        try:
            while True:
                ready = {fd for fd, _ in poller.poll()}
                if self._wake_r in ready:
                    return  # the command ended: nobody reads its input any more
                data = os.read(self._in_r, STDIN_CHUNK)
                if not data:
                    break
                if self.framed:
                    data = len(data).to_bytes(4, "big") + data
                self._send(STDIN, data)
            if self.protocol == V5:
                self.ws.send(bytes((CLOSE, STDIN)), opcode=0x2)
            elif self.framed:
                self._send(STDIN, b"\0\0\0\0")
            # Plain v4 input cannot be closed: the command reads until the connection ends.
        except Exception:  # noqa: BLE001 - the connection ended; the reader reports it
            pass
        finally:
            os.close(self._in_r)  # later writes to stdin fail with a broken pipe, never block
            os.close(self._wake_r)

    def _read(self) -> None:
        import websocket

        fds = {STDOUT: self._out_w, STDERR: self._err_w}
        try:
            while True:
                opcode, data = self.ws.recv_data()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    break
                if not data:
                    continue
                channel, payload = data[0], data[1:]
                if channel in fds and payload and fds[channel] is not None:
                    try:
                        _write_all(fds[channel], payload)
                    except OSError:  # the reader closed its end: drop the rest, keep reading for the status
                        os.close(fds[channel])
                        fds[channel] = None
                elif channel == STATUS:
                    self._status += payload
                elif channel == CLOSE and self.protocol == V5 and payload[:1] in (bytes((STDOUT,)), bytes((STDERR,))):
                    fd = fds.get(payload[0])
                    if fd is not None:
                        os.close(fd)
                        fds[payload[0]] = None
        except Exception:  # noqa: BLE001 - connection closed or reset
            pass
        finally:
            self._finish(fds)

    def _finish(self, fds: dict) -> None:
        code, failure = None, None
        if self._status:
            try:
                code, failure = exit_status(json.loads(bytes(self._status)))
            except ValueError:
                failure = f"unreadable status from the API server: {bytes(self._status)[:200]!r}"
        if code is None:
            if self._killed:
                code = -9
            else:
                code = LOST
                failure = failure or f"the exec connection to {self.description} ended without an exit status"
        if failure and fds.get(STDERR) is not None:
            try:
                _write_all(fds[STDERR], f"codestudio: {failure}\n".encode())
            except OSError:
                pass
        for fd in fds.values():
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.failure = failure
        self.returncode = code
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # the writer has ended already
        os.close(self._wake_w)
        if self._writer is None:
            os.close(self._wake_r)
        try:
            self.ws.close(timeout=1)
        except Exception:  # noqa: BLE001
            pass
        try:
            self.ws.shutdown()  # close() leaves the socket open once the server's close frame came
        except Exception:  # noqa: BLE001
            pass
        self._done.set()

    # --- Popen's surface -------------------------------------------------------

    def poll(self) -> int | None:
        return self.returncode if self._done.is_set() else None

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(self.description, timeout)
        return self.returncode  # type: ignore[return-value]

    def communicate(self, input: bytes | None = None, timeout: float | None = None) -> tuple[bytes, bytes]:
        deadline = None if timeout is None else time.monotonic() + timeout
        out, err = bytearray(), bytearray()

        def drain(pipe, into):
            while chunk := pipe.read1(1 << 16):
                into += chunk

        threads = [threading.Thread(target=drain, args=(self.stdout, out), daemon=True),
                   threading.Thread(target=drain, args=(self.stderr, err), daemon=True)]
        for t in threads:
            t.start()
        if self.stdin is not None:
            try:
                if input:
                    self.stdin.write(input)
                self.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        for t in threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                raise subprocess.TimeoutExpired(self.description, timeout)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return bytes(out), bytes(err)

    def kill(self) -> None:
        """End the exec session (the kubelet then closes the command's pipes); ``wait()`` gives -9.

        The exec API cannot send signals: a command that ignores the end of
        its input and its closed output runs on until it ends.
        """
        if self._done.is_set():
            return
        self._killed = True
        try:
            if self.ws.sock is not None:
                self.ws.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader blocked in recv
            self.ws.shutdown()
        except Exception:  # noqa: BLE001
            pass

    terminate = kill

    def __enter__(self) -> KubeExecProcess:
        return self

    def __exit__(self, *exc) -> None:
        for pipe in (self.stdin, self.stdout, self.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        self.kill()
        self.wait()


def exec_path(namespace: str, pod: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}/exec"


#: A ``python -c`` program longer than this travels over stdin, not in the exec URL (proxies in front
#: of API servers often refuse request lines over 8-64 KiB; the sync agent is about 90 KiB encoded).
INLINE_PROGRAM_MAX = 4096
#: What runs instead: reads the program's length and the program from stdin, then runs it as ``__main__``
#: (``sys.argv`` stays the command's own arguments; the rest of stdin is the program's input).
BOOTSTRAP = ("import sys;b=sys.stdin.buffer;n=int(b.readline());"
             "exec(compile(b.read(n),'<codestudio program>','exec'),{'__name__':'__main__'})")


def program_over_stdin(argv: Sequence[str]) -> tuple[list[str], bytes]:
    """``python3 -I -c LONG_PROGRAM args`` -> (``python3 -I -c BOOTSTRAP args``, the stdin prefix)."""
    argv = list(argv)
    if len(argv) >= 4 and argv[1:3] == ["-I", "-c"] and len(argv[3]) > INLINE_PROGRAM_MAX:
        program = argv[3].encode()
        return argv[:3] + [BOOTSTRAP] + argv[4:], b"%d\n" % len(program) + program
    return argv, b""


def exec_in_pod(cfg, namespace: str, pod: str, argv: Sequence[str], *, container: str = MAIN_CONTAINER,
                stdin: bool = False, framed_stdin: bool = False, protocols: Sequence[str] = EXEC_PROTOCOLS,
                timeout: float = CONNECT_TIMEOUT) -> KubeExecProcess:
    """Start ``argv`` in ``pod``'s ``container`` through the exec API and return it running.

    :param cfg: the official client's ``Configuration`` (``ApiClient.configuration``).
    :param stdin: give it a stdin pipe; closing the pipe ends its input (v5, or v4 with ``framed_stdin``).
    :param framed_stdin: the command understands codestudio's stdin framing, used where stdin
        cannot be closed (v4).
    :raises ExecFailure: the exec could not be opened (see :func:`connect`).
    """
    if not argv:
        raise RuntimeFailure("exec: no command")
    prefix = b""
    if stdin:
        argv, prefix = program_over_stdin(argv)
    query = [("command", str(a)) for a in argv]
    query += [("container", container), ("stdout", "true"), ("stderr", "true")]
    if stdin:
        query.append(("stdin", "true"))
    doing = f"run {os.path.basename(str(argv[0]))} in pod {pod}"
    ws = connect(cfg, exec_path(namespace, pod), query, protocols=protocols, doing=doing, timeout=timeout)
    if ws.subprotocol not in (V5, V4):
        ws.close()
        raise ExecFailure(f"could not {doing}: the API server chose the exec protocol {ws.subprotocol or '(none)'}; "
                          f"codestudio speaks {' and '.join(EXEC_PROTOCOLS)}")
    if stdin and not framed_stdin and ws.subprotocol == V4:
        ws.close()
        raise ExecFailure(f"could not {doing} with input: the API server speaks only {V4}, where a command's stdin "
                          "cannot be closed; only commands that read framed stdin (the sync agent) can take input "
                          "there (Kubernetes 1.30 and later speak v5)")
    return KubeExecProcess(ws, stdin=stdin, framed_stdin=framed_stdin, description=f"pod {pod}", stdin_prefix=prefix)


def exec_process(cluster, namespace: str, pod: str, argv: Sequence[str], *, container: str = MAIN_CONTAINER,
                 stdin: bool = False, framed_stdin: bool = False) -> KubeExecProcess:
    """:func:`exec_in_pod` with a :class:`~codestudio.runtime.kubernetes.client.Cluster`'s client and timeouts."""
    return exec_in_pod(cluster.api.configuration, namespace, pod, argv, container=container, stdin=stdin,
                       framed_stdin=framed_stdin, timeout=max(getattr(cluster, "connect_timeout", 0), 10.0))


#: ``exec_detached``: start the command in the background with its own session and return at once.
#: ``command -v`` first, so a missing program is reported (status 127) instead of vanishing.
_DETACH = ('command -v "$1" >/dev/null 2>&1 || { echo "$1: not found" >&2; exit 127; }; '
           'if command -v setsid >/dev/null 2>&1; then setsid "$@" </dev/null >/dev/null 2>&1 & '
           'else "$@" </dev/null >/dev/null 2>&1 & fi')

#: ``copy_out``: a tar of one absolute path, as ``/``-relative names; status 3 when it does not exist.
_TAR = 'cd / && [ -e "$1" ] || exit 3; exec tar -cf - -- "$1"'


class PodTransport:
    """The exec and log side of the Kubernetes runtime, with the :class:`~codestudio.runtime.base.Runtime` signatures.

    :class:`~codestudio.sync.transport.ExecTransport` can run the sync agent
    through it directly (it has ``name``, ``exec`` and ``exec_framed``).

    :param api_client: the official client's ``ApiClient`` (its configuration:
        kubeconfig context or in-cluster account).
    :param namespace: the runtime's namespace.
    :param container: the studio container's name in every pod.
    """

    name = "kubernetes"

    def __init__(self, api_client, namespace: str, *, container: str = MAIN_CONTAINER,
                 connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = 30.0,
                 protocols: Sequence[str] = EXEC_PROTOCOLS):
        self.api_client = api_client
        self.namespace = namespace
        self.container = container
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.protocols = tuple(protocols)

    @property
    def configuration(self):
        return self.api_client.configuration

    def _core(self):
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    @staticmethod
    def check_user(user: str | None) -> None:
        # The exec API has no user: commands run as the container's user, which the pod
        # security settings fix to codestudio (uid 1000, non-root, no escalation).
        if user not in (None, POD_USER, "1000"):
            raise RuntimeFailure(f"the kubernetes runtime runs commands as the pod's user ({POD_USER}, uid 1000); "
                                 f"it cannot run them as {user!r}")

    # --- Runtime.exec and friends --------------------------------------------

    def exec(self, pod: str, argv: Sequence[str], *, user: str | None = POD_USER, stdin: bool = False,
             framed_stdin: bool = False) -> KubeExecProcess:
        self.check_user(user)
        return exec_in_pod(self.configuration, self.namespace, pod, argv, container=self.container, stdin=stdin,
                           framed_stdin=framed_stdin, protocols=self.protocols, timeout=self.connect_timeout)

    def exec_framed(self, pod: str, argv: Sequence[str], *, user: str | None = POD_USER) -> KubeExecProcess:
        return self.exec(pod, argv, user=user, stdin=True, framed_stdin=True)

    def exec_detached(self, pod: str, argv: Sequence[str], *, user: str | None = POD_USER) -> None:
        if not argv:
            raise RuntimeFailure("exec: no command")
        proc = self.exec(pod, ["/bin/sh", "-c", _DETACH, "sh", *argv], user=user)
        out, err = proc.communicate(timeout=self.read_timeout + self.connect_timeout)
        if proc.returncode != 0:
            detail = (err or out).decode(errors="replace").strip()[-300:]
            raise RuntimeFailure(f"could not start {argv[0]} in pod {pod}: {detail or f'status {proc.returncode}'}")

    def copy_out(self, pod: str, path: str, out: IO[bytes]) -> bool:
        """A tar of ``path`` (names relative to ``/``) through exec: only while the container runs.

        The exec API cannot reach a stopped container's files (``podman cp``
        can): for a pod that is not running this raises, and the lifecycle
        keeps what it can say about it.
        """
        if not path.startswith("/"):
            raise RuntimeFailure(f"copy_out: {path!r} is not an absolute path")
        rel = path.strip("/") or "."
        proc = self.exec(pod, ["/bin/sh", "-c", _TAR, "sh", rel])
        err = bytearray()

        def drain() -> None:
            while chunk := proc.stderr.read1(1 << 16):
                err.extend(chunk)
                del err[:-4096]

        t = threading.Thread(target=drain, daemon=True)
        t.start()
        import shutil

        shutil.copyfileobj(proc.stdout, out, 1 << 20)
        code = proc.wait()
        t.join()
        if code == 3:
            return False
        if code != 0:
            raise RuntimeFailure(f"tar of {path} in pod {pod} exited with status {code}: "
                                 f"{bytes(err).decode(errors='replace').strip()[-300:]}")
        return True

    # --- logs --------------------------------------------------------------------

    def logs(self, pod: str, *, follow: bool = False, tail: int | None = None) -> LogStream:
        """The studio container's output through the log API; ``follow`` streams until it ends or :meth:`close`."""
        kwargs: dict[str, Any] = {"container": self.container, "follow": follow, "_preload_content": False,
                                  # a quiet container is not a dead server: keepalive notices those
                                  "_request_timeout": (self.connect_timeout,
                                                       FOLLOW_READ_TIMEOUT if follow else self.read_timeout)}
        if tail is not None:
            kwargs["tail_lines"] = tail
        resp = self._log_call(pod, kwargs, doing=f"read the logs of pod {pod}")
        if follow:
            sock = _response_socket(resp)
            if sock is not None:
                _keepalive(sock)
        return LogStream(resp)

    def _log_call(self, pod: str, kwargs: dict, *, doing: str):
        from kubernetes.client.exceptions import ApiException

        try:
            return self._core().read_namespaced_pod_log(pod, self.namespace, **kwargs)
        except ApiException as exc:
            raise _refused(exc.status or 0, exc.body.encode() if isinstance(exc.body, str) else exc.body, doing) from None
        except Exception as exc:  # urllib3 connection errors
            import urllib3

            if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
                raise ExecFailure(f"could not {doing}: the API server at {urlsplit(self.configuration.host).netloc} "
                                  f"did not answer ({type(exc).__name__})") from None
            raise

    def save_logs(self, pod: str, target: Path) -> bool:
        """Write the container's logs, the previous run's when it restarted, and how it ended, to ``target``.

        :return: False when the pod does not exist (nothing written).
        """
        from kubernetes.client.exceptions import ApiException

        core = self._core()
        timeout = (self.connect_timeout, self.read_timeout)
        try:
            # Raw JSON: the typed models reject objects with fields a server leaves out.
            resp = core.read_namespaced_pod(pod, self.namespace, _request_timeout=timeout, _preload_content=False)
            pod_obj = json.loads(resp.data or b"{}")
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise _refused(exc.status or 0, None, f"read pod {pod}") from None
        except Exception as exc:  # noqa: BLE001
            raise ExecFailure(f"could not read pod {pod}: the API server did not answer ({type(exc).__name__})") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        sections: list[tuple[str, bytes]] = []
        statuses = (pod_obj.get("status") or {}).get("containerStatuses") or []
        status = next((s for s in statuses if s.get("name") == self.container), None)
        if status is not None and (status.get("restartCount") or 0) > 0:
            sections.append(("previous run", self._read_log(core, pod, previous=True)))
        sections.append(("current run", self._read_log(core, pod, previous=False)))
        with open(target, "wb") as out:
            for title, data in sections:
                out.write(f"===== {self.container} container, {title} =====\n".encode())
                out.write(data)
                if data and not data.endswith(b"\n"):
                    out.write(b"\n")
            out.write(f"===== how it ended =====\n{_container_summary(status)}\n".encode())
        return True

    def _read_log(self, core, pod: str, *, previous: bool) -> bytes:
        from kubernetes.client.exceptions import ApiException

        try:
            resp = core.read_namespaced_pod_log(pod, self.namespace, container=self.container, previous=previous,
                                                _preload_content=False,
                                                _request_timeout=(self.connect_timeout, self.read_timeout))
            try:
                return resp.read()
            finally:
                resp.release_conn()
        except ApiException as exc:
            # 400: the container has not started (or has no previous run): no logs, not a failure.
            return f"(no logs: {_status_message(exc) or exc.status})\n".encode()
        except Exception as exc:  # noqa: BLE001
            return f"(logs unreadable: {type(exc).__name__})\n".encode()


def _status_message(exc) -> str:
    try:
        return str(json.loads(exc.body).get("message") or "")[:300]
    except (TypeError, ValueError, AttributeError):
        return ""


def _container_summary(status: dict | None) -> str:
    if status is None:
        return "the container has no status (never created)"
    lines = [f"restarts: {status.get('restartCount') or 0}, ready: {bool(status.get('ready'))}"]
    for label, key in (("now", "state"), ("last", "lastState")):
        state = status.get(key) or {}
        if state.get("terminated"):
            t = state["terminated"]
            lines.append(f"{label}: terminated, exit status {t.get('exitCode')}, reason {t.get('reason') or '-'}"
                         + (f", signal {t['signal']}" if t.get("signal") else "")
                         + (f": {t['message']}" if t.get("message") else ""))
        elif state.get("waiting"):
            w = state["waiting"]
            lines.append(f"{label}: waiting, reason {w.get('reason') or '-'}" + (f": {w['message']}" if w.get("message") else ""))
        elif state.get("running"):
            lines.append(f"{label}: running since {state['running'].get('startedAt')}")
    return "\n".join(lines)


def _response_socket(resp) -> socket.socket | None:
    """The socket under a urllib3 response (to shut it down from another thread)."""
    for path in (("connection", "sock"), ("_connection", "sock"), ("_fp", "fp", "raw", "_sock")):
        obj = resp
        for attr in path:
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if isinstance(obj, socket.socket):
            return obj
    return None


class LogStream:
    """A log API response in chunks; :meth:`close` (from any thread) ends a follow."""

    def __init__(self, resp):
        self.resp = resp
        self.sock = _response_socket(resp)
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self.closed:
            raise StopIteration
        try:
            chunk = self.resp.read1(1 << 16) if hasattr(self.resp, "read1") else self.resp.read(1 << 16)
        except Exception:  # noqa: BLE001 - closed from another thread, or the connection ended
            chunk = b""
        if not chunk:
            self.close()
            raise StopIteration
        return chunk

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in another thread
            except OSError:
                pass
        try:
            self.resp.release_conn()
        except Exception:  # noqa: BLE001
            pass
        try:
            self.resp.close()
        except Exception:  # noqa: BLE001
            pass


__all__ = [
    "EXEC_PROTOCOLS",
    "ExecFailure",
    "KubeExecProcess",
    "LogStream",
    "PodTransport",
    "V4",
    "V5",
    "connect",
    "exec_in_pod",
    "exec_process",
    "exit_status",
]
