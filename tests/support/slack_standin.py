"""A stand-in for Slack's incoming webhooks: a real HTTP server on 127.0.0.1 that answers as
Slack documents, `ok` or a 400 naming what is wrong with the message, and enforces Slack's limit
of one message per second per webhook URL with 429 and Retry-After.

    with SlackStandIn() as slack:
        url = slack.url_for(token="abc")
        ...  # make pixhook post to `url`
        [request] = slack.wait_for_accepted(url, 1)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from service.cli.devstack import free_port, wait_for

# Slack's documented limits (https://api.slack.com/reference/block-kit/blocks).
MAX_BLOCKS, MAX_SECTION_TEXT, MAX_FIELDS, MAX_FIELD_TEXT, MAX_HEADER_TEXT = 50, 3000, 10, 2000, 150
RATE_LIMIT_S = 1.0


@dataclass(frozen=True)
class SlackRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any  # the parsed body; None when it is not JSON
    status: int
    arrived_at: float


class SlackStandIn:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.received: list[SlackRequest] = []
        self._clock = clock  # what its one-message-a-second limit is measured on
        self._changed = threading.Condition()
        self._channels: set[str] = set()
        self._last_accepted: dict[str, float] = {}
        self._throttled: dict[str, int] = {}
        app = Starlette(
            routes=[Route("/services/{team}/{bot}/{token}", self._post, methods=["POST"])]
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> SlackStandIn:
        self._thread.start()
        wait_for(lambda: self._server.started, "the Slack stand-in", 10)
        return self

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def __enter__(self) -> SlackStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def url_for(self, team: str = "T000", bot: str = "B000", token: str = "XXXX") -> str:
        return f"{self.base_url}/services/{team}/{bot}/{token}"

    def register(self, path_or_url: str) -> str:
        """From the first registered channel on, any other path answers 404 `no_service`, as a
        revoked or mistyped webhook URL does."""
        path = _path(path_or_url)
        with self._changed:
            self._channels.add(path)
        return path

    def throttle_next(self, path_or_url: str, retry_after_s: int) -> None:
        """The next request to this channel answers 429 with this Retry-After, however timed."""
        with self._changed:
            self._throttled[_path(path_or_url)] = retry_after_s

    def accepted(self, path_or_url: str) -> list[SlackRequest]:
        """The requests this channel answered 200, in arrival order."""
        path = _path(path_or_url)
        with self._changed:
            return [r for r in self.received if r.path == path and r.status == 200]

    def wait_for_accepted(
        self, path_or_url: str, count: int, timeout_s: float = 20
    ) -> list[SlackRequest]:
        """The first `count` accepted requests on this channel, waiting for them to arrive."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while len(accepted := self.accepted(path_or_url)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"Slack accepted {len(accepted)} messages, expected {count}"
                    )
                self._changed.wait(left)
            return accepted[:count]

    async def _post(self, request: Request) -> Response:
        arrived_at = self._clock()
        body = await request.body()
        parsed = _parse(body)
        with self._changed:
            status, answer, headers = self._verdict(request.url.path, parsed, arrived_at)
            headers_seen = {k.lower(): v for k, v in request.headers.items()}
            self.received.append(
                SlackRequest(request.url.path, headers_seen, body, parsed, status, arrived_at)
            )
            self._changed.notify_all()
        return PlainTextResponse(answer, status_code=status, headers=headers)

    def _verdict(
        self, path: str, message: Any, arrived_at: float
    ) -> tuple[int, str, dict[str, str]]:
        """Slack's answer, in the order it checks: the URL, the rate, then the message."""
        if self._channels and path not in self._channels:
            return 404, "no_service", {}
        if path in self._throttled:
            return 429, "rate_limited", {"retry-after": str(self._throttled.pop(path))}
        last = self._last_accepted.get(path)
        if last is not None and arrived_at - last < RATE_LIMIT_S:
            return 429, "rate_limited", {"retry-after": "1"}
        problem = _message_problem(message)
        if problem is not None:
            return 400, problem, {}
        self._last_accepted[path] = arrived_at
        return 200, "ok", {}


def _path(path_or_url: str) -> str:
    return urlsplit(path_or_url).path if "://" in path_or_url else path_or_url


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _message_problem(message: Any) -> str | None:
    """The error Slack answers for this message body, or None if it would be posted."""
    if not isinstance(message, dict):
        return "invalid_payload"
    text, blocks = message.get("text"), message.get("blocks")
    has_text = isinstance(text, str) and text.strip() != ""
    if not has_text and not (isinstance(blocks, list) and blocks):
        return "no_text"
    if blocks is not None and not _blocks_valid(blocks):
        return "invalid_blocks"
    return None


def _blocks_valid(blocks: Any) -> bool:
    if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
        return False
    return all(isinstance(block, dict) and _block_valid(block) for block in blocks)


def _block_valid(block: dict[str, Any]) -> bool:
    text = block.get("text")
    text = text.get("text", "") if isinstance(text, dict) else ""
    if block.get("type") == "header":
        return isinstance(text, str) and len(text) <= MAX_HEADER_TEXT
    if block.get("type") != "section":
        return isinstance(block.get("type"), str)
    fields = block.get("fields", [])
    if not isinstance(fields, list) or len(fields) > MAX_FIELDS or not (text or fields):
        return False
    field_texts = [f.get("text") if isinstance(f, dict) else None for f in fields]
    return (
        isinstance(text, str)
        and len(text) <= MAX_SECTION_TEXT
        and all(isinstance(t, str) and len(t) <= MAX_FIELD_TEXT for t in field_texts)
    )
