"""What pixhook shows, and to whom: records scoped to their client, security headers, error
bodies without internals, and logs without keys, secrets or image bytes (docs/security.md)."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.api.routes import batch_outcomes, batches, deliveries, endpoints, jobs
from service.api.routes import live_events as events
from service.cli.devstack import RunningStack, local_stack
from service.storage import FileLinks
from tests.support.batches import transform_item, wait_for_batch
from tests.support.cli import pixhook
from tests.support.clients import client_for
from tests.support.deliveries import deliveries_of
from tests.support.in_process import InProcessApi
from tests.support.jobs import error_of, transform_job, wait_for_status
from tests.support.stack_env import STACK_ENV
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import Receiver

# ---------------------------------------------------------------------------------------------
# Another client's ids answer 404, never data.


@dataclass(frozen=True)
class Owned:
    """One client's records, for another client to probe."""

    api: httpx.Client
    job: dict[str, Any]
    batch: dict[str, Any]
    delivery: dict[str, Any]
    endpoint: dict[str, Any]
    webhook_url: str


@pytest.fixture(scope="module")
def owned(stack: RunningStack) -> Iterator[Owned]:
    record, api = client_for(stack, "owner")
    failing = Receiver(record["webhook_secret"], respond=lambda n: 500)
    with api:
        job = api.post("/v1/jobs", json=transform_job(webhook_url=failing.url)).json()
        [delivery] = deliveries_of(api, job["id"])
        assert delivery["status"] == "dead"
        items = {"type": "image.transform", "items": [transform_item()]}
        batch = wait_for_batch(api, api.post("/v1/batches", json=items).json()["id"])
        # Made last, so the job's and batch's events above were not sent to it.
        endpoint = api.post("/v1/endpoints", json={"url": failing.url}).json()
        job = wait_for_status(api, job["id"])
        yield Owned(api, job, batch, delivery, endpoint, failing.url)
    failing.close()


@pytest.fixture(scope="module")
def intruder(stack: RunningStack) -> Iterator[httpx.Client]:
    _, api = client_for(stack, "intruder")
    with api:
        yield api


PROBES = [
    ("GET", "/v1/jobs/{job}"),
    ("POST", "/v1/jobs/{job}/cancel"),
    ("GET", "/v1/jobs/{job}/events"),
    ("POST", "/v1/jobs/{job}/retry"),
    ("GET", "/v1/batches/{batch}"),
    ("POST", "/v1/batches/{batch}/cancel"),
    ("GET", "/v1/batches/{batch}/events"),
    ("POST", "/v1/batches/{batch}/retry"),
    ("GET", "/v1/batches/{batch}/items"),
    ("GET", "/v1/batches/{batch}/results.csv"),
    ("GET", "/v1/deliveries/{delivery}"),
    ("POST", "/v1/deliveries/{delivery}/retry"),
    ("DELETE", "/v1/dlq/{delivery}"),
    ("GET", "/v1/endpoints/{endpoint}"),
    ("PATCH", "/v1/endpoints/{endpoint}"),
    ("DELETE", "/v1/endpoints/{endpoint}"),
    ("POST", "/v1/endpoints/{endpoint}/test"),
    ("GET", "/v1/endpoints/{endpoint}/stats"),
    ("GET", "/v1/endpoints/{endpoint}/secret"),
    ("POST", "/v1/endpoints/{endpoint}/secret/rotate"),
]


def test_every_route_that_takes_an_id_is_probed():
    """Guards this module: a new route with an id must be added to PROBES."""
    routes = [
        *jobs.routes,
        *events.routes,
        *batches.routes,
        *batch_outcomes.routes,
        *deliveries.routes,
        *endpoints.routes,
    ]
    with_ids = {
        (method, re.sub(r"\{(\w+)_id\}", r"{\1}", route.path))
        for route in routes
        if isinstance(route, Route) and "{" in route.path
        for method in (route.methods or set()) - {"HEAD"}
    }

    assert with_ids == set(PROBES)


@pytest.mark.parametrize(("method", "path"), PROBES)
def test_another_clients_id_is_not_found(owned: Owned, intruder: httpx.Client, method, path):
    ids = {
        "job": owned.job["id"],
        "batch": owned.batch["id"],
        "delivery": owned.delivery["id"],
        "endpoint": owned.endpoint["id"],
    }

    # PATCH with a body that would be valid, so only the ownership check can refuse it.
    response = intruder.request(method, path.format(**ids), json={"description": "mine now"})

    assert response.status_code == 404
    assert error_of(response)["code"].endswith("NOT_FOUND")
    assert owned.webhook_url not in response.text and "metadata" not in response.text


def test_another_clients_deliveries_are_not_listed(owned: Owned, intruder: httpx.Client):
    dead = intruder.get("/v1/deliveries", params={"status": "dead"}).json()
    dlq = intruder.get("/v1/dlq").json()

    assert dead["data"] == [] and dlq["data"] == []


