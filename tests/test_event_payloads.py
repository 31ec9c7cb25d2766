"""The webhook event payloads: one model per event type pixhook sends, the `webhooks` section of
/openapi.json derived from them, and the payload reference in docs/webhooks.md kept fresh.
(Real deliveries are checked against the models in test_jobs, test_batches and test_endpoints.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from service.api.event_docs import REGENERATE, example_body, with_reference
from service.api.event_payloads import EVENTS
from service.api.routes.system import openapi_document
from service.app import create_app
from service.config import Settings
from service.publishing import WEBHOOK_EVENT_TYPES
from webhooks.endpoints import PING

WEBHOOKS_DOC = Path(__file__).parent.parent / "docs" / "webhooks.md"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    settings = Settings()
    return openapi_document(create_app(settings).routes, settings)


def test_every_event_type_pixhook_sends_has_a_model():
    assert set(EVENTS) == {*WEBHOOK_EVENT_TYPES, PING}


def test_the_document_has_a_webhook_per_event_type_with_a_named_body(document):
    validate(document)

    assert set(document["webhooks"]) == {*WEBHOOK_EVENT_TYPES, PING}
    for event_type, model in EVENTS.items():
        body = document["webhooks"][event_type]["post"]["requestBody"]["content"]
        ref = body["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{model.__name__}"
        assert model.__name__ in document["components"]["schemas"]


def test_every_ref_of_the_webhooks_names_a_component(document):
    schemas = document["components"]["schemas"]

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if "$ref" in node else []
            return own + [ref for value in node.values() for ref in refs(value)]
        if isinstance(node, list):
            return [ref for item in node for ref in refs(item)]
        return []

    for ref in refs({"webhooks": document["webhooks"], "schemas": schemas}):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


@pytest.mark.parametrize("event_type", sorted(EVENTS))
def test_the_example_of_each_event_is_valid_for_its_model(event_type):
    body = example_body(event_type)  # validates it

    assert body["type"] == event_type and list(body) == ["type", "id", "timestamp", "data"]


def test_the_payload_reference_in_docs_webhooks_md_is_fresh():
    text = WEBHOOKS_DOC.read_text()

    assert with_reference(text) == text, f"docs/webhooks.md is stale: run `{REGENERATE}`"
