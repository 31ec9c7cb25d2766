"""A real webhook receiver on 127.0.0.1 that verifies every request with `standardwebhooks`,
the reference library receivers use, so our signatures are checked by code that is not ours."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.raw_servers import SHUTDOWN_POLL_S


@contextmanager
def receivers(default_secret: str) -> Iterator[Callable[..., Receiver]]:
    """Makes receivers (verifying with `default_secret` unless told another); closes them all."""
    made: list[Receiver] = []

    def create(
        respond: Callable[[int], int] = lambda n: 200, secret: str | None = None
    ) -> Receiver:
        receiver = Receiver(secret or default_secret, respond)
        made.append(receiver)
        return receiver

    try:
        yield create
    finally:
        for receiver in made:
            receiver.close()


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool
    answered: int
    received_at: float

    @property
    def payload(self) -> Any:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    """Answers request number n (0-based) with `respond(n)`; records everything it got."""

    def __init__(
        self, secret: str, respond: Callable[[int], int] = lambda n: 200, host: str = "127.0.0.1"
    ) -> None:
        self._webhook = Webhook(secret)
        self._respond = respond
        self._lock = threading.Condition()
        self.requests: list[Received] = []
        self._server = ThreadingHTTPServer((host, 0), self._handler())
        self.url = f"http://{host}:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(SHUTDOWN_POLL_S,), daemon=True
        )
        self._thread.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver._record(self, headers, body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def _record(
        self, handler: BaseHTTPRequestHandler, headers: dict[str, str], body: bytes
    ) -> None:
        try:
            self._webhook.verify(body, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        with self._lock:
            status = self._respond(len(self.requests)) if verified else 400
            self.requests.append(Received(headers, body, verified, status, time.time()))
            self._lock.notify_all()
        handler.send_response(status)
        handler.send_header("content-length", "2")
        handler.end_headers()
        handler.wfile.write(b"ok")

    def wait_for(self, count: int, timeout_s: float = 20) -> list[Received]:
        """The first `count` requests, waiting for them to arrive."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"got {len(self.requests)} webhooks, expected {count}")
                self._lock.wait(left)
            return list(self.requests[:count])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
