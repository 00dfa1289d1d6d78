"""A webapp generation on the Kubernetes runtime: one Deployment with N replicas, a pod and endpoints each.

What runs for real: the KubernetesRuntime with the official client against
the API emulator (tests/e2e/k8s_emulator.py) and the webapp render; the
stand-in kubelet plays the ReplicaSet controller (a pod per replica, the
lowest ``controller.kubernetes.io/pod-deletion-cost`` removed first, a
deleted pod replaced) and gives each pod its own IP.
"""

from __future__ import annotations

import random
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
# Loopback too (Linux routes 127/8): a stand-in guard per pod address. The guard port is fixed (the
# engine's), so the network is drawn per run: two runs on one machine (other worktrees) do not collide.
POD_NET = f"127.{random.randrange(1, 255)}.{random.randrange(0, 255)}."


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
    try:
        for last in range(1, 9):
            server = http.server.ThreadingHTTPServer((f"{POD_NET}{last}", GUARD_PORT), Guard)
            server.paths = []
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers.append(server)
        yield servers
    finally:
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


# --------------------------------------------------------------------------
# `webapp update` and the port-forward mode through the whole lifecycle


class _LiveGuards:
    """A stand-in guard per pod address that answers only while its pod exists and runs in the emulator.

    A request for ``/web-apps-backends/PROJ/app_<pod>/...`` is answered 200 by
    the guard at that pod's address (``kubelet.pod_ip_of``) when the pod is
    running; anything else (a pod deleted, another pod's address) is 503. So a
    request the gateway routes to a pod already removed fails, as it would
    against a real cluster. ``seen`` lists (guard address, path) of every request.
    """

    def __init__(self, emu, addresses):
        import http.server
        import re
        import threading

        self.emu, self.seen, self.servers = emu, [], []
        guards = self

        class Guard(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                host = self.server.server_address[0]
                guards.seen.append((host, self.path))
                m = re.match(r"^/web-apps-backends/PROJ/app_([a-z0-9-]+)/", self.path)
                ok = m is not None and guards.running(m.group(1)) == host
                body = m.group(1).encode() if ok else b""  # the pod that answered
                self.send_response(200 if ok else 503)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        try:
            for address in addresses:
                server = http.server.ThreadingHTTPServer(address, Guard)
                threading.Thread(target=server.serve_forever, daemon=True).start()
                self.servers.append(server)
        except BaseException:
            self.close()  # the ones made so far: a failed test leaves no listener behind
            raise
        self.kubelet = None

    def running(self, pod: str) -> str | None:
        """The IP of ``pod`` when it exists and runs, else None."""
        for p in self.emu.objects("pods", NS):
            if p["metadata"]["name"] == pod and (p.get("status") or {}).get("phase") == "Running":
                return self.kubelet.pod_ip_of(pod) if self.kubelet else "127.0.0.1"
        return None

    def close(self):
        for server in self.servers:
            server.shutdown()
            server.server_close()


class _RecordingGateway:
    """Wraps the fake gateway's apply: each applied config's webapp replicas, and every pod removal
    with the number of configs applied before it (what nginx would have been serving then)."""

    def __init__(self, fake_runtime, emu):
        from codestudio.webapps.routes import webapp_routes

        self.applied: list[dict[str, bool]] = []  # pod -> ready, per apply
        self.removed: list[tuple[str, int]] = []
        gateway = fake_runtime.gateway
        original_apply = gateway.apply

        def apply(studios=None):
            result = original_apply(studios)
            routes = [r for r in webapp_routes() if r.webapp_id == "app"]
            self.applied.append({r.pod_name: r.ready for r in routes[0].replicas} if routes else {})
            return result

        gateway.apply = apply
        original_remove = emu.emulator.remove

        def remove(rkey, namespace, name):
            if rkey[2] == "pods":
                self.removed.append((name, len(self.applied)))
            return original_remove(rkey, namespace, name)

        emu.emulator.remove = remove

    def serving(self, index: int | None = None) -> dict[str, bool]:
        if index is None:
            index = len(self.applied)
        return self.applied[index - 1] if index else {}


def _kube_runtime(emu, tmp_path, mode: str):
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = emu.url
    settings = RuntimeSettings("kubernetes", None, NS, "registry.example.com", None, mode)
    return _ExecHere(settings, cluster=Cluster(context=None, namespace=NS, api_client=client.ApiClient(cfg)),
                     pusher=lambda image: DIGEST, progress=lambda line: None, start_timeout=20,
                     folder=tmp_path / "pods")


def _wait_status(who, key, done, what: str):
    """``status(who, key)`` until ``done(rows)``; each call is a reconcile, as the supervisor's."""
    from codestudio.webapps import status

    deadline = time.monotonic() + 30
    rows = status(who, key)["replicas_detail"]
    while not done(rows):
        assert time.monotonic() < deadline, f"{what}: {rows}"
        time.sleep(0.2)
        rows = status(who, key)["replicas_detail"]
    return rows


def test_update_on_kubernetes_routes_each_new_replica_before_an_old_one_goes_and_no_request_fails(
        who, fake_runtime, emu, tmp_path):
    """The rolling update on the Kubernetes runtime: a new pod is ready and in the applied gateway config
    before an old pod is drained from it, and no old pod is deleted while an applied config still routes
    to it. A load loop sends requests as nginx would (to the ready replicas of the last applied config);
    the stand-in guards answer only for pods that still run, so a request routed to a removed pod fails."""
    import threading
    import urllib.request

    from codestudio.runtime.current import use_runtime
    from codestudio.store import Store
    from codestudio.webapps import publish, records, update

    guards = _LiveGuards(emu, [(f"{POD_NET}{last}", GUARD_PORT) for last in range(1, 9)])
    rt = _kube_runtime(emu, tmp_path, "in-cluster")
    gw = _RecordingGateway(fake_runtime, emu)
    try:
        with use_runtime(rt), StandInKubelet(emu, NS, pod_ip=f"{POD_NET}1") as kubelet:
            guards.kubelet = kubelet
            w = publish(who, "PROJ", "app", "wa-k8s", replicas=2, quiet=True)
            old = {r.pod: r for r in records.replicas_of(Store.default(), w)}
            (old_dep,) = [d["metadata"]["name"] for d in emu.objects("deployments", NS)]
            assert len(old) == 2 and all(r.state == "ready" for r in old.values())

            results: list[tuple[bool, str, int, int]] = []  # ok, pod, configs applied before, after
            stop = threading.Event()
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

            def load():
                while not stop.is_set():
                    before = len(gw.applied)
                    for pod, ready in gw.serving(before).items():
                        if not ready:
                            continue
                        (row,) = [r for r in records.replicas_of(Store.default(), w) if r.pod == pod] or [None]
                        if row is None:  # its row is gone: only in a config applied since
                            results.append((False, pod, before, len(gw.applied)))
                            continue
                        host, port = row.endpoints[8080]
                        req = urllib.request.Request(f"http://{host}:{port}/web-apps-backends/PROJ/app_{pod}/8080/",
                                                     headers={"X-Codestudio-Guard": row.guard_secret})
                        try:
                            with opener.open(req, timeout=10) as resp:
                                ok = resp.status == 200
                        except OSError:
                            ok = False
                        results.append((ok, pod, before, len(gw.applied)))
                    stop.wait(0.01)

            thread = threading.Thread(target=load, daemon=True)
            thread.start()
            try:
                w = update(who, w.key, quiet=True)
            finally:
                stop.set()
                thread.join(30)

            new = {r.pod: r for r in records.replicas_of(Store.default(), w)}
            assert w.generation == 2 and len(new) == 2 and not set(new) & set(old)
            assert all(r.generation == 2 and r.state == "ready" for r in new.values())
            (dep,) = emu.objects("deployments", NS)
            assert dep["metadata"]["name"] != old_dep and dep["spec"]["replicas"] == 2
            assert sorted(p["metadata"]["name"] for p in emu.objects("pods", NS)) == sorted(new)
            for pod in new:  # each new replica got the new generation's snapshot, then was released
                assert (rt.folder / pod / "tmp" / ".codestudio-sync-done").exists()

            # Every old pod was deleted only once the configs applied before no longer listed it,
            # and with both replicas' worth of ready pods routed instead.
            removals = [(pod, n) for pod, n in gw.removed if pod in old]
            assert sorted(p for p, _ in removals) == sorted(old), gw.removed
            for pod, n in removals:
                serving = gw.serving(n)
                assert pod not in serving, (pod, serving)
                assert sum(serving.values()) >= 2, (pod, serving)
            # And each config that dropped an old pod already routed a ready new one in its place.
            for i in range(1, len(gw.applied)):
                dropped = [p for p in gw.applied[i - 1] if p in old and p not in gw.applied[i]]
                if dropped:
                    ready_new = [p for p, ready in gw.applied[i].items() if ready and p in new]
                    assert ready_new and sum(gw.applied[i].values()) >= 2, (dropped, gw.applied[i])

            # No request to a replica of the config nginx was serving failed (the config was still
            # the latest when the answer came back: a pod removed while routed would fail here).
            served = [(ok, pod) for ok, pod, before, after in results if before == after]
            assert {pod for ok, pod in served if ok} & set(old), "the load loop never reached an old replica"
            assert [x for x in served if not x[0]] == [], [x for x in served if not x[0]][:5]
            assert {pod for ok, pod in served if ok} & set(new), "the load loop never reached a new replica"
    finally:
        guards.close()


class _PodGuards:
    """The stand-in's port-forward targets: one stand-in guard per pod, on its own loopback port, made
    when the pod is first forwarded to. Each answers 200 only for its own pod's prefix while that pod
    runs in the emulator; ``seen`` lists (guard's pod, path) of every request."""

    def __init__(self, emu):
        self.emu, self.seen, self.servers, self.ports = emu, [], [], {}

    def running(self, pod: str) -> bool:
        return any(p["metadata"]["name"] == pod and (p.get("status") or {}).get("phase") == "Running"
                   for p in self.emu.objects("pods", NS))

    def get(self, key, default=None):  # StandIn.forwards.get((pod, pod port))
        import http.server
        import threading

        pod, port = key
        if port != GUARD_PORT:
            return default
        if pod not in self.ports:
            guards = self

            class Guard(http.server.BaseHTTPRequestHandler):
                def do_GET(self):  # noqa: N802
                    guards.seen.append((pod, self.path))
                    ok = self.path.startswith(f"/web-apps-backends/PROJ/app_{pod}/") and guards.running(pod)
                    self.send_response(200 if ok else 503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

                def log_message(self, *a):
                    pass

            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Guard)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)
            self.ports[pod] = server.server_address[1]
        return self.ports[pod]

    def close(self):
        for server in self.servers:
            server.shutdown()
            server.server_close()


