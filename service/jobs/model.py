"""A job as it is stored, its statuses, and who is told when one ends."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from service.records import known_fields

JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "canceled"})


@dataclass(frozen=True)
class Job:
    id: str
    type: str
    client_id: str
    input: dict[str, Any]
    # Where the uploaded input image is stored; None when the job fetches it from input.image.url.
    input_key: str | None
    created_at: float
    status: JobStatus = "queued"
    started_at: float | None = None
    finished_at: float | None = None
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # The caller's own id for it (a SKU): echoed in views, events and results, and indexed.
    reference: str | None = None
    # Its outputs' file names, a template (service/tasks/output_names.py); None: the job's folder.
    output_name: str | None = None
    webhook_url: str | None = None
    webhook_events: tuple[str, ...] = ("completed",)
    sequence: int = 0
    # Items of a batch: which batch, and the item's position in it (see service/batches/).
    batch_id: str | None = None
    batch_index: int | None = None
    # The X-Request-ID of the request that created the job, so the worker's log lines carry it.
    request_id: str | None = None
    # Which run of the job this is, and how many a transient failure may take before the job
    # fails for good (a batch item's `item_attempts`; 1 for a job of its own). A retry, automatic
    # or asked for, runs the same job again: the errors of the runs before are kept in order.
    attempt: int = 1
    max_attempts: int = 1
    earlier_errors: list[dict[str, Any]] = field(default_factory=list)
    # What its provider call cost, recorded as it ended (service/providers/usage.py): tokens by
    # kind and US dollars; None when it made no call, or (cost) the model has no price.
    usage: dict[str, int] | None = None
    cost_usd: float | None = None

    def to_json(self) -> str:
        # Shallow: `asdict` deep-copies input and output first, 7x the cost for the same bytes.
        shallow = {f.name: getattr(self, f.name) for f in fields(self)}
        return json.dumps(shallow, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Job:
        data = json.loads(raw)
        data["webhook_events"] = tuple(data["webhook_events"])
        return cls(**known_fields(cls, data))


JobEndListener = Callable[[Job], Awaitable[None]]


class JobEndListeners:
    """What else must happen when a job ends, registered at startup by the packages above the
    jobs (a batch records its item's result); `service.lifecycle` calls them, in order."""

    def __init__(self) -> None:
        self._listeners: list[JobEndListener] = []

    def listen(self, listener: JobEndListener) -> None:
        self._listeners.append(listener)

    async def notify(self, job: Job) -> None:
        for listener in self._listeners:
            await listener(job)
