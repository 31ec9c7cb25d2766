"""Reading request bodies safely: of a media type the route takes, capped, then parsed as JSON
or multipart."""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.types import Message

from service.errors import InvalidInput, InvalidJson, PayloadTooLarge, UnsupportedMediaType
from service.json_shape import JsonShape, check_shape, too_deep
from service.shapes.validation import refuse_unknown_fields

JSON = "application/json"
MULTIPART = "multipart/form-data"


def accepted_media_type(request: Request, *, multipart: bool) -> str:
    """`JSON` or (where the route takes files) `MULTIPART`, else `UnsupportedMediaType`: the
    same rule on every route. A body sent without a Content-Type is read as JSON."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type in (JSON, ""):
        return JSON
    if multipart and media_type == MULTIPART:
        return MULTIPART
    accepted = f"{JSON} or {MULTIPART}" if multipart else JSON
    raise UnsupportedMediaType(f"send {accepted}, not {media_type!r}")


async def read_json(request: Request, limit: int, shape: JsonShape) -> Any:
    """The body of a route that takes JSON only."""
    accepted_media_type(request, multipart=False)
    return parse_json(await read_body(request, limit), shape)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it passes `limit` bytes (Starlette itself never caps it)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)  # one copy, where growing a bytearray copies again and again


def parse_json(body: bytes, shape: JsonShape) -> Any:
    if not body:
        raise InvalidJson("the request body is empty; send a JSON object")
    try:
        value = json.loads(body)
    except RecursionError as exc:
        raise too_deep(shape, None) from exc
    except ValueError as exc:
        raise InvalidJson(f"the request body is not valid JSON: {exc}") from exc
    check_shape(value, shape)
    return value


async def read_job_request(
    request: Request, limit: int, shape: JsonShape
) -> tuple[Any, bytes | None]:
    """The job body and, for multipart requests, the uploaded image bytes."""
    media_type = accepted_media_type(request, multipart=True)
    body = await read_body(request, limit)
    if media_type == MULTIPART:
        return await _read_multipart(request, body, shape)
    return parse_json(body, shape), None


async def read_form(
    request: Request, body: bytes, *, fields: tuple[str, ...], files: tuple[str, ...]
) -> dict[str, Any]:
    """A multipart body's text `fields` (str) and `files` (bytes), every one of them required."""
    replayed = Request(request.scope, replay_receive(body))
    found: dict[str, Any] = {}
    try:
        async with replayed.form(max_files=len(files), max_fields=len(fields) + 4) as form:
            refuse_unknown_fields(form.keys(), (*fields, *files))
            for name in fields:
                value = form.get(name)
                if not isinstance(value, str):
                    raise InvalidInput(f"the multipart body needs a field {name!r}", field=name)
                found[name] = value.encode()
            for name in files:
                upload = form.get(name)
                if not isinstance(upload, UploadFile):
                    raise InvalidInput(f"the multipart body needs a file {name!r}", field=name)
                found[name] = await upload.read()
    except (HTTPException, MultiPartException) as exc:
        raise InvalidInput(
            f"the multipart body is malformed: {exc}", code="INVALID_MULTIPART"
        ) from exc
    return found


async def _read_multipart(
    request: Request, body: bytes, shape: JsonShape
) -> tuple[Any, bytes | None]:
    replayed = Request(request.scope, replay_receive(body))
    try:
        async with replayed.form(max_files=1, max_fields=8) as form:
            refuse_unknown_fields(form.keys(), ("job", "image"))
            job_part = form.get("job")
            image_part = form.get("image")
            if not isinstance(job_part, str):
                raise InvalidInput(
                    "a multipart request needs a 'job' field holding the JSON body", field="job"
                )
            image = await image_part.read() if isinstance(image_part, UploadFile) else None
    except (HTTPException, MultiPartException) as exc:
        raise InvalidInput(
            f"the multipart body is malformed: {exc}", code="INVALID_MULTIPART"
        ) from exc
    return parse_json(job_part.encode(), shape), image


def replay_receive(body: bytes) -> Any:
    """A `receive` that hands an ASGI app a body read already."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is larger than {limit} bytes")
