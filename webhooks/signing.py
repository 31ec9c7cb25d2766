"""Standard Webhooks signatures: `v1,` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from webhooks.errors import InvalidSecret

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"


def generate_secret(nbytes: int = 32) -> str:
    """A new signing secret in the `whsec_<base64>` form receivers paste into their verifier."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a secret stands for: the base64-decoded bytes after the prefix."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise InvalidSecret("not valid base64") from exc
    if not key:
        raise InvalidSecret("empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature of exactly these body bytes."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signature_header(
    signing_secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> str:
    """One signature per secret, space separated: receivers on either side of a rotation verify."""
    if not signing_secrets:
        raise InvalidSecret("at least one signing secret is required")
    return " ".join(sign(s, msg_id, timestamp, body) for s in signing_secrets)


def webhook_headers(
    signing_secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(signing_secrets, msg_id, timestamp, body),
    }
