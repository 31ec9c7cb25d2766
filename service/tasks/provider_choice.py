"""Which provider and model a job asks for: the input fields every provider-backed job type
shares, and the configured defaults."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from service.config import Settings

PROVIDERS = ("anthropic", "openai")
MAX_MODELS = 4

ModelName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"\S")]
# One model, or several to fall back on in order (on a 404, an overload or repeated 5xx).
Models = Annotated[
    ModelName | Annotated[list[ModelName], Field(min_length=1, max_length=MAX_MODELS)],
    Field(description="the provider's model, or a list to fall back on in order"),
]


def default_model(provider: str | None, settings: Settings, use: str) -> str:
    """The configured default model of `provider` for `use` ("vision" or "text")."""
    return str(getattr(settings.providers, f"{provider or 'openai'}_{use}_model"))


def model_list(given: str | list[str] | None, default: str) -> list[str]:
    if given is None:
        return [default]
    return list(dict.fromkeys([given] if isinstance(given, str) else given))
