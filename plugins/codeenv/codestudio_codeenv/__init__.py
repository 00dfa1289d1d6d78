"""``codeenv``: a named Python or R environment in the image.

A Python env (``language: python``, the default) is created with the chosen
interpreter's ``venv`` module and gets ``packages`` and the ``requirements``
resource file installed. An R env (``language: r``) is R from Debian
(``r-base-core``, with IRkernel from ``r-cran-irkernel``), its
``debian_packages`` (``r-cran-*``), and a library folder of its own
(``<path>/library``) into which ``cran_packages`` are installed from
``cran_repository`` (a CRAN-like http(s) URL), when set. It is
announced as a :class:`~codestudio.blockapi.CodeEnv`, which the engine
broadcasts through ``register_code_env`` so that IDE blocks register it
(JupyterLab as a kernel, VS Code as an interpreter), whichever order the
blocks appear in.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from codestudio import hookimpl
from codestudio.blockapi import Block, BlockParams, CodeEnv, Run, shell_quote
from codestudio.blockhelpers import PipRequirement, PythonCommand, python_env, resolve_resource
from codestudio.types import ContainerPath, Label, Slug

CODE_ENVS_DIR = "/opt/codestudio/code-envs"
R = "/usr/bin/R"
DEBIAN_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
R_PACKAGE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]$")
# Scheme, host[:port], then a path of URL-safe characters only: it reaches R code.
CRAN_URL_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/+-]*)?$")


class CodeEnvParams(BlockParams):
    name: Slug = Field(
        description="The env's name, unique in the template (lowercase letters, digits, '-'): "
        "kernel and interpreter ids use it.",
        examples=["py-ml"],
    )
    label: Label | None = Field(
        default=None, description="Display name: the kernel's and launch configuration's name; default: name."
    )
    language: Literal["python", "r"] = Field(
        default="python",
        description="python: a virtual env with pip packages; r: R from Debian with a library of its own.",
    )
    packages: list[PipRequirement] = Field(
        default_factory=list,
        description="pip requirements (PEP 508) installed into the env; pip options (-e, --index-url) are refused.",
        examples=[["pandas==2.2.3", "scikit-learn", "requests[socks]>=2"]],
    )
    requirements: str | None = Field(
        default=None,
        description="A requirements file among the template's resources (relative to the template's folder, "
        "or under ${dku.install.dir} or ${dip.home}); it may use pip options.",
        examples=["files/requirements.txt"],
    )
    python: PythonCommand = Field(
        default="python3",
        description="The interpreter that creates the env (its version is the env's): "
        "a name on the image's PATH or an absolute path.",
        examples=["python3.11"],
    )
    path: ContainerPath | None = Field(
        default=None,
        description="Where the env is installed (its interpreter is <path>/bin/python); "
        "default: /opt/codestudio/code-envs/<name>.",
        examples=["/opt/envs/py-ml"],
    )
    debian_packages: list[str] = Field(
        default_factory=list,
        description="R envs: Debian packages installed system-wide (R libraries as r-cran-*).",
        examples=[["r-cran-jsonlite", "r-cran-ggplot2"]],
    )
    cran_repository: str | None = Field(
        default=None,
        description="R envs: a CRAN-like repository (an http:// or https:// URL) for cran_packages.",
        examples=["https://cloud.r-project.org/"],
    )
    cran_packages: list[str] = Field(
        default_factory=list,
        description="R envs: R packages installed from cran_repository into the env's library.",
        examples=[["glue"]],
    )

    @field_validator("debian_packages")
    @classmethod
    def _debian(cls, value: list[str]) -> list[str]:
        for name in value:
            if not DEBIAN_PACKAGE_RE.match(name):
                raise ValueError(f"{name!r} is not a Debian package name (e.g. r-cran-jsonlite)")
        return value

    @field_validator("cran_packages")
    @classmethod
    def _cran(cls, value: list[str]) -> list[str]:
        for name in value:
            if not R_PACKAGE_RE.match(name):
                raise ValueError(f"{name!r} is not an R package name")
        return value

    @field_validator("cran_repository")
    @classmethod
    def _cran_url(cls, value: str | None) -> str | None:
        if value is not None and not CRAN_URL_RE.match(value):
            raise ValueError(f"{value!r} must be an http:// or https:// URL of a CRAN-like repository")
        return value

    @model_validator(mode="after")
    def _not_engine_dir(self):
        if self.path is not None and self.path in ("/", "/opt", "/opt/codestudio", "/usr", "/home/codestudio"):
            raise ValueError(f"path {self.path!r} would overwrite a system folder")
        if self.language == "r":
            pip = [f for f in ("packages", "requirements") if getattr(self, f)]
            if pip or self.python != "python3":
                what = ", ".join(pip or ["python"])
                raise ValueError(f"language r takes debian_packages and cran_packages, not pip's {what}")
            if self.cran_packages and not self.cran_repository:
                raise ValueError("cran_packages needs cran_repository (the CRAN-like repository URL)")
        else:
            r_only = [f for f in ("debian_packages", "cran_repository", "cran_packages") if getattr(self, f)]
            if r_only:
                raise ValueError(f"{', '.join(r_only)} are for R envs: set language: r")
        return self

    @property
    def env_path(self) -> str:
        return self.path or f"{CODE_ENVS_DIR}/{self.name}"


class CodeEnvBlock(Block):
    Params = CodeEnvParams
    summary = "A named Python or R environment, registered with every IDE block"

    @hookimpl
    def contribute_dockerfile(self, block, state):
        p: CodeEnvParams = block.params
        if p.language == "r":
            return [Run(script=_r_env_script(p))]
        files = [resolve_resource(state, p.requirements, "requirements").path] if p.requirements else []
        return python_env(p.env_path, python=p.python, packages=p.packages, requirement_files=files)

    @hookimpl
    def contribute_code_env(self, block, state):
        p: CodeEnvParams = block.params
        if p.language == "r":
            return CodeEnv(name=p.name, label=p.label or p.name, path=p.env_path, language="r", r=R,
                           library=f"{p.env_path}/library")
        return CodeEnv(name=p.name, label=p.label or p.name, path=p.env_path, python=f"{p.env_path}/bin/python")

    @hookimpl
    def validate_block(self, block, state):
        p: CodeEnvParams = block.params
        clash = [b for b, env in state.code_envs if env.path == p.env_path and b.index != block.index]
        if clash:
            return [("path", f"{p.env_path} is already the path of the code env of {clash[0].where}")]
        return None


def _r_env_script(p: CodeEnvParams) -> str:
    """The root RUN step of an R env: R and IRkernel from Debian, then CRAN packages into its library."""
    library = f"{p.env_path}/library"
    debs = ["r-base-core", "r-cran-irkernel", *p.debian_packages]
    if p.cran_packages:
        debs.append("r-base-dev")  # CRAN packages may compile from source
    lines = [
        "export DEBIAN_FRONTEND=noninteractive",
        "apt-get update",
        "apt-get install -y --no-install-recommends " + " ".join(shell_quote(d) for d in debs),
        "apt-get clean",
        "rm -rf /var/lib/apt/lists/*",
        f"mkdir -p {shell_quote(library)}",
    ]
    if p.cran_packages:
        # install.packages only warns on failure: check every package loads from the env's library.
        # Values are validated (names, URL) and reach R as JSON strings (valid R string literals).
        pkgs = "c(" + ", ".join(json.dumps(n) for n in p.cran_packages) + ")"
        code = (
            f"pkgs <- {pkgs}; lib <- {json.dumps(library)}; "
            f"install.packages(pkgs, lib = lib, repos = {json.dumps(p.cran_repository)}); "
            "missing <- pkgs[!vapply(pkgs, requireNamespace, logical(1), lib.loc = lib, quietly = TRUE)]; "
            "if (length(missing)) stop('not installed from the CRAN repository: ', paste(missing, collapse = ', '))"
        )
        lines.append(f"Rscript -e {shell_quote(code)}")
    return "\n".join(lines) + "\n"
