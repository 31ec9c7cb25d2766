"""The example CMS receiver, over real HTTP: signed deliveries update products exactly once, in
event order, and nothing a sender can put in a verified body makes it answer 500."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from examples.cms_receiver import WEBHOOK_PATH, create_app, main
from service.cli.devstack import free_port, wait_for
from tests.support.deliveries import deliveries_of
from tests.support.in_process import BASE_URL, InProcessApi
from tests.support.jobs import transform_job, wait_for_status
from tests.support.waiting import wait_until
from webhooks import InvalidSecret, generate_secret, webhook_headers

SECRET = generate_secret()
TOKEN = "cms-static-token"
ROOT = Path(__file__).resolve().parent.parent
VISION = {
    "category": "Footwear",
    "subcategory": "Sneakers",
    "brand_detected": "Acme",
    "dominant_colors": ["red", "white"],
    "primary_material": "canvas",
    "product_condition": "new",
    "image_quality": "high",
    "has_text_overlay": False,
    "description": "A red canvas sneaker.",
    "tags": ["sneaker", "red"],
}
ANALYSIS = {"dominant_colors": [{"hex": "#c0392b", "share": 0.6}], "quality": {"grade": "medium"}}


def job_event(
    event_type: str = "job.completed",
    *,
    job_type: str = "image.transform",
    output: dict[str, Any] | None = None,
    error: dict[str, str] | None = None,
    finished_at: str = "2025-06-01T12:00:00.000Z",
    metadata: dict[str, Any] | None = None,
    job_id: str = "job_1",
) -> dict[str, Any]:
    data = {
        "id": job_id,
        "type": job_type,
        "status": "failed" if event_type == "job.failed" else "succeeded",
        "output": output if output is not None else images(thumb="https://cdn.test/thumb.webp"),
        "error": error,
        "metadata": {"product_id": "sku-123"} if metadata is None else metadata,
        "finished_at": finished_at,
    }
    return {"type": event_type, "id": new_id(), "timestamp": finished_at, "data": data}


def images(**urls: str) -> dict[str, Any]:
    return {
        "images": [
            {"name": name, "url": url, "media_type": "image/webp", "width": 64, "height": 48}
            for name, url in urls.items()
        ]
    }


def new_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


@dataclass
class RunningReceiver:
    http: httpx.Client
    bearer: str | None = TOKEN
    signing: Sequence[str] = field(default_factory=lambda: [SECRET])

    def deliver(
        self,
        event: Any,
        *,
        webhook_id: str | None = None,
        body: bytes | None = None,
        timestamp: int | None = None,
        signing: Sequence[str] | None = None,
    ) -> httpx.Response:
        """Sign and POST, as pixhook does: the event's id is the webhook-id."""
        body = json.dumps(event).encode() if body is None else body
        msg_id = webhook_id or (event.get("id") if isinstance(event, dict) else None) or new_id()
        headers = webhook_headers(
            signing or self.signing, msg_id, timestamp or int(time.time()), body
        )
        if self.bearer is not None:
            headers["authorization"] = f"Bearer {self.bearer}"
        return self.http.post(WEBHOOK_PATH, content=body, headers=headers)

    def product(self, product_id: str = "sku-123") -> Any:
        return self.http.get(f"/products/{product_id}").json()


@pytest.fixture
def start_receiver(tmp_path: Path) -> Iterator[Callable[..., RunningReceiver]]:
    """Starts the app under uvicorn on loopback, with `create_app`'s keyword arguments."""
    started: list[tuple[uvicorn.Server, threading.Thread, httpx.Client]] = []

    def start(
        secrets: str | Sequence[str] = SECRET, bearer_token: str | None = TOKEN, **kwargs: Any
    ) -> RunningReceiver:
        db = str(tmp_path / f"cms-{len(started)}.sqlite3")
        app = create_app(secrets, db, bearer_token=bearer_token, **kwargs)
        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for(lambda: server.started, "the CMS receiver", 10)
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        started.append((server, thread, http))
        return RunningReceiver(http, bearer_token)

    yield start
    for server, thread, http in started:
        http.close()
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def cms(start_receiver: Callable[..., RunningReceiver]) -> RunningReceiver:
    return start_receiver()


