"""Template files: YAML -> validated models.

A template is a header (id, label, description, base image, permissions)
and an ordered list of blocks. Each block's parameters are validated by the
``Params`` model of the plugin that owns its ``type``. Every problem is
collected and reported at once, each naming the file, the YAML line, the
block (index and type), the field and the offending value.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from codestudio.blockapi import BlockInstance
from codestudio.errors import TemplateError
from codestudio.text import shown
from codestudio.plugins import Blocks
from codestudio.types import ImageRef, Label, Slug, Text

#: Block types shipped by the project, so a missing one names what to install.
KNOWN_DISTRIBUTIONS = {
    "dockerfile": "codestudio-advanced",
    "entrypoint": "codestudio-advanced",
    "action": "codestudio-advanced",
    "starter-files": "codestudio-advanced",
    "file-sync": "codestudio-advanced",
    "kubernetes": "codestudio-advanced",
    "vscode": "codestudio-vscode",
    "jupyterlab": "codestudio-jupyterlab",
    "rstudio": "codestudio-rstudio",
    "streamlit": "codestudio-streamlit",
    "codeenv": "codestudio-codeenv",
}


#: Templates are small; large content (starter files, scripts) belongs in resources.
MAX_TEMPLATE_BYTES = 1 << 20
#: Limits checked while the YAML is read, before anything is built from it
#: (docs/templates.md, "Limits"). Aliases count as what they expand to.
MAX_DEPTH = 32
MAX_NODES = 100_000
MAX_BLOCKS = 1_000


class Permissions(BaseModel):
    """Who may create studios from the template (admins always may)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    groups: list[Slug] = Field(
        default_factory=list,
        description="Groups whose members may create studios from the template.",
        examples=[["data-science"]],
    )
    all: bool = Field(default=False, description="Every signed-in user may create studios from the template.")


