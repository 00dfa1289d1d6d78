"""``jupyterlab``: JupyterLab served under the studio's path prefix.

JupyterLab lives in its own virtual environment (default
``/opt/codestudio/jupyterlab``), in this block's layer group, so that code
envs never share its packages and changing a code env placed after it does
not reinstall it. It serves the full browser path itself
(``--ServerApp.base_url`` from ``DKU_CODE_STUDIO_BROWSER_PATH_<port>``), so
the gateway passes the request URI unchanged (``proxied_subpath:
$request_uri``); that keeps JupyterLab's absolute URLs, cookies (scoped to
the base URL) and websockets right without any rewriting.

Authentication is the gateway's job: JupyterLab runs without token or
password, bound to all interfaces of the container.

Every code env becomes a kernel: ``ipykernel`` is installed into it and a
kernelspec is written to ``<jupyterlab env>/share/jupyter/kernels/<name>/``,
which JupyterLab reads from its own prefix.
"""

from __future__ import annotations

import json

from pydantic import Field, field_validator

from codestudio import hookimpl
from codestudio.blockapi import Block, BlockParams, Copy, Entrypoint, Run
from codestudio.blockhelpers import PipRequirement, browser_path_ref, ide_probe, pip_install, python_env
from codestudio.types import WORKSPACE, ContainerPath, Port

DEFAULT_VERSION = "4.6.6"


def _version(value: str) -> str:
    from packaging.version import InvalidVersion, Version

    try:
        Version(value)
    except InvalidVersion:
        raise ValueError(f"{value!r} is not a version number") from None
    return value


class JupyterLabParams(BlockParams):
    port: Port = Field(
        default=8888,
        description="Container port JupyterLab listens on; its tab is /code-studios/<project>/<studio>/<port>/.",
    )
    version: str = Field(default=DEFAULT_VERSION, description="JupyterLab version installed from PyPI.")
    packages: list[PipRequirement] = Field(
        default_factory=list,
        description="Extra pip requirements for JupyterLab's own environment (extensions, server plugins).",
        examples=[["jupyterlab-git", "jupyter-resource-usage>=1"]],
    )
    path: ContainerPath = Field(
        default="/opt/codestudio/jupyterlab", description="JupyterLab's own environment in the image (not a code env)."
    )
    root_dir: ContainerPath = Field(default=WORKSPACE, description="The folder JupyterLab's file browser opens.")

    _check_version = field_validator("version")(lambda cls, v: _version(v))


PAGE_CONFIG = json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}, indent=1) + "\n"


