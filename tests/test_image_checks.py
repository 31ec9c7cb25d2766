"""Checking an image's headers never holds up the API: it runs in a thread, within a deadline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from service.devstack import RunningStack, local_stack
from tests.conftest import STACK_ENV
from tests.helpers import error_of, many_page_tiff, transform_job

# A frame limit high enough that counting a TIFF's pages runs into the deadline instead.
CHECKS_ENV = {**STACK_ENV, "PIXHOOK_MAX_FRAMES": "1000000", "PIXHOOK_IMAGE_CHECK_TIMEOUT": "1s"}


@pytest.fixture(scope="module")
def checking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with local_stack(tmp_path_factory.mktemp("checks"), CHECKS_ENV) as running:
        yield running


def test_other_requests_are_answered_while_an_image_is_checked(checking: RunningStack):
    """Issue 15, item 19: /healthcheck waited 11.5 s while a request handler counted a TIFF's
    pages. Here the count runs to PIXHOOK_IMAGE_CHECK_TIMEOUT (1 s) and /healthcheck answers
    meanwhile."""
    auth = {"authorization": f"Bearer {checking.client.api_key}"}
    body = transform_job(many_page_tiff(22_000))
    with (
        httpx.Client(base_url=checking.api_url, headers=auth, timeout=10) as api,
        ThreadPoolExecutor(1) as pool,
    ):
        posted = pool.submit(api.post, "/v1/jobs", json=body)
        waits = []
        while not posted.done():
            started = time.monotonic()
            api.get("/healthcheck").raise_for_status()
            waits.append(time.monotonic() - started)
        response = posted.result()

    assert (response.status_code, error_of(response)["code"]) == (422, "IMAGE_TOO_COMPLEX")
    assert len(waits) > 1 and max(waits) < 0.5, waits
