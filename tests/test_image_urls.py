"""Jobs whose image is a URL: fetched by the worker through the SSRF guard, capped, sniffed."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.images import image_bytes, png_bomb
from tests.support.jobs import error_of, transform_job, wait_for_status
from tests.support.raw_servers import Response, Scripted
from tests.support.webhook_receiver import Receiver


@pytest.fixture
def api(in_process_api: httpx.Client) -> httpx.Client:
    """The API and both workers in this process: these jobs and webhooks cross no process."""
    return in_process_api


@pytest.fixture
def make_receiver(
    in_process_receivers: Callable[..., Receiver],
) -> Callable[..., Receiver]:
    return in_process_receivers


def url_job(url: str) -> dict[str, Any]:
    body = transform_job()
    body["input"]["image"] = {"url": url}
    return body


def run(api: httpx.Client, url: str) -> dict[str, Any]:
    response = api.post("/v1/jobs", json=url_job(url))
    assert response.status_code == 202, response.text
    return wait_for_status(api, response.json()["id"])


def test_image_from_a_url_is_fetched_and_transformed(api, serve):
    server = serve(Scripted(lambda n: Response(200, {"content-type": "image/jpeg"}, image_bytes())))

    job = run(api, server.url("/photo.jpg"))

    assert job["status"] == "succeeded", job["error"]
    assert job["input"]["image"] == {"source": "url", "url": server.url("/photo.jpg")}
    assert job["output"]["images"][0]["width"] == 100


def test_content_is_judged_by_its_bytes_not_its_name_or_type(api, serve):
    text = Response(200, {"content-type": "image/jpeg"}, b"this is not a jpeg at all")
    server = serve(Scripted(lambda n: text))

    job = run(api, server.url("/photo.jpg"))

    assert (job["status"], job["error"]["code"]) == ("failed", "INVALID_IMAGE")


def test_image_larger_than_the_limit_fails_without_reading_it_all(api, serve):
    huge = Response(200, {"content-type": "image/png"}, b"\x89PNG" + b"\0" * 2_100_000)
    server = serve(Scripted(lambda n: huge))

    job = run(api, server.url("/huge.png"))

    assert (job["status"], job["error"]["code"]) == ("failed", "IMAGE_TOO_LARGE")


def test_pixel_bomb_behind_a_url_fails_with_a_code(api, serve):
    server = serve(Scripted(lambda n: Response(200, {}, png_bomb(20_000, 20_000))))

    job = run(api, server.url("/bomb.png"))

    assert (job["status"], job["error"]["code"]) == ("failed", "IMAGE_TOO_LARGE")


def test_missing_image_fails_with_the_status(api, serve):
    server = serve(Scripted(lambda n: Response(404)))

    job = run(api, server.url("/gone.jpg"))

    assert (job["status"], job["error"]["code"]) == ("failed", "IMAGE_FETCH_FAILED")
    assert "404" in job["error"]["message"]


def test_redirect_to_a_forbidden_address_is_refused(api, serve):
    hop = Response(302, {"location": "http://169.254.169.254/latest/meta-data"})
    server = serve(Scripted(lambda n: hop))

    job = run(api, server.url("/redirect"))

    assert (job["status"], job["error"]["code"]) == ("failed", "URL_NOT_ALLOWED")


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://169.254.169.254/latest/meta-data", "URL_NOT_ALLOWED"),
        ("http://localhost:9/a.jpg", "URL_NOT_ALLOWED"),
        ("file:///etc/passwd", "INVALID_URL"),
        ("ftp://example.com/a.jpg", "INVALID_URL"),
    ],
)
def test_forbidden_image_url_is_refused_at_submission(api, url, code):
    response = api.post("/v1/jobs", json=url_job(url))

    assert response.status_code == 422
    assert (error_of(response)["code"], error_of(response)["field"]) == (code, "input.image.url")


def photo() -> Response:
    return Response(200, {"content-type": "image/jpeg"}, image_bytes())


def test_an_image_url_answering_503_is_fetched_again(api, serve):
    """Issue 15 item 10: an image host answering 503 once failed the job at once."""
    server = serve(Scripted(lambda n: Response(503) if n == 0 else photo()))

    job = run(api, server.url("/busy.jpg"))

    assert job["status"] == "succeeded", job["error"]
    assert len(server.requests) == 2


def test_an_image_url_answering_429_is_fetched_again_after_its_retry_after(api, serve):
    """Issue 15 item 10: a 429 is transient, and its Retry-After says when to ask again."""
    server = serve(Scripted(lambda n: Response(429, {"retry-after": "1"}) if n == 0 else photo()))

    job = run(api, server.url("/throttled.jpg"))

    assert job["status"] == "succeeded", job["error"]
    first, second = server.requests
    assert second.arrived_at - first.arrived_at >= 1.0


class ResetsFirst(Scripted):
    """Resets the first connection after reading its request; answers a photo afterwards."""

    def handle(self, conn: socket.socket) -> None:
        self.read_request(conn)
        if len(self.requests) == 1:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        self.send(conn, photo().encode())


def test_an_image_download_cut_by_a_reset_is_fetched_again(api, serve):
    """Issue 15 item 10: a connection reset is transient."""
    server = serve(ResetsFirst())

    job = run(api, server.url("/flaky.jpg"))

    assert job["status"] == "succeeded", job["error"]
    assert len(server.requests) == 2


def test_an_image_url_that_keeps_failing_is_given_up_after_three_tries(api, serve):
    """Retries are bounded: the job fails with the last status, saying how often it tried."""
    server = serve(Scripted(lambda n: Response(502)))

    job = run(api, server.url("/down.jpg"))

    assert (job["status"], job["error"]["code"]) == ("failed", "IMAGE_FETCH_FAILED")
    assert "502" in job["error"]["message"] and "3 attempts" in job["error"]["message"]
    assert len(server.requests) == 3


def test_a_missing_image_is_fetched_only_once(api, serve):
    """A 404 is final: asking again would not make the image appear."""
    server = serve(Scripted(lambda n: Response(404)))

    run(api, server.url("/gone.jpg"))

    assert len(server.requests) == 1


def test_an_image_host_that_does_not_resolve_is_a_dns_failure(api):
    """Issue 15 item 10: a name that does not resolve was reported as "the image URL is not
    allowed", sending callers to look for an SSRF rule instead of a typo."""
    job = run(api, "http://no-such-host.invalid/photo.jpg")

    assert (job["status"], job["error"]["code"]) == ("failed", "IMAGE_DNS_FAILURE")
    assert "no-such-host.invalid" in job["error"]["message"]
    assert "not allowed" not in job["error"]["message"]
