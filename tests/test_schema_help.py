"""Help text of block and template fields: every field of a first-party block says what it does.

The descriptions are what ``codestudio schema`` prints and what the template
editor shows under each field; ``examples`` become the editor's placeholders.
A new field without a description fails here, a description or example that
says something the code does not accept fails here, and docs/blocks.md's
tables must list the same fields with the same defaults.
"""

from __future__ import annotations

import json
import re
import tomllib
import typing
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import BaseModel, Field, TypeAdapter

from codestudio.blockapi import BlockParams
from codestudio.plugins import load_plugins
from codestudio.schema import template_schema
from codestudio.template import TemplateHeader

ROOT = Path(__file__).resolve().parent.parent
#: The standard and advanced blocks: every distribution under plugins/.
FIRST_PARTY = frozenset(
    tomllib.loads(p.read_text())["project"]["name"] for p in sorted((ROOT / "plugins").glob("*/pyproject.toml"))
)


def undescribed(schema: dict, where: str = "") -> list[str]:
    """Every property under ``schema`` (nested objects, list items, map values, alternatives,
    ``$ref`` into ``$defs``) without a description, as dotted paths."""
    defs = schema.get("$defs", {})
    missing: list[str] = []
    seen: set[str] = set()

    def resolve(node: dict) -> dict:
        while isinstance(node, dict) and "$ref" in node:
            name = node["$ref"].split("/")[-1]
            if name in seen:
                return {}
            seen.add(name)
            node = defs[name]
        return node

    def walk(node: dict, path: str) -> None:
        node = resolve(node)
        if not isinstance(node, dict):
            return
        for name, prop in (node.get("properties") or {}).items():
            if not prop.get("description"):  # the field's own text, not its model's docstring
                missing.append(f"{path}{name}")
            walk(prop, f"{path}{name}.")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{path}*.")
        for alt in node.get("anyOf", []) + node.get("oneOf", []):
            walk(alt, path)

    walk(schema, where)
    return missing


def first_party_blocks():
    blocks = load_plugins()
    return {t: blocks.by_type[t] for t in blocks.types() if blocks.by_type[t].distribution in FIRST_PARTY}


def test_the_walk_finds_undescribed_fields_nested_in_models_lists_and_maps():
    class Inner(BaseModel):
        bare: int = 1
        told: int = Field(default=1, description="said")

    class Params(BlockParams):
        top: str = "x"
        inner: Inner = Field(default_factory=Inner, description="an inner model")
        rows: list[Inner] = Field(default_factory=list, description="rows")
        named: dict[str, Inner] | None = Field(default=None, description="a map")

    # `label` is described by BlockParams itself; Inner is walked once (its fields are the same everywhere).
    assert undescribed(Params.model_json_schema()) == ["top", "inner.bare"]


def test_every_plugins_distribution_is_installed():
    installed = {p.distribution for p in first_party_blocks().values()}
    assert installed == FIRST_PARTY


def test_every_field_of_every_standard_and_advanced_block_has_a_description():
    missing = [f"{t} ({plugin.distribution}): {path}"
               for t, plugin in first_party_blocks().items() for path in undescribed(plugin.Params.model_json_schema())]
    assert not missing, "fields without a description (pydantic Field(description=...)):\n" + "\n".join(missing)


def test_every_template_header_field_has_a_description():
    assert undescribed(TemplateHeader.model_json_schema()) == []


def test_codestudio_schema_carries_the_descriptions_and_examples():
    schema = template_schema(load_plugins())
    block_defs = {k: v for k, v in schema["$defs"].items() if k.startswith("block-")}
    for name, block in block_defs.items():
        if any(f"({dist} " in block["title"] for dist in FIRST_PARTY):
            assert undescribed({**block, "$defs": schema["$defs"]}) == [], name
    assert undescribed({k: v for k, v in schema.items() if k != "properties"} | {
        "properties": {k: v for k, v in schema["properties"].items() if k != "blocks"}}) == []
    kube = schema["$defs"]["block-kubernetes"]["properties"]
    assert "500m" in kube["cpu"]["examples"] and "Kubernetes quantity" in kube["cpu"]["description"]


