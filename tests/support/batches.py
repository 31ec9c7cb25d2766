"""Batches as a caller sends and reads them, and an image server slow enough to watch them run."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import httpx

from tests.support.images import image_bytes
from tests.support.raw_servers import Response, Scripted
from tests.support.waiting import wait_until


def transform_item(width: int = 40, image: bytes | None = None) -> dict[str, Any]:
    data = base64.b64encode(image or image_bytes((120, 80))).decode()
    return {"input": {"image": {"base64": data}, "width": width, "format": "png"}}


def wait_for_batch(api: httpx.Client, batch_id: str, timeout_s: float = 60) -> dict[str, Any]:
    """The batch once it is no longer running."""
    last: dict[str, Any] = {}

    def ended() -> dict[str, Any] | None:
        last.update(api.get(f"/v1/batches/{batch_id}").json())
        return dict(last) if last["status"] != "running" else None

    try:
        return wait_until(ended, timeout_s, f"batch {batch_id} to end")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; its counts: {last.get('counts')}") from None


def results_of(api: httpx.Client, batch: dict[str, Any]) -> list[dict[str, Any]]:
    response = api.get(batch["results"]["url"])
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


class SlowImages(Scripted):
    """Serves a small JPEG after `delay_s`, counting how many requests it holds at once."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(self._answer)
        self._delay_s = delay_s
        self._count_lock = threading.Lock()
        self.holding = 0
        self.most_held = 0

    def _answer(self, number: int) -> Response:
        with self._count_lock:
            self.holding += 1
            self.most_held = max(self.most_held, self.holding)
        time.sleep(self._delay_s)  # the slowness under test: requests pile up while it lasts
        with self._count_lock:
            self.holding -= 1
        return Response(200, {"content-type": "image/jpeg"}, image_bytes((60, 40)))
