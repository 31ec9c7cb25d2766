"""`/v1/brand-lists`: a client's named lists of brands, stored once and named by `image.analyze`
jobs (`input.brand_list`), so a long list is neither sent with each job nor put in each prompt."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.api.authentication import client_of
from service.api.bodies import read_json
from service.api.client_routes import ClientRoute
from service.api.operations import BODY_ERRORS, JSON, SHAPE_ERRORS, Operation, Reply, documented
from service.clients.brand_lists import (
    MAX_BRAND_CHARS,
    MAX_BRANDS,
    BrandList,
    BrandLists,
    BrandListSummary,
)
from service.errors import NotFound
from service.jobs.view_models import View
from service.jobs.views import iso
from service.json_shape import JsonShape
from service.runtime import runtime
from service.shapes.validation import REQUEST, validated

_MISSING = {404: ("BRAND_LIST_NOT_FOUND",)}
# Its own bounds, not the JSON limits of other bodies: 5,000 names of up to 100 characters
# (each at most 12 bytes as JSON escapes), and nothing nested.
_SHAPE = JsonShape(max_depth=2, max_string_chars=MAX_BRAND_CHARS, max_list_items=MAX_BRANDS)
_MAX_BYTES = MAX_BRANDS * (MAX_BRAND_CHARS * 12 + 4) + 1024

BrandName = Annotated[str, Field(min_length=1, max_length=MAX_BRAND_CHARS, pattern=r"\S")]


class BrandListBody(BaseModel):
    """The brands, in any order; duplicates are kept once."""

    model_config = REQUEST
    brands: Annotated[list[BrandName], Field(min_length=1, max_length=MAX_BRANDS)]


class BrandListInfo(View):
    name: str
    count: int
    # Changes whenever the brands do.
    version: str
    updated_at: str


class BrandListView(BrandListInfo):
    brands: list[str]


class BrandListPage(View):
    data: list[BrandListInfo]


@documented(
    Operation(
        f"Store a brand list (up to {MAX_BRANDS} names), replacing one of the same name",
        (Reply(200, "stored", {JSON: BrandListInfo}),),
        body={JSON: BrandListBody},
        errors={**BODY_ERRORS, 422: SHAPE_ERRORS},
    )
)
async def put_brand_list(request: Request) -> JSONResponse:
    rt = runtime(request)
    body = validated(BrandListBody, await read_json(request, _MAX_BYTES, _SHAPE), rt.settings)
    stored = await BrandLists(rt.redis).put(client_of(request).id, _name(request), body.brands)
    return JSONResponse(BrandListInfo.render(_info(stored)))


@documented(
    Operation("A brand list", (Reply(200, "the list", {JSON: BrandListView}),), errors=_MISSING)
)
async def get_brand_list(request: Request) -> JSONResponse:
    name = _name(request)
    stored = await BrandLists(runtime(request).redis).get(client_of(request).id, name)
    if stored is None:
        raise _not_found(name)
    return JSONResponse(BrandListView.render(_info(stored) | {"brands": list(stored.brands)}))


@documented(
    Operation("The client's brand lists, by name", (Reply(200, "them", {JSON: BrandListPage}),))
)
async def list_brand_lists(request: Request) -> JSONResponse:
    summaries = await BrandLists(runtime(request).redis).summaries(client_of(request).id)
    return JSONResponse(BrandListPage.render({"data": [_info(s) for s in summaries]}))


@documented(
    Operation(
        "Delete a brand list; jobs naming it that have not run fail BRAND_LIST_NOT_FOUND",
        (Reply(204, "deleted"),),
        errors=_MISSING,
    )
)
async def delete_brand_list(request: Request) -> Response:
    name = _name(request)
    if not await BrandLists(runtime(request).redis).delete(client_of(request).id, name):
        raise _not_found(name)
    return Response(status_code=204)


def _name(request: Request) -> str:
    name: str = request.path_params["list_name"]
    return name


def _info(stored: BrandList | BrandListSummary) -> dict[str, object]:
    count = stored.count if isinstance(stored, BrandListSummary) else len(stored.brands)
    return {
        "name": stored.name,
        "count": count,
        "version": stored.version,
        "updated_at": iso(stored.updated_at),
    }


def _not_found(name: str) -> NotFound:
    return NotFound(f"no brand list {name!r}", code="BRAND_LIST_NOT_FOUND", field="name")


routes = [
    ClientRoute("/v1/brand-lists", list_brand_lists, methods=["GET"]),
    ClientRoute("/v1/brand-lists/{list_name}", put_brand_list, methods=["PUT"]),
    ClientRoute("/v1/brand-lists/{list_name}", get_brand_list, methods=["GET"]),
    ClientRoute("/v1/brand-lists/{list_name}", delete_brand_list, methods=["DELETE"]),
]
