"""Benchmark file sync over the Kubernetes exec transport against the local podman exec transport.

Usage: python bench/kube_exec.py [--files 10000] [--size 10240] [--repeat 1] [--image IMAGE]

Two fresh containers of the codestudio base image get the same N-file tree.
One is reached as the local runtime reaches studios (``podman exec -i``);
the other through the engine's Kubernetes exec transport
(:mod:`codestudio.runtime.kubernetes.exec`: the exec websocket, v5 or v4
with framed stdin) against the loopback stand-in API server of the tests
(tests/e2e/kube_exec_standin.py), which runs each command with ``podman
exec -i`` in that container. The difference is what the websocket relay
costs; a real API server and kubelet add their network hops on top. Cases:
a first push, a no-op sync, a sync after one file changed on the server,
a pull of one file changed in the studio. Prints the median of the rounds.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=10_240, help="bytes per file")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (the median is printed)")
    parser.add_argument("--image", default=None, help="default: the codestudio base image")
    parser.add_argument("--protocol", choices=["v5", "v4"], default="v5", help="what the stand-in API server speaks")
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="codestudio-bench-")
    os.environ["CODESTUDIO_HOME"] = home
    from kube_exec_standin import V4, V5, StandIn

    from codestudio import containers
    from codestudio.blockapi import SyncMapping
    from codestudio.runtime.kubernetes.exec import PodTransport
    from codestudio.runtime.local import LocalRuntime
    from codestudio.sync import ExecTransport, SyncStudio, sync

    image = args.image
    if image is None:
        from codestudio.images.base import build_base

        image = build_base(quiet=True).image
    target = "/home/codestudio/workspace/code_studio-resources"
    names: list[str] = []
    times: dict[tuple[str, str], list[float]] = {}

    def start() -> str:
        name = f"cs-bench-{uuid.uuid4().hex[:8]}-studio"
        containers.podman("run", "-d", "--rm", "--name", name, "--entrypoint", "/bin/sleep", image, "3600")
        names.append(name)
        return name

    def in_container(container: str):
        def run(pod: str, argv: list[str], stdin: bool) -> subprocess.Popen:
            return subprocess.Popen(
                containers.podman_command("exec", *(["-i"] if stdin else []), "--user", "codestudio", container, *argv),
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=containers.podman_env())
        return run

    def timed(case: str, how: str, fn):
        t0 = time.perf_counter()
        result = fn()
        times.setdefault((case, how), []).append(time.perf_counter() - t0)
        return result

    protocols = [V5, V4] if args.protocol == "v5" else [V4]
    try:
        for n in range(args.repeat):
            local_ctr, kube_ctr = start(), start()
            standin = StandIn({"cs-bench-pod": Path(home)}, protocols=protocols, runner=in_container(kube_ctr))
            try:
                transports = {
                    "podman exec": ExecTransport(LocalRuntime(), local_ctr.removesuffix("-studio")),
                    f"kubernetes exec ({args.protocol})": ExecTransport(PodTransport(standin.api_client(), "cs"),
                                                                        "cs-bench-pod"),
                }
                # Warm both paths (a fresh container's first exec pays for its setup), then
                # alternate which goes first from round to round.
                containers.podman("exec", local_ctr, "true")
                PodTransport(standin.api_client(), "cs").exec("cs-bench-pod", ["true"]).communicate(timeout=60)
                order = list(transports.items())
                for how, transport in order if n % 2 == 0 else order[::-1]:
                    studio = SyncStudio(f"b{n}{len(how)}", "BENCH", "bench",
                                        (SyncMapping(zone="code_studio-resources", target=target),))
                    zone = studio.zone_path("code_studio-resources")
                    for i in range(args.files):
                        path = zone / f"d{i // 100:03}" / f"f{i:05}.bin"
                        path.parent.mkdir(exist_ok=True)
                        path.write_bytes(os.urandom(args.size))
                    os.sync()
                    report = timed(f"first push ({args.files} files)", how, lambda: sync(studio, transport, "push", fresh=True))
                    assert len(report.mappings[0].pushed) == args.files
                    timed("no-op sync", how, lambda: sync(studio, transport))
                    (zone / "d000" / "f00000.bin").write_bytes(os.urandom(args.size))
                    report = timed("1 file changed on the server", how, lambda: sync(studio, transport))
                    assert report.mappings[0].pushed == ["d000/f00000.bin"]
                    ctr = local_ctr if how == "podman exec" else kube_ctr
                    containers.podman("exec", "--user", "codestudio", ctr, "sh", "-c",
                                      f"echo changed >> {target}/d001/f00100.bin")
                    report = timed("1 file changed in the studio", how, lambda: sync(studio, transport))
                    assert report.mappings[0].pulled == ["d001/f00100.bin"]
            finally:
                standin.close()
                for name in (local_ctr, kube_ctr):
                    containers.podman("rm", "-f", "-t", "0", name, check=False)
                    names.remove(name)
    finally:
        for name in names:
            containers.podman("rm", "-f", "-t", "0", name, check=False)
        subprocess.run(["rm", "-rf", home])

    hows = list(dict.fromkeys(h for _, h in times))
    cases = list(dict.fromkeys(c for c, _ in times))
    width = max(len(c) for c in cases)
    print(f"median of {args.repeat} round(s), {args.files} files of {args.size} bytes")
    print(f"{'case':<{width}}  " + "  ".join(f"{h:>24}" for h in hows) + "  ratio")
    print("-" * (width + 2 + 26 * len(hows) + 6))
    for case in cases:
        medians = [statistics.median(times[(case, h)]) for h in hows]
        print(f"{case:<{width}}  " + "  ".join(f"{m:>23.2f}s" for m in medians) + f"  {medians[-1] / medians[0]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
