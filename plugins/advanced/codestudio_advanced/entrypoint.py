"""``entrypoint``: a process the runner starts, optionally exposed through the gateway."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from codestudio import hookimpl
from codestudio.blockapi import Block, BlockParams, Entrypoint
from codestudio.types import ContainerPath, EnvName, Label, Port, ProxiedSubpath, Text


class EntrypointParams(BlockParams):
    label: Label = Field(description="Name of the entrypoint: its tab's name when its port is exposed.",
                         examples=["My API"])
    command: list[Text] | Text = Field(
        description="What to start: a list runs as is (argv), a text runs with /bin/sh -c. "
        "${NAME} in a list item is expanded from the entrypoint's environment ($${NAME}: a literal).",
        examples=[["/opt/myapi/run.sh", "--port", "8081"], "python3 -m http.server 8081"],
    )
    port: Port | None = Field(
        default=None,
        description="Container port the process listens on (1-65535, unique in the template), served at "
        "/code-studios/<project>/<studio>/<port>/; none: not served.",
        examples=[8081],
    )
    expose_html: bool | None = Field(
        default=None,
        description="Show the port as a tab; false: served, but reachable by its URL only. "
        "Default: true when a port is set.",
    )
    launch_in_webapp: bool = Field(
        default=False, description="Also start it when the image runs as a webapp (only such entrypoints start there)."
    )
    proxied_subpath: ProxiedSubpath = Field(
        default="/",
        description="/: the gateway strips /code-studios/<project>/<studio>/<port> before the request reaches "
        "the server; $request_uri: the full path is passed and the server must serve under "
        "DKU_CODE_STUDIO_BROWSER_PATH_<port>.",
        examples=["/", "$request_uri"],
    )
    env: dict[EnvName, Text] = Field(
        default_factory=dict,
        description="Environment variables of this process, over the container's and the other blocks'.",
        examples=[{"LOG_LEVEL": "info"}],
    )
    cwd: ContainerPath | None = Field(
        default=None,
        description="Working directory (an absolute path); default: the workspace, else the home directory.",
        examples=["/home/codestudio/workspace"],
    )

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
