"""List + watch that never hangs and never misses a change.

:func:`follow` lists first (every current object comes as ``SYNC``), then
watches from the list's resource version in chunks of at most
:data:`WATCH_CHUNK` seconds. A watch that ends (the server's timeout, a
dropped connection) is resumed from the last resource version seen; one
answered with ``410 Gone`` (the version was compacted away) is resumed from
a fresh list, announced by a ``RELIST`` item so the caller can forget what
it derived. Other API errors raise :class:`~.client.ApiError` with a
clear message. Every request has a read timeout a little longer than its
watch chunk, so a dead API server ends the follow with an error.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

#: Longest single watch request (seconds); the server ends it, we resume.
WATCH_CHUNK = 20
#: Pause before re-watching after a stream ended at once (a flapping server).
RETRY_PAUSE = 0.2


def follow(cluster, list_fn: Callable, *args, doing: str, deadline: float | None = None,
           stop: threading.Event | None = None, chunk: float = WATCH_CHUNK, **kwargs) -> Iterator[tuple[str, dict | None]]:
    """Yield ``(type, object)``: ``SYNC`` for listed objects, then ``ADDED``/``MODIFIED``/``DELETED``;
    ``(RELIST, None)`` before the objects of a fresh list after 410 Gone. Ends at ``deadline``
    (``time.monotonic()``) or when ``stop`` is set."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.watch.watch import iter_resp_lines

    from codestudio.runtime.kubernetes.client import ApiError, _is_transport_error, _transport_reason, describe_api_error

    rv: str | None = None

    def remaining() -> float:
        return chunk if deadline is None else min(chunk, deadline - time.monotonic())

    while not (stop is not None and stop.is_set()) and remaining() > 0:
        if rv is None:
            resp = cluster.call(list_fn, *args, doing=doing, _preload_content=False, **kwargs)
            listing = json.loads(resp.data or b"{}")
            for item in listing.get("items") or []:
                yield "SYNC", item
            rv = (listing.get("metadata") or {}).get("resourceVersion") or "0"
        seconds = max(1, int(remaining()))
        began = time.monotonic()
        try:
            # The client's Watch cannot report a 410 without deserialising every object into
            # models (client 37: KeyError 'raw_object'); the watch is read here, line by line.
            resp = list_fn(*args, watch=True, resource_version=rv, timeout_seconds=seconds, allow_watch_bookmarks=True,
                           _preload_content=False,
                           _request_timeout=(cluster.connect_timeout, seconds + cluster.connect_timeout), **kwargs)
            try:
                for line in iter_resp_lines(resp):
                    if not line:
                        continue
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    typ = event.get("type", "MODIFIED")
                    if typ == "ERROR":
                        code = obj.get("code")
                        raise ApiException(status=code, reason=f"{obj.get('reason')}: {obj.get('message')}")
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    if typ == "BOOKMARK":
                        continue
                    yield typ, obj
                    if (stop is not None and stop.is_set()) or (deadline is not None and time.monotonic() >= deadline):
                        return
            finally:
                resp.close()
                resp.release_conn()
        except ApiException as exc:
            if exc.status == 410:
                rv = None
                yield "RELIST", None
                continue
            raise describe_api_error(exc, doing, namespace=cluster.namespace) from None
        except Exception as exc:
            if _is_transport_error(exc):
                # A read timeout on a quiet watch is the server forgetting to end it: resume once more,
                # but a server that cannot even be reached is an error.
                if "timed out waiting" in _transport_reason(exc):
                    continue
                raise ApiError(f"could not {doing}: the API server at {cluster.host} did not answer "
                               f"({_transport_reason(exc)})") from None
            raise
        if time.monotonic() - began < RETRY_PAUSE:
            time.sleep(RETRY_PAUSE)
