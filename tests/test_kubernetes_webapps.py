"""A webapp generation on the Kubernetes runtime: one Deployment with N replicas, a pod and endpoints each.

What runs for real: the KubernetesRuntime with the official client against
the API emulator (tests/e2e/k8s_emulator.py) and the webapp render; the
stand-in kubelet plays the ReplicaSet controller (a pod per replica, the
lowest ``controller.kubernetes.io/pod-deletion-cost`` removed first, a
deleted pod replaced) and gives each pod its own IP.
"""

from __future__ import annotations

import sys
import time

import pytest

pytest.importorskip("kubernetes")

from k8s_emulator import EmulatorServer, StandInKubelet  # noqa: E402

from codestudio.runtime.base import ID_LABEL, KIND_LABEL, PodSetSpec  # noqa: E402
from codestudio.runtime.kubernetes.client import Cluster  # noqa: E402
from codestudio.runtime.kubernetes.runtime import KubernetesRuntime  # noqa: E402
from codestudio.runtime.kubernetes.settings import RuntimeSettings  # noqa: E402

NS = "studios"
DIGEST = "registry.example.com:5000/codestudio/adv@sha256:" + "b" * 64
COST = "controller.kubernetes.io/pod-deletion-cost"


@pytest.fixture
def emu():
    with EmulatorServer() as server:
        server.run(server.emulator.put, ("", "v1", "namespaces"), None, {"metadata": {"name": NS}}, create=True)
        yield server


@pytest.fixture
def runtime(emu, tmp_path):
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = emu.url
    cfg.retries = 0
    settings = RuntimeSettings("kubernetes", None, NS, "registry.example.com:5000", None, "in-cluster")
    rt = KubernetesRuntime(settings, data_dir=tmp_path / "data", pusher=lambda image: DIGEST, progress=lambda line: None,
                           cluster=Cluster(context=None, namespace=NS, api_client=client.ApiClient(cfg)),
                           start_timeout=20)
    yield rt
    rt.cluster.close()


