"""``entrypoint``: a process the runner starts, optionally exposed through the gateway."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from codestudio import hookimpl
from codestudio.blockapi import Block, BlockParams, Entrypoint
from codestudio.types import ContainerPath, EnvName, Label, Port, ProxiedSubpath, Text


class EntrypointParams(BlockParams):
    label: Label
    command: list[Text] | Text
    port: Port | None = None
    expose_html: bool | None = None
    launch_in_webapp: bool = False
    proxied_subpath: ProxiedSubpath = "/"
    env: dict[EnvName, Text] = Field(default_factory=dict)
    cwd: ContainerPath | None = None

    @field_validator("command")
    @classmethod
    def _not_empty(cls, value):
        if not value or (isinstance(value, list) and not value[0]):
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _expose_needs_port(self):
        if self.expose_html and self.port is None:
            raise ValueError("expose_html needs a port")
        return self


class EntrypointBlock(Block):
    """A string command runs through ``/bin/sh -c``; a list is run as is (argv)."""

    Params = EntrypointParams
    summary = "Start a process in the studio, optionally served by the gateway"

    @hookimpl
    def contribute_entrypoint(self, block, state):
        p: EntrypointParams = block.params
        command = p.command if isinstance(p.command, list) else ["/bin/sh", "-c", p.command]
        return Entrypoint(
            label=p.label,
            command=command,
            port=p.port,
            expose_html=p.port is not None if p.expose_html is None else p.expose_html,
            launch_in_webapp=p.launch_in_webapp,
            proxied_subpath=p.proxied_subpath,
            env=p.env,
            cwd=p.cwd,
        )
