"""Downloading a job's source image from its URL: through the SSRF guard, capped, on a deadline,
and tried again when the failure is one that passes (5xx, 408, 429, timeouts, resets)."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
import time

import httpx

from service.backoff import backoff_s
from service.errors import JobFailure
from webhooks import (
    DNS_FAILURE,
    FORBIDDEN_ADDRESS,
    GuardedTransport,
    GuardRefused,
    UrlPolicy,
    parse_retry_after,
)

log = logging.getLogger("pixhook.jobs")

MAX_REDIRECTS = 3
FETCH_ATTEMPTS = 3
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 4.0
# A host that asks for a longer pause than this is not waited for: the job fails and says so.
MAX_RETRY_AFTER_S = 30.0


class _Transient(Exception):
    """This try failed in a way the next one may not; `failure` ends the job if none is left."""

    def __init__(self, failure: JobFailure, retry_after_s: float | None = None) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.retry_after_s = retry_after_s


@functools.cache
def tls_context() -> ssl.SSLContext:
    # Building an SSL context costs ~20 ms of CPU; one per process, not one per download.
    return ssl.create_default_context()


async def fetch_image(
    url: str, policy: UrlPolicy, *, max_bytes: int, connect_timeout_s: float, deadline_s: float
) -> bytes:
    """The bytes at `url`; every hop of a redirect is checked by the guard like the first.
    Up to FETCH_ATTEMPTS tries, each within `deadline_s`."""
    transport = GuardedTransport(policy, httpx.AsyncHTTPTransport(verify=tls_context()))
    timeout = httpx.Timeout(deadline_s, connect=connect_timeout_s)
    client = httpx.AsyncClient(
        transport=transport, timeout=timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS
    )
    async with client:
        attempt = 1
        while True:
            try:
                return await _fetch_once(client, url, max_bytes, deadline_s)
            except _Transient as exc:
                wait_s = _wait_or_give_up(exc, attempt)
                log.info("fetching the image again in %.1fs: %s", wait_s, exc.failure.message)
                await asyncio.sleep(wait_s)
            attempt += 1


def _wait_or_give_up(exc: _Transient, attempt: int) -> float:
    failure = exc.failure
    if attempt >= FETCH_ATTEMPTS:
        # Every try failed in a way that passes: a later attempt of the job may succeed.
        message = f"{failure.message} ({attempt} attempts)"
        raise JobFailure(message, code=failure.code, retryable=True) from exc
    if exc.retry_after_s is not None and exc.retry_after_s > MAX_RETRY_AFTER_S:
        message = f"{failure.message}, asking to be retried after {exc.retry_after_s:g}s"
        raise JobFailure(message, code=failure.code, retryable=True) from exc
    return max(backoff_s(attempt, FIRST_BACKOFF_S, MAX_BACKOFF_S), exc.retry_after_s or 0.0)


async def _fetch_once(
    client: httpx.AsyncClient, url: str, max_bytes: int, deadline_s: float
) -> bytes:
    try:
        async with asyncio.timeout(deadline_s):
            async with client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise _status_failure(response)
                return await _read_capped(response, max_bytes)
    except GuardRefused as exc:
        raise _refused(exc) from exc
    except TimeoutError as exc:
        message = f"the image did not download within {deadline_s:g}s"
        raise _Transient(JobFailure(message, code="IMAGE_FETCH_TIMEOUT")) from exc
    except httpx.HTTPError as exc:
        failure = JobFailure(
            f"fetching the image failed: {exc or type(exc).__name__}", code="IMAGE_FETCH_FAILED"
        )
        # Timeouts, refused or reset connections and a server hanging up pass; redirect loops,
        # bad URLs and undecodable bodies do not.
        passing = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
        raise (_Transient(failure) if isinstance(exc, passing) else failure) from exc


def _status_failure(response: httpx.Response) -> Exception:
    status = response.status_code
    failure = JobFailure(f"fetching the image answered {status}", code="IMAGE_FETCH_FAILED")
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after", ""), time.time())
        return _Transient(failure, retry_after)
    return failure


def _refused(exc: GuardRefused) -> Exception:
    if exc.reason != DNS_FAILURE:
        code = "URL_NOT_ALLOWED" if exc.reason == FORBIDDEN_ADDRESS else "IMAGE_FETCH_FAILED"
        return JobFailure(f"the image URL is not allowed: {exc}", code=code)
    cause = exc.__cause__
    why = cause.strerror if isinstance(cause, OSError) and cause.strerror else "no address"
    failure = JobFailure(
        f"the image host {httpx.URL(exc.url).host} does not resolve (DNS: {why})",
        code="IMAGE_DNS_FAILURE",
    )
    # "Temporary failure in name resolution": the resolver, not the name, failed.
    passing = isinstance(cause, socket.gaierror) and cause.errno == socket.EAI_AGAIN
    return _Transient(failure) if passing else failure


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length", "")
    too_large = JobFailure(f"the image is larger than {max_bytes} bytes", code="IMAGE_TOO_LARGE")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    received = bytearray()
    async for chunk in response.aiter_bytes():
        received += chunk
        if len(received) > max_bytes:
            raise too_large
    return bytes(received)
