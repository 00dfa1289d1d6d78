"""Local runtime benchmarks on real podman and nginx, printed as one table.

(a) ready latency: from the server inside the studio listening (it prints the
    time right after ``listen()``; container and host share the clock) to
    the studio recorded RUNNING in the state DB;
(b) gateway overhead: p50/p99 latency and requests/s through the gateway vs
    straight to the studio's published loopback port (the client code of
    bench/gateway.py, against a real studio instead of a local backend);
(c) start and stop wall time for 1, 5 and 10 studios started (then stopped)
    concurrently: the median of ``--rounds`` rounds, and the ratio of each
    count's start to the start of one (issue 15 aims: 10 at most 3x one; a
    stop of one under 1.5 s); and, as the floor under it, the same adapted
    manifests run by podman alone (no engine), 1 and N at once: with
    ``podman run`` as the local runtime does, and with ``podman kube play``,
    which it used before.

Needs the base image (built if missing, which takes a few minutes once).
Everything runs in a temporary data dir and is removed afterwards.

    python bench/runtime.py [--counts 1,5,10] [--rounds 3] [--requests 3000] [--only-starts]

The machine's load average is printed with the table: the numbers mean little
on a machine busy with other work.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The same keep-alive asyncio backend as bench/gateway.py, printing when it listens.
BACKEND = '''\
import asyncio, sys, time
BODY = b'{"ok": true}\\n'
RESPONSE = b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n%s" % (len(BODY), BODY)

async def main(port):
    async def handle(reader, writer):
        try:
            while True:
                await reader.readuntil(b"\\r\\n\\r\\n")
                writer.write(RESPONSE)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
    server = await asyncio.start_server(handle, "0.0.0.0", port, backlog=1024)
    print(f"listening-at {time.time():.6f}", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main(int(sys.argv[1])))
'''

TEMPLATE = """\
id: bench-runtime
permissions: {all: true}
blocks:
  - type: dockerfile
    label: backend
    run_as_root: true
    statements: |
      COPY backend.py /opt/bench/backend.py
    resources: [backend.py]
  - type: entrypoint
    label: Backend
    command: [python3, /opt/bench/backend.py, "8888"]
    port: 8888
  - type: file-sync
    mappings: []
"""


def _load_gateway_bench():
    spec = importlib.util.spec_from_file_location("bench_gateway", HERE / "gateway.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _replayable(root: Path, podset: str) -> Path:
    """A copy of the running pod set's played manifest (kept 0600: it holds the guard secret)."""
    from codestudio.home import data_dir

    out = root / "floor" / f"{podset}.yaml"
    out.parent.mkdir(exist_ok=True, mode=0o700)
    out.write_text((data_dir() / "runtime" / "local" / podset / f"{podset}.yaml").read_text())
    out.chmod(0o600)
    return out


