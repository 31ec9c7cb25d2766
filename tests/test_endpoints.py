"""Endpoints through the API: each test is a client of its own, since an endpoint receives every
event of its client that matches it, and receivers verify every signature they get."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, cast

import httpx
import pytest
from cryptography.fernet import Fernet
from redis import Redis
from standardwebhooks.webhooks import Webhook

from service.api.event_payloads import EndpointDisabledEvent, PingEvent
from service.cli.devstack import RunningStack
from tests.support.clients import client_for
from tests.support.console import browser, sign_in
from tests.support.deliveries import deliveries_of
from tests.support.in_process import InProcessApi
from tests.support.jobs import error_of, transform_job, wait_for_status
from tests.support.raw_servers import Trickler
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import Receiver
from webhooks.sealing import Sealer

TOKEN = "Bearer cms-token-0123456789abcdef"


@pytest.fixture
def tenant(app_with_workers: InProcessApi) -> tuple[dict[str, Any], httpx.Client]:
    """A client of the API running with its workers in this process: its record and its API."""
    made = app_with_workers.client
    record = {"id": made.client.id, "api_key": made.api_key, "webhook_secret": made.webhook_secret}
    return record, app_with_workers.http(made.api_key)


@pytest.fixture
def stack_tenant(stack: RunningStack) -> Iterator[tuple[dict[str, Any], httpx.Client]]:
    """A client of the stack, for a test that reads its deliveries worker's log file."""
    record, api = client_for(stack, "endpoints")
    with api:
        yield record, api


@pytest.fixture
def app(make_app: Callable[..., InProcessApi]) -> InProcessApi:
    """The API in this process: managing endpoints sends nothing, so the tests that only manage
    them need no worker, and each gets a Redis of its own."""
    return make_app()


@pytest.fixture
def managed(app: InProcessApi) -> tuple[dict[str, Any], httpx.Client]:
    """The in-process app's client: its record and an HTTP client of it."""
    made = app.client
    record = {"id": made.client.id, "api_key": made.api_key, "webhook_secret": made.webhook_secret}
    return record, app.http(made.api_key)


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def create(secret: str, respond: Callable[[int], int] = lambda n: 200) -> Receiver:
        made.append(Receiver(secret, respond))
        return made[-1]

    yield create
    for receiver in made:
        receiver.close()


def add_endpoint(api: httpx.Client, url: str, **fields: Any) -> dict[str, Any]:
    response = api.post("/v1/endpoints", json={"url": url, **fields})
    assert response.status_code == 201, response.text
    endpoint: dict[str, Any] = response.json()
    return endpoint


def types_of(requests: list[Any]) -> list[str]:
    return [r.payload["type"] for r in requests]


# ---------------------------------------------------------------------------------------------
# Managing endpoints


def test_an_endpoint_is_created_read_changed_and_deleted(managed, app: InProcessApi):
    _, api = managed
    created = add_endpoint(
        api,
        "http://127.0.0.1:9/cms",
        description="product CMS",
        event_types=["job.completed", "batch.*"],
        filter={"job_types": ["image.transform"], "metadata": {"shop": "eu"}},
        headers={"Authorization": TOKEN, "X-Tenant": "eu"},
    )

    assert created["secret"].startswith("whsec_")
    assert created["kind"] == "webhook" and created["enabled"] is True
    assert created["filter"] == {"job_types": ["image.transform"], "metadata": {"shop": "eu"}}
    # Header values are never returned: a long one shows its last characters, a short one none.
    assert created["headers"] == {"Authorization": "****cdef", "X-Tenant": "****"}
    endpoint_id = created["id"]
    fetched = api.get(f"/v1/endpoints/{endpoint_id}").json()
    assert fetched == {k: v for k, v in created.items() if k != "secret"}
    assert api.get(f"/v1/endpoints/{endpoint_id}/secret").json() == {"secret": created["secret"]}
    assert [e["id"] for e in api.get("/v1/endpoints").json()["data"]] == [endpoint_id]

    patched = api.patch(
        f"/v1/endpoints/{endpoint_id}",
        json={"description": "CMS", "headers": {"X-Tenant": None, "x-extra": "1"}},
    ).json()

    assert patched["description"] == "CMS" and patched["event_types"] == created["event_types"]
    assert patched["headers"] == {"Authorization": "****cdef", "x-extra": "****"}
    assert api.delete(f"/v1/endpoints/{endpoint_id}").status_code == 204
    gone = api.get(f"/v1/endpoints/{endpoint_id}")
    assert gone.status_code == 404 and error_of(gone)["code"] == "ENDPOINT_NOT_FOUND"


