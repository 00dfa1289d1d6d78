"""The local runtime's podman-free parts: what it plays for a PodSetSpec (labels, names, secrets)."""

from __future__ import annotations

import pytest

from codestudio import containers
from codestudio.errors import RuntimeFailure
from codestudio.runtime import local
from codestudio.runtime.base import INSTANCE_LABEL, MANAGED_BY, Runtime


def _manifest():
    return [
        {"kind": "Deployment", "metadata": {"name": "cs-p-s-x", "labels": {"a": "b"}},
         "spec": {"replicas": 1, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{
             "name": "studio",
             "env": [{"name": "CODESTUDIO_GUARD_SECRET", "valueFrom": {"secretKeyRef": {"name": "cs-p-s-x-guard", "key": "guard-secret"}}},
                     {"name": "PLAIN", "value": "1"}],
             "ports": [{"name": "p8080", "containerPort": 61000}]}]}}}},
        {"kind": "Service", "metadata": {"name": "cs-p-s-x"}},
    ]


def test_replicas_labels_and_secret_values_are_put_in_place():
    labels = {MANAGED_BY: "codestudio", INSTANCE_LABEL: "abc", local.PODSET_LABEL: "cs-p-s-x", "codestudio.io/studio": "s"}
    docs = local.relabel(_manifest(), local.replica_name("cs-p-s-x", 2), labels, {"cs-p-s-x-guard": {"guard-secret": "s3cret"}})
    deployment = docs[0]
    assert deployment["metadata"]["name"] == "cs-p-s-x-r2" and local.replica_name("cs-p-s-x", 0) == "cs-p-s-x"
    assert deployment["spec"]["template"]["metadata"]["labels"][INSTANCE_LABEL] == "abc"
    assert deployment["metadata"]["labels"]["a"] == "b"
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0] == {"name": "CODESTUDIO_GUARD_SECRET", "value": "s3cret"}
    adapted = local.adapt_for_podman(docs, {8080: 45001})
    port = adapted[0]["spec"]["template"]["spec"]["containers"][0]["ports"][0]
    assert (port["hostPort"], port["hostIP"]) == (45001, "127.0.0.1")


def test_a_missing_secret_value_is_refused_naming_it():
    with pytest.raises(RuntimeFailure, match="no value for secret cs-p-s-x-guard/guard-secret"):
        local.relabel(_manifest(), "cs-p-s-x", {}, {})


def test_the_local_runtime_implements_the_interface(tmp_path):
    rt = local.LocalRuntime(tmp_path)
    assert isinstance(rt, Runtime) and rt.name == "local"
    assert rt.instance == local.instance_id(tmp_path) != local.instance_id(tmp_path / "other")
    assert not getattr(local.LocalRuntime, "__abstractmethods__", set())


def _spec(name: str):
    from codestudio.runtime.base import PodSetSpec

    manifest = _manifest()
    manifest[0]["metadata"]["name"] = name
    return PodSetSpec(name=name, manifest=manifest, labels={"codestudio.io/studio": name}, replicas=1, ports=(8080,),
                      secrets={"cs-p-s-x-guard": {"guard-secret": "s3cret"}})


