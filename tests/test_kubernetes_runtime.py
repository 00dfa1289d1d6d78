"""The Kubernetes runtime with the real official client against an API emulator on loopback.

The emulator is kmock's (extended in tests/k8s_emulator.py with resource
versions, selectors, server-side apply and 410); a stand-in kubelet moves
the created pods through their phases and posts events. No real cluster:
tests/e2e/test_kubernetes_cluster.py runs against one when
CODESTUDIO_TEST_KUBECONFIG is set.
"""

from __future__ import annotations

import copy
import threading
import time

import kmock
import pytest
import yaml

pytest.importorskip("kubernetes")

from k8s_emulator import FAILURES, EmulatorServer, StandInKubelet  # noqa: E402

from codestudio.errors import RuntimeFailure  # noqa: E402
from codestudio.runtime.base import ID_LABEL, INSTANCE_LABEL, KIND_LABEL, MANAGED_BY, PodSetSpec  # noqa: E402
from codestudio.runtime.kubernetes.client import Cluster  # noqa: E402
from codestudio.runtime.kubernetes.runtime import KubernetesRuntime  # noqa: E402
from codestudio.runtime.kubernetes.settings import RuntimeSettings  # noqa: E402

NS = "studios"
DIGEST = "registry.example.com:5000/codestudio/tiny@sha256:" + "a" * 64


@pytest.fixture
def emu():
    with EmulatorServer() as server:
        server.run(server.emulator.put, ("", "v1", "namespaces"), None, {"metadata": {"name": NS}}, create=True)
        yield server


def cluster_for(server, **kw) -> Cluster:
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = server.url
    cfg.retries = 0
    return Cluster(context=None, namespace=NS, api_client=client.ApiClient(cfg), **kw)


@pytest.fixture
def runtime(emu, tmp_path):
    lines: list[str] = []
    settings = RuntimeSettings("kubernetes", None, NS, "registry.example.com:5000", None, "in-cluster")
    rt = KubernetesRuntime(settings, data_dir=tmp_path / "data", cluster=cluster_for(emu),
                           pusher=lambda image: DIGEST, progress=lines.append, start_timeout=20)
    rt.lines = lines
    yield rt
    rt.cluster.close()


def rendered_manifest(name: str = "cs-p-s-0123456789"):
    from codestudio.render import StudioContext, kubernetes_manifest, render_template

    rendered = render_template("examples/advanced.yaml", StudioContext(project_key="P", studio_id="s"))
    docs = kubernetes_manifest(rendered.state, StudioContext(project_key="P", studio_id="s",
                                                             image="localhost/codestudio/adv:1"), "adv")
    return docs, rendered.state


