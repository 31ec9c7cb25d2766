"""The caller's `attributes`: a JSON Schema of the fields they want from the model.

Checked when the job is submitted (`schema_problem`); the model's reply is then made to fit it
(`conform`): repaired where the intent is plain (a "true" string for a boolean, "12" for a
number, a single string where a list is asked, extra keys where none are allowed), else refused
with PROVIDER_BAD_RESPONSE naming the path that does not fit.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.exceptions import best_match as best_error

from service.providers.errors import PROVIDER_BAD_RESPONSE, ProviderError

MAX_SCHEMA_BYTES = 20_000
MAX_SCHEMA_DEPTH = 12


def canonical(schema: dict[str, Any]) -> str:
    """One text for one schema, whatever its key order: what the cache key digests."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def schema_digest(schema: dict[str, Any] | None) -> str:
    return "" if schema is None else hashlib.sha256(canonical(schema).encode()).hexdigest()


def schema_problem(schema: dict[str, Any]) -> tuple[str, str] | None:
    """(the path within the schema, what is wrong) for a schema pixhook cannot use, else None."""
    if len(canonical(schema).encode()) > MAX_SCHEMA_BYTES:
        return "", f"the schema is larger than {MAX_SCHEMA_BYTES} bytes as JSON"
    if _depth(schema) > MAX_SCHEMA_DEPTH:
        return "", f"the schema nests deeper than {MAX_SCHEMA_DEPTH} levels"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return _path(exc.absolute_path), f"not a valid JSON Schema: {exc.message}"
    if schema.get("type") != "object":
        return "type", 'the schema must describe an object ("type": "object")'
    for path, ref in _refs(schema, ""):
        if not ref.startswith("#"):
            return path, "a $ref may only point within the schema (#/...)"
    return None


def conform(value: Any, schema: dict[str, Any]) -> Any:
    """`value` repaired where the intent is plain, and valid against `schema`; otherwise
    PROVIDER_BAD_RESPONSE naming the first path that does not fit."""
    repaired = _repair(value, schema)
    error = best_error(Draft202012Validator(schema).iter_errors(repaired))
    if error is not None:
        where = _path(error.absolute_path) or "the reply"
        raise ProviderError(
            f"the model's attributes do not fit the schema at {where}: {error.message}",
            code=PROVIDER_BAD_RESPONSE,
            retryable=False,
        )
    return repaired


def _repair(value: Any, schema: Any) -> Any:
    if not isinstance(schema, dict):
        return value
    types = schema.get("type", [])
    types = {types} if isinstance(types, str) else set(types)
    if isinstance(value, str) and "string" not in types:
        value = _from_text(value.strip(), types)
    if "array" in types and isinstance(value, str | int | float | bool):
        value = [value]
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_repair(item, schema["items"]) for item in value]
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False and not schema.get("patternProperties"):
            value = {key: inner for key, inner in value.items() if key in properties}
        return {key: _repair(inner, properties.get(key)) for key, inner in value.items()}
    return value


def _from_text(text: str, types: set[str]) -> Any:
    if "boolean" in types and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if types & {"integer", "number"}:
        try:
            number = float(text)
        except ValueError:
            return text
        if "integer" in types and math.isfinite(number) and number.is_integer():
            return int(number)
        if "number" in types and math.isfinite(number):
            return number
    if "null" in types and text.lower() in ("null", "none", ""):
        return None
    return text


def _depth(node: Any) -> int:
    if isinstance(node, dict):
        return 1 + max(map(_depth, node.values()), default=0)
    if isinstance(node, list):
        return 1 + max(map(_depth, node), default=0)
    return 0


def _refs(node: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(node, list):
        return [ref for n, item in enumerate(node) for ref in _refs(item, f"{path}[{n}]")]
    if not isinstance(node, dict):
        return []
    here = f"{path}.$ref" if path else "$ref"
    found = [(here, node["$ref"])] if isinstance(node.get("$ref"), str) else []
    for key, inner in node.items():
        found += _refs(inner, f"{path}.{key}" if path else key)
    return found


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
