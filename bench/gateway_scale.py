"""Gateway scale: apply time, config size, nginx memory and latency vs running studios.

For 1, 100, 1,000 and 10,000 running studios (two ports each: one
``proxied_subpath: /``, one ``$request_uri``, as JupyterLab-style studios
have), in one run, against a real nginx in a temporary data dir:

  - apply: ``Gateway.apply()`` after one studio's secret changed (a start):
    render, ``nginx -t``, reload and the new generation live; the render and
    ``nginx -t`` parts are also timed alone;
  - nginx.conf size (the route table is part of it);
  - nginx RSS and PSS, master + workers, once settled, and during a reload while
    an old worker still holds an open connection (it lingers for
    ``shutdown_timeout``);
  - request latency through the gateway (p50, one keep-alive connection, a
    ``/`` port) with 1,000 studios routed vs 1: two gateways at once, the
    client alternating between them in blocks of 100 requests.

Upstreams are fake: one tiny keep-alive HTTP backend on loopback (its own
process) that every route points to. Every figure is the median of --rounds
rounds. Needs only nginx and the engine.

    python bench/gateway_scale.py [--rounds 5] [--sizes 1,100,1000,10000] [--requests 1000]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import _free_port, _wait_port, pct, sequential  # noqa: E402  (the sibling benchmark)


def studios_for(n: int, backend_port: int, generation: int = 0):
    from codestudio.gateway.config import PortRoute, StudioRoutes

    out = []
    for i in range(n):
        secret = f"{i:08d}{generation:08d}".ljust(43, "s")
        out.append(StudioRoutes(
            project_key=f"PROJ{i % 50}", studio_id=f"studio-{i}", owner=f"user{i % 200}", session_secret=secret,
            ports=(PortRoute(8888, backend_port, "/", "JupyterLab"),
                   PortRoute(8080, backend_port, "$request_uri", "Streamlit")),
        ))
    return out


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds a process has used."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _proc_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KB."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def nginx_memory(master: int) -> tuple[float, float, int]:
    """(RSS MB, PSS MB, processes) of the master and all its children."""
    from codestudio.gateway.procfs import children

    pids = [master, *children(master)]
    rss = pss = 0
    for pid in pids:
        r, p = _proc_kb(pid)
        rss, pss = rss + r, pss + p
    return rss / 1024, pss / 1024, len(pids)


def settle(gw, master: int, timeout: float = 10) -> None:
    """Wait until only the master and its current workers (no `shutting down` ones) remain."""
    from codestudio.gateway.procfs import children

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = children(master)
        if all(b"shutting down" not in Path(f"/proc/{k}/cmdline").read_bytes() for k in kids if Path(f"/proc/{k}").exists()):
            return
        time.sleep(0.05)


def measure_size(gw, n: int, backend_port: int, rounds: int) -> dict:
    from codestudio.gateway.config import render_gateway_config

    base = studios_for(n, backend_port)
    gw.apply(base)  # first apply at this size writes every landing page once
    settings, workers = gw.settings, gw._workers(gw.settings)
    apply_s, cpu_s, render_s, check_s, during = [], [], [], [], []
    for r in range(1, rounds + 1):
        changed = list(base)
        changed[-1] = studios_for(n, backend_port, generation=r)[-1]  # a restart: new secret
        t0 = time.perf_counter()
        text = render_gateway_config(changed, settings, workers)
        render_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        gw.check(text)
        check_s.append(time.perf_counter() - t0)
        master = gw.pid()
        settle(gw, master)
        # An open idle connection keeps one old worker alive through the reload.
        # (a request still being sent: the old worker waits for it, as for an open websocket).
        hold = socket.create_connection(("127.0.0.1", gw.settings.port))
        hold.sendall(b"GET /_codestudio/health HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.05)
        # CPU spent on the apply by the engine, `nginx -t` and the master's reload:
        # what the apply costs on a quiet machine, whatever else runs on this one.
        cpu0 = time.process_time() + _children_cpu() + _cpu_of(master)
        t0 = time.perf_counter()
        gw.apply(changed)
        apply_s.append(time.perf_counter() - t0)
        cpu_s.append(time.process_time() + _children_cpu() + _cpu_of(master) - cpu0)
        during.append(nginx_memory(master))
        hold.close()
        base = changed
    settle(gw, gw.pid())
    steady = nginx_memory(gw.pid())
    return {
        "apply": statistics.median(apply_s),
        "cpu": statistics.median(cpu_s),
        "render": statistics.median(render_s),
        "check": statistics.median(check_s),
        "size": gw.conf_path.stat().st_size,
        "rss": steady[0], "pss": steady[1], "procs": steady[2],
        "rss_reload": statistics.median(d[0] for d in during),
        "pss_reload": statistics.median(d[1] for d in during),
        "procs_reload": max(d[2] for d in during),
    }


def measure_latency(root: Path, backend_port: int, sizes: tuple[int, ...], requests: int, rounds: int,
                    workers: str) -> dict[int, tuple[float, float]]:
    """p50 (ms) through the gateway to one studio's `/` port, per table size.

    One gateway per size runs at once and the client alternates between them in
    short blocks, so machine noise hits every size alike. Returns, per size, the
    p50 of all requests and the lowest p50 of a block.
    """
    from codestudio.gateway.config import GatewaySettings
    from codestudio.gateway.process import Gateway

    gateways, requests_of = {}, {}
    try:
        for n in sizes:
            gw = gateways[n] = Gateway(root / f"latency-{n}", settings=GatewaySettings(port=_free_port(), worker_processes=workers))
            table = studios_for(n, backend_port)
            gw.apply(table)
            target = table[n // 2]  # a studio in the middle of the table
            requests_of[n] = (f"GET {target.prefix}8888/api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              f"Cookie: _xsrf=abc; cs_session={target.cookie_value}\r\n\r\n").encode()
            sequential(gw.settings.port, requests_of[n], 200)  # warm-up
        samples: dict[int, list[float]] = {n: [] for n in sizes}
        blocks: dict[int, list[float]] = {n: [] for n in sizes}
        block = 100
        for _ in range(max(1, requests * rounds // block)):
            for n in sizes:
                lat = sequential(gateways[n].settings.port, requests_of[n], block)
                samples[n] += lat
                blocks[n].append(pct(lat, 0.5))
        return {n: (pct(samples[n], 0.5), min(blocks[n])) for n in sizes}
    finally:
        for gw in gateways.values():
            gw.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="1,100,1000,10000")
    parser.add_argument("--requests", type=int, default=1000, help="requests per latency round (in blocks of 100, alternating sizes)")
    parser.add_argument("--workers", default="auto", help="nginx worker_processes")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]

    from codestudio.gateway.config import GatewaySettings
    from codestudio.gateway.process import Gateway

    backend_port = _free_port()
    here = Path(__file__).resolve().parent / "gateway.py"
    backend = subprocess.Popen([sys.executable, str(here), "--backend", str(backend_port)])
    tmp = tempfile.TemporaryDirectory(prefix="codestudio-bench-")
    gw = Gateway(Path(tmp.name), settings=GatewaySettings(port=_free_port(), worker_processes=args.workers))
    try:
        _wait_port(backend_port)
        rows = {n: measure_size(gw, n, backend_port, args.rounds) for n in sizes}
        gw.stop()
        latency = measure_latency(Path(tmp.name), backend_port, (1, 1000), args.requests, args.rounds, args.workers)
    finally:
        gw.stop()
        backend.terminate()
        backend.wait()
        tmp.cleanup()

    print(f"gateway scale: 2 ports per studio, medians of {args.rounds} rounds, {os.cpu_count()} CPUs, "
          f"worker_processes {args.workers}, load average {os.getloadavg()[0]:.1f}\n")
    header = (f"{'studios':>8} {'apply s':>8} {'CPU s':>6} {'render s':>9} {'nginx -t s':>11} {'nginx.conf':>11} "
              f"{'RSS MB':>7} {'PSS MB':>7} {'RSS reload':>11} {'PSS reload':>11} {'procs':>6}")
    print(header)
    print("-" * len(header))
    for n, r in rows.items():
        size = f"{r['size'] / 1024:.0f} KB" if r["size"] < 1 << 20 else f"{r['size'] / (1 << 20):.1f} MB"
        print(f"{n:>8,} {r['apply']:>8.3f} {r['cpu']:>6.3f} {r['render']:>9.3f} {r['check']:>11.3f} {size:>11} "
              f"{r['rss']:>7.1f} {r['pss']:>7.1f} {r['rss_reload']:>11.1f} {r['pss_reload']:>11.1f} "
              f"{r['procs']:>2}/{r['procs_reload']:<3}")
    print()
    print(f"{'studios routed':>15} {'p50 ms':>8} {'best block p50':>15}")
    for n, (p50, best) in latency.items():
        print(f"{n:>15,} {p50:>8.3f} {best:>15.3f}")
    print(f"{'1,000 vs 1':>15} {latency[1000][0] / latency[1][0] - 1:>+8.1%} {latency[1000][1] / latency[1][1] - 1:>+15.1%}")
    print("\naims: apply at 1,000 < 0.3 s, at 10,000 < 1 s; RSS at 1,000 < 100 MB; p50 at 1,000 within 5% of 1")
    print("CPU s: engine + nginx -t + the master's reload, the apply's cost without other load")
    print("'RSS reload': during a reload, with one old worker kept alive by an open connection;"
          " procs: settled/during reload")


if __name__ == "__main__":
    main()
