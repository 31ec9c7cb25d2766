"""What the provider stand-ins share: a uvicorn server on 127.0.0.1 in a thread, API keys that can
be revoked or forbidden at runtime, a script of answers, per-key request windows with a limit
(the figures every reply's rate-limit headers report) and the calls a bill would count.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from service.cli.devstack import free_port, wait_for

A = TypeVar("A")
KeyState = Literal["valid", "revoked", "forbidden", "unknown"]
# What a key's window allows when no limit is set: reported in the headers, never enforced.
NOMINAL_REQUESTS_PER_MINUTE = 4000
NOMINAL_INPUT_TOKENS_PER_MINUTE = 2_000_000
NOMINAL_OUTPUT_TOKENS_PER_MINUTE = 400_000

# What both stand-ins answer by default for a product photo.
PRODUCT = {
    "category": "Footwear",
    "subcategory": "Sneakers",
    "brand_detected": None,
    "dominant_colors": ["red", "white"],
    "primary_material": "canvas",
    "product_condition": "new",
    "image_quality": "high",
    "has_text_overlay": False,
    "description": "A red canvas sneaker on a light backdrop.",
    "tags": ["sneaker", "red", "canvas"],
}


@dataclass(frozen=True)
class Scripted:
    """What both stand-ins' scripted answers have: a status (with headers), a delay, a body that
    is not JSON, the model's text, and how a streamed answer is cut into pieces: of
    `chunk_chars`, each after `chunk_delay_s`, the connection cut after `cut_after` pieces;
    streamed, `malformed` garbles the second piece."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    malformed: bool = False
    # The model's text, when not the default (for a tool: its input, as JSON text).
    content: str | None = None
    chunk_chars: int = 16
    chunk_delay_s: float = 0.0
    cut_after: int | None = None


@dataclass
class Window:
    """Requests that arrived in one window of `window_s`, how many were refused, and the tokens
    the answered ones used."""

    arrived: int = 0
    refused: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Quota:
    """A key's current window as a reply's rate-limit headers describe it."""

    requests_limit: int
    requests_remaining: int
    input_tokens_limit: int
    input_tokens_remaining: int
    output_tokens_limit: int
    output_tokens_remaining: int
    reset_s: float


class EventStream(Response):
    """Server-sent events; a `None` among the chunks stops without ending the response, which
    makes uvicorn drop the connection: the client sees a stream break off mid-way."""

    def __init__(self, chunks: AsyncIterator[bytes | None], headers: dict[str, str]) -> None:
        super().__init__(media_type="text/event-stream")
        self._chunks = chunks
        self._extra = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        headers += [(name.encode(), value.encode()) for name, value in self._extra.items()]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async for chunk in self._chunks:
            if chunk is None:
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


