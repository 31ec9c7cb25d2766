"""Per-host circuit breakers, shared by all delivery workers through Redis.

After `threshold` host failures since its last good answer a host's circuit opens: its
deliveries wait, without spending attempts, until the cooldown ends; then one probe goes out. A
probe that succeeds closes the circuit, one that fails reopens it with twice the cooldown (up to a
maximum). Attempts that were already under way when it opened may still fail: they are counted,
and change nothing.

Host failures are those of the exchange itself (no connection, a reset, TLS, a timeout), and
5xx and 429 answers once `failing_urls` different URLs of the host have given them: until then
they are one URL's trouble, perhaps one tenant's, which that URL's own retries deal with.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis

from webhooks.keys import DEFAULT_PREFIX, Keys
from webhooks.sender import Blame

_CHECK = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'open' then return {'closed', 0} end
local now = tonumber(ARGV[1])
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until'))
if now < open_until then return {'open', open_until} end
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if now < probe_until then return {'open', probe_until} end
redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[2]))
return {'probe', 0}
"""

# ARGV: host, blame ('', 'host' or 'url'), now_ms, threshold, base_cooldown_ms, max_cooldown_ms,
#       started_ms, url_digest, failing_urls
_REPORT = """
local function close()
  if redis.call('DEL', KEYS[1]) == 1 then redis.call('ZREM', KEYS[2], ARGV[1]) end
  return 0
end
local function field(name) return tonumber(redis.call('HGET', KEYS[1], name) or '0') end
if ARGV[2] == '' then return close() end
redis.call('EXPIRE', KEYS[1], 86400)
local failing_urls = tonumber(ARGV[9])
if ARGV[2] == 'host' then
  redis.call('HINCRBY', KEYS[1], 'failures', 1)
else
  redis.call('HINCRBY', KEYS[1], 'url_failures', 1)
  -- Counting distinct URLs stops where they start to count: a few fields, however many tenants.
  if field('urls') < failing_urls and redis.call('HSETNX', KEYS[1], 'url:' .. ARGV[8], 1) == 1 then
    redis.call('HINCRBY', KEYS[1], 'urls', 1)
  end
end
local spread = field('urls') >= failing_urls
if redis.call('HGET', KEYS[1], 'state') == 'open' then
  -- Only an attempt started once the cooldown was over is a probe: the others were in flight.
  if tonumber(ARGV[7]) < field('open_until') then return 0 end
  -- A probe that only its own URL failed found a host that answers.
  if ARGV[2] == 'url' and not spread then return close() end
elseif field('failures') + (spread and field('url_failures') or 0) < tonumber(ARGV[4]) then
  return 0
end
local opens = redis.call('HINCRBY', KEYS[1], 'opens', 1)
local cooldown = math.min(tonumber(ARGV[6]), tonumber(ARGV[5]) * 2 ^ (opens - 1))
local open_until = tonumber(ARGV[3]) + cooldown
redis.call('HSET', KEYS[1], 'state', 'open', 'open_until', open_until, 'probe_until', 0)
redis.call('ZADD', KEYS[2], open_until, ARGV[1])
return 0
"""


@dataclass(frozen=True)
class CircuitPolicy:
    threshold: int = 5
    cooldown_s: float = 30.0
    max_cooldown_s: float = 600.0
    probe_lease_s: float = 30.0
    # 5xx and 429 count against the host once this many of its URLs answered so.
    failing_urls: int = 2


@dataclass(frozen=True)
class CircuitState:
    kind: Literal["closed", "open", "probe"]
    retry_at: float = 0.0


class Circuits:
    def __init__(self, redis: Redis, policy: CircuitPolicy, prefix: str = DEFAULT_PREFIX) -> None:
        self._redis = redis
        self._policy = policy
        self._keys = Keys(prefix)
        self.open_key = self._keys.circuits_open
        self._check = redis.register_script(_CHECK)
        self._report = redis.register_script(_REPORT)

    def _key(self, host: str) -> str:
        return self._keys.circuit(host)

    async def check(self, hosts: Iterable[str]) -> dict[str, CircuitState]:
        """Each host's state; a host whose cooldown ended hands out a single probe."""
        hosts = list(hosts)
        now_ms = int(time.time() * 1000)
        probe_ms = int(self._policy.probe_lease_s * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            for host in hosts:
                await self._check(keys=[self._key(host)], args=[now_ms, probe_ms], client=pipe)
            rows = await pipe.execute()
        return {
            host: CircuitState(kind.decode(), int(retry_ms) / 1000)
            for host, (kind, retry_ms) in zip(hosts, rows, strict=True)
        }

    async def report(
        self,
        host: str,
        blame: Blame | None,
        url: str,
        started_at: float,
        client: Redis | None = None,
    ) -> None:
        """Record what an attempt at `url`, started at `started_at` (Unix seconds), says of its
        host; queued on `client` when it is a pipeline."""
        policy = self._policy
        args: list[str | int] = [
            host,
            blame or "",
            int(time.time() * 1000),
            policy.threshold,
            int(policy.cooldown_s * 1000),
            int(policy.max_cooldown_s * 1000),
            int(started_at * 1000),
            # A digest: some webhook URLs are secrets themselves (Slack's, say).
            hashlib.sha256(url.encode()).hexdigest()[:16],
            policy.failing_urls,
        ]
        await self._report(keys=[self._key(host), self.open_key], args=args, client=client)

    async def open_count(self) -> int:
        return int(await self._redis.zcard(self.open_key))
