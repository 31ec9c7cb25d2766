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
    """Redis does not answer; why is in the log, not told to whoever asks."""

    status: Literal["unavailable"]
    redis: str


class ProviderModels(View):
    """The model each job type uses when its input names none."""

    model_config = ConfigDict(extra="forbid", serialize_by_alias=True)
    image_analyze: str = Field(alias="image.analyze")
    image_generate: str = Field(alias="image.generate")


class Provider(View):
    """A configured provider: where it is, and whether a key is set, never the key."""

    name: Literal["openai"]
    host: str
    models: ProviderModels
    api_key_set: bool


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
