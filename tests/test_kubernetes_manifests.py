"""Every manifest the Kubernetes runtime applies validates against the official schema, strictly, for 1.28-1.37.

Both what ``codestudio render`` writes (kubernetes.yaml) and what the
runtime makes of it (:func:`codestudio.runtime.kubernetes.manifests.prepare`:
names, labels, the guard Secret, the digest, pull secret) for every example
template and for held-out templates that use every field of the
``kubernetes`` block.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from codestudio.render import StudioContext, kubernetes_manifest, render_template
from codestudio.runtime.base import ID_LABEL, KIND_LABEL, OWNER_LABEL, PROJECT_LABEL, PodSetSpec

kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
VERSIONS = [f"1.{minor}" for minor in range(28, 38)]
DIGEST = "registry.example.com:5000/codestudio/t@sha256:" + "b" * 64

HELD_OUT = {
    "everything": """
id: held-out-everything
blocks:
  - {type: entrypoint, label: api, command: [api], port: 8081, expose_html: true}
  - {type: entrypoint, label: hidden, command: [worker], port: 9000}
  - type: kubernetes
    readiness_url: "${baseUrl}/health"
    extra_ports: [9090]
    cpu: 1500m
    memory: 6Gi
    gpu: 2
    gpu_resource: amd.com/gpu
    node_selector: {kubernetes.io/arch: amd64, example.com/pool: gpu-a}
    tolerations:
      - {key: amd.com/gpu, operator: Exists, effect: NoSchedule}
      - {key: dedicated, value: studios, effect: NoExecute, toleration_seconds: 0}
      - {operator: Exists}
    service_account: studio-runner
""",
    "no-ports": """
id: held-out-no-ports
blocks:
  - {type: dockerfile, statements: "RUN true"}
""",
    "tcp-probe": """
id: held-out-tcp
blocks:
  - {type: entrypoint, label: api, command: [api], port: 8081, proxied_subpath: /}
  - {type: kubernetes, tcp_probe: true, gpu: 1}
""",
}


def _cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("held-out")
    out = list(EXAMPLES)
    for name, text in HELD_OUT.items():
        (folder / f"{name}.yaml").write_text(text)
        out.append(folder / f"{name}.yaml")
    return out


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return _cases(tmp_path_factory)


def test_there_are_examples():
    assert len(EXAMPLES) >= 3


def _validate_all(docs):
    for version in VERSIONS:
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)


def test_rendered_and_applied_manifests_validate_for_every_version(cases):
    from codestudio.runtime.kubernetes import manifests

    for path in cases:
        ctx = StudioContext(project_key="DKU_P1", studio_id="my-studio", owner="alice", image="localhost/codestudio/x:1")
        rendered = render_template(path, ctx)
        docs = kubernetes_manifest(rendered.state, ctx, rendered.template.id)
        _validate_all(docs)
        spec = PodSetSpec(name="cs-dku-p1-my-studio-0123456789", manifest=docs,
                          labels={KIND_LABEL: "studio", ID_LABEL: "my-studio", PROJECT_LABEL: "DKU_P1", OWNER_LABEL: "alice"},
                          secrets={"cs-dku-p1-my-studio-0123456789-guard": {"guard-secret": "s3cret"}},
                          ports=tuple(rendered.state.all_ports))
        applied = manifests.prepare(spec, namespace="studios", instance="0123abcd", image=DIGEST, pull_secret="regcred")
        _validate_all(applied)
        pod = next(d for d in applied if d["kind"] == "Deployment")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, path
        assert all(c["securityContext"]["capabilities"] == {"drop": ["ALL"]} for c in pod["containers"]), path
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]
