"""``rstudio``: RStudio Server on R from Debian.

R comes from Debian (``r-base-core``); RStudio Server from its ``.deb``.
With no settings the block downloads the official build pinned below for
the base image's Debian release (:data:`PINNED`), checks its SHA-256, then
installs it; ``deb_url`` (with ``sha256``) or ``deb`` (a template resource,
for air-gapped sites) override that. The download goes through the host's
proxy and CA bundle like any other build-time download. ``apt-get``
installs the ``.deb`` with its dependencies.

rserver runs as the studio user with its own state folder, without its own
authentication (``--auth-none``: the gateway authenticates the owner). The
gateway strips the studio prefix (``proxied_subpath: /``) and RStudio learns
the prefix from ``--www-root-path`` (``DKU_CODE_STUDIO_BROWSER_PATH_<port>``)
for the URLs and cookies it writes. Readiness: its login-free root page.
"""

from __future__ import annotations

import json
import re
from importlib import resources

from pydantic import Field, model_validator

from codestudio import hookimpl
from codestudio.blockapi import Block, BlockParams, BlockProblem, Copy, Entrypoint, Run, shell_quote
from codestudio.blockhelpers import browser_path_ref, ide_probe, resolve_resource
from codestudio.types import WORKSPACE, ContainerPath, Port

HOME = "/opt/codestudio/rstudio"
SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
URL_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]+)?/[A-Za-z0-9._~%/+-]*\.deb$")


#: The official RStudio Server (open source) download per Debian release of
#: the base image: codename -> (url, sha256). Debian 12 (bookworm) takes the
#: Ubuntu 22.04 (jammy) build, as Posit's download page says for Debian 12.
#: To update: take the version from https://posit.co/download/rstudio-server/
#: ("Debian 12 / Ubuntu 22"), URL pattern
#: https://download2.rstudio.org/server/jammy/amd64/rstudio-server-<version>-amd64.deb,
#: its SHA-256 from that page (or ``sha256sum`` of the download), and bump
#: this distribution's version.
PINNED: dict[str, tuple[str, str]] = {
    "bookworm": (
        "https://download2.rstudio.org/server/jammy/amd64/rstudio-server-2026.09.0-174-amd64.deb",
        "168bc577ef2f68abab1ad2ed684e830da1d244618b25b69fd20448e60716c5ba",
    ),
}


def _file(name: str) -> str:
    return resources.files(__package__).joinpath("files", name).read_text(encoding="utf-8")


class RStudioParams(BlockParams):
    port: Port = Field(
        default=8787,
        description="Container port RStudio Server listens on; its tab is /code-studios/<project>/<studio>/<port>/.",
    )
    deb_url: str | None = Field(
        default=None,
        description="Where to download the RStudio Server .deb (an http(s) URL, e.g. a mirror), with sha256; "
        "default: the pinned official build.",
        examples=["https://mirror.example.com/rstudio/rstudio-server-2026.09.0-174-amd64.deb"],
    )
    sha256: str | None = Field(
        default=None,
        description="SHA-256 of the deb_url download (64 hex digits), checked before anything is installed.",
    )
    deb: str | None = Field(
        default=None,
        description="The RStudio Server .deb among the template resources (air-gapped sites); give this or deb_url.",
        examples=["files/rstudio-server-amd64.deb"],
    )
    apt_packages: list[str] = Field(
        default=[], description="Extra Debian packages, e.g. R libraries.", examples=[["r-cran-ggplot2"]]
    )
    folder: ContainerPath = Field(default=WORKSPACE, description="The folder RStudio starts in.")

    @model_validator(mode="after")
    def _source(self):
        if self.deb is not None and self.deb_url is not None:
            raise ValueError(
                "give the RStudio Server .deb either as deb_url (with sha256) or as deb (a template resource), "
                "not both; with neither, the pinned official download is used"
            )
        if self.deb_url is not None:
            if not URL_RE.match(self.deb_url):
                raise ValueError(f"deb_url {self.deb_url!r} must be an http(s) URL of a .deb file")
            if self.sha256 is None or not SHA256_RE.match(self.sha256):
                raise ValueError("deb_url needs sha256: the 64 hex digits of the .deb's SHA-256")
        elif self.sha256 is not None:
            raise ValueError("sha256 goes with deb_url; a deb resource is taken as it is")
        for name in self.apt_packages:
            if not re.match(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$", name):
                raise ValueError(f"apt_packages: {name!r} is not a Debian package name")
        return self


class RStudioBlock(Block):
    Params = RStudioParams
    summary = "RStudio Server on R from Debian"

    @hookimpl
    def contribute_dockerfile(self, block, state):
        p: RStudioParams = block.params
        deb = f"{HOME}/rstudio-server.deb"
        steps = []
        if p.deb:
            resource = resolve_resource(state, p.deb, "deb")
            if not resource.path.is_file() or not resource.path.name.endswith(".deb"):
                raise BlockProblem("deb", f"{p.deb!r} must be a .deb file")
            steps.append(Copy(source=resource.path, dest=deb))
            fetch = ""
        else:
            sources = {"*": [p.deb_url, p.sha256]} if p.deb_url else {k: list(v) for k, v in PINNED.items()}
            steps.append(Copy(content=_file("fetch_deb.py"), dest=f"{HOME}/fetch_deb.py"))
            where = f"rstudio block {block.where}"
            fetch = (f"python3 {HOME}/fetch_deb.py {deb} {shell_quote(where)} "
                     f"{shell_quote(json.dumps(sources, sort_keys=True))}\n")
        extra = " ".join(shell_quote(n) for n in p.apt_packages)
        steps.append(
            Run(
                script=f"""\
export DEBIAN_FRONTEND=noninteractive
mkdir -p {HOME}
{fetch}apt-get update
apt-get install -y --no-install-recommends r-base-core {extra} {deb}
rm -f {deb}
# The base image has no apt clean-up hook: the downloaded .debs would stay in this layer.
apt-get clean
rm -rf /var/lib/apt/lists/*
/usr/lib/rstudio-server/bin/rserver --version
"""
            )
        )
        steps.append(Copy(content=_file("start.sh"), dest=f"{HOME}/start.sh", mode=0o755))
        return steps

    @hookimpl
    def register_code_env(self, block, code_env):
        # RStudio's R sessions see every R code env's library first on .libPaths().
        if code_env.language != "r":
            return None
        line = f'.libPaths(c({json.dumps(code_env.library)}, .libPaths()))'
        return [Run(script=f"mkdir -p /etc/R\nprintf '%s\\n' {shell_quote(line)} >> /etc/R/Rprofile.site")]

    @hookimpl
    def contribute_entrypoint(self, block):
        p: RStudioParams = block.params
        return Entrypoint(
            label=p.label or "RStudio",
            command=[f"{HOME}/start.sh", str(p.port), browser_path_ref(p.port)],
            port=p.port,
            expose_html=True,
            proxied_subpath="/",
            cwd=p.folder,
        )

    @hookimpl
    def adjust_probe(self, block, probe):
        return ide_probe(probe, block.params.port, "${baseUrl}/")

    @hookimpl
    def adjust_pod(self, block, pod):
        # An estimate of the memory rserver and one R session take at start (a memory limit below it is refused at start).
        return pod.with_memory_needed(block.params.label or "RStudio", "256Mi")
