"""Jobs whose image is a URL: fetched by the worker through the SSRF guard, capped, sniffed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import error_of, image_bytes, png_bomb, transform_job, wait_for_status
from tests.servers import Response, Scripted


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
