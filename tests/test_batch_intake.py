"""Batch intake: items streamed from a CSV or JSON lines upload, or read by a worker from
`items_url`; references and metadata from columns; limits that leave nothing behind."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import secrets
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest
from redis import Redis

from service.batches.intake import ItemMaker, spec_batch
from service.batches.item_streams import CsvRows
from service.batches.receiving import new_batch, stage_file
from service.keys import KEYS
from service.runtime import Runtime
from tests.support.batches import results_of
from tests.support.in_process import InProcessApi
from tests.support.jobs import error_of
from tests.support.raw_servers import Response, Scripted
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import Receiver

GENERATE = {"type": "image.generate", "input": {"prompt": "photo of {name}", "width": 256}}
CATALOGUE = "sku,name,color\nSKU-1,mug,red\nSKU-2,lamp,green\nSKU-3,chair,blue\n"


@pytest.fixture
def api(in_process_api: httpx.Client) -> httpx.Client:
    return in_process_api


def multipart(*parts: tuple[str, str | None, str | None, bytes]) -> tuple[bytes, str]:
    """A multipart body of (name, filename, content type, data) parts, in this order."""
    boundary = secrets.token_hex(12)
    body = b""
    for name, filename, content_type, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        body += head.encode() + b"\r\n" + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def upload(
    api: httpx.Client,
    spec: dict[str, Any],
    data: str | bytes,
    *,
    part: str = "csv",
    content_type: str = "text/csv",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    raw = data.encode() if isinstance(data, str) else data
    body, media_type = multipart(
        ("batch", None, None, json.dumps(spec).encode()), (part, "items", content_type, raw)
    )
    return api.post(
        "/v1/batches", content=body, headers={"content-type": media_type, **(headers or {})}
    )


def ended(api: httpx.Client, batch_id: str, timeout_s: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        batch: dict[str, Any] = api.get(f"/v1/batches/{batch_id}").json()
        return batch if batch["status"] not in ("receiving", "running") else None

    return wait_until(done, timeout_s, f"batch {batch_id} to end")


def jobs_of(api: httpx.Client, batch: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Each item's job view, by index."""
    lines = results_of(api, batch)
    return {line["index"]: api.get(f"/v1/jobs/{line['job_id']}").json() for line in lines}


def batch_keys(app: InProcessApi) -> list[bytes]:
    with Redis.from_url(app.redis_url) as redis:
        return sorted(redis.scan_iter(match=KEYS.batch("*")))


def test_a_csv_upload_takes_references_and_metadata_from_its_columns(
    api: httpx.Client, in_process_receivers: Callable[..., Receiver]
) -> None:
    receiver = in_process_receivers()
    spec = GENERATE | {
        "reference_column": "sku",
        "metadata_columns": ["color"],
        "metadata": {"product": "{name}", "source": "catalogue"},
        "item_webhooks": True,
        "webhook_url": receiver.url,
    }

    response = upload(api, spec, CATALOGUE)

    assert response.status_code == 202, response.text
    batch = ended(api, response.json()["id"])
    assert batch["counts"]["succeeded"] == 3
    jobs = jobs_of(api, batch)
    assert jobs[1]["reference"] == "SKU-2"
    assert jobs[1]["metadata"] == {"product": "lamp", "source": "catalogue", "color": "green"}
    assert jobs[1]["input"]["prompt"] == "photo of lamp"
    hooks = receiver.wait_for(4, timeout_s=30)
    items = {
        h.payload["data"]["reference"]: h.payload
        for h in hooks
        if h.payload["type"] == "job.completed"
    }
    assert items["SKU-3"]["data"]["metadata"]["color"] == "blue"


def test_a_jsonl_upload_keeps_each_lines_reference_and_metadata(api: httpx.Client) -> None:
    lines = [
        {
            "input": {"prompt": f"photo of item {n}", "width": 256},
            "reference": f"SKU-{n}",
            "metadata": {"row": n},
        }
        for n in range(3)
    ]
    data = "".join(json.dumps(line) + "\n" for line in lines)

    response = upload(
        api, {"type": "image.generate"}, data, part="items", content_type="application/x-ndjson"
    )

    assert response.status_code == 202, response.text
    jobs = jobs_of(api, ended(api, response.json()["id"]))
    assert [jobs[n]["reference"] for n in range(3)] == ["SKU-0", "SKU-1", "SKU-2"]
    assert jobs[2]["metadata"] == {"row": 2}


