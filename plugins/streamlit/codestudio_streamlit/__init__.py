"""``streamlit``: a Streamlit app served from the studio's versioned files.

The app is ``streamlit/app.py`` of the ``code_studio-versioned`` zone,
created there as a starter file with a working example, so users edit it
from the versioned files and Streamlit reruns it when a change is synced
(``runOnSave``, polling watcher). Streamlit serves the full browser path
(``server.baseUrlPath`` from ``DKU_CODE_STUDIO_BROWSER_PATH_<port>``), so
the gateway passes the request URI unchanged; readiness is Streamlit's
health endpoint. The entrypoint can be launched as a webapp.

Streamlit runs in its own environment (``/opt/codestudio/streamlit``) unless
``code_env`` names a code env defined earlier in the template, in which case
Streamlit is installed into that env (when the env is announced to this
block) and the app runs with the env's packages.
"""

from __future__ import annotations

from importlib import resources

from pydantic import Field, field_validator

from codestudio import hookimpl
from codestudio.blockapi import Block, BlockParams, Copy, Entrypoint, Run, StarterFile
from codestudio.blockhelpers import PipRequirement, browser_path_ref, ide_probe, pip_install, python_env
from codestudio.types import ContainerPath, Port, RelativePath, Slug, Zone, default_target

DEFAULT_VERSION = "1.67.0"
HOME = "/opt/codestudio/streamlit"


def _file(name: str) -> bytes:
    return resources.files(__package__).joinpath("files", name).read_bytes()


class StreamlitParams(BlockParams):
    port: Port = Field(
        default=8501,
        description="Container port Streamlit listens on; its tab is /code-studios/<project>/<studio>/<port>/.",
    )
    version: str = Field(default=DEFAULT_VERSION, description="Streamlit version from PyPI.")
    packages: list[PipRequirement] = Field(
        default_factory=list,
        description="Extra pip requirements installed with Streamlit.",
        examples=[["pandas==2.2.3", "altair"]],
    )
    code_env: Slug | None = Field(
        default=None,
        description="A code env, defined before this block, that runs the app (Streamlit is installed into it); "
        "default: Streamlit's own env at path.",
        examples=["py-ml"],
    )
    zone: Zone = Field(default="code_studio-versioned", description="The zone holding the app.")
    app: RelativePath = Field(
        default="streamlit/app.py",
        description="The app's path in the zone; a working example is written there when a studio is created.",
    )
    path: ContainerPath = Field(default=HOME, description="Streamlit's own environment (when code_env is not set).")

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        from packaging.version import InvalidVersion, Version

        try:
            Version(value)
        except InvalidVersion:
            raise ValueError(f"{value!r} is not a version number") from None
        return value

    @property
    def requirements(self) -> list[str]:
        return [f"streamlit=={self.version}", *self.packages]


class StreamlitBlock(Block):
    Params = StreamlitParams
    summary = "A Streamlit app from the studio's versioned files, launchable as a webapp"

    @hookimpl
    def contribute_dockerfile(self, block):
        p: StreamlitParams = block.params
        steps = [] if p.code_env else python_env(p.path, packages=p.requirements)
        steps += [
            Copy(content=_file("app.py"), dest=f"{HOME}/example_app.py"),
            Copy(content=_file("start.sh"), dest=f"{HOME}/start.sh", mode=0o755),
        ]
        return steps

    @hookimpl
    def contribute_stage(self, block):
        p: StreamlitParams = block.params
        # In a code env, Streamlit is installed when the env is announced: nothing to stage.
        return None if p.code_env else sorted({p.path, HOME})

    @hookimpl
    def register_code_env(self, block, code_env):
        p: StreamlitParams = block.params
        if code_env.name != p.code_env or code_env.language != "python":
            return None  # another env, or an R env (refused by validate_block)
        return [Run(script=pip_install(code_env.python, p.requirements))]

    @hookimpl
    def contribute_entrypoint(self, block, state):
        p: StreamlitParams = block.params
        if p.code_env:
            env = state.find_code_env(p.code_env)
            # A missing env is reported by validate_block; the path is a placeholder.
            python = env.python if env and env.python else f"/opt/codestudio/code-envs/{p.code_env}/bin/python"
        else:
            python = f"{p.path}/bin/python"
        return Entrypoint(
            label=p.label or "Streamlit",
            command=[
                f"{HOME}/start.sh",
                python,
                f"{default_target(p.zone)}/{p.app}",
                str(p.port),
                browser_path_ref(p.port),
            ],
            port=p.port,
            expose_html=True,
            launch_in_webapp=True,
            proxied_subpath="$request_uri",
        )

    @hookimpl
    def contribute_starter_files(self, block):
        p: StreamlitParams = block.params
        return [StarterFile(zone=p.zone, path=p.app, content=_file("app.py"))]

    @hookimpl
    def adjust_probe(self, block, probe):
        return ide_probe(probe, block.params.port, "${baseUrl}/_stcore/health")

    @hookimpl
    def validate_block(self, block, state):
        p: StreamlitParams = block.params
        if not p.code_env:
            return None
        owners = [owner for owner, env in state.code_envs if env.name == p.code_env]
        if not owners:
            known = ", ".join(env.name for _, env in state.code_envs) or "none"
            return [("code_env", f"no code env named {p.code_env!r} in the template (defined: {known})")]
        if owners[0].index > block.index:
            # The entrypoint runs that env's interpreter, whose path is only
            # known once the code env block has applied.
            return [("code_env", f"code env {p.code_env!r} ({owners[0].where}) must come before this block")]
        if state.find_code_env(p.code_env).language != "python":
            return [("code_env", f"code env {p.code_env!r} ({owners[0].where}) is an R env; Streamlit runs in a Python code env")]
        return None
