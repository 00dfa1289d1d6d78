"""Gateway overhead: latency p50/p99 and requests/s through nginx vs direct.

Starts a tiny keep-alive HTTP backend (its own process, asyncio), the
runner's guard in front of it (its own process, as in a studio pod), and a
real gateway nginx in a temporary data dir routing one studio port straight
to the backend and another through the guard, then measures the three paths
(direct, gateway, gateway + guard) in the same run with the same client:

  - sequential: one keep-alive connection, one request at a time (latency);
  - concurrent: --connections keep-alive connections in one asyncio loop (throughput).

Runs alternate between direct and gateway in rounds so machine noise hits
both equally. Needs only nginx and the engine: no containers, no extra tools.

    python bench/gateway.py [--requests 4000] [--connections 8] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BODY = b'{"ok": true}\n'
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)


# --- backend (runs in a child process) ---------------------------------------------


def _busy(us: int) -> None:
    """Spend ``us`` microseconds of CPU, like a handler doing real work."""
    end = time.perf_counter_ns() + us * 1000
    while time.perf_counter_ns() < end:
        pass


async def _serve(port: int, work_us: int = 0) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    break
                if work_us:
                    _busy(work_us)
                writer.write(RESPONSE)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


# --- client ------------------------------------------------------------------------------


def _read_response(sock: socket.socket, buf: bytearray) -> None:
    """Read one response with a Content-Length body off a keep-alive socket."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[:end]).lower()
            i = head.find(b"content-length:")
            length = int(head[i + 15 : head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None]) if i >= 0 else 0
            total = end + 4 + length
            if len(buf) >= total:
                if not head.startswith(b"http/1.1 200"):
                    raise RuntimeError(f"unexpected response: {bytes(buf[:end])!r}")
                del buf[:total]
                return
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed")
        buf += chunk


def sequential(port: int, request: bytes, n: int) -> list[float]:
    """Latencies (ms) of n requests sent one after another on one keep-alive connection."""
    out = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        for _ in range(n):
            t0 = time.perf_counter_ns()
            sock.sendall(request)
            _read_response(sock, buf)
            out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


async def _concurrent(port: int, requests: list[bytes], n: int, connections: int) -> float:
    remaining = n

    async def worker(request: bytes) -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while remaining > 0:
                remaining -= 1
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"unexpected response: {head!r}")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(requests[i % len(requests)]) for i in range(connections)))
    return n / (time.perf_counter() - t0)


def concurrent(port: int, request: bytes | list[bytes], n: int, connections: int) -> float:
    """Requests/s of n requests over ``connections`` keep-alive connections at once.

    With a list of requests, connection i sends ``request[i % len(request)]``
    (bench/webapps.py: one per replica, by cookie).
    """
    requests = [request] if isinstance(request, bytes) else list(request)
    return asyncio.run(_concurrent(port, requests, n, connections))


# --- main ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int) -> None:
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"backend did not listen on {port}")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000, help="requests per path for each measure")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds (requests are split across them)")
    parser.add_argument("--work-us", type=int, default=500,
                        help="CPU time per request of the second backend (an IDE API call costs ~0.5-5 ms)")
    parser.add_argument("--backend", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--backend-work", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--guard", help=argparse.SUPPRESS)  # SERVER:GUARD, secret on stdin
    args = parser.parse_args()
    if args.backend:
        asyncio.run(_serve(args.backend, args.backend_work))
        return
    if args.guard:
        _run_guard(args.guard, sys.stdin.readline().strip())
        return
    # The same measurement against a backend that answers in ~30 us (the
    # worst case: the proxy hop costs as much CPU as the backend) and one
    # that works --work-us per request, as studio servers do.
    for work_us in (0, args.work_us):
        measure(args, work_us)
        print()
    print("aims: p50 overhead < 1 ms; gateway throughput >= 90% of direct")


def _run_guard(ports: str, secret: str) -> None:
    from codestudio.runner import runner

    guard = runner.Guard(runner.parse_guard_ports(ports), secret, runner.Output(), bind="127.0.0.1",
                         upstream_hosts=("127.0.0.1",))
    guard.start()
    while True:
        time.sleep(3600)


