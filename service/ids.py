"""Identifiers that sort by creation time: `job_01JD...`."""

from __future__ import annotations

import re
import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def new_id(prefix: str) -> str:
    """`prefix_` + 10 characters of millisecond time + 16 random ones (80 bits)."""
    millis = int(time.time() * 1000)
    randomness = secrets.randbits(80)
    return f"{prefix}_{_encode(millis, 10)}{_encode(randomness, 16)}"


# Every id pixhook makes, batch items' (`job_<batch>_<index>`) included: one key segment, never
# a `:` that would name another key of the same record.
_ID = re.compile(r"[a-z]+_[0-9a-z_]+")


def is_id(text: str) -> bool:
    """Whether `text` could be an id pixhook made: what a path names before it reaches Redis."""
    return _ID.fullmatch(text) is not None


def _encode(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))