def test_custom_headers_are_sealed_at_rest(managed, app: InProcessApi):
    record, api = managed
    add_endpoint(api, "http://127.0.0.1:9/cms", headers={"Authorization": TOKEN})

    redis = Redis.from_url(app.redis_url)
    stored = b"".join(redis.hvals(f"pixhook:endpoints:{record['id']}"))  # type: ignore[arg-type]

    assert b'"url":"http://127.0.0.1:9/cms"' in stored  # the record itself is there, readable
    assert b"cms-token" not in stored and b"whsec_" not in stored


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({}, "INVALID_INPUT", "url"),
        ({"url": "ftp://example.com/"}, "INVALID_URL", "url"),
        ({"url": "http://169.254.169.254/latest"}, "URL_NOT_ALLOWED", "url"),
        ({"url": "https://example.com/", "event_types": ["job.complete"]}, None, None),
        ({"url": "https://example.com/", "events": ["job.*"]}, "UNKNOWN_FIELD", "events"),
        ({"url": "https://example.com/", "event_types": []}, "INVALID_INPUT", "event_types"),
        (
            {"url": "https://example.com/", "filter": {"job_types": ["image.resize"]}},
            "UNKNOWN_JOB_TYPE",
            "filter.job_types[0]",
        ),
        (
            {"url": "https://example.com/", "filter": {"metadata": {"shop": ["eu"]}}},
            "INVALID_INPUT",
            "filter.metadata.shop",
        ),
        (
            {"url": "https://example.com/", "headers": {"Content-Type": "text/plain"}},
            "INVALID_HEADER",
            "headers.Content-Type",
        ),
        (
            {"url": "https://example.com/", "headers": {"webhook-signature": "v1,forged"}},
            "INVALID_HEADER",
            "headers.webhook-signature",
        ),
        (
            {"url": "https://example.com/", "headers": {"X-Token": "a\r\nX-Evil: 1"}},
            "INVALID_HEADER",
            "headers.X-Token",
        ),
        (
            {"url": "https://example.com/", "templates": {"*": {"text": "hi"}}},
            "INVALID_TEMPLATE",
            "templates",
        ),
        (
            {"url": "https://example.com/", "kind": "slack", "templates": {"*": {"text": "{x}"}}},
            "INVALID_TEMPLATE",
            "templates.*.text",
        ),
        ({"url": "https://example.com/", "kind": "teams"}, "INVALID_INPUT", "kind"),
    ],
)
def test_bad_endpoints_are_refused_naming_the_field(managed, body, code, field):
    _, api = managed
    code = code or "UNKNOWN_EVENT_TYPE"
    field = field or "event_types[0]"

    response = api.post("/v1/endpoints", json=body)

    assert response.status_code == 422, response.text
    assert (error_of(response)["code"], error_of(response)["field"]) == (code, field)
    assert api.get("/v1/endpoints").json()["data"] == []


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_filter_job_type_that_is_not_a_name_is_refused_not_a_500(managed, method):
    """Regression (issue 15, item 22): the fuzzer's `{"job_types": [{}]}` reached a set lookup
    and answered 500 INTERNAL_ERROR (TypeError: unhashable type: 'dict')."""
    _, api = managed
    body = {"url": "https://0.com/h", "filter": {"job_types": [{}]}}
    path = "/v1/endpoints"
    if method == "PATCH":
        path += "/" + add_endpoint(api, "https://0.com/h")["id"]

    response = api.request(method, path, json=body)

    assert response.status_code == 422, response.text
    assert (error_of(response)["code"], error_of(response)["field"]) == (
        "UNKNOWN_JOB_TYPE",
        "filter.job_types[0]",
    )


def test_a_slack_webhook_url_makes_a_slack_endpoint(managed):
    _, api = managed
    endpoint = add_endpoint(api, "https://hooks.slack.com/services/T0/B0/xyz")

    assert endpoint["kind"] == "slack"


