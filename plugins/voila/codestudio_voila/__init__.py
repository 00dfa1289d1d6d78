"""``voila``: notebooks of the studio's versioned files served as Voilà dashboards.

The ``voila/`` folder of the ``code_studio-versioned`` zone holds the
notebooks, created with a working example (``voila/app.ipynb``). Voilà
serves the folder (its page lists the notebooks; ``voila/render/<name>``
runs one), executing a notebook afresh on each visit, so an edit synced
from the server is what the next visit shows. Voilà serves the full
browser path (``--base_url`` from ``DKU_CODE_STUDIO_BROWSER_PATH_<port>``,
``proxied_subpath: $request_uri``); widgets talk to their kernel over
Jupyter's kernel websocket, which the gateway passes. Readiness: the
folder's page, which Voilà serves once it is up (a probe that rendered a
notebook would start a kernel every time). The entrypoint can be launched
as a webapp. Voilà (with ``ipykernel``, so notebooks run in the same env)
has its own environment unless ``code_env`` names a code env defined
earlier.
"""

from __future__ import annotations

from pydantic import Field

from codestudio.blockapi import Block
from codestudio.blockhelpers import PackageVersion, WebAppBlock, WebAppParams
from codestudio.types import ContainerPath, Port, RelativePath

DEFAULT_VERSION = "0.5.13"
IPYKERNEL_VERSION = "7.4.0"
HOME = "/opt/codestudio/voila"


class VoilaParams(WebAppParams):
    port: Port = Field(
        default=8866,
        description="Container port Voilà listens on; its tab is /code-studios/<project>/<studio>/<port>/.",
    )
    version: PackageVersion = Field(default=DEFAULT_VERSION, description="Voilà version from PyPI.")
    app: RelativePath = Field(
        default="voila",
        description="The folder of notebooks Voilà serves, in the zone; an example notebook is written there "
        "when a studio is created.",
    )
    path: ContainerPath = Field(default=HOME, description="Voilà's own environment (when code_env is not set).")


class VoilaBlock(WebAppBlock, Block):
    Params = VoilaParams
    summary = "Notebooks from the studio's versioned files as Voila dashboards, launchable as a webapp"
    home = HOME
    tool = "voila"
    extra_requirements = (f"ipykernel=={IPYKERNEL_VERSION}",)
    default_label = "Voila"
    proxied_subpath = "$request_uri"
    probe_url = "${baseUrl}/"
    example_files = ("app.ipynb",)
    restart_on_change = False  # Voila runs the notebook afresh on each visit

    def starter_paths(self, p) -> dict[str, str]:
        return {f"{p.app}/app.ipynb": "app.ipynb"}
