#!/usr/bin/env python3
"""The server: page and API time with many studios, latency under 20 clients, UI vs CLI start.

Three tables:

- server-side time of the studios page (``GET /``) and of ``GET /api/v1/studios``
  with 1, 100 and 1,000 studios of the signed-in user (rows made through the
  engine's ``create_studio`` for the first one, copied in SQL for the rest),
  median of ``--repeat`` calls in-process (no network);
- ``GET /api/v1/studios`` and ``GET /api/v1/me`` p50/p99 with 20 concurrent
  clients on loopback against a real ``codestudio server`` process;
- with ``--start TEMPLATE`` (a template file on a built base image): wall time
  from ``POST .../start`` to the API saying RUNNING vs the CLI's
  ``studio start`` for the same stopped studio.

    python bench/server.py [--repeat 20] [--requests 50] [--start examples/advanced.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TEMPLATE = """\
id: bench-srv
permissions: {all: true}
blocks:
  - type: entrypoint
    label: Web
    command: [python3, -m, http.server, "8080"]
    port: 8080
    expose_html: true
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.1f}"


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--requests", type=int, default=50, help="requests per client in the concurrency table")
    parser.add_argument("--start", default=None, help="template file for the UI-vs-CLI start comparison")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-server-"))
    os.environ["CODESTUDIO_HOME"] = str(home)
    from fastapi.testclient import TestClient

    from codestudio import signin
    from codestudio.access import identify
    from codestudio.runtime import studios as rt
    from codestudio.server.app import create_app
    from codestudio.server.settings import ServerSettings
    from codestudio.store import Store
    from codestudio.templates_store import add_template

    store = Store(home / "state.db")
    who = identify(store=store)
    (home / "t.yaml").write_text(TEMPLATE)
    add_template(who, home / "t.yaml", store=store)
    first = rt.create_studio(who, "BENCH", "s0", "bench-srv", store=store)
    app = create_app(ServerSettings(content_url="http://127.0.0.1:8800"), data_dir=home)
    client = TestClient(app, base_url="http://localhost:8801")
    _u, key = signin.new_link_key(who, store=store)
    client.post("/signin", data={"key": key})

    print("| studios | GET / (ms) | GET /api/v1/studios (ms) |")
    print("|---:|---:|---:|")
    have = 1
    for count in (1, 100, 1000):
        with store.connect() as conn:
            for n in range(have, count):
                conn.execute(
                    "INSERT INTO studios (id, project, name, owner, template_id, template_version, state, state_since, ports, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'STOPPED', ?, '{}', ?)",
                    (f"s{n}", f"BENCH{n % 10}", f"s{n}", who.name, "bench-srv", first.template_version, time.time(), time.time()),
                )
        have = count
        page, api = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            assert client.get("/").status_code == 200
            page.append(time.perf_counter() - t)
            t = time.perf_counter()
            r = client.get("/api/v1/studios")
            api.append(time.perf_counter() - t)
            assert r.status_code == 200 and len(r.json()) == count
        print(f"| {count} | {_ms(page)} | {_ms(api)} |")

    # A real server process, 20 clients.
    port = _free_port()
    env = dict(os.environ, CODESTUDIO_SERVER_PORT=str(port))
    proc = subprocess.Popen([sys.executable, "-m", "codestudio", "server"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    import httpx

    try:
        base = f"http://localhost:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{base}/api/v1/openapi.json", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        _row, token = signin.create_token(who, "bench", store=store)
        headers = {"Authorization": f"Bearer {token}"}
        print()
        print("| path (20 clients) | requests | p50 (ms) | p99 (ms) | errors |")
        print("|---|---:|---:|---:|---:|")
        for path in ("/api/v1/me", "/api/v1/studios"):
            times: list[float] = []
            errors: list[int] = []
            lock = threading.Lock()

            def work():
                with httpx.Client(headers=headers, timeout=60, trust_env=False) as c:
                    for _ in range(args.requests):
                        t = time.perf_counter()
                        r = c.get(f"{base}{path}")
                        dt = time.perf_counter() - t
                        with lock:
                            times.append(dt)
                            if r.status_code != 200:
                                errors.append(r.status_code)

            threads = [threading.Thread(target=work) for _ in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            print(f"| {path} | {len(times)} | {_pct(times, 50):.1f} | {_pct(times, 99):.1f} | {len(errors)} |")

        if args.start:
            stored, _ = add_template(who, Path(args.start), store=store)
            studio = rt.create_studio(who, "BENCHSTART", "start", stored.id, store=store)
            with httpx.Client(headers=headers, timeout=600, trust_env=False) as c:
                c.post(f"{base}/api/v1/studios/{studio.id}/start")  # build once, outside the timing
                _wait(c, base, studio.id, "RUNNING")
                c.post(f"{base}/api/v1/studios/{studio.id}/stop")
                _wait(c, base, studio.id, "STOPPED")
                t = time.perf_counter()
                c.post(f"{base}/api/v1/studios/{studio.id}/start")
                _wait(c, base, studio.id, "RUNNING")
                ui = time.perf_counter() - t
                c.post(f"{base}/api/v1/studios/{studio.id}/stop")
                _wait(c, base, studio.id, "STOPPED")
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "codestudio", "studio", "start", studio.id, "-q"], check=True, env=env)
            cli = time.perf_counter() - t
            subprocess.run([sys.executable, "-m", "codestudio", "studio", "delete", studio.id, "--force"], env=env)
            subprocess.run([sys.executable, "-m", "codestudio", "gateway", "stop"], env=env)
            print()
            print("| start -> RUNNING | seconds |")
            print("|---|---:|")
            print(f"| API (POST start, poll GET until RUNNING) | {ui:.1f} |")
            print(f"| CLI studio start | {cli:.1f} |")
    finally:
        proc.terminate()
        proc.wait(10)
    print(json.dumps({"data_dir": str(home)}), file=sys.stderr)
    return 0


def _wait(c, base: str, sid: str, state: str, timeout: float = 600) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if c.get(f"{base}/api/v1/studios/{sid}").json()["state"] == state:
            return
        time.sleep(0.2)
    raise SystemExit(f"studio {sid} did not reach {state}")


if __name__ == "__main__":
    sys.exit(main())
