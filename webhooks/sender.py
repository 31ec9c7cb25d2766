"""One HTTP attempt at delivering a signed event, classified into an `AttemptResult`."""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass

import httpx

USER_AGENT = "pixhook-webhooks/0.1"

# Stable reason codes recorded on failed attempts.
HTTP_STATUS = "HTTP_STATUS"
REDIRECT = "REDIRECT_NOT_FOLLOWED"
TIMEOUT = "TIMEOUT"
CONNECT_ERROR = "CONNECT_ERROR"
TLS_ERROR = "TLS_ERROR"
PROTOCOL_ERROR = "PROTOCOL_ERROR"


@dataclass(frozen=True)
class AttemptResult:
    ok: bool
    duration_ms: float
    status_code: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    response_excerpt: str = ""


async def send(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    deadline_s: float,
    response_cap: int,
) -> AttemptResult:
    """POST once; never raises for anything the receiver or the network does."""
    started = time.perf_counter()
    request_headers = {"content-type": "application/json", "user-agent": USER_AGENT, **headers}
    try:
        # httpx times each step separately; a receiver trickling bytes must not hold us longer.
        async with asyncio.timeout(deadline_s):
            request = client.build_request("POST", url, content=body, headers=request_headers)
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                excerpt = await _read_capped(response, response_cap)
            finally:
                await response.aclose()
    except (TimeoutError, httpx.TimeoutException):
        return _failure(started, TIMEOUT, f"no complete response within {deadline_s:g}s")
    except httpx.ConnectError as exc:
        code = TLS_ERROR if _caused_by_tls(exc) else CONNECT_ERROR
        return _failure(started, code, str(exc) or type(exc).__name__)
    except httpx.HTTPError as exc:
        return _failure(started, PROTOCOL_ERROR, str(exc) or type(exc).__name__)
    duration_ms = (time.perf_counter() - started) * 1000
    status = response.status_code
    if 200 <= status < 300:
        return AttemptResult(True, duration_ms, status, response_excerpt=excerpt)
    code = REDIRECT if 300 <= status < 400 else HTTP_STATUS
    return AttemptResult(False, duration_ms, status, code, f"receiver answered {status}", excerpt)


async def _read_capped(response: httpx.Response, cap: int) -> str:
    received = bytearray()
    async for chunk in response.aiter_raw():
        received += chunk
        if len(received) >= cap:
            break
    return received[:cap].decode("utf-8", errors="replace")


def _caused_by_tls(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _failure(started: float, code: str, message: str) -> AttemptResult:
    duration_ms = (time.perf_counter() - started) * 1000
    return AttemptResult(False, duration_ms, error_code=code, error_message=message)
