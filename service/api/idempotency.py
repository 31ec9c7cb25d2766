"""`Idempotency-Key` on the POSTs that create something: a retry creates nothing new.

A key is the client's own (two clients never share one) and is kept for
`PIXHOOK_IDEMPOTENCY_KEY_TTL` (24 h) with the fingerprint of the request that first used it
(SHA-256 of method, path and body; a multipart body's random boundary does not count) and,
once that request has succeeded, its status and body. Then:

- the same key and fingerprint answers the stored response again, with `Idempotent-Replayed: true`;
- the same key with another fingerprint is `409 IDEMPOTENCY_CONFLICT`;
- while the first request is still running, a second one waits for it (up to `_WAIT_S`) and
  then answers its response; if it is still running after that, `409 IDEMPOTENCY_IN_PROGRESS`;
- a request that fails (any 4xx or 5xx) created nothing, so it releases the key: the client may
  fix the request and send it again under the same key. (Stripe keeps validation errors out too.)

A response that carries a secret (a new endpoint's signing secret) is stored sealed, as the
endpoint's own copy is: a Redis dump shows neither. If the sealing keys have changed so that it
no longer opens, the retry is `409 IDEMPOTENCY_UNREADABLE`, never a second creation.

A batch upload (`idempotent_upload`) is too large to read twice: its fingerprint (the same
digest) is taken as the route reads the body, the claim is renewed every few seconds while it
does, and a second request with the key reads its own body only to compare fingerprints once
the first has answered.

A claim is written before the request runs and expires after `_CLAIM_TTL_S` unless the request
finishes, so an API process that dies mid-request does not hold the key for a day. If Redis dies
mid-request instead, the API still settles the claim (releases it, or keeps the response of a
request that did create something, which it answers) as soon as Redis is back: a retry is not
held off for a minute.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from python_multipart.multipart import parse_options_header
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from service.api.bodies import read_body, replay_receive
from service.clients.store import Client
from service.errors import Conflict, InvalidInput
from service.keys import KEYS
from service.runtime import Runtime
from webhooks import SealBroken, Sealer

log = logging.getLogger("pixhook.idempotency")

KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_CHARS = 255
_CLAIM_TTL_S = 60.0
_WAIT_S = 5.0
_POLL_S = 0.025
_SETTLE_RETRY_S = (0.1, 1.0)  # the first wait for Redis to come back, and the longest

# Claims being settled in the background, held so that the event loop does not drop them.
_settling: set[asyncio.Task[None]] = set()

Create = Callable[[Request], Awaitable[Response]]

# KEYS: record. ARGV: fingerprint, token, claim ttl ms. nil: claimed; else what the key holds.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'fingerprint', ARGV[1], 'token', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return false
end
return redis.call('HMGET', KEYS[1], 'fingerprint', 'status', 'body')
"""

# KEYS: record. ARGV: token, status, body, ttl ms. Only the claim's holder may answer for it.
_FINISH = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'body', ARGV[3])
redis.call('HDEL', KEYS[1], 'token')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS: record. ARGV: token, status, body, ttl ms, fingerprint. An upload's, known at its end.
_FINISH_UPLOAD = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'body', ARGV[3], 'fingerprint', ARGV[5])
redis.call('HDEL', KEYS[1], 'token')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS: record. ARGV: token, ttl ms. An upload still being read keeps its claim.
_RENEW = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
_UPLOAD_CLAIM_TTL_S = 15.0  # renewed every third of it: a dead API's claim goes soon
_UNREAD = "unread"  # the fingerprint of an upload still being read

# KEYS: record. ARGV: token.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


async def idempotent(
    request: Request,
    runtime: Runtime,
    client: Client,
    body_limit: int,
    create: Create,
    *,
    sealer: Sealer | None = None,
) -> Response:
    """`create(request)`, unless the request's `Idempotency-Key` has been used already. With a
    `sealer`, the response is kept sealed with it."""
    key = request.headers.get(KEY_HEADER)
    if key is None:
        return await create(request)
    _check_key(key)
    body = await read_body(request, body_limit)
    fingerprint = _fingerprint(request, body)
    record = KEYS.idempotency(client.id, key)
    token = secrets.token_hex(16)
    deadline = time.monotonic() + _WAIT_S
    claim = runtime.redis.register_script(_CLAIM)
    while True:
        held = await claim(keys=[record], args=[fingerprint, token, int(_CLAIM_TTL_S * 1000)])
        if held is None:
            break
        held_fingerprint, status, stored = held
        if held_fingerprint.decode() != fingerprint:
            raise Conflict(
                f"this {KEY_HEADER} was used for a different request; use a new key",
                code="IDEMPOTENCY_CONFLICT",
                field=KEY_HEADER,
            )
        if status is not None:
            return _replay_response(int(status), _opened(stored, sealer))
        if time.monotonic() > deadline:
            raise _still_in_progress()
        await asyncio.sleep(_POLL_S)
    replayed = Request(request.scope, replay_receive(body))
    return await _create_once(runtime, record, token, replayed, create, sealer)


