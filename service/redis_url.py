"""`PIXHOOK_REDIS_URL` as an operator meets it: checked when read, its address shown without the
password, and a Redis that cannot be used told in one line that names the setting."""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from redis import Redis
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

VARIABLE = "PIXHOOK_REDIS_URL"
_SCHEMES = ("redis", "rediss", "unix")
_DATABASE = re.compile(r"/?[0-9]*")
# Long enough for a Redis across a network, short enough that a wrong address fails at once.
_CHECK_TIMEOUT_S = 5.0


def parse_redis_url(raw: str) -> str:
    """`raw` when both arq and redis-py accept it; a ValueError that shows no password if not."""
    parts = urlsplit(raw)
    expected = "use redis://host:port/db, rediss:// for TLS or unix:///path/to/socket"
    if parts.scheme not in _SCHEMES or not raw.startswith(f"{parts.scheme}://"):
        raise ValueError(f"{_without_credentials(raw)!r} has no redis:// scheme; {expected}")
    try:
        parts.port  # noqa: B018 - parsed on access: a bad port fails here, not at connect time
    except ValueError:
        raise ValueError(f"the port of {parts.hostname} is not from 0 to 65535") from None
    if parts.scheme != "unix" and not _DATABASE.fullmatch(parts.path):
        raise ValueError(f"the database of {redis_address(raw)} is not a number")
    return raw


def redis_address(url: str) -> str:
    """Where a valid `url` points, `host:port` or a socket path, never a user name or password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    host = parts.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{parts.port or 6379}"


def check_redis(url: str) -> None:
    """Raise the RedisError a command would meet, before a service starts on a Redis it lacks."""
    with Redis.from_url(
        url, socket_connect_timeout=_CHECK_TIMEOUT_S, socket_timeout=_CHECK_TIMEOUT_S
    ) as redis:
        redis.ping()


def redis_problem(exc: RedisError, url: str) -> str:
    """One line saying what went wrong with the Redis at `url`, naming the setting."""
    address = redis_address(url)
    if isinstance(exc, AuthenticationError):
        return f"Redis at {address} refused the credentials in {VARIABLE}: {exc}"
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return f"cannot reach Redis at {address} ({VARIABLE}): {_reason(exc)}"
    return f"Redis at {address} ({VARIABLE}) answered: {exc}"


def _reason(exc: RedisError) -> str:
    """The operating system's words ("Connection refused") rather than redis-py's wrapping."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and cause.errno and cause.errno > 0:
        return os.strerror(cause.errno)
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(exc).rstrip(".")


def _without_credentials(raw: str) -> str:
    # Whatever precedes the last "@" may be a user name and password.
    return raw.rpartition("@")[2]
