"""Reading a batch's items from its `items_url`, in the jobs worker.

The API answers at once with the batch `receiving`; a jobs worker fetches the file through the
SSRF guard and stages its items as they arrive (service/batches/receiving.py). One reader at a
time holds the batch's `reader` lease, renewed with every chunk. A reader that dies (or a
download that breaks off) leaves the lease to expire and the staged items to be thrown away:
`reconcile` starts the read again from the top, up to `MAX_READS` times, then fails the batch
with `ITEMS_READ_FAILED`. A read runs within `PIXHOOK_JOB_TIMEOUT`, like a job: at ~14,000
items a second, a million rows take ~70 s. A file that is refused (malformed, too many items, a
404) fails the batch at once, with the error it would have had as an upload. Never does a batch
run on part of its file.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx

from service.batches import engine
from service.batches.intake import ItemMaker, spec_batch
from service.batches.item_streams import ItemsFormat
from service.batches.receiving import open_batch, reconcile_refused, stage_file
from service.errors import InvalidInput
from service.fetch import MAX_REDIRECTS, tls_context
from service.jobs.batch_store import Batch
from service.runtime import Runtime
from webhooks import FORBIDDEN_ADDRESS, GuardedTransport, GuardRefused

log = logging.getLogger("pixhook.batches")

READ_BATCH_ITEMS = "read_batch_items"
MAX_READS = 3
_READER_TTL_S = 30.0
_CONNECT_TIMEOUT_S = 10.0
_STALL_TIMEOUT_S = 60.0  # the longest wait for the next bytes of the file
_RETRY_AFTER_S = 5.0  # times the reads so far
_FORMATS: dict[str, ItemsFormat] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json-lines": "jsonl",
    "application/x-jsonlines": "jsonl",
}
_EXTENSIONS: dict[str, ItemsFormat] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class _Unreachable(Exception):
    """The file could not be read this time; the next read may do better."""


def items_format(media_type: str, url: str) -> ItemsFormat | None:
    """CSV or JSON lines, as the Content-Type says, else as the URL's extension does."""
    found = _FORMATS.get(media_type.split(";")[0].strip().lower())
    if found is None:
        path = urlsplit(url).path.lower()
        found = next((fmt for ext, fmt in _EXTENSIONS.items() if path.endswith(ext)), None)
    return found


async def start_reading(runtime: Runtime, batch_id: str, reads: int = 0) -> None:
    """Have a jobs worker read the batch's items; `reads` is how many reads were started
    already (the id makes a second request for the same read a no-op)."""
    await runtime.redis.enqueue_job(
        READ_BATCH_ITEMS,
        batch_id,
        _job_id=f"batch-items:{batch_id}:{reads}",
        _defer_by=_RETRY_AFTER_S * reads if reads else None,
    )


async def read_items(runtime: Runtime, batch_id: str) -> None:
    """Read the items of a `receiving` batch and start it, or fail it; as its one reader."""
    token = secrets.token_hex(8)
    reads = await runtime.batches.take_reader(batch_id, token, _READER_TTL_S)
    if reads is None:
        return  # another worker is reading it
    try:
        batch = await runtime.batches.get(batch_id)
        if batch is not None and batch.status == "receiving":
            await _read(runtime, batch, reads)
    finally:
        await runtime.batches.release_reader(batch_id, token)


async def _read(runtime: Runtime, batch: Batch, reads: int) -> None:
    settings = runtime.settings
    try:
        plan = spec_batch(json.loads(await runtime.batches.spec(batch.id) or "null"), settings)
        assert plan.items_url is not None  # a receiving batch has one
        await runtime.batches.discard_staged(batch.id)  # what an earlier read left

        async def renew() -> None:
            await runtime.batches.renew_reader(batch.id, _READER_TTL_S)

        async with _download(plan.items_url, runtime) as (found_format, chunks):
            maker = ItemMaker(plan, found_format)
            received = await stage_file(
                runtime.batches,
                batch.id,
                maker,
                chunks,
                found_format,
                settings,
                "items_url",
                renew=renew,
            )
        if await open_batch(runtime, batch, received):
            log.info("batch %s read %d items from its items_url", batch.id, received.total)
    except InvalidInput as exc:
        await fail(runtime, batch, {"code": exc.code, "message": exc.message, "field": exc.field})
    except _Unreachable as exc:
        if reads >= MAX_READS:
            message = f"reading items_url failed {reads} times; the last time: {exc}"
            await fail(runtime, batch, _error("ITEMS_READ_FAILED", message))
        else:
            log.info("batch %s: reading items_url again later: %s", batch.id, exc)
            await start_reading(runtime, batch.id, reads)


