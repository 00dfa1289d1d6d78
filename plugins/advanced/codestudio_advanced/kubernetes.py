"""``kubernetes``: readiness probe and extra ports of the studio's Deployment."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from codestudio import hookimpl
from codestudio.blockapi import Block, BlockParams, BlockProblem, Probe
from codestudio.types import Port

_URL_RE = re.compile(r"^(\$\{baseUrl\})?(/[A-Za-z0-9._~!&'()*+,;=:@%/?-]*)?$")


class KubernetesParams(BlockParams):
    tcp_probe: bool = False
    readiness_url: str | None = None
    #: Port the probe targets; default: the first exposed port.
    probe_port: Port | None = None
    extra_ports: list[Port] = Field(default_factory=list)

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
    port it needs ``probe_port``."""

    Params = KubernetesParams
    summary = "Readiness probe and extra ports for the studio"

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
