"""``kubernetes``: readiness probe, extra ports, resources (CPU, memory, GPU) and scheduling of the studio's Deployment."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from codestudio import hookimpl
from codestudio.blockapi import Block, BlockParams, BlockProblem, Probe, Toleration
from codestudio.types import CpuQuantity, KubeName, LabelKey, LabelValue, MemoryQuantity, Port, ResourceName

_URL_RE = re.compile(r"^(\$\{baseUrl\})?(/[A-Za-z0-9._~!&'()*+,;=:@%/?-]*)?$")


class KubernetesParams(BlockParams):
    tcp_probe: bool = False
    readiness_url: str | None = None
    #: Port the probe targets; default: the first exposed port.
    probe_port: Port | None = None
    extra_ports: list[Port] = Field(default_factory=list)
    #: CPU request and limit of the studio's container (a Kubernetes quantity: ``500m``, ``2``).
    cpu: CpuQuantity | None = None
    #: Memory request and limit (``512Mi``, ``4Gi``); past it the kernel kills processes
    #: ("killed for memory").
    memory: MemoryQuantity | None = None
    #: GPUs (a count) of ``gpu_resource``, as the container's limit.
    gpu: int | None = Field(default=None, ge=1, le=64, strict=True)
    gpu_resource: ResourceName | None = "nvidia.com/gpu"
    #: Labels a node must have to run the studio.
    node_selector: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    service_account: KubeName | None = None

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
