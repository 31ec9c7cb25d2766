"""A CDN in front of a bucket, as far as a caller can tell: `GET <base>/<object key>` on 127.0.0.1
answers with the object (its body, Content-Type and Cache-Control) that the origin, moto's S3
server, holds at `<origin>/<bucket>/<object key>`, read without credentials."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import httpx

from tests.support.raw_servers import SHUTDOWN_POLL_S

_RELAYED = ("content-type", "cache-control", "etag")


class CdnStandIn:
    def __init__(self, origin: str, bucket: str) -> None:
        origin_base = f"{origin.rstrip('/')}/{bucket}"

        class Relay(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                answer = httpx.get(origin_base + self.path, timeout=10)
                self.send_response(answer.status_code)
                for name in _RELAYED:
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the test's output is for the test

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(SHUTDOWN_POLL_S,), daemon=True
        )

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