def measure(args, work_us: int) -> None:
    from codestudio.gateway.config import GatewaySettings, PortRoute, StudioRoutes, new_session_secret
    from codestudio.gateway.process import Gateway

    backend_port = _free_port()
    backend = subprocess.Popen([sys.executable, __file__, "--backend", str(backend_port), "--backend-work", str(work_us)])
    guard_port = _free_port()
    studio = StudioRoutes("BENCH", "bench", "bench", new_session_secret(),
                          (PortRoute(8888, backend_port, "/", "bench"), PortRoute(8889, guard_port, "/", "guarded")))
    guard = subprocess.Popen([sys.executable, __file__, "--guard", f"{backend_port}:{guard_port}"],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    guard.stdin.write(studio.guard_secret + "\n")
    guard.stdin.flush()
    tmp = tempfile.TemporaryDirectory(prefix="codestudio-bench-")
    gw = Gateway(Path(tmp.name), settings=GatewaySettings(port=_free_port(), worker_processes="1"))
    try:
        _wait_port(backend_port)
        _wait_port(guard_port)
        gw.apply([studio])
        gw_port = gw.settings.port
        cookie = f"Cookie: cs_session={studio.cookie_value}\r\n".encode()
        req_direct = b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n" + cookie + b"\r\n"
        req_gateway = (f"GET {studio.prefix}8888/api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
                       + cookie + b"\r\n")
        req_guarded = req_gateway.replace(b"/8888/", b"/8889/")
        paths = {"direct": (backend_port, req_direct), "gateway": (gw_port, req_gateway),
                 "+guard": (gw_port, req_guarded)}

        per_round = max(1, args.requests // args.rounds)
        lat: dict[str, list[float]] = {k: [] for k in paths}
        seq_time: dict[str, float] = {k: 0.0 for k in paths}
        rps: dict[str, list[float]] = {k: [] for k in paths}
        for name, (port, req) in paths.items():  # warm-up: connections, upstream keep-alive pool
            sequential(port, req, 200)
            concurrent(port, req, 200, args.connections)
        for _ in range(args.rounds):
            for name, (port, req) in paths.items():
                t0 = time.perf_counter()
                lat[name] += sequential(port, req, per_round)
                seq_time[name] += time.perf_counter() - t0
                rps[name].append(concurrent(port, req, per_round, args.connections))

        n = per_round * args.rounds
        print(f"gateway overhead, backend work {work_us} us/request ({n} requests per path, "
              f"{args.connections} connections for the concurrent run, {args.rounds} alternating rounds, "
              f"{os.cpu_count()} CPUs)\n")
        header = f"{'path':<10} {'p50 ms':>8} {'p99 ms':>8} {'seq req/s':>10} {'conc req/s':>11}"
        print(header)
        print("-" * len(header))
        rows = {}
        for name in paths:
            rows[name] = (pct(lat[name], 0.5), pct(lat[name], 0.99), n / seq_time[name], statistics.median(rps[name]))
            p50, p99, seq, conc = rows[name]
            print(f"{name:<10} {p50:>8.3f} {p99:>8.3f} {seq:>10.0f} {conc:>11.0f}")
        d, g, q = rows["direct"], rows["gateway"], rows["+guard"]
        print("-" * len(header))
        print(f"{'gw/direct':<10} {g[0] - d[0]:>+8.3f} {g[1] - d[1]:>+8.3f} {g[2] / d[2]:>9.0%} {g[3] / d[3]:>10.0%}")
        print(f"{'guard/gw':<10} {q[0] - g[0]:>+8.3f} {q[1] - g[1]:>+8.3f} {q[2] / g[2]:>9.0%} {q[3] / g[3]:>10.0%}")
    finally:
        gw.stop()
        guard.terminate()
        guard.wait()
        backend.terminate()
        backend.wait()
        tmp.cleanup()


if __name__ == "__main__":
    main()