def test_json_items_keep_their_reference(api: httpx.Client) -> None:
    item = {"input": {"prompt": "a mug", "width": 256}, "reference": "SKU-42"}

    response = api.post("/v1/batches", json={"type": "image.generate", "items": [item]})

    assert response.status_code == 202, response.text
    [job] = jobs_of(api, ended(api, response.json()["id"])).values()
    assert job["reference"] == "SKU-42"


def test_an_empty_reference_cell_fails_that_item_alone(api: httpx.Client) -> None:
    rows = "sku,name\nSKU-1,mug\n,lamp\n"

    response = upload(api, GENERATE | {"reference_column": "sku"}, rows)

    assert response.status_code == 202, response.text
    batch = ended(api, response.json()["id"])
    assert batch["counts"]["succeeded"] == 1
    [failure] = batch["failures"]
    assert failure["index"] == 1
    assert failure["error"]["code"] == "TEMPLATE_FIELD_MISSING"
    assert failure["error"]["field"] == "items[1].reference"


def test_a_row_refused_at_intake_keeps_its_reference_in_its_failure_and_results(
    api: httpx.Client,
) -> None:
    rows = "sku,name\nSKU-1,mug\nSKU-2,\n"

    response = upload(api, GENERATE | {"reference_column": "sku"}, rows)

    assert response.status_code == 202, response.text
    batch = ended(api, response.json()["id"])
    [failure] = batch["failures"]
    assert (failure["reference"], failure["error"]["field"]) == ("SKU-2", "items[1].input.prompt")
    results = api.get(f"/v1/batches/{batch['id']}/results.csv").text
    assert results.splitlines()[2].startswith("1,SKU-2,failed,TEMPLATE_FIELD_MISSING,")


@pytest.mark.parametrize(
    ("named", "field"),
    [
        ({"reference_column": "SKU"}, "reference_column"),
        ({"metadata_columns": ["color", "size"]}, "metadata_columns"),
    ],
)
def test_a_column_the_file_lacks_refuses_the_batch(
    make_app: Callable[..., InProcessApi], named: dict[str, Any], field: str
) -> None:
    app = make_app()

    response = upload(app.http(app.client.api_key), GENERATE | named, CATALOGUE)

    assert response.status_code == 422
    assert error_of(response)["code"] == "UNKNOWN_COLUMN"
    assert error_of(response)["field"] == field
    assert batch_keys(app) == []


def test_the_batch_part_must_come_first(api: httpx.Client) -> None:
    body, media_type = multipart(
        ("csv", "items.csv", "text/csv", CATALOGUE.encode()),
        ("batch", None, None, json.dumps(GENERATE).encode()),
    )

    response = api.post("/v1/batches", content=body, headers={"content-type": media_type})

    assert response.status_code == 422
    assert error_of(response)["code"] == "BATCH_SPEC_NOT_FIRST"
    assert error_of(response)["field"] == "batch"


def test_a_malformed_jsonl_line_refuses_the_batch(api: httpx.Client) -> None:
    data = '{"input": {"prompt": "a", "width": 256}}\n{"input": \n'

    response = upload(
        api, {"type": "image.generate"}, data, part="items", content_type="application/jsonl"
    )

    assert response.status_code == 422
    assert error_of(response)["code"] == "INVALID_JSONL"
    assert "line 2" in error_of(response)["message"]


def test_a_batch_over_the_item_limit_is_refused_and_leaves_nothing_in_redis(
    make_app: Callable[..., InProcessApi],
) -> None:
    app = make_app(PIXHOOK_MAX_BATCH_ITEMS="1500")
    rows = "sku,name\n" + "".join(f"SKU-{n},item {n}\n" for n in range(2000))

    response = upload(app.http(app.client.api_key), GENERATE, rows)

    assert response.status_code == 422
    assert error_of(response)["code"] == "BATCH_TOO_LARGE"
    assert batch_keys(app) == []  # the first 1000 rows were staged, then thrown away


