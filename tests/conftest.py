from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from redis import Redis

from service.cli.devstack import EmbeddedRedis, RunningStack, local_stack
from tests.support.anthropic_standin import API_KEY as ANTHROPIC_KEY
from tests.support.anthropic_standin import AnthropicStandIn
from tests.support.images import image_bytes
from tests.support.in_process import InProcessApi
from tests.support.openai_standin import API_KEY, OpenAIStandIn
from tests.support.raw_servers import RawServer, Response, Scripted
from tests.support.stack_env import STACK_ENV
from tests.support.webhook_receiver import Receiver, receivers


def provider_env(standin: OpenAIStandIn, keys: tuple[str, ...] = (API_KEY,)) -> dict[str, str]:
    """The stand-in as the OpenAI provider with these of its keys, short retries and timeouts."""
    return {
        "PIXHOOK_OPENAI_BASE_URL": standin.base_url,
        "PIXHOOK_OPENAI_API_KEYS": ",".join(keys),
        "PIXHOOK_PROVIDER_BACKOFF": "50ms",
        "PIXHOOK_PROVIDER_TIMEOUT": "2s",
    }


def anthropic_env(
    standin: AnthropicStandIn, keys: tuple[str, ...] = (ANTHROPIC_KEY,)
) -> dict[str, str]:
    """The Anthropic stand-in as the Anthropic provider, with these of its keys; beside
    `provider_env`, whose short retries and timeouts it shares."""
    return {
        "PIXHOOK_ANTHROPIC_BASE_URL": standin.base_url,
        "PIXHOOK_ANTHROPIC_API_KEYS": ",".join(keys),
    }


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Figures a test reports (`record_property("figure", ...)`), printed after the run: they
    travel in the reports, so they reach this process from pytest-xdist's workers too."""
    figures = [
        value
        for report in terminalreporter.getreports("passed")
        for name, value in report.user_properties
        if name == "figure"
    ]
    if figures:
        terminalreporter.write_sep("-", "figures")
        for figure in figures:
            terminalreporter.write_line(str(figure))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Each phase's report on its test, so fixtures can tell a failed test (and screenshot it)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def openai_standin() -> Iterator[OpenAIStandIn]:
    standin = OpenAIStandIn().start()
    yield standin
    standin.close()


@pytest.fixture(scope="session")
def anthropic_standin() -> Iterator[AnthropicStandIn]:
    standin = AnthropicStandIn().start()
    yield standin
    standin.close()


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, openai_standin: OpenAIStandIn
) -> Iterator[RunningStack]:
    env = {**STACK_ENV, **provider_env(openai_standin)}
    with local_stack(tmp_path_factory.mktemp("stack"), env) as running:
        yield running


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One redis-server on a free port for this test process's in-process apps."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def make_app(redis_server: EmbeddedRedis, tmp_path: Path) -> Iterator[Callable[..., InProcessApi]]:
    """Starts the API in this process (`make_app(PIXHOOK_X="...")` sets more of its environment)
    on an empty Redis; every app made is closed afterwards, whatever happened."""
    with Redis.from_url(redis_server.url) as redis:
        redis.flushall()
    made: list[InProcessApi] = []

    def create(*, raise_app_exceptions: bool = True, **env: str) -> InProcessApi:
        app = InProcessApi(
            redis_server.url,
            tmp_path / f"files-{len(made)}",
            {**STACK_ENV, **env},
            raise_app_exceptions=raise_app_exceptions,
        )
        made.append(app)
        return app

    yield create
    for app in made:
        app.close()


@pytest.fixture
def api(stack: RunningStack) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {stack.client.api_key}"}
    with httpx.Client(base_url=stack.api_url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
def make_receiver(stack: RunningStack) -> Iterator[Callable[..., Receiver]]:
    with receivers(stack.client.webhook_secret) as create:
        yield create


# In-process counterparts of `stack`, `api` and `make_receiver`, for tests that cross no
# process: a module switches by defining its `api` and `make_receiver` from these.


@pytest.fixture
def app_with_workers(
    make_app: Callable[..., InProcessApi], openai_standin: OpenAIStandIn
) -> InProcessApi:
    """The API and both workers in this process, with the stack's settings and provider."""
    app = make_app(**provider_env(openai_standin))
    app.start_worker("jobs")
    app.start_worker("deliveries")
    return app


@pytest.fixture
def app_with_both_providers(
    make_app: Callable[..., InProcessApi],
    openai_standin: OpenAIStandIn,
    anthropic_standin: AnthropicStandIn,
) -> InProcessApi:
    """`app_with_workers` with the Anthropic stand-in as the Anthropic provider too: a module
    that needs it defines its `app_with_workers` as this."""
    app = make_app(**provider_env(openai_standin), **anthropic_env(anthropic_standin))
    app.start_worker("jobs")
    app.start_worker("deliveries")
    return app


@pytest.fixture
def in_process_api(app_with_workers: InProcessApi) -> httpx.Client:
    return app_with_workers.http(app_with_workers.client.api_key)


@pytest.fixture
def in_process_receivers(app_with_workers: InProcessApi) -> Iterator[Callable[..., Receiver]]:
    with receivers(app_with_workers.client.webhook_secret) as create:
        yield create


S = TypeVar("S", bound=RawServer)


@pytest.fixture
def serve() -> Iterator[Callable[[S], S]]:
    """Starts a server for the test; every one is closed afterwards, whatever happened."""
    started: list[RawServer] = []

    def start(server: S) -> S:
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.close()


@pytest.fixture
def held_image(serve: Callable[[Scripted], Scripted]) -> Iterator[tuple[str, threading.Event]]:
    """An image URL that answers only once released: jobs fetching it stay `running`."""
    release = threading.Event()

    def respond(n: int) -> Response:
        release.wait(20)
        return Response(200, {"content-type": "image/jpeg"}, image_bytes())

    server = serve(Scripted(respond))
    yield server.url("/held.jpg"), release
    release.set()
