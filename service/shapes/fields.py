"""Field constraints that pydantic's own cannot say: bounds a setting sets, and choices known
only at run time (the output formats this Pillow encodes).

`Annotated[int, Bound("limits.max_output_side")]` checks the value against the settings in the
validation context (service/shapes/validation.py passes them) and writes the bound those settings
set into the JSON schema (service/api/openapi.py generates it with `schema_generator(settings)`),
so the document says what this deployment refuses. A refusal's message names its field with
`{field}`, which the validation mapping fills in.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Literal

from pydantic import (
    BaseModel,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    TypeAdapter,
    ValidationInfo,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from service.config import Settings

INVALID_INPUT = "INVALID_INPUT"
Keyword = Literal["maximum", "maxLength", "maxItems"]


class SettingsSchema(GenerateJsonSchema):
    """A JSON schema generator that knows the settings whose bounds it writes."""

    settings: Settings | None = None

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        # A field that may be left out but not sent as null (PATCH's fields) has a None
        # default in Python only: a `"default": null` its own schema refuses would be a lie.
        json_schema = super().default_schema(schema)
        if json_schema.get("default", ...) is None and not _allows_null(json_schema):
            del json_schema["default"]
        return json_schema


def _allows_null(schema: JsonSchemaValue) -> bool:
    kinds = schema.get("type")
    return (
        kinds == "null"
        or (isinstance(kinds, list) and "null" in kinds)
        or any(_allows_null(option) for option in schema.get("anyOf", ()))
    )


def schema_generator(settings: Settings) -> type[SettingsSchema]:
    return type("SettingsSchema", (SettingsSchema,), {"settings": settings})


@dataclass(frozen=True)
class Bound:
    """At most what `setting` (a dotted path into the settings: `limits.max_url_length`) says: a
    number's value, a string's or list's length."""

    setting: str
    keyword: Keyword = "maximum"
    message: str = ""  # `{field}` and `{bound}` filled in; a plain "at most" when empty
    code: str = INVALID_INPUT

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        generator = getattr(handler, "generate_json_schema", None)
        settings = getattr(generator, "settings", None) or Settings()
        return {**handler(schema), self.keyword: attrgetter(self.setting)(settings)}

    def _check(self, value: Any, info: ValidationInfo) -> Any:
        context = info.context
        settings = context["settings"] if context else Settings()
        bound = attrgetter(self.setting)(settings)
        if (value if self.keyword == "maximum" else len(value)) > bound:
            unit = {"maximum": "", "maxLength": " characters", "maxItems": " items"}[self.keyword]
            message = self.message or f"{{field}} must be at most {{bound}}{unit}"
            raise PydanticCustomError(self.code, message.replace("{bound}", str(bound)))
        return value


@dataclass(frozen=True)
class OneOf:
    """One of `choices` (strings), which may be known only at run time; anything else, of
    whatever type, is refused with `code` and the list of choices."""

    choices: Collection[str]
    code: str = INVALID_INPUT

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        listed = ", ".join(sorted(self.choices))
        return core_schema.custom_error_schema(
            core_schema.literal_schema(sorted(self.choices)),
            custom_error_type=self.code,
            custom_error_message=f"{{field}} must be one of: {listed}",
        )


@dataclass(frozen=True)
class Refused:
    """Whatever is wrong with the value, one refusal: `message` (its `{field}` filled in), with
    `code`. For a list whose every item matters to the caller as a whole."""

    message: str
    code: str = INVALID_INPUT

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.custom_error_schema(
            handler(source), custom_error_type=self.code, custom_error_message=self.message
        )


@dataclass(frozen=True)
class DocumentedAs:
    """Taken as it is here and validated later, piece by piece (a batch's items one by one, so
    that a bad one fails alone); the document shows it as `model`, by `$ref`. (pydantic's own
    `SkipValidation` would write the model out inline.)"""

    model: type[BaseModel]

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.any_schema()

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        model = self.model.__pydantic_core_schema__
        if "ref" not in model:  # already a definitions schema, which refers to its model
            return handler(model)
        reference = core_schema.definition_reference_schema(model["ref"])
        return handler(core_schema.definitions_schema(reference, [model]))


@dataclass(frozen=True)
class JsonText:
    """A string holding JSON (a multipart part): the document shows the model of that JSON."""

    model: Any  # a type pydantic reads

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        inner = handler(TypeAdapter(self.model).core_schema)
        return {"type": "string", "contentMediaType": "application/json", "contentSchema": inner}