def kernel_spec(code_env) -> str:
    """The kernel.json of a code env: its own interpreter runs ipykernel; an R env runs
    IRkernel (from Debian) with the env's library first on R's library paths."""
    if code_env.language == "r":
        spec = {
            "argv": [code_env.r, "--no-echo", "--no-restore", "-e", "IRkernel::main()", "--args", "{connection_file}"],
            "display_name": code_env.label,
            "language": "R",
            "env": {"R_LIBS": code_env.library},
            "metadata": {"codestudio": {"code_env": code_env.name, "path": code_env.path}},
        }
        return json.dumps(spec, indent=1, sort_keys=True) + "\n"
    spec = {
        "argv": [code_env.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": code_env.label,
        "language": "python",
        "metadata": {"debugger": True, "codestudio": {"code_env": code_env.name, "path": code_env.path}},
    }
    return json.dumps(spec, indent=1, sort_keys=True) + "\n"


def _epoch(value) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def jupyter_activity(status: tuple[int, bytes], kernels: tuple[int, bytes]):
    """An :class:`~codestudio.blockapi.Activity` from Jupyter Server's ``/api/status`` and ``/api/kernels`` answers.

    Busy kernels are activity now; otherwise the server's own ``last_activity``
    (kernel messages, terminals, API use) and each kernel's.
    """
    from codestudio.blockapi import Activity

    times: list[float] = []
    busy = 0
    if status[0] == 200:
        doc = json.loads(status[1])
        if isinstance(doc, dict) and doc.get("last_activity"):
            times += [t for t in [_epoch(doc["last_activity"])] if t is not None]
    if kernels[0] == 200:
        listed = json.loads(kernels[1])
        for kernel in listed if isinstance(listed, list) else []:
            if not isinstance(kernel, dict):
                continue
            if kernel.get("execution_state") == "busy":
                busy += 1
            if kernel.get("last_activity"):
                times += [t for t in [_epoch(kernel["last_activity"])] if t is not None]
    if busy:
        return Activity(busy=True, detail=f"{busy} kernel{'s' if busy > 1 else ''} busy")
    if times:
        return Activity(at=max(times), detail="Jupyter Server last_activity")
    return None


class JupyterLabBlock(Block):
    Params = JupyterLabParams
    summary = "JupyterLab (own environment), every code env as a kernel"

    @hookimpl
    def contribute_dockerfile(self, block):
        p: JupyterLabParams = block.params
        return [
            *python_env(p.path, packages=[f"jupyterlab=={p.version}", *p.packages]),
            # Studios often run where the internet is closed: no news pop-up
            # asking users to fetch Jupyter's announcements feed.
            Copy(content=PAGE_CONFIG, dest=f"{p.path}/etc/jupyter/labconfig/page_config.json"),
        ]

    @hookimpl
    def contribute_stage(self, block):
        # Its own env only: it can build in parallel with other such blocks.
        return [block.params.path]

    @hookimpl
    def contribute_entrypoint(self, block):
        p: JupyterLabParams = block.params
        return Entrypoint(
            label=p.label or "JupyterLab",
            command=[
                f"{p.path}/bin/jupyter",
                "lab",
                "--no-browser",
                "--ip=0.0.0.0",
                f"--port={p.port}",
                # Serve under the full browser path: the gateway does not strip it.
                f"--ServerApp.base_url={browser_path_ref(p.port)}/",
                f"--ServerApp.root_dir={p.root_dir}",
                # The gateway authenticates the studio's owner.
                "--IdentityProvider.token=",
                "--ServerApp.password=",
                # Requests arrive through the gateway with its Host/Origin.
                "--ServerApp.allow_remote_access=True",
                "--ServerApp.allow_origin=*",
                "--ServerApp.trust_xheaders=True",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            ],
            port=p.port,
            expose_html=True,
            proxied_subpath="$request_uri",
            cwd=p.root_dir,
        )

    @hookimpl
    def adjust_probe(self, block, probe):
        # /api answers without authentication and only once the server is up.
        return ide_probe(probe, block.params.port, "${baseUrl}/api")

    @hookimpl
    def adjust_pod(self, block, pod):
        # An estimate of the memory the server and one kernel take at start (a memory limit below it is refused at start).
        return pod.with_memory_needed(block.params.label or "JupyterLab", "256Mi")

    @hookimpl
    def report_activity(self, block, studio):
        # /api/status is not counted as activity by Jupyter itself, and no_track_activity
        # keeps the kernel list from counting: asking never makes the studio look used.
        p: JupyterLabParams = block.params
        base = studio.browser_path(p.port)
        return jupyter_activity(studio.get(p.port, f"{base}/api/status"),
                                studio.get(p.port, f"{base}/api/kernels?no_track_activity=1"))

    @hookimpl
    def register_code_env(self, block, code_env, state):
        p: JupyterLabParams = block.params
        steps = [
            # An R env brings IRkernel itself (r-cran-irkernel).
            *([] if code_env.language == "r" else [Run(script=pip_install(code_env.python, ["ipykernel"]))]),
            Copy(content=kernel_spec(code_env), dest=f"{p.path}/share/jupyter/kernels/{code_env.name}/kernel.json"),
        ]
        # The template's first code env (whichever side of this block it is)
        # is the default kernel rather than JupyterLab's own environment.
        # (Plain config files are read from the env's etc/jupyter; the .d
        # folders only carry server-extension switches.)
        if state.code_envs and state.code_envs[0][1].name == code_env.name:
            config = {"MappingKernelManager": {"default_kernel_name": code_env.name}}
            steps.append(
                Copy(
                    content=json.dumps(config, indent=1, sort_keys=True) + "\n",
                    dest=f"{p.path}/etc/jupyter/jupyter_server_config.json",
                )
            )
        return steps