def _forward_standin(emu, guards):
    """The loopback exec/port-forward stand-in, forwarding to ``guards``; a plain GET of the pod list
    (what a forwarder asks when its pod is gone) is answered from the emulator."""
    import urllib.request
    from http import HTTPStatus
    from urllib.parse import urlsplit

    from kube_exec_standin import StandIn
    from websockets.datastructures import Headers
    from websockets.http11 import Response

    class Pods(dict):
        def __contains__(self, pod):
            return guards.running(pod)

    class ForwardStandIn(StandIn):
        def _check(self, connection, request):
            path = urlsplit(request.path)
            if path.path == f"/api/v1/namespaces/{NS}/pods" and "upgrade" not in request.headers.get("Connection", "").lower():
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with opener.open(f"{emu.url}{request.path}", timeout=10) as resp:
                    body = resp.read()
                headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
                return Response(200, HTTPStatus(200).phrase, headers, body)
            return super()._check(connection, request)

    standin = ForwardStandIn({}, namespace=NS, token="test-token")
    standin.pods = Pods()
    standin.forwards = guards
    return standin


def _forwarders(data_dir) -> dict[str, int]:
    """Forwarder processes of this data dir that run: pod -> pid (from /proc: leaked ones count too)."""
    import os
    from pathlib import Path

    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"codestudio.runtime.kubernetes.portforward" in argv and any(str(data_dir).encode() in a for a in argv):
            out[argv[argv.index(b"--pod") + 1].decode()] = int(entry)
    return out


