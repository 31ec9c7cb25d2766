"""The shapes of `/healthcheck`, `/readyz` and `/info`, as pydantic models (see
service/jobs/view_models.py for how a view is built through its model)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from service.jobs.view_models import Number, View


class Alive(View):
    status: Literal["ok"]


class Ready(View):
    status: Literal["ready"]


class Unready(View):
    """Redis does not answer, or (with PIXHOOK_READYZ_PROVIDERS) a provider has no key in
    rotation; details are in the log, not told to whoever asks."""

    status: Literal["unavailable"]
    redis: Literal["unreachable"] | None = None
    providers_without_keys: list[str] | None = None


class ProviderModels(View):
    """The model each job type the provider serves uses when its input names none."""

    model_config = ConfigDict(extra="forbid", serialize_by_alias=True)
    image_analyze: str = Field(alias="image.analyze")
    image_generate: str | None = Field(None, alias="image.generate")
    text_generate: str = Field(alias="text.generate")


class ProviderKey(View):
    """One API key, by its last four characters: in rotation, or refused and since when."""

    hint: str
    in_rotation: bool
    status: int | None
    out_since: Number | None


class Provider(View):
    """A configured provider: where it is, its default models, the models it has prices for,
    and its keys by their last four characters, never a key."""

    name: Literal["anthropic", "openai"]
    host: str
    job_types: list[str]
    models: ProviderModels
    priced_models: list[str]
    api_key_set: bool
    keys: list[ProviderKey]


class WebhookFacts(View):
    retry_schedule_s: list[Number]
    signature: str


class Info(View):
    """This deployment: version, job types, formats, providers and limits."""

    name: Literal["pixhook"]
    version: str
    job_types: list[str]
    output_formats: list[str]
    input_formats: list[str]
    providers: list[Provider]
    # `Settings.limits()`, whatever they become.
    limits: dict[str, Number]
    webhooks: WebhookFacts