def test_completed_transform_sets_the_products_image_urls(cms):
    output = images(thumb="https://cdn.test/t.webp", large="https://cdn.test/l.webp")

    response = cms.deliver(job_event(output=output))

    assert response.json() == {"status": "applied"}
    product = cms.product()
    assert product["images"]["thumb"] == {
        "url": "https://cdn.test/t.webp",
        "media_type": "image/webp",
        "width": 64,
        "height": 48,
        "job_id": "job_1",
        "event_at": "2025-06-01T12:00:00.000Z",
    }
    assert product["images"]["large"]["url"] == "https://cdn.test/l.webp"
    assert product["updated_at"] == "2025-06-01T12:00:00.000Z"


def test_completed_analyze_sets_catalogue_attributes(cms):
    output = {"analysis": ANALYSIS, "attributes": VISION}

    cms.deliver(job_event(job_type="image.analyze", output=output, job_id="job_a"))

    attributes = cms.product()["attributes"]
    assert attributes["category"] == "Footwear"
    assert attributes["tags"] == ["sneaker", "red"]
    assert attributes["description"] == "A red canvas sneaker."
    assert attributes["brand"] == "Acme"
    assert attributes["colors"] == ["red", "white"]
    assert attributes["color_hexes"] == ["#c0392b"]
    assert (attributes["image_quality"], attributes["quality_grade"]) == ("high", "medium")
    assert attributes["job_id"] == "job_a"


def test_analyze_without_a_vision_model_keeps_the_local_analysis(cms):
    cms.deliver(job_event(job_type="image.analyze", output={"analysis": ANALYSIS}))

    attributes = cms.product()["attributes"]
    assert attributes["category"] is None
    assert attributes["tags"] == []
    assert attributes["color_hexes"] == ["#c0392b"]
    assert attributes["quality_grade"] == "medium"


def test_a_repeated_webhook_id_is_a_duplicate_and_changes_nothing(cms):
    first = job_event(output=images(thumb="https://cdn.test/first.webp"))
    cms.deliver(first)
    later = job_event(
        output=images(thumb="https://cdn.test/second.webp"), finished_at="2025-06-02T00:00:00Z"
    )

    response = cms.deliver(later, webhook_id=first["id"])

    assert response.json() == {"status": "duplicate"}
    assert cms.product()["images"]["thumb"]["url"] == "https://cdn.test/first.webp"


def test_concurrent_deliveries_of_one_event_apply_it_once(cms):
    event = job_event()

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(lambda _: cms.deliver(event).json()["status"], range(8)))

    assert statuses == ["applied"] + ["duplicate"] * 7


def test_a_stale_timestamp_is_rejected_and_nothing_recorded(cms):
    event = job_event()

    response = cms.deliver(event, timestamp=int(time.time()) - 301)

    assert (response.status_code, response.json()) == (400, {"error": "stale_timestamp"})
    assert cms.http.get("/products/sku-123").status_code == 404
    # Its id was not remembered either: the fresh retry applies.
    assert cms.deliver(event).json() == {"status": "applied"}


def test_a_bad_signature_is_rejected(cms):
    response = cms.deliver(job_event(), signing=[generate_secret()])

    assert (response.status_code, response.json()) == (400, {"error": "bad_signature"})
    assert cms.http.get("/products/sku-123").status_code == 404


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", TOKEN, "Basic x"])
def test_requests_without_the_bearer_token_are_unauthorized(cms, authorization):
    body = json.dumps(job_event()).encode()
    headers = webhook_headers([SECRET], new_id(), int(time.time()), body)
    if authorization is not None:
        headers["authorization"] = authorization

    response = cms.http.post(WEBHOOK_PATH, content=body, headers=headers)

    assert (response.status_code, response.json()) == (401, {"error": "unauthorized"})
    assert cms.http.get("/products/sku-123").status_code == 404


def test_without_a_configured_token_none_is_asked_for(start_receiver):
    cms = start_receiver(bearer_token=None)

    assert cms.deliver(job_event()).json() == {"status": "applied"}


def test_the_previous_secret_still_verifies_during_a_rotation(start_receiver):
    old, new = generate_secret(), generate_secret()
    cms = start_receiver(secrets=[new, old])

    response = cms.deliver(job_event(), signing=[old])

    assert response.json() == {"status": "applied"}


