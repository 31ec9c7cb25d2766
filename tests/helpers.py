"""Helpers the tests share: building requests, waiting on jobs, running the CLI."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from typing import Any

import httpx
from PIL import Image

from service.clients import NewClient, client_store
from service.devstack import RunningStack


def pixhook(stack: RunningStack, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `pixhook` CLI against the test stack's Redis."""
    env = {**os.environ, "PIXHOOK_REDIS_URL": stack.redis_url}
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def client_for(stack: RunningStack, name: str) -> tuple[dict[str, Any], httpx.Client]:
    """A new client of the stack: its record (with key and secret, as `pixhook clients create
    --json` prints it) and an API client for it. Made in-process: a CLI run costs a second of
    imports, and tests/test_cli.py runs the command itself."""

    async def create() -> NewClient:
        async with client_store(stack.redis_url) as store:
            return await store.create(name)

    made = asyncio.run(create())
    record = {
        "id": made.client.id,
        "name": name,
        "api_key": made.api_key,
        "webhook_secret": made.webhook_secret,
    }
    headers = {"authorization": f"Bearer {record['api_key']}"}
    return record, httpx.Client(base_url=stack.api_url, headers=headers, timeout=30)


def image_bytes(size: tuple[int, int] = (400, 300), fmt: str = "JPEG", mode: str = "RGB") -> bytes:
    color: Any = (200, 40, 40, 128) if mode == "RGBA" else (200, 40, 40)
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, fmt)
    return buffer.getvalue()


def png_bomb(width: int, height: int, zero_bytes: int = 64) -> bytes:
    """A valid PNG header claiming width x height 1-bit pixels, then `zero_bytes` of pixel rows
    compressed: under a hundred bytes by default; 4 MiB of rows fit in ~4 KB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data).to_bytes(4, "big")
        return len(data).to_bytes(4, "big") + kind + data + crc

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    idat = zlib.compress(bytes(zero_bytes), 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def many_page_tiff(pages: int) -> bytes:
    """A TIFF of `pages` 1x1 grey pages, each its own IFD (66 bytes) chained to the next: every
    page must be read to know how many there are."""
    # (tag, type, value): width, height, strip offset and byte count; type 4 is LONG.
    entries = [(256, 4, 1), (257, 4, 1), (273, 4, 8), (279, 4, 1)]
    ifd_size = 2 + 12 * len(entries) + 4
    first = 12  # the 8-byte header, then the one pixel all pages share, padded to 4
    parts = [b"II*\0", struct.pack("<I", first), b"\x80\0\0\0"]
    for page in range(pages):
        following = first + (page + 1) * ifd_size if page < pages - 1 else 0
        fields = b"".join(struct.pack("<HHII", tag, kind, 1, value) for tag, kind, value in entries)
        parts.append(struct.pack("<H", len(entries)) + fields + struct.pack("<I", following))
    return b"".join(parts)


def truncated_jpeg() -> bytes:
    """A JPEG whose header is intact but whose pixel data stops halfway."""
    buffer = io.BytesIO()
    Image.effect_noise((800, 600), 50).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


def transform_job(image: bytes | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "image.transform",
        "input": {
            "image": {"base64": base64.b64encode(image or image_bytes()).decode()},
            "width": 100,
            "format": "png",
        },
    }
    body.update(fields)
    return body


def wait_for_status(api: httpx.Client, job_id: str, timeout_s: float = 20) -> dict[str, Any]:
    """Poll until the job ends, as a caller without webhooks would."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = json.loads(api.get(f"/v1/jobs/{job_id}").content)
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish within {timeout_s}s")


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(response.content)["error"]
    return error