def webapp_spec(tmp_path, replicas: int, name: str = "cs-p-app-g1-0123456789") -> PodSetSpec:
    from codestudio.render import StudioContext, kubernetes_manifest, render_template

    ctx = StudioContext(project_key="P", studio_id="app", mode="webapp", webapp_id="app",
                        image="localhost/codestudio/adv:1")
    state = render_template("examples/advanced.yaml", ctx).state
    docs = kubernetes_manifest(state, ctx, "adv")
    env = docs[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    ref = next(e for e in env if e["name"] == "CODESTUDIO_GUARD_SECRET")["valueFrom"]["secretKeyRef"]
    return PodSetSpec(name=name, manifest=docs, labels={KIND_LABEL: "webapp", ID_LABEL: "app"}, replicas=replicas,
                      secrets={ref["name"]: {ref["key"]: "guard-value-456"}}, ports=tuple(state.all_ports),
                      workdir=tmp_path / "webapp")


def test_the_webapp_manifest_has_a_tcp_probe_and_the_pod_name_from_the_downward_api(tmp_path):
    spec = webapp_spec(tmp_path, 2)
    container = next(d for d in spec.manifest if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "tcpSocket" in container["readinessProbe"] and "httpGet" not in container["readinessProbe"]
    env = {e["name"]: e for e in container["env"]}
    assert env["K8S_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # The runner replaces ${K8S_POD_NAME} with that value inside the pod, before any entrypoint starts.
    assert env["DKU_CODE_STUDIO_BROWSER_PATH"]["value"] == "/web-apps-backends/P/app_${K8S_POD_NAME}"


def test_every_webapp_object_validates_strictly_for_1_28_to_1_37(tmp_path):
    import kubernetes_validate

    from codestudio.runtime.kubernetes import manifests

    docs = manifests.prepare(webapp_spec(tmp_path, 3), namespace=NS, instance="abc", image=DIGEST, pull_secret=None)
    assert next(d for d in docs if d["kind"] == "Deployment")["spec"]["replicas"] == 3
    for version in [f"1.{m}" for m in range(28, 38)]:
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)


def test_two_replicas_are_one_deployment_and_a_service_with_a_pod_and_endpoints_each_then_scale_and_stop(
        emu, runtime, tmp_path):
    from codestudio.render import guard_ports

    spec = webapp_spec(tmp_path, 2)
    guard = guard_ports(list(spec.ports))
    with StandInKubelet(emu, NS) as kubelet:
        podset = runtime.start(spec)
        (dep,) = emu.objects("deployments", NS)
        assert dep["spec"]["replicas"] == 2 and [s["metadata"]["name"] for s in emu.objects("services", NS)] == [spec.name]
        names = [p.name for p in podset.pods]
        assert len(set(names)) == 2 and all(n.startswith(f"{spec.name}-") for n in names)
        # In-cluster: each replica at its own pod IP and guard port (never the Service, which balances).
        hosts = {p.endpoints[spec.ports[0]].host for p in podset.pods}
        assert hosts == {kubelet.pod_ip_of(n) for n in names} and len(hosts) == 2
        assert all(p.endpoints[q].port == guard[q] for p in podset.pods for q in spec.ports)
        runtime.wait_rollout(spec.name, timeout=10)

        # Scale to 3: the two keep running, the new one gets its own endpoints.
        up = runtime.scale(spec.name, 3)
        assert emu.objects("deployments", NS)[0]["spec"]["replicas"] == 3
        assert len(up.pods) == 3 and set(names) < {p.name for p in up.pods}
        (new,) = [p for p in up.pods if p.name not in names]
        assert new.running and new.endpoints[spec.ports[0]].host == kubelet.pod_ip_of(new.name)
        assert {p.name for p in runtime.pods(spec.name)} == {p.name for p in up.pods}

        # Back to 1, the drained pods named: they go (the lowest deletion cost), the other stays.
        keep = names[1]
        down = runtime.scale(spec.name, 1, remove=(names[0], new.name))
        assert [p.name for p in down.pods] == [keep]
        assert emu.objects("deployments", NS)[0]["spec"]["replicas"] == 1
        assert [p["metadata"]["name"] for p in emu.objects("pods", NS)] == [keep]

        # A dead replica named at the same count is deleted and the Deployment replaces it.
        same = runtime.scale(spec.name, 1, remove=(keep,))
        assert len(same.pods) == 1 and same.pods[0].name != keep and same.pods[0].endpoints

        runtime.stop(spec.name, timeout=1)
        for plural in ("deployments", "services", "networkpolicies", "secrets", "pods"):
            assert emu.objects(plural, NS) == [], plural
    assert runtime.list() == []


# --------------------------------------------------------------------------
# `webapp publish|status|scale|delete` through the lifecycle on this runtime


class _ExecHere(KubernetesRuntime):
    """The Kubernetes runtime with exec run on this machine: each pod's files in ``folder/<pod>``.

    The snapshot's extract script and the runner's release (``touch``) really
    run, against that folder; the websocket exec transport itself has its own
    tests (tests/test_kube_exec.py).
    """

    def __init__(self, *a, folder, **kw):
        super().__init__(*a, **kw)
        self.folder = folder
        self.commands: list[tuple[str, list[str]]] = []

    def exec(self, pod, argv, *, user="codestudio", stdin=False):
        import subprocess

        argv = list(argv)
        self.commands.append((pod, argv))
        root = self.folder / pod
        root.mkdir(parents=True, exist_ok=True)
        if argv[:2] == ["sh", "-c"]:
            argv = argv[:-1] + [str(root) + argv[-1]]
        elif argv[0] == "touch":
            (root / argv[1].lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            argv = ["touch", str(root / argv[1].lstrip("/"))]
        else:
            argv = [sys.executable, "-c", "pass"]
        return subprocess.Popen(argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture
def who(tmp_path, monkeypatch, webapp_template):
    from codestudio import access
    from codestudio.projects import create_project
    from codestudio.templates_store import add_template

    monkeypatch.setattr(access, "os_user", lambda: "alice")
    monkeypatch.setattr(access, "os_groups", lambda user: set())
    alice = access.identify()
    (tmp_path / "wa.yaml").write_text(webapp_template("wa-k8s"))
    add_template(alice, tmp_path / "wa.yaml")
    create_project(alice, "PROJ")
    return alice


GUARD_PORT = 61000  # guard_ports([8080, 9000])[8080]: where the engine probes each replica
POD_NET = "127.0.3."  # loopback too (Linux routes 127/8): a stand-in guard per pod address


@pytest.fixture
def guards():
    """A stand-in guard at each address the stand-in kubelet gives pods: answers the engine's probe."""
    import http.server
    import threading

    class Guard(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.server.paths.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    servers = []
    for last in range(1, 9):
        server = http.server.ThreadingHTTPServer((f"{POD_NET}{last}", GUARD_PORT), Guard)
        server.paths = []
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def test_publish_status_scale_delete_on_the_kubernetes_runtime(who, fake_runtime, emu, guards, tmp_path):
    from kubernetes import client

    from codestudio.runtime.current import use_runtime
    from codestudio.store import Store
    from codestudio.webapps import delete, publish, records, scale, status
    from codestudio.webapps.routes import webapp_routes

    cfg = client.Configuration()
    cfg.host = emu.url
    settings = RuntimeSettings("kubernetes", None, NS, "registry.example.com", None, "in-cluster")
    rt = _ExecHere(settings, cluster=Cluster(context=None, namespace=NS, api_client=client.ApiClient(cfg)),
                   pusher=lambda image: DIGEST, progress=lambda line: None, start_timeout=20, folder=tmp_path / "pods")
    with use_runtime(rt), StandInKubelet(emu, NS, pod_ip=f"{POD_NET}1") as kubelet:
        w = publish(who, "PROJ", "app", "wa-k8s", replicas=2, quiet=True)
        (dep,) = emu.objects("deployments", NS)
        assert dep["spec"]["replicas"] == 2
        assert [s["metadata"]["name"] for s in emu.objects("services", NS)] == [dep["metadata"]["name"]]
        info = status(who, w.key)
        rows = info["replicas_detail"]
        pods = [r["pod"] for r in rows]
        assert [r["state"] for r in rows] == ["ready", "ready"] and len(set(pods)) == 2
        assert set(pods) == set(kubelet.replicas[dep["metadata"]["name"]])
        reps = records.replicas_of(Store.default(), w)
        assert {r.endpoints[8080] for r in reps} == {(kubelet.pod_ip_of(p), GUARD_PORT) for p in pods}
        # The engine probed each replica at its own prefix, with its real pod name substituted.
        probed = [p for g in guards for p in g.paths]
        for pod in pods:
            assert f"/web-apps-backends/PROJ/app_{pod}/8080/health" in probed
            # The snapshot went into each replica through exec, then the runner was released.
            assert any(p == pod and a[:2] == ["sh", "-c"] for p, a in rt.commands)
            assert (rt.folder / pod / "tmp" / ".codestudio-sync-done").exists()
        [routes] = webapp_routes()
        assert sorted(r.pod_name for r in routes.replicas) == sorted(pods)

        scale(who, w.key, 3, quiet=True)
        assert emu.objects("deployments", NS)[0]["spec"]["replicas"] == 3
        three = [r["pod"] for r in status(who, w.key)["replicas_detail"]]
        assert len(three) == 3 and set(pods) < set(three)
        assert all(r["state"] == "ready" for r in status(who, w.key)["replicas_detail"])
        scale(who, w.key, 1, quiet=True)
        assert emu.objects("deployments", NS)[0]["spec"]["replicas"] == 1
        (left,) = [r["pod"] for r in status(who, w.key)["replicas_detail"]]
        assert [p["metadata"]["name"] for p in emu.objects("pods", NS)] == [left]

        # The Deployment replaces a pod that went away; the next reconcile (any read) adopts the new one.
        emu.run(emu.emulator.remove, ("", "v1", "pods"), NS, left)
        deadline = time.monotonic() + 20
        rows = status(who, w.key)["replicas_detail"]
        while not (len(rows) == 1 and rows[0]["pod"] != left and rows[0]["state"] == "ready"):
            assert time.monotonic() < deadline, rows
            time.sleep(0.2)
            rows = status(who, w.key)["replicas_detail"]
        (again,) = rows
        assert (rt.folder / again["pod"] / "tmp" / ".codestudio-sync-done").exists()

        delete(who, w.key)
        for plural in ("deployments", "services", "networkpolicies", "secrets", "pods"):
            assert emu.objects(plural, NS) == [], plural


def test_port_forward_mode_gives_each_replica_its_own_forward_and_a_removed_one_goes(emu, tmp_path, monkeypatch):
    """Port-forward mode: a forwarder process per replica pod, on its own loopback port; scale ends the
    removed pod's forwarder. (The forwarded traffic itself: tests/test_kube_portforward.py.)"""
    import json

    from kubernetes import client

    monkeypatch.setenv("KUBECONFIG", emu.kubeconfig(tmp_path / "kubeconfig"))
    cfg = client.Configuration()
    cfg.host = emu.url
    settings = RuntimeSettings("kubernetes", None, NS, "registry.example.com:5000", None, "port-forward")
    rt = KubernetesRuntime(settings, data_dir=tmp_path / "data", pusher=lambda image: DIGEST, progress=lambda line: None,
                           cluster=Cluster(context=None, namespace=NS, api_client=client.ApiClient(cfg)),
                           start_timeout=20)
    spec = webapp_spec(tmp_path, 2)

    def pid_of(pod: str) -> int:
        return json.loads((rt._workdir(spec.name) / f"forward-{pod}.json").read_text())["pid"]

    def alive(pid: int) -> bool:  # a forwarder of ours runs with that pid (an ended child is a zombie: no cmdline)
        from codestudio.runtime.kubernetes.portforward import _alive

        return _alive(pid)

    try:
        with StandInKubelet(emu, NS):
            podset = rt.start(spec)
            a, b = podset.pods
            assert {e.host for p in podset.pods for e in p.endpoints.values()} == {"127.0.0.1"}
            ports_a = {e.port for e in a.endpoints.values()}
            assert ports_a.isdisjoint(e.port for e in b.endpoints.values())
            pids = {a.name: pid_of(a.name), b.name: pid_of(b.name)}
            assert pids[a.name] != pids[b.name] and all(alive(p) for p in pids.values())
            up = rt.scale(spec.name, 3)
            (new,) = [p for p in up.pods if p.name not in pids]
            assert new.endpoints and {e.port for e in new.endpoints.values()}.isdisjoint(ports_a)
            down = rt.scale(spec.name, 2, remove=(a.name,))
            assert a.name not in {p.name for p in down.pods}
            deadline = time.monotonic() + 10
            while alive(pids[a.name]):
                assert time.monotonic() < deadline, "the removed replica's forwarder still runs"
                time.sleep(0.05)
            assert alive(pids[b.name])
            rt.stop(spec.name, timeout=1)
            assert not any(alive(p) for p in pids.values())
    finally:
        from codestudio.runtime.kubernetes.portforward import stop_forwards

        stop_forwards(rt, spec.name, workdir=rt._workdir(spec.name))
        rt.cluster.close()
