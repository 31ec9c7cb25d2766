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


class GenerationProvider(_Closed):
    model: str
    latency_ms: float
    attempts: int


class GenerateOutput(_Closed):
    """`image.generate`: the generated images, and the provider call that made them."""

    images: list[ImageView]
    provider: GenerationProvider


class AnalysisProvider(_Closed):
    """The vision call behind `attributes`; a cached answer says only what the cache kept."""

    name: Literal["openai"]
    model: str
    prompt_version: str | None = None
    usage: dict[str, Any] | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    attempts: int | None = None
    cached: bool


class AnalyzeOutput(_Closed):
    """`image.analyze`: `attributes` and `provider` only when a provider was asked."""

    # service/imaging/analysis.py and service/providers/vision.py own these two shapes.
    analysis: dict[str, Any]
    attributes: dict[str, Any] | None = None
    provider: AnalysisProvider | None = None
    # The view lists the images of every job type; an analysis stores none.
    images: list[ImageView]


JobOutput = TransformOutput | GenerateOutput | AnalyzeOutput