async def fail(runtime: Runtime, batch: Batch, error: dict[str, Any]) -> None:
    """The batch's items could not be read: it ends `failed`, nothing of it having run."""
    if await runtime.batches.end_receiving(batch.id, "failed", error, time.time()):
        failed = await runtime.batches.get(batch.id)
        if failed is not None:
            await engine.announce(runtime, failed, "batch.failed")
        log.info("batch %s failed: %s", batch.id, error["message"])


async def cancel_receiving(runtime: Runtime, batch: Batch) -> bool:
    """Cancel a batch whose items are still being read: its reader stops at the commit."""
    if not await runtime.batches.end_receiving(batch.id, "canceled", None, time.time()):
        return False
    canceled = await runtime.batches.get(batch.id)
    if canceled is not None:
        await engine.announce(runtime, canceled, "batch.canceled")
    return True


async def reconcile_receiving(runtime: Runtime) -> None:
    """Start the read again of a receiving batch whose reader is gone, or fail the batch when
    it has been read `MAX_READS` times; record the refused items an opener left unrecorded."""
    await reconcile_refused(runtime)
    for batch_id in await runtime.batches.receiving():
        batch = await runtime.batches.get(batch_id)
        if batch is None or batch.status != "receiving":
            continue
        if await runtime.batches.reader_alive(batch_id):
            continue
        if batch.reads >= MAX_READS:
            message = f"the worker reading items_url stopped {batch.reads} times"
            await fail(runtime, batch, _error("ITEMS_READ_FAILED", message))
        else:
            await start_reading(runtime, batch_id, batch.reads)


@asynccontextmanager
async def _download(
    url: str, runtime: Runtime
) -> AsyncIterator[tuple[ItemsFormat, AsyncIterator[bytes]]]:
    settings = runtime.settings
    limit = settings.limits.max_batch_upload_bytes
    transport = GuardedTransport(
        settings.deliveries.allow_private_networks, httpx.AsyncHTTPTransport(verify=tls_context())
    )
    timeout = httpx.Timeout(_STALL_TIMEOUT_S, connect=_CONNECT_TIMEOUT_S)
    client = httpx.AsyncClient(
        transport=transport, timeout=timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS
    )
    try:
        async with client, client.stream("GET", url) as response:
            found_format = _checked(response, url, limit)
            async with aclosing(_capped(response, limit)) as chunks:
                yield found_format, chunks
    except GuardRefused as exc:
        if exc.reason == FORBIDDEN_ADDRESS:
            raise InvalidInput(
                f"items_url is not allowed: {exc}", code="URL_NOT_ALLOWED", field="items_url"
            ) from exc
        raise _Unreachable(f"items_url: {exc}") from exc
    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise _Unreachable(f"fetching items_url failed: {exc or type(exc).__name__}") from exc
    except httpx.HTTPError as exc:
        raise _fetch_failed(f"fetching items_url failed: {exc or type(exc).__name__}") from exc


def _checked(response: httpx.Response, url: str, limit: int) -> ItemsFormat:
    status = response.status_code
    if status in (408, 429) or status >= 500:
        raise _Unreachable(f"items_url answered {status}")
    if status != 200:
        raise _fetch_failed(f"items_url answered {status}")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    found = items_format(response.headers.get("content-type", ""), url)
    if found is None:
        raise InvalidInput(
            "items_url must serve CSV (text/csv, or a .csv path) or JSON lines "
            "(application/x-ndjson, or a .jsonl path), not "
            f"{response.headers.get('content-type', 'no Content-Type')!r}",
            code="UNKNOWN_ITEMS_FORMAT",
            field="items_url",
        )
    return found


async def _capped(response: httpx.Response, limit: int) -> AsyncGenerator[bytes, None]:
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        yield chunk


def _too_large(limit: int) -> InvalidInput:
    return InvalidInput(
        f"the items file is larger than {limit} bytes (PIXHOOK_MAX_BATCH_UPLOAD_BYTES)",
        code="PAYLOAD_TOO_LARGE",
        field="items_url",
    )


def _fetch_failed(message: str) -> InvalidInput:
    return InvalidInput(message, code="ITEMS_FETCH_FAILED", field="items_url")


def _error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "field": "items_url"}
