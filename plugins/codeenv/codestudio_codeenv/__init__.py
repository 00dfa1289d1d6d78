"""``codeenv``: a named Python virtual environment in the image.

The env is created with the chosen interpreter's ``venv`` module and gets
``packages`` and the ``requirements`` resource file installed. It is
announced as a :class:`~codestudio.blockapi.CodeEnv`, which the engine
broadcasts through ``register_code_env`` so that IDE blocks register it
(JupyterLab as a kernel, VS Code as an interpreter), whichever order the
blocks appear in.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from codestudio import hookimpl
from codestudio.blockapi import Block, BlockParams, CodeEnv
from codestudio.blockhelpers import PipRequirement, PythonCommand, python_env, resolve_resource
from codestudio.types import ContainerPath, Slug

CODE_ENVS_DIR = "/opt/codestudio/code-envs"


class CodeEnvParams(BlockParams):
    #: The env's name: kernel and interpreter ids use it.
    name: Slug
    packages: list[PipRequirement] = Field(default_factory=list)
    #: A requirements file among the template's resources.
    requirements: str | None = None
    #: The interpreter that creates the env (its version is the env's).
    python: PythonCommand = "python3"
    #: Where the env is installed; default ``/opt/codestudio/code-envs/<name>``.
    path: ContainerPath | None = None

    @model_validator(mode="after")
    def _not_engine_dir(self):
        if self.path is not None and self.path in ("/", "/opt", "/opt/codestudio", "/usr", "/home/codestudio"):
            raise ValueError(f"path {self.path!r} would overwrite a system folder")
        return self

    @property
    def env_path(self) -> str:
        return self.path or f"{CODE_ENVS_DIR}/{self.name}"


class CodeEnvBlock(Block):
    Params = CodeEnvParams
    summary = "A named Python environment, registered with every IDE block"

    @hookimpl
    def contribute_dockerfile(self, block, state):
        p: CodeEnvParams = block.params
        files = [resolve_resource(state, p.requirements, "requirements").path] if p.requirements else []
        return python_env(p.env_path, python=p.python, packages=p.packages, requirement_files=files)

    @hookimpl
    def contribute_code_env(self, block, state):
        p: CodeEnvParams = block.params
        return CodeEnv(name=p.name, label=p.label or p.name, path=p.env_path, python=f"{p.env_path}/bin/python")

    @hookimpl
    def validate_block(self, block, state):
        p: CodeEnvParams = block.params
        clash = [b for b, env in state.code_envs if env.path == p.env_path and b.index != block.index]
        if clash:
            return [("path", f"{p.env_path} is already the path of the code env of {clash[0].where}")]
        return None
