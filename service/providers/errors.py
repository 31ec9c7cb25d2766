"""How a provider call fails: a stable code, and whether another attempt may succeed.

PixhookError → JobFailure → ProviderError(code, retryable)
"""

from __future__ import annotations

from service.errors import JobFailure

# Stable failure codes a job can end with.
PROVIDER_AUTH = "PROVIDER_AUTH"
PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"
PROVIDER_BAD_RESPONSE = "PROVIDER_BAD_RESPONSE"
PROVIDER_REJECTED = "PROVIDER_REJECTED"
PROVIDER_NOT_CONFIGURED = "PROVIDER_NOT_CONFIGURED"


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
    ) -> None:
        super().__init__(message, code=code, retryable=retryable)
        self.status = status
        self.retry_after_s = retry_after_s
