"""The `pixhook` command as an operator uses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from service.devstack import RunningStack
from tests.helpers import pixhook


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
