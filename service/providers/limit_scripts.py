"""The Lua scripts of the provider limits (service/providers/limits.py), each one atomic in
Redis: admission, settling tokens, a 429's cut and pause, call slots, and what the provider's
rate-limit headers said of a key's window."""

# Milliseconds with their fraction: two calls in one millisecond are still ordered, so a 429 to
# a call admitted after the last cut cuts again.
_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
"""

# The factor now (and when it was last cut): what the cut left, plus the linear recovery since.
_FACTOR = """
local function current_factor(key, per_ms)
  local state = redis.call('HMGET', key, 'factor', 'at')
  if not state[1] then return 1, 0 end
  return math.min(1, tonumber(state[1]) + (now - tonumber(state[2])) * per_ms), tonumber(state[2])
end
"""

# KEYS: rate TAT, token TAT, factor, paused-until, window. ARGV: interval_ms, burst, ms per
# token (0: no token limit), token cost, token capacity, recovery per ms. Returns {wait_ms,
# now_ms}; wait 0 is go, and the admission is counted in the key's window hash (seq, spent).
# wait_ms and now_ms go as strings: Redis would truncate a Lua number to an integer.
ADMIT = (
    _NOW
    + _FACTOR
    + """
local paused = tonumber(redis.call('GET', KEYS[4]) or '0')
if paused > now then return {math.ceil(paused - now), tostring(now)} end
local factor = current_factor(KEYS[3], tonumber(ARGV[6]))
local interval = tonumber(ARGV[1]) / factor
local tolerance = interval * (tonumber(ARGV[2]) - 1)
-- A waiter that wakes a little after its turn (a quarter of an interval at most) keeps the
-- schedule: restarting it from `now` lost each one's lateness, ~5% of the rate at 45/s. Later
-- than that, the limiter was idle and starts from now, with no credit for the idle time. After a
-- pause, start at the steady rate: no burst into a provider that just refused us.
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now - interval / 4 then tat = now end
tat = math.max(tat, paused + tolerance)
local wait = tat - tolerance - now
local per_token, cost, capacity = tonumber(ARGV[3]) / factor, tonumber(ARGV[4]), tonumber(ARGV[5])
local token_tat = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), now)
if per_token > 0 then
  wait = math.max(wait, token_tat + (math.min(cost, capacity) - capacity) * per_token - now)
end
-- What the provider's own headers said is left in its window, less what was let through since
-- the reply that said it: when it is spent, wait for the window's reset. Past the reset and
-- before a reply speaks of the new window, its whole allowance (the limit header) is what may go,
-- counted from the first admission after the reset, in windows as long as the longest reset a
-- reply has given: the calls that waited for the reset do not all go at once, and calls that
-- never get a reply (timeouts) hold nothing back for longer than a window.
local w = redis.call('HMGET', KEYS[5], 'seq', 'requests', 'requests_at', 'requests_reset',
  'spent', 'tokens', 'tokens_at', 'tokens_reset', 'requests_limit', 'rolled_at', 'rolled_time',
  'requests_span')
local seq, spent = tonumber(w[1] or '0'), tonumber(w[5] or '0')
local roll = false
if w[2] then
  local reset, left = tonumber(w[4]), nil
  if now < reset then
    left = tonumber(w[2]) - (seq - tonumber(w[3]))
  elseif w[9] then
    local rolled_time = tonumber(w[11] or '0')
    if rolled_time >= reset and now < rolled_time + tonumber(w[12] or '1000') then
      left = tonumber(w[9]) - (seq - tonumber(w[10]))
    else
      roll, left = true, tonumber(w[9])
    end
  end
  if left and left <= 0 then
    wait = math.max(wait, now < reset and reset - now or 50)
  end
end
if w[6] and now < tonumber(w[8]) and tonumber(w[6]) - (spent - tonumber(w[7])) < cost then
  wait = math.max(wait, tonumber(w[8]) - now)
end
if wait > 0 then return {tostring(wait), tostring(now)} end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil(tat + interval - now) + 1000)
if per_token > 0 then
  local next_tat = token_tat + cost * per_token
  redis.call('SET', KEYS[2], next_tat, 'PX', math.ceil(next_tat - now) + 1000)
end
if roll then redis.call('HSET', KEYS[5], 'rolled_at', seq, 'rolled_time', now) end
redis.call('HINCRBY', KEYS[5], 'seq', 1)
redis.call('HINCRBY', KEYS[5], 'spent', cost)
redis.call('PEXPIRE', KEYS[5], 3600000)
return {0, tostring(now)}
"""
)

# KEYS: window. ARGV: requests remaining and reset ms (-1: not said), tokens remaining and reset
# ms (-1), the window's requests limit (-1). What is left counts from the admissions made so far:
# the reply was written after them (in flight ones aside, for the few ms they travel).
HINTS = (
    _NOW
    + """
local seq, spent = unpack(redis.call('HMGET', KEYS[1], 'seq', 'spent'))
if ARGV[1] ~= '-1' then
  redis.call('HSET', KEYS[1], 'requests', ARGV[1], 'requests_at', seq or 0,
    'requests_reset', now + tonumber(ARGV[2]))
  if ARGV[5] ~= '-1' then redis.call('HSET', KEYS[1], 'requests_limit', ARGV[5]) end
  local span = tonumber(redis.call('HGET', KEYS[1], 'requests_span') or '0')
  if tonumber(ARGV[2]) > span then redis.call('HSET', KEYS[1], 'requests_span', ARGV[2]) end
end
if ARGV[3] ~= '-1' then
  redis.call('HSET', KEYS[1], 'tokens', ARGV[3], 'tokens_at', spent or 0,
    'tokens_reset', now + tonumber(ARGV[4]))
end
redis.call('PEXPIRE', KEYS[1], 3600000)
return 1
"""
)

# KEYS: token TAT, factor. ARGV: ms per token, token difference (actual - estimate), recovery per
# ms. A debit pushes the TAT on; a credit pulls it back, but never banks capacity before now.
SETTLE = (
    _NOW
    + _FACTOR
    + """
local factor = current_factor(KEYS[2], tonumber(ARGV[3]))
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
tat = tat + tonumber(ARGV[2]) * tonumber(ARGV[1]) / factor
if tat <= now then redis.call('DEL', KEYS[1]) return 0 end
redis.call('SET', KEYS[1], tat, 'PX', math.ceil(tat - now) + 1000)
return 1
"""
)

# KEYS: factor, paused-until. ARGV: admitted_at_ms, decrease, floor, recovery per ms, pause_ms.
THROTTLED = (
    _NOW
    + _FACTOR
    + """
local per_ms = tonumber(ARGV[4])
local factor, cut_at = current_factor(KEYS[1], per_ms)
if tonumber(ARGV[1]) > cut_at then
  factor = math.max(tonumber(ARGV[3]), factor * tonumber(ARGV[2]))
  redis.call('HSET', KEYS[1], 'factor', factor, 'at', now)
  redis.call('PEXPIRE', KEYS[1], math.ceil((1 - factor) / per_ms) + 1000)
end
local pause = tonumber(ARGV[5])
if pause > 0 and now + pause > tonumber(redis.call('GET', KEYS[2]) or '0') then
  -- kept past its end, so that admissions can restart without a burst
  redis.call('SET', KEYS[2], now + pause, 'PX', pause + 60000)
end
return 1
"""
)

# KEYS: slots. ARGV: lease_ms, limit, holder. Holders whose lease ran out (a dead worker) are
# dropped; a holder asking again renews its lease.
ACQUIRE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZSCORE', KEYS[1], ARGV[3])
if not held and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
)
