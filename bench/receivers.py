"""One HTTP server on 127.0.0.1 for a bench: files for the service to fetch by URL, and a webhook
receiver that verifies each request with the client's secret and records when its event came."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Collection, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from webhooks import InvalidWebhook, verify

File = tuple[str, bytes]  # media type, body
# Request path -> what to answer: a file, a status to answer instead (a 503, say), None for 404.
Files = Callable[[str], File | int | None]

PHOTO_PATH = re.compile(r"/photos/(\d+)\.jpg")


def _no_files(path: str) -> File | int | None:
    return None


def photos(images: Sequence[bytes], *, cycle: bool = False) -> Files:
    """`/photos/<n>.jpg` is JPEG n: n modulo the number of images if `cycle`, else a 404 past
    the last one."""

    def find(path: str) -> File | None:
        match = PHOTO_PATH.fullmatch(path)
        if match is None:
            return None
        index = int(match[1]) % len(images) if cycle else int(match[1])
        return ("image/jpeg", images[index]) if index < len(images) else None

    return find


class LocalServer:
    """`GET <path>` answers what `files` finds for the path (404 if nothing), counting them in
    `files_served` (and the statuses it answers instead in `statuses_served`); `POST` checks a
    webhook with `secret` (settable: a new stack, a new client) and records its event by the id
    it is about (`data.id`): `events[id]` = [(arrival, type)]."""

    def __init__(self, files: Files = _no_files, secret: str = "") -> None:
        self.secret = secret
        self.files_served = 0
        self.statuses_served = 0
        self.rejected = 0  # webhooks that failed verification
        self.events: dict[str, list[tuple[float, str]]] = {}
        self._files = files
        self._lock = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.hook_url = f"{self.url}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def photo_url(self, index: int) -> str:
        """Where `photos` serves image `index`."""
        return f"{self.url}/photos/{index}.jpg"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real server would offer

            def do_GET(self) -> None:
                found = server.serve(self.path)
                if found is None or isinstance(found, int):
                    self.send_error(found or 404)
                    return
                media_type, data = found
                self.send_response(200)
                self.send_header("content-type", media_type)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status = server.record(dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def serve(self, path: str) -> File | int | None:
        found = self._files(path)
        if found is not None:
            with self._lock:
                if isinstance(found, int):
                    self.statuses_served += 1
                else:
                    self.files_served += 1
        return found

    def record(self, headers: dict[str, str], body: bytes) -> int:
        """Verify one webhook and record its event; the status to answer."""
        arrived = time.time()  # wall clock, to compare with the API's timestamps
        try:
            event = verify(headers, body, self.secret)
        except InvalidWebhook:
            with self._lock:
                self.rejected += 1
            return 400
        with self._lock:
            self.events.setdefault(event["data"]["id"], []).append((arrived, event["type"]))
            self._lock.notify_all()
        return 200

    def wait_for_events(
        self, ids: Sequence[str], types: Collection[str], timeout_s: float
    ) -> dict[str, tuple[float, str]]:
        """For each id, the first event of one of `types` about it, waiting up to `timeout_s`
        for all of them: id -> (arrival, type), only for the ids whose event came."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                firsts = {id_: self._first(id_, types) for id_ in ids}
                found = {id_: event for id_, event in firsts.items() if event is not None}
                left = deadline - time.monotonic()
                if len(found) == len(ids) or left <= 0:
                    return found
                self._lock.wait(left)

    def _first(self, id_: str, types: Collection[str]) -> tuple[float, str] | None:
        return next((event for event in self.events.get(id_, []) if event[1] in types), None)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
