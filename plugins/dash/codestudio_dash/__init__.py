"""``dash``: a Dash app served from the studio's versioned files.

The app is ``dash/app.py`` of the ``code_studio-versioned`` zone, created
there as a starter file with a working example; users edit it from the
versioned files, and the app restarts when a change lands (in the studio or
synced from the server). Dash reads its prefix from
``DASH_URL_BASE_PATHNAME`` (the browser path, so it serves the full path:
``proxied_subpath: $request_uri``) and ``app.run()`` its address and port
from ``HOST``/``PORT``. Dash talks plain HTTP (no websockets). Readiness:
``_dash-layout``, which answers once the app's layout is built. The
entrypoint can be launched as a webapp. Dash runs in its own environment
unless ``code_env`` names a code env defined earlier.
"""

from __future__ import annotations

from pydantic import Field

from codestudio.blockapi import Block
from codestudio.blockhelpers import PackageVersion, WebAppBlock, WebAppParams
from codestudio.types import ContainerPath, Port, RelativePath

DEFAULT_VERSION = "4.4.1"
HOME = "/opt/codestudio/dash"


class DashParams(WebAppParams):
    port: Port = Field(
        default=8050,
        description="Container port Dash listens on; its tab is /code-studios/<project>/<studio>/<port>/.",
    )
    version: PackageVersion = Field(default=DEFAULT_VERSION, description="Dash version from PyPI.")
    app: RelativePath = Field(
        default="dash/app.py",
        description="The app's path in the zone; a working example is written there when a studio is created.",
    )
    path: ContainerPath = Field(default=HOME, description="Dash's own environment (when code_env is not set).")


class DashBlock(WebAppBlock, Block):
    Params = DashParams
    summary = "A Dash app from the studio's versioned files, launchable as a webapp"
    home = HOME
    tool = "dash"
    default_label = "Dash"
    proxied_subpath = "$request_uri"
    probe_url = "${baseUrl}/_dash-layout"
