"""The local runtime's podman-free parts: what it plays for a PodSetSpec (labels, names, secrets)."""

from __future__ import annotations

import pytest

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
    docs = local._relabel(_manifest(), local.replica_name("cs-p-s-x", 2), labels, {"cs-p-s-x-guard": {"guard-secret": "s3cret"}})
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
        local._relabel(_manifest(), "cs-p-s-x", {}, {})


def test_the_local_runtime_implements_the_interface(tmp_path):
    rt = local.LocalRuntime(tmp_path)
    assert isinstance(rt, Runtime) and rt.name == "local"
    assert rt.instance == local.instance_id(tmp_path) != local.instance_id(tmp_path / "other")
    assert not getattr(local.LocalRuntime, "__abstractmethods__", set())
