"""Port-forwards from this machine's loopback to studio pods (the ``port-forward`` gateway mode).

When the engine and its gateway run outside the cluster, nginx reaches each
studio port through a local listener on ``127.0.0.1``; every connection to
it is relayed to the pod's port through the API server's port-forward
websocket (``/api/v1/namespaces/NS/pods/POD/portforward?ports=P``, protocol
``v4.channel.k8s.io``: channel 0 data, channel 1 errors, each opened with
the port number as two little-endian bytes).

- **One listener per studio port**, kept by one forwarder process per pod
  (``python -m codestudio.runtime.kubernetes.portforward``, started by
  :func:`forward_ports`): the engine's commands end, the studio's browser
  traffic must not. The process records its pid and ports in
  ``<workdir>/forward-<pod>.json``; :func:`stop_forwards` ends it.
- **Re-opened when it drops**: each TCP connection gets its own websocket
  (the websocket protocol carries one stream per port), so a dropped one
  (an API server restart, a network blip, an idle timeout of a proxy) costs
  only that connection; the next one opens a fresh websocket. When the pod
  is gone (404), a studio's forwarder looks up the pod set's current pod by
  its label and forwards there; a webapp replica's forwarder does not (each
  replica has its own prefix: another replica must not answer for it), it
  refuses the connection until the engine ends it with its pod
  (``follow=False``). A forwarder process that died (a reboot) is
  started again on the same local ports by :func:`ensure_forwards`, so the
  gateway's upstreams stay valid.
- Connections and handshakes time out (:data:`~.exec.CONNECT_TIMEOUT`), open
  websockets have TCP keepalive, and errors are logged to
  ``<workdir>/forward-<pod>.log`` without headers or tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import quote

from codestudio.errors import RuntimeFailure

LOOPBACK = "127.0.0.1"
PORTFORWARD_PROTOCOLS = ("v4.channel.k8s.io",)
#: Seconds :func:`forward_ports` waits for a new forwarder process to listen.
START_TIMEOUT = 20.0
#: Label naming the pod set a pod belongs to (the Kubernetes runtime's).
PODSET_LABEL = "codestudio.io/podset"


def portforward_path(namespace: str, pod: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}/portforward"


class Relay:
    """One local connection relayed through one port-forward websocket."""

    def __init__(self, client: socket.socket, ws, port: int, log: Callable[[str], None]):
        self.client, self.ws, self.port, self.log = client, ws, port, log

    def run(self) -> None:
        back = threading.Thread(target=self._from_pod, daemon=True)
        back.start()
        try:
            while data := self.client.recv(1 << 16):
                self.ws.send(b"\x00" + data, opcode=0x2)
        except OSError:
            pass
        except Exception as exc:  # noqa: BLE001 - websocket closed under us
            self.log(f"port {self.port}: {type(exc).__name__} sending to the pod")
        finally:
            self._close_ws()
            back.join(30)
            try:
                self.client.close()
            except OSError:
                pass

    def _from_pod(self) -> None:
        try:
            while True:
                opcode, data = self.ws.recv_data()
                if opcode == 0x8 or not data:
                    if opcode == 0x8:
                        break
                    continue
                if data[0] == 0:
                    self.client.sendall(data[1:])
                elif data[0] == 1 and data[1:]:
                    self.log(f"port {self.port}: the pod side said: {data[1:].decode(errors='replace')[:300]}")
                    break
        except Exception:  # noqa: BLE001 - the websocket or the client went away
            pass
        finally:
            try:
                self.client.shutdown(socket.SHUT_RDWR)  # wakes run()'s recv
            except OSError:
                pass

    def _close_ws(self) -> None:
        try:
            if self.ws.sock is not None:
                self.ws.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.ws.shutdown()
        except Exception:  # noqa: BLE001
            pass


class Forwarder:
    """Local listeners for one pod's ports, each connection relayed through a fresh port-forward websocket.

    :param cfg: the official client's ``Configuration``.
    :param pod: the pod forwarded to; ``resolve()`` (optional) names the pod
        set's current pod when this one is gone.
    :param ports: remote (pod) port -> local port (0: choose a free one).
    """

    def __init__(self, cfg, namespace: str, pod: str, ports: Mapping[int, int], *,
                 resolve: Callable[[], str | None] | None = None, log: Callable[[str], None] | None = None,
                 timeout: float | None = None):
        from codestudio.runtime.kubernetes import exec as kexec

        self.cfg, self.namespace, self.pod = cfg, namespace, pod
        self.resolve = resolve
        self.log = log or (lambda message: None)
        self.timeout = timeout or kexec.CONNECT_TIMEOUT
        self.listeners: dict[int, socket.socket] = {}
        self.local: dict[int, int] = {}
        self.opened = 0  # websockets opened (tests, logs)
        self._stop = threading.Event()
        try:
            for remote, local in ports.items():
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((LOOPBACK, int(local)))
                s.listen(64)
                self.listeners[int(remote)] = s
                self.local[int(remote)] = s.getsockname()[1]
        except OSError as exc:
            self.close()
            raise RuntimeFailure(f"cannot listen on {LOOPBACK}:{local} for pod {pod} port {remote}: "
                                 f"{exc.strerror or exc}") from None
        self.threads = [threading.Thread(target=self._accept, args=(remote, s), daemon=True,
                                         name=f"forward {pod}:{remote}") for remote, s in self.listeners.items()]
        for t in self.threads:
            t.start()

    def _open(self, remote: int):
        from codestudio.runtime.kubernetes.exec import ExecFailure, connect

        for attempt in (1, 2):
            try:
                ws = connect(self.cfg, portforward_path(self.namespace, self.pod), [("ports", str(remote))],
                             protocols=PORTFORWARD_PROTOCOLS, doing=f"forward port {remote} of pod {self.pod}",
                             timeout=self.timeout)
            except ExecFailure as exc:
                # The pod was replaced (a Deployment makes a new one): forward to the current one.
                if exc.status == 404 and attempt == 1 and self.resolve is not None:
                    current = self.resolve()
                    if current and current != self.pod:
                        self.log(f"pod {self.pod} is gone; forwarding to {current}")
                        self.pod = current
                        continue
                raise
            ws.settimeout(self.timeout)
            # Each channel opens with its port number; then data flows.
            for _ in range(2):
                opcode, data = ws.recv_data()
                if len(data) != 3 or int.from_bytes(data[1:3], "little") != remote:
                    ws.shutdown()
                    raise RuntimeFailure(f"port-forward to {self.pod}:{remote}: unexpected first frame {data[:8]!r}")
            ws.settimeout(None)
            self.opened += 1
            return ws
        raise RuntimeFailure("unreachable")

    def _accept(self, remote: int, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client, remote), daemon=True).start()

    def _serve(self, client: socket.socket, remote: int) -> None:
        try:
            ws = self._open(remote)
        except Exception as exc:  # noqa: BLE001 - one failed connection; the listener stays
            self.log(f"port {remote}: {exc}")
            client.close()
            return
        Relay(client, ws, remote, self.log).run()

    def close(self) -> None:
        self._stop.set()
        for s in self.listeners.values():
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept (close alone does not)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


# --------------------------------------------------------------------------
# The forwarder process and the runtime's calls


def _state_file(workdir: Path, pod: str) -> Path:
    return Path(workdir) / f"forward-{pod}.json"


def _alive(pid: int) -> bool:
    """The pid runs and is a forwarder of ours (a reused pid is someone else's)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"codestudio.runtime.kubernetes.portforward" in cmdline


def _free_ports(count: int) -> list[int]:
    socks, out = [], []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((LOOPBACK, 0))
            socks.append(s)
            out.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return out


def _spawn(runtime, podset: str, pod: str, mapping: dict[int, tuple[int, int]], workdir: Path, *,
           follow: bool = True) -> dict:
    """Start a forwarder process for ``pod``; ``mapping``: server port -> (pod port, local port);
    ``follow``: forward to the pod set's current pod once ``pod`` is gone."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    state = _state_file(workdir, pod)
    state.unlink(missing_ok=True)
    settings = runtime.settings
    argv = [sys.executable, "-m", "codestudio.runtime.kubernetes.portforward", "--namespace", runtime.namespace,
            "--pod", pod, "--podset", podset, "--state", str(state)]
    if getattr(settings, "context", None):
        argv += ["--context", settings.context]
    if not follow:
        argv.append("--no-follow")
    for server, (remote, local) in sorted(mapping.items()):
        argv += ["--map", f"{server}:{remote}:{local}"]
    log = open(workdir / f"forward-{pod}.log", "ab")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    finally:
        log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            doc = json.loads(state.read_text())
            if doc.get("pid") == proc.pid:
                return doc
        except (OSError, ValueError):
            pass
        if proc.poll() is not None:
            tail = (workdir / f"forward-{pod}.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeFailure(f"the port-forward for pod {pod} did not start: {' / '.join(tail) or 'no output'}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeFailure(f"the port-forward for pod {pod} did not listen within {START_TIMEOUT:g}s")


def forward_ports(runtime, pod: str, ports: Mapping[int, int], *, workdir: Path,
                  follow: bool = True) -> dict[int, int]:
    """Keep a port-forward for each of ``pod``'s ports; return server port -> local loopback port.

    :param runtime: the Kubernetes runtime (its ``settings.context`` and ``namespace``).
    :param ports: server (entrypoint) port -> the pod port to reach (the guard's).
    :param workdir: the pod set's engine folder (state, logs).
    :param follow: when ``pod`` is gone, forward to the pod set's current pod (a studio's
        replacement); False for a webapp replica, which no other pod may answer for.
    """
    podset = Path(workdir).name
    current = _read(Path(workdir), pod)
    if current and _alive(current["pid"]):
        return {int(k): int(v[1]) for k, v in current["ports"].items()}
    locals_ = _free_ports(len(ports))
    mapping = {int(s): (int(r), l) for (s, r), l in zip(sorted(ports.items()), locals_, strict=True)}
    doc = _spawn(runtime, podset, pod, mapping, Path(workdir), follow=follow)
    return {int(k): int(v[1]) for k, v in doc["ports"].items()}


def ensure_forwards(runtime, name: str, *, workdir: Path) -> list[str]:
    """Start again, on their recorded local ports, the forwarders of ``name`` whose process died.

    :return: the pods whose forwarder was restarted.
    """
    restarted = []
    for state in sorted(Path(workdir).glob("forward-*.json")) if Path(workdir).is_dir() else ():
        try:
            doc = json.loads(state.read_text())
        except (OSError, ValueError):
            continue
        if _alive(doc.get("pid", -1)):
            continue
        mapping = {int(k): (int(v[0]), int(v[1])) for k, v in doc["ports"].items()}
        follow = doc["follow"] if "follow" in doc else not _replicas_apart(Path(workdir))
        _spawn(runtime, name, doc["pod"], mapping, Path(workdir), follow=follow)
        restarted.append(doc["pod"])
    return restarted


def _replicas_apart(workdir: Path) -> bool:
    """Whether the pod set's folder says its pods are replicas reached each on its own (a webapp's):
    what a forwarder's state written before it recorded ``follow`` falls back on (a replica's never follows)."""
    try:
        return bool(json.loads((workdir / "podset.json").read_text())["per_pod"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _read(workdir: Path, pod: str) -> dict | None:
    try:
        return json.loads(_state_file(workdir, pod).read_text())
    except (OSError, ValueError):
        return None


def forwarded_pods(workdir: Path) -> list[str]:
    """The pods that have a forwarder (alive or not) in the pod set's folder."""
    out = []
    for state in sorted(Path(workdir).glob("forward-*.json")) if Path(workdir).is_dir() else ():
        try:
            out.append(json.loads(state.read_text())["pod"])
        except (OSError, ValueError, KeyError):
            continue
    return out