def test_a_client_has_a_limited_number_of_endpoints(managed, app: InProcessApi):
    _, api = managed
    for n in range(50):
        add_endpoint(api, f"https://example.com/{n}")

    response = api.post("/v1/endpoints", json={"url": "https://example.com/51"})

    assert response.status_code == 422 and error_of(response)["code"] == "TOO_MANY_ENDPOINTS"


def _kept_replies(redis: Redis, client_id: str) -> list[bytes]:
    """What `Idempotency-Key` keeps for this client: each record's stored reply."""
    pattern = f"pixhook:client:{client_id}:idempotency:*"
    # redis-py's sync client returns bytes here; its types describe the async client too.
    return [cast(bytes, redis.hget(name, "body")) for name in redis.scan_iter(pattern)]


def test_a_retried_create_answers_the_same_endpoint_and_keeps_its_secret_sealed(
    managed, app: InProcessApi
):
    record, api = managed
    body, headers = {"url": "http://127.0.0.1:9/cms"}, {"Idempotency-Key": "create-cms-hook"}

    first = api.post("/v1/endpoints", json=body, headers=headers)
    again = api.post("/v1/endpoints", json=body, headers=headers)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert [e["id"] for e in api.get("/v1/endpoints").json()["data"]] == [first.json()["id"]]
    [kept] = _kept_replies(Redis.from_url(app.redis_url), record["id"])
    assert kept and first.json()["secret"].encode() not in kept and b"127.0.0.1" not in kept


def test_a_kept_create_reply_that_no_longer_opens_is_a_conflict_not_a_second_endpoint(
    managed, app: InProcessApi
):
    record, api = managed
    body, headers = {"url": "http://127.0.0.1:9/cms"}, {"Idempotency-Key": "create-cms-hook"}
    assert api.post("/v1/endpoints", json=body, headers=headers).status_code == 201
    # As if PIXHOOK_ENCRYPTION_KEYS had dropped the key that sealed it.
    redis = Redis.from_url(app.redis_url)
    [name] = redis.scan_iter(f"pixhook:client:{record['id']}:idempotency:*")
    redis.hset(name, "body", Sealer([Fernet.generate_key().decode()]).seal("{}"))

    retried = api.post("/v1/endpoints", json=body, headers=headers)

    assert retried.status_code == 409
    assert (error_of(retried)["code"], error_of(retried)["field"]) == (
        "IDEMPOTENCY_UNREADABLE",
        "Idempotency-Key",
    )
    assert len(api.get("/v1/endpoints").json()["data"]) == 1


# ---------------------------------------------------------------------------------------------
# Fan-out


def test_each_event_goes_to_the_job_url_and_every_matching_endpoint(tenant, receivers):
    record, api = tenant
    direct = receivers(record["webhook_secret"])
    cms = api.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/x"}).json()
    cms_receiver = receivers(cms["secret"])
    api.patch(
        f"/v1/endpoints/{cms['id']}",
        json={
            "url": cms_receiver.url,
            "event_types": ["job.completed"],
            "headers": {"Authorization": TOKEN},
        },
    )
    eu = add_endpoint(api, "http://127.0.0.1:9/x", event_types=["job.*"])
    eu_receiver = receivers(eu["secret"])
    api.patch(
        f"/v1/endpoints/{eu['id']}",
        json={"url": eu_receiver.url, "filter": {"metadata": {"shop": "eu"}}},
    )
    analyze_only = add_endpoint(
        api, "http://127.0.0.1:9/x", filter={"job_types": ["image.analyze"]}
    )

    job = api.post("/v1/jobs", json=transform_job(webhook_url=direct.url, metadata={"shop": "eu"}))
    job_id = job.json()["id"]

    [to_job_url] = direct.wait_for(1)
    [to_cms] = cms_receiver.wait_for(1)
    started, completed = sorted(
        eu_receiver.wait_for(2), key=lambda r: r.payload["data"]["sequence"]
    )
    # Only once job.completed arrived do its deliveries exist: settled earlier, the list could
    # hold job.started's alone.
    deliveries = deliveries_of(api, job_id)
    assert all(r.verified for r in (to_job_url, to_cms, started, completed))
    assert types_of([to_job_url, to_cms, started, completed]) == [
        "job.completed",
        "job.completed",
        "job.started",
        "job.completed",
    ]
    # One event, one id, whoever receives it: each signed with its own secret.
    assert to_job_url.webhook_id == to_cms.webhook_id == completed.webhook_id
    assert to_cms.headers["authorization"] == TOKEN
    assert "authorization" not in to_job_url.headers
    by_endpoint = {d["endpoint_id"] for d in deliveries if d["status"] == "succeeded"}
    assert by_endpoint == {None, cms["id"], eu["id"]}
    assert analyze_only["id"] not in {d["endpoint_id"] for d in deliveries}


