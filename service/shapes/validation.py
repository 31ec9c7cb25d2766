"""Validating a body against its pydantic model, and mapping a refusal into today's error body.

This is the one place a `ValidationError` becomes an `InvalidInput`: the first problem found
(an unknown field before anything else, as a caller who misspelt a name wants to hear that
first), its code, its message and its path (`input.variants.thumb.width`, `items[1]`).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from service.config import Settings
from service.errors import InvalidInput

UNKNOWN_FIELD = "UNKNOWN_FIELD"
# Request models refuse what they do not declare and never coerce ("100" is not a width).
REQUEST = ConfigDict(extra="forbid", strict=True, frozen=True)
# How alike (difflib's ratio, once case, '_' and '-' are set aside) a known name must be to be
# suggested: `webhook` -> `webhook_url` passes, `initial_image_url` -> `image` does not.
_CLOSE_ENOUGH = 0.75

Model = TypeVar("Model", bound=BaseModel)


def validated(model: type[Model], value: Any, settings: Settings, where: str = "") -> Model:
    """`value` as a `model`, or `InvalidInput` for its first problem; `where` prefixes the path
    (`input`); `settings` are the context the settings-bound limits read."""
    try:
        # The validator itself: `model_validate`'s wrapper costs a tenth of a small job's check.
        result: Model = model.__pydantic_validator__.validate_python(
            value, context={"settings": settings}
        )
        return result
    except ValidationError as exc:
        raise invalid_input(exc, model, where) from None


def invalid_input(exc: ValidationError, model: type[BaseModel], where: str = "") -> InvalidInput:
    errors = exc.errors(include_url=False)
    # Unknown fields first, at whatever depth: they are the caller's most likely mistake.
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    field = _path(where, error["loc"])
    if error["type"] == "extra_forbidden":
        name = str(error["loc"][-1])
        known = _fields_at(model, error["loc"][:-1])
        message = f"unknown field {name!r}; {_hint(name, known)}"
        return InvalidInput(message, code=UNKNOWN_FIELD, field=field)
    return InvalidInput(_message(error, field), code=_code(error), field=field or None)


def refuse_unknown_fields(names: Iterable[str], known: Collection[str]) -> None:
    """`UNKNOWN_FIELD` for the first of `names` not in `known`: for the parts of a multipart
    body, which arrive as a form rather than an object a model reads."""
    for name in names:
        if name not in known:
            message = f"unknown field {name!r}; {_hint(name, known)}"
            raise InvalidInput(message, code=UNKNOWN_FIELD, field=name)


def _code(error: ErrorDetails) -> str:
    # A validator that answers with a code of its own raises PydanticCustomError(CODE, ...).
    kind = error["type"]
    return kind if kind.isupper() else "INVALID_INPUT"


def _message(error: ErrorDetails, field: str) -> str:
    name = field.rsplit(".", 1)[-1]
    if error["type"].isupper() or not field:
        return error["msg"].replace("{field}", name or "the body")
    if error["type"] == "missing":
        return f"{field} is required"
    return f"{name}: {error['msg'][:1].lower()}{error['msg'][1:]}"


def _path(where: str, loc: tuple[int | str, ...]) -> str:
    path = where
    for part in loc:
        if part == "[key]":  # pydantic's mark of a refused dict key: the key is the field
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> Collection[str]:
    """The field names of the object at `loc` in `model`, through nested models, lists and
    dicts of them."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
    found = _model_in(current)
    return () if found is None else [info.alias or n for n, info in found.model_fields.items()]


def _step(annotation: Any, part: int | str) -> Any:
    """The type at `part` of a value of type `annotation`: a model's field, a list's or a
    dict's values; None when it is none of these."""
    for option in _options(annotation):
        if isinstance(option, type) and issubclass(option, BaseModel):
            field = option.model_fields.get(str(part))
            return None if field is None else field.annotation
        if get_origin(option) in (dict, list):
            return get_args(option)[-1]
    return None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for option in _options(annotation):
        if isinstance(option, type) and issubclass(option, BaseModel):
            return option
    return None


def _options(annotation: Any) -> list[Any]:
    """What a value of this type may be: `X | None` is X, `Annotated[X, ...]` is X."""
    if get_origin(annotation) is Annotated:
        return _options(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return [o for arg in get_args(annotation) for o in _options(arg)]
    return [] if annotation is type(None) else [annotation]


def _hint(name: str, known: Collection[str]) -> str:
    meant = _closest(name, known)
    if meant is not None:
        return f"did you mean {meant!r}?"
    return f"the fields here are: {', '.join(sorted(known))}"


def _closest(name: str, known: Collection[str]) -> str | None:
    folded = {_fold(option): option for option in known}
    matches = difflib.get_close_matches(_fold(name), folded, n=1, cutoff=_CLOSE_ENOUGH)
    return folded[matches[0]] if matches else None


def _fold(name: str) -> str:
    # webhookUrl, webhook-url and WEBHOOK_URL all mean webhook_url.
    return name.lower().replace("_", "").replace("-", "")
