"""Kubernetes runtime overhead against the API emulator and the stand-in kubelet, printed as one table.

(a) start -> applied: from ``KubernetesRuntime.start()`` being called to
    every object (Secret, NetworkPolicy, Service, Deployment) applied with
    server-side apply (the image is already a digest: no push);
(b) started -> returned: from the stand-in kubelet reporting the container
    running to ``start()`` returning with the pod (the watch noticing it);
(c) ready -> noticed: from the kubelet marking the pod Ready to ``events()``
    yielding ``ready``;
(d) stop: deleting every object and waiting for the pod to be gone.

The emulator (kmock's, extended: tests/e2e/k8s_emulator.py) and the kubelet
run in this process on loopback, so these are the engine's own costs plus
loopback HTTP, not a cluster's. The issue's aim for (b)/(c): under 100 ms.

    python bench/kubernetes.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# This file is named like the client package: keep bench/ off the path so `import kubernetes` finds the client.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from k8s_emulator import EmulatorServer, StandInKubelet
    from kubernetes import client

    from codestudio.render import StudioContext, kubernetes_manifest, render_template
    from codestudio.runtime.base import ID_LABEL, KIND_LABEL, PodSetSpec
    from codestudio.runtime.kubernetes.client import Cluster
    from codestudio.runtime.kubernetes.runtime import KubernetesRuntime
    from codestudio.runtime.kubernetes.settings import RuntimeSettings

    ns = "studios"
    digest = "registry.example.com/codestudio/b@sha256:" + "d" * 64
    rows: dict[str, list[float]] = {k: [] for k in ("start -> applied", "started -> start() returned",
                                                     "ready -> events() says ready", "stop")}
    with tempfile.TemporaryDirectory() as tmp, EmulatorServer() as emu:
        os.environ["CODESTUDIO_HOME"] = str(Path(tmp) / "home")
        cfg = client.Configuration()
        cfg.host = emu.url
        rt = KubernetesRuntime(RuntimeSettings("kubernetes", None, ns, "registry.example.com", None, "in-cluster"),
                               data_dir=Path(tmp) / "data", cluster=Cluster(context=None, namespace=ns,
                                                                            api_client=client.ApiClient(cfg)),
                               pusher=lambda image: digest, progress=lambda m: None)
        ctx = StudioContext(project_key="P", studio_id="s", image="localhost/codestudio/adv:1")
        rendered = render_template(ROOT / "examples" / "advanced.yaml", ctx)
        docs = kubernetes_manifest(rendered.state, ctx, "adv")
        env = docs[0]["spec"]["template"]["spec"]["containers"][0]["env"]
        ref = next(e for e in env if e["name"] == "CODESTUDIO_GUARD_SECRET")["valueFrom"]["secretKeyRef"]
        with StandInKubelet(emu, ns, delay=0.05) as kubelet:
            for i in range(args.rounds):
                name = f"cs-bench-{i}-0123456789"
                spec = PodSetSpec(name, docs, {KIND_LABEL: "studio", ID_LABEL: f"s{i}"},
                                  secrets={ref["name"]: {ref["key"]: "x"}}, ports=tuple(rendered.state.all_ports))
                began = time.monotonic()
                podset = rt.start(spec)
                returned = time.monotonic()
                rows["start -> applied"].append(rt.applied_after)
                pod = podset.pods[0].name
                rows["started -> start() returned"].append(returned - kubelet.marks[pod]["running"])
                for event in rt.events(name, timeout=10):
                    if event.kind == "ready":
                        rows["ready -> events() says ready"].append(time.monotonic() - kubelet.marks[pod]["ready"])
                        break
                t = time.monotonic()
                rt.stop(name, timeout=1)
                rows["stop"].append(time.monotonic() - t)
                del began
    print(f"{'what':32} {'median ms':>10} {'max ms':>8}  (rounds: {args.rounds}, load {os.getloadavg()[0]:.1f})")
    for what, values in rows.items():
        if values:
            print(f"{what:32} {statistics.median(values) * 1000:10.1f} {max(values) * 1000:8.1f}")


if __name__ == "__main__":
    main()