def spec_for(tmp_path, name="cs-p-s-0123456789") -> PodSetSpec:
    docs, state = rendered_manifest(name)
    secret = docs[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    ref = next(e for e in secret if e["name"] == "CODESTUDIO_GUARD_SECRET")["valueFrom"]["secretKeyRef"]
    return PodSetSpec(name=name, manifest=docs, labels={KIND_LABEL: "studio", ID_LABEL: "s"},
                      secrets={ref["name"]: {ref["key"]: "guard-value-123"}}, ports=tuple(state.all_ports),
                      workdir=tmp_path / "studio")


def test_start_applies_labelled_objects_by_digest_and_reports_progress(emu, runtime, tmp_path):
    spec = spec_for(tmp_path)
    with StandInKubelet(emu, NS):
        podset = runtime.start(spec)
    assert [p.phase for p in podset.pods] == ["running"]
    # Progress lines from the pod's events, in order.
    text = "\n".join(runtime.lines)
    for word in ("applied Deployment", "scheduled:", "pulling:", "pulled:", "started"):
        assert word in text
    assert text.index("scheduled:") < text.index("pulling:") < text.index("pulled:")
    (dep,) = emu.objects("deployments", NS)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == DIGEST
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels[MANAGED_BY] == "codestudio" and labels[INSTANCE_LABEL] == runtime.instance and labels[ID_LABEL] == "s"
    sec = container["securityContext"]
    assert sec["capabilities"] == {"drop": ["ALL"]} and sec["allowPrivilegeEscalation"] is False
    assert sec["runAsNonRoot"] is True and sec["seccompProfile"] == {"type": "RuntimeDefault"}
    assert dep["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    # The guard secret is a Secret, never in the Deployment nor on disk.
    (secret,) = emu.objects("secrets", NS)
    assert secret["stringData"] == {"guard-secret": "guard-value-123"}
    assert "guard-value-123" not in yaml.safe_dump(dep)
    assert "guard-value-123" not in (runtime._workdir(spec.name) / "applied.yaml").read_text()
    # Server-side apply with the codestudio field manager, for every object.
    applies = [r for r in emu.run(lambda: list(emu.emulator["patch"])) if r.subresource != "status"]
    assert applies and all(r.params.get("fieldManager") == "codestudio" and r.params.get("force") == "true"
                           and r.headers["Content-Type"].startswith("application/apply-patch+yaml") for r in applies)
    assert {r.resource.plural for r in applies} == {"secrets", "networkpolicies", "services", "deployments"}
    # in-cluster mode: the Service's address.
    svc = emu.objects("services", NS)[0]
    assert set(podset.pods[0].endpoints) == set(spec.ports)
    assert runtime.list()[0].name == spec.name


def test_every_manifest_applied_validates_strictly_for_1_28_to_1_37(tmp_path):
    import kubernetes_validate

    from codestudio.runtime.kubernetes import manifests

    docs = manifests.prepare(spec_for(tmp_path), namespace=NS, instance="abc", image=DIGEST, pull_secret="regcred")
    for version in [f"1.{m}" for m in range(28, 38)]:
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)


def test_stop_deletes_every_object_and_waits_for_the_pod(emu, runtime, tmp_path):
    spec = spec_for(tmp_path)
    with StandInKubelet(emu, NS):
        runtime.start(spec)
        assert runtime.pods(spec.name)
        runtime.stop(spec.name, timeout=1)
        assert runtime.pods(spec.name) == []
    for plural in ("deployments", "services", "secrets", "networkpolicies", "pods"):
        assert emu.objects(plural, NS) == [], plural
    runtime.stop(spec.name)  # idempotent
    assert runtime.list() == []


WORDS = {
    "ErrImagePull": "could not be pulled",
    "ImagePullBackOff": "could not be pulled",
    "CreateContainerConfigError": 'secret "missing-secret" not found',
    "Unschedulable": "cannot be scheduled",
}


@pytest.mark.parametrize("failure", [f for f in FAILURES if f in WORDS])
def test_a_hopeless_start_fails_fast_in_words_keeps_logs_and_cleans_up(emu, runtime, tmp_path, failure):
    spec = spec_for(tmp_path)
    with StandInKubelet(emu, NS, failure=failure), pytest.raises(RuntimeFailure) as info:
        runtime.start(spec)
    message = str(info.value)
    assert "did not start within" not in message  # it failed on the reason, not on the timeout
    assert WORDS[failure] in message
    assert "logs and events kept in" in message
    (log,) = (tmp_path / "studio" / "logs").glob("*-failed-*.log")
    text = log.read_text()
    assert "runner: starting" in text and "# events" in text
    for plural in ("deployments", "services", "secrets", "networkpolicies", "pods"):
        assert emu.objects(plural, NS) == [], plural


def test_a_container_that_crashes_after_starting_is_reported_failed_in_words(emu, runtime, tmp_path):
    spec = spec_for(tmp_path)
    with StandInKubelet(emu, NS, failure="CrashLoopBackOff", delay=0.3):
        runtime.start(spec)  # its container started: the crash comes after
        failed = [e for e in runtime.events(spec.name, timeout=10) if e.kind == "failed"]
        assert failed and "keeps crashing (CrashLoopBackOff, last exit status 1)" in failed[0].reason
        (pod,) = runtime.pods(spec.name)
        assert pod.phase == "exited" and "keeps crashing" in pod.message
        assert not runtime.running(spec.name)
        target = tmp_path / "crash.log"
        assert runtime.save_logs(pod.name, target)
        assert "ImportError" in target.read_text() and "BackOff" in target.read_text()
        runtime.stop(spec.name, timeout=1)


def test_unschedulable_says_which_resource_is_missing(emu, runtime, tmp_path):
    spec = spec_for(tmp_path)
    docs = copy.deepcopy(list(spec.manifest))
    docs[0]["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "4"}, "limits": {"cpu": "4"}}
    spec = PodSetSpec(spec.name, docs, spec.labels, 1, spec.secrets, spec.ports, spec.workdir)
    with StandInKubelet(emu, NS, failure="Unschedulable"), pytest.raises(RuntimeFailure, match="no node has 4 free CPUs"):
        runtime.start(spec)


def test_a_start_that_never_starts_times_out_and_cleans_up(emu, runtime, tmp_path):
    runtime.start_timeout = 1.5
    spec = spec_for(tmp_path)
    with pytest.raises(RuntimeFailure, match="did not start within 1.5s"):
        runtime.start(spec)  # no kubelet: the pod never comes
    assert emu.objects("deployments", NS) == []


@pytest.mark.parametrize("status,words", [(403, "forbidden (403)"), (409, "conflict (409)"), (404, "not found (404)"),
                                          (503, "the API server failed (HTTP 503")])
def test_api_errors_become_clear_messages_and_nothing_is_left(emu, runtime, tmp_path, status, words):
    emu.react(("patch", kmock.resource("apps/v1/deployments")),
              kmock.KubernetesError(status, "Injected", "deployments.apps is refused for this test"))
    with pytest.raises(RuntimeFailure) as info:
        runtime.start(spec_for(tmp_path))
    assert words in str(info.value) and "apply Deployment" in str(info.value)
    assert "Authorization" not in str(info.value) and "not-a-real-token" not in str(info.value)
    assert emu.objects("secrets", NS) == [] and emu.objects("services", NS) == []


def test_a_dead_api_server_fails_within_the_timeouts(tmp_path):
    import socket

    from kubernetes import client

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    cfg = client.Configuration()
    cfg.host = f"http://127.0.0.1:{port}"
    cfg.retries = 0
    cluster = Cluster(context=None, namespace=NS, api_client=client.ApiClient(cfg), connect_timeout=1, read_timeout=1)
    rt = KubernetesRuntime(RuntimeSettings("kubernetes", None, NS, "r.example", None, "in-cluster"),
                           data_dir=tmp_path, cluster=cluster)
    with pytest.raises(RuntimeFailure, match="did not answer"):
        rt.pods("x")


def test_a_silent_api_server_times_out(tmp_path):
    import socket

    from kubernetes import client

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)  # accepts, never answers
    cfg = client.Configuration()
    cfg.host = f"http://127.0.0.1:{srv.getsockname()[1]}"
    cfg.retries = 0
    cluster = Cluster(context=None, namespace=NS, api_client=client.ApiClient(cfg), connect_timeout=1, read_timeout=1)
    try:
        with pytest.raises(RuntimeFailure, match="timed out"):
            KubernetesRuntime(RuntimeSettings("kubernetes", None, NS, "r.example", None, "in-cluster"),
                              data_dir=tmp_path, cluster=cluster).list()
    finally:
        srv.close()


def test_watch_resumes_after_410_gone_and_after_the_stream_ends(emu, tmp_path):
    from codestudio.runtime.kubernetes.watching import follow

    cluster = cluster_for(emu)
    create = cluster.core.create_namespaced_pod
    create(NS, {"metadata": {"name": "p0", "labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}})
    seen: list[tuple[str, str | None]] = []
    stop = threading.Event()

    def consume():
        for typ, obj in follow(cluster, cluster.core.list_namespaced_pod, NS, label_selector="a=b", doing="watch pods",
                               deadline=time.monotonic() + 15, stop=stop, chunk=2):
            seen.append((typ, obj["metadata"]["name"] if obj else None))
            if obj and obj["metadata"]["name"] == "p3":
                return

    t = threading.Thread(target=consume)
    t.start()

    def wait_for(name):
        deadline = time.monotonic() + 10
        while not any(n == name for _, n in seen):
            assert time.monotonic() < deadline, seen
            time.sleep(0.02)

    wait_for("p0")
    create(NS, {"metadata": {"name": "p1", "labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}})
    wait_for("p1")
    emu.run(emu.emulator.end_watches)  # the server ends the stream: resumed from the last version
    create(NS, {"metadata": {"name": "p2", "labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}})
    wait_for("p2")
    emu.run(emu.emulator.compact)  # the version is gone: the next watch gets 410, a fresh list follows
    emu.run(emu.emulator.end_watches)
    create(NS, {"metadata": {"name": "p3", "labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}})
    t.join(15)
    assert not t.is_alive()
    assert ("SYNC", "p0") in seen and ("ADDED", "p1") in seen and ("ADDED", "p2") in seen
    assert ("RELIST", None) in seen
    after = seen[seen.index(("RELIST", None)):]
    assert ("SYNC", "p0") in after  # a fresh list after 410, not a guess
    assert [n for _, n in seen].count("p2") <= 2  # once watched, once in the fresh list


def test_list_finds_what_a_crashed_engine_left_by_label(emu, runtime, tmp_path):
    spec = spec_for(tmp_path)
    with StandInKubelet(emu, NS):
        runtime.start(spec)
        # Another engine instance's objects are not ours.
        other = KubernetesRuntime(runtime.settings, data_dir=tmp_path / "other", cluster=runtime.cluster,
                                  pusher=lambda i: DIGEST, progress=lambda m: None)
        assert other.list() == []
        fresh = KubernetesRuntime(runtime.settings, data_dir=tmp_path / "data", cluster=runtime.cluster)
        (found,) = fresh.list()
        assert found.name == spec.name and found.running
        fresh.stop(spec.name, timeout=1)
    assert runtime.list() == []


def test_a_container_killed_for_memory_says_so():
    """OOMKilled is reported as killed for memory with the limit (docs/lifecycle.md), not a bare exit status."""
    from codestudio.runtime.kubernetes.events import from_pod, waiting_words

    pod = {"metadata": {"name": "p"},
           "spec": {"containers": [{"image": "x", "resources": {"limits": {"memory": "64Mi"}}}]},
           "status": {"phase": "Failed", "containerStatuses": [
               {"state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}}
    event = from_pod(pod)
    assert event.kind == "failed" and event.reason.startswith("killed for memory (memory limit 64Mi)")
    pod["status"]["containerStatuses"][0]["lastState"] = pod["status"]["containerStatuses"][0].pop("state")
    assert "killed for memory (memory limit 64Mi)" in waiting_words("CrashLoopBackOff", "", pod)


@pytest.mark.parametrize("status,words", [(403, "forbidden (403)"), (500, "the API server failed (HTTP 500")])
def test_a_watch_the_api_refuses_fails_the_start_clearly_and_cleans_up(emu, runtime, tmp_path, status, words):
    emu.react(("watch", kmock.resource("v1/events")), kmock.KubernetesError(status, "Injected", "events are refused"))
    with StandInKubelet(emu, NS), pytest.raises(RuntimeFailure) as info:
        runtime.start(spec_for(tmp_path))
    assert words in str(info.value) and "watch events of" in str(info.value)
    for plural in ("deployments", "services", "secrets", "networkpolicies"):
        assert emu.objects(plural, NS) == [], plural


def test_doctor_finds_and_removes_what_a_crashed_engine_left(emu, runtime, tmp_path, monkeypatch):
    """Reconciliation by label: a pod set no studio record knows is an orphan; --fix removes it."""
    from codestudio import access
    from codestudio.runtime.current import use_runtime
    from codestudio.runtime.doctor import doctor

    monkeypatch.setattr(access, "os_user", lambda: "alice")
    monkeypatch.setattr(access, "os_groups", lambda user: set())
    spec = spec_for(tmp_path)
    with StandInKubelet(emu, NS), use_runtime(runtime):
        runtime.start(spec)
        who = access.Identity("alice", True, "alice")
        findings = doctor(who, fix=False)
        assert any(spec.name in f"{f.subject} {f.detail}" for f in findings), findings
        doctor(who, fix=True)
        assert runtime.list() == []
    assert emu.objects("deployments", NS) == [] and emu.objects("pods", NS) == []


def test_wait_rollout_returns_when_the_deployment_is_available_and_says_why_not(emu, runtime, tmp_path):
    spec = spec_for(tmp_path)
    with StandInKubelet(emu, NS):
        runtime.start(spec)
        runtime.wait_rollout(spec.name, timeout=10)
        assert any("rollout of" in line and "complete (1/1 available)" in line for line in runtime.lines)
        runtime.stop(spec.name, timeout=1)
    with StandInKubelet(emu, NS, failure="NeverReady"):
        runtime.start(spec)
        with pytest.raises(RuntimeFailure, match="did not complete within 0.5s .0/1 available"):
            runtime.wait_rollout(spec.name, timeout=0.5)
        runtime.stop(spec.name, timeout=1)


def _with_service_account(spec: PodSetSpec, name: str) -> PodSetSpec:
    import copy
    import dataclasses

    docs = copy.deepcopy(list(spec.manifest))
    for doc in docs:
        if doc["kind"] == "Deployment":
            doc["spec"]["template"]["spec"]["serviceAccountName"] = name
    return dataclasses.replace(spec, manifest=docs)


def test_the_engines_own_service_account_is_refused_before_anything_is_applied(emu, runtime, tmp_path, monkeypatch):
    import base64
    import json

    from codestudio.errors import UsageError
    from codestudio.runtime.kubernetes import manifests

    pushed = []
    runtime._push = lambda image: pushed.append(image) or DIGEST
    with pytest.raises(UsageError) as info:
        runtime.start(_with_service_account(spec_for(tmp_path), "codestudio-engine"))
    assert info.value.exit_code == 2 and "'service_account'" in str(info.value) and "codestudio-engine" in str(info.value)
    assert pushed == [] and emu.objects("deployments", NS) == [] and emu.objects("secrets", NS) == []
    # The account the engine really runs as (its in-cluster token's subject), and a named one, are refused too.
    claims = base64.urlsafe_b64encode(json.dumps({"sub": f"system:serviceaccount:{NS}:ops-engine"}).encode())
    token = tmp_path / "token"
    token.write_text(f"e30.{claims.decode().rstrip('=')}.sig")
    spec = _with_service_account(spec_for(tmp_path), "ops-engine")
    with pytest.raises(UsageError, match="'service_account' is 'ops-engine'"):
        manifests.check_service_account(spec, NS, token_path=str(token))
    manifests.check_service_account(spec, "elsewhere", token_path=str(token))  # another namespace's: not ours
    monkeypatch.setenv(manifests.ENGINE_SERVICE_ACCOUNT_ENV, "ops-engine")
    with pytest.raises(UsageError, match="ops-engine"):
        manifests.check_service_account(spec, NS, token_path=str(tmp_path / "none"))
    manifests.check_service_account(_with_service_account(spec, "studio-runner"), NS, token_path=str(token))
