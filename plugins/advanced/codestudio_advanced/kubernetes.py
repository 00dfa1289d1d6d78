"""``kubernetes``: readiness probe, extra ports, resources (CPU, memory, GPU) and scheduling of the studio's Deployment."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from codestudio import hookimpl
from codestudio.blockapi import Block, BlockParams, BlockProblem, Probe, Toleration
from codestudio.types import CpuQuantity, KubeName, LabelKey, LabelValue, MemoryQuantity, Port, ResourceName

_URL_RE = re.compile(r"^(\$\{baseUrl\})?(/[A-Za-z0-9._~!&'()*+,;=:@%/?-]*)?$")


class KubernetesParams(BlockParams):
    tcp_probe: bool = Field(
        default=False,
        description="Readiness is a TCP connection to the probe port (readiness_url wins when both are set).",
    )
    readiness_url: str | None = Field(
        default=None,
        description="HTTP readiness probe: a path, where ${baseUrl} is the probe port's browser path.",
        examples=["${baseUrl}/api/status"],
    )
    probe_port: Port | None = Field(
        default=None,
        description="Port the probe targets; default: the first exposed port of the blocks before this one.",
        examples=[8081],
    )
    extra_ports: list[Port] = Field(
        default_factory=list,
        description="More container ports (of processes started otherwise), served by the gateway at "
        "/code-studios/<project>/<studio>/<port>/ like entrypoint ports, without a tab.",
        examples=[[9090]],
    )
    cpu: CpuQuantity | None = Field(
        default=None,
        description="CPU request and limit of the studio's container, a Kubernetes quantity; "
        "the local runtime enforces it too.",
        examples=["500m", "2"],
    )
    memory: MemoryQuantity | None = Field(
        default=None,
        description="Memory request and limit, a Kubernetes quantity; a process past it is killed "
        "(\"killed for memory\").",
        examples=["512Mi", "4Gi"],
    )
    gpu: int | None = Field(
        default=None,
        ge=1,
        le=64,
        strict=True,
        description="Number of GPUs (1-64), the container's limit of gpu_resource (Kubernetes runtime).",
        examples=[1],
    )
    gpu_resource: ResourceName | None = Field(
        default="nvidia.com/gpu",
        description="The extended resource counted by gpu (vendor-domain/name).",
        examples=["amd.com/gpu"],
    )
    node_selector: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        description="Labels a node must have to run the studio (Kubernetes runtime).",
        examples=[{"kubernetes.io/arch": "amd64", "gpu-type": "a100"}],
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Taints of nodes the studio's pod may run on (Kubernetes runtime)."
    )
    service_account: KubeName | None = Field(
        default=None,
        description="The pod's Kubernetes service account; none: the pod gets no API token.",
        examples=["studio-runner"],
    )

    @field_validator("gpu_resource")
    @classmethod
    def _gpu_resource(cls, value, info):
        if value is None and info.data.get("gpu") is not None:
            raise ValueError("a GPU count needs a GPU resource name (e.g. nvidia.com/gpu)")
        return value

    @field_validator("readiness_url")
    @classmethod
    def _url(cls, value):
        if value is not None and (not value or not _URL_RE.match(value)):
            raise ValueError("must be a path, optionally starting with ${baseUrl} (e.g. ${baseUrl}/api/status)")
        return value


class KubernetesBlock(Block):
    """Sets the probe and extra ports. Its probe replaces any earlier one and
    IDE blocks only set a probe when none is set yet, so it wins wherever it
    sits; ``readiness_url`` wins over ``tcp_probe``. Before any block with a
    port it needs ``probe_port``. ``cpu`` and ``memory`` are both request and
    limit; a later ``kubernetes`` block's value replaces an earlier one."""

    Params = KubernetesParams
    summary = "Readiness probe, extra ports, CPU, memory, GPUs and scheduling for the studio"

    @hookimpl
    def contribute_ports(self, block, state):
        return list(block.params.extra_ports)

    @hookimpl
    def adjust_probe(self, block, state, probe):
        p: KubernetesParams = block.params
        if p.readiness_url is None and not p.tcp_probe:
            return None
        port = p.probe_port or (state.exposed_ports or state.all_ports or [None])[0]
        if port is None:
            field = "readiness_url" if p.readiness_url else "tcp_probe"
            raise BlockProblem(field, "there is no port to probe: add an entrypoint with a port, or probe_port")
        if p.readiness_url is not None:
            return Probe(kind="http", port=port, url=p.readiness_url)
        return Probe(kind="tcp", port=port)

    @hookimpl
    def adjust_pod(self, block, state, pod):
        p: KubernetesParams = block.params
        update = {k: v for k, v in (("cpu", p.cpu), ("memory", p.memory), ("service_account", p.service_account))
                  if v is not None}
        if p.gpu is not None:
            update.update(gpu=p.gpu, gpu_resource=p.gpu_resource)
        if p.node_selector:
            update["node_selector"] = {**pod.node_selector, **p.node_selector}
        if p.tolerations:
            update["tolerations"] = (*pod.tolerations, *p.tolerations)
        return pod.model_copy(update=update) if update else None