def test_an_endpoint_that_hangs_does_not_hold_up_another(tenant, receivers, serve):
    _, api = tenant
    hanging = serve(Trickler(trickle=1000, interval_s=0.5))
    add_endpoint(api, hanging.url(), event_types=["job.completed"])
    healthy = add_endpoint(api, "http://127.0.0.1:9/x", event_types=["job.completed"])
    receiver = receivers(healthy["secret"])
    api.patch(f"/v1/endpoints/{healthy['id']}", json={"url": receiver.url})

    job_ids = [api.post("/v1/jobs", json=transform_job()).json()["id"] for _ in range(3)]
    finished = [wait_for_status(api, job_id)["finished_at"] for job_id in job_ids]

    received = receiver.wait_for(3, timeout_s=10)
    assert {r.payload["data"]["id"] for r in received} == set(job_ids)
    # The hanging endpoint holds each attempt for its whole 3 s timeout; the healthy one is
    # served as soon as each job ends.
    for request in received:
        ended = next(
            f for j, f in zip(job_ids, finished, strict=True) if j in request.body.decode()
        )
        assert request.received_at - _epoch(ended) < 1.5


def test_a_rotated_secret_signs_alongside_the_old_one(tenant, receivers):
    _, api = tenant
    endpoint = add_endpoint(api, "http://127.0.0.1:9/x", event_types=["job.completed"])
    old_receiver = receivers(endpoint["secret"])
    api.patch(f"/v1/endpoints/{endpoint['id']}", json={"url": old_receiver.url})

    rotated = api.post(f"/v1/endpoints/{endpoint['id']}/secret/rotate").json()
    api.post("/v1/jobs", json=transform_job())

    [request] = old_receiver.wait_for(1)
    assert rotated["secret"] != endpoint["secret"] and rotated["previous_secret_expires_at"]
    assert request.verified and len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(rotated["secret"]).verify(request.body, request.headers)  # raises if it does not
    assert api.get(f"/v1/endpoints/{endpoint['id']}/secret").json() == {"secret": rotated["secret"]}


# ---------------------------------------------------------------------------------------------
# Test sends and stats


