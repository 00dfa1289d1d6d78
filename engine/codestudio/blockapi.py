"""The public block-author API.

A block is a class registered under the entry-point group
``codestudio.blocks``; the entry-point name is the block ``type`` used in
templates. The class declares its parameters as a pydantic model in
``Params`` (a subclass of :class:`BlockParams`) and implements hooks from
:mod:`codestudio.hookspecs` with ``@codestudio.hookimpl``::

    from codestudio import hookimpl
    from codestudio.blockapi import Block, BlockParams, Run

    class HelloParams(BlockParams):
        greeting: str = "hello"

    class Hello(Block):
        Params = HelloParams

        @hookimpl
        def contribute_dockerfile(self, block, state):
            return [Run(script=f"echo {shell_quote(block.params.greeting)}")]

Hooks return plain data (steps, entrypoints, actions, ...); the engine
accumulates it into one :class:`BuildState` in template order, and renderers
escape every value on the way out. Nothing here runs a container tool.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from codestudio.types import (
    ContainerPath,
    CpuQuantity,
    Duration,
    EnvName,
    KubeName,
    Label,
    LabelKey,
    LabelValue,
    MemoryQuantity,
    Port,
    ProxiedSubpath,
    RelativePath,
    ResourceName,
    Text,
    Zone,
    ZoneSubfolder,
    is_git_name,
)

if TYPE_CHECKING:
    from codestudio.resources import ResourceResolver

__all__ = [
    "Action",
    "Block",
    "BlockInstance",
    "BlockProblem",
    "BlockParams",
    "BuildState",
    "CodeEnv",
    "Copy",
    "Entrypoint",
    "Env",
    "Activity",
    "LifecyclePolicy",
    "PodSettings",
    "StudioConnection",
    "Toleration",
    "Probe",
    "Raw",
    "Run",
    "StarterFile",
    "Step",
    "SyncMapping",
    "Workdir",
    "is_git_name",
    "shell_quote",
]


def shell_quote(value: str) -> str:
    """Quote one word for a POSIX shell (``shlex.quote``)."""
    return shlex.quote(value)


class BlockParams(BaseModel):
    """Base class of every block's parameter model.

    Unknown keys are errors; every block accepts an optional ``label`` used in
    progress output and error messages.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: Label | None = Field(
        default=None,
        description="Display name of the block in progress output and error messages (for IDEs, their tab label); "
        "one line, no control characters.",
    )


class Block:
    """Base class of block plugins.

    Subclasses set ``Params`` and implement hooks. The loader sets ``type``
    (the entry-point name), ``distribution`` and ``version`` on the instance
    it registers; a block's hooks are called only for template blocks of its
    own type (see :mod:`codestudio.hookspecs`).
    """

    Params: type[BlockParams] = BlockParams
    #: One-line description shown by ``codestudio blocks``.
    summary: str = ""

    type: str = ""
    distribution: str = ""
    version: str = ""


# --------------------------------------------------------------------------
# Dockerfile steps


