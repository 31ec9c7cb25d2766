"""Several API keys per provider, through the API and the CLI against stand-ins that know them:
calls spread over the keys, a key revoked or forbidden mid-run leaves the rotation while jobs
keep succeeding, `/info`, `/readyz` and `pixhook providers` show it, the providers' rate-limit
headers keep pixhook under a key's limit, and a batch whose only key is revoked pauses instead
of failing, then completes once the operator puts a working key back."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import anthropic_env, provider_env
from tests.support.anthropic_standin import AnthropicStandIn
from tests.support.batches import wait_for_batch
from tests.support.cli import pixhook
from tests.support.in_process import InProcessApi
from tests.support.openai_standin import OpenAIStandIn
from tests.support.provider_jobs import answer, unique_photo
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import Receiver, receivers

OPENAI_KEYS = ("sk-pool-openai-aaaa", "sk-pool-openai-bbbb", "sk-pool-openai-cccc")
ANTHROPIC_KEYS = ("sk-ant-pool-dddd", "sk-ant-pool-eeee", "sk-ant-pool-ffff")
ASKED = [{"role": "user", "content": "Which sneaker suits a wet city?"}]
Standin = AnthropicStandIn | OpenAIStandIn


@pytest.fixture(scope="module")
def openai_pool() -> Iterator[OpenAIStandIn]:
    standin = OpenAIStandIn(OPENAI_KEYS).start()
    yield standin
    standin.close()


@pytest.fixture(scope="module")
def anthropic_pool() -> Iterator[AnthropicStandIn]:
    standin = AnthropicStandIn(ANTHROPIC_KEYS).start()
    yield standin
    standin.close()


@pytest.fixture
def standins(openai_pool: OpenAIStandIn, anthropic_pool: AnthropicStandIn) -> dict[str, Standin]:
    """Both stand-ins with every key valid, nothing scripted, no requests recorded, no limit."""
    pools: dict[str, Standin] = {"openai": openai_pool, "anthropic": anthropic_pool}
    for standin, keys in ((openai_pool, OPENAI_KEYS), (anthropic_pool, ANTHROPIC_KEYS)):
        for key in keys:
            standin.add_key(key)
        standin.script([])
        standin.count_requests(60.0)
    return pools


@pytest.fixture
def make_pool_app(
    make_app: Callable[..., InProcessApi], standins: dict[str, Standin]
) -> Callable[..., InProcessApi]:
    """An app with its workers whose providers are this module's stand-ins, with these keys."""

    def create(
        openai_keys: tuple[str, ...] = OPENAI_KEYS,
        anthropic_keys: tuple[str, ...] = ANTHROPIC_KEYS,
        **env: str,
    ) -> InProcessApi:
        openai_pool, anthropic_pool = standins["openai"], standins["anthropic"]
        assert isinstance(openai_pool, OpenAIStandIn)
        assert isinstance(anthropic_pool, AnthropicStandIn)
        app = make_app(
            **provider_env(openai_pool, openai_keys),
            **anthropic_env(anthropic_pool, anthropic_keys),
            **env,
        )
        app.start_worker("jobs")
        app.start_worker("deliveries")
        return app

    return create


def keys_of(provider: str) -> tuple[str, ...]:
    return OPENAI_KEYS if provider == "openai" else ANTHROPIC_KEYS


def text_items(provider: str, count: int) -> list[dict[str, Any]]:
    return [{"input": {"provider": provider, "messages": ASKED}} for _ in range(count)]


def submit_batch(
    api: httpx.Client, job_type: str, items: list[dict[str, Any]], **fields: Any
) -> str:
    response = api.post("/v1/batches", json={"type": job_type, "items": items, **fields})
    assert response.status_code == 202, response.text
    batch_id: str = response.json()["id"]
    return batch_id


def info_keys(api: httpx.Client, provider: str) -> list[dict[str, Any]]:
    [listed] = [p for p in api.get("/info").json()["providers"] if p["name"] == provider]
    keys: list[dict[str, Any]] = listed["keys"]
    return keys


def paid(standin: Standin, provider: str) -> list[int]:
    """The calls answered (billed) with each key so far: the stand-ins count for the session."""
    return [standin.paid_calls_by_key(key) for key in keys_of(provider)]


def since(before: list[int], now: list[int]) -> list[int]:
    return [after - earlier for earlier, after in zip(before, now, strict=True)]


