"""``gradio``: a Gradio app served from the studio's versioned files.

The app is ``gradio/app.py`` of the ``code_studio-versioned`` zone, created
there as a starter file with a working example; users edit it from the
versioned files, and the app restarts when a change lands (in the studio or
synced from the server). Gradio reads its address, port and root path from
``GRADIO_SERVER_NAME``/``GRADIO_SERVER_PORT``/``GRADIO_ROOT_PATH``, so the
app just calls ``demo.launch()``. The gateway strips the prefix
(``proxied_subpath: /``) and ``GRADIO_ROOT_PATH`` tells Gradio the browser
path for the URLs it writes; its queue streams over server-sent events,
which the gateway passes unbuffered. Readiness: Gradio's ``/config``, which
answers once the app has been built. The entrypoint can be launched as a
webapp. Gradio runs in its own environment unless ``code_env`` names a code
env defined earlier.
"""

from __future__ import annotations

from pydantic import Field

from codestudio.blockapi import Block
from codestudio.blockhelpers import PackageVersion, WebAppBlock, WebAppParams
from codestudio.types import ContainerPath, Port, RelativePath

DEFAULT_VERSION = "6.31.0"
HOME = "/opt/codestudio/gradio"


class GradioParams(WebAppParams):
    port: Port = Field(
        default=7860,
        description="Container port Gradio listens on; its tab is /code-studios/<project>/<studio>/<port>/.",
    )
    version: PackageVersion = Field(default=DEFAULT_VERSION, description="Gradio version from PyPI.")
    app: RelativePath = Field(
        default="gradio/app.py",
        description="The app's path in the zone; a working example is written there when a studio is created.",
    )
    path: ContainerPath = Field(default=HOME, description="Gradio's own environment (when code_env is not set).")


class GradioBlock(WebAppBlock, Block):
    Params = GradioParams
    summary = "A Gradio app from the studio's versioned files, launchable as a webapp"
    home = HOME
    tool = "gradio"
    default_label = "Gradio"
    proxied_subpath = "/"
    probe_url = "${baseUrl}/config"
