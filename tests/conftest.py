from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator
from typing import TypeVar

import httpx
import pytest

from service.devstack import RunningStack, local_stack
from tests.helpers import image_bytes
from tests.openai_standin import API_KEY, OpenAIStandIn
from tests.receiver import Receiver
from tests.servers import RawServer, Response, Scripted

# A short retry schedule (3 attempts) and tight limits, so the suite exercises them quickly.
STACK_ENV = {
    "PIXHOOK_WEBHOOK_RETRY_SCHEDULE": "300ms,300ms",
    "PIXHOOK_WEBHOOK_ATTEMPT_TIMEOUT": "3s",
    "PIXHOOK_WEBHOOK_THROTTLED_BACKOFF": "300ms",
    # Only the receivers' own address: `localhost` (which is also ::1) and the rest stay refused.
    "PIXHOOK_ALLOW_PRIVATE_NETWORKS": "127.0.0.1/32",
    # Every test receiver shares 127.0.0.1; the breaker has its own stack in test_circuit.py.
    "PIXHOOK_CIRCUIT_THRESHOLD": "100000",
    # Re-queuing other tests' dead deliveries would add requests to their receivers mid-test.
    "PIXHOOK_DLQ_REDRIVE_BATCH": "0",
    "PIXHOOK_MAX_REQUEST_BYTES": "2000000",
    "PIXHOOK_MAX_IMAGE_BYTES": "1500000",
    "PIXHOOK_MAX_IMAGE_PIXELS": "30000000",
    # Seconds, not Svix's days: tests/test_endpoints.py watches an endpoint being disabled.
    "PIXHOOK_ENDPOINT_DISABLE_AFTER": "2s",
    "PIXHOOK_CONSOLE_PASSWORD": "console-password-for-tests",
}


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
def stack(
    tmp_path_factory: pytest.TempPathFactory, openai_standin: OpenAIStandIn
) -> Iterator[RunningStack]:
    env = {
        **STACK_ENV,
        "PIXHOOK_OPENAI_BASE_URL": openai_standin.base_url,
        "PIXHOOK_OPENAI_API_KEY": API_KEY,
        "PIXHOOK_PROVIDER_BACKOFF": "50ms",
        "PIXHOOK_PROVIDER_TIMEOUT": "2s",
    }
    with local_stack(tmp_path_factory.mktemp("stack"), env) as running:
        yield running


@pytest.fixture
def api(stack: RunningStack) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {stack.client.api_key}"}
    with httpx.Client(base_url=stack.api_url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
def make_receiver(stack: RunningStack) -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def create(
        respond: Callable[[int], int] = lambda n: 200, secret: str | None = None
    ) -> Receiver:
        receiver = Receiver(secret or stack.client.webhook_secret, respond)
        made.append(receiver)
        return receiver

    yield create
    for receiver in made:
        receiver.close()


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
