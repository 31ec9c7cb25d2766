"""CSV rows into item bodies: `{column}` templates, and the cells of named columns. Pure
functions: a row in, a value or an `InvalidInput` naming what the row lacks out."""

from __future__ import annotations

import string
from typing import Any

from service.errors import InvalidInput


def cell(row: dict[str, str], column: str, where: str) -> str:
    value = (row.get(column) or "").strip()
    if not value:
        raise InvalidInput(
            f"the row has no value in column {column!r}", code="TEMPLATE_FIELD_MISSING", field=where
        )
    return value


def check_template(value: Any, where: str) -> None:
    """Placeholders are plain column names: `{name}`, never `{0}`, `{a.b}` or `{a[0]}`."""
    if isinstance(value, dict):
        for key, inner in value.items():
            check_template(inner, f"{where}.{key}")
    elif isinstance(value, list):
        for position, inner in enumerate(value):
            check_template(inner, f"{where}[{position}]")
    elif isinstance(value, str):
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
        except ValueError as exc:
            raise InvalidInput(
                f"{where} is not a valid template: {exc}", code="INVALID_TEMPLATE", field=where
            ) from exc
        for name in names:
            if not name.isidentifier():
                raise InvalidInput(
                    f"{where}: placeholders name a CSV column, like {{color}}; not {{{name}}}",
                    code="INVALID_TEMPLATE",
                    field=where,
                )


def render(value: Any, row: dict[str, str], where: str) -> Any:
    if isinstance(value, dict):
        return {key: render(inner, row, f"{where}.{key}") for key, inner in value.items()}
    if isinstance(value, list):
        return [render(inner, row, f"{where}[{n}]") for n, inner in enumerate(value)]
    if not isinstance(value, str):
        return value
    names = [name for _, name, _, _ in string.Formatter().parse(value) if name]
    # An empty cell is as missing as an absent column: "photo of , white background" helps no one.
    missing = [name for name in names if not (row.get(name) or "").strip()]
    if missing:
        raise InvalidInput(
            f"the row has no value for {{{missing[0]}}}", code="TEMPLATE_FIELD_MISSING", field=where
        )
    return value.format_map({name: row[name].strip() for name in names})
