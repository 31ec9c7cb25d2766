"""How a provider call fails: a stable code, and whether another attempt may succeed.

PixhookError → JobFailure → ProviderError(code, retryable)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.errors import JobFailure

if TYPE_CHECKING:
    from service.providers.wire import LimitHints

# Stable failure codes a job can end with.
PROVIDER_AUTH = "PROVIDER_AUTH"
PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"
PROVIDER_BAD_RESPONSE = "PROVIDER_BAD_RESPONSE"
PROVIDER_REJECTED = "PROVIDER_REJECTED"
PROVIDER_NOT_CONFIGURED = "PROVIDER_NOT_CONFIGURED"
# Every key of the provider was refused (401/403): batches pause rather than fail their items.
PROVIDER_KEYS_EXHAUSTED = "PROVIDER_KEYS_EXHAUSTED"


class ProviderError(JobFailure):
    """A provider call failed; `retryable` says whether another attempt may succeed."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        retryable: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
        hints: LimitHints | None = None,
    ) -> None:
        super().__init__(message, code=code, retryable=retryable)
        self.status = status
        self.retry_after_s = retry_after_s
        # What the refusal's rate-limit headers said of the key's window.
        self.hints = hints


def too_slow() -> ProviderError:
    """No answer within the call's deadline: another attempt may be quicker."""
    return ProviderError(
        "the provider did not answer in time", code=PROVIDER_UNAVAILABLE, retryable=True
    )


def unreachable(exc: Exception) -> ProviderError:
    """The connection failed or broke before an answer: another attempt may get through."""
    return ProviderError(
        f"the provider could not be reached: {exc}", code=PROVIDER_UNAVAILABLE, retryable=True
    )
