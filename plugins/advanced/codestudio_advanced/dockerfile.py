"""``dockerfile``: append Dockerfile statements, with resources in the build context."""

from __future__ import annotations

from pydantic import Field

from codestudio import hookimpl
from codestudio.blockapi import Block, BlockParams, BlockProblem, Raw
from codestudio.blockhelpers import check_dockerfile_statements, resolve_resource
from codestudio.types import Text


class DockerfileParams(BlockParams):
    statements: Text = Field(
        description="Dockerfile instructions added as written (RUN, COPY, ENV, WORKDIR, ...); "
        "FROM, ENTRYPOINT, CMD, ONBUILD, MAINTAINER, heredocs, flags on RUN and COPY --from are refused.",
        examples=["RUN apt-get update && apt-get install -y --no-install-recommends git"],
    )
    run_as_root: bool = Field(default=False, description="Run the statements as root; false: as the studio user.")
    resources: list[str] = Field(
        default=[],
        description="Files or folders put in the build context next to the Dockerfile under their own name "
        "(COPY <name> /dest): relative to the template's folder, or under ${dku.install.dir} or ${dip.home}.",
        examples=[["files/extra-ca.crt", "${dip.home}/config/pip.conf"]],
    )


class DockerfileBlock(Block):
    """Statements run as the studio user unless ``run_as_root``; each resource is
    placed next to the Dockerfile under its own file or folder name
    (``COPY <name> /dest``), as in Dataiku DSS Code Studio templates."""

    Params = DockerfileParams
    summary = "Append Dockerfile statements (RUN, COPY <resource name> ..., ENV, ...)"

    @hookimpl
    def contribute_dockerfile(self, block, state):
        params: DockerfileParams = block.params
        problems = check_dockerfile_statements(params.statements)
        if problems:
            raise BlockProblem("statements", "; ".join(problems))
        resources = {}
        specs = {}
        for index, spec in enumerate(params.resources):
            resource = resolve_resource(state, spec, f"resources.{index}")
            name = resource.path.name
            if name in resources and resources[name] != resource.path:
                raise BlockProblem(
                    f"resources.{index}",
                    f"{spec!r} and {specs[name]!r} are both named {name!r} (resources are placed next "
                    "to the Dockerfile under their own names): rename one of them",
                )
            resources[name] = resource.path
            specs[name] = spec
        return [
            Raw(
                text=params.statements,
                resources=resources,
                user="root" if params.run_as_root else "codestudio",
            )
        ]
