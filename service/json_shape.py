"""Limits on the shape of any JSON body, whatever its fields mean: nesting, strings, lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.errors import InvalidInput


@dataclass(frozen=True)
class JsonShape:
    """How deep, long and wide a JSON body may be, whatever its fields mean."""

    max_depth: int
    max_string_chars: int
    max_list_items: int
    # Strings that may be longer: an image sent as base64 has a byte limit of its own.
    long_string_keys: frozenset[str] = frozenset({"base64"})


def check_shape(value: Any, shape: JsonShape) -> None:
    """Refuse a body too deep, with too long a string or too long a list, naming where."""
    pending: list[tuple[Any, str, int]] = [(value, "", 0)]
    while pending:
        node, path, depth = pending.pop()
        if isinstance(node, dict | list):
            depth += 1
            if depth > shape.max_depth:
                raise too_deep(shape, path)
        if isinstance(node, dict):
            for key, inner in node.items():
                _check_string(key, path, shape.max_string_chars)
                pending.append((inner, f"{path}.{key}" if path else key, depth))
        elif isinstance(node, list):
            if len(node) > shape.max_list_items:
                raise InvalidInput(
                    f"a list holds at most {shape.max_list_items} items, not {len(node)}",
                    code="LIST_TOO_LONG",
                    field=path or None,
                )
            pending.extend((inner, f"{path}[{n}]", depth) for n, inner in enumerate(node))
        elif isinstance(node, str) and path.rpartition(".")[2] not in shape.long_string_keys:
            _check_string(node, path, shape.max_string_chars)


def _check_string(text: str, path: str, limit: int) -> None:
    if len(text) > limit:
        raise InvalidInput(
            f"a string holds at most {limit} characters, not {len(text)}",
            code="STRING_TOO_LONG",
            field=path or None,
        )


def too_deep(shape: JsonShape, path: str | None) -> InvalidInput:
    return InvalidInput(
        f"the JSON nests deeper than {shape.max_depth} levels",
        code="JSON_TOO_DEEP",
        field=path or None,
    )
