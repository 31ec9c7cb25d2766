"""`/openapi.json`: a valid OpenAPI 3.1 document, generated from the routes, and true of the
running API: schemathesis fuzzes every operation over HTTP against the real stack and fails on
any 5xx, an undocumented status, content type or error code, a missing header, or a response
with a key the schema does not have."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from pydantic import BaseModel
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from service.api.openapi import UndocumentedRoute, build_document
from service.api.routes.system import openapi_document
from service.app import create_app
from service.cli.devstack import RunningStack
from service.config import LimitSettings, Settings
from tests.support.cli import pixhook

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# 20 operations x 50 examples, and 2 x 50 POSTs whose links are followed: ~1000 requests, ~20 s.
EXAMPLES_PER_OPERATION = 50
STATEFUL_SCENARIOS = 50


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    settings = Settings()
    return openapi_document(create_app(settings).routes, settings)


def test_document_is_valid_openapi_3_1(document):
    validate(document)  # raises on any departure from the 3.1 schema

    assert document["openapi"] == "3.1.0"


def test_document_describes_every_route_and_method(document):
    app = create_app(Settings())
    routes = [route for route in app.routes if isinstance(route, Route)]

    described = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item
    }

    assert described == {
        (route.path, method) for route in routes for method in (route.methods or set()) - {"HEAD"}
    }


def test_a_route_without_an_operation_stops_the_document():
    async def undocumented(request: Any) -> None: ...

    routes = [Route("/v1/secret", undocumented, methods=["GET"])]

    with pytest.raises(UndocumentedRoute, match="/v1/secret"):
        build_document(routes, Settings(), path_patterns={}, title="t", version="0")


def objects_in(schema: Any, schemas: dict[str, Any], seen: set[str]) -> list[dict[str, Any]]:
    """Every object schema with properties that `schema` holds, following `$ref`s."""
    found = []
    if isinstance(schema, dict):
        ref = schema.get("$ref", "")
        name = ref.rpartition("/")[2]
        if name and name not in seen:
            seen.add(name)
            found += objects_in(schemas[name], schemas, seen)
        if "properties" in schema:
            found.append(schema)
        for value in schema.values():
            found += objects_in(value, schemas, seen)
    elif isinstance(schema, list):
        for value in schema:
            found += objects_in(value, schemas, seen)
    return found


def test_every_object_a_request_body_holds_refuses_unknown_fields(document):
    """Issue 16: unknown fields are refused everywhere; the document says so of every object."""
    schemas = document["components"]["schemas"]
    bodies = [
        operation["requestBody"]
        for item in document["paths"].values()
        for operation in item.values()
        if "requestBody" in operation
    ]

    objects = objects_in(bodies, schemas, set())

    assert len(objects) > 20
    assert [o.get("title") for o in objects if o.get("additionalProperties") is not False] == []


def test_webhooks_are_described_by_their_models():
    class Completed(BaseModel):
        type: str
        id: str

    document = build_document(
        [],
        Settings(),
        path_patterns={},
        title="t",
        version="0",
        webhooks={"job.completed": Completed},
    )

    validate(document)
    body = document["webhooks"]["job.completed"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/Completed"}
    assert "Completed" in document["components"]["schemas"]


def test_limits_in_the_document_follow_the_settings():
    settings = Settings(limits=LimitSettings(max_output_side=640, max_prompt_chars=77))
    document = openapi_document(create_app(settings).routes, settings)

    text = json.dumps(document)

    assert '"maximum": 640' in text
    assert '"maxLength": 77' in text


def test_document_is_served_over_http(stack: RunningStack):
    response = httpx.get(f"{stack.api_url}/openapi.json")

    assert response.status_code == 200
    assert "/v1/jobs" in response.json()["paths"]


# The fuzzer works as a client of its own, so whatever it cancels, retries or replays belongs
# to no other test, and with a rate it cannot exhaust in one run.


@pytest.fixture(scope="module")
def fuzz_key(stack: RunningStack) -> str:
    created = pixhook(
        stack, "clients", "create", "openapi-fuzz", "--rate", "10000", "--burst", "10000", "--json"
    )
    assert created.returncode == 0, created.stderr
    api_key: str = json.loads(created.stdout)["api_key"]
    return api_key


@pytest.fixture(scope="module")
def live_schema(stack: RunningStack, fuzz_key: str) -> schemathesis.BaseSchema:
    """The document as the running API serves it, loaded by schemathesis over HTTP."""
    headers = {"Authorization": f"Bearer {fuzz_key}"}
    # Positive data only: what a client following the document sends. Refusals of invalid
    # data are the other tests' business (test_bad_input.py and friends).
    config = schemathesis.Config.from_dict({"headers": headers, "generation": {"mode": "positive"}})
    return schemathesis.openapi.from_url(
        f"{stack.api_url}/openapi.json", config=config, headers=headers
    )


def _operations() -> list[tuple[str, str]]:
    settings = Settings()
    paths = openapi_document(create_app(settings).routes, settings)["paths"]
    return [(method.upper(), path) for path, item in paths.items() for method in item]


@pytest.mark.parametrize(("method", "path"), _operations())
def test_every_operation_answers_as_documented(live_schema, fuzz_key, method, path):
    operation = live_schema[path][method]
    auth = {"Authorization": f"Bearer {fuzz_key}"}

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,  # the same requests every run: a failure reproduces
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Any) -> None:
        case.call_and_validate(headers=auth, checks=CHECKS, timeout=20)

    call()


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/batches"])
def test_what_a_post_creates_answers_through_its_links(live_schema, fuzz_key, document, path):
    """Stateful: each job or batch a generated POST creates is read and canceled
    through the links the document gives its 202. (Links are followed here rather than by
    schemathesis's state machine, whose draws depend on live state and so trip Hypothesis's
    flakiness checks.)"""
    auth = {"Authorization": f"Bearer {fuzz_key}"}
    links = document["paths"][path]["post"]["responses"]["202"]["links"].values()
    by_id = {
        operation["operationId"]: live_schema[each_path][method.upper()]
        for each_path, item in document["paths"].items()
        for method, operation in item.items()
    }
    steps = [by_id[link["operationId"]] for link in links]

    @given(case=live_schema[path]["POST"].as_strategy())
    @settings(
        max_examples=STATEFUL_SCENARIOS,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def create_then_follow(case: Any) -> None:
        # Generated keys collide (409) more than real clients' do; here the point is what follows.
        if case.headers:
            case.headers.pop("Idempotency-Key", None)
        created = case.call_and_validate(headers=auth, checks=CHECKS, timeout=20)
        if created.status_code != 202:
            return
        for link, step in zip(links, steps, strict=True):
            [(name, _)] = link["parameters"].items()
            follow = step.Case(path_parameters={name: created.json()["id"]})
            follow.call_and_validate(headers=auth, checks=CHECKS, timeout=20)

    create_then_follow()


def test_null_generate_fields_take_their_defaults(api):
    """Regression: `width: null` reached an assert in generate._side and answered 500."""
    nulls = {"width": None, "height": None, "steps": None, "n": None, "seed": None}
    body = {"type": "image.generate", "input": {"prompt": "a red chair", **nulls}}

    response = api.post("/v1/jobs", json=body)

    assert response.status_code == 202, response.text
    taken = response.json()["input"]
    assert (taken["width"], taken["height"], taken["steps"], taken["n"]) == (1024, 1024, 50, 1)
    assert taken["seed"] is None


# Server errors the fuzzer found, each fixed: kept so they stay fixed.


def test_non_ascii_base64_is_refused_with_422(api):
    # Past Latin-1, pybase64 raises a plain ValueError instead of binascii.Error.
    body = {"type": "image.analyze", "input": {"image": {"base64": "\u0100"}}}

    assert api.post("/v1/jobs", json=body).status_code == 422


def test_a_non_ascii_digit_limit_is_refused_with_422(api):
    assert api.get("/v1/deliveries", params={"limit": "\u00b2"}).status_code == 422


@pytest.mark.parametrize("moment", ["nan", "inf", "-Infinity"])
def test_a_moment_that_is_not_finite_is_refused_with_422(api, moment):
    assert api.get("/v1/dlq", params={"since": moment}).status_code == 422
    as_json = {"nan": "NaN", "inf": "Infinity"}.get(moment, moment)  # Python's JSON spells them so
    replay = api.post("/v1/dlq/replay", content=f'{{"until": {as_json}}}')
    assert replay.status_code == 422