def test_an_upload_over_the_byte_limit_is_refused_and_leaves_nothing(
    make_app: Callable[..., InProcessApi],
) -> None:
    app = make_app(PIXHOOK_MAX_BATCH_UPLOAD_BYTES="100000")
    rows = "sku,name\n" + "".join(f"SKU-{n},item {n}\n" for n in range(10_000))
    chunks = [rows.encode()[i : i + 8192] for i in range(0, len(rows), 8192)]
    body, media_type = multipart(
        ("batch", None, None, json.dumps(GENERATE).encode()), ("csv", "c.csv", "text/csv", b"")
    )
    head, tail = (
        body.split(b"\r\n\r\n\r\n", 1)[0] + b"\r\n\r\n",
        b"\r\n" + body.rsplit(b"\r\n", 2)[1],
    )

    async def cut() -> httpx.Response:
        async def stream() -> AsyncIterator[bytes]:  # no Content-Length: found out as read
            yield head
            for chunk in chunks:
                yield chunk
            yield tail + b"\r\n"

        transport = httpx.ASGITransport(app.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            headers = {"content-type": media_type, "authorization": f"Bearer {app.client.api_key}"}
            return await http.post("/v1/batches", content=stream(), headers=headers)

    response = app.call(cut)

    assert response.status_code == 413
    assert error_of(response)["code"] == "PAYLOAD_TOO_LARGE"
    assert batch_keys(app) == []


def test_an_upload_broken_off_midway_leaves_no_batch(make_app: Callable[..., InProcessApi]) -> None:
    app = make_app()
    rows = "".join(f"SKU-{n},item {n}\n" for n in range(3000)).encode()
    body, media_type = multipart(
        ("batch", None, None, json.dumps(GENERATE).encode()), ("csv", "c.csv", "text/csv", b"")
    )
    head = body.split(b"\r\n\r\n\r\n", 1)[0] + b"\r\n\r\n" + b"sku,name\n"

    async def broken() -> None:
        async def stream() -> AsyncIterator[bytes]:
            yield head
            yield rows
            raise ConnectionResetError("the client went away")

        transport = httpx.ASGITransport(app.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            headers = {"content-type": media_type, "authorization": f"Bearer {app.client.api_key}"}
            with pytest.raises(ConnectionResetError):
                await http.post("/v1/batches", content=stream(), headers=headers)

    app.call(broken)

    assert batch_keys(app) == []
    with Redis.from_url(app.redis_url) as redis:
        assert list(redis.scan_iter(match=KEYS.job("*"))) == []


def test_a_retry_with_the_same_idempotency_key_after_a_failed_upload_creates_the_batch(
    api: httpx.Client,
) -> None:
    key = {"idempotency-key": "catalogue-2026-12"}
    bad = upload(api, GENERATE | {"reference_column": "SKU"}, CATALOGUE, headers=key)
    assert error_of(bad)["code"] == "UNKNOWN_COLUMN"

    first = upload(api, GENERATE | {"reference_column": "sku"}, CATALOGUE, headers=key)
    again = upload(api, GENERATE | {"reference_column": "sku"}, CATALOGUE, headers=key)
    other = upload(api, GENERATE, CATALOGUE, headers=key)

    assert first.status_code == 202, first.text
    assert again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert error_of(other)["code"] == "IDEMPOTENCY_CONFLICT"


def test_the_api_does_not_hold_the_whole_upload(make_app: Callable[..., InProcessApi]) -> None:
    app = make_app(PIXHOOK_MAX_BATCH_UPLOAD_BYTES=str(64 * 1024 * 1024))
    padding = "x" * 4000  # a long column no template uses: a big file of few rows
    rows, chunk = 4000, 50
    body, media_type = multipart(
        ("batch", None, None, json.dumps(GENERATE).encode()), ("csv", "c.csv", "text/csv", b"")
    )
    head = body.split(b"\r\n\r\n\r\n", 1)[0] + b"\r\n\r\n" + b"name,notes\n"
    tail = b"\r\n" + body.rsplit(b"\r\n", 2)[1] + b"\r\n"
    size = rows * (len(padding) + 12)

    async def send() -> tuple[httpx.Response, int]:
        async def stream() -> AsyncIterator[bytes]:
            yield head
            for start in range(0, rows, chunk):
                yield "".join(f"item {n},{padding}\n" for n in range(start, start + chunk)).encode()
                await asyncio.sleep(0)
            yield tail

        transport = httpx.ASGITransport(app.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            headers = {"content-type": media_type, "authorization": f"Bearer {app.client.api_key}"}
            tracemalloc.start()
            try:
                response = await http.post("/v1/batches", content=stream(), headers=headers)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        return response, peak

    response, peak = app.call(send)

    assert response.status_code == 202, response.text
    assert response.json()["counts"]["total"] == rows
    assert peak < size / 4, f"peak {peak} bytes for a {size}-byte upload"


# Items read from a URL, by the jobs worker.


def served(serve: Callable[[Scripted], Scripted], body: str, content_type: str) -> Scripted:
    headers = {"content-type": content_type}
    return serve(Scripted(lambda n: Response(200, headers, body.encode())))


@pytest.mark.parametrize("content_type", ["text/csv", "application/octet-stream"])
def test_items_url_of_a_csv_is_read_by_a_worker(
    api: httpx.Client, serve: Callable[[Scripted], Scripted], content_type: str
) -> None:
    server = served(serve, CATALOGUE, content_type)  # else the .csv path says which
    spec = GENERATE | {"reference_column": "sku", "items_url": server.url("/catalogue.csv")}

    response = api.post("/v1/batches", json=spec)

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "receiving"
    assert response.json()["progress"] == 0.0
    assert response.json()["items_url"] == spec["items_url"]
    batch = ended(api, response.json()["id"])
    assert batch["status"] == "completed"
    assert batch["counts"]["succeeded"] == 3
    assert sorted(job["reference"] for job in jobs_of(api, batch).values()) == [
        "SKU-1",
        "SKU-2",
        "SKU-3",
    ]


def test_items_url_of_json_lines_is_read_by_a_worker(
    api: httpx.Client, serve: Callable[[Scripted], Scripted]
) -> None:
    lines = "".join(
        json.dumps({"input": {"prompt": f"item {n}", "width": 256}, "reference": f"R{n}"}) + "\n"
        for n in range(4)
    )
    server = served(serve, lines, "application/x-ndjson")

    response = api.post(
        "/v1/batches", json={"type": "image.generate", "items_url": server.url("/export")}
    )

    assert response.status_code == 202, response.text
    batch = ended(api, response.json()["id"])
    assert batch["counts"]["succeeded"] == 4
    assert jobs_of(api, batch)[3]["reference"] == "R3"


def test_items_url_with_a_column_it_lacks_fails_the_batch_and_announces_it(
    api: httpx.Client,
    serve: Callable[[Scripted], Scripted],
    in_process_receivers: Callable[..., Receiver],
) -> None:
    receiver = in_process_receivers()
    server = served(serve, CATALOGUE, "text/csv")
    spec = GENERATE | {
        "metadata_columns": ["size"],
        "items_url": server.url("/c.csv"),
        "webhook_url": receiver.url,
    }

    batch_id = api.post("/v1/batches", json=spec).json()["id"]

    [hook] = receiver.wait_for(1, timeout_s=30)
    assert hook.verified
    assert hook.payload["type"] == "batch.failed"
    batch = api.get(f"/v1/batches/{batch_id}").json()
    assert batch["status"] == "failed"
    assert batch["error"]["code"] == "UNKNOWN_COLUMN"
    assert batch["counts"]["total"] == 0
    assert batch["results"] is None


def test_items_url_that_answers_404_fails_the_batch(
    api: httpx.Client, serve: Callable[[Scripted], Scripted]
) -> None:
    server = serve(Scripted(lambda n: Response(404)))

    response = api.post("/v1/batches", json=GENERATE | {"items_url": server.url("/gone.csv")})

    batch = ended(api, response.json()["id"])
    assert batch["status"] == "failed"
    assert batch["error"]["code"] == "ITEMS_FETCH_FAILED"


def test_items_url_is_read_again_from_the_top_after_a_reader_died(
    make_app: Callable[..., InProcessApi], serve: Callable[[Scripted], Scripted]
) -> None:
    app = make_app()
    api = app.http(app.client.api_key)
    server = served(serve, CATALOGUE, "text/csv")
    batch_id = api.post("/v1/batches", json=GENERATE | {"items_url": server.url("/c.csv")}).json()[
        "id"
    ]
    with Redis.from_url(app.redis_url) as redis:  # a reader that died after staging 2 rows
        redis.rpush(KEYS.batch(batch_id, "staged"), '0:{"type":"image.generate"}', "1:!")
        redis.hset(KEYS.batch(batch_id), "reads", 1)
    assert api.get(f"/v1/batches/{batch_id}").json()["status"] == "receiving"

    app.start_worker("jobs")

    batch = ended(api, batch_id)
    assert batch["status"] == "completed"
    assert batch["counts"]["total"] == 3
    # Its three rows, not the dead reader's two entries (no provider here: the jobs fail).
    assert sorted(line["index"] for line in results_of(api, batch)) == [0, 1, 2]
    assert all(f["error"]["code"] != "INVALID_INPUT" for f in batch["failures"])


def test_a_receiving_batch_can_be_canceled(make_app: Callable[..., InProcessApi]) -> None:
    app = make_app()  # no worker: it stays receiving
    api = app.http(app.client.api_key)
    spec = GENERATE | {"items_url": "http://127.0.0.1:9/c.csv"}
    batch_id = api.post("/v1/batches", json=spec).json()["id"]

    response = api.post(f"/v1/batches/{batch_id}/cancel")

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "canceled"
    assert response.json()["results"] is None


def test_refused_items_an_api_left_unrecorded_are_recorded_by_the_worker(
    make_app: Callable[..., InProcessApi],
) -> None:
    """An API that died between opening a batch and recording its refused items would leave
    the batch one item short of its end for ever."""
    app = make_app()
    runtime: Runtime = app.app.state.runtime
    plan = spec_batch(GENERATE | {"reference_column": "sku"}, app.settings)
    rows = "sku,name\nSKU-1,mug\n,lamp\n"

    async def opened_then_died() -> str:
        async def chunks() -> AsyncIterator[bytes]:
            yield rows.encode()

        maker = ItemMaker(plan, "csv")
        received = await stage_file(
            runtime.batches, "bat_crashed", maker, chunks(), "csv", app.settings, "csv"
        )
        batch = new_batch("bat_crashed", app.client.client.id, plan, time.time(), received.total)
        assert await runtime.batches.commit(replace(batch, status="running"))
        return batch.id

    batch_id = app.call(opened_then_died)
    app.start_worker("jobs")

    api = app.http(app.client.api_key)
    batch = ended(api, batch_id)
    refused = {f["index"]: f["error"] for f in batch["failures"]}  # no provider: 0 fails too
    assert refused[1]["field"] == "items[1].reference"
    assert batch["counts"]["total"] == 2


def test_csv_rows_split_at_any_byte_read_as_the_whole_file_does() -> None:
    """A chunk may end inside a quoted value, a \\r\\n or a UTF-8 character."""
    data = 'sku,note\r\nA1,"two\nlines, ""quoted"""\r\nB2,\r\n\r\nC3,"é, ü"\n'.encode()
    whole = list(csv.DictReader(io.StringIO(data.decode(), newline="")))
    for size in range(1, 9):
        stream = CsvRows("csv")
        rows = [
            row for at in range(0, len(data), size) for row in stream.feed(data[at : at + size])
        ]
        assert rows + stream.close() == whole, f"chunks of {size} bytes"


def test_an_upload_whose_staged_items_expired_is_refused_not_run_short(
    make_app: Callable[..., InProcessApi],
) -> None:
    app = make_app()
    body, media_type = multipart(
        ("batch", None, None, json.dumps(GENERATE).encode()), ("csv", "c.csv", "text/csv", b"")
    )
    head = body.split(b"\r\n\r\n\r\n", 1)[0] + b"\r\n\r\n" + b"name\n"
    tail = b"\r\n" + body.rsplit(b"\r\n", 2)[1] + b"\r\n"

    async def slow() -> httpx.Response:
        async def stream() -> AsyncIterator[bytes]:
            yield head
            yield "".join(f"item {n}\n" for n in range(1500)).encode()
            await asyncio.sleep(0.2)  # the first 1,000 are staged by now
            with Redis.from_url(app.redis_url) as redis:  # ...and expire, as after 10 minutes
                for key in redis.scan_iter(match=KEYS.batch("*:staged")):
                    redis.delete(key)
            yield "".join(f"item {n}\n" for n in range(1500, 2000)).encode()
            yield tail

        transport = httpx.ASGITransport(app.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            headers = {"content-type": media_type, "authorization": f"Bearer {app.client.api_key}"}
            return await http.post("/v1/batches", content=stream(), headers=headers)

    response = app.call(slow)

    assert response.status_code == 422, response.text
    assert error_of(response)["code"] == "UPLOAD_TOO_SLOW"
    assert batch_keys(app) == []
