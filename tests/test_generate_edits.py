"""`image.generate` with an input image: the prompt edits the caller's photo through the provider's
edits endpoint, the photo given as base64, as a URL or as a multipart upload; against the OpenAI
stand-in over real HTTP."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import provider_env
from tests.support.in_process import InProcessApi
from tests.support.jobs import wait_for_status
from tests.support.openai_standin import Answer, OpenAIStandIn
from tests.support.provider_jobs import unique_photo
from tests.support.raw_servers import Response, Scripted

PROMPT = "the same desk with a green lamp on it"


@pytest.fixture
def api(in_process_api: httpx.Client) -> httpx.Client:
    return in_process_api


@pytest.fixture
def standin(openai_standin: OpenAIStandIn) -> OpenAIStandIn:
    openai_standin.script([])
    return openai_standin


def edit_input(image: dict[str, str], **fields: Any) -> dict[str, Any]:
    return {"prompt": PROMPT, "image": image, "width": 64, "height": 64, **fields}


def run(api: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return wait_for_status(api, response.json()["id"])


def as_base64(photo: bytes) -> dict[str, str]:
    return {"base64": base64.b64encode(photo).decode()}


def stored_image(api: httpx.Client, job: dict[str, Any]) -> Image.Image:
    [image] = job["output"]["images"]
    return Image.open(io.BytesIO(api.get(image["url"]).content))


def check_edited(api: httpx.Client, job: dict[str, Any], standin: OpenAIStandIn, photo: bytes):
    """The job succeeded, the provider's edits endpoint got the photo and the prompt, and the
    edited image is stored."""
    assert job["status"] == "succeeded", job["error"]
    [request] = standin.requests
    assert request["path"] == "/v1/images/edits"
    assert request["body"]["images"] == [photo]
    assert (request["body"]["prompt"], request["body"]["size"]) == (PROMPT, "64x64")
    assert stored_image(api, job).size == (64, 64)


def test_a_photo_given_as_base64_is_edited(api, standin):
    photo = unique_photo(1)

    job = run(api, {"type": "image.generate", "input": edit_input(as_base64(photo))})

    check_edited(api, job, standin, photo)


def test_a_photo_given_by_url_is_fetched_and_edited(api, standin, serve):
    photo = unique_photo(2)
    server = serve(Scripted(lambda n: Response(200, {"content-type": "image/png"}, photo)))

    job = run(api, {"type": "image.generate", "input": edit_input({"url": server.url("/p.png")})})

    check_edited(api, job, standin, photo)
    assert len(server.requests) == 1


def test_an_uploaded_photo_is_edited(api, standin):
    photo = unique_photo(3)
    job = {"type": "image.generate", "input": {"prompt": PROMPT, "width": 64, "height": 64}}

    response = api.post(
        "/v1/jobs",
        data={"job": json.dumps(job)},
        files={"image": ("desk.png", photo, "image/png")},
    )

    assert response.status_code == 202, response.text
    check_edited(api, wait_for_status(api, response.json()["id"]), standin, photo)


def test_a_prompt_without_a_photo_uses_the_generations_endpoint(api, standin):
    job = run(
        api, {"type": "image.generate", "input": {"prompt": PROMPT, "width": 64, "height": 64}}
    )

    assert job["status"] == "succeeded", job["error"]
    assert [r["path"] for r in standin.requests] == ["/v1/images/generations"]


def png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, "PNG")
    return buffer.getvalue()


def named_edit(reference: str, seed: int) -> dict[str, Any]:
    """An edit of a photo of its own, its output stored by name under `reference`."""
    return {
        "type": "image.generate",
        "input": edit_input(as_base64(unique_photo(seed))),
        "reference": reference,
        "output_name": "{reference}/{variant}.{ext}",
    }


def test_images_kept_through_a_storage_outage_are_kept_apart_by_photo(
    make_app: Callable[..., InProcessApi], standin: OpenAIStandIn
):
    """The same prompt on two photos is two edits: each photo's images, kept while storage is
    down, are the ones its job stores once storage is back, and neither is generated twice."""
    # Writes are tried again through an outage for most of a job's time: 1 s of it here.
    app = make_app(**provider_env(standin), PIXHOOK_JOB_TIMEOUT="1s")
    app.start_worker("jobs")
    api = app.http(app.client.api_key)
    red, blue = png((255, 0, 0)), png((0, 0, 255))
    standin.script([Answer(image=red), Answer(image=blue)])
    # Named outputs go under {client}/named: a file there makes every write of one fail.
    files = Path(app.settings.storage.location.removeprefix("local:"))
    blocked = files / app.client.client.id / "named"
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_bytes(b"")
    bodies = {name: named_edit(name, seed) for name, seed in (("first", 4), ("second", 5))}

    for name, body in bodies.items():
        failed = run(api, body)
        assert failed["error"]["code"] == "STORAGE_UNAVAILABLE", (name, failed)
    assert len(standin.requests) == 2
    blocked.unlink()
    again = {name: run(api, body) for name, body in bodies.items()}

    assert len(standin.requests) == 2  # both kept: neither edit was paid for twice
    assert stored_image(api, again["first"]).getpixel((0, 0)) == (255, 0, 0)
    assert stored_image(api, again["second"]).getpixel((0, 0)) == (0, 0, 255)
