"""The Slack stand-in answers as Slack's incoming webhooks do, so tests that rely on it test
against Slack's rules; and Slack accepts the messages webhooks/slack.py makes."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from service.notify import SLACK_WORDING
from tests.support.clock import ManualClock
from tests.support.slack_standin import SlackStandIn
from webhooks.slack import slack_body

_tokens = itertools.count()


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    """The stand-in's clock: still unless a test moves it, so its rate limit never waits."""
    return ManualClock()


@pytest.fixture(scope="module")
def slack(clock: ManualClock) -> Iterator[SlackStandIn]:
    with SlackStandIn(clock) as standin:
        yield standin


@pytest.fixture
def channel(slack: SlackStandIn) -> str:
    """A webhook URL of its own, so no other test's messages count towards its rate limit."""
    return slack.url_for(token=f"token{next(_tokens)}")


def post(url: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(url, content=content, headers={"content-type": "application/json"})


def test_message_with_text_is_accepted_and_recorded(slack: SlackStandIn, channel: str):
    response = post(channel, {"text": "hello"})

    assert (response.status_code, response.text) == (200, "ok")
    assert response.headers["content-type"].startswith("text/plain")
    [request] = slack.accepted(channel)
    assert request.json == {"text": "hello"}
    assert request.headers["content-type"] == "application/json"
    assert request.path == channel.removeprefix(slack.base_url)


def test_second_message_within_a_second_is_rate_limited(slack: SlackStandIn, channel: str):
    post(channel, {"text": "first"})

    response = post(channel, {"text": "second"})

    assert (response.status_code, response.text) == (429, "rate_limited")
    assert response.headers["retry-after"] == "1"
    assert [r.json["text"] for r in slack.accepted(channel)] == ["first"]
    assert slack.received[-1].status == 429


def test_rate_limit_is_per_webhook_url(slack: SlackStandIn, channel: str):
    post(channel, {"text": "first"})

    other = slack.url_for(token=f"other{next(_tokens)}")

    assert post(other, {"text": "elsewhere"}).status_code == 200


def test_a_second_after_the_last_accepted_message_slack_accepts_again(
    clock: ManualClock, channel: str
):
    post(channel, {"text": "first"})
    clock.advance(0.5)
    assert post(channel, {"text": "too soon"}).status_code == 429
    clock.advance(0.55)

    assert post(channel, {"text": "later"}).status_code == 200


def test_throttle_next_answers_with_the_scripted_retry_after(slack: SlackStandIn, channel: str):
    slack.throttle_next(channel, 7)

    throttled = post(channel, {"text": "one"})
    accepted = post(channel, {"text": "two"})

    assert (throttled.status_code, throttled.headers["retry-after"]) == (429, "7")
    assert accepted.status_code == 200


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"'])
def test_body_that_is_not_a_json_object_is_invalid_payload(channel: str, body: bytes):
    response = post(channel, body)

    assert (response.status_code, response.text) == (400, "invalid_payload")


@pytest.mark.parametrize("body", [{}, {"text": ""}, {"blocks": []}, {"username": "pixhook"}])
def test_message_without_text_or_blocks_is_no_text(channel: str, body: dict[str, Any]):
    response = post(channel, body)

    assert (response.status_code, response.text) == (400, "no_text")


def section(text: str = "s", fields: list[str] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if fields is not None:
        block["fields"] = [{"type": "mrkdwn", "text": field} for field in fields]
    return block


@pytest.mark.parametrize(
    "blocks",
    [[section()] * 51, [section("x" * 3001)], [section(fields=["f" * 2001])], "blocks"],
    ids=["51 blocks", "section text 3001", "field 2001", "not a list"],
)
def test_blocks_over_slacks_limits_are_invalid_blocks(channel: str, blocks: Any):
    response = post(channel, {"text": "t", "blocks": blocks})

    assert (response.status_code, response.text) == (400, "invalid_blocks")


def test_unregistered_webhook_url_is_no_service():
    with SlackStandIn() as slack:
        slack.register(slack.url_for(token="known"))

        unknown = post(slack.url_for(token="revoked"), {"text": "hi"})
        known = post(slack.url_for(token="known"), {"text": "hi"})

    assert (unknown.status_code, unknown.text) == (404, "no_service")
    assert known.status_code == 200


def test_wait_for_accepted_waits_for_a_later_message(slack: SlackStandIn, channel: str):
    threading.Timer(0.2, post, args=(channel, {"text": "late"})).start()

    [request] = slack.wait_for_accepted(channel, 1, timeout_s=10)

    assert request.json == {"text": "late"}


def test_wait_for_accepted_gives_up_after_its_timeout(slack: SlackStandIn, channel: str):
    with pytest.raises(AssertionError, match="accepted 0 messages, expected 1"):
        slack.wait_for_accepted(channel, 1, timeout_s=0.1)


EVENTS = {
    "huge failure": {
        "type": "job.failed",
        "id": "evt_1",
        "data": {
            "id": "job_1",
            "type": "image.analyze",
            "error": {"code": "INVALID_IMAGE", "message": "<x>&" * 25_000},
            "metadata": {f"k{n}": "v" * 1000 for n in range(500)},
            "urls": {"self": "https://pixhook.example.com/v1/jobs/job_1"},
        },
    },
    "ping": {"type": "ping", "id": "evt_2", "data": {"endpoint_id": "ep_1", "message": "hi"}},
    "unknown": {"type": "thing.happened", "id": "evt_3", "data": {"x": "y" * 10_000}},
    "no data": {},
}


@pytest.mark.parametrize("envelope", EVENTS.values(), ids=EVENTS.keys())
def test_slack_accepts_the_messages_we_make(channel: str, envelope: dict[str, Any]):
    assert post(channel, slack_body(envelope, SLACK_WORDING)).status_code == 200