def stop_forwards(runtime, name: str, *, workdir: Path, timeout: float = 10, pod: str | None = None) -> None:
    """End every forwarder of the pod set ``name`` (only ``pod``'s when given) and remove their state (idempotent)."""
    states = [_state_file(Path(workdir), pod)] if pod is not None else sorted(Path(workdir).glob("forward-*.json"))
    for state in states if Path(workdir).is_dir() else ():
        if not state.exists():
            continue
        try:
            pid = int(json.loads(state.read_text()).get("pid", -1))
        except (OSError, ValueError):
            pid = -1
        if pid > 0 and _alive(pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        state.unlink(missing_ok=True)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="codestudio-portforward", description="forward a pod's ports to loopback")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--pod", required=True)
    parser.add_argument("--podset", required=True)
    parser.add_argument("--context", default=None)
    parser.add_argument("--state", required=True)
    parser.add_argument("--map", action="append", default=[], help="SERVER:POD_PORT:LOCAL_PORT")
    parser.add_argument("--no-follow", action="store_true", help="never forward to another pod of the pod set")
    args = parser.parse_args(argv)
    from codestudio.runtime.kubernetes.client import Cluster

    def log(message: str) -> None:
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}", flush=True)

    cluster = Cluster(context=args.context, namespace=args.namespace)

    def resolve() -> str | None:
        try:
            resp = cluster.core.list_namespaced_pod(args.namespace, label_selector=f"{PODSET_LABEL}={args.podset}",
                                                    _preload_content=False, _request_timeout=cluster.timeout())
            items = json.loads(resp.data or b"{}").get("items") or []
        except Exception as exc:  # noqa: BLE001
            log(f"could not list the pods of {args.podset}: {type(exc).__name__}")
            return None
        running = [p["metadata"]["name"] for p in items if (p.get("status") or {}).get("phase") == "Running"]
        return running[0] if running else None

    mapping = {}
    for item in args.map:
        server, remote, local = (int(x) for x in item.split(":"))
        mapping[server] = (remote, local)
    forwarder = Forwarder(cluster.api.configuration, args.namespace, args.pod,
                          {remote: local for remote, local in mapping.values()},
                          resolve=None if args.no_follow else resolve, log=log)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    signal.signal(signal.SIGINT, lambda *a: done.set())
    state = Path(args.state)
    tmp = state.with_name(f".{state.name}.{os.getpid()}")
    tmp.write_text(json.dumps({"pid": os.getpid(), "pod": args.pod, "podset": args.podset,
                               "follow": not args.no_follow,
                               "ports": {str(s): [r, forwarder.local[r]] for s, (r, _l) in mapping.items()}}))
    os.replace(tmp, state)
    log(f"forwarding {', '.join(f'{LOOPBACK}:{forwarder.local[r]} -> {args.pod}:{r}' for r, _ in mapping.values())}")
    done.wait()
    forwarder.close()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
