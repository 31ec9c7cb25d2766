"""Naming the schemas a union holds inline, so that a generated client names them too.

A client generator has no name for `{"anyOf": [{"enum": [...]}, {"type": "null"}]}`'s first
member, or for an object a `["object", "null"]` allows, and makes one up: openapi-python-client
writes `TransformJobInputFitType0`. `name_union_members` lifts each such member (an object, an
enum, or an array of either) into a component of its own, named after the property that holds
it (`Fit`, or `TransformVariantFit` when `Fit` is taken by another shape); the same shape
anywhere gets the same component.
"""

from __future__ import annotations

import json
from typing import Any

Schema = dict[str, Any]
REF = "#/components/schemas/{model}"


def name_union_members(schemas: dict[str, Schema]) -> dict[str, Schema]:
    """`schemas` (components by name) with the members of their unions named beside them."""
    lifter = _Lifter(dict(schemas))
    for name, schema in list(schemas.items()):
        lifter.schemas[name] = lifter.walk(name, schema)
    return dict(sorted(lifter.schemas.items()))


class _Lifter:
    def __init__(self, schemas: dict[str, Schema]) -> None:
        self.schemas = schemas
        self._names: dict[str, str] = {}  # a shape's JSON -> the component it became

    def walk(self, owner: str, schema: Schema) -> Schema:
        """`schema` with the union members in its properties (at any depth) named."""
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return schema
        walked = {prop: self._property(owner, prop, inner) for prop, inner in properties.items()}
        return {**schema, "properties": walked}

    def _property(self, owner: str, prop: str, schema: Schema) -> Schema:
        schema = _as_union(schema)
        hint = "".join(part[:1].upper() + part[1:] for part in prop.split("_"))
        if "anyOf" in schema:
            members = [self._member(owner, hint, member) for member in schema["anyOf"]]
            return {**schema, "anyOf": members}
        if "properties" in schema:  # a plain object: its generated name is its place
            return self.walk(owner + hint, schema)
        items = schema.get("items")
        if schema.get("type") == "array" and isinstance(items, dict):
            return {**schema, "items": self._property(owner, f"{prop}_item", items)}
        return schema

    def _member(self, owner: str, hint: str, member: Schema) -> Schema:
        items = member.get("items")
        if member.get("type") == "array" and isinstance(items, dict) and _anonymous(items):
            return {**member, "items": self._lift(owner, hint + "Item", items)}
        return self._lift(owner, hint, member) if _anonymous(member) else member

    def _lift(self, owner: str, hint: str, schema: Schema) -> Schema:
        key = json.dumps(schema, sort_keys=True)
        name = self._names.get(key)
        if name is None:
            name = hint if hint not in self.schemas else owner + hint
            while name in self.schemas:
                name += "_"
            self._names[key] = name
            self.schemas[name] = {}  # taken before its own members are named
            self.schemas[name] = self.walk(name, schema)
        return {"$ref": REF.format(model=name)}


def _as_union(schema: Schema) -> Schema:
    """`{"type": ["object", "null"], ...}` as the `anyOf` it means, for objects and enums."""
    kinds = schema.get("type")
    if not (isinstance(kinds, list) and "null" in kinds and len(kinds) == 2):
        return schema
    (kind,) = [k for k in kinds if k != "null"]
    if kind != "object" and "enum" not in schema:
        return schema
    member = {key: value for key, value in schema.items() if key not in ("default", "title")}
    outer: Schema = {key: schema[key] for key in ("default", "title") if key in schema}
    return {**outer, "anyOf": [{**member, "type": kind}, {"type": "null"}]}


def _anonymous(schema: Schema) -> bool:
    """An object or an enum written out in place: what a generator would have to name."""
    return "$ref" not in schema and (
        schema.get("type") == "object" or "properties" in schema or "enum" in schema
    )
