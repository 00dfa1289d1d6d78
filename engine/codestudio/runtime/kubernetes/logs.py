"""A studio container's logs through the Kubernetes log API: followed (:class:`LogStream`) or saved to a file."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from codestudio.runtime.kubernetes.connection import ExecFailure, keepalive, refused_error

#: Read timeout of a log follow (the client wants a number): a day of silence ends it.
FOLLOW_READ_TIMEOUT = 86400.0


class PodLogs:
    """The log side of :class:`~codestudio.runtime.kubernetes.exec.PodTransport` (a mixin).

    Uses the transport's ``namespace``, ``container``, ``connect_timeout``,
    ``read_timeout``, ``configuration`` and ``_core()``.
    """

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
                keepalive(sock)
        return LogStream(resp)

    def _log_call(self, pod: str, kwargs: dict, *, doing: str):
        from kubernetes.client.exceptions import ApiException

        try:
            return self._core().read_namespaced_pod_log(pod, self.namespace, **kwargs)
        except ApiException as exc:
            raise refused_error(exc.status or 0, exc.body.encode() if isinstance(exc.body, str) else exc.body, doing) from None
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
            raise refused_error(exc.status or 0, None, f"read pod {pod}") from None
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