def test_port_forward_mode_through_the_whole_webapp_lifecycle(who, fake_runtime, emu, tmp_path, monkeypatch):
    """publish 2, status, scale 3 then 1, a replica replaced, update, stop, start, delete -- in port-forward
    mode: every replica is reached (the engine's probes included) through its own forwarder process on
    loopback, relayed by the stand-in's port-forward websocket to that pod's stand-in guard; there is one
    forwarder per pod, and it ends when its pod leaves. A replica's forwarder never re-points to another
    pod of the pod set (that pod's own prefix would be served by the wrong replica)."""
    import http.client

    import yaml

    from codestudio.home import data_dir
    from codestudio.runtime.current import use_runtime
    from codestudio.store import Store
    from codestudio.webapps import delete, publish, records, scale, start, stop, update
    from codestudio.webapps.routes import webapp_routes

    guards = _PodGuards(emu)
    standin = _forward_standin(emu, guards)
    # The forwarder processes talk to the stand-in (port-forward websockets, the pod list); the engine's
    # own API calls go to the emulator.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emu",
        "clusters": [{"name": "emu", "cluster": {"server": standin.host}}],
        "users": [{"name": "u", "user": {"token": "test-token"}}],
        "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "u", "namespace": NS}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    rt = _kube_runtime(emu, tmp_path, "port-forward")
    home = data_dir()

    def pods_now() -> set[str]:
        return {p["metadata"]["name"] for p in emu.objects("pods", NS)}

    def check_one_forwarder_per_pod(w):
        """Routes, rows and processes agree: each replica's ports on loopback, its own forwarder."""
        rows = records.replicas_of(Store.default(), w)
        assert {r.pod for r in rows} == pods_now()
        running = _forwarders(home)
        assert set(running) == pods_now(), (running, pods_now())
        assert len(set(running.values())) == len(running)
        [routes] = [r for r in webapp_routes() if r.webapp_id == "app"]
        ports = {r.pod_name: {(p.upstream_host, p.upstream_port) for p in r.ports} for r in routes.replicas}
        assert set(ports) == pods_now()
        assert {h for addresses in ports.values() for h, _ in addresses} == {"127.0.0.1"}
        every = [a for addresses in ports.values() for a in addresses]
        assert len(every) == len(set(every)), "two replicas share a forwarded port"
        for r in rows:
            assert ports[r.pod] == {tuple(r.endpoints[8080])}
            # Through the replica's forwarder: its own guard answers (the stand-in relayed to that pod).
            assert _through(r.endpoints[8080], r.pod, r.guard_secret) == 200
            assert (r.pod, f"/web-apps-backends/PROJ/app_{r.pod}/8080/") in guards.seen

    def _through(endpoint, pod, secret) -> int:
        conn = http.client.HTTPConnection(*endpoint, timeout=10)
        try:
            conn.request("GET", f"/web-apps-backends/PROJ/app_{pod}/8080/", headers={"X-Codestudio-Guard": secret})
            return conn.getresponse().status
        except (OSError, http.client.HTTPException):
            return 0
        finally:
            conn.close()

    try:
        with use_runtime(rt), StandInKubelet(emu, NS, pod_ip="10.1.0.1"):
            w = publish(who, "PROJ", "app", "wa-k8s", replicas=2, quiet=True)
            rows = _wait_status(who, w.key, lambda rows: len(rows) == 2, "publish")
            assert [r["state"] for r in rows] == ["ready", "ready"]
            # The engine's probes went through each pod's forwarder to that pod's guard.
            for r in rows:
                assert (r["pod"], f"/web-apps-backends/PROJ/app_{r['pod']}/8080/health") in guards.seen
            check_one_forwarder_per_pod(w)

            # A forwarder that died (a reboot) comes back at the next reconcile, on the same local port,
            # still never following to another pod.
            import os
            import signal
            from pathlib import Path

            from codestudio.webapps import status

            victim = rows[0]["pod"]
            (before,) = [r for r in records.replicas_of(Store.default(), w) if r.pod == victim]
            os.kill(_forwarders(home)[victim], signal.SIGKILL)
            deadline = time.monotonic() + 10
            while victim in _forwarders(home):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            status(who, w.key)
            pid = _forwarders(home)[victim]
            assert b"--no-follow" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert _through(before.endpoints[8080], victim, before.guard_secret) == 200
            check_one_forwarder_per_pod(w)

            scale(who, w.key, 3, quiet=True)
            check_one_forwarder_per_pod(w)
            three = dict(_forwarders(home))
            scale(who, w.key, 1, quiet=True)
            check_one_forwarder_per_pod(w)
            (left,) = pods_now()
            assert not set(three) - {left} & set(_forwarders(home))

            # A replica replaced: the gone pod's forwarder ends at the next reconcile; before that, a
            # connection to it is refused, never relayed to another pod of the pod set.
            (row,) = records.replicas_of(Store.default(), w)
            scale(who, w.key, 2, quiet=True)
            (other,) = pods_now() - {left}
            emu.run(emu.emulator.remove, ("", "v1", "pods"), NS, left)
            seen_before = len(guards.seen)
            assert _through(row.endpoints[8080], left, row.guard_secret) != 200
            assert [s for s in guards.seen[seen_before:] if s[0] != left] == [], \
                "the gone replica's forwarder relayed to another pod"
            _wait_status(who, w.key, lambda rows: len(rows) == 2 and left not in {r["pod"] for r in rows}
                         and all(r["state"] == "ready" for r in rows), "replacement")
            assert left not in _forwarders(home)
            check_one_forwarder_per_pod(w)
            assert other in pods_now()

            before = set(pods_now())
            w = update(who, w.key, quiet=True)
            assert w.generation == 2 and not before & pods_now() and len(pods_now()) == 2
            check_one_forwarder_per_pod(w)

            stop(who, w.key)
            assert pods_now() == set() and _forwarders(home) == {}
            w = start(who, w.key, quiet=True)
            assert len(pods_now()) == 2
            check_one_forwarder_per_pod(w)

            delete(who, w.key)
            assert pods_now() == set() and _forwarders(home) == {}
            for plural in ("deployments", "services", "networkpolicies", "secrets"):
                assert emu.objects(plural, NS) == [], plural
            assert not list((home / "runtime" / "kubernetes").rglob("forward-*.json"))
    finally:
        import os
        import signal

        for pid in _forwarders(home).values():
            os.kill(pid, signal.SIGKILL)
        standin.close()
        guards.close()
        rt.cluster.close()


