"""Benchmark file sync through podman exec, against plain ``tar | podman exec tar -x``.

Usage: python bench/sync.py [--files 10000] [--size 10240] [--image IMAGE]

In one run, against fresh containers from the codestudio base image:
first push of N small files (about 100 MB in all) versus a plain tar pipe
of the same tree, an incremental sync after changing one file, a pull of
that change from the studio, and a no-op sync. Prints a table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=10_240, help="bytes per file")
    parser.add_argument("--image", default=None, help="default: the codestudio base image")
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="codestudio-bench-")
    os.environ["CODESTUDIO_HOME"] = home
    from codestudio import containers
    from codestudio.blockapi import SyncMapping
    from codestudio.sync import PodmanTransport, SyncStudio, sync

    image = args.image
    if image is None:
        from codestudio.build.base import build_base

        image = build_base(quiet=True).image

    target = "/home/codestudio/workspace/code_studio-resources"
    studio = SyncStudio("bench", "BENCH", "bench", (SyncMapping(zone="code_studio-resources", target=target),))
    zone = studio.zone_path("code_studio-resources")
    for i in range(args.files):
        path = zone / f"d{i // 100:03}" / f"f{i:05}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(os.urandom(args.size))
    total_mb = args.files * args.size / 1e6

    names: list[str] = []

    def start() -> str:
        name = f"cs-bench-{uuid.uuid4().hex[:8]}"
        containers.podman("run", "-d", "--rm", "--name", name, "--entrypoint", "/bin/sleep", image, "3600")
        names.append(name)
        return name

    rows: list[tuple[str, float, str]] = []
    try:
        # Plain tar pipe of the same tree, into its own fresh container.
        plain = start()
        containers.podman("exec", "--user", "codestudio", plain, "mkdir", "-p", target)
        t0 = time.perf_counter()
        tar = subprocess.Popen(["tar", "-C", str(zone), "-cf", "-", "."], stdout=subprocess.PIPE)
        untar = subprocess.run(
            containers.podman_command("exec", "-i", "--user", "codestudio", plain, "tar", "-C", target, "-xf", "-"),
            stdin=tar.stdout, env=containers.podman_env(), capture_output=True,
        )
        tar.wait()
        plain_s = time.perf_counter() - t0
        assert untar.returncode == 0, untar.stderr
        rows.append((f"plain tar | podman exec tar -x ({args.files} files, {total_mb:.0f} MB)", plain_s, "reference"))

        ctr = start()
        transport = PodmanTransport(ctr)
        t0 = time.perf_counter()
        report = sync(studio, transport, "push", fresh=True)
        first = time.perf_counter() - t0
        assert len(report.mappings[0].pushed) == args.files
        rows.append((f"first push ({args.files} files)", first, f"{first / plain_s:.2f}x plain tar (aim <= 1.5x)"))

        (zone / "d000" / "f00000.bin").write_bytes(os.urandom(args.size))
        t0 = time.perf_counter()
        report = sync(studio, transport)
        inc = time.perf_counter() - t0
        assert report.mappings[0].pushed == ["d000/f00000.bin"]
        rows.append(("incremental sync, 1 file changed on server", inc, "aim < 0.5 s"))

        containers.podman("exec", "--user", "codestudio", ctr, "sh", "-c", f"echo changed >> {target}/d001/f00100.bin")
        t0 = time.perf_counter()
        report = sync(studio, transport)
        pull = time.perf_counter() - t0
        assert report.mappings[0].pulled == ["d001/f00100.bin"]
        rows.append(("pull, 1 file changed in studio", pull, ""))

        t0 = time.perf_counter()
        sync(studio, transport)
        rows.append(("no-op sync", time.perf_counter() - t0, ""))
    finally:
        for name in names:
            containers.podman("rm", "-f", "-t", "0", name, check=False)
        subprocess.run(["rm", "-rf", home])

    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'seconds':>8}  note")
    print("-" * (width + 30))
    for name, secs, note in rows:
        print(f"{name:<{width}}  {secs:>8.2f}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
