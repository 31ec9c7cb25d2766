"""Every exception the library raises, under one root:

    WebhookError
    ├── GuardRefused        a URL, or an address it resolves to, is not allowed (SSRF guard)
    ├── InvalidWebhook      a received request is not a webhook signed by a secret we hold
    ├── InvalidSecret       a signing secret is not `whsec_` + base64          (also ValueError)
    ├── InvalidSealKey      a configured sealing key is not a Fernet key       (also ValueError)
    ├── SealBroken          no configured sealing key opens a sealed value     (also ValueError)
    ├── InvalidTemplate     a Slack message template the caller must fix       (also ValueError)
    ├── InvalidDuration     a duration that is not like 250ms, 5s, 30m or 2h   (also ValueError)
    └── InvalidNetwork      an allow-list entry that is not a CIDR network     (also ValueError)

Configuration and input errors keep `ValueError` as a second base: callers that parse settings
catch it. A failed delivery attempt is not an exception but a value (`AttemptResult`, with its
`status_code`, `error_code` and `retry_after_s`): the engine records it rather than raising it.
Each exception carries its evidence as attributes, so callers map it without parsing messages.
"""

from __future__ import annotations


class WebhookError(Exception):
    """The root: `except WebhookError` catches whatever the library raises on purpose."""


class GuardRefused(WebhookError):
    """`url` is not allowed: `reason` is a stable code (FORBIDDEN_ADDRESS, DNS_FAILURE,
    INVALID_URL, SCHEME_NOT_ALLOWED), `detail` says why, `address` is the refused address."""

    def __init__(self, reason: str, url: str, detail: str, address: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.url = url
        self.detail = detail
        self.address = address


class InvalidWebhook(WebhookError):
    """The request is not a webhook signed by a secret we hold; `reason` says which check failed
    (missing_header, bad_timestamp, stale_timestamp, bad_signature, invalid_secret, bad_body)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class InvalidSecret(WebhookError, ValueError):
    """A signing secret is not `whsec_` followed by base64; `reason` says what is wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"signing secret is {reason}")
        self.reason = reason


class InvalidSealKey(WebhookError, ValueError):
    """A configured sealing key is not a Fernet key (32 bytes, URL-safe base64); `index` is its
    place in the configured list (None: the list is empty)."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class SealBroken(WebhookError, ValueError):
    """A sealed value that none of the configured keys opens: the key was changed or lost.
    `keys` is how many keys were tried."""

    def __init__(self, message: str, keys: int) -> None:
        super().__init__(message)
        self.keys = keys


class InvalidTemplate(WebhookError, ValueError):
    """A template the caller must fix: `field` is where in the templates object, e.g.
    `job.failed.blocks[0].text.text` (empty for the object itself)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class InvalidDuration(WebhookError, ValueError):
    """`text` is not a duration like 250ms, 5s, 30m or 2h."""

    def __init__(self, text: str) -> None:
        super().__init__(f"{text!r} is not a duration like 250ms, 5s, 30m or 2h")
        self.text = text


class InvalidNetwork(WebhookError, ValueError):
    """`entry` of a private-network allow-list is not a CIDR network."""

    def __init__(self, entry: str, detail: str) -> None:
        super().__init__(f"invalid network {entry!r} in allow-list: {detail}")
        self.entry = entry
        self.detail = detail