def test_concurrent_starts_play_at_the_same_time_on_distinct_ports(tmp_path, monkeypatch):
    """Ports are reserved under the data dir's lock, but no start waits for another's ``kube play``.

    Every fake play waits until all of them are in flight: with the lock held
    across the play (as before) the second start could never get there.
    """
    import threading

    import yaml

    count = 6
    in_flight = threading.Barrier(count, timeout=60)
    played: dict[str, int] = {}

    def play(manifest_path, *, docs=None, timeout=300):
        [deployment] = [d for d in yaml.safe_load_all(manifest_path.read_text()) if d["kind"] == "Deployment"]
        played[deployment["metadata"]["name"]] = deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["hostPort"]
        in_flight.wait()

    monkeypatch.setattr(local.runtime, "play", play)  # where LocalRuntime looks it up
    rt = local.LocalRuntime(tmp_path)
    results, errors = {}, []

    def start(i):
        try:
            results[i] = rt.start(_spec(f"cs-p-s{i}-x"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ports = [ps.pods[0].endpoints[8080].port for ps in results.values()]
    assert len(set(ports)) == count and sorted(ports) == sorted(played.values())
    # Each reservation stays on disk, so later starts avoid these ports until the pod set stops.
    assert rt._reserved_ports() == set(ports)


def test_stop_gives_the_runner_its_grace_then_removes_the_pod(tmp_path, monkeypatch):
    """``rm --force --time GRACE``: SIGTERM first, SIGKILL only after the grace (never ``pod rm -f``
    or ``kube down``, which kill at once on podman 4.3)."""
    import subprocess

    from codestudio.runtime.base import Pod

    calls = []

    def podman(*args, check=True, timeout=None):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(containers, "podman", podman)
    rt = local.LocalRuntime(tmp_path)
    monkeypatch.setattr(rt, "pods", lambda name: [Pod(local.pod_name(name), "running", {})])
    rt.stop("cs-p-s-x", timeout=7)
    assert calls == [("rm", "--ignore", "--force", "--time", "7", "cs-p-s-x-pod-0-studio")]


def _adapted(**container):
    labels = {MANAGED_BY: "codestudio", INSTANCE_LABEL: "abc", local.PODSET_LABEL: "cs-p-s-x"}
    manifest = _manifest()
    c = manifest[0]["spec"]["template"]["spec"]["containers"][0]
    c.update(image="localhost/codestudio/t:latest",
             securityContext={"runAsUser": 1000, "runAsGroup": 1000, "allowPrivilegeEscalation": False,
                              "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
             **container)
    c["env"] += [{"name": n, "valueFrom": {"fieldRef": {"fieldPath": p}}}
                 for n, p in (("K8S_NODE_NAME", "spec.nodeName"), ("K8S_POD_NAME", "metadata.name"),
                              ("K8S_POD_NAMESPACE", "metadata.namespace"), ("K8S_POD_ID", "metadata.uid"))]
    docs = local.relabel(manifest, "cs-p-s-x-r1", labels, {"cs-p-s-x-guard": {"guard-secret": "s3cret"}})
    return local.adapt_for_podman(docs, {8080: 45001}, node_name="host1", pod_uid="uid-1")


def test_the_pod_runs_as_one_container_with_what_kube_play_derived(tmp_path):
    docs = _adapted(resources={"limits": {"cpu": "500m", "memory": "64Mi"}}, command=["/bin/run", "a b"], args=["--x"],
                    workingDir="/w")
    args = local.run_args(docs, env_file=tmp_path / "env")
    pairs = {(a, b) for a, b in zip(args, args[1:], strict=False)}
    assert args[:2] == ["run", "--detach"]
    assert {("--name", "cs-p-s-x-r1-pod-0-studio"), ("--hostname", "cs-p-s-x-r1-pod-0"), ("--network", local.NETWORK),
            ("--user", "1000:1000"), ("--cap-drop", "ALL"), ("--security-opt", "no-new-privileges"),
            ("--memory", str(64 * 2**20)), ("--cpus", "0.5"), ("--publish", "127.0.0.1:45001:61000/tcp"),
            ("--workdir", "/w"), ("--restart", "always"), ("--entrypoint", '["/bin/run", "a b"]'), ("--env-file", str(tmp_path / "env")),
            ("--label", f"{INSTANCE_LABEL}=abc"), ("--label", f"{local.PODSET_LABEL}=cs-p-s-x")} <= pairs
    assert args[-2:] == ["localhost/codestudio/t:latest", "--x"]
    assert not any("s3cret" in a for a in args), "the guard secret must never be on a command line"
    env = local.env_file_text(docs).splitlines()
    assert "CODESTUDIO_GUARD_SECRET=s3cret" in env and "PLAIN=1" in env
    # The downward API as kube play resolved it: the pod's name, a uid, the node and namespace.
    assert {"K8S_POD_NAME=cs-p-s-x-r1-pod-0", "K8S_POD_ID=uid-1", "K8S_NODE_NAME=host1", "K8S_POD_NAMESPACE=default"} <= set(env)


def test_a_value_an_env_file_cannot_hold_is_refused():
    docs = _adapted()
    docs[0]["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "BAD", "value": "a\nEVIL=1"})
    with pytest.raises(RuntimeFailure, match="'BAD'"):
        local.env_file_text(docs)


def test_play_passes_env_through_a_private_file_it_removes(tmp_path, monkeypatch):
    import stat
    import subprocess

    import yaml

    seen = {}

    def podman(*args, check=True, timeout=None):
        env_file = args[args.index("--env-file") + 1]
        seen["mode"] = stat.S_IMODE(__import__("os").stat(env_file).st_mode)
        seen["text"] = open(env_file).read()
        seen["args"] = args
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(containers, "podman", podman)
    monkeypatch.setattr(containers, "require_tools", lambda *names: None)
    manifest = tmp_path / "cs-p-s-x-r1.yaml"
    manifest.write_text(yaml.safe_dump_all(_adapted()))
    local.play(manifest)
    assert seen["mode"] == 0o600 and "CODESTUDIO_GUARD_SECRET=s3cret" in seen["text"]
    assert not manifest.with_suffix(".env").exists()
    assert not any("s3cret" in a for a in seen["args"])


def test_a_pod_set_without_its_folder_has_no_pods_and_costs_no_podman_call(tmp_path, monkeypatch):
    """Every start of a stopped studio asks for its pods first: that answer needs no podman."""
    import subprocess

    calls = []

    def podman(*args, check=True, timeout=None):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, "[]", "")

    monkeypatch.setattr(containers, "podman", podman)
    rt = local.LocalRuntime(tmp_path)
    assert rt.pods("cs-p-s-x") == [] and calls == []
    rt._workdir("cs-p-s-x").mkdir(parents=True)  # made by start() before its first pod runs
    assert rt.pods("cs-p-s-x") == [] and [c[0] for c in calls] == ["ps"]
