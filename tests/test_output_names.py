"""Output files named from the job's reference (`output_name`), on local storage; S3 has its own
in tests/test_storage_s3.py."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from service.config import ConfigError, Settings
from tests.conftest import provider_env
from tests.support.batches import transform_item, wait_for_batch
from tests.support.images import image_bytes
from tests.support.in_process import InProcessApi
from tests.support.jobs import error_of, transform_job, wait_for_status

TWO_VARIANTS = {
    "variants": {"thumb": {"width": 40, "format": "webp"}, "card": {"width": 80, "format": "png"}}
}


@pytest.fixture
def api(in_process_api: httpx.Client) -> httpx.Client:
    return in_process_api


@pytest.fixture
def files(app_with_workers: InProcessApi) -> Path:
    return Path(app_with_workers.settings.storage.location.removeprefix("local:"))


@pytest.fixture
def client_id(app_with_workers: InProcessApi) -> str:
    return app_with_workers.client.client.id


def run(api: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job = wait_for_status(api, response.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    return job


def refused(api: httpx.Client, body: dict[str, Any], path: str = "/v1/jobs") -> dict[str, Any]:
    response = api.post(path, json=body)
    assert response.status_code == 422, response.text
    return error_of(response)


def size_of(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def test_outputs_are_stored_under_the_reference_and_variant(api, files, client_id):
    body = transform_job(reference="SKU-42", output_name="{reference}/{variant}.{ext}")
    body["input"] |= TWO_VARIANTS

    job = run(api, body)

    folder = files / client_id / "named" / "SKU-42"
    assert sorted(p.name for p in folder.iterdir()) == ["card.png", "thumb.webp"]
    assert size_of((folder / "thumb.webp").read_bytes())[0] == 40
    by_name = {image["name"]: image for image in job["output"]["images"]}
    assert api.get(by_name["card"]["url"]).content == (folder / "card.png").read_bytes()


def test_a_single_output_is_the_default_variant(api, files, client_id):
    job = run(api, transform_job(reference="A1", output_name="shop/{reference}-{variant}.{ext}"))

    assert (files / client_id / "named" / "shop" / "A1-default.png").is_file()
    assert job["output"]["images"][0]["name"] == "default"


def test_the_job_id_can_name_the_file(api, files, client_id):
    job = run(api, transform_job(output_name="{job_id}.{ext}"))

    assert (files / client_id / "named" / f"{job['id']}.png").is_file()


@pytest.mark.parametrize(
    ("reference", "stored"),
    [("shoes/red sneaker", "shoes_red_sneaker"), ("..", "__"), ("é-1.v2", "_-1.v2")],
)
def test_references_are_made_one_safe_part_of_the_name(api, files, client_id, reference, stored):
    run(api, transform_job(reference=reference, output_name="{reference}/{variant}.{ext}"))

    assert (files / client_id / "named" / stored / "default.png").is_file()


def test_generated_images_are_named_too(api, files, client_id):
    prompt = {"prompt": "a red shoe", "width": 64, "height": 64, "n": 2, "model": "standin-named"}
    body = {"type": "image.generate", "input": prompt, "reference": "G-7"}

    run(api, body | {"output_name": "gen/{reference}/{variant}.{ext}"})

    stored = sorted(p.name for p in (files / client_id / "named" / "gen" / "G-7").iterdir())
    assert stored == ["image-0.png", "image-1.png"]


def test_two_jobs_with_the_same_name_leave_the_last_ones_file(api, files, client_id):
    name: dict[str, Any] = {"reference": "SKU-9", "output_name": "{reference}.{ext}"}
    run(api, transform_job(**name))
    wider = transform_job(**name)
    wider["input"]["width"] = 60

    job = run(api, wider)

    assert size_of((files / client_id / "named" / "SKU-9.png").read_bytes())[0] == 60
    assert size_of(api.get(job["output"]["images"][0]["url"]).content)[0] == 60


def test_clients_never_write_each_others_files(app_with_workers, api, files, client_id):
    other = app_with_workers.new_client("other shop")
    other_api = app_with_workers.http(other.api_key)
    name: dict[str, Any] = {"reference": "SKU-1", "output_name": "{reference}.{ext}"}

    run(api, transform_job(**name))
    run(other_api, transform_job(image_bytes((200, 100)), **name))

    assert size_of((files / client_id / "named" / "SKU-1.png").read_bytes()) == (100, 75)
    assert size_of((files / other.client.id / "named" / "SKU-1.png").read_bytes()) == (100, 50)


def test_batch_items_are_named_by_their_index(api, files, client_id):
    items = [transform_item(width=20 + index) for index in range(3)]
    body = {"type": "image.transform", "items": items, "output_name": "cat/{index}.{ext}"}
    created = api.post("/v1/batches", json=body)
    assert created.status_code == 202, created.text

    batch = wait_for_batch(api, created.json()["id"])

    assert batch["counts"]["succeeded"] == 3
    folder = files / client_id / "named" / "cat"
    assert [size_of((folder / f"{i}.png").read_bytes())[0] for i in range(3)] == [20, 21, 22]


@pytest.mark.parametrize(
    ("output_name", "says"),
    [
        ("{sku}/{variant}.{ext}", "unknown placeholder {sku}"),
        ("{reference!r}.{ext}", "no format"),
        ("{index:03}.{ext}", "no format"),
        ("../{reference}.{ext}", "'..'"),
        ("a//{reference}.{ext}", "'..'"),
        ("/{reference}.{ext}", "start or end"),
        ("{reference}/", "start or end"),
        ("{reference} copy.{ext}", "letters, digits"),
        ("{reference", "not a valid template"),
        ("{index}.{ext}", "batch items only"),
        ("x" * 201, "at most 200"),
    ],
)
def test_an_unusable_output_name_is_refused_with_its_field(api, output_name, says):
    error = refused(api, transform_job(reference="SKU-1", output_name=output_name))

    assert error["field"] == "output_name"
    assert says in error["message"]
    assert error["code"] == ("INVALID_INPUT" if says == "at most 200" else "INVALID_OUTPUT_NAME")


def test_a_reference_placeholder_needs_a_reference(api):
    error = refused(api, transform_job(output_name="{reference}.{ext}"))

    assert (error["code"], error["field"]) == ("INVALID_OUTPUT_NAME", "output_name")
    assert "has none" in error["message"]


def test_several_outputs_need_the_variant_in_their_name(api):
    body = transform_job(reference="SKU-1", output_name="{reference}.{ext}")
    body["input"] |= TWO_VARIANTS

    error = refused(api, body)

    assert (error["code"], error["field"]) == ("INVALID_OUTPUT_NAME", "output_name")
    assert "{variant}" in error["message"]


def test_an_analysis_stores_no_files_to_name(api):
    image = base64.b64encode(image_bytes()).decode()
    body = {"type": "image.analyze", "input": {"image": {"base64": image}}, "output_name": "a.x"}

    error = refused(api, body)

    assert (error["code"], error["field"]) == ("INVALID_OUTPUT_NAME", "output_name")


def test_a_batch_with_an_unknown_placeholder_is_refused_whole(api):
    body = {"type": "image.transform", "items": [transform_item()], "output_name": "{sku}.{ext}"}

    error = refused(api, body, "/v1/batches")

    assert (error["code"], error["field"]) == ("INVALID_OUTPUT_NAME", "output_name")


def test_a_batch_item_whose_name_cannot_be_filled_fails_alone(api):
    body = {"type": "image.transform", "items": [transform_item()], "output_name": "{reference}"}
    created = api.post("/v1/batches", json=body)
    assert created.status_code == 202, created.text

    batch = wait_for_batch(api, created.json()["id"])

    assert batch["counts"]["failed"] == 1
    [failure] = batch["failures"]
    assert (failure["error"]["code"], failure["error"]["field"]) == (
        "INVALID_OUTPUT_NAME",
        "items[0].output_name",
    )


def test_the_setting_names_the_outputs_of_jobs_that_give_no_name(make_app, openai_standin):
    app = make_app(**provider_env(openai_standin), PIXHOOK_OUTPUT_NAME="{reference}.{ext}")
    app.start_worker("jobs")
    api = app.http(app.client.api_key)
    files = Path(app.settings.storage.location.removeprefix("local:")) / app.client.client.id

    run(api, transform_job(reference="SKU-5"))
    unnamed = run(api, transform_job())  # nothing to fill {reference} with: its own folder

    assert (files / "named" / "SKU-5.png").is_file()
    day = unnamed["created_at"][:10].replace("-", "/")
    assert (files / day / unnamed["id"] / "default.png").is_file()


@pytest.mark.parametrize(
    ("template", "says"),
    [("{sku}.{ext}", "unknown placeholder {sku}"), ("../{reference}.{ext}", "'..' folders")],
)
def test_an_unusable_setting_is_refused_at_start(template, says):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"PIXHOOK_OUTPUT_NAME": template})

    assert caught.value.variable == "PIXHOOK_OUTPUT_NAME"
    assert says in str(caught.value)
