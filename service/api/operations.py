"""What a route declares about itself, beside its code: `@documented(Operation(...))` with its
body and reply models, parameters and error codes; service/api/openapi.py builds the document
from these. Also the declarations many routes share."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from service.api.idempotency import KEY_HEADER, MAX_KEY_CHARS, REPLAYED_HEADER

Schema = dict[str, Any]
Endpoint = Callable[..., Any]
E = TypeVar("E", bound=Endpoint)

JSON = "application/json"
MULTIPART = "multipart/form-data"
# What reading any body can refuse, on every route that takes one.
BODY_ERRORS = {
    400: ("INVALID_JSON",),
    413: ("PAYLOAD_TOO_LARGE",),
    415: ("UNSUPPORTED_MEDIA_TYPE",),
}
# What any JSON body can be refused for, whatever the route: its shape and fields it does not take.
SHAPE_ERRORS = (
    "INVALID_INPUT",
    "UNKNOWN_FIELD",
    "JSON_TOO_DEEP",
    "STRING_TOO_LONG",
    "LIST_TOO_LONG",
)
URL_ERRORS = ("INVALID_URL", "URL_NOT_ALLOWED")
IDEMPOTENCY_ERRORS = ("IDEMPOTENCY_CONFLICT", "IDEMPOTENCY_IN_PROGRESS")


@dataclass(frozen=True)
class Named:
    """A component that is a type but not a model class: a union of models, named here."""

    name: str
    shape: Any  # a type pydantic reads: `A | B`, `Annotated[A | B, Field(discriminator=...)]`


# A body or reply: a model class, a named union, or a plain schema (a string, a file).
Body = type[BaseModel] | Named | Schema


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["query", "header"]
    schema: Schema
    description: str = ""


@dataclass(frozen=True)
class Reply:
    """One successful answer: its status, body per media type, headers and links."""

    status: int
    description: str
    content: Mapping[str, Body] = field(default_factory=dict)
    headers: Mapping[str, Schema] = field(default_factory=dict)
    links: Mapping[str, Schema] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    summary: str
    replies: tuple[Reply, ...]
    # status -> the `error.code`s a route answers with it (beyond AUTH_ERRORS when authenticated)
    errors: Mapping[int, Collection[str]] = field(default_factory=dict)
    authenticated: bool = True
    body: Mapping[str, Body] | None = None  # media type -> what it holds
    params: tuple[Param, ...] = ()
    description: str = ""


_OPERATIONS: dict[Endpoint, Operation] = {}


def documented(operation: Operation) -> Callable[[E], E]:
    """Declare what the decorated endpoint takes and answers, beside its code."""

    def attach(endpoint: E) -> E:
        _OPERATIONS[endpoint] = operation
        return endpoint

    return attach


def operation_of(endpoint: Endpoint) -> Operation | None:
    return _OPERATIONS.get(endpoint)


def idempotency_key() -> Param:
    # Printable ASCII without edge spaces, which HTTP strips from header values.
    pattern = f"^[!-~]([ -~]{{0,{MAX_KEY_CHARS - 2}}}[!-~])?$"
    return Param(KEY_HEADER, "header", {"type": "string", "pattern": pattern})


# On the reply to a request the idempotency cache answered.
REPLAYED = {REPLAYED_HEADER: {"required": False, "schema": {"const": "true"}}}


def links(param: str, *operation_ids: str) -> dict[str, Schema]:
    """Where the id in a reply's body leads: `param` of each of these operations."""
    return {
        operation_id: {"operationId": operation_id, "parameters": {param: "$response.body#/id"}}
        for operation_id in operation_ids
    }
