"""The `pixhook` command as an operator uses it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx
from redis import Redis
from redis.asyncio import Redis as RedisAsync

from service.cli.devstack import RunningStack
from service.clients.store import ClientStore, key_digest
from tests.support.cli import pixhook
from tests.support.jobs import error_of, transform_job


def new_client(stack: RunningStack, *options: str) -> dict[str, Any]:
    created = pixhook(stack, "clients", "create", "cli-test", *options, "--json")
    assert created.returncode == 0, created.stderr
    record: dict[str, Any] = json.loads(created.stdout)
    return record


def get_job(stack: RunningStack, api_key: str) -> httpx.Response:
    """Any authenticated call: an unknown job is 404 for a good key, 401 for a bad one."""
    headers = {"authorization": f"Bearer {api_key}"}
    return httpx.get(f"{stack.api_url}/v1/jobs/job_none", headers=headers)


def clients_at(stack: RunningStack, now: float, *api_keys: str) -> dict[str, str | None]:
    """Which client each key authenticates as, by the clock reading `now`."""

    async def authenticate() -> dict[str, str | None]:
        async with RedisAsync.from_url(stack.redis_url) as redis:
            store = ClientStore(redis, clock=lambda: now)
            found = {key: await store.authenticate(key) for key in api_keys}
        return {key: None if client is None else client.id for key, client in found.items()}

    return asyncio.run(authenticate())


def listed(stack: RunningStack, client_id: str) -> dict[str, Any]:
    rows = json.loads(pixhook(stack, "clients", "list", "--json").stdout)
    row: dict[str, Any] = next(r for r in rows if r["id"] == client_id)
    return row


def redis_holds(redis_url: str, needle: str) -> bool:
    """Whether any key, or any value of any type, anywhere in Redis contains `needle`."""
    target = needle.encode()
    with Redis.from_url(redis_url) as redis:
        for key in redis.scan_iter(count=1000):
            kind = redis.type(key).decode()
            if kind == "string":
                values = [redis.get(key) or b""]
            elif kind == "hash":
                values = [*redis.hgetall(key).keys(), *redis.hgetall(key).values()]
            elif kind == "list":
                values = redis.lrange(key, 0, -1)
            elif kind == "set":
                values = list(redis.smembers(key))
            elif kind == "zset":
                values = redis.zrange(key, 0, -1)
            else:  # stream
                entries = redis.xrange(key)
                values = [b"".join(k + v for k, v in fields.items()) for _, fields in entries]
            if target in key or any(target in value for value in values):
                return True
    return False


def test_clients_create_prints_the_key_once_and_list_shows_the_client(stack: RunningStack):
    created = pixhook(stack, "clients", "create", "shop", "--json")
    record = json.loads(created.stdout)

    listed = json.loads(pixhook(stack, "clients", "list", "--json").stdout)

    assert record["api_key"].startswith("phk_")
    assert record["webhook_secret"].startswith("whsec_")
    assert {"id": record["id"], "name": "shop"}.items() <= next(
        c for c in listed if c["id"] == record["id"]
    ).items()
    assert record["api_key"] not in json.dumps(listed)


def test_api_without_a_secret_key_exits_with_a_clear_message():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXHOOK_")}

    result = subprocess.run(
        [sys.executable, "-m", "service", "api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "PIXHOOK_SECRET_KEY" in result.stderr


def test_demo_runs_a_job_end_to_end_and_verifies_the_webhook():
    result = subprocess.run(
        [sys.executable, "-m", "service", "demo"], capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "signature verified" in result.stdout
    assert result.stdout.rstrip().endswith("pixhook demo: OK")


def test_clients_create_records_its_limits(stack: RunningStack):
    record = new_client(stack, "--rate", "5", "--burst", "10", "--max-in-flight", "3")

    limits = listed(stack, record["id"])["limits"]

    assert limits == {"requests_per_s": 5.0, "burst": 10, "max_in_flight": 3}


def test_clients_create_refuses_a_rate_of_zero(stack: RunningStack):
    result = pixhook(stack, "clients", "create", "shop", "--rate", "0")

    assert result.returncode == 2
    assert "--rate" in result.stderr


def test_revoked_key_is_unauthorized_at_once(stack: RunningStack):
    record = new_client(stack)
    assert get_job(stack, record["api_key"]).status_code == 404

    revoked = pixhook(stack, "clients", "revoke", record["id"])

    assert revoked.returncode == 0, revoked.stderr
    response = get_job(stack, record["api_key"])
    assert response.status_code == 401
    assert error_of(response)["code"] == "UNAUTHORIZED"
    assert listed(stack, record["id"])["revoked_at"] is not None


def test_revoking_an_unknown_client_fails(stack: RunningStack):
    result = pixhook(stack, "clients", "revoke", "cli_unknown")

    assert result.returncode == 1
    assert "no client cli_unknown" in result.stderr


def test_a_revoked_clients_accepted_job_still_sends_its_signed_webhook(
    stack: RunningStack, make_receiver
):
    record = new_client(stack)
    receiver = make_receiver(secret=record["webhook_secret"])
    headers = {"authorization": f"Bearer {record['api_key']}"}
    httpx.post(
        f"{stack.api_url}/v1/jobs", json=transform_job(webhook_url=receiver.url), headers=headers
    )

    pixhook(stack, "clients", "revoke", record["id"])

    [webhook] = receiver.wait_for(1)
    assert webhook.verified and webhook.payload["type"] == "job.completed"


def test_rotated_key_works_and_the_old_one_stops_at_once(stack: RunningStack):
    record = new_client(stack)

    rotated = pixhook(stack, "clients", "rotate-key", record["id"])

    new_key = rotated.stdout.split()[1]
    assert new_key.startswith("phk_") and new_key != record["api_key"]
    assert get_job(stack, new_key).status_code == 404
    assert get_job(stack, record["api_key"]).status_code == 401


def test_rotated_key_overlap_keeps_the_old_key_until_it_ends(stack: RunningStack):
    record = new_client(stack)

    rotated = pixhook(stack, "clients", "rotate-key", record["id"], "--overlap", "2s")

    new_key = rotated.stdout.split()[1]
    assert get_job(stack, record["api_key"]).status_code == 404
    assert get_job(stack, new_key).status_code == 404
    # 2.2 s on, as the API's own store sees it, read on a clock moved ahead instead of waited for.
    later = clients_at(stack, time.time() + 2.2, record["api_key"], new_key)
    assert later == {record["api_key"]: None, new_key: record["id"]}
    # Redis drops the old key's index entry when the overlap ends too.
    with Redis.from_url(stack.redis_url) as redis:
        assert 0 < redis.pttl(f"pixhook:apikey:{key_digest(record['api_key'])}") <= 2000


def test_rotating_a_revoked_clients_key_is_refused(stack: RunningStack):
    record = new_client(stack)
    pixhook(stack, "clients", "revoke", record["id"])

    result = pixhook(stack, "clients", "rotate-key", record["id"])

    assert result.returncode == 1
    assert "revoked" in result.stderr and "phk_" not in result.stdout


def test_redis_never_holds_a_plaintext_api_key(stack: RunningStack):
    record = new_client(stack)
    rotated = pixhook(stack, "clients", "rotate-key", record["id"], "--overlap", "1h")
    new_key = rotated.stdout.split()[1]
    get_job(stack, new_key)

    assert not redis_holds(stack.redis_url, record["api_key"])
    assert not redis_holds(stack.redis_url, new_key)
    assert redis_holds(stack.redis_url, record["id"])  # the scan does see the client


def test_a_rotated_secret_signs_the_next_webhook_at_once(stack: RunningStack, make_receiver):
    """Issue 15, item 4: workers kept a client's secrets for 5 s, so right after
    `clients rotate-secret` said the new secret was in use, webhooks carried only the old one."""
    record = new_client(stack)
    headers = {"authorization": f"Bearer {record['api_key']}"}
    before = make_receiver(secret=record["webhook_secret"])
    job = transform_job(webhook_url=before.url)
    httpx.post(f"{stack.api_url}/v1/jobs", json=job, headers=headers)
    before.wait_for(1)  # a worker has now read, and may keep, the client's secrets
    rotated = pixhook(stack, "clients", "rotate-secret", record["id"])
    after = make_receiver(secret=rotated.stdout.split()[1])

    job = transform_job(webhook_url=after.url)
    httpx.post(f"{stack.api_url}/v1/jobs", json=job, headers=headers)

    [webhook] = after.wait_for(1)
    assert webhook.verified