def _models_in(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _all_models() -> list[type[BaseModel]]:
    todo: list[type[BaseModel]] = [TemplateHeader, *(p.Params for p in first_party_blocks().values())]
    out: list[type[BaseModel]] = []
    while todo:
        model = todo.pop()
        if model in out:
            continue
        out.append(model)
        for field in model.model_fields.values():
            todo += _models_in(field.annotation)
    return out


def _examples():
    for model in _all_models():
        for name, field in model.model_fields.items():
            for example in field.examples or []:
                yield pytest.param(model, name, example, id=f"{model.__name__}.{name}={json.dumps(example)[:40]}")


#: Fields whose examples are valid only with another field set (the models' own cross-field rules).
COMPANIONS = {
    "deb_url": {"sha256": "0" * 64},
    "debian_packages": {"language": "r"},
    "cran_repository": {"language": "r"},
    "cran_packages": {"language": "r", "cran_repository": "https://cloud.r-project.org/"},
}


@pytest.mark.parametrize(("model", "name", "example"), list(_examples()))
def test_every_example_is_a_value_the_field_accepts(model, name, example):
    field = model.model_fields[name]
    annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    TypeAdapter(annotation).validate_python(example)
    # And through the model's own validators, where the field alone makes a valid block.
    required = {n: model.model_fields[n].examples[0] for n, f in model.model_fields.items()
                if f.is_required() and n != name and f.examples}
    if all(not f.is_required() or n == name or n in required for n, f in model.model_fields.items()):
        model.model_validate({**required, **COMPANIONS.get(name, {}), name: example})


# --------------------------------------------------------------------------- docs/blocks.md tables

def _doc_tables() -> dict[str, dict[str, str]]:
    """``{block type: {parameter: default cell}}`` from the parameter tables of docs/blocks.md."""
    text = (ROOT / "docs" / "blocks.md").read_text()
    out: dict[str, dict[str, str]] = {}
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        heading, _, body = section.partition("\n")
        types = re.findall(r"`([a-z-]+)`", heading)
        rows = [line for line in body.splitlines() if line.startswith("| ")]
        if not types or not rows or not rows[0].startswith("| parameter"):
            continue
        header = [c.strip().strip("`") for c in rows[0].strip("|").split("|")]
        for row in rows[1:]:  # (the |---| line does not start with "| ")
            cells = [c.strip() for c in row.strip("|").split("|")]
            names = re.findall(r"`([a-z_][a-z0-9_]*)`", cells[0])
            for t in types:
                column = header.index(t) if t in header else 1
                cell = cells[column]
                if cell == "same":
                    cell = cells[1]
                for n in names:
                    out.setdefault(t, {})[n] = cell
    return out


def _literal(cell: str):
    m = re.fullmatch(r"`([^`]*)`(?: \(.*\))?", cell)
    if not m:
        return None, False
    try:
        return json.loads(m.group(1)), True
    except ValueError:
        return m.group(1), True


def test_docs_tables_list_every_field_of_the_standard_blocks():
    tables = _doc_tables()
    blocks = first_party_blocks()
    standard = [t for t, p in blocks.items() if p.distribution != "codestudio-advanced"]
    assert set(tables) == set(standard)
    for t in standard:
        fields = set(blocks[t].Params.model_fields) - {"label"}  # every block's label is documented once
        assert set(tables[t]) - {"label"} == fields, t


def test_docs_tables_give_the_schemas_defaults():
    blocks = first_party_blocks()
    for t, rows in _doc_tables().items():
        fields = blocks[t].Params.model_fields
        for name, cell in rows.items():
            field = fields[name]
            value, is_literal = _literal(cell)
            if field.is_required():
                assert cell == "(required)", (t, name, cell)
            elif field.default_factory is not None or field.default is not None:
                default = field.get_default(call_default_factory=True)
                assert is_literal and value == default, (t, name, cell, default)
            elif is_literal:
                # A default the block computes (none in the schema): the description says it too.
                assert f"default: {value}" in field.description, (t, name, cell, field.description)


def test_advanced_blocks_fields_are_shown_in_the_template_docs():
    text = (ROOT / "docs" / "templates.md").read_text()
    sections = dict(s.partition("\n")[::2] for s in re.split(r"^### ", text, flags=re.M)[1:])
    for t, plugin in first_party_blocks().items():
        if plugin.distribution != "codestudio-advanced":
            continue
        names = set(plugin.Params.model_fields) - {"label"}
        for model in _models_in_fields(plugin.Params):
            names |= set(model.model_fields)
        shown = sections[t.strip()] if t in sections else ""
        assert shown, f"docs/templates.md has no '### {t}' section"
        assert not [n for n in names if not re.search(rf"\b{n}\b", shown)], t


def _models_in_fields(model: type[BaseModel]) -> list[type[BaseModel]]:
    return [m for f in model.model_fields.values() for m in _models_in(f.annotation)]


def test_the_editors_header_help_is_the_template_headers_descriptions():
    # The editor draws the header fields itself (they are not a block); its help must say the same.
    js = (ROOT / "engine" / "codestudio" / "server" / "static" / "editor.js").read_text()
    helps = re.search(r"const helps = \{\n(.*?)\n    \};", js, flags=re.S).group(1)
    texts = {key: "".join(re.findall(r'"([^"]*)"', value))
             for key, value in re.findall(r'^\s*(\w+): ((?:"[^"]*"(?:\s*\+\s*)?)+),?$', helps, flags=re.M)}
    assert set(texts) == {"label", "description", "base_image"}
    for key, text in texts.items():
        assert text == TemplateHeader.model_fields[key].description, key


def test_the_template_docs_header_table_lists_the_header_fields():
    text = (ROOT / "docs" / "templates.md").read_text()
    header = text.split("## Header", 1)[1].split("\n## ", 1)[0]
    documented = {name for row in header.splitlines() if row.startswith("| `")
                  for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])}
    assert documented == set(TemplateHeader.model_fields)