async def _create_once(
    runtime: Runtime,
    record: str,
    token: str,
    request: Request,
    create: Create,
    sealer: Sealer | None,
) -> Response:
    release = runtime.redis.register_script(_RELEASE)
    try:
        response = await create(request)
    except Exception:
        await _settle(release, record, [token])
        raise
    if not 200 <= response.status_code < 300:
        await _settle(release, record, [token])
        return response
    ttl_ms = int(runtime.settings.api.idempotency_key_ttl_s * 1000)
    kept = bytes(response.body) if sealer is None else sealer.seal(bytes(response.body).decode())
    finish = runtime.redis.register_script(_FINISH)
    # Created: whatever Redis does now, the caller learns what was made.
    if await _settle(finish, record, [token, response.status_code, kept, ttl_ms]) == 0:
        log.warning("an idempotency claim expired before its request finished: %s", record)
    return response


async def _settle(script: AsyncScript, record: str, args: list[str | int | bytes]) -> int | None:
    """Run `script` on the claim now: its answer. If Redis is gone, None, and the script runs
    as soon as Redis is back; the key stays held until then."""
    try:
        answer: int = await script(keys=[record], args=args)
    except RedisError as exc:
        log.warning("Redis failed before the claim %s was settled; retrying: %s", record, exc)
        task = asyncio.create_task(_settle_later(script, record, args))
        _settling.add(task)
        task.add_done_callback(_settling.discard)
        return None
    return answer


async def _settle_later(script: AsyncScript, record: str, args: list[str | int | bytes]) -> None:
    # Past the claim's lifetime there is nothing left to settle: it has expired.
    deadline = time.monotonic() + _CLAIM_TTL_S
    wait_s, longest_s = _SETTLE_RETRY_S
    while time.monotonic() < deadline:
        await asyncio.sleep(wait_s)
        try:
            await script(keys=[record], args=args)
        except RedisError:
            wait_s = min(wait_s * 2, longest_s)
        else:
            log.info("the claim %s is settled now that Redis is back", record)
            return


async def idempotent_upload(
    request: Request, runtime: Runtime, client: Client, body_limit: int, create: Create
) -> Response:
    """`idempotent` for a body read as it arrives (a batch upload), never held whole."""
    key = request.headers.get(KEY_HEADER)
    if key is None:
        return await create(request)
    _check_key(key)
    record = KEYS.idempotency(client.id, key)
    token = secrets.token_hex(16)
    claim = runtime.redis.register_script(_CLAIM)
    ttl_ms = int(_UPLOAD_CLAIM_TTL_S * 1000)
    held = await claim(keys=[record], args=[_UNREAD, token, ttl_ms])
    if held is not None:
        return await _answer_held(request, runtime, record, body_limit)
    fingerprint = _StreamedFingerprint(request)
    keeping = asyncio.create_task(_keep_claim(runtime, record, token))
    release = runtime.redis.register_script(_RELEASE)
    try:
        response = await create(Request(request.scope, fingerprint.receive))
    except Exception:
        await _settle(release, record, [token])
        raise
    finally:
        keeping.cancel()
    if not 200 <= response.status_code < 300:
        await _settle(release, record, [token])
        return response
    finish = runtime.redis.register_script(_FINISH_UPLOAD)
    kept_ms = int(runtime.settings.api.idempotency_key_ttl_s * 1000)
    args: list[str | int | bytes] = [
        token,
        response.status_code,
        bytes(response.body),
        kept_ms,
        fingerprint.hexdigest(),
    ]
    if await _settle(finish, record, args) == 0:
        log.warning("an idempotency claim expired before its upload finished: %s", record)
    return response


async def _keep_claim(runtime: Runtime, record: str, token: str) -> None:
    renew = runtime.redis.register_script(_RENEW)
    while True:
        await asyncio.sleep(_UPLOAD_CLAIM_TTL_S / 3)
        try:
            await renew(keys=[record], args=[token, int(_UPLOAD_CLAIM_TTL_S * 1000)])
        except RedisError as exc:
            log.warning("could not renew the claim %s: %s", record, exc)


