"""`POST /v1/estimate`: the tokens and cost an `image.analyze` job (or a batch of them) would
take, worked out from its body without making a job or calling a provider."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Union

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from service import imaging
from service.api.authentication import client_of
from service.api.bodies import read_job_request
from service.api.client_routes import ClientRoute
from service.api.operations import (
    BODY_ERRORS,
    JSON,
    MULTIPART,
    SHAPE_ERRORS,
    URL_ERRORS,
    Named,
    Operation,
    Reply,
    documented,
)
from service.batches.intake import JsonBatchRequest
from service.clients.brand_lists import BrandLists
from service.errors import InvalidInput, JobFailure
from service.fetch import fetch_image
from service.jobs.view_models import Number, View
from service.providers.estimates import Size
from service.runtime import Runtime, runtime
from service.submission import JobRequest, JobUpload, Submission, parse_job_type, read_submission
from service.tasks import analyze
from service.tasks.analyze_estimate import analyze_estimate

_ASSUMED = (
    "not fetched: assumed a square of PIXHOOK_VISION_MAX_SIDE, the largest photo pixhook sends"
    " (an upper bound)"
)


class InputTokens(View):
    text: int
    image: int
    total: int


class OutputTokens(View):
    max: Annotated[int, Field(description="the job's max_tokens: an upper bound")]
    typical: int


class Cost(View):
    max: Number
    typical: Number


class ImageSize(View):
    width: int
    height: int
    sent_width: int
    sent_height: int
    assumed: str | None = None


class Estimate(View):
    provider: str | None
    model: str | None
    input_tokens: InputTokens
    output_tokens: OutputTokens
    cost_usd: Annotated[Cost | None, Field(description="null: the model has no price")]
    image: ImageSize | None = None


class BatchEstimate(View):
    items: list[Estimate]
    input_tokens: Annotated[int, Field(description="all items'")]
    output_tokens: OutputTokens
    cost_usd: Annotated[Cost | None, Field(description="null: an item's model has no price")]


@documented(
    Operation(
        "Estimate an image.analyze job's (or batch's) tokens and cost; nothing is run or paid",
        (Reply(200, "the estimate", {JSON: Estimate | BatchEstimate}),),  # type: ignore[dict-item]
        body={
            JSON: Named("EstimateRequest", Union[JobRequest, JsonBatchRequest]),  # noqa: UP007
            MULTIPART: JobUpload,
        },
        errors={
            **BODY_ERRORS,
            422: (*SHAPE_ERRORS, *URL_ERRORS, "UNKNOWN_JOB_TYPE", "INVALID_IMAGE")
            + ("MISSING_IMAGE", "IMAGE_TOO_LARGE", "TOO_MANY_FRAMES", "IMAGE_TOO_COMPLEX")
            + ("IMAGE_FETCH_FAILED", "IMAGE_FETCH_TIMEOUT", "IMAGE_DNS_FAILURE")
            + ("INVALID_MULTIPART", "METADATA_TOO_LARGE", "INVALID_OUTPUT_NAME", "BATCH_TOO_LARGE")
            + ("INVALID_ATTRIBUTES_SCHEMA", "UNKNOWN_LANGUAGE", "TOO_MANY_BRANDS")
            + ("BRAND_LIST_NOT_FOUND",),
        },
    )
)
async def estimate(request: Request) -> JSONResponse:
    rt = runtime(request)
    settings = rt.settings
    # A job's body or a batch's: whichever cap is higher.
    limit = max(settings.limits.max_request_bytes, settings.limits.max_batch_bytes)
    body, upload = await read_job_request(request, limit, settings.json_shape)
    client_id = client_of(request).id
    if isinstance(body, dict) and "items" in body:
        return JSONResponse(BatchEstimate.render(await _batch(body, client_id, rt)))
    _analyze_only(body)
    submission = await read_submission(body, upload, settings)
    await BrandLists(rt.redis).require(client_id, submission.params.get("brand_list"))
    return JSONResponse(Estimate.render(await _job(submission, rt)))


async def _job(submission: Submission, rt: Runtime) -> dict[str, Any]:
    size = await _size(submission, rt)
    return analyze_estimate(submission.params, size, rt.settings)


async def _batch(body: dict[str, Any], client_id: str, rt: Runtime) -> dict[str, Any]:
    _analyze_only(body)
    items = body["items"]
    limit = rt.settings.limits.max_batch_items
    if not isinstance(items, list) or len(items) > limit:
        raise InvalidInput(
            f"items must be a list of at most {limit}", code="BATCH_TOO_LARGE", field="items"
        )
    estimates = [await _item(n, item, client_id, rt) for n, item in enumerate(items)]
    costs = [each["cost_usd"] for each in estimates]
    return {
        "items": estimates,
        "input_tokens": sum(each["input_tokens"]["total"] for each in estimates),
        "output_tokens": {
            bound: sum(each["output_tokens"][bound] for each in estimates)
            for bound in ("max", "typical")
        },
        "cost_usd": None
        if None in costs
        else {bound: round(sum(cost[bound] for cost in costs), 8) for bound in ("max", "typical")},
    }


async def _item(number: int, item: Any, client_id: str, rt: Runtime) -> dict[str, Any]:
    job_input = item.get("input") if isinstance(item, dict) else None
    try:
        submission = await read_submission(
            {"type": analyze.NAME, "input": job_input}, None, rt.settings, batch_item=True
        )
        await BrandLists(rt.redis).require(client_id, submission.params.get("brand_list"))
    except InvalidInput as exc:
        field = f"items[{number}]" + (f".{exc.field}" if exc.field else "")
        raise InvalidInput(exc.message, code=exc.code, field=field) from exc
    if submission.image is not None and submission.image.data is None:
        side = rt.settings.providers.vision_max_side
        figures = analyze_estimate(submission.params, Size(side, side), rt.settings)
        if "image" in figures:
            figures["image"]["assumed"] = _ASSUMED
        return figures
    return await _job(submission, rt)


async def _size(submission: Submission, rt: Runtime) -> Size:
    image = submission.image
    if image is None:
        raise InvalidInput("input.image is required", code="MISSING_IMAGE", field="input.image")
    if image.data is not None:
        return Size(image.description["width"], image.description["height"])
    settings = rt.settings
    try:
        data = await fetch_image(
            image.description["url"],
            settings.deliveries.allow_private_networks,
            max_bytes=settings.limits.max_image_bytes,
            connect_timeout_s=settings.deliveries.connect_timeout_s,
            deadline_s=settings.limits.image_fetch_timeout_s,
        )
        info = await asyncio.to_thread(imaging.inspect, data, settings.limits.max_image_pixels)
    except JobFailure as exc:
        raise InvalidInput(exc.message, code=exc.code, field="input.image.url") from exc
    except imaging.ImageRejected as exc:
        raise InvalidInput(str(exc), code=exc.code, field="input.image.url") from exc
    return Size(info.width, info.height)


def _analyze_only(body: Any) -> None:
    job_type = parse_job_type(body.get("type") if isinstance(body, dict) else None)
    if job_type != analyze.NAME:
        raise InvalidInput(
            f"only {analyze.NAME} jobs are estimated (they call a model)",
            code="UNKNOWN_JOB_TYPE",
            field="type",
        )


routes = [ClientRoute("/v1/estimate", estimate, methods=["POST"])]