class StandInServer(Generic[A]):
    def __init__(self, routes: list[Route], keys: Sequence[str], default: A, name: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        # Every request: path, body, key, arrival (`at`), and the usage answered (`usage`).
        self.requests: list[dict[str, Any]] = []
        self._keys: dict[str, KeyState] = dict.fromkeys(keys, "valid")
        self._retired: set[str] = set()
        self._script: list[A] = []
        self._default = default
        self._paid: Counter[str] = Counter()
        self._paid_by_key: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, int], Window] = {}
        self._window_s = 60.0
        self._per_window: int | None = None
        self._retry_after = True
        self.limit_headers = True
        self._counting_since = time.monotonic()
        self._name = name
        config = uvicorn.Config(
            Starlette(routes=routes), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def _start(self) -> None:
        self._thread.start()
        wait_for(lambda: self._server.started, self._name, 10)

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def script(self, answers: Sequence[A]) -> None:
        """The next answered requests get these answers, in order; then normal service resumes.
        Clears the recorded requests."""
        with self._lock:
            self._script = list(answers)
            self.requests.clear()

    def revoke(self, key: str) -> None:
        """From now on `key` is answered 401, as a key deleted in the provider's console."""
        with self._lock:
            self._keys[key] = "revoked"

    def forbid(self, key: str) -> None:
        """From now on `key` is answered 403: valid, but not allowed to use the API."""
        with self._lock:
            self._keys[key] = "forbidden"

    def add_key(self, key: str) -> None:
        """`key` is valid from now on (a revoked or forbidden one again too)."""
        with self._lock:
            self._keys[key] = "valid"

    def retire(self, model: str) -> None:
        """Requests naming `model` are answered 404 from now on, as for a model that is gone."""
        with self._lock:
            self._retired.add(model)

    def restore_model(self, model: str) -> None:
        """`model` is answered again."""
        with self._lock:
            self._retired.discard(model)

    def count_requests(
        self,
        window_s: float = 1.0,
        requests_per_minute: int | None = None,
        *,
        retry_after: bool = True,
        limit_headers: bool = True,
    ) -> None:
        """Count from now in windows of `window_s`, each key on its own; with a limit, refuse what
        exceeds a key's slice of it (saying when to retry, unless told not to). Without
        `limit_headers`, replies say nothing of the key's window, as behind some proxies."""
        with self._lock:
            self._windows, self._window_s, self._retry_after = {}, window_s, retry_after
            self.limit_headers = limit_headers
            self._per_window = None
            if requests_per_minute is not None:
                self._per_window = max(1, math.floor(requests_per_minute * window_s / 60))
            self._counting_since = time.monotonic()

    def window_counts(self, key: str | None = None) -> list[Window]:
        """Every window from the first request counted to the last, empty ones included: of one
        key, or of all keys summed."""
        with self._lock:
            picked = {i: w for (k, i), w in self._windows.items() if key in (None, k)}
            if not picked:
                return []
            summed: dict[int, Window] = {}
            for (k, index), window in self._windows.items():
                if key in (None, k):
                    total = summed.setdefault(index, Window())
                    total.arrived += window.arrived
                    total.refused += window.refused
                    total.input_tokens += window.input_tokens
                    total.output_tokens += window.output_tokens
            return [summed.get(i, Window()) for i in range(min(picked), max(picked) + 1)]

    def paid_calls(self, model: str) -> int:
        """How many calls naming `model` were answered with images or text: what a bill counts."""
        with self._lock:
            return self._paid[model]

    def paid_calls_by_key(self, key: str) -> int:
        """How many answered (billed) calls were made with `key`."""
        with self._lock:
            return self._paid_by_key[key]

    def _key_state(self, key: str) -> KeyState:
        with self._lock:
            return self._keys.get(key, "unknown")

    def _is_retired(self, model: str) -> bool:
        with self._lock:
            return model in self._retired

    def _record(self, path: str, body: dict[str, Any], key: str) -> dict[str, Any]:
        entry = {"path": path, "body": body, "key": key, "at": time.monotonic(), "usage": None}
        with self._lock:
            self.requests.append(entry)
        return entry

    def _next(self) -> A:
        with self._lock:
            return self._script.pop(0) if self._script else self._default

    def _over_limit(self, key: str) -> float | None:
        """Counts one arrival of `key`; the seconds until its window ends when over the limit."""
        with self._lock:
            index, elapsed = self._window_now()
            window = self._windows.setdefault((key, index), Window())
            window.arrived += 1
            if self._per_window is None or window.arrived - window.refused <= self._per_window:
                return None
            window.refused += 1
            return (index + 1) * self._window_s - elapsed

    def _bill(self, model: str, key: str, input_tokens: int, output_tokens: int) -> None:
        with self._lock:
            self._paid[model] += 1
            self._paid_by_key[key] += 1
            index, _ = self._window_now()
            window = self._windows.setdefault((key, index), Window())
            window.input_tokens += input_tokens
            window.output_tokens += output_tokens

    def _quota(self, key: str) -> Quota:
        with self._lock:
            index, elapsed = self._window_now()
            window = self._windows.get((key, index), Window())
            share = self._window_s / 60
            requests = self._per_window or math.floor(NOMINAL_REQUESTS_PER_MINUTE * share)
            inputs = math.floor(NOMINAL_INPUT_TOKENS_PER_MINUTE * share)
            outputs = math.floor(NOMINAL_OUTPUT_TOKENS_PER_MINUTE * share)
            return Quota(
                requests,
                max(0, requests - (window.arrived - window.refused)),
                inputs,
                max(0, inputs - window.input_tokens),
                outputs,
                max(0, outputs - window.output_tokens),
                (index + 1) * self._window_s - elapsed,
            )

    def _window_now(self) -> tuple[int, float]:
        elapsed = time.monotonic() - self._counting_since
        return math.floor(elapsed / self._window_s), elapsed
