"""One HTTP attempt at delivering a signed event, classified into an `AttemptResult`."""

from __future__ import annotations

import asyncio
import email.utils
import functools
import ssl
import time
from dataclasses import dataclass
from typing import Literal

import aiohttp

from webhooks import guard
from webhooks.errors import GuardRefused
from webhooks.guard import UrlPolicy

USER_AGENT = "pixhook-webhooks/0.1"

# Stable reason codes recorded on failed attempts.
HTTP_STATUS = "HTTP_STATUS"
GONE = "GONE"
THROTTLED = "THROTTLED"
REDIRECT = "REDIRECT_NOT_FOLLOWED"
TIMEOUT = "TIMEOUT"
CONNECT_ERROR = "CONNECT_ERROR"
CONNECTION_RESET = "CONNECTION_RESET"
TLS_ERROR = "TLS_ERROR"
GUARD_REFUSED = "GUARD_REFUSED"
DNS_FAILURE = "DNS_FAILURE"
INVALID_URL = "INVALID_URL"

# The exchange itself failed: whatever URL was asked for, the host is unwell.
HOST_FAILURES = frozenset({TIMEOUT, CONNECT_ERROR, CONNECTION_RESET, TLS_ERROR})

Blame = Literal["host", "url"]
"""Whom a failed attempt speaks against, for the host's circuit breaker."""


@dataclass(frozen=True)
class AttemptResult:
    ok: bool
    duration_ms: float
    status_code: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    response_excerpt: str = ""
    retry_after_s: float | None = None

    @property
    def blame(self) -> Blame | None:
        """The host when it could not be reached or did not answer in time; the URL when that
        answered 5xx or 429 (one tenant's trouble, maybe, not the host's); None for a success or
        any other answer, which shows the host is up."""
        if self.error_code in HOST_FAILURES:
            return "host"
        if self.error_code == THROTTLED or (self.status_code or 0) >= 500:
            return "url"
        return None


async def send(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    policy: UrlPolicy,
    deadline_s: float,
    response_cap: int,
) -> AttemptResult:
    """POST once; never raises for anything the receiver, DNS or the network does."""
    started = time.perf_counter()
    request_headers = outgoing_headers(headers)
    try:
        # IP literals never reach the resolver, so they are judged here.
        refusal = _url_refusal(policy, url)
        if refusal is not None:
            raise refusal
        # One deadline for the whole attempt: a receiver trickling bytes cannot hold a worker.
        async with asyncio.timeout(deadline_s):
            async with session.post(
                url, data=body, headers=request_headers, allow_redirects=False
            ) as response:
                excerpt = await _read_capped(response, response_cap)
                status, retry_after = response.status, _retry_after(response)
    except GuardRefused as exc:
        return _failure(started, *_guard_refusal(exc))
    except TimeoutError:
        return _failure(started, TIMEOUT, f"no complete response within {deadline_s:g}s")
    except aiohttp.ClientError as exc:
        return _failure(started, *_classify(exc))
    duration_ms = (time.perf_counter() - started) * 1000
    if 200 <= status < 300:
        return AttemptResult(True, duration_ms, status, response_excerpt=excerpt)
    return AttemptResult(
        False,
        duration_ms,
        status,
        _status_code(status),
        f"receiver answered {status}",
        excerpt,
        retry_after,
    )


def outgoing_headers(headers: dict[str, str]) -> dict[str, str]:
    """Every header an attempt sends, but those aiohttp adds itself (host, content-length)."""
    return {"content-type": "application/json", "user-agent": USER_AGENT, **headers}


@functools.lru_cache(maxsize=4096)
def _url_refusal(policy: UrlPolicy, url: str) -> GuardRefused | None:
    # A pure function of its arguments, and parsing the URL was a tenth of an attempt's CPU.
    try:
        policy.check_url(url)
    except GuardRefused as exc:
        return exc
    return None


def _status_code(status: int) -> str:
    if status == 410:
        return GONE
    if status == 429:
        return THROTTLED
    return REDIRECT if 300 <= status < 400 else HTTP_STATUS


def _classify(exc: aiohttp.ClientError) -> tuple[str, str]:
    refusal = _guard_cause(exc)
    if refusal is not None:
        return _guard_refusal(refusal)
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.InvalidURL):
        return INVALID_URL, message
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return TLS_ERROR, message
    if isinstance(exc, aiohttp.ClientConnectorError):
        return (TLS_ERROR if isinstance(exc.os_error, ssl.SSLError) else CONNECT_ERROR), message
    # Disconnects, resets, payload and protocol errors: the exchange broke off midway.
    return CONNECTION_RESET, message


def _guard_refusal(refusal: GuardRefused) -> tuple[str, str]:
    codes = {guard.DNS_FAILURE: DNS_FAILURE, guard.INVALID_URL: INVALID_URL}
    return codes.get(refusal.reason, GUARD_REFUSED), str(refusal)


def _guard_cause(exc: BaseException) -> GuardRefused | None:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, GuardRefused):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


async def _read_capped(response: aiohttp.ClientResponse, cap: int) -> str:
    received = bytearray()
    while len(received) < cap:
        chunk = await response.content.read(cap - len(received))
        if not chunk:
            break
        received += chunk
    return received.decode("utf-8", errors="replace")


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date) on 429 and 503."""
    if response.status not in (429, 503):
        return None
    return parse_retry_after(response.headers.get("retry-after", ""), time.time())


def parse_retry_after(value: str, now: float) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - now)


def _failure(started: float, code: str, message: str) -> AttemptResult:
    duration_ms = (time.perf_counter() - started) * 1000
    return AttemptResult(False, duration_ms, error_code=code, error_message=message)