async def _answer_held(request: Request, runtime: Runtime, record: str, limit: int) -> Response:
    """The key is taken: once its request has answered, this body's fingerprint says whether
    this is a retry of it (its response again) or another request (a conflict)."""
    deadline = time.monotonic() + _WAIT_S
    while True:
        held = await runtime.redis.hmget(record, ["fingerprint", "status", "body"])  # type: ignore[misc]
        fingerprint, status, stored = held
        if fingerprint is None:  # released meanwhile: the first request failed
            raise Conflict(
                f"a request with this {KEY_HEADER} just failed; send it again",
                code="IDEMPOTENCY_IN_PROGRESS",
                field=KEY_HEADER,
            )
        if status is not None:
            break
        if time.monotonic() > deadline:
            raise _still_in_progress()
        await asyncio.sleep(_POLL_S)
    mine = _StreamedFingerprint(request)
    size = 0
    async for chunk in Request(request.scope, mine.receive).stream():
        size += len(chunk)
        if size > limit:
            break  # larger than any body that could have succeeded: not the same request
    if size > limit or mine.hexdigest() != fingerprint.decode():
        raise Conflict(
            f"this {KEY_HEADER} was used for a different request; use a new key",
            code="IDEMPOTENCY_CONFLICT",
            field=KEY_HEADER,
        )
    return _replay_response(int(status), stored)


class _StreamedFingerprint:
    """`_fingerprint` of a body taken as it is read, through `receive`."""

    def __init__(self, request: Request) -> None:
        self._receive = request.receive
        media_type, options = parse_options_header(request.headers.get("content-type", ""))
        boundary = options.get(b"boundary")
        multipart = media_type == b"multipart/form-data" and boundary
        self._boundary = b"--" + boundary if multipart and boundary else b""
        self._held = b""  # a tail that may be the start of a boundary the next chunk ends
        self._digest = hashlib.sha256(f"{request.method} {request.url.path}\n".encode())

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._add(message.get("body", b""))
        return message

    def _add(self, chunk: bytes) -> None:
        if not self._boundary:
            self._digest.update(chunk)
            return
        text = self._held + chunk
        keep = _partial_suffix(text, self._boundary)
        ready, self._held = text[: len(text) - keep], text[len(text) - keep :]
        self._digest.update(ready.replace(self._boundary, b"--"))

    def hexdigest(self) -> str:
        self._digest.update(self._held.replace(self._boundary, b"--") if self._boundary else b"")
        self._held = b""
        return self._digest.hexdigest()


def _partial_suffix(text: bytes, pattern: bytes) -> int:
    """The length of the longest end of `text` that begins `pattern` without completing it."""
    for size in range(min(len(pattern) - 1, len(text)), 0, -1):
        if pattern.startswith(text[-size:]):
            return size
    return 0


def _opened(stored: bytes, sealer: Sealer | None) -> bytes:
    if sealer is None:
        return stored
    try:
        return sealer.open(stored.decode()).encode()
    except SealBroken as exc:
        raise Conflict(
            f"the response kept for this {KEY_HEADER} no longer opens: the sealing keys "
            "(PIXHOOK_ENCRYPTION_KEYS) changed. Its request did succeed; list what it created "
            "rather than creating it again",
            code="IDEMPOTENCY_UNREADABLE",
            field=KEY_HEADER,
        ) from exc


def _check_key(key: str) -> None:
    if not 0 < len(key) <= MAX_KEY_CHARS or not all(" " <= c <= "~" for c in key):
        raise InvalidInput(
            f"{KEY_HEADER} must be 1 to {MAX_KEY_CHARS} printable ASCII characters",
            code="INVALID_IDEMPOTENCY_KEY",
            field=KEY_HEADER,
        )


def _fingerprint(request: Request, body: bytes) -> str:
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if media_type == b"multipart/form-data" and boundary:
        # Clients pick a new random boundary for every request, retries included.
        body = body.replace(b"--" + boundary, b"--")
    digest = hashlib.sha256(f"{request.method} {request.url.path}\n".encode())
    digest.update(body)
    return digest.hexdigest()


def _replay_response(status_code: int, body: bytes) -> Response:
    return Response(
        body, status_code, headers={REPLAYED_HEADER: "true"}, media_type="application/json"
    )


def _still_in_progress() -> Conflict:
    return Conflict(
        f"a request with this {KEY_HEADER} is still in progress; retry shortly",
        code="IDEMPOTENCY_IN_PROGRESS",
        field=KEY_HEADER,
    )
