"""Webapp stable URL: requests/s and p50/p99 latency with 1, 2 and 4 replicas vs direct.

Starts --replicas-max keep-alive HTTP backends (each its own process, each spending
--work-us of CPU per request, 500 us by default) and a real gateway nginx in a
temporary data dir serving one webapp (owner share: the viewer's cookie is checked
on every request), then measures in the same run with the same client:

  - direct: one backend, no gateway;
  - stable URL with 1, 2 and 4 ready replicas (the route table changes between
    measures, as a scale does): each connection is one browser kept on one replica
    by its ``cs_replica`` cookie, browsers spread evenly over the replicas;

  - sequential: one keep-alive connection, one request at a time (latency);
  - concurrent: --connections keep-alive connections (throughput).

Paths alternate in rounds so machine noise hits all of them. With ``--update
PROJECT/NAME`` it also times ``codestudio webapp update`` of that (existing,
published) webapp in the current data dir: a rolling update, one replica at a time.

    python bench/webapps.py [--requests 4000] [--connections 8] [--rounds 4] [--update P/W]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway as gwbench  # noqa: E402  (bench/gateway.py: backend and client)


def measure(args) -> None:
    from codestudio.gateway.config import GatewaySettings, new_session_secret
    from codestudio.gateway.process import Gateway
    from codestudio.gateway.webapps import ReplicaPort, ReplicaRoutes, WebappRoutes

    ports = [gwbench._free_port() for _ in range(4)]
    backends = [subprocess.Popen([sys.executable, gwbench.__file__, "--backend", str(p), "--backend-work", str(args.work_us)])
                for p in ports]
    tmp = tempfile.TemporaryDirectory(prefix="codestudio-bench-")
    gw = Gateway(Path(tmp.name), settings=GatewaySettings(port=gwbench._free_port(), worker_processes="1"))
    secret = new_session_secret()
    pods = [f"bench-{i}" for i in range(4)]

    def routes(n: int) -> WebappRoutes:
        return WebappRoutes("BENCH", "bench", "bench", "owner", secret, 8501, tuple(
            ReplicaRoutes(pods[i], True, (ReplicaPort(8501, ports[i], "/"),), new_session_secret())
            for i in range(n)))

    try:
        for p in ports:
            gwbench._wait_port(p)
        w = routes(1)
        direct = b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

        def stable(pod: str) -> bytes:
            return (f"GET {w.prefix}api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Cookie: cs_webapp={w.cookie_value}; cs_replica={pod}\r\n\r\n").encode()

        per_round = max(1, args.requests // args.rounds)
        names = ["direct", "stable x1", "stable x2", "stable x4"]
        lat = {k: [] for k in names}
        seq_time = {k: 0.0 for k in names}
        rps = {k: [] for k in names}
        gw_port = gw.settings.port

        def run(name: str, warm: bool = False) -> None:
            if name == "direct":
                port, reqs = ports[0], [direct]
            else:
                n = int(name[-1])
                gw.apply([], [routes(n)])
                port, reqs = gw_port, [stable(pods[i]) for i in range(n)]
            count = 200 if warm else per_round
            t0 = time.perf_counter()
            values = gwbench.sequential(port, reqs[0], count)
            if not warm:
                lat[name] += values
                seq_time[name] += time.perf_counter() - t0
            rate = gwbench.concurrent(port, reqs, count, args.connections)
            if not warm:
                rps[name].append(rate)

        for name in names:
            run(name, warm=True)
        for _ in range(args.rounds):
            for name in names:
                run(name)

        n = per_round * args.rounds
        load = os.getloadavg()[0]
        print(f"webapp stable URL, backend work {args.work_us} us/request ({n} requests per path, "
              f"{args.connections} connections for the concurrent run, {args.rounds} alternating rounds, "
              f"{os.cpu_count()} CPUs, load average {load:.1f})\n")
        header = f"{'path':<10} {'p50 ms':>8} {'p99 ms':>8} {'seq req/s':>10} {'conc req/s':>11} {'vs direct':>10}"
        print(header)
        print("-" * len(header))
        base = statistics.median(rps["direct"])
        for name in names:
            p50, p99 = gwbench.pct(lat[name], 0.5), gwbench.pct(lat[name], 0.99)
            conc = statistics.median(rps[name])
            print(f"{name:<10} {p50:>8.3f} {p99:>8.3f} {n / seq_time[name]:>10.0f} {conc:>11.0f} {conc / base:>9.0%}")
        print("\naim: the stable URL within 10% of direct (x1); replicas share this machine's CPUs,"
              " so x2/x4 only scale with free cores")
    finally:
        gw.stop()
        for b in backends:
            b.terminate()
            b.wait()
        tmp.cleanup()


def time_update(ref: str) -> None:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "codestudio", "webapp", "update", ref, "--quiet"], check=False)
    took = time.perf_counter() - t0
    print(f"\nwebapp update {ref}: {took:.1f} s (exit {proc.returncode})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000, help="requests per path for each measure")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds (requests are split across them)")
    parser.add_argument("--work-us", type=int, default=500, help="CPU time per request of each replica")
    parser.add_argument("--update", metavar="PROJECT/NAME", help="also time `codestudio webapp update` of this webapp")
    args = parser.parse_args()
    measure(args)
    if args.update:
        time_update(args.update)


if __name__ == "__main__":
    main()
