"""The exception tree, drawn once.

PixhookError
├── ApiError                   answered to the caller as {"error": {code, message, field}}
│   ├── InvalidInput           422
│   ├── InvalidJson            400
│   ├── Unauthorized           401
│   ├── Forbidden              403
│   ├── NotFound               404
│   ├── Conflict               409
│   ├── PayloadTooLarge        413
│   ├── UnsupportedMediaType   415
│   ├── TooManyRequests        429  (with its Retry-After)
│   └── ServiceUnavailable     503  (with its Retry-After)
└── JobFailure                 ends a job as `failed` with {code, message, retryable}

A job's failure is transient (`retryable`: another attempt may succeed, and a batch item is
tried again on its own) or final. `JOB_ERRORS` says which by code; a raiser that knows better
from its evidence (the image host answered 503 three times, not 404) says so itself.
"""

from __future__ import annotations

# What a 503 tells callers to wait: an outage of Redis or the store is not over in a second, and
# clients that retry at once only add to the load of the one that comes back.
UNAVAILABLE_RETRY_AFTER_S = 5


class PixhookError(Exception):
    code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.field = field


class ApiError(PixhookError):
    status_code = 500
    # Seconds after which trying again makes sense: answered as `Retry-After` when set.
    retry_after_s: int | None = None


class InvalidInput(ApiError):
    status_code = 422
    code = "INVALID_INPUT"


class InvalidJson(ApiError):
    status_code = 400
    code = "INVALID_JSON"


class Unauthorized(ApiError):
    status_code = 401
    code = "UNAUTHORIZED"


class Forbidden(ApiError):
    status_code = 403
    code = "FORBIDDEN"


class NotFound(ApiError):
    status_code = 404
    code = "NOT_FOUND"


class Conflict(ApiError):
    status_code = 409
    code = "CONFLICT"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(ApiError):
    status_code = 415
    code = "UNSUPPORTED_MEDIA_TYPE"


class TooManyRequests(ApiError):
    """Over a limit for now: `retry_after_s` (at least 1) says when trying again makes sense."""

    status_code = 429
    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after_s: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = max(1, retry_after_s)


class ServiceUnavailable(ApiError):
    status_code = 503
    code = "SERVICE_UNAVAILABLE"
    retry_after_s = UNAVAILABLE_RETRY_AFTER_S


# Every code a job may fail with, and whether such a failure may pass by default. IMAGE_FETCH_FAILED
# and IMAGE_DNS_FAILURE are final unless the fetcher gave up on failures that pass (5xx, resets,
# a resolver's EAI_AGAIN); a ProviderError says for itself. A timeout of the whole job is final:
# the same image would take as long again.
JOB_ERRORS: dict[str, bool] = {
    "INVALID_IMAGE": False,
    "TOO_MANY_FRAMES": False,
    "IMAGE_TOO_COMPLEX": False,
    "STORAGE_UNAVAILABLE": True,
    "SERVICE_UNAVAILABLE": True,
    "OUTPUT_TOO_LARGE": False,
    "DECODE_TOO_LARGE": False,
    "OUTPUT_SIDE_TOO_LARGE": False,
    "CROP_OUTSIDE_IMAGE": False,
    "IMAGE_TOO_LARGE": False,
    "INPUT_GONE": False,
    "IMAGE_FETCH_FAILED": False,
    "IMAGE_FETCH_TIMEOUT": True,
    "IMAGE_DNS_FAILURE": False,
    "URL_NOT_ALLOWED": False,
    "JOB_TIMEOUT": False,
    "PROVIDER_AUTH": False,
    "PROVIDER_UNAVAILABLE": True,
    "PROVIDER_BAD_RESPONSE": False,
    "PROVIDER_REJECTED": False,
    "PROVIDER_NOT_CONFIGURED": False,
    "PROVIDER_KEYS_EXHAUSTED": False,
    "BRAND_LIST_NOT_FOUND": False,
    "INTERNAL_ERROR": False,
}


class JobFailure(PixhookError):
    """Raised inside a job: the job ends `failed` with this code and message. `retryable`
    (default: by `JOB_ERRORS`) says whether another attempt may succeed."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message, code=code, field=field)
        self.retryable = JOB_ERRORS.get(self.code, False) if retryable is None else retryable

    def as_error(self) -> dict[str, object]:
        """The job's `error` as it is recorded and shown."""
        return {"code": self.code, "message": self.message, "retryable": self.retryable}