def slow(provider: str, count: int) -> list[Any]:
    """Answers that each take 50 ms: a run long enough to revoke a key in its middle."""
    return [answer(provider, delay_s=0.05) for _ in range(count)]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_calls_spread_evenly_over_every_key(make_pool_app, standins, provider):
    app = make_pool_app()
    api = app.http(app.client.api_key)
    standin = standins[provider]
    before = paid(standin, provider)

    batch = wait_for_batch(api, submit_batch(api, "text.generate", text_items(provider, 30)))

    assert batch["counts"]["succeeded"] == 30, batch
    per_key = since(before, paid(standin, provider))
    assert sum(per_key) == 30 and min(per_key) >= 7, per_key


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("refusal", ["revoke", "forbid"])
def test_a_key_refused_mid_run_leaves_the_rotation_and_every_job_succeeds(
    make_pool_app, standins, provider, refusal
):
    app = make_pool_app()
    api = app.http(app.client.api_key)
    standin = standins[provider]
    refused = keys_of(provider)[0]
    standin.script(slow(provider, 30))
    before = paid(standin, provider)
    batch_id = submit_batch(api, "text.generate", text_items(provider, 30), concurrency=4)

    wait_until(lambda: since(before, paid(standin, provider))[0] >= 2, 20, "the key to be used")
    getattr(standin, refusal)(refused)
    refused_at = time.monotonic()

    batch = wait_for_batch(api, batch_id)
    assert batch["counts"]["succeeded"] == 30 and batch["counts"]["failed"] == 0, batch
    assert sum(since(before, paid(standin, provider))) == 30
    later = [r for r in standin.requests if r["key"] == refused and r["at"] > refused_at]
    assert all(r["usage"] is None for r in later)
    # Once refused, the key is asked at most once per call in flight, then no more.
    assert 1 <= len(later) <= 4
    status = 401 if refusal == "revoke" else 403
    assert info_keys(api, provider) == [
        {"hint": f"…{refused[-4:]}", "in_rotation": False, "status": status, "out_since": ANY_TIME},
        *(
            {"hint": f"…{key[-4:]}", "in_rotation": True, "status": None, "out_since": None}
            for key in keys_of(provider)[1:]
        ),
    ]


class _AnyTime:
    """Equal to any moment (seconds since the epoch) of this century."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, float) and 1.7e9 < other < 4.1e9


ANY_TIME: Any = _AnyTime()


def test_the_cli_lists_checks_and_reinstates_keys(make_pool_app, standins):
    openai_pool = standins["openai"]
    openai_pool.revoke(OPENAI_KEYS[1])
    app = make_pool_app()

    listed = pixhook(app, "providers", "keys", "--provider", "openai", "--json", env=app.environ)
    assert listed.returncode == 0, listed.stderr
    # The jobs worker's start checked the keys already: the revoked one is out.
    assert [(row["hint"], row["in_rotation"]) for row in json.loads(listed.stdout)] == [
        ("…aaaa", True),
        ("…bbbb", False),
        ("…cccc", True),
    ]

    openai_pool.forbid(OPENAI_KEYS[2])
    checked = pixhook(app, "providers", "check", "--provider", "openai", env=app.environ)
    assert checked.returncode == 1, checked.stderr
    assert "openai …aaaa: ok" in checked.stdout
    assert "openai …cccc: PROVIDER_AUTH" in checked.stdout
    assert "…bbbb" not in checked.stdout  # out of rotation already: not tried again
    rows = json.loads(pixhook(app, "providers", "keys", "--json", env=app.environ).stdout)
    assert [(r["provider"], r["hint"], r["status"]) for r in rows if not r["in_rotation"]] == [
        ("openai", "…bbbb", 401),
        ("openai", "…cccc", 403),
    ]
    assert {r["provider"] for r in rows if r["in_rotation"]} == {"openai", "anthropic"}

    openai_pool.add_key(OPENAI_KEYS[1])
    put_back = pixhook(app, "providers", "reinstate", "openai", "--key", "bbbb", env=app.environ)
    assert put_back.returncode == 0, put_back.stderr
    assert "…bbbb" in put_back.stdout
    assert [k["in_rotation"] for k in info_keys(app.http(), "openai")] == [True, True, False]


def run_under_a_key_limit(make_pool_app, standins) -> tuple[dict[str, Any], list[Any]]:
    """16 jobs over 2 keys, which the stand-in allows 2 requests per 0.5 s window each (240 a
    minute) while pixhook is told 6,000 a minute: only the headers can keep it from 429s. The
    batch at its end, and each key's windows as (arrived, refused)."""
    keys = OPENAI_KEYS[:2]
    app = make_pool_app(openai_keys=keys, PIXHOOK_PROVIDER_REQUESTS_PER_MINUTE="6000")
    api = app.http(app.client.api_key)
    openai_pool = standins["openai"]
    openai_pool.count_requests(0.5, requests_per_minute=240)
    batch = wait_for_batch(api, submit_batch(api, "text.generate", text_items("openai", 16)))
    windows = [[(w.arrived, w.refused) for w in openai_pool.window_counts(key)] for key in keys]
    return batch, windows


