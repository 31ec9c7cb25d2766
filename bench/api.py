"""Talking to a bench's stack over its API: batch bodies, accepted POSTs, polling a batch to its
end, its results file, the API's timestamps."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bench.errors import BenchError
from bench.stack import check_alive

if TYPE_CHECKING:
    import httpx

    from service.cli.devstack import RunningStack


def unix_seconds(value: str) -> float:
    """One of the API's timestamps (`started_at`, `finished_at`, ...) as Unix seconds."""
    return datetime.fromisoformat(value).timestamp()


def batch_body(job_type: str, inputs: Iterable[dict[str, Any]], **fields: Any) -> bytes:
    """A batch of `job_type` jobs, one item per input; the `fields` that are not None go along
    (`webhook_url`, `concurrency`, ...)."""
    spec: dict[str, Any] = {"type": job_type, "items": [{"input": one} for one in inputs]}
    spec |= {name: value for name, value in fields.items() if value is not None}
    return json.dumps(spec, separators=(",", ":")).encode()


def post_accepted(api: httpx.Client, path: str, body: bytes) -> dict[str, Any]:
    """POST a JSON body that must be answered 202 (else BenchError); the record it answers."""
    response = api.post(path, content=body, headers={"content-type": "application/json"})
    if response.status_code != 202:
        raise BenchError(f"POST {path}: {response.status_code} {response.text[:300]}")
    created: dict[str, Any] = response.json()
    return created


@dataclass(frozen=True)
class Poll:
    """One look at a running batch."""

    at: float  # monotonic
    done: int  # succeeded, failed or canceled
    in_flight: int


def wait_for_batch(
    api: httpx.Client,
    stack: RunningStack,
    batch_id: str,
    timeout_s: float,
    on_poll: Callable[[Poll], None] | None = None,
    every_s: float = 0.1,
) -> dict[str, Any]:
    """Poll `GET /v1/batches/{id}` every `every_s` until the batch ends; its record. Each poll
    goes to `on_poll`; a stack process that exits or a timeout is a BenchError."""
    deadline = time.monotonic() + timeout_s
    while True:
        check_alive(stack)
        batch: dict[str, Any] = api.get(f"/v1/batches/{batch_id}").json()
        counts = batch["counts"]
        if on_poll is not None:
            done = counts["succeeded"] + counts["failed"] + counts["canceled"]
            on_poll(Poll(time.monotonic(), done, counts["in_flight"]))
        if batch["status"] != "running":
            return batch
        if time.monotonic() > deadline:
            raise BenchError(f"batch {batch_id} still running after {timeout_s:g}s: {counts}")
        time.sleep(every_s)


def results_of(api: httpx.Client, batch: dict[str, Any]) -> list[dict[str, Any]]:
    """The lines of an ended batch's results file."""
    response = api.get(batch["results"]["url"])
    if response.status_code != 200:
        raise BenchError(f"results file: {response.status_code} {response.text[:300]}")
    return [json.loads(line) for line in response.text.splitlines()]
