"""Identifiers that sort by creation time: `job_01JD...`."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def new_id(prefix: str) -> str:
    """`prefix_` + 10 characters of millisecond time + 16 random ones (80 bits)."""
    millis = int(time.time() * 1000)
    randomness = secrets.randbits(80)
    return f"{prefix}_{_encode(millis, 10)}{_encode(randomness, 16)}"


def _encode(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))