def test_a_key_limit_below_the_configured_rate_fails_no_job_and_holds_each_window(
    make_pool_app, standins
):
    batch, windows = run_under_a_key_limit(make_pool_app, standins)

    assert batch["counts"]["succeeded"] == 16 and batch["counts"]["failed"] == 0, batch
    # Within a window, what the headers said is left holds pixhook back; at the window's reset,
    # the window's whole allowance (the limit header) does, until a reply speaks of the new one:
    # the calls that waited for the reset no longer all go at once (4 arrived where 2 are
    # allowed before). Run alone this draws no 429; under a loaded machine a call admitted while
    # a reply's headers are on their way is now and then counted in neither: one over.
    assert all(arrived <= 3 for key in windows for arrived, _ in key), windows
    assert sum(refused for key in windows for _, refused in key) <= 3, windows


def test_readyz_fails_while_a_provider_has_no_key_in_rotation(make_pool_app, standins):
    app = make_pool_app(openai_keys=OPENAI_KEYS[:2], PIXHOOK_READYZ_PROVIDERS="true")
    anonymous = app.http()
    assert anonymous.get("/readyz").status_code == 200

    for key in OPENAI_KEYS[:2]:
        standins["openai"].revoke(key)
    assert pixhook(app, "providers", "check", env=app.environ).returncode == 1

    unready = anonymous.get("/readyz")
    assert unready.status_code == 503
    assert unready.json()["providers_without_keys"] == ["openai"]
    for key in OPENAI_KEYS[:2]:
        standins["openai"].add_key(key)
    assert pixhook(app, "providers", "reinstate", "openai", env=app.environ).returncode == 0
    assert anonymous.get("/readyz").status_code == 200


def analyze_items(count: int) -> list[dict[str, Any]]:
    return [
        {
            "input": {
                "image": {"base64": base64.b64encode(unique_photo(100 + seed)).decode()},
                "provider": "openai",
            }
        }
        for seed in range(count)
    ]


def webhooks(receiver: Receiver, event_type: str) -> list[dict[str, Any]]:
    return [r.payload for r in receiver.requests if r.verified and r.payload["type"] == event_type]


def test_a_batch_whose_only_key_is_revoked_pauses_and_completes_once_it_is_back(
    make_pool_app, standins
):
    only = OPENAI_KEYS[0]
    app = make_pool_app(openai_keys=(only,))
    api = app.http(app.client.api_key)
    openai_pool = standins["openai"]
    openai_pool.script(slow("openai", 10))
    [before] = paid(openai_pool, "openai")[:1]
    with receivers(app.client.webhook_secret) as make_receiver:
        receiver = make_receiver()
        batch_id = submit_batch(
            api, "image.analyze", analyze_items(10), concurrency=1, webhook_url=receiver.url
        )
        wait_until(lambda: paid(openai_pool, "openai")[0] - before >= 3, 20, "3 items answered")
        openai_pool.revoke(only)

        paused = wait_for_batch(api, batch_id)
        assert (paused["status"], paused["paused_reason"]) == ("paused", "keys"), paused
        done = paused["counts"]["succeeded"]
        assert 3 <= done < 10 and paused["counts"]["failed"] == 0, paused["counts"]
        assert done == paid(openai_pool, "openai")[0] - before
        event = wait_until(lambda: webhooks(receiver, "batch.paused"), 20, "batch.paused")
        assert event[0]["data"]["paused_reason"] == "keys"
        assert event[0]["data"]["paused_provider"] == "openai"

        openai_pool.add_key(only)
        reinstated = pixhook(app, "providers", "reinstate", "openai", env=app.environ)
        assert reinstated.returncode == 0, reinstated.stderr
        assert f"batches resumed: {batch_id}" in reinstated.stdout

        batch = wait_for_batch(api, batch_id)
        assert batch["status"] == "completed", batch
        assert batch["counts"]["succeeded"] == 10 and batch["counts"]["failed"] == 0
        assert paid(openai_pool, "openai")[0] - before == 10
        wait_until(lambda: webhooks(receiver, "batch.resumed"), 20, "batch.resumed")
        completed = wait_until(lambda: webhooks(receiver, "batch.completed"), 20, "completed")
        assert completed[0]["data"]["counts"]["succeeded"] == 10
