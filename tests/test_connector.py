"""What only DNS can tell: the delivery session resolves once, checks every address, and connects
to exactly what it checked. A stand-in resolver plays DNS; the HTTP server is real."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support.raw_servers import SHUTDOWN_POLL_S
from webhooks.connector import open_session
from webhooks.guard import UrlPolicy
from webhooks.sender import AttemptResult, send


class Server:
    """Records the Host header of every request it answers with 204."""

    def __init__(self) -> None:
        self.hosts: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                server.hosts.append(self.headers["host"])
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(SHUTDOWN_POLL_S,), daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.close()


def deliver(
    port: int, answers: list[str] | OSError, allow: str = "127.0.0.1/32"
) -> tuple[AttemptResult, int]:
    """POST to http://receiver.example:port/ where DNS answers `answers`; (result, lookups)."""
    lookups = 0

    async def resolver(host: str, resolve_port: int) -> list[str]:
        nonlocal lookups
        lookups += 1
        if isinstance(answers, OSError):
            raise answers
        return answers

    async def main() -> AttemptResult:
        policy = UrlPolicy.parse(allow)
        session = open_session(
            policy, connect_timeout_s=2, max_connections=4, per_host=2, resolver=resolver
        )
        async with session:
            return await send(
                session,
                f"http://receiver.example:{port}/hook",
                b"{}",
                {},
                policy=policy,
                deadline_s=5,
                response_cap=100,
            )

    return asyncio.run(main()), lookups


def test_allowed_answer_is_connected_to_under_the_real_name(server):
    result, lookups = deliver(server.port, ["127.0.0.1"])

    assert result.ok and result.status_code == 204
    assert server.hosts == [f"receiver.example:{server.port}"]
    assert lookups == 1


@pytest.mark.parametrize(
    "answers",
    [
        ["169.254.169.254"],
        ["127.0.0.2"],
        ["0.0.0.0"],
        ["::1"],
        ["::ffff:169.254.169.254"],
        ["10.0.0.7"],
        ["127.0.0.1", "192.168.1.1"],  # one bad address is enough: every answer is checked
    ],
)
def test_forbidden_answer_is_refused_before_connecting(server, answers):
    result, _ = deliver(server.port, answers)

    assert (result.ok, result.error_code) == (False, "GUARD_REFUSED")
    assert server.hosts == []


def test_unresolvable_name_is_a_dns_failure(server):
    result, _ = deliver(server.port, OSError("Name or service not known"))

    assert result.error_code == "DNS_FAILURE"


def test_private_answer_inside_the_allow_list_is_delivered(server):
    result, _ = deliver(server.port, ["127.0.0.1"], allow="127.0.0.0/8")

    assert result.ok