class BuildOptions(BaseModel):
    """How the template's image is built (docs/building.md); nothing here changes what runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    python_installer: Literal["uv", "pip"] | None = Field(
        default=None,
        description="What installs Python packages; default: the data dir's setting, else uv.",
    )
    parallel_stages: bool | None = Field(
        default=None,
        description="true: build the leading independent blocks (two or more) as parallel stages; "
        "false: one stage, blocks in order. Default: the data dir's setting, else false (on two cores "
        "the stages' copies cost more than the overlap saves).",
    )


class TemplateHeader(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Slug = Field(
        description="The template's id: lowercase letters, digits and '-', at most 63 characters; "
        "the image is localhost/codestudio/<id>.",
        examples=["jupyter-lab-template"],
    )
    label: Label | None = Field(default=None, description="Display name shown in lists (one line).")
    description: Text | None = Field(default=None, description="What the template is for, shown to users.")
    base_image: ImageRef | None = Field(
        default=None,
        description="Image to start from; default: the codestudio base image (codestudio base build). "
        "Another base must provide python3 and the user codestudio (uid 1000).",
        examples=["registry.example.com/studio-base:2026.1"],
    )
    permissions: Permissions = Field(
        default_factory=Permissions,
        description="Who may create studios from the template (admins always may): the initial grants.",
    )
    build: BuildOptions = Field(default_factory=BuildOptions, description="How the image is built.")
    blocks: list[Any] = Field(default_factory=list, description="Blocks, applied in this order.")


@dataclass
class Template:
    """A validated template: its header fields and block instances in order."""

    id: str
    label: str | None
    description: str | None
    base_image: str | None
    permissions: Permissions
    blocks: list[BlockInstance]
    path: Path
    build: BuildOptions = field(default_factory=BuildOptions)
    raw: dict = field(default_factory=dict, repr=False)
    lines: _Lines | None = field(default=None, repr=False)

    @property
    def folder(self) -> Path:
        """``${template.resources}``: the folder resources are relative to."""
        return self.path.parent


class _UniqueKeys:
    """Refuses duplicate mapping keys (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, f"a mapping key must be a plain value, not {type(key).__name__}", key_node.start_mark
                ) from None
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {shown(key)} (first on line {first + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


class _UniqueKeyLoader(_UniqueKeys, yaml.SafeLoader):
    """The pure-Python loader: its error messages are the ones reported."""


#: libyaml's parser when PyYAML has it (several times faster); same constructor.
_FastLoader = type("_FastLoader", (_UniqueKeys, yaml.CSafeLoader), {}) if hasattr(yaml, "CSafeLoader") else _UniqueKeyLoader
_FAST_EVENTS = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Lines:
    """Maps a location path (keys and indices) to its 1-based line in the YAML file."""

    def __init__(self, root: yaml.Node | None):
        self.root = root

    def line(self, loc: tuple) -> int | None:
        node, best = self.root, None
        if node is None:
            return None
        best = node.start_mark.line + 1
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if getattr(key, "value", None) == part:
                        best = key.start_mark.line + 1
                        node = value
                        break
                else:
                    return best
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                best = node.start_mark.line + 1
            else:
                return best
        return best


def _load(text: str, loader_class) -> tuple[Any, Any]:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def _check_limits(text: str, source: str, loader_class=yaml.SafeLoader) -> None:
    """Refuse a document that is too deep, too big or has too many blocks, from its events alone.

    The event stream is read without building anything (PyYAML's parser is
    not recursive), so a list nested 5,000 deep or an alias bomb costs only
    the events read up to the limit. Each anchor's expanded size and height
    are recorded when its node ends; an alias adds them where it is used, so
    the counts are those of the fully expanded document.
    """

    def refuse(event, message: str):
        raise TemplateError(source, [f"line {event.start_mark.line + 1}: {message}"])

    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (expanded nodes, height)
    # frames of open collections: [kind, anchor, nodes before it, height, children, is_blocks, last key]
    stack: list[list] = []
    total = 0
    blocks = 0
    for event in yaml.parse(text, Loader=loader_class):
        if isinstance(event, yaml.CollectionEndEvent):
            kind, anchor, before, height, *_ = stack.pop()
            if anchor is not None:
                anchors[anchor] = (total - before, height)
            if stack:
                stack[-1][3] = max(stack[-1][3], height + 1)
            continue
        if not isinstance(event, yaml.NodeEvent):
            continue
        depth = len(stack) + 1
        if isinstance(event, yaml.AliasEvent):
            if any(frame[1] == event.anchor for frame in stack):
                refuse(event, f"the alias *{shown(event.anchor, 40)[1:-1]} refers to a node it is inside (a recursive alias)")
            size, height = anchors.get(event.anchor, (1, 1))
        else:
            size, height = 1, 1
        total += size
        if total > MAX_NODES:
            refuse(event, f"more than {MAX_NODES} YAML nodes, counting each alias as what it expands to "
                          f"(the limit; large content belongs in resource files)")
        if depth + height - 1 > MAX_DEPTH:
            refuse(event, f"nested deeper than {MAX_DEPTH} levels, counting each alias as what it expands to (the limit)")
        parent = stack[-1] if stack else None
        if parent is not None:
            if parent[5]:
                blocks += 1
                if blocks > MAX_BLOCKS:
                    refuse(event, f"more than {MAX_BLOCKS} blocks (the limit)")
            is_value = parent[0] == "mapping" and parent[4] % 2 == 1
            is_blocks = is_value and len(stack) == 1 and parent[6] == "blocks"
            if parent[0] == "mapping" and not is_value:
                parent[6] = event.value if isinstance(event, yaml.ScalarEvent) else None
            parent[4] += 1
            parent[3] = max(parent[3], height + 1)
        else:
            is_blocks = False
        if isinstance(event, yaml.CollectionStartEvent):
            kind = "mapping" if isinstance(event, yaml.MappingStartEvent) else "sequence"
            stack.append([kind, event.anchor, total - 1, 1, 0, is_blocks and kind == "sequence", None])
        elif isinstance(event, yaml.ScalarEvent) and event.anchor is not None:
            anchors[event.anchor] = (1, 1)


def parse_yaml(text: str, source: str) -> tuple[Any, _Lines]:
    """Parse YAML text within the limits; syntax errors become a TemplateError with the line."""
    if len(text) > MAX_TEMPLATE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_TEMPLATE_BYTES:
        raise TemplateError(source, [f"larger than {MAX_TEMPLATE_BYTES // (1 << 20)} MiB: put large content in resource files"])
    try:
        try:
            _check_limits(text, source, _FAST_EVENTS)
            node, data = _load(text, _FastLoader)
        except yaml.YAMLError:
            # Report syntax errors in the pure-Python parser's words (it checks the limits again).
            _check_limits(text, source, yaml.SafeLoader)
            node, data = _load(text, _UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        raise TemplateError(source, [f"{where}invalid YAML: {shown(problem, 200)[1:-1]}" + (f" ({context})" if context else "")]) from None
    except ValueError as exc:
        # A value PyYAML cannot build, e.g. an integer of more than 4300 digits.
        raise TemplateError(source, [f"invalid YAML value: {shown(str(exc), 200)[1:-1]}"]) from None
    except RecursionError:
        raise TemplateError(source, [f"nested too deeply (the limit is {MAX_DEPTH} levels)"]) from None
    return data, _Lines(node)


def load_template(path: Path | str, blocks: Blocks) -> Template:
    """Read and validate a template file. Raises :class:`TemplateError` listing every problem."""
    path = Path(path)
    source = str(path)
    try:
        if not path.is_file():
            problem = "file not found" if not path.exists() else "not a regular file"
            raise TemplateError(source, [problem])
        if path.stat().st_size > MAX_TEMPLATE_BYTES:
            raise TemplateError(source, [f"larger than {MAX_TEMPLATE_BYTES // (1 << 20)} MiB: put large content in resource files"])
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TemplateError(source, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(source, [f"cannot read: {exc}"]) from None
    return parse_template(text, path.resolve(), blocks, source=source)


def parse_template(text: str, path: Path, blocks: Blocks, *, source: str | None = None) -> Template:
    source = source or str(path)
    if not text.strip():
        raise TemplateError(source, ["the file is empty: a template needs at least an id"])
    data, lines = parse_yaml(text, source)
    if data is None:
        raise TemplateError(source, ["the file is empty (only comments): a template needs at least an id"])
    if not isinstance(data, dict):
        raise TemplateError(source, [f"line 1: a template is a mapping (id, blocks, ...), not {type(data).__name__}"])

    problems: list[str] = []
    details: list[dict] = []
    listed = data.get("blocks") if isinstance(data.get("blocks"), list) else []

    def report(loc: tuple, where: str, message: str) -> None:
        line = lines.line(loc)
        prefix = f"line {line}: " if line else ""
        problems.append(f"{prefix}{where}{message}")
        details.append(_detail(loc, listed, line, problems[-1]))

    header: TemplateHeader | None = None
    try:
        header = TemplateHeader.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            report(loc, "", _describe(loc, err))

    raw_blocks = data.get("blocks") if isinstance(data.get("blocks"), list) else []
    instances: list[BlockInstance] = []
    for index, raw in enumerate(raw_blocks):
        base_loc: tuple = ("blocks", index)
        if not isinstance(raw, dict):
            report(base_loc, f"blocks[{index}]: ", f"a block is a mapping with a 'type', not {_show(raw)}")
            continue
        block_type = raw.get("type")
        if not isinstance(block_type, str) or not block_type:
            report(base_loc, f"blocks[{index}]: ", "field 'type' is required (the block type, e.g. 'dockerfile')")
            continue
        where = f"blocks[{index}] (type: {block_type}): "
        plugin = blocks.by_type.get(block_type)
        if plugin is None:
            report(base_loc + ("type",), where, _unknown_type(block_type, blocks))
            continue
        params_raw = {k: v for k, v in raw.items() if k != "type"}
        try:
            params = plugin.Params.model_validate(params_raw)
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err["loc"])
                report(base_loc + loc, where, _describe(loc, err))
            continue
        instances.append(
            BlockInstance(
                index=index,
                type=block_type,
                params=params,
                distribution=plugin.distribution,
                version=plugin.version,
            )
        )
    if problems or header is None:
        raise TemplateError(source, problems, details)
    return Template(
        id=header.id,
        label=header.label,
        description=header.description,
        base_image=header.base_image,
        permissions=header.permissions,
        blocks=instances,
        path=path,
        build=header.build,
        raw=data,
        lines=lines,
    )


def _detail(loc: tuple, listed: list, line: int | None, message: str) -> dict:
    """A problem's location for programs: block index and type, field path inside it."""
    if len(loc) >= 2 and loc[0] == "blocks" and isinstance(loc[1], int):
        raw = listed[loc[1]] if loc[1] < len(listed) else None
        block_type = raw.get("type") if isinstance(raw, dict) and isinstance(raw.get("type"), str) else None
        return {"block": loc[1], "type": block_type, "field": ".".join(str(p) for p in loc[2:]) or None,
                "line": line, "message": message}
    return {"block": None, "type": None, "field": ".".join(str(p) for p in loc) or None, "line": line, "message": message}


def _unknown_type(block_type: str, blocks: Blocks) -> str:
    installed = blocks.types()
    if block_type in blocks.disabled:
        return (
            f"block type {block_type!r} (from {blocks.disabled[block_type]}) is disabled by "
            "CODESTUDIO_PLUGINS / CODESTUDIO_DISABLED_PLUGINS"
        )
    for problem in blocks.problems:
        if problem.type == block_type:
            return f"block type {block_type!r} from {problem.distribution} failed to load: {problem.error}"
    if block_type in KNOWN_DISTRIBUTIONS:
        dist = KNOWN_DISTRIBUTIONS[block_type]
        return (
            f"block type {block_type!r} needs the distribution {dist}, which is not installed "
            f"(pip install {dist}); installed types: {', '.join(installed) or 'none'}"
        )
    close = difflib.get_close_matches(block_type, installed, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown block type {block_type!r}{hint} Installed types: {', '.join(installed) or 'none'}"


def _describe(loc: tuple, err: dict) -> str:
    field_path = ".".join(str(p) for p in loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"unknown field {field_path!r}"
    if err["type"] == "missing":
        return f"field {field_path!r} is required"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"field {field_path!r}: {msg} (got {_show(err.get('input'))})"


def _show(value: Any) -> str:
    return shown(value)
