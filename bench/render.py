#!/usr/bin/env python3
"""CLI start-up and render time.

Prints one table: `codestudio --help` against bare `python -c pass`
(measured in the same run, as a ratio), and the time to load, validate,
apply and render templates of 1, 10 and 100 blocks (in-process, plugins
loaded once, as the gateway-side engine would).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def best_of(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def template_text(n: int) -> str:
    lines = ["id: bench", "blocks:"]
    for i in range(n):
        kind = i % 4
        if kind == 0:
            lines += [f"  - type: dockerfile", f"    label: step {i}", f"    statements: 'RUN echo {i} > /tmp/{i}'"]
        elif kind == 1:
            lines += [f"  - type: entrypoint", f"    label: server {i}", f"    command: [python3, -m, http.server, '{9000 + i}']", f"    port: {9000 + i}"]
        elif kind == 2:
            lines += [f"  - type: action", f"    name: act-{i}", f"    command: echo {i}"]
        else:
            lines += [f"  - type: starter-files", f"    files: {{'f{i}.txt': 'hello {i}'}}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    from codestudio.plugins import load_plugins
    from codestudio.render import render_template

    rows = []
    bare, bare_med = best_of(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), 15)
    cli, cli_med = best_of(lambda: subprocess.run([sys.executable, "-m", "codestudio", "--help"], check=True, capture_output=True), 15)
    rows.append(("python -c pass", bare, bare_med, "baseline"))
    rows.append(("codestudio --help", cli, cli_med, f"{cli / bare:.2f}x baseline (aim: within 3x)"))

    blocks = load_plugins()
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, 10, 100):
            path = Path(tmp, f"t{n}.yaml")
            path.write_text(template_text(n))
            best, med = best_of(lambda: render_template(path, blocks=blocks), 10)
            rows.append((f"render {n} block(s)", best, med, "aim: 100 blocks under 0.5 s" if n == 100 else ""))

    print(f"{'measurement':<22} {'best (ms)':>10} {'median (ms)':>12}  note")
    for name, best, med, note in rows:
        print(f"{name:<22} {best * 1000:>10.1f} {med * 1000:>12.1f}  {note}")


if __name__ == "__main__":
    main()