def test_webapp_logs_and_the_supervisor_on_the_kubernetes_runtime(who, fake_runtime, emu, tmp_path):
    """`webapp logs` reads one replica's log through the log API; a stop keeps each replica's log and
    events; `webapp supervise` (one round) replaces a pod that went away and unroutes a replica whose
    probe keeps failing, then routes it again once it passes."""
    from click.testing import CliRunner

    from codestudio.cli import make_cli
    from codestudio.errors import NotFound
    from codestudio.runtime.current import use_runtime
    from codestudio.store import Store
    from codestudio.webapps import records, stop
    from codestudio.webapps.routes import webapp_routes
    from codestudio.webapps.supervise import supervise

    guards = _LiveGuards(emu, [(f"{POD_NET}{last}", GUARD_PORT) for last in range(1, 9)])
    rt = _kube_runtime(emu, tmp_path, "in-cluster")
    sick: set[str] = set()
    running = guards.running
    guards.running = lambda pod: None if pod in sick else running(pod)

    def routed() -> dict[str, bool]:
        routes = [r for r in webapp_routes() if r.webapp_id == "app"]
        return {r.pod_name: r.ready for r in routes[0].replicas} if routes else {}

    try:
        with use_runtime(rt), StandInKubelet(emu, NS, pod_ip=f"{POD_NET}1") as kubelet:
            guards.kubelet = kubelet
            from codestudio.webapps import publish

            w = publish(who, "PROJ", "app", "wa-k8s", replicas=2, quiet=True)
            a, b = sorted(r.pod for r in records.replicas_of(Store.default(), w))
            for pod in (a, b):
                emu.run(emu.emulator.logs.__setitem__, (NS, pod), f"runner: starting\nserving as {pod}\n")
            cli = make_cli()
            result = CliRunner().invoke(cli, ["webapp", "logs", w.key, "--replica", b], obj={})
            assert result.exit_code == 0, result.output
            assert f"serving as {b}" in result.stdout and f"serving as {a}" not in result.stdout
            result = CliRunner().invoke(cli, ["webapp", "logs", w.key, "--replica", "nope"], obj={})
            assert isinstance(result.exception, NotFound) and "has no replica 'nope'" in str(result.exception)

            # The supervisor: a pod gone is replaced (snapshot pushed, probed, routed).
            emu.run(emu.emulator.remove, ("", "v1", "pods"), NS, a)
            supervise(once=True)
            rows = {r.pod: r for r in records.replicas_of(Store.default(), w)}
            assert a not in rows and b in rows and len(rows) == 2, rows
            (c,) = set(rows) - {b}
            assert rows[c].state == "ready" and (rt.folder / c / "tmp" / ".codestudio-sync-done").exists()
            assert routed() == {b: True, c: True}

            # A replica whose probe keeps failing is unrouted (not-ready, with the probe's answer), then
            # routed again when it passes; nothing else changes.
            sick.add(b)
            supervise(once=True)
            rows = {r.pod: r for r in records.replicas_of(Store.default(), w)}
            assert rows[b].state == "not-ready" and "503" in (rows[b].reason or ""), rows[b]
            assert routed() == {b: False, c: True}
            sick.clear()
            supervise(once=True)
            assert routed() == {b: True, c: True}
            assert {p["metadata"]["name"] for p in emu.objects("pods", NS)} == {b, c}

            # A stop keeps each replica's log and its events in the webapp's logs folder.
            emu.run(emu.emulator.logs.__setitem__, (NS, b), f"runner: starting\nserving as {b}\n")
            stop(who, w.key)
            saved = {p.name: p.read_text() for p in w.logs_dir.glob("*.log")}
            (kept,) = [text for name, text in saved.items() if name.endswith(f"-{b}.log")]
            assert f"serving as {b}" in kept and f"# events (pod {b}, namespace {NS})" in kept
            assert "Started" in kept
    finally:
        guards.close()


