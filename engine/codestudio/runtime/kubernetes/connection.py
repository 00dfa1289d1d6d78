"""Websockets to the Kubernetes API server with the official client's configuration (exec and port-forward).

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
import socket
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from codestudio.errors import RuntimeFailure

#: Seconds to connect and finish the websocket handshake.
CONNECT_TIMEOUT = 30.0
#: TCP keepalive on open exec and port-forward connections: idle seconds, interval, probes.
KEEPALIVE = (30, 10, 3)


class ExecFailure(RuntimeFailure):
    """The exec (or port-forward) websocket could not be opened; ``status`` is the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


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


def keepalive(sock: socket.socket) -> None:
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
        raise refused_error(exc.status_code, exc.resp_body, doing) from None
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
        keepalive(ws.sock)
    return ws


def refused_error(status: int, body: bytes | None, doing: str) -> ExecFailure:
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