class Step(BaseModel):
    """One Dockerfile instruction a block contributes, rendered and escaped by the engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Which user the instruction runs as; the renderer adds ``USER`` lines as needed.
    user: Literal["root", "codestudio"] = "root"


class Run(Step):
    """``RUN`` a shell script (``/bin/sh -e -c``) or an argv list, in exec form.

    Exec form with JSON quoting means quotes, ``$``, backslashes, ``#`` and
    newlines in the script reach the shell exactly as written.
    The host's CA bundle and proxy settings are made available to the step
    at build time by the builder, never baked into the image.
    """

    script: Text | None = None
    argv: list[str] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Run:
        if (self.script is None) == (self.argv is None):
            raise ValueError("Run needs exactly one of script or argv")
        return self


class Copy(Step):
    """Put a file or folder into the image at ``dest``.

    Give exactly one of ``content`` (bytes or text written into the build
    context) or ``source`` (a resolved resource path: file or folder).
    ``mode`` applies to files written from ``content`` and to resource files
    (folders keep their files' executable bits). ``owner`` is the owner of
    the copied files in the image.
    """

    dest: ContainerPath
    content: bytes | str | None = None
    source: Path | None = None
    mode: int = 0o644
    owner: Literal["root", "codestudio"] = "root"

    @model_validator(mode="after")
    def _one_of(self) -> Copy:
        if (self.content is None) == (self.source is None):
            raise ValueError("Copy needs exactly one of content or source")
        return self


class Env(Step):
    """``ENV`` variables baked into the image (never secrets)."""

    values: dict[EnvName, Text]


class Workdir(Step):
    """``WORKDIR``."""

    path: ContainerPath


#: The one build-context folder that holds the engine's own files (block
#: files, the runner); resources take every other name at the root.
CONTEXT_DIR = ".codestudio"
#: Names at the context root a resource may not take: the engine's folder and
#: the files a builder reads from the context (they would change the build).
RESERVED_CONTEXT_NAMES = frozenset({CONTEXT_DIR, "Dockerfile", "Containerfile", ".dockerignore", ".containerignore"})


class Raw(Step):
    """Dockerfile instructions written by the template's admin (the ``dockerfile`` block).

    The text is checked by :func:`codestudio.dockerfile.check_statements`
    (known instructions only, no ``FROM``/``ENTRYPOINT``/``CMD``) and emitted
    as written. ``resources`` maps names to resolved files or folders placed
    at the build context's root under that name, next to the Dockerfile, so
    statements copy them with ``COPY <name> <dest>``. The engine's own
    context files live under :data:`CONTEXT_DIR`; a name in
    :data:`RESERVED_CONTEXT_NAMES` is refused.
    """

    text: str
    resources: dict[str, Path] = Field(default_factory=dict)


# --------------------------------------------------------------------------
# Runtime contributions


class Entrypoint(BaseModel):
    """A process the runner starts in the container.

    ``command`` is an argv list; the runner expands ``${NAME}`` references to
    container environment variables in its items (``$${NAME}`` for a literal).
    With ``port`` set and ``expose_html`` true the gateway serves it under
    ``/code-studios/<project>/<studio>/<port>/``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: Label
    command: list[str] = Field(min_length=1)
    port: Port | None = None
    expose_html: bool = True
    launch_in_webapp: bool = False
    proxied_subpath: ProxiedSubpath = "/"
    env: dict[EnvName, Text] = Field(default_factory=dict)
    cwd: ContainerPath | None = None


class Action(BaseModel):
    """A custom action users run from the studio (``codestudio studio run``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    label: Label
    description: Text = ""
    command: Text
    wait: bool = True


class CodeEnv(BaseModel):
    """A code environment in the image, announced to IDE blocks via ``register_code_env``.

    ``language`` says which: a Python virtual env (``python`` is its
    interpreter) or an R env (``r`` is the R binary, ``library`` the env's
    own library folder, to put first on R's library paths). Blocks that only
    handle Python envs check ``language`` and skip the others.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    label: Label
    #: The environment's prefix, e.g. ``/opt/codestudio/code-envs/py-ml``.
    path: ContainerPath
    language: Literal["python", "r"] = "python"
    #: A Python env's interpreter, e.g. ``/opt/codestudio/code-envs/py-ml/bin/python``.
    python: ContainerPath | None = None
    #: An R env's R binary (``/usr/bin/R``) and library folder (``<path>/library``).
    r: ContainerPath | None = None
    library: ContainerPath | None = None

    @model_validator(mode="after")
    def _interpreter(self):
        if self.language == "python" and self.python is None:
            raise ValueError("a Python code env needs its interpreter (python)")
        if self.language == "r" and (self.r is None or self.library is None):
            raise ValueError("an R code env needs its R binary (r) and library folder (library)")
        return self


class Probe(BaseModel):
    """How the runtime decides a studio is ready.

    ``kind="tcp"`` connects to ``port``; ``kind="http"`` expects a 2xx/3xx
    from ``url`` on ``port``, where ``${baseUrl}`` expands to that port's
    browser path (``DKU_CODE_STUDIO_BROWSER_PATH_<port>``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["tcp", "http"]
    port: Port
    url: str | None = None


class Toleration(BaseModel):
    """A Kubernetes toleration of the studio's pod (tainted nodes it may run on).

    ``key`` is required unless ``operator`` is ``Exists`` (then an empty key
    tolerates every taint); ``value`` only goes with ``Equal``;
    ``toleration_seconds`` only with the ``NoExecute`` effect.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: LabelKey | None = Field(
        default=None,
        description="The taint key tolerated; required unless operator is Exists (no key: every taint).",
        examples=["nvidia.com/gpu"],
    )
    operator: Literal["Equal", "Exists"] = Field(
        default="Equal", description="Equal: the taint's value must be value; Exists: any value."
    )
    value: LabelValue | None = Field(default=None, description="The taint value tolerated (only with Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="The taint effect tolerated; none: every effect."
    )
    toleration_seconds: int | None = Field(
        default=None,
        ge=0,
        strict=True,
        description="How long the pod stays on a node after a NoExecute taint appears (only with NoExecute); "
        "none: for ever.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        if self.operator == "Equal" and not self.key:
            raise ValueError("key is required (unless operator is Exists)")
        if self.operator == "Exists" and self.value:
            raise ValueError("value must be empty when operator is Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("toleration_seconds only goes with effect NoExecute")
        return self

    def manifest(self) -> dict:
        """The toleration as the pod spec writes it."""
        out: dict = {"operator": self.operator}
        for field, name in (("key", "key"), ("value", "value"), ("effect", "effect"),
                            ("toleration_seconds", "tolerationSeconds")):
            if getattr(self, field) is not None:
                out[name] = getattr(self, field)
        return out


class PodSettings(BaseModel):
    """What the studio's pod asks of the runtime besides its image (``adjust_pod``).

    ``cpu`` and ``memory`` are Kubernetes quantities (``500m``, ``2``;
    ``512Mi``, ``4Gi``): each is both the request and the limit of the
    studio's container, on Kubernetes and under the local runtime (podman
    enforces them through the container's cgroup). ``memory_needed`` maps a
    tool's label to the memory it needs to start; blocks add their tool's
    entry, and a ``memory`` below their sum is a warning when the template is
    built and an error (exit 2) when a studio starts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: CpuQuantity | None = None
    memory: MemoryQuantity | None = None
    memory_needed: dict[Label, MemoryQuantity] = Field(default_factory=dict)
    #: GPUs the studio's container gets (the limit of ``gpu_resource``); None: none.
    gpu: int | None = Field(default=None, ge=1, le=64, strict=True)
    #: The extended resource GPUs are counted in (the device plugin's name).
    gpu_resource: ResourceName | None = "nvidia.com/gpu"
    #: Nodes the pod may run on: every label must match.
    node_selector: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    #: The pod's service account (its API token is mounted only then).
    service_account: KubeName | None = None

    @model_validator(mode="after")
    def _gpu_needs_a_resource(self) -> PodSettings:
        if self.gpu is not None and not self.gpu_resource:
            raise ValueError("gpu needs gpu_resource (the GPU's extended resource name, e.g. nvidia.com/gpu)")
        return self

    def with_memory_needed(self, tool: str, quantity: str) -> PodSettings:
        """A copy that also says ``tool`` needs ``quantity`` of memory to start (for IDE blocks)."""
        return PodSettings.model_validate({**self.model_dump(), "memory_needed": {**self.memory_needed, tool: quantity}})


class LifecyclePolicy(BaseModel):
    """When the engine stops a studio by itself (``adjust_lifecycle``; docs/lifecycle.md).

    ``idle_timeout``: stop after this long without activity; ``max_lifetime``:
    stop this long after it started, active or not. Durations with a unit
    (``30s``, ``90m``, ``8h``); ``None`` falls back to the data dir's default
    (``codestudio lifecycle set``), which is off unless set.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    idle_timeout: Duration | None = None
    max_lifetime: Duration | None = None


@dataclass(frozen=True)
class Activity:
    """Tool-level activity a block reports (``report_activity``).

    ``at``: when the tool was last active (epoch seconds, the engine's clock:
    convert the tool's own timestamps); ``busy``: it is working right now
    (a kernel executing), which counts as activity now; ``detail``: what
    ``studio status`` shows as the source ("1 kernel busy").
    """

    at: float | None = None
    busy: bool = False
    detail: str = ""


class StudioConnection:
    """How a ``report_activity`` hook asks the running studio's tool about itself.

    Requests go through the pod's guard like the gateway's, but marked as the
    engine's own, so they never count as activity themselves.
    """

    def browser_path(self, port: int) -> str:
        """``DKU_CODE_STUDIO_BROWSER_PATH_<port>`` of the studio (what a ``$request_uri`` server sees)."""
        raise NotImplementedError

    def get(self, port: int, path: str, *, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET ``path`` from the server on ``port``: (HTTP status, body). Raises OSError when unreachable."""
        raise NotImplementedError


class StarterFile(BaseModel):
    """A file written into a zone once, when the studio is created."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zone: Zone
    path: RelativePath
    content: bytes
    mode: int = 0o644


class SyncMapping(BaseModel):
    """One zone (or a subfolder of it) synced with a folder in the container."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zone: Zone
    subfolder: ZoneSubfolder | None = None
    target: ContainerPath
    one_way: bool = False


# --------------------------------------------------------------------------
# Build state


@dataclass(frozen=True)
class BlockInstance:
    """One block of a template, as hooks see it.

    ``index`` is the block's 0-based position in ``blocks``; ``params`` is an
    instance of the block's ``Params`` model.
    """

    index: int
    type: str
    params: BlockParams
    distribution: str = ""
    version: str = ""

    @property
    def label(self) -> str:
        return self.params.label or self.type

    @property
    def where(self) -> str:
        """How error messages name this block: ``blocks[2] (type: entrypoint)``."""
        return f"blocks[{self.index}] (type: {self.type})"


@dataclass
class StepGroup:
    """The Dockerfile steps of one block: one cacheable group, in template order."""

    block: BlockInstance | None
    title: str
    steps: list[Step] = field(default_factory=list)
    #: Folders the block's steps write (``contribute_stage``): they may build as a stage of their own.
    stage_paths: tuple[str, ...] = ()


@dataclass
class BuildState:
    """Everything the blocks applied so far have produced.

    Hooks receive it read-only (by convention): block *n* sees what blocks
    1..*n-1* contributed. The engine appends each hook's return value.
    """

    template_id: str
    base_image: str
    resources: ResourceResolver
    blocks: list[BlockInstance] = field(default_factory=list)
    groups: list[StepGroup] = field(default_factory=list)
    entrypoints: list[tuple[BlockInstance, Entrypoint]] = field(default_factory=list)
    actions: list[tuple[BlockInstance, Action]] = field(default_factory=list)
    code_envs: list[tuple[BlockInstance, CodeEnv]] = field(default_factory=list)
    starter_files: list[tuple[BlockInstance, StarterFile]] = field(default_factory=list)
    sync_mappings: list[SyncMapping] = field(default_factory=list)
    sync_exclusions: list[str] = field(default_factory=list)
    #: True once a ``file-sync`` block spoke; otherwise every zone maps two-way to its default target.
    sync_configured: bool = False
    env: dict[str, str] = field(default_factory=dict)
    probe: Probe | None = None
    extra_ports: list[int] = field(default_factory=list)
    #: Resources (and scheduling) of the studio's pod: what ``adjust_pod`` returned last.
    pod: PodSettings = field(default_factory=lambda: PodSettings())
    #: The block that set ``pod.memory`` last (errors about the limit name it).
    memory_block: BlockInstance | None = None
    #: Idle timeout and maximum lifetime: what ``adjust_lifecycle`` returned last.
    lifecycle: LifecyclePolicy = field(default_factory=lambda: LifecyclePolicy())

    def find_code_env(self, name: str) -> CodeEnv | None:
        for _, env in self.code_envs:
            if env.name == name:
                return env
        return None

    def port_owner(self, port: int) -> BlockInstance | None:
        """The block whose entrypoint already uses ``port``, if any."""
        for owner, ep in self.entrypoints:
            if ep.port == port:
                return owner
        return None

    @property
    def exposed_ports(self) -> list[int]:
        """Ports the gateway serves: exposed entrypoints in order, then extra ports."""
        ports = [ep.port for _, ep in self.entrypoints if ep.port and ep.expose_html]
        seen = set(ports)
        return ports + [p for p in self.extra_ports if p not in seen]

    @property
    def all_ports(self) -> list[int]:
        """Every container port: entrypoints (exposed or not) then extra ports."""
        ports = [ep.port for _, ep in self.entrypoints if ep.port]
        seen = set(ports)
        return ports + [p for p in self.extra_ports if p not in seen]

    def memory_shortfall(self) -> str | None:
        """Why ``pod.memory`` is below what the tools need to start (``memory_needed``), or None."""
        from codestudio.quantities import format_bytes, memory_bytes

        if self.pod.memory is None or not self.pod.memory_needed:
            return None
        need = sum(memory_bytes(v) for v in self.pod.memory_needed.values())
        if memory_bytes(self.pod.memory) >= need:
            return None
        where = f"{self.memory_block.where}: " if self.memory_block else ""
        tools = ", ".join(f"{tool} {q}" for tool, q in sorted(self.pod.memory_needed.items()))
        return (f"{where}field 'memory': {self.pod.memory} is below the {format_bytes(need)} the template's "
                f"tools need to start ({tools})")

    def effective_probe(self) -> Probe | None:
        """The probe blocks set, or TCP on the first exposed port."""
        if self.probe is not None:
            return self.probe
        ports = self.exposed_ports or self.all_ports
        return Probe(kind="tcp", port=ports[0]) if ports else None


class BlockProblem(ValueError):
    """Raise from a hook to reject the block's input: the engine reports it as a
    template error naming the file, the block and ``field`` (exit status 2)."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"field {field!r}: {message}")
