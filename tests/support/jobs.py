"""Jobs as a caller sends and reads them: a transform body, the error in an answer, the end."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from tests.support.images import image_bytes
from tests.support.waiting import wait_until

_ENDED = ("succeeded", "failed", "canceled")


def transform_job(image: bytes | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "image.transform",
        "input": {
            "image": {"base64": base64.b64encode(image or image_bytes()).decode()},
            "width": 100,
            "format": "png",
        },
    }
    body.update(fields)
    return body


def wait_for_status(api: httpx.Client, job_id: str, timeout_s: float = 20) -> dict[str, Any]:
    """Poll until the job ends, as a caller without webhooks would."""

    def ended() -> dict[str, Any] | None:
        job: dict[str, Any] = json.loads(api.get(f"/v1/jobs/{job_id}").content)
        return job if job["status"] in _ENDED else None

    return wait_until(ended, timeout_s, f"job {job_id} to end")


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(response.content)["error"]
    return error
