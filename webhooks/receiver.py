"""Verify webhooks sent by pixhook (or any Standard Webhooks sender).

    payload = verify(request.headers, await request.body(), "whsec_...")

Every way a request can be wrong raises `InvalidWebhook` with a `reason`; nothing else escapes.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from webhooks.errors import InvalidSecret, InvalidWebhook
from webhooks.signing import SIGNATURE_VERSION, sign

DEFAULT_TOLERANCE_S = 300


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: str | Sequence[str],
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> Any:
    """Check the signature and timestamp, then return the parsed JSON body."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = _header(lowered, "webhook-id")
    timestamp = _timestamp(_header(lowered, "webhook-timestamp"), tolerance_s, now)
    candidates = _header(lowered, "webhook-signature").split(" ")
    for secret in [secrets] if isinstance(secrets, str) else secrets:
        try:
            expected = sign(secret, msg_id, timestamp, body)
        except InvalidSecret as exc:
            raise InvalidWebhook("invalid_secret", str(exc)) from exc
        if any(_same(expected, c) for c in candidates):
            return _json(body)
    raise InvalidWebhook("bad_signature", "no signature matches")


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name, "").strip()
    if not value:
        raise InvalidWebhook("missing_header", f"missing {name} header")
    return value


def _timestamp(raw: str, tolerance_s: int, now: float | None) -> int:
    try:
        timestamp = int(raw)
    except ValueError as exc:
        raise InvalidWebhook("bad_timestamp", "webhook-timestamp is not an integer") from exc
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise InvalidWebhook("stale_timestamp", "webhook-timestamp is outside the tolerance")
    return timestamp


def _same(expected: str, candidate: str) -> bool:
    version, _, _ = candidate.partition(",")
    return version == SIGNATURE_VERSION and hmac.compare_digest(
        expected.encode(), candidate.encode()
    )


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise InvalidWebhook("bad_body", "body is not JSON") from exc
    except RecursionError as exc:  # signed, yet nested past what the parser can follow
        raise InvalidWebhook("bad_body", "body nests too deeply to parse") from exc
