"""`POST /v1/batches/{id}/resume`: run a paused batch again, perhaps with a higher budget."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from service.api.bodies import parse_json, read_body
from service.api.client_routes import ClientRoute
from service.api.operations import BODY_ERRORS, JSON, SHAPE_ERRORS, Operation, Reply, documented
from service.api.routes.batches import batch_reply, own_batch
from service.batches.pausing import resume
from service.batches.views import BatchView
from service.jobs.usage_totals import MAX_BUDGET_USD, MIN_BUDGET_USD
from service.runtime import runtime
from service.shapes.validation import REQUEST, validated


class BatchResume(BaseModel):
    """What changes as the batch resumes: its budget, if given."""

    model_config = REQUEST
    max_cost: (
        Annotated[
            float,
            Field(
                ge=MIN_BUDGET_USD,
                le=MAX_BUDGET_USD,
                description="US dollars: the new budget, above what it has cost",
            ),
        ]
        | None
    ) = None


@documented(
    Operation(
        "Resume a paused batch",
        (Reply(200, "running again", {JSON: BatchView}),),
        body={JSON: BatchResume},
        errors={
            404: ("BATCH_NOT_FOUND",),
            **BODY_ERRORS,
            409: ("BATCH_NOT_PAUSED", "BUDGET_REACHED"),
            422: SHAPE_ERRORS,
        },
        description="Items start again (those put back when every provider key was refused "
        "first) and a `batch.resumed` event is sent. A batch paused for its budget resumes only "
        "with a `max_cost` above what it has cost.",
    )
)
async def resume_batch(request: Request) -> JSONResponse:
    rt = runtime(request)
    batch = await own_batch(request, rt.batches)
    body = await read_body(request, rt.settings.limits.max_request_bytes)
    asked = BatchResume()
    if body.strip():
        asked = validated(BatchResume, parse_json(body, rt.settings.json_shape), rt.settings)
    await resume(rt, batch, asked.max_cost)
    return JSONResponse(await batch_reply(request, batch.id))


routes = [ClientRoute("/v1/batches/{batch_id}/resume", resume_batch, methods=["POST"])]