def _fresh_ports(manifests: list[Path]) -> list[Path]:
    """``manifests`` with every hostPort replaced by a port free now, distinct across all of them."""
    import yaml

    from codestudio.runtime import local

    docs_of = {m: list(yaml.safe_load_all(m.read_text())) for m in manifests}
    ports = [port for docs in docs_of.values() for doc in docs if doc and doc.get("kind") == "Deployment"
             for container in doc["spec"]["template"]["spec"]["containers"] for port in container.get("ports", [])]
    # Chosen together (local.free_ports holds each socket until all are picked): one port each.
    for port, free in zip(ports, local.free_ports(len(ports)), strict=True):
        port["hostPort"] = free
    for manifest, docs in docs_of.items():
        manifest.write_text(yaml.safe_dump_all(docs))
    return manifests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="1,5,10", help="concurrent studio counts for (c)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per path for (b)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--ready-runs", type=int, default=3, help="starts measured for (a)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (c), medians reported")
    parser.add_argument("--only-starts", action="store_true", help="measure (c) only")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",") if c]
    if 1 not in counts:
        counts.insert(0, 1)  # the ratios are against one studio

    tmp = tempfile.TemporaryDirectory(prefix="codestudio-bench-runtime-")
    os.environ["CODESTUDIO_HOME"] = str(Path(tmp.name) / "home")
    os.environ["CODESTUDIO_GATEWAY_PORT"] = str(_free_port())
    folder = Path(tmp.name) / "template"
    folder.mkdir()
    (folder / "backend.py").write_text(BACKEND)
    (folder / "template.yaml").write_text(TEMPLATE)

    from codestudio import containers
    from codestudio.access import identify
    from codestudio.images import build_base
    from codestudio.templates_store import build_template
    from codestudio.runtime import local
    from codestudio.runtime import studios as rts
    from codestudio.templates_store import add_template

    who = identify()
    rows: list[tuple[str, str]] = []
    created: list[str] = []
    try:
        build_base(quiet=True)
        add_template(who, folder / "template.yaml")
        build_template("bench-runtime", quiet=True)

        from codestudio.projects import ensure_project

        for key in ("BENCH", *(f"C{n}" for n in counts)):
            ensure_project(who, key)
        if not args.only_starts:
            # (a) ready latency
            studio = rts.create_studio(who, "BENCH", "ready", "bench-runtime")
            created.append(studio.id)
            latencies = []
            for _ in range(args.ready_runs):
                rts.start_studio(who, studio.id, quiet=True)
                s = rts.get_studio(studio.id)
                logs = containers.podman("logs", local.container_name(rts.pod_set_name(s))).stdout
                listened = float(re.findall(r"listening-at (\d+\.\d+)", logs)[-1])
                latencies.append((s.state_since - listened) * 1000)
                rts.stop_studio(who, studio.id, quiet=True)
            rows.append(("(a) ready latency, listening -> RUNNING (median of %d)" % len(latencies),
                         f"{statistics.median(latencies):.1f} ms (min {min(latencies):.1f}, max {max(latencies):.1f})"))

            # (b) gateway overhead
            gwb = _load_gateway_bench()
            rts.start_studio(who, studio.id, quiet=True)
            s = rts.get_studio(studio.id)
            routes = rts.studio_routes_of(s)
            cookie = f"Cookie: cs_session={routes.cookie_value}\r\n".encode()
            direct = (s.ports[8888], b"GET /api HTTP/1.1\r\nHost: 127.0.0.1\r\n" + cookie + b"\r\n")
            gateway_port = int(os.environ["CODESTUDIO_GATEWAY_PORT"])
            through = (gateway_port, f"GET {routes.prefix}8888/api HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + cookie + b"\r\n")
            results = {}
            for name, (port, request) in (("direct", direct), ("gateway", through)):
                gwb.sequential(port, request, 200)  # warm-up
                # nginx closes a keep-alive connection after 1000 requests: measure in chunks.
                lat = []
                for start in range(0, args.requests, 500):
                    lat += gwb.sequential(port, request, min(500, args.requests - start))
                rps = gwb.concurrent(port, request, args.requests, args.connections)
                results[name] = (gwb.pct(lat, 0.5), gwb.pct(lat, 0.99), rps)
            for name, (p50, p99, rps) in results.items():
                rows.append((f"(b) {name} to the published port" if name == "direct" else f"(b) {name}",
                             f"p50 {p50:.3f} ms, p99 {p99:.3f} ms, {rps:,.0f} req/s"))
            d, g = results["direct"], results["gateway"]
            rows.append(("(b) gateway overhead", f"p50 +{g[0] - d[0]:.3f} ms, throughput {100 * g[2] / d[2]:.0f}% of direct"))
            rts.stop_studio(who, studio.id, quiet=True)

        # (c) concurrent start and stop, rounds interleaved so that load changes hit every count
        ids_of: dict[int, list[str]] = {}
        for n in counts:
            ids_of[n] = []
            for i in range(n):
                st = rts.create_studio(who, f"C{n}", f"s{i}", "bench-runtime")
                ids_of[n].append(st.id)
                created.append(st.id)
        starts: dict[int, list[float]] = {n: [] for n in counts}
        stops: dict[int, list[float]] = {n: [] for n in counts}
        replay: dict[int, list[Path]] = {}
        for _ in range(args.rounds):
            for n in counts:
                with ThreadPoolExecutor(max_workers=n) as pool:
                    t0 = time.perf_counter()
                    list(pool.map(lambda sid: rts.start_studio(who, sid, quiet=True), ids_of[n]))
                    starts[n].append(time.perf_counter() - t0)
                    if n not in replay:  # the played manifests, kept for the floor below
                        replay[n] = [_replayable(Path(tmp.name), rts.pod_set_name(rts.get_studio(sid))) for sid in ids_of[n]]
                    t0 = time.perf_counter()
                    list(pool.map(lambda sid: rts.stop_studio(who, sid, quiet=True), ids_of[n]))
                    stops[n].append(time.perf_counter() - t0)
        one = statistics.median(starts[1])
        for n in counts:
            start, stop = statistics.median(starts[n]), statistics.median(stops[n])
            rows.append((f"(c) {n} studio(s) concurrently, median of {args.rounds}",
                         f"start {start:.2f} s ({start / one:.1f}x one), stop {stop:.2f} s"
                         f"  [starts {', '.join(f'{x:.2f}' for x in starts[n])}; "
                         f"stops {', '.join(f'{x:.2f}' for x in stops[n])}]"))
        # The floor under (c): podman alone running the same adapted manifests (fresh ports),
        # with no engine around it: `podman run` as the local runtime does (local.play), and
        # `podman kube play`, which it used before (docs/runtimes.md). What the engine adds is
        # the difference to the first.
        floors = {"podman run (local.play) alone": [], "podman kube play alone": []}
        floor: dict[tuple[str, int], list[float]] = {(f, n): [] for f in floors for n in counts}
        for r in range(args.rounds):
            for what in (list(floors) if r % 2 == 0 else list(floors)[::-1]):
                for n in counts:
                    manifests = _fresh_ports(replay[n])
                    if what.startswith("podman run"):
                        def run(m):
                            local.play(m)
                    else:
                        def run(m):
                            containers.podman("kube", "play", "--network", local.NETWORK, str(m))
                    pods = [local.pod_name(m.stem) for m in manifests]
                    try:
                        with ThreadPoolExecutor(max_workers=n) as pool:
                            t0 = time.perf_counter()
                            list(pool.map(run, manifests))
                            floor[(what, n)].append(time.perf_counter() - t0)
                    finally:
                        local.remove_pods(pods, in_pods=pods if what.startswith("podman kube") else ())
        for what in floors:
            one = statistics.median(floor[(what, 1)])
            for n in counts:
                start = statistics.median(floor[(what, n)])
                rows.append((f"(c) floor: {what}, {n} at once",
                             f"{start:.2f} s ({start / one:.1f}x one)  [{', '.join(f'{x:.2f}' for x in floor[(what, n)])}]"))
        rows.append(("load average (1, 5, 15 min) at the end", " ".join(f"{x:.1f}" for x in os.getloadavg())))
    finally:
        for sid in created:
            try:
                rts.delete_studio(who, sid, force=True)
            except Exception as exc:  # keep cleaning up the others
                print(f"cleanup of {sid}: {exc}", file=sys.stderr)
        rts._gateway().stop()
        tmp.cleanup()

    width = max(len(k) for k, _ in rows)
    print(f"{'measure':<{width}}  value")
    print(f"{'-' * width}  {'-' * 40}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
