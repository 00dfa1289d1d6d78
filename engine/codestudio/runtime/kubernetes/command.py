"""A command in a pod through the exec websocket: :func:`exec_in_pod` starts it as a :class:`KubeExecProcess`.

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
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import IO
from urllib.parse import quote

from codestudio.errors import RuntimeFailure
from codestudio.runtime.kubernetes.connection import CONNECT_TIMEOUT, ExecFailure, connect

STDIN, STDOUT, STDERR, STATUS, RESIZE = 0, 1, 2, 3, 4
#: v5: ``[CLOSE, channel]`` closes a channel (stdin).
CLOSE = 255
V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
#: What the engine offers, best first.
EXEC_PROTOCOLS = (V5, V4)
#: The exit status reported when the connection ended without a status document.
LOST = 255
#: Largest stdin message sent (the pipe hands out at most this much at once anyway).
STDIN_CHUNK = 1 << 16
#: The container every studio pod runs its studio in (render/ names it).
MAIN_CONTAINER = "studio"


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
