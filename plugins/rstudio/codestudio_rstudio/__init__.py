"""``rstudio``: RStudio Server on R from Debian.

R comes from Debian (``r-base-core``); RStudio Server from its ``.deb``,
either downloaded at build time (``deb_url`` with its ``sha256``, checked
before the package is installed) or given as a template resource (``deb``)
for offline sites. ``apt-get`` installs the ``.deb`` with its dependencies.

rserver runs as the studio user with its own state folder, without its own
authentication (``--auth-none``: the gateway authenticates the owner). The
gateway strips the studio prefix (``proxied_subpath: /``) and RStudio learns
the prefix from ``--www-root-path`` (``DKU_CODE_STUDIO_BROWSER_PATH_<port>``)
for the URLs and cookies it writes. Readiness: its login-free root page.
"""

from __future__ import annotations

import re
from importlib import resources

from pydantic import model_validator

from codestudio import hookimpl
from codestudio.blockapi import Block, BlockParams, BlockProblem, Copy, Entrypoint, Run, shell_quote
from codestudio.blockhelpers import browser_path_ref, ide_probe, resolve_resource
from codestudio.types import WORKSPACE, ContainerPath, Port

HOME = "/opt/codestudio/rstudio"
SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
URL_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]+)?/[A-Za-z0-9._~%/+-]*\.deb$")


def _file(name: str) -> str:
    return resources.files(__package__).joinpath("files", name).read_text(encoding="utf-8")


class RStudioParams(BlockParams):
    port: Port = 8787
    #: Where to download the RStudio Server .deb (with ``sha256``)...
    deb_url: str | None = None
    sha256: str | None = None
    #: ...or the .deb among the template resources.
    deb: str | None = None
    #: Extra Debian packages (R libraries such as r-cran-ggplot2).
    apt_packages: list[str] = []
    #: The folder RStudio starts in.
    folder: ContainerPath = WORKSPACE

    @model_validator(mode="after")
    def _source(self):
        if (self.deb is None) == (self.deb_url is None):
            raise ValueError(
                "give the RStudio Server .deb either as deb_url (with sha256) or as deb (a template resource)"
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
            steps.append(Copy(content=_file("fetch_deb.py"), dest=f"{HOME}/fetch_deb.py"))
            fetch = f"python3 {HOME}/fetch_deb.py {shell_quote(p.deb_url)} {shell_quote(p.sha256)} {deb}\n"
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
