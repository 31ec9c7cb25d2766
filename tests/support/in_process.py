"""The API in this process: the app `pixhook api` serves, with its lifespan run, on a real Redis,
called through `httpx.ASGITransport` instead of a socket and a subprocess.

The app runs on an event loop in a thread of its own (an anyio blocking portal), so that tests
stay plain synchronous functions calling an `httpx.Client`, as they do against the stack. No
worker runs (jobs stay queued) unless `start_worker()` runs arq's on the same loop. What crosses
processes (signals, kills, a second replica, the processes' log files, the CLI) keeps the stack.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from arq.worker import Worker

from service.app import create_app
from service.cli.devstack import stack_environment
from service.clients.store import ClientLimits, NewClient, client_store
from service.config import Settings
from service.worker import QueueName, create_worker

BASE_URL = "http://testserver"
T = TypeVar("T")


class HasRedis(Protocol):
    """A stack, in processes of its own or in this one: what the CLI needs of it."""

    @property
    def redis_url(self) -> str: ...


class _PortalTransport(httpx.BaseTransport):
    """Sends each request through `httpx.ASGITransport` on the portal's loop, where the app's
    Redis connections live, and hands back the response read in full."""

    def __init__(self, asgi: httpx.ASGITransport, portal: BlockingPortal) -> None:
        self._asgi = asgi
        self._portal = portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def send() -> httpx.Response:
            response = await self._asgi.handle_async_request(request)
            body = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=body)

        return self._portal.call(send)


class InProcessApi:
    """One app and its first client; `http()` opens HTTP clients of it. Use `close()`.

    An exception the app lets out is raised in the test, unless `raise_app_exceptions` is False:
    then the caller gets the 500 a server would send."""

    def __init__(
        self,
        redis_url: str,
        files_dir: Path,
        env: dict[str, str],
        *,
        raise_app_exceptions: bool = True,
    ) -> None:
        environ = {
            **stack_environment(redis_url, files_dir, BASE_URL),
            "PIXHOOK_SECRET_KEY": secrets.token_urlsafe(32),
            **env,
        }
        self.settings = Settings.from_env(environ)
        # What a `pixhook` command run beside this app is given, as an operator's shell would be.
        self.environ = environ
        self.redis_url = redis_url
        self.app = create_app(self.settings)
        self._exit = ExitStack()
        try:
            portal = self._exit.enter_context(start_blocking_portal())
            self._exit.enter_context(
                portal.wrap_async_context_manager(self.app.router.lifespan_context(self.app))
            )
        except BaseException:
            self._exit.close()  # a lifespan that failed to start leaves no loop thread behind
            raise
        self._portal = portal
        asgi = httpx.ASGITransport(self.app, raise_app_exceptions=raise_app_exceptions)
        self._transport = _PortalTransport(asgi, portal)
        self.client = self.new_client("dev")

    def start_worker(self, queue: QueueName = "jobs") -> None:
        """An arq worker for `queue` on the app's loop, as `pixhook worker` runs one, stopped with
        the app: jobs (or deliveries) then run in this process too, on the same Redis."""

        async def start() -> Worker:
            worker = create_worker(self.settings, queue, handle_signals=False)
            started = asyncio.Event()
            startup = worker.on_startup

            async def on_startup(ctx: dict[str, Any]) -> None:
                if startup is not None:
                    await startup(ctx)
                started.set()

            # Returns once the worker has started: stopped any sooner, it would leave behind
            # what it was opening.
            worker.on_startup = on_startup
            worker.main_task = asyncio.create_task(worker.main())
            ready = asyncio.create_task(started.wait())
            await asyncio.wait({worker.main_task, ready}, return_when=asyncio.FIRST_COMPLETED)
            if not started.is_set():
                ready.cancel()
                worker.main_task.result()  # raises what stopped it
            return worker

        async def stop(worker: Worker) -> None:
            # What a signal does: its poll and jobs cancelled, each let finish before the pool
            # they use is closed. Then arq's close(), less its unguarded wait on the cancelled
            # tasks and its deprecated `close()` of redis-py's client (warnings are errors here).
            task = worker.main_task
            assert task is not None
            worker.handle_sig(signal.SIGTERM)
            await asyncio.gather(task, *worker.tasks.values(), return_exceptions=True)
            await worker.pool.delete(worker.health_check_key)
            if worker.on_shutdown is not None:
                await worker.on_shutdown(worker.ctx)
            await worker.pool.aclose()

        worker = self._portal.call(start)
        self._exit.callback(self._portal.call, stop, worker)

    def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """`await fn()` on the app's loop, where its Redis connections live."""
        return self._portal.call(fn)

    def new_client(self, name: str, limits: ClientLimits | None = None) -> NewClient:
        """A client made as `pixhook clients create` makes one."""

        async def create() -> NewClient:
            async with client_store(self.redis_url) as store:
                return await store.create(name, limits)

        return asyncio.run(create())

    def http(self, api_key: str | None = None, **options: Any) -> httpx.Client:
        """An HTTP client of the app, sending `api_key` (none: an anonymous caller)."""
        headers = {} if api_key is None else {"authorization": f"Bearer {api_key}"}
        client = httpx.Client(
            transport=self._transport, base_url=BASE_URL, headers=headers, **options
        )
        self._exit.callback(client.close)
        return client

    def close(self) -> None:
        self._exit.close()
