"""Provider-backed jobs as a caller sends and watches them: a photo no other test sends, a job
submitted and waited for, its live events read over SSE as a browser reads them, and the text
the provider streamed into them."""

from __future__ import annotations

import io
from typing import Any

import httpx
from PIL import Image

from tests.support import anthropic_standin, openai_standin
from tests.support.jobs import wait_for_status
from tests.support.sse import Frame, frames


def unique_photo(seed: int, size: tuple[int, int] = (120, 80)) -> bytes:
    """A small PNG of its own for each seed: pixhook caches answers by photo, so a test asking
    twice about one photo is answered once."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (seed * 37 % 256, seed * 11 % 256, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def answer(provider: str, **fields: Any) -> anthropic_standin.Answer | openai_standin.Answer:
    """A scripted answer of `provider`'s stand-in."""
    if provider == "anthropic":
        return anthropic_standin.Answer(**fields)
    return openai_standin.Answer(**fields)


def run_job(api: httpx.Client, job_type: str, **fields: Any) -> dict[str, Any]:
    """Submits a job of `job_type` with `fields` as its input and waits for its end."""
    response = api.post("/v1/jobs", json={"type": job_type, "input": fields})
    assert response.status_code == 202, response.text
    return wait_for_status(api, response.json()["id"])


def live_events(api: httpx.Client, job_id: str) -> list[Frame]:
    """The job's events as `GET /v1/jobs/{id}/events` sends them, until the stream closes."""
    with api.stream("GET", f"/v1/jobs/{job_id}/events", timeout=20) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [frame for frame in frames(response) if frame.event is not None]


def deltas(events: list[Frame]) -> list[dict[str, Any]]:
    """The `job.output.delta` payloads, in the order they were streamed."""
    return [frame.payload for frame in events if frame.event == "job.output.delta"]


def streamed_text(events: list[Frame]) -> str:
    """The text a reader keeps: the pieces of the last attempt (a broken stream starts again)."""
    pieces = deltas(events)
    last = max(piece["attempt"] for piece in pieces)
    return "".join(piece["text"] for piece in pieces if piece["attempt"] == last)
