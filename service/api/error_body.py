"""The error body every refusal answers: `{"error": {"code", "message", "field"}}`.

`app.error_response` writes it; the document shows, per route and status, the same shape with
the codes that route can answer there (`error_model`), so a client knows them by name.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(description="stable; docs/errors.md lists every one")
    message: str = Field(description="for people; may change")
    field: str | None = Field(description="the offending field's path, e.g. input.width")


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail


def error_model(operation_id: str, status: int, codes: Collection[str]) -> type[ErrorBody]:
    """`ErrorBody` with `code` one of `codes`: named `CreateJob422Error` for create_job's 422."""
    return _error_model(operation_id, status, tuple(sorted(set(codes))))


@cache  # one class per route and status, however often the document is built
def _error_model(operation_id: str, status: int, codes: tuple[str, ...]) -> type[ErrorBody]:
    name = "".join(part.title() for part in operation_id.split("_")) + f"{status}Error"
    code: Any = Literal[codes]
    detail = create_model(f"{name}Detail", __base__=ErrorDetail, code=(code, ...))
    return create_model(name, __base__=ErrorBody, error=(detail, ...))


def error_body(code: str, message: str, field: str | None) -> dict[str, Any]:
    return ErrorBody(error=ErrorDetail(code=code, message=message, field=field)).model_dump()
