"""JSON Schema of template files, including every installed block's parameters.

Editors (VS Code's YAML extension, JetBrains) use it to validate and
complete template files: ``codestudio schema > template.schema.json``.
"""

from __future__ import annotations

from codestudio.plugins import Blocks
from codestudio.template import TemplateHeader


def template_schema(blocks: Blocks) -> dict:
    header = TemplateHeader.model_json_schema()
    defs = dict(header.pop("$defs", {}))
    variants = []
    for block_type in blocks.types():
        plugin = blocks.by_type[block_type]
        schema = plugin.Params.model_json_schema()
        defs.update(schema.pop("$defs", {}))
        schema["properties"] = {"type": {"const": block_type, "description": plugin.summary}, **schema.get("properties", {})}
        schema["required"] = ["type", *schema.get("required", [])]
        schema["additionalProperties"] = False
        schema["title"] = f"{block_type} block ({plugin.distribution} {plugin.version})".strip()
        name = f"block-{block_type}"
        defs[name] = schema
        variants.append({"$ref": f"#/$defs/{name}"})
    header["properties"]["blocks"] = {
        "type": "array",
        "description": "Blocks, applied in this order.",
        "items": {"oneOf": variants} if variants else {},
    }
    header["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    header["title"] = "codestudio template"
    header["$defs"] = defs
    return header
