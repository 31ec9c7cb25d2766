"""What an `image.analyze` job may ask: the provider and model, the caller's instructions,
language, reply length and attribute schema, and the brands to look for."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from service.clients.brand_lists import NAME_PATTERN
from service.config import Settings
from service.errors import InvalidInput
from service.providers import attribute_schema
from service.providers.vision import DEFAULT_MAX_TOKENS
from service.shapes.fields import OneOf
from service.shapes.languages import normalise_language
from service.shapes.validation import REQUEST
from service.tasks.provider_choice import PROVIDERS, Models, default_model, model_list

MAX_BRANDS = 50
MAX_INSTRUCTIONS_CHARS = 2000
MAX_REPLY_TOKENS = 4096

Brand = Annotated[str, Field(min_length=1, max_length=100, pattern=r"\S")]


class AnalyzeInput(BaseModel):
    """The local analysis always; a provider adds what a vision model sees."""

    model_config = REQUEST
    provider: Annotated[str, OneOf(PROVIDERS)] | None = None
    model: Models | None = None
    known_brands: (
        Annotated[
            list[Brand],
            Field(
                json_schema_extra={"maxItems": MAX_BRANDS},
                description=f"at most {MAX_BRANDS}; more as a stored `brand_list`",
            ),
        ]
        | None
    ) = None
    brand_list: Annotated[
        str | None,
        Field(pattern=NAME_PATTERN, description="a brand list stored with PUT /v1/brand-lists"),
    ] = None
    instructions: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=MAX_INSTRUCTIONS_CHARS,
            description="free text added to the model's prompt",
        ),
    ] = None
    language: Annotated[
        str | None,
        Field(
            max_length=35,
            description='a BCP 47 tag ("ko", "zh-Hans", "pt-BR"): descriptions and tags in it',
        ),
    ] = None
    max_tokens: Annotated[
        int | None,
        Field(ge=1, le=MAX_REPLY_TOKENS, description=f"default {DEFAULT_MAX_TOKENS}"),
    ] = None
    attributes: Annotated[
        dict[str, Any] | None,
        Field(description="a JSON Schema (an object) of the attributes wanted, instead of ours"),
    ] = None


def parse_input(raw: AnalyzeInput, settings: Settings) -> dict[str, Any]:
    brands = sorted({brand.strip() for brand in raw.known_brands or ()})
    if len(brands) > MAX_BRANDS:
        raise InvalidInput(
            f"input.known_brands holds at most {MAX_BRANDS} brands, not {len(brands)}; store"
            " a longer list with PUT /v1/brand-lists/{name} and name it in input.brand_list",
            code="TOO_MANY_BRANDS",
            field="input.known_brands",
        )
    if brands and raw.brand_list is not None:
        raise InvalidInput(
            "give input.known_brands or input.brand_list, not both", field="input.brand_list"
        )
    return {
        "provider": raw.provider,
        "models": model_list(raw.model, default_model(raw.provider, settings, "vision")),
        "known_brands": brands,
        "brand_list": raw.brand_list,
        "instructions": None if raw.instructions is None else raw.instructions.strip(),
        "language": _language(raw.language),
        "max_tokens": raw.max_tokens or DEFAULT_MAX_TOKENS,
        "attributes": _attributes(raw.attributes),
    }


def _language(tag: str | None) -> str | None:
    if tag is None:
        return None
    language = normalise_language(tag)
    if language is None:
        raise InvalidInput(
            f"input.language {tag!r} is not a BCP 47 tag of a known language"
            ' (e.g. "ko", "en", "zh-Hans", "pt-BR")',
            code="UNKNOWN_LANGUAGE",
            field="input.language",
        )
    return language


def _attributes(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    if schema is None:
        return None
    problem = attribute_schema.schema_problem(schema)
    if problem is not None:
        where, message = problem
        raise InvalidInput(
            f"input.attributes is not a schema pixhook can use: {message}",
            code="INVALID_ATTRIBUTES_SCHEMA",
            field="input.attributes" + (f".{where}" if where else ""),
        )
    return schema
