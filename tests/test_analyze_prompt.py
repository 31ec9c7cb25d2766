"""`image.analyze` asked the caller's way: instructions, language, reply length and an attribute
schema, through the HTTP API against the stand-in provider."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.support.jobs import error_of, wait_for_status
from tests.support.openai_standin import PRODUCT, Answer

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "waterproof": {"type": "boolean"},
        "sizes": {"type": "array", "items": {"type": "integer"}},
        "materials": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["title", "waterproof", "sizes", "materials"],
    "additionalProperties": False,
}
FITTING = {"title": "빨간 운동화", "waterproof": False, "sizes": [42, 43], "materials": ["canvas"]}


@pytest.fixture
def api(in_process_api: httpx.Client) -> httpx.Client:
    """The API and workers in this process: what the provider was sent is read here."""
    return in_process_api


def photo(seed: int) -> bytes:
    """A photo no other test sends, so the attribute cache cannot answer for it."""
    buffer = io.BytesIO()
    Image.new("RGB", (240, 160), (seed % 256, 200 - seed % 100, 31)).save(buffer, "PNG")
    return buffer.getvalue()


def job_body(image: bytes, **fields: Any) -> dict[str, Any]:
    image_field = {"base64": base64.b64encode(image).decode()}
    return {"type": "image.analyze", "input": {"image": image_field, "provider": "openai"} | fields}


def analyze(api: httpx.Client, image: bytes, **fields: Any) -> dict[str, Any]:
    response = api.post("/v1/jobs", json=job_body(image, **fields))
    assert response.status_code == 202, response.text
    return wait_for_status(api, response.json()["id"])


def prompt_text(request: dict[str, Any]) -> str:
    """Every text the provider was sent, whichever message carries it."""
    texts = []
    for message in request["body"]["messages"]:
        content = message["content"]
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        texts += [part["text"] for part in parts if part.get("type") == "text"]
    return "\n".join(texts)


def test_language_and_instructions_reach_the_prompt(api, openai_standin):
    openai_standin.script([])

    job = analyze(api, photo(1), language="KO", instructions="Mention the sole's pattern.")

    assert job["status"] == "succeeded", job["error"]
    assert job["input"]["language"] == "ko"
    text = prompt_text(openai_standin.requests[0])
    assert "BCP 47 tag is ko" in text
    assert "Mention the sole's pattern." in text


def test_max_tokens_reaches_the_request(api, openai_standin):
    openai_standin.script([])

    analyze(api, photo(2), max_tokens=321)

    assert openai_standin.requests[0]["body"]["max_tokens"] == 321


def test_an_attributes_schema_is_asked_for_strictly_and_its_answer_kept(api, openai_standin):
    openai_standin.script([Answer(content=json.dumps(FITTING))])

    job = analyze(api, photo(3), attributes=SCHEMA)

    assert job["output"]["attributes"] == FITTING
    response_format = openai_standin.requests[0]["body"]["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is True
    assert response_format["json_schema"]["schema"] == SCHEMA


def test_a_schema_strict_mode_cannot_take_is_asked_for_without_it(api, openai_standin):
    loose = SCHEMA | {"required": ["title"], "additionalProperties": True}
    openai_standin.script([Answer(content=json.dumps({"title": "Sneaker"}))])

    job = analyze(api, photo(4), attributes=loose)

    assert job["output"]["attributes"] == {"title": "Sneaker"}
    response_format = openai_standin.requests[0]["body"]["response_format"]
    assert response_format["json_schema"]["strict"] is False


def test_a_reply_off_the_schema_is_repaired_where_its_intent_is_plain(api, openai_standin):
    sloppy = {
        "title": "Sneaker",
        "waterproof": "TRUE",
        "sizes": ["42", 43],
        "materials": "canvas",
        "price_guess": "cheap",
    }
    openai_standin.script([Answer(content="```json\n" + json.dumps(sloppy) + "\n```")])

    job = analyze(api, photo(5), attributes=SCHEMA)

    assert job["output"]["attributes"] == {
        "title": "Sneaker",
        "waterproof": True,
        "sizes": [42, 43],
        "materials": ["canvas"],
    }


def test_a_reply_the_schema_refuses_fails_naming_the_path(api, openai_standin):
    wrong = FITTING | {"sizes": [42, "large"]}
    openai_standin.script([Answer(content=json.dumps(wrong))])

    job = analyze(api, photo(6), attributes=SCHEMA)

    assert (job["status"], job["error"]["code"]) == ("failed", "PROVIDER_BAD_RESPONSE")
    assert "sizes[1]" in job["error"]["message"]


def test_the_cache_serves_the_same_question_and_separates_other_ones(api, openai_standin):
    image = photo(7)
    asks: list[dict[str, Any]] = [
        {},
        {"language": "de"},
        {"instructions": "Say if it is vegan."},
        {"max_tokens": 300},
        {"attributes": SCHEMA},
    ]
    answers = [Answer(content=json.dumps(FITTING if "attributes" in a else PRODUCT)) for a in asks]
    openai_standin.script(answers)
    first = [analyze(api, image, **ask) for ask in asks]

    again = [analyze(api, image, **ask) for ask in asks]

    assert [job["output"]["provider"]["cached"] for job in first] == [False] * len(asks)
    assert [job["output"]["provider"]["cached"] for job in again] == [True] * len(asks)
    assert len(openai_standin.requests) == len(asks)


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"attributes": {"type": "object", "properties": {"a": {"type": "colour"}}}},
         "INVALID_ATTRIBUTES_SCHEMA", "input.attributes.properties.a.type"),
        ({"attributes": {"type": "array"}}, "INVALID_ATTRIBUTES_SCHEMA", "input.attributes.type"),
        ({"attributes": {"type": "object", "$ref": "https://example.com/s.json"}},
         "INVALID_ATTRIBUTES_SCHEMA", "input.attributes.$ref"),
        ({"language": "klingon"}, "UNKNOWN_LANGUAGE", "input.language"),
        ({"language": "xx"}, "UNKNOWN_LANGUAGE", "input.language"),
        ({"known_brands": [f"Brand {n}" for n in range(51)]}, "TOO_MANY_BRANDS",
         "input.known_brands"),
        ({"brand_list": "never-stored"}, "BRAND_LIST_NOT_FOUND", "input.brand_list"),
        ({"max_tokens": 100_000}, "INVALID_INPUT", "input.max_tokens"),
        ({"instructions": "x" * 2001}, "INVALID_INPUT", "input.instructions"),
    ],
)  # fmt: skip
def test_bad_prompt_inputs_are_refused_with_a_code_and_field(api, fields, code, field):
    response = api.post("/v1/jobs", json=job_body(photo(8), **fields))

    assert response.status_code == 422
    assert (error_of(response)["code"], error_of(response)["field"]) == (code, field)


@pytest.mark.parametrize(
    ("tag", "stored"),
    [
        ("zh-hans", "zh-Hans"),
        ("PT-br", "pt-BR"),
        ("sr-latn-rs", "sr-Latn-RS"),
        ("es-419", "es-419"),
    ],
)
def test_language_tags_are_kept_in_their_canonical_case(api, openai_standin, tag, stored):
    openai_standin.script([])

    job = analyze(api, photo(9), language=tag)

    assert job["input"]["language"] == stored
    assert f"BCP 47 tag is {stored}" in prompt_text(openai_standin.requests[0])
