"""The `pixhook` command's options read as the rest of pixhook reads them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from importlib.metadata import version
from typing import Any

import pytest

from service.cli.devstack import RunningStack
from tests.support.cli import pixhook
from tests.support.clients import client_for
from tests.support.deliveries import dead_delivery
from tests.support.webhook_receiver import Receiver


@pytest.fixture(scope="module")
def dead(stack: RunningStack) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """A client of its own, and one dead delivery of its, to a receiver that always fails."""
    record, api = client_for(stack, "cli-options")
    receiver = Receiver(record["webhook_secret"], lambda n: 500)
    with api:
        yield record, dead_delivery(api, receiver.url)
    receiver.close()


def dead_ids(stack: RunningStack, client_id: str, *options: str) -> list[str]:
    result = pixhook(stack, "dlq", "list", "--client", client_id, *options, "--json")
    assert result.returncode == 0, result.stderr
    return [row["id"] for row in json.loads(result.stdout)]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_version_prints_the_installed_version():
    """Issue 15 item 14: there was no `pixhook --version`."""
    command = [sys.executable, "-m", "service", "--version"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0
    assert result.stdout.strip() == f"pixhook {version('pixhook')}"


def test_overlap_takes_plain_seconds_as_environment_variables_do(stack: RunningStack):
    """Issue 15 item 14: `--overlap 1` failed with `invalid parse_duration value: '1'`."""
    record, _ = client_for(stack, "overlap")

    result = pixhook(stack, "clients", "rotate-key", record["id"], "--overlap", "1")

    assert result.returncode == 0, result.stderr
    assert "works for 1s more" in result.stdout


def test_dlq_list_takes_durations_for_since_and_until(stack: RunningStack, dead):
    """Issue 15 item 14: `--since` took only Unix seconds."""
    record, delivery = dead

    assert dead_ids(stack, record["id"], "--since", "1h") == [delivery["id"]]
    assert dead_ids(stack, record["id"], "--until", "1h") == []


def test_dlq_list_takes_iso_8601_times_as_the_api_does(stack: RunningStack, dead):
    """Issue 15 item 14: `--since` took only Unix seconds while the API takes ISO 8601."""
    record, delivery = dead
    died = datetime.fromisoformat(delivery["dead_at"].replace("Z", "+00:00"))
    minute = timedelta(minutes=1)

    assert dead_ids(stack, record["id"], "--since", iso(died - minute)) == [delivery["id"]]
    assert dead_ids(stack, record["id"], "--since", iso(died + minute)) == []


def test_dlq_replay_without_a_selection_requeues_nothing(stack: RunningStack, dead):
    """Issue 15 item 14: it re-queued every dead delivery of every client without asking."""
    record, delivery = dead

    result = pixhook(stack, "dlq", "replay")

    assert result.returncode == 2
    assert "--all" in result.stderr
    assert dead_ids(stack, record["id"]) == [delivery["id"]]


def test_dlq_replay_all_requeues_every_matching_dead_delivery(stack: RunningStack):
    """Issue 15 item 14: replaying everything takes `--all`, as the API takes `{"all": true}`."""
    record, api = client_for(stack, "replay-all")
    receiver = Receiver(record["webhook_secret"], lambda n: 500)
    with api:
        dead_delivery(api, receiver.url)
    receiver.close()

    result = pixhook(stack, "dlq", "replay", "--all", "--client", record["id"], "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"requeued": 1}


def test_clients_list_is_a_table_with_aligned_columns(stack: RunningStack):
    """Issue 15 item 14: each row's limits started wherever its name ended."""
    short, _ = client_for(stack, "a")
    long = json.loads(
        pixhook(stack, "clients", "create", "a-much-longer-name", "--rate", "5", "--json").stdout
    )

    lines = pixhook(stack, "clients", "list").stdout.splitlines()

    header = lines[0].split()
    assert header == ["ID", "STATE", "NAME", "LIMITS"]
    name_at, limits_at = lines[0].index("NAME"), lines[0].index("LIMITS")
    for client, limits in ((short, "the service's defaults"), (long, "requests_per_s=5")):
        [row] = [line for line in lines if line.startswith(client["id"])]
        assert row[name_at:].startswith(client["name"] + " ")
        assert row[limits_at:] == limits


def test_time_options_refuse_what_they_cannot_read(stack: RunningStack):
    """A time that is none of seconds, a duration or ISO 8601 is a usage error naming them."""
    result = pixhook(stack, "dlq", "list", "--since", "yesterday")

    assert result.returncode == 2
    assert "--since" in result.stderr and "ISO 8601" in result.stderr
