"""When a failed delivery is tried again: the schedule, Retry-After, and final failures."""

from __future__ import annotations

import random
import time
from email.utils import formatdate

import pytest

from webhooks.dispatcher import DeliveryPolicy, decide
from webhooks.schedule import DEFAULT_DELAYS_S, RetrySchedule, parse_duration
from webhooks.sender import AttemptResult, parse_retry_after
from webhooks.store import Delivery

SCHEDULE = RetrySchedule((5.0, 300.0, 1800.0), jitter=0.2)
POLICY = DeliveryPolicy(schedule=SCHEDULE, throttled_backoff_s=60.0, max_retry_after_s=3600.0)


def delivery(attempts: int = 0, schedule_base: int = 0) -> Delivery:
    return Delivery(
        "dlv_1",
        "evt_1",
        "job.completed",
        "cli_1",
        "https://h/",
        b"{}",
        0.0,
        attempts=attempts,
        schedule_base=schedule_base,
    )


def failed(status: int | None = 500, code: str = "HTTP_STATUS", retry_after: float | None = None):
    return AttemptResult(False, 1.0, status, code, "x", "", retry_after)


def delay_of(decision_at: float | None) -> float:
    assert decision_at is not None
    return decision_at - time.time()


def test_default_schedule_is_svix():
    assert DEFAULT_DELAYS_S == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert RetrySchedule().max_attempts == 8


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_delays_stay_within_the_jitter(attempt):
    rng = random.Random(attempt)
    base = SCHEDULE.delays_s[attempt - 1]

    delays = [SCHEDULE.delay_after(attempt, rng) for _ in range(200)]

    assert all(base * 0.8 <= d <= base * 1.2 for d in delays if d is not None)
    assert len({round(d or 0, 3) for d in delays}) > 100  # actually jittered


def test_no_delay_after_the_last_attempt():
    assert SCHEDULE.delay_after(4) is None


@pytest.mark.parametrize(
    ("text", "seconds"), [("250ms", 0.25), ("5s", 5), ("30m", 1800), ("2h", 7200)]
)
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


def test_a_bad_duration_says_what_is_expected():
    with pytest.raises(ValueError, match="like 250ms, 5s"):
        RetrySchedule.parse("5s,later")


def test_retry_after_accepts_seconds_and_http_dates():
    now = time.time()

    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(formatdate(now + 90, usegmt=True), now) == pytest.approx(90, abs=1)
    assert parse_retry_after("soon", now) is None


def test_success_settles_the_delivery():
    assert decide(delivery(), AttemptResult(True, 1.0, 200), POLICY).outcome == "succeeded"


@pytest.mark.parametrize("code", ["GONE", "GUARD_REFUSED", "SIGNING_ERROR"])
def test_final_failures_go_straight_to_the_dlq(code):
    assert decide(delivery(), failed(code=code), POLICY).outcome == "dead"


def test_failure_waits_the_next_scheduled_delay():
    decision = decide(delivery(attempts=1), failed(), POLICY)

    assert decision.outcome == "retry"
    assert 240 <= delay_of(decision.next_attempt_at) <= 361


def test_retry_after_longer_than_the_schedule_is_honoured():
    decision = decide(delivery(), failed(503, retry_after=900), POLICY)

    assert delay_of(decision.next_attempt_at) == pytest.approx(900, abs=1)


def test_retry_after_is_clamped():
    decision = decide(delivery(), failed(429, "THROTTLED", retry_after=10 * 86400), POLICY)

    assert delay_of(decision.next_attempt_at) == pytest.approx(3600, abs=1)


@pytest.mark.parametrize(("status", "code"), [(None, "TIMEOUT"), (429, "THROTTLED")])
def test_timeouts_and_429_wait_at_least_a_minute(status, code):
    decision = decide(delivery(), failed(status, code), POLICY)

    assert delay_of(decision.next_attempt_at) >= 59


def test_exhausted_schedule_is_dead():
    assert decide(delivery(attempts=3), failed(), POLICY).outcome == "dead"


def test_replayed_delivery_gets_a_fresh_schedule():
    decision = decide(delivery(attempts=4, schedule_base=4), failed(), POLICY)

    assert decision.outcome == "retry"
    assert delay_of(decision.next_attempt_at) < 7
