"""Benchmark file sync through podman exec, against plain ``tar | podman exec tar -x``.

Usage: python bench/sync.py [--files 10000] [--size 10240] [--repeat 3] [--image IMAGE]

Each round uses fresh containers from the codestudio base image and measures:
the cost of one ``podman exec CTR true`` (the floor of anything done through
exec); a first push of N small files (about 100 MB in all) against a plain
tar pipe of the same tree into another fresh container; an incremental sync
after changing one file; a pull of a file changed in the studio; a no-op
sync; then, for a studio with the seven default zone mappings, a first push,
a no-op sync and a sync with one file changed on each side. Prints the
median of the rounds (and the range): the test machine is shared, so single
runs vary by 2x.
"""

from __future__ import annotations

import argparse
import os
import statistics
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
    parser.add_argument("--repeat", type=int, default=3, help="rounds (the median is printed)")
    parser.add_argument("--image", default=None, help="default: the codestudio base image")
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="codestudio-bench-")
    os.environ["CODESTUDIO_HOME"] = home
    from codestudio import containers
    from codestudio.blockapi import SyncMapping
    from codestudio.runtime.local import LocalRuntime
    from codestudio.sync import ExecTransport, SyncStudio, default_mappings, sync

    image = args.image
    if image is None:
        from codestudio.images.base import build_base

        image = build_base(quiet=True).image

    target = "/home/codestudio/workspace/code_studio-resources"
    total_mb = args.files * args.size / 1e6
    times: dict[str, list[float]] = {}
    notes: dict[str, str] = {}
    names: list[str] = []

    def start() -> str:
        name = f"cs-bench-{uuid.uuid4().hex[:8]}-studio"  # named like a pod's main container
        containers.podman("run", "-d", "--rm", "--name", name, "--entrypoint", "/bin/sleep", image, "3600")
        names.append(name)
        return name

    def timed(case: str, fn, note: str = ""):
        t0 = time.perf_counter()
        result = fn()
        times.setdefault(case, []).append(time.perf_counter() - t0)
        notes.setdefault(case, note)
        return result

    def round_(n: int) -> None:
        # A new studio id per round: its zone and records start empty.
        studio = SyncStudio(f"bench{n}", "BENCH", "bench", (SyncMapping(zone="code_studio-resources", target=target),))
        zone = studio.zone_path("code_studio-resources")
        for i in range(args.files):
            path = zone / f"d{i // 100:03}" / f"f{i:05}.bin"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(os.urandom(args.size))

        plain, ctr = start(), start()
        timed("podman exec CTR true (floor of one exec)", lambda: containers.podman("exec", plain, "true"))
        containers.podman("exec", "--user", "codestudio", plain, "mkdir", "-p", target)
        transport = ExecTransport(LocalRuntime(), ctr.removesuffix("-studio"))

        def plain_tar() -> None:
            tar = subprocess.Popen(["tar", "-C", str(zone), "-cf", "-", "."], stdout=subprocess.PIPE)
            untar = subprocess.run(
                containers.podman_command("exec", "-i", "--user", "codestudio", plain, "tar", "-C", target, "-xf", "-"),
                stdin=tar.stdout, env=containers.podman_env(), capture_output=True,
            )
            tar.wait()
            assert untar.returncode == 0, untar.stderr

        def first_push() -> None:
            report = sync(studio, transport, "push", fresh=True)
            assert len(report.mappings[0].pushed) == args.files

        plain_case = f"plain tar | podman exec tar -x ({args.files} files, {total_mb:.0f} MB)"
        # Alternate which goes first, and flush dirty pages before each, so
        # neither pays for writing back the other's (or the generator's) data.
        pair = [(plain_case, plain_tar, "reference"), (f"first push ({args.files} files)", first_push, "")]
        for case, fn, note in pair if n % 2 == 0 else pair[::-1]:
            os.sync()
            timed(case, fn, note)
        times.setdefault("first push / plain tar", []).append(times[f"first push ({args.files} files)"][-1] / times[plain_case][-1])
        notes["first push / plain tar"] = "ratio (aim <= 1.5)"

        (zone / "d000" / "f00000.bin").write_bytes(os.urandom(args.size))
        report = timed("incremental sync, 1 file changed on server", lambda: sync(studio, transport), "aim < 0.5 s")
        assert report.mappings[0].pushed == ["d000/f00000.bin"]

        containers.podman("exec", "--user", "codestudio", ctr, "sh", "-c", f"echo changed >> {target}/d001/f00100.bin")
        report = timed("pull, 1 file changed in studio", lambda: sync(studio, transport))
        assert report.mappings[0].pulled == ["d001/f00100.bin"]

        timed("no-op sync", lambda: sync(studio, transport))
        for name in (plain, ctr):
            containers.podman("rm", "-f", "-t", "0", name, check=False)
            names.remove(name)

        # Seven default mappings, a few files each: what studio start and stop pay.
        many = SyncStudio(f"bench7-{n}", "BENCH", "bench", tuple(default_mappings()))
        for m in many.mappings:
            for i in range(5):
                (many.zone_path(m.zone) / f"file{i}.txt").write_text(f"{m.zone} {i}\n")
        ctr7 = start()
        t7 = ExecTransport(LocalRuntime(), ctr7.removesuffix("-studio"))
        timed("7 mappings: first push (35 files)", lambda: sync(many, t7, "push", fresh=True))
        timed("7 mappings: no-op sync", lambda: sync(many, t7))
        (many.zone_path("recipes") / "file0.txt").write_text("changed\n")
        containers.podman(
            "exec", "--user", "codestudio", ctr7, "sh", "-c", "echo changed >> /home/codestudio/workspace/user-resources/file1.txt"
        )
        report = timed("7 mappings: 1 file changed on each side", lambda: sync(many, t7))
        assert sum(len(m.pushed) for m in report.mappings) == 1 and sum(len(m.pulled) for m in report.mappings) == 1
        containers.podman("rm", "-f", "-t", "0", ctr7, check=False)
        names.remove(ctr7)

    try:
        for n in range(args.repeat):
            round_(n)
    finally:
        for name in names:
            containers.podman("rm", "-f", "-t", "0", name, check=False)
        subprocess.run(["rm", "-rf", home])

    width = max(len(case) for case in times)
    print(f"median of {args.repeat} round(s)")
    print(f"{'case':<{width}}  {'median':>7}  {'range':>13}  note")
    print("-" * (width + 40))
    for case, values in times.items():
        unit = "x" if case.endswith("plain tar") else "s"
        rng = f"{min(values):.2f}-{max(values):.2f}"
        print(f"{case:<{width}}  {statistics.median(values):>6.2f}{unit}  {rng:>13}  {notes.get(case, '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