def test_a_test_send_pings_the_endpoint_and_reports_what_it_answered(tenant, receivers):
    _, api = tenant
    endpoint = add_endpoint(api, "http://127.0.0.1:9/x", headers={"Authorization": TOKEN})
    receiver = receivers(endpoint["secret"], respond=lambda n: 200 if n == 0 else 500)
    api.patch(f"/v1/endpoints/{endpoint['id']}", json={"url": receiver.url})

    good = api.post(f"/v1/endpoints/{endpoint['id']}/test").json()
    bad = api.post(f"/v1/endpoints/{endpoint['id']}/test").json()

    first, _ = receiver.wait_for(2)
    assert first.verified and first.payload["type"] == "ping"
    PingEvent.model_validate(first.payload)  # as docs/webhooks.md describes it
    assert first.payload["data"]["endpoint_id"] == endpoint["id"]
    assert first.headers["authorization"] == TOKEN
    assert (
        good["ok"] is True and good["status_code"] == 200 and good["event_id"] == first.webhook_id
    )
    assert (bad["ok"], bad["status_code"], bad["error_code"]) == (False, 500, "HTTP_STATUS")
    stats = api.get(f"/v1/endpoints/{endpoint['id']}/stats").json()
    assert (stats["attempts"], stats["succeeded"]) == (2, 1)
    assert stats["recent"]["success_rate"] == 0.5
    latency = stats["recent"]["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert stats["last_failure"]["status_code"] == 500
    assert stats["last_failure"]["event_type"] == "ping"
    assert stats["failing_since"] is not None


def test_a_test_send_to_an_unreachable_endpoint_says_why(tenant):
    _, api = tenant
    endpoint = add_endpoint(api, "http://127.0.0.1:9/nothing-listens")

    result = api.post(f"/v1/endpoints/{endpoint['id']}/test").json()

    assert (result["ok"], result["status_code"], result["error_code"]) == (
        False,
        None,
        "CONNECT_ERROR",
    )


# ---------------------------------------------------------------------------------------------
# Disabling an endpoint that keeps failing


def test_an_endpoint_failing_for_too_long_is_disabled_announced_and_replayable(tenant, receivers):
    _, api = tenant
    watcher = add_endpoint(api, "http://127.0.0.1:9/x", event_types=["endpoint.disabled"])
    watcher_receiver = receivers(watcher["secret"])
    api.patch(f"/v1/endpoints/{watcher['id']}", json={"url": watcher_receiver.url})
    broken = add_endpoint(api, "http://127.0.0.1:9/x", event_types=["job.completed"])
    healthy = {"now": False}
    broken_receiver = receivers(broken["secret"], respond=lambda n: 200 if healthy["now"] else 500)
    api.patch(
        f"/v1/endpoints/{broken['id']}",
        json={"url": broken_receiver.url, "description": "the CMS"},
    )

    # Failing for longer than PIXHOOK_ENDPOINT_DISABLE_AFTER (2 s in tests) disables it.
    def disabled_while_failing() -> bool:
        if not api.get(f"/v1/endpoints/{broken['id']}").json()["enabled"]:
            return True
        api.post("/v1/jobs", json=transform_job())  # one more failure for it
        return False

    wait_until(disabled_while_failing, 20, "the failing endpoint to be disabled", poll_s=0.5)

    [announcement] = watcher_receiver.wait_for(1)
    assert announcement.verified and announcement.payload["type"] == "endpoint.disabled"
    EndpointDisabledEvent.model_validate(announcement.payload)
    data = announcement.payload["data"]
    assert (data["id"], data["host"], data["description"]) == (
        broken["id"],
        "127.0.0.1",
        "the CMS",
    )
    assert "failed" in data["reason"] and "500" in data["reason"]
    disabled = api.get(f"/v1/endpoints/{broken['id']}").json()
    assert disabled["disabled_reason"] == data["reason"]

    # Its undelivered events wait in the DLQ; once it is fixed and re-enabled, a replay
    # delivers them.
    dead = _dead_for(api, broken["id"])
    assert dead
    healthy["now"] = True
    enabled = api.patch(f"/v1/endpoints/{broken['id']}", json={"enabled": True}).json()
    assert (enabled["enabled"], enabled["disabled_reason"]) == (True, None)
    listed = api.get("/v1/dlq", params={"endpoint_id": broken["id"], "limit": 200}).json()
    assert {d["id"] for d in listed["data"]} == {d["id"] for d in dead}
    replay = api.post("/v1/dlq/replay", json={"endpoint_id": broken["id"]}).json()
    assert replay == {"requeued": len(dead)}
    replayed = {d["event_id"] for d in dead}
    wait_until(
        lambda: replayed <= {r.webhook_id for r in broken_receiver.requests if r.answered == 200},
        10,
        "the replayed events to arrive",
    )
    assert _dead_for(api, broken["id"]) == []
    # Settled: no new event was sent to it while it was disabled, and nothing more announced.
    assert len(watcher_receiver.requests) == 1


def _dead_for(api: httpx.Client, endpoint_id: str) -> list[dict[str, Any]]:
    """Its dead deliveries, once none of its deliveries is still pending."""

    def settled() -> bool:
        pending = api.get("/v1/deliveries", params={"status": "pending", "limit": 200}).json()
        return not any(d["endpoint_id"] == endpoint_id for d in pending["data"])

    wait_until(settled, 10, f"the deliveries of {endpoint_id} to settle")
    dlq = api.get("/v1/dlq", params={"limit": 200}).json()["data"]
    return [d for d in dlq if d["endpoint_id"] == endpoint_id]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_the_dlq_refuses_an_endpoint_filter_that_is_not_an_endpoint_id(managed):
    _, api = managed

    listed = api.get("/v1/dlq", params={"endpoint_id": "cms"})
    replayed = api.post("/v1/dlq/replay", json={"endpoint_id": ["ep_1"]})

    for response in (listed, replayed):
        assert response.status_code == 422
        assert error_of(response)["field"] == "endpoint_id"


# ---------------------------------------------------------------------------------------------
# Unsubscribing on 410 Gone


def gone_endpoint(
    api: httpx.Client, receivers: Callable[..., Receiver], respond: Callable[[int], int]
) -> tuple[dict[str, Any], Receiver]:
    """An endpoint for `job.completed` whose receiver answers `respond(n)`, sent one event."""
    endpoint = add_endpoint(api, "http://127.0.0.1:9/x", event_types=["job.completed"])
    receiver = receivers(endpoint["secret"], respond=respond)
    api.patch(f"/v1/endpoints/{endpoint['id']}", json={"url": receiver.url})
    api.post("/v1/jobs", json=transform_job())
    receiver.wait_for(1)
    return endpoint, receiver


def disabled_soon(api: httpx.Client, endpoint_id: str) -> dict[str, Any]:
    """The endpoint once it is disabled; well before PIXHOOK_ENDPOINT_DISABLE_AFTER could."""

    def disabled() -> dict[str, Any] | None:
        endpoint = api.get(f"/v1/endpoints/{endpoint_id}").json()
        return None if endpoint["enabled"] else cast(dict[str, Any], endpoint)

    return wait_until(disabled, 5, f"{endpoint_id} to be disabled")


def test_an_endpoint_answering_410_is_disabled_at_once_saying_why(tenant, receivers):
    """Issue 15, item 5: Standard Webhooks and Svix read 410 as "unsubscribe", but the endpoint
    stayed enabled until every attempt had failed for PIXHOOK_ENDPOINT_DISABLE_AFTER."""
    _, api = tenant

    endpoint, _ = gone_endpoint(api, receivers, respond=lambda n: 410)

    disabled = disabled_soon(api, endpoint["id"])
    assert "410 Gone" in disabled["disabled_reason"]
    assert disabled["disabled_at"] is not None


def test_an_endpoint_unsubscribed_by_410_gets_no_new_event(tenant, receivers):
    """Issue 15, item 5: after its 410 the endpoint received every new event again."""
    record, api = tenant
    endpoint, receiver = gone_endpoint(api, receivers, respond=lambda n: 410)
    disabled_soon(api, endpoint["id"])
    direct = receivers(record["webhook_secret"])

    job_id = api.post("/v1/jobs", json=transform_job(webhook_url=direct.url)).json()["id"]

    [delivery] = deliveries_of(api, job_id)
    assert delivery["endpoint_id"] is None and delivery["status"] == "succeeded"
    assert len(receiver.requests) == 1


def test_the_410_that_unsubscribed_an_endpoint_shows_in_the_console_and_the_log(
    stack_tenant, receivers, stack: RunningStack
):
    """Issue 15, item 5: the reason an endpoint stopped getting events is visible to its owner
    in the console and to the operator in the deliveries worker's log."""
    record, api = stack_tenant
    endpoint, _ = gone_endpoint(api, receivers, respond=lambda n: 410)
    reason = disabled_soon(api, endpoint["id"])["disabled_reason"]

    with browser(stack) as http:
        sign_in(http, record["api_key"])
        page = http.get("/console/endpoints").text

    assert html.escape(reason) in page
    log = stack.files_dir.parent / "logs" / "worker-deliveries.log"
    wait_until(
        lambda: any(endpoint["id"] in n and reason in n for n in log.read_text().splitlines()),
        5,
        "a log line saying why the endpoint was disabled",
    )


def test_an_endpoint_unsubscribed_by_410_can_be_enabled_again(tenant, receivers):
    """Issue 15, item 5: re-enabling an endpoint that answered 410 works as for any other."""
    _, api = tenant
    endpoint, receiver = gone_endpoint(api, receivers, respond=lambda n: 410 if n == 0 else 200)
    disabled_soon(api, endpoint["id"])

    enabled = api.patch(f"/v1/endpoints/{endpoint['id']}", json={"enabled": True}).json()
    api.post("/v1/jobs", json=transform_job())

    _, second = receiver.wait_for(2)
    assert (enabled["enabled"], enabled["disabled_reason"]) == (True, None)
    assert second.answered == 200
    assert api.get(f"/v1/endpoints/{endpoint['id']}").json()["enabled"] is True
