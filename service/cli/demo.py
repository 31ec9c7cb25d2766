"""`pixhook demo`: one image job end to end, with a receiver that verifies the signed webhook."""

from __future__ import annotations

import base64
import io
import queue
import threading
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.cli.devstack import (
    RunningStack,
    StackError,
    failure_report,
    free_port,
    local_stack,
    log_tail,
    scratch_dir,
    wait_for,
)
from webhooks import InvalidWebhook, verify

WEBHOOK_TIMEOUT_S = 60


class DemoFailed(Exception):
    pass


@dataclass(frozen=True)
class ReceivedWebhook:
    headers: dict[str, str]
    payload: Any


class Receiver:
    """A loopback HTTP server that accepts only webhooks signed with `secret`."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self.received: queue.Queue[ReceivedWebhook | InvalidWebhook] = queue.Queue()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/webhooks/pixhook"
        app = Starlette(routes=[Route("/webhooks/pixhook", self._receive, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        try:
            payload = verify(request.headers, body, self._secret)
        except InvalidWebhook as exc:
            self.received.put(exc)
            return Response(status_code=400)
        self.received.put(ReceivedWebhook(dict(request.headers), payload))
        return Response(status_code=204)

    def __enter__(self) -> Receiver:
        self._thread.start()
        wait_for(lambda: self._server.started, "the demo receiver", 10)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.should_exit = True
        self._thread.join(10)


def run_demo() -> int:
    print("pixhook demo: starting an embedded Redis, the API and both workers ...", flush=True)
    with scratch_dir("pixhook-demo-") as workdir:
        try:
            with local_stack(workdir) as stack, Receiver(stack.client.webhook_secret) as receiver:
                _run(stack, receiver)
        except StackError as exc:
            print(f"pixhook demo FAILED: {failure_report(exc)}", flush=True)
            return 1
        except DemoFailed as exc:
            # No one piece is to blame: show the end of every log before the dir goes.
            tails = [f"The end of {log.name}:\n{log_tail(log)}" for log in _logs(workdir)]
            print("\n".join([f"pixhook demo FAILED: {exc}", *tails]), flush=True)
            return 1
    print("pixhook demo: OK", flush=True)
    return 0


def _logs(workdir: Path) -> list[Path]:
    return sorted((workdir / "logs").glob("*.log"))


def _run(stack: RunningStack, receiver: Receiver) -> None:
    api = httpx.Client(
        base_url=stack.api_url,
        headers={"authorization": f"Bearer {stack.client.api_key}"},
        timeout=30,
    )
    sample = files("service.assets").joinpath("sample.jpg").read_bytes()
    print(f"  API {stack.api_url}; webhook receiver {receiver.url}")
    response = api.post(
        "/v1/jobs",
        json={
            "type": "image.transform",
            "input": {
                "image": {"base64": base64.b64encode(sample).decode()},
                "width": 320,
                "height": 320,
                "format": "webp",
                "quality": 80,
            },
            "webhook_url": receiver.url,
            "metadata": {"sku": "DEMO-SNEAKER-42"},
        },
    )
    if response.status_code != 202:
        raise DemoFailed(f"submitting the job answered {response.status_code}: {response.text}")
    job_id = response.json()["id"]
    print(f"  submitted {job_id} (image.transform, 960x640 JPEG -> fit 320x320 WebP)")
    webhook = _wait_for_webhook(receiver)
    payload = webhook.payload
    print(
        f"  received {payload['type']} webhook {webhook.headers['webhook-id']}: "
        "signature verified (Standard Webhooks, HMAC-SHA256)"
    )
    job = payload["data"]
    if job["id"] != job_id or job["status"] != "succeeded":
        raise DemoFailed(
            f"unexpected job in the webhook: {job['id']} {job['status']} {job['error']}"
        )
    image = job["output"]["images"][0]
    downloaded = api.get(image["url"])
    if downloaded.status_code != 200:
        raise DemoFailed(f"downloading the output answered {downloaded.status_code}")
    with Image.open(io.BytesIO(downloaded.content)) as output:
        size = f"{output.format} {output.width}x{output.height}, {len(downloaded.content)} bytes"
    print(f"  job {job['status']} in {_duration(job)}; output: {size}")
    print(f"  output URL (signed, expires): {image['url']}")


def _wait_for_webhook(receiver: Receiver) -> ReceivedWebhook:
    try:
        item = receiver.received.get(timeout=WEBHOOK_TIMEOUT_S)
    except queue.Empty as exc:
        raise DemoFailed(f"no webhook arrived within {WEBHOOK_TIMEOUT_S}s") from exc
    if isinstance(item, InvalidWebhook):
        raise DemoFailed(f"a webhook arrived but did not verify: {item}")
    return item


def _duration(job: dict[str, Any]) -> str:
    started = datetime.fromisoformat(job["started_at"])
    finished = datetime.fromisoformat(job["finished_at"])
    return f"{(finished - started).total_seconds() * 1000:.0f} ms"
