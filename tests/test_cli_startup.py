"""What the `pixhook` command says when what it needs is not there: Redis, a free port."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from service.devstack import free_port

PASSWORD = "not-for-your-eyes"


def run(env: dict[str, str], *args: str, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    """The real `pixhook` command, with only these `PIXHOOK_*` variables set."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PIXHOOK_")}
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def nowhere() -> tuple[str, str]:
    """A Redis URL (with a password) where nothing listens, and the address it names."""
    port = free_port()
    return f"redis://:{PASSWORD}@127.0.0.1:{port}/0", f"127.0.0.1:{port}"


@pytest.mark.parametrize("command", [["clients", "list"], ["dlq", "list"]])
def test_a_command_with_redis_down_says_so_in_one_line(command: list[str]):
    """Issue 15 item 12: `clients list` and `dlq list` printed a 63-line traceback."""
    url, address = nowhere()

    result = run({"PIXHOOK_REDIS_URL": url}, *command)

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "PIXHOOK_REDIS_URL" in line and address in line
    assert PASSWORD not in result.stderr + result.stdout


@pytest.mark.parametrize("command", [["api"], ["worker", "--queue", "jobs"]])
def test_a_service_with_redis_down_exits_with_one_line(command: list[str]):
    """Issue 15 item 12: `pixhook api` printed a 64-line traceback (a worker kept retrying)."""
    url, address = nowhere()
    env = {"PIXHOOK_REDIS_URL": url, "PIXHOOK_SECRET_KEY": "k" * 32}

    result = run(env, "--log-format", "text", *command)

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "PIXHOOK_REDIS_URL" in line and address in line
    assert PASSWORD not in result.stderr + result.stdout


def test_a_redis_url_without_a_scheme_names_the_setting():
    """Issue 15 item 12: it said `RuntimeError: invalid DSN scheme` (or a ValueError)."""
    address = f"127.0.0.1:{free_port()}"

    result = run({"PIXHOOK_REDIS_URL": address}, "clients", "list")

    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "PIXHOOK_REDIS_URL" in line and "redis://" in line and address in line