def test_another_clients_dead_deliveries_are_not_replayed(owned: Owned, intruder: httpx.Client):
    by_id = intruder.post("/v1/dlq/replay", json={"ids": [owned.delivery["id"]]}).json()
    everything = intruder.post("/v1/dlq/replay", json={"all": True}).json()

    assert by_id == everything == {"requeued": 0}
    still_dead = owned.api.get("/v1/dlq").json()["data"]
    assert owned.delivery["id"] in {d["id"] for d in still_dead}


def test_the_owner_still_sees_what_was_probed(owned: Owned, intruder: httpx.Client):
    intruder.delete(f"/v1/dlq/{owned.delivery['id']}")
    intruder.delete(f"/v1/endpoints/{owned.endpoint['id']}")
    intruder.patch(f"/v1/endpoints/{owned.endpoint['id']}", json={"description": "mine now"})
    intruder.post(f"/v1/jobs/{owned.job['id']}/cancel")

    assert owned.api.get(f"/v1/jobs/{owned.job['id']}").json()["status"] == "succeeded"
    assert owned.api.get(f"/v1/deliveries/{owned.delivery['id']}").json()["status"] == "dead"
    endpoint = owned.api.get(f"/v1/endpoints/{owned.endpoint['id']}").json()
    assert endpoint["description"] == "" and endpoint["enabled"] is True


def test_a_tampered_file_link_is_refused(owned: Owned):
    url = owned.job["output"]["images"][0]["url"]

    response = httpx.get(url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB"))

    assert response.status_code == 403
    assert error_of(response)["code"] == "LINK_INVALID"


# ---------------------------------------------------------------------------------------------
# Security headers.

API_HEADERS = {
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}


def headers_of(response: httpx.Response, names: dict[str, str]) -> dict[str, str | None]:
    return {name: response.headers.get(name) for name in names}


def test_json_responses_carry_the_security_headers(owned: Owned):
    response = owned.api.get(f"/v1/jobs/{owned.job['id']}")

    assert headers_of(response, API_HEADERS) == API_HEADERS


def test_error_responses_carry_the_security_headers(stack: RunningStack):
    unauthorized = httpx.get(f"{stack.api_url}/v1/jobs/job_x")
    no_route = httpx.get(f"{stack.api_url}/nowhere")

    assert headers_of(unauthorized, API_HEADERS) == API_HEADERS
    assert headers_of(no_route, API_HEADERS) == API_HEADERS


def test_image_files_are_inline_sandboxed_and_cacheable(owned: Owned):
    response = httpx.get(owned.job["output"]["images"][0]["url"])

    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"].startswith("inline;")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]
    assert response.headers["cache-control"].startswith("private, max-age=")


def test_batch_results_file_is_a_download(owned: Owned):
    response = httpx.get(owned.batch["results"]["url"])

    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.headers["content-disposition"].startswith("attachment;")
    assert "sandbox" in response.headers["content-security-policy"]


def test_event_streams_keep_no_cache(owned: Owned):
    with owned.api.stream("GET", f"/v1/jobs/{owned.job['id']}/events") as response:
        response.read()

    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"


# ---------------------------------------------------------------------------------------------
# Which routes ask for a key: every route of the client API, and no other. A path no route
# answers is 404, and a method its route lacks 405, before any key is asked for.


def test_every_route_of_the_client_api_asks_for_a_key(stack: RunningStack):
    modules = (jobs, events, batches, deliveries, endpoints)
    asked = {
        (method, re.sub(r"\{\w+\}", "x", route.path))
        for module in modules
        for route in module.routes
        if isinstance(route, Route)
        for method in (route.methods or set()) - {"HEAD"}
    }

    answers = {(m, path): httpx.request(m, stack.api_url + path) for m, path in asked}

    assert {key: r.status_code for key, r in answers.items()} == {key: 401 for key in asked}
    assert {error_of(r)["code"] for r in answers.values()} == {"UNAUTHORIZED"}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v1/nothing-here", 404), ("DELETE", "/v1/jobs", 405), ("GET", "/v1/dlq/replay", 405)],
)
def test_no_key_is_asked_for_what_no_route_answers(stack: RunningStack, method, path, status):
    response = httpx.request(method, stack.api_url + path)

    assert response.status_code == status


@pytest.mark.parametrize("path", ["/healthcheck", "/readyz", "/info", "/metrics", "/openapi.json"])
def test_public_routes_never_read_the_key(stack: RunningStack, path):
    response = httpx.get(stack.api_url + path, headers={"authorization": "Bearer phk_wrong"})

    assert response.status_code == 200
    assert "ratelimit-limit" not in response.headers


# ---------------------------------------------------------------------------------------------
# The real app in this process: a bug answers 500 INTERNAL_ERROR, without a trace, a path or the
# exception's text; a stored file of an unexpected type is never served as HTML.

SECRET_KEY = "test-only-secret-key"


async def _raise(request: Request) -> Response:
    raise RuntimeError(f"boom: secret detail in {__file__}")