def test_an_older_event_does_not_overwrite_a_newer_one(cms):
    newer = job_event(output=images(thumb="https://cdn.test/new.webp"), job_id="job_new")
    older = job_event(
        output=images(thumb="https://cdn.test/old.webp", extra="https://cdn.test/extra.webp"),
        finished_at="2025-06-01T11:59:59.999Z",
        job_id="job_old",
    )
    cms.deliver(newer)

    response = cms.deliver(older)

    assert response.json() == {"status": "applied"}  # its `extra` image is news
    product = cms.product()
    assert product["images"]["thumb"]["url"] == "https://cdn.test/new.webp"
    assert product["images"]["extra"]["job_id"] == "job_old"
    assert product["jobs"]["image.transform"]["job_id"] == "job_new"
    assert product["updated_at"] == "2025-06-01T12:00:00.000Z"


def test_an_event_older_in_every_part_is_outdated(cms):
    output = {"analysis": ANALYSIS, "attributes": VISION}
    cms.deliver(job_event(job_type="image.analyze", output=output))
    older_output = {"analysis": ANALYSIS, "attributes": VISION | {"category": "Hats"}}
    # An offset counts: 13:59+02:00 is 11:59Z, before the 12:00Z already held.
    older = job_event(
        job_type="image.analyze", output=older_output, finished_at="2025-06-01T13:59:00+02:00"
    )

    assert cms.deliver(older).json() == {"status": "outdated"}
    assert cms.product()["attributes"]["category"] == "Footwear"


def test_a_failed_job_is_recorded_on_the_product(cms):
    error = {"code": "IMAGE_TOO_LARGE", "message": "the image has too many pixels"}

    response = cms.deliver(job_event("job.failed", output={}, error=error, job_id="job_f"))

    assert response.json() == {"status": "applied"}
    assert cms.product()["jobs"]["image.transform"] == {
        "job_id": "job_f",
        "status": "failed",
        "error": error,
        "event_at": "2025-06-01T12:00:00.000Z",
    }


def test_a_late_failure_does_not_hide_a_newer_success(cms):
    error = {"code": "X", "message": "failed earlier"}
    cms.deliver(job_event(job_id="job_ok"))

    cms.deliver(job_event("job.failed", error=error, finished_at="2025-06-01T11:00:00Z"))

    job = cms.product()["jobs"]["image.transform"]
    assert (job["status"], job["error"], job["job_id"]) == ("succeeded", None, "job_ok")


def test_ping_is_answered_pong(cms):
    ping = {"type": "ping", "id": new_id(), "timestamp": "2025-06-01T12:00:00Z", "data": {}}

    assert cms.deliver(ping).json() == {"status": "pong"}


@pytest.mark.parametrize("event_type", ["job.started", "job.canceled", "batch.completed", "x"])
def test_other_event_types_are_ignored(cms, event_type):
    response = cms.deliver(job_event(event_type))

    assert (response.status_code, response.json()) == (200, {"status": "ignored"})
    assert cms.http.get("/products/sku-123").status_code == 404


def test_a_job_naming_its_product_by_sku_updates_that_product(cms):
    """The README's jobs carry `metadata.sku`; the receiver once acted on `product_id` only."""
    response = cms.deliver(job_event(metadata={"sku": "SNEAKER-42"}))

    assert response.json() == {"status": "applied"}
    assert cms.product("SNEAKER-42")["images"]["thumb"]["url"] == "https://cdn.test/thumb.webp"


def test_a_completed_job_without_a_product_is_ignored(cms):
    response = cms.deliver(job_event(metadata={"order": "o-1"}))

    assert response.json() == {"status": "ignored"}


def test_a_signed_body_that_is_not_json_is_a_bad_request(cms):
    response = cms.deliver(None, body=b"{not json")

    assert (response.status_code, response.json()) == (400, {"error": "bad_body"})


@pytest.mark.parametrize(
    "event",
    [
        [],
        "job.completed",
        None,
        {"type": "job.completed"},
        {"type": "job.completed", "data": "x"},
        job_event(output={"images": "x"}),
        job_event(output={"images": [{"name": "thumb"}]}),
        job_event(output={"images": [None]}),
        job_event(finished_at="yesterday"),
        job_event(finished_at="2025-06-01T12:00:00"),
        job_event(metadata={"product_id": 7}),
        job_event(job_type="image.analyze", output={"analysis": {"quality": "high"}}),
        job_event(job_type="image.analyze", output={"analysis": {}, "attributes": []}),
        job_event("job.failed", error=None),
        job_event(job_type="image.unknown"),
        job_event(metadata={"product_id": " "}),
        job_event(finished_at="0001-01-01T00:00:00+01:00"),
        job_event(output={"images": [{"name": "a", "url": "u", "width": float("nan")}]}),
        job_event(metadata={"product_id": "\ud800"}),
    ],
)
def test_verified_bodies_of_unexpected_shape_are_ignored(cms, event):
    response = cms.deliver(event, webhook_id=new_id())

    assert (response.status_code, response.json()) == (200, {"status": "ignored"})


