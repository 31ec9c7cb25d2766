"""Secrets kept at rest in Redis (endpoint signing secrets, custom headers) are sealed with Fernet:
someone who reads a Redis dump or a backup learns nothing without the key.

Keys come from config. The first key seals; every key opens, so a key is rotated by putting the
new one first and keeping the old one until everything has been resealed.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from webhooks.errors import InvalidSealKey, SealBroken


class Sealer:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise InvalidSealKey("at least one key is needed")
        self._fernet = MultiFernet([_fernet(index, key) for index, key in enumerate(keys)])
        self._keys = len(keys)

    @classmethod
    def derived_from(cls, secret_key: str) -> Sealer:
        """For installs that set only PIXHOOK_SECRET_KEY: a sealing key derived from it, with a
        context of its own, so neither key can be computed from the other's uses."""
        digest = hashlib.sha256(b"pixhook sealing key\0" + secret_key.encode()).digest()
        return cls([base64.urlsafe_b64encode(digest).decode()])

    def seal(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise SealBroken("no configured sealing key opens this value", self._keys) from exc


def _fernet(index: int, key: str) -> Fernet:
    try:
        return Fernet(key)
    except ValueError as exc:
        raise InvalidSealKey(
            "each key must be 32 bytes of URL-safe base64 "
            "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key())')",
            index,
        ) from exc
