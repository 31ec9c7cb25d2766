"""Slack endpoints through the whole service, against a stand-in that answers as Slack does and
enforces its one-message-a-second limit per channel."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from service.notify import SLACK_WORDING
from tests.support.in_process import BASE_URL, InProcessApi
from tests.support.jobs import transform_job, wait_for_status
from tests.support.raw_servers import Response, Scripted
from tests.support.slack_standin import SlackStandIn
from webhooks.fanout import Event, body_for
from webhooks.targets import Target


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        yield standin


@pytest.fixture
def tenant(app_with_workers: InProcessApi) -> httpx.Client:
    """A client of the API running with its workers in this process: Slack is the stand-in."""
    return app_with_workers.http(app_with_workers.client.api_key)


def channel(slack: SlackStandIn) -> str:
    return slack.url_for(token=uuid.uuid4().hex)


def add_slack(api: httpx.Client, url: str, **fields: Any) -> dict[str, Any]:
    response = api.post("/v1/endpoints", json={"url": url, "kind": "slack", **fields})
    assert response.status_code == 201, response.text
    endpoint: dict[str, Any] = response.json()
    return endpoint


def all_text(message: Any) -> str:
    return json.dumps(message, ensure_ascii=False)


def test_a_finished_job_and_a_failed_one_become_slack_messages(
    tenant, slack: SlackStandIn, serve: Callable[[Scripted], Scripted]
):
    url = channel(slack)
    add_slack(tenant, url, event_types=["job.completed", "job.failed"])
    missing = serve(Scripted(lambda n: Response(404, body=b"no such image")))
    done = tenant.post("/v1/jobs", json=transform_job(metadata={"sku": "A-1"})).json()
    failed_job = {"type": "image.transform", "input": {"image": {"url": missing.url("/a.jpg")}}}
    failed = tenant.post("/v1/jobs", json=failed_job).json()
    wait_for_status(tenant, done["id"])
    error = wait_for_status(tenant, failed["id"])["error"]

    messages = [r.json for r in slack.wait_for_accepted(url, 2, timeout_s=15)]

    by_job = {m["text"].split("`")[3]: m for m in messages}
    success, failure = by_job[done["id"]], by_job[failed["id"]]
    assert success["text"].startswith(":white_check_mark: `image.transform` job")
    assert "succeeded" in success["text"] and "sku" in all_text(success["blocks"])
    assert failure["text"].startswith(":x: `image.transform` job")
    assert error["code"] in failure["text"] and error["code"] in all_text(failure["blocks"])
    assert len(slack.accepted(url)) == 2


def test_a_channel_gets_at_most_one_message_a_second(tenant, slack: SlackStandIn):
    url = channel(slack)
    add_slack(tenant, url, event_types=["job.*"])

    for _ in range(3):
        tenant.post("/v1/jobs", json=transform_job())
    accepted = slack.wait_for_accepted(url, 6, timeout_s=20)

    gaps = [b.arrived_at - a.arrived_at for a, b in zip(accepted, accepted[1:], strict=False)]
    assert min(gaps) >= 0.95, gaps
    # Paced by pixhook, not refused by Slack: no message was answered 429.
    assert [r.status for r in slack.received if url.endswith(r.path)] == [200] * 6


def test_a_429_holds_the_channel_for_its_retry_after(tenant, slack: SlackStandIn):
    url = channel(slack)
    add_slack(tenant, url, event_types=["job.completed"])
    slack.throttle_next(url, retry_after_s=2)

    job = tenant.post("/v1/jobs", json=transform_job()).json()
    [message] = slack.wait_for_accepted(url, 1, timeout_s=15)

    refused = [r for r in slack.received if url.endswith(r.path) and r.status == 429]
    assert len(refused) == 1
    assert message.arrived_at - refused[0].arrived_at >= 2.0
    assert job["id"] in message.json["text"]


def test_a_template_replaces_the_default_message(tenant, slack: SlackStandIn):
    url = channel(slack)
    add_slack(
        tenant,
        url,
        event_types=["job.completed"],
        templates={
            "job.*": {
                "text": "{data.metadata.sku} is ready: {data.output.images.0.width}px <{link}|open>"
            }
        },
    )

    job = tenant.post("/v1/jobs", json=transform_job(metadata={"sku": "B&Q-7"})).json()
    [message] = slack.wait_for_accepted(url, 1, timeout_s=15)

    assert message.json["text"] == (f"B&amp;Q-7 is ready: 100px <{job['urls']['console']}|open>")


def test_the_view_job_link_opens_the_consoles_job_page(
    app_with_workers: InProcessApi, tenant, slack: SlackStandIn
):
    """Issue 15 item 16: "View job" linked the API, which answers a Slack reader 401."""
    url = channel(slack)
    add_slack(tenant, url, event_types=["job.completed"])
    job = tenant.post("/v1/jobs", json=transform_job()).json()
    [message] = slack.wait_for_accepted(url, 1, timeout_s=15)

    [link] = [e["text"] for e in message.json["blocks"][-1]["elements"] if "View job" in e["text"]]
    target = link.removeprefix("<").partition("|")[0]
    opened = app_with_workers.http().get(target)

    assert target == f"{BASE_URL}/console/jobs/{job['id']}"
    assert opened.status_code == 303
    assert opened.headers["location"].startswith("/console/login?")


def test_a_slack_endpoints_test_send_is_a_slack_message(tenant, slack: SlackStandIn):
    url = channel(slack)
    endpoint = add_slack(tenant, url)

    result = tenant.post(f"/v1/endpoints/{endpoint['id']}/test").json()

    assert result["ok"] is True and result["response_excerpt"] == "ok"
    [message] = slack.accepted(url)
    assert endpoint["id"] in message.json["text"] and "blocks" in message.json


def test_test_sends_to_a_slack_channel_wait_their_turn_instead_of_getting_429(
    tenant, slack: SlackStandIn
):
    url = channel(slack)
    endpoint = add_slack(tenant, url)

    results = [tenant.post(f"/v1/endpoints/{endpoint['id']}/test").json() for _ in range(2)]

    assert [r["ok"] for r in results] == [True, True], results
    first, second = slack.accepted(url)
    assert second.arrived_at - first.arrived_at >= 0.95
    assert [r.status for r in slack.received if url.endswith(r.path)] == [200, 200]


def test_a_test_send_to_a_channel_held_by_a_429_says_busy_without_sending(
    tenant, slack: SlackStandIn
):
    url = channel(slack)
    endpoint = add_slack(tenant, url)
    slack.throttle_next(url, retry_after_s=30)

    throttled = tenant.post(f"/v1/endpoints/{endpoint['id']}/test").json()
    busy = tenant.post(f"/v1/endpoints/{endpoint['id']}/test").json()

    assert (throttled["ok"], throttled["status_code"]) == (False, 429)
    assert (busy["ok"], busy["status_code"], busy["error_code"]) == (False, None, "CHANNEL_BUSY")
    assert len([r for r in slack.received if url.endswith(r.path)]) == 1


def test_a_jobs_own_slack_webhook_url_gets_a_slack_message_paced_like_an_endpoints():
    event = Event("job.completed", "evt_1", {"id": "job_1", "type": "image.transform"})
    slack_url = "https://hooks.slack.com/services/T0/B0/secret"

    to_slack = json.loads(body_for(event, slack_url, SLACK_WORDING))
    to_receiver = json.loads(body_for(event, "https://cms.example.com/hook", SLACK_WORDING))

    assert to_slack["text"].startswith(":white_check_mark: `image.transform` job `job_1`")
    assert to_receiver == event.envelope()
    assert Target(slack_url, ["whsec_x"]).paced
    assert not Target("https://cms.example.com/hook", ["whsec_x"]).paced