def test_a_deeply_nested_signed_body_is_a_bad_request(cms):
    response = cms.deliver(None, body=b"[" * 100_000 + b"]" * 100_000)

    assert response.status_code == 400


def test_an_unknown_product_is_not_found(cms):
    assert cms.http.get("/products/nope").status_code == 404


def test_healthz(cms):
    assert cms.http.get("/healthz").json() == {"status": "ok"}


def test_a_malformed_secret_fails_at_startup(tmp_path):
    with pytest.raises(InvalidSecret):
        create_app(["whsec_not base64!"], str(tmp_path / "cms.sqlite3"))


def test_main_refuses_to_start_without_a_secret(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--port", "0"], environ={})

    assert exited.value.code == 2
    assert "CMS_WEBHOOK_SECRET" in capsys.readouterr().err


def test_main_serves_from_the_command_line(tmp_path):
    port, old = free_port(), generate_secret()
    env = os.environ | {"CMS_WEBHOOK_SECRET": f"{SECRET}, {old}", "CMS_BEARER_TOKEN": TOKEN}
    command = [sys.executable, "examples/cms_receiver.py", "--port", str(port)]
    db = tmp_path / "cms.sqlite3"
    process = subprocess.Popen([*command, "--db", str(db)], cwd=ROOT, env=env)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            wait_for(lambda: _answers(http), "the CMS receiver", 20, process)
            cms = RunningReceiver(http, TOKEN, [old])

            assert cms.deliver(job_event()).json() == {"status": "applied"}
            assert cms.product()["images"]["thumb"]["url"] == "https://cdn.test/thumb.webp"
    finally:
        process.terminate()
        process.wait(10)
    assert db.exists()


def _answers(http: httpx.Client) -> bool:
    try:
        return http.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


# ---------------------------------------------------------------------------------------------
# End to end: pixhook's endpoint delivering to the example, as a CMS team would wire it up.


def test_pixhook_keeps_a_cms_product_up_to_date(app_with_workers: InProcessApi, start_receiver):
    with app_with_workers.http(app_with_workers.client.api_key) as api:
        endpoint = api.post(
            "/v1/endpoints",
            json={
                "url": "http://127.0.0.1:9/not-yet",
                "event_types": ["job.completed", "job.failed"],
                "headers": {"Authorization": f"Bearer {TOKEN}"},
            },
        ).json()
        cms = start_receiver(secrets=endpoint["secret"])
        url = f"{cms.http.base_url}".rstrip("/") + WEBHOOK_PATH
        api.patch(f"/v1/endpoints/{endpoint['id']}", json={"url": url})

        job = api.post("/v1/jobs", json=transform_job(metadata={"product_id": "sku-e2e"})).json()
        finished = wait_for_status(api, job["id"])
        [delivery] = deliveries_of(api, job["id"])
        product = cms.product("sku-e2e")

        [image] = finished["output"]["images"]
        stored = product["images"][image["name"]]
        # Output links are signed afresh on every read: the same file, another time and signature
        # (the last two dot-separated parts of a /files/ token).
        assert stored["url"].rsplit(".", 2)[0] == image["url"].rsplit(".", 2)[0]
        assert stored["url"].startswith(f"{BASE_URL}/files/")
        assert stored["job_id"] == job["id"]
        attempts = api.get(f"/v1/deliveries/{delivery['id']}").json()["attempts"]
        assert '"applied"' in attempts[-1]["response_excerpt"]

        # A redelivery (the same webhook-id) changes nothing: the CMS dedupes it.
        api.post(f"/v1/deliveries/{delivery['id']}/retry")

        def retried() -> list[dict[str, Any]] | None:
            found: list[dict[str, Any]] = api.get(f"/v1/deliveries/{delivery['id']}").json()[
                "attempts"
            ]
            return found if len(found) >= 2 else None

        attempts = wait_until(retried, 10, "the retried delivery to be attempted")
        assert '"duplicate"' in attempts[-1]["response_excerpt"]
        assert cms.product("sku-e2e") == product
