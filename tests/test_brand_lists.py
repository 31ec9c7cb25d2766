"""Named brand lists: stored once per client, named by `image.analyze` jobs, and matched against
the brands the model reads on the photo instead of being sent to it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support.jobs import error_of, wait_for_status
from tests.support.openai_standin import PRODUCT, Answer
from tests.support.waiting import wait_until
from tests.test_analyze_prompt import SCHEMA, analyze, photo, prompt_text

MANY = [f"Maker {n:04d}" for n in range(4_997)] + ["Nike", "Hermès", "Dr. Martens"]


@pytest.fixture
def api(in_process_api: httpx.Client) -> httpx.Client:
    """The API and workers in this process: what the provider was sent is read here."""
    return in_process_api


def logo(brand: str) -> dict[str, Any]:
    return {
        "brand": brand,
        "confidence": 0.9,
        "box": {"x": 0.1, "y": 0.2, "width": 0.3, "height": 0.1},
    }


def test_a_list_is_stored_read_listed_and_deleted(api):
    stored = api.put("/v1/brand-lists/shoes", json={"brands": ["Nike", " Adidas ", "Nike"]})

    assert stored.status_code == 200, stored.text
    assert stored.json()["count"] == 2
    assert api.get("/v1/brand-lists/shoes").json()["brands"] == ["Adidas", "Nike"]
    listed = api.get("/v1/brand-lists").json()["data"]
    assert [(entry["name"], entry["count"]) for entry in listed] == [("shoes", 2)]
    assert api.delete("/v1/brand-lists/shoes").status_code == 204
    assert error_of(api.get("/v1/brand-lists/shoes"))["code"] == "BRAND_LIST_NOT_FOUND"


def test_a_list_of_5000_brands_is_stored_once_and_never_sent_to_the_model(api, openai_standin):
    assert api.put("/v1/brand-lists/catalogue", json={"brands": MANY}).status_code == 200
    seen = [logo("NIKE Inc."), logo("hermes"), logo("Dr Martens"), logo("Invented Co")]
    openai_standin.script([Answer(content=json.dumps(PRODUCT | {"logos": seen}))])

    job = analyze(api, photo(40), brand_list="catalogue")

    assert job["status"] == "succeeded", job["error"]
    brands = [found["brand"] for found in job["output"]["attributes"]["logos"]]
    assert brands == ["Nike", "Hermès", "Dr. Martens"]
    text = prompt_text(openai_standin.requests[0])
    assert "Maker 0001" not in text and "Hermès" not in text
    assert len(json.dumps(openai_standin.requests[0]["body"])) < 10_000 + 4 * len(photo(40))


def test_logos_come_back_beside_a_callers_schema(api, openai_standin):
    api.put("/v1/brand-lists/few", json={"brands": ["Acme"]})
    fitting = {"title": "Boot", "waterproof": True, "sizes": [40], "materials": ["leather"]}
    openai_standin.script([Answer(content=json.dumps(fitting | {"logos": [logo("ACME")]}))])

    job = analyze(api, photo(41), brand_list="few", attributes=SCHEMA)

    assert job["output"]["attributes"] == fitting | {"logos": [logo("Acme")]}
    sent = openai_standin.requests[0]["body"]["response_format"]["json_schema"]["schema"]
    assert "logos" in sent["required"]


def test_a_new_version_of_a_list_is_not_answered_from_the_older_ones_cache(api, openai_standin):
    image = photo(42)
    api.put("/v1/brand-lists/moving", json={"brands": ["Acme"]})
    analyze(api, image, brand_list="moving")
    api.put("/v1/brand-lists/moving", json={"brands": ["Acme", "Globex"]})
    openai_standin.script([])

    job = analyze(api, image, brand_list="moving")

    assert job["output"]["provider"]["cached"] is False


def test_a_list_deleted_before_its_job_runs_fails_the_job(api, openai_standin, held_image):
    url, release = held_image
    api.put("/v1/brand-lists/gone", json={"brands": ["Acme"]})
    body = {"image": {"url": url}, "provider": "openai", "brand_list": "gone"}
    submitted = api.post("/v1/jobs", json={"type": "image.analyze", "input": body})
    job_id = submitted.json()["id"]
    wait_until(lambda: api.get(f"/v1/jobs/{job_id}").json()["status"] == "running", 10, "running")
    api.delete("/v1/brand-lists/gone")

    release.set()
    job = wait_for_status(api, job_id)

    assert (job["status"], job["error"]["code"]) == ("failed", "BRAND_LIST_NOT_FOUND")


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"brands": [f"b{n}" for n in range(5_001)]}, "LIST_TOO_LONG", "brands"),
        ({"brands": ["x" * 101]}, "STRING_TOO_LONG", "brands[0]"),
        ({"brands": []}, "INVALID_INPUT", "brands"),
        ({"brands": ["Acme"], "owner": "me"}, "UNKNOWN_FIELD", "owner"),
    ],
)
def test_bad_lists_are_refused_with_a_code_and_field(api, body, code, field):
    response = api.put("/v1/brand-lists/bad", json=body)

    assert response.status_code == 422
    assert (error_of(response)["code"], error_of(response)["field"]) == (code, field)
