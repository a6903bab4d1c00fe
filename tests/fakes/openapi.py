"""Checks bodies against Replicate's OpenAPI spec (../shared/reference/replicate-openapi.json).

The spec is OpenAPI 3.1 but still marks optional values with 3.0's ``nullable: true``; that is
turned into ``type: [T, "null"]`` so jsonschema reads it as the API means it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

SPEC = Path(__file__).resolve().parents[3] / "shared" / "reference" / "replicate-openapi.json"


def _nullable(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _nullable(v) for k, v in node.items()}
        if node.pop("nullable", False) and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        return node
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    return node


@functools.cache
def _validator(name: str) -> Any:
    import jsonschema

    spec = _nullable(json.loads(SPEC.read_text()))
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": spec["components"]})


def available() -> bool:
    try:
        import jsonschema  # noqa: F401
    except ImportError:
        return False
    return SPEC.exists()


def problems(name: str, instance: Any) -> list[str]:
    """What is wrong with ``instance`` as the spec's ``name`` schema; empty when the spec is absent."""
    if not available():
        return []
    return [
        f"{name}: {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator(name).iter_errors(instance)
    ]