@pytest.mark.e2e
def test_update_on_kubernetes_through_real_nginx_fails_no_request(who, fake_runtime, emu, tmp_path, monkeypatch):
    """The same rolling update with the data dir's real gateway (nginx) in front of the pods' addresses
    (in-cluster mode): a browser-like client on the stable URL (its affinity cookie kept, a new connection
    per request) sees every request answered by a pod that still runs, old ones first, new ones last."""
    import socket
    import threading

    import httpx

    import codestudio.runtime.routes as routes
    from codestudio.gateway.process import Gateway
    from codestudio.home import data_dir
    from codestudio.runtime.current import use_runtime
    from codestudio.store import Store
    from codestudio.webapps import publish, records, update

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("CODESTUDIO_GATEWAY_PORT", str(sock.getsockname()[1]))
    guards = _LiveGuards(emu, [(f"{POD_NET}{last}", GUARD_PORT) for last in range(1, 9)])
    rt = _kube_runtime(emu, tmp_path, "in-cluster")
    fake = routes.gateway
    real = Gateway(data_dir(), studios=routes.running_studio_routes, webapps=routes.running_webapp_routes)
    routes.gateway = lambda: real
    try:
        with use_runtime(rt), StandInKubelet(emu, NS, pod_ip=f"{POD_NET}1") as kubelet:
            guards.kubelet = kubelet
            w = publish(who, "PROJ", "app", "wa-k8s", replicas=2, share="public", quiet=True)
            old = {r.pod for r in records.replicas_of(Store.default(), w)}
            url = real.settings.webapp_base_url.rstrip("/") + w.stable_path
            results: list[tuple[int, str]] = []
            stop = threading.Event()

            def load():
                with httpx.Client(trust_env=False, timeout=10,
                                  limits=httpx.Limits(max_keepalive_connections=0)) as browser:
                    while not stop.is_set():
                        try:
                            r = browser.get(url + "page")
                            results.append((r.status_code, r.text))
                        except httpx.HTTPError as exc:
                            results.append((0, repr(exc)))
                        stop.wait(0.01)

            thread = threading.Thread(target=load, daemon=True)
            thread.start()
            try:
                while not results:  # served before the update starts
                    time.sleep(0.05)
                w = update(who, w.key, quiet=True)
                n = len(results)
                while len(results) < n + 5:  # and after it ended
                    time.sleep(0.05)
            finally:
                stop.set()
                thread.join(30)
            new = {r.pod for r in records.replicas_of(Store.default(), w)}
            failed = [r for r in results if r[0] != 200]
            assert not failed, failed[:5]
            served = [pod for _, pod in results]
            assert served[0] in old and served[-1] in new, (served[0], served[-1])
            assert set(served) <= old | new
    finally:
        routes.gateway = fake
        real.stop()
        guards.close()
