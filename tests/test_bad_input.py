"""Every bad request gets a clear error with a stable code and the offending field."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable

import httpx
import pytest
from PIL import Image

from tests.support.cli import pixhook
from tests.support.images import image_bytes, many_page_tiff, png_bomb
from tests.support.in_process import InProcessApi
from tests.support.jobs import error_of, transform_job


@pytest.fixture
def app(make_app: Callable[..., InProcessApi]) -> InProcessApi:
    """The API in this process: every request here is answered before any worker is involved."""
    return make_app()


@pytest.fixture
def api(app: InProcessApi) -> httpx.Client:
    return app.http(app.client.api_key)


def post(api: httpx.Client, body: object) -> httpx.Response:
    return api.post("/v1/jobs", json=body)


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"", "INVALID_JSON"), (b"{not json", "INVALID_JSON"), (b"[1, 2]", "INVALID_INPUT")],
)
def test_body_that_is_not_a_json_object(api, content, code):
    response = api.post("/v1/jobs", content=content, headers={"content-type": "application/json"})

    assert response.status_code in (400, 422)
    assert error_of(response)["code"] == code


def test_unknown_job_type(api):
    response = post(api, transform_job(type="image.sharpen"))

    assert response.status_code == 422
    assert error_of(response) == {
        "code": "UNKNOWN_JOB_TYPE",
        "message": (
            "type must be one of: image.analyze, image.generate, image.transform, text.generate"
        ),
        "field": "type",
    }


def test_missing_image(api):
    response = post(api, {"type": "image.transform", "input": {"width": 10}})

    assert response.status_code == 422
    assert error_of(response)["code"] == "MISSING_IMAGE"
    assert error_of(response)["field"] == "input.image"


@pytest.mark.parametrize(
    "payload",
    [
        b"hello, I am a text file named photo.jpg",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"\x00" * 64,
    ],
)
def test_image_that_is_not_an_image(api, payload):
    response = post(api, transform_job(payload))

    assert response.status_code == 422
    assert error_of(response)["code"] == "INVALID_IMAGE"
    assert error_of(response)["field"] == "input.image"


@pytest.mark.parametrize(
    "text",
    ["not base64 at all!", "aGVsbG8", "aGVs\u00e9bG8=", base64.b64encode(b"x" * 40).decode() + "="],
    ids=["punctuation", "missing padding", "non-ascii", "extra padding"],
)
def test_image_that_is_not_base64(api, text):
    body = transform_job()
    body["input"]["image"] = {"base64": text}

    response = post(api, body)

    assert response.status_code == 422
    assert error_of(response)["code"] == "INVALID_INPUT"
    assert error_of(response)["field"] == "input.image.base64"


@pytest.mark.parametrize(
    "spell",
    [
        lambda data: base64.encodebytes(data).decode(),  # MIME: 76-character lines
        lambda data: "data:image/jpeg;base64," + base64.b64encode(data).decode(),
    ],
    ids=["line-wrapped", "data URL"],
)
def test_base64_spellings_that_are_accepted(api, spell):
    image = image_bytes((120, 80))
    body = transform_job()
    body["input"]["image"] = {"base64": spell(image)}

    response = post(api, body)

    assert response.status_code == 202, response.text
    assert response.json()["input"]["image"]["bytes"] == len(image)


def test_animation_with_too_many_frames(api):
    frames = [Image.new("P", (16, 16), i % 200) for i in range(1001)]
    for number, frame in enumerate(frames):
        frame.putpixel((number % 16, number // 16 % 16), 255)
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=10)

    response = post(api, transform_job(buffer.getvalue()))

    assert response.status_code == 422
    assert (error_of(response)["code"], error_of(response)["field"]) == (
        "TOO_MANY_FRAMES",
        "input.image",
    )


def test_a_tiff_of_many_pages_is_refused_once_it_passes_the_frame_limit(api):
    """Issue 15, item 19: every page of a 30,000-page TIFF was read before the 422 (11.6 s, the
    event loop held); reading stops at PIXHOOK_MAX_FRAMES (1000) instead."""
    started = time.monotonic()

    response = api.post("/v1/jobs", json=transform_job(many_page_tiff(22_000)), timeout=10)

    assert (response.status_code, error_of(response)["code"]) == (422, "TOO_MANY_FRAMES")
    assert "more than 1000 frames" in error_of(response)["message"]
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("size", [(6000, 6000), (20_000, 20_000)])
def test_image_with_too_many_pixels(api, size):
    response = post(api, transform_job(png_bomb(*size)))

    assert response.status_code == 422
    assert error_of(response)["code"] == "IMAGE_TOO_LARGE"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("width", 0),
        ("width", "100"),
        ("height", 100_000),
        ("quality", 101),
        ("format", "tiff"),
        ("fit", "stretch"),
    ],
)
def test_invalid_transform_parameter_names_its_field(api, field, value):
    body = transform_job()
    body["input"][field] = value

    response = post(api, body)

    assert response.status_code == 422
    assert error_of(response) | {"message": ""} == {
        "code": "INVALID_INPUT",
        "message": "",
        "field": f"input.{field}",
    }


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "/relative/hook", "https://", 42])
def test_invalid_webhook_url(api, url):
    response = post(api, transform_job(webhook_url=url))

    assert response.status_code == 422
    assert error_of(response)["field"] == "webhook_url"


def test_unknown_webhook_event_subscription(api):
    response = post(api, transform_job(webhook_events=["finished"]))

    assert error_of(response)["field"] == "webhook_events"


def test_metadata_over_the_limit(api):
    response = post(api, transform_job(metadata={"notes": "x" * 5000}))

    assert response.status_code == 422
    assert error_of(response)["code"] == "METADATA_TOO_LARGE"


@pytest.mark.parametrize("reference", ["", "x" * 201, "SKU\n42", 42, ["SKU-42"]])
def test_a_reference_that_is_not_a_short_printable_string(api, reference):
    response = post(api, transform_job(reference=reference))

    assert response.status_code == 422
    error = error_of(response)
    assert (error["code"], error["field"]) == ("INVALID_INPUT", "reference")
    assert "1 to 200 characters" in error["message"]


def test_body_over_the_limit_is_refused_before_parsing(api):
    oversized = base64.b64encode(b"\xff" * 1_600_000).decode()  # 2.1 MB of JSON

    response = post(api, transform_job() | {"metadata": {"blob": oversized}})

    assert response.status_code == 413
    assert error_of(response)["code"] == "PAYLOAD_TOO_LARGE"


def test_unsupported_content_type(api):
    response = api.post(
        "/v1/jobs", content=b"type=image.transform", headers={"content-type": "text/plain"}
    )

    assert response.status_code == 415
    assert error_of(response)["code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_multipart_without_job_field(api):
    files = {"image": ("a.jpg", image_bytes(), "image/jpeg")}

    response = api.post("/v1/jobs", files=files)

    assert response.status_code == 422
    assert error_of(response)["field"] == "job"


def test_unknown_job_id(api):
    response = api.get("/v1/jobs/job_doesnotexist")

    assert response.status_code == 404
    assert error_of(response)["code"] == "JOB_NOT_FOUND"


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer phk_wrong", "Basic dXNlcjpwYXNz"])
def test_missing_or_bad_api_key(app: InProcessApi, header):
    headers = {"authorization": header} if header else {}

    response = app.http().post("/v1/jobs", json=transform_job(), headers=headers)

    assert response.status_code == 401
    assert error_of(response)["code"] == "UNAUTHORIZED"


def test_another_clients_job_is_not_found(api, app: InProcessApi):
    job_id = api.post("/v1/jobs", json=transform_job()).json()["id"]
    other = pixhook(app, "clients", "create", "other", "--json")
    other_key = json.loads(other.stdout)["api_key"]

    response = app.http(other_key).get(f"/v1/jobs/{job_id}")

    assert response.status_code == 404


def test_unknown_route_uses_the_error_format(app: InProcessApi):
    response = app.http().get("/v2/nothing")

    assert response.status_code == 404
    assert error_of(response)["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"metadata": ' + b'{"a": ' * 40 + b"1" + b"}" * 41, "JSON_TOO_DEEP"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON_TOO_DEEP"),  # deeper than Python recurses
        (json.dumps({"metadata": {"note": "x" * 9000}}).encode(), "STRING_TOO_LONG"),
        (json.dumps({"metadata": {"n": list(range(100_001))}}).encode(), "LIST_TOO_LONG"),
    ],
    ids=["nested", "nested beyond recursion", "long string", "long list"],
)
def test_json_too_deep_too_long_or_too_wide_is_refused(api, body, code):
    response = api.post("/v1/jobs", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 422, response.text
    assert error_of(response)["code"] == code


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/jobs", {"type": {}, "input": {}}, "type"),
        ("/v1/jobs", transform_job(webhook_events=[{}]), "webhook_events"),
        ("/v1/batches", {"type": [], "items": [{}]}, "type"),
        (
            "/v1/batches",
            {"type": "image.transform", "items": [{}], "webhook_events": [[]]},
            "webhook_events",
        ),
    ],
    ids=["job type", "job events", "batch type", "batch events"],
)
def test_a_value_that_is_no_name_at_all_is_refused_not_a_500(api, path, body, field):
    """Regression (issue 15, item 22): an object or a list where a name belongs reached a set or
    dict lookup and answered 500 INTERNAL_ERROR (TypeError: unhashable type)."""
    response = api.post(path, json=body)

    assert response.status_code == 422, response.text
    assert error_of(response)["field"] == field


def test_the_offending_place_is_named(api):
    body = transform_job()
    body["metadata"] = {"note": "x" * 9000}

    response = post(api, body)

    assert error_of(response) == {
        "code": "STRING_TOO_LONG",
        "message": "a string holds at most 8192 characters, not 9000",
        "field": "metadata.note",
    }


def test_json_limits_are_listed_by_info(api):
    limits = api.get("/info").json()["limits"]

    assert (limits["max_json_depth"], limits["max_string_chars"]) == (32, 8192)
    assert limits["max_list_items"] == 100_000


def test_an_id_that_names_another_key_of_the_record_is_not_found(app, api):
    """`GET /v1/batches/bat_X:items` named the batch's items list, which Redis refused as the
    wrong type: a 503 STORAGE_UNAVAILABLE for what is only an id that does not exist."""
    job = post(api, transform_job()).json()
    batch = api.post(
        "/v1/batches",
        json={"type": "image.transform", "items": [{"input": transform_job()["input"]}]},
    ).json()
    probes = {
        f"/v1/jobs/{job['id']}:deliveries": "JOB_NOT_FOUND",
        f"/v1/jobs/{job['id']}:runner": "JOB_NOT_FOUND",
        f"/v1/batches/{batch['id']}:items": "BATCH_NOT_FOUND",
        f"/v1/batches/{batch['id']}:done": "BATCH_NOT_FOUND",
        f"/v1/batches/{batch['id']}:items/events": "BATCH_NOT_FOUND",
    }
    for path, code in probes.items():
        response = api.get(path)
        assert (response.status_code, error_of(response)["code"]) == (404, code), path
