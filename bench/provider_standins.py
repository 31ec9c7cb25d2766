"""The provider benches' stand-ins: either provider's (the test suite's servers), a pool of bench
keys, what the stack needs to call it, and a key revoked at the stand-in once it has answered a
given number of calls."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from service.config import Settings
from service.keys import KEYS
from service.providers.key_pool import api_key
from tests.support import anthropic_standin, openai_standin
from tests.support.standin_server import StandInServer

Provider = Literal["anthropic", "openai"]
PROVIDERS: tuple[Provider, ...] = ("anthropic", "openai")
StandIn = StandInServer[Any]


def bench_keys(provider: Provider, count: int) -> tuple[str, ...]:
    """`count` keys for the stand-in, told apart by their last four characters (`…k001`)."""
    return tuple(f"sk-bench-{provider}-k{number:03d}" for number in range(1, count + 1))


def vision_model(provider: Provider) -> str:
    providers = Settings().providers
    if provider == "anthropic":
        return providers.anthropic_vision_model
    return providers.openai_vision_model


def answer(provider: Provider, **fields: Any) -> Any:
    """A scripted answer of the provider's stand-in (`delay_s`, `chunk_delay_s`, cached tokens)."""
    kind = anthropic_standin.Answer if provider == "anthropic" else openai_standin.Answer
    return kind(**fields)


def stack_env(provider: Provider, standin: StandIn, keys: Sequence[str]) -> dict[str, str]:
    """What points the stack at the stand-in, with `keys`."""
    if provider == "anthropic":
        return {
            "PIXHOOK_ANTHROPIC_BASE_URL": standin.base_url,
            "PIXHOOK_ANTHROPIC_API_KEYS": ",".join(keys),
        }
    return {"PIXHOOK_OPENAI_BASE_URL": standin.base_url, "PIXHOOK_OPENAI_API_KEYS": ",".join(keys)}


@contextmanager
def running_standin(provider: Provider, keys: Sequence[str]) -> Iterator[StandIn]:
    standin: StandIn
    if provider == "anthropic":
        standin = anthropic_standin.AnthropicStandIn(keys).start()
    else:
        standin = openai_standin.OpenAIStandIn(keys).start()
    try:
        yield standin
    finally:
        standin.close()


def factor_key(provider: Provider, key: str, model: str) -> str:
    """The Redis key of one API key's shared rate factor (service/providers/limits.py)."""
    return f"{KEYS.provider_model(f'{provider}:{api_key(key).id}', model)}:factor"


def paid_calls(standin: StandIn, keys: Sequence[str]) -> int:
    return sum(standin.paid_calls_by_key(key) for key in keys)


class Revoker:
    """Revokes `key` at the stand-in once it has answered `after` paid calls over `keys`, as an
    operator deleting a key in the provider's console mid-run; `at` is when (monotonic, the
    stand-in's clock)."""

    def __init__(self, standin: StandIn, keys: Sequence[str], key: str, after: int) -> None:
        self.key, self.after = key, after
        self.at: float | None = None
        self.paid_before = 0  # paid calls the stand-in had answered when it revoked
        self._standin, self._keys = standin, tuple(keys)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Revoker:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _watch(self) -> None:
        # Every 5 ms: at 15 answers/s, the revocation lands at most a tenth of a call late.
        while not self._stop.wait(0.005):
            paid = paid_calls(self._standin, self._keys)
            if paid >= self.after:
                self._standin.revoke(self.key)
                self.at, self.paid_before = time.monotonic(), paid
                return