@pytest.fixture
def in_process_app(make_app: Callable[..., InProcessApi], tmp_path: Path) -> httpx.Client:
    """The real app, in this process, with one extra route that raises; a caller of it sees what
    a server's client would (a 500, not the exception)."""
    env = {"PIXHOOK_SECRET_KEY": SECRET_KEY, "PIXHOOK_STORAGE": f"local:{tmp_path}"}
    app = make_app(raise_app_exceptions=False, **env)
    app.app.router.routes.append(Route("/v1/bug", _raise, methods=["GET"]))
    return app.http()


def test_an_unexpected_error_answers_500_without_internals(in_process_app: httpx.Client):
    response = in_process_app.get("/v1/bug")

    assert response.status_code == 500
    assert error_of(response) == {
        "code": "INTERNAL_ERROR",
        "message": "an unexpected error occurred",
        "field": None,
    }
    for internal in ("Traceback", "boom", "secret detail", __file__, "RuntimeError"):
        assert internal not in response.text
    assert headers_of(response, API_HEADERS) == API_HEADERS


def test_a_stored_file_of_another_type_is_never_served_as_html(
    in_process_app: httpx.Client, tmp_path
):
    (tmp_path / "page.html").write_text("<script>alert(document.cookie)</script>")
    token = FileLinks(SECRET_KEY, 60).token("page.html", "text/html")

    response = in_process_app.get(f"/files/{token}")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert "sandbox" in response.headers["content-security-policy"]


# ---------------------------------------------------------------------------------------------
# Logs never carry API keys, webhook secrets or image bytes.


@pytest.fixture(scope="module")
def logged_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A stack of this module's own, so that every line in its logs came from the workload."""
    with local_stack(tmp_path_factory.mktemp("logged"), STACK_ENV) as running:
        yield running


def noise_png() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((160, 120), 60).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def lines_with(stack: RunningStack, name: str, text: str) -> int:
    """How many lines of that log contain `text`."""
    log = (stack.files_dir.parent / "logs" / f"{name}.log").read_text(errors="replace")
    return sum(text in line for line in log.splitlines())


def run_workload(stack: RunningStack) -> list[str]:
    """A representative day: every secret it handles is returned, to be looked for in logs."""
    record, api = client_for(stack, "logged")
    secret, png = record["webhook_secret"], noise_png()
    good, failing = Receiver(secret), Receiver(secret, respond=lambda n: 500)
    multipart = {"job": json.dumps({"type": "image.transform", "input": {"width": 50}})}
    try:
        with api:
            job = api.post("/v1/jobs", json=transform_job(png, webhook_url=good.url)).json()
            api.post("/v1/jobs", files={"image": png}, data=multipart)
            dead = api.post("/v1/jobs", json=transform_job(png, webhook_url=failing.url)).json()
            [delivery] = deliveries_of(api, dead["id"])
            api.post("/v1/dlq/replay", json={"ids": [delivery["id"]]})
            rotated = pixhook(stack, "clients", "rotate-secret", record["id"], "--overlap", "1h")
            new_secret = rotated.stdout.split()[1]
            api.post("/v1/jobs", json=transform_job(png, webhook_url=good.url))
            good.wait_for(2)
            wait_for_status(api, job["id"])
            batch = {"type": "image.transform", "items": [transform_item()]}
            wait_for_batch(api, api.post("/v1/batches", json=batch).json()["id"])
        new_key = pixhook(stack, "clients", "rotate-key", record["id"]).stdout.split()[1]
        httpx.get(f"{stack.api_url}/v1/jobs/job_x", headers={"authorization": f"Bearer {new_key}"})
        pixhook(stack, "clients", "revoke", record["id"])
        wrong_key = "phk_" + "w" * 43
        for key in (record["api_key"], new_key, wrong_key):
            httpx.get(f"{stack.api_url}/v1/jobs", headers={"authorization": f"Bearer {key}"})
        # The replayed delivery dies again, and the last request is logged.
        dead = f"delivery {delivery['id']} to 127.0.0.1 is dead after"
        wait_until(lambda: lines_with(stack, "worker-deliveries", dead) >= 2, 20, "the replay")
        wait_until(lambda: lines_with(stack, "api", "GET /v1/jobs ") >= 3, 10, "the last requests")
    finally:
        good.close()
        failing.close()
    image = base64.b64encode(png).decode()
    middle = len(image) // 2
    return [
        record["api_key"],
        new_key,
        wrong_key,
        stack.client.api_key,
        *(s for whole in (secret, new_secret) for s in (whole, whole.removeprefix("whsec_"))),
        image[middle : middle + 48],
    ]


def test_logs_never_carry_keys_secrets_or_image_bytes(logged_stack: RunningStack):
    needles = run_workload(logged_stack)

    workdir = logged_stack.files_dir.parent
    logs = {path: path.read_text(errors="replace") for path in workdir.glob("**/*.log")}

    assert "POST /v1/jobs" in logs[workdir / "logs" / "api.log"]  # the logs were written
    for path, text in logs.items():
        for needle in needles:
            assert needle not in text, f"{path.name} carries {needle[:12]}…"
