"""Downloading a job's source image from its URL: through the SSRF guard, capped, on a deadline."""

from __future__ import annotations

import asyncio
import functools
import ssl

import httpx

from service.errors import JobFailure
from webhooks.guard import FORBIDDEN_ADDRESS, GuardedTransport, GuardRefused, UrlPolicy

MAX_REDIRECTS = 3


@functools.cache
def tls_context() -> ssl.SSLContext:
    # Building an SSL context costs ~20 ms of CPU; one per process, not one per download.
    return ssl.create_default_context()


async def fetch_image(
    url: str, policy: UrlPolicy, *, max_bytes: int, connect_timeout_s: float, deadline_s: float
) -> bytes:
    """The bytes at `url`; every hop of a redirect is checked by the guard like the first."""
    transport = GuardedTransport(policy, httpx.AsyncHTTPTransport(verify=tls_context()))
    timeout = httpx.Timeout(deadline_s, connect=connect_timeout_s)
    client = httpx.AsyncClient(
        transport=transport, timeout=timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS
    )
    try:
        async with client, asyncio.timeout(deadline_s):
            async with client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise JobFailure(
                        f"fetching the image answered {response.status_code}",
                        code="IMAGE_FETCH_FAILED",
                    )
                return await _read_capped(response, max_bytes)
    except GuardRefused as exc:
        code = "URL_NOT_ALLOWED" if exc.reason == FORBIDDEN_ADDRESS else "IMAGE_FETCH_FAILED"
        raise JobFailure(f"the image URL is not allowed: {exc}", code=code) from exc
    except TimeoutError as exc:
        raise JobFailure(
            f"the image did not download within {deadline_s:g}s", code="IMAGE_FETCH_TIMEOUT"
        ) from exc
    except httpx.HTTPError as exc:
        raise JobFailure(f"fetching the image failed: {exc}", code="IMAGE_FETCH_FAILED") from exc


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
