"""What each job type's `output` looks like to callers, as pydantic models.

The job types store their images under storage keys; the view swaps each key for a fresh signed
`url` (service/jobs/views.py). A job's output is one of these, told apart by their fields.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, WithJsonSchema


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageView(_Closed):
    """One stored image (`transform._store`, `generate._store`), its key swapped for a `url`."""

    name: str
    media_type: str
    format: str
    width: int
    height: int
    bytes: int
    url: Annotated[str, WithJsonSchema({"type": "string", "format": "uri"})]


class TransformOutput(_Closed):
    """`image.transform`: one image per variant (`default` without variants)."""

    images: list[ImageView]


class TokenUsageView(_Closed):
    """Tokens as the provider billed them; cached input is billed at its own price."""

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int


class SkippedModel(_Closed):
    """A model of the list that did not answer, and why."""

    model: str
    code: str


class ProviderCall(_Closed):
    """The provider call behind an output: who answered, what it used and cost, how it went.
    A cached answer (`cached`) cost this job nothing: its figures are the original call's."""

    name: Literal["anthropic", "openai"]
    # The model that answered: with a list of models, perhaps not the first.
    model: str
    usage: TokenUsageView
    # US dollars by the price table; null for a model it does not price.
    cost_usd: float | None
    latency_ms: float
    attempts: int
    # Streamed calls: time to the first text, and the pieces the text came in.
    ttft_ms: float | None = None
    chunks: int = 0
    chunks_per_s: float | None = None
    # The answering key's last four characters.
    key: str
    skipped_models: list[SkippedModel] = []
    cached: bool = False
    prompt_version: str | None = None


class GenerateOutput(_Closed):
    """`image.generate`: the generated images, and the provider call that made them."""

    images: list[ImageView]
    provider: ProviderCall


class AnalyzeOutput(_Closed):
    """`image.analyze`: `attributes` and `provider` only when a provider was asked."""

    # service/imaging/analysis.py and service/providers/vision.py own these two shapes.
    analysis: dict[str, Any]
    attributes: dict[str, Any] | None = None
    provider: ProviderCall | None = None
    # The view lists the images of every job type; an analysis stores none.
    images: list[ImageView]


JobOutput = TransformOutput | GenerateOutput | AnalyzeOutput
