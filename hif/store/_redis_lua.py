"""Lua scripts for :mod:`hif.store.redis`: each read-check-write runs atomically inside Redis.

redis-py sends them by SHA and reloads them when a restarted Redis has forgotten its script
cache. Every key a script touches is passed in KEYS (and shares the ``{prefix}`` hash tag).
Pending-entry rows from XPENDING are ``{id, consumer, idle_ms, delivery_count}``.
"""

from __future__ import annotations

from hif.store.base import TraceState

# KEYS: stream, per-trace marker. ARGV: job JSON, created_at, marker TTL ms.
# Returns the new entry id, or nil when the same trace is already queued (a retried enqueue).
ENQUEUE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
local id = redis.call('XADD', KEYS[1], '*', 'job', ARGV[1], 'created_at', ARGV[2])
redis.call('SET', KEYS[2], id, 'PX', ARGV[3])
return id
"""

# How a lease deadline is kept: Redis measures each pending entry's idle time, and XCLAIM ... IDLE
# can set it. A lease of V ms is given idle = HORIZON - V, so it reaches HORIZON exactly V ms later;
# XAUTOCLAIM with min-idle HORIZON then takes over exactly the leases whose deadline has passed,
# whatever visibility timeout each holder asked for.

# KEYS: stream. ARGV: group, consumer, count, idle ms (HORIZON - V).
# Delivers new entries; returns {last entry id (to block on), {{id, fields, 1}, ...}}.
TAKE_NEW = """
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
local out = {}
if r then
  for _, entry in ipairs(r[1][2]) do
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, entry[1], 'IDLE', ARGV[4], 'JUSTID')
    table.insert(out, {entry[1], entry[2], 1})
  end
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local last_id = '0-0'
if #last > 0 then last_id = last[1][1] end
return {last_id, out}
"""

# KEYS: stream. ARGV: group, consumer, HORIZON ms, count, idle ms (HORIZON - V).
# Takes over entries whose lease deadline passed; XAUTOCLAIM raises their delivery counter.
# Returns {{id, fields, delivery_count}, ...}. The cursor loop is bounded: the pending list
# holds at most workers x max_jobs entries.
RECLAIM = """
local out = {}
local cursor = '0-0'
for _ = 1, 16 do
  local want = tonumber(ARGV[4]) - #out
  if want <= 0 then break end
  local res = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor, 'COUNT', want)
  for _, entry in ipairs(res[2]) do
    if entry[2] then
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, entry[1], 'IDLE', ARGV[5], 'JUSTID')
      local p = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1)
      local n = 1
      if #p > 0 then n = p[1][4] end
      table.insert(out, {entry[1], entry[2], n})
    end
  end
  cursor = res[1]
  if cursor == '0-0' then break end
end
return out
"""

# Shared check: is entry ARGV[2] still delivered to consumer ARGV[3] as delivery number ARGV[4]?
_HELD = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] or tonumber(p[1][4]) ~= tonumber(ARGV[4]) then return 0 end
"""

# KEYS: stream, per-trace marker. ARGV: group, entry id, consumer, attempt.
ACK_IF_HELD = (
    _HELD
    + """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return 1
"""
)

# KEYS: stream. ARGV: group, entry id, consumer, attempt, idle ms (HORIZON - V).
# JUSTID moves the deadline without raising the delivery counter, so the lease keeps its identity.
EXTEND_IF_HELD = (
    _HELD
    + """
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'IDLE', ARGV[5], 'JUSTID')
return 1
"""
)

# A consumer's leases are released by moving their idle time to HORIZON: the next lease's
# XAUTOCLAIM takes them over and raises their delivery counter, as after a lease deadline.
# KEYS: stream, consumers hash. ARGV: group, consumer, HORIZON ms. Returns how many were released.
_RELEASE_FN = """
local function release(consumer)
  local rows = redis.pcall('XPENDING', KEYS[1], ARGV[1], '-', '+', 1000, consumer)
  local n = 0
  if type(rows) == 'table' and not rows.err then
    for _, row in ipairs(rows) do
      redis.call('XCLAIM', KEYS[1], ARGV[1], consumer, 0, row[1], 'IDLE', ARGV[3], 'JUSTID')
      n = n + 1
    end
  end
  redis.call('HDEL', KEYS[2], consumer)
  return n
end
"""
RELEASE = _RELEASE_FN + "return release(ARGV[2])\n"

# KEYS: stream, consumers hash. ARGV: group, last-heard cutoff ms, HORIZON ms.
# Releases every consumer whose last heartbeat is older than the cutoff; returns {name, n, ...}.
RELEASE_SILENT = (
    _RELEASE_FN
    + """
local out = {}
local beats = redis.call('HGETALL', KEYS[2])
for i = 1, #beats, 2 do
  if tonumber(beats[i + 1]) < tonumber(ARGV[2]) then
    table.insert(out, beats[i])
    table.insert(out, release(beats[i]))
  end
end
return out
"""
)

# KEYS: stream. ARGV: group, HORIZON ms.
# The work waiting for a worker: entries never delivered plus leases whose deadline passed (a live
# lease is work in hand, not waiting). Returns {count, created_at of the oldest waiting or false}.
WAITING = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, false} end
local len = redis.call('XLEN', KEYS[1])
local group = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  if info['name'] == ARGV[1] then group = info end
end
local firsts = {}
local count = len
if group == nil then
  firsts = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
else
  local expired = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[2], '-', '+', 1000)
  count = math.max(0, len - tonumber(group['pending'])) + #expired
  firsts = redis.call('XRANGE', KEYS[1], '(' .. group['last-delivered-id'], '+', 'COUNT', 1)
  if #expired > 0 then
    local e = redis.call('XRANGE', KEYS[1], expired[1][1], expired[1][1])
    if #e > 0 then table.insert(firsts, e[1]) end
  end
end
local oldest = nil
for _, entry in ipairs(firsts) do
  local f = entry[2]
  for i = 1, #f, 2 do
    if f[i] == 'created_at' then
      local t = tonumber(f[i + 1])
      if oldest == nil or t < oldest then oldest = t end
    end
  end
end
if oldest == nil then return {count, false} end
return {count, tostring(oldest)}
"""

# Per-state counts are derived from live data: each state has a sorted set of the trace ids in it,
# scored by the time their hash expires (PEXPIREAT / PEXPIRETIME). COUNT_TRACES drops the members
# whose hash Redis has already expired, so a count never includes a trace that a status read
# would answer 404 for (plain counters would keep counting it forever). STATE_INDEX maps a state
# to its key's position in KEYS: every script gets the state sets after its other keys.
STATES = tuple(str(state) for state in TraceState)


def _state_index(first: int) -> str:
    pairs = ", ".join(f"{name}={first + i}" for i, name in enumerate(STATES))
    return f"local S = {{{pairs}}}\n"


# KEYS: trace hash, deadlines zset, the state sets (STATES order).
# ARGV: trace id, state, keep-until ms, pending ('1'/'0'), then field/value pairs.
CREATE_TRACE = (
    _state_index(3)
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], unpack(ARGV, 5))
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[2], redis.call('HGET', KEYS[1], 'expires_at'), ARGV[1])
end
redis.call('ZADD', KEYS[S[ARGV[2]]], ARGV[3], ARGV[1])
return 1
"""
)

# KEYS: trace hash, deadlines zset, the state sets (STATES order).
# ARGV: trace id, allowed states (comma-separated), new state ('' keeps it), terminal ('1'/'0'),
# keep-until ms when terminal, then field/value pairs. Returns the record, or nil.
CAS_TRACE = (
    _state_index(3)
    + """
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return false end
local ok = false
for s in string.gmatch(ARGV[2], '[^,]+') do
  if s == cur then ok = true break end
end
if not ok then return false end
if #ARGV > 5 then redis.call('HSET', KEYS[1], unpack(ARGV, 6)) end
local new = cur
if ARGV[3] ~= '' then
  new = ARGV[3]
  redis.call('HSET', KEYS[1], 'state', new)
end
if ARGV[4] == '1' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('PEXPIREAT', KEYS[1], ARGV[5])
else
  redis.call('ZADD', KEYS[2], redis.call('HGET', KEYS[1], 'expires_at'), ARGV[1])
end
if new ~= cur or ARGV[4] == '1' then
  redis.call('ZREM', KEYS[S[cur]], ARGV[1])
  redis.call('ZADD', KEYS[S[new]], redis.call('PEXPIRETIME', KEYS[1]), ARGV[1])
end
return redis.call('HGETALL', KEYS[1])
"""
)

# KEYS: trace hash, deadlines zset, the state sets (STATES order).
# ARGV: trace id, now (JSON), keep-until ms, default reason (JSON).
# Returns 1 when the trace moved to expired; drops stale deadline entries either way.
EXPIRE_TRACE = (
    _state_index(3)
    + """
local cur = redis.call('HGET', KEYS[1], 'state')
if cur ~= 'queued' and cur ~= 'running' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
local expires = redis.call('HGET', KEYS[1], 'expires_at')
if tonumber(expires) > tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[2], expires, ARGV[1])
  return 0
end
local reason = redis.call('HGET', KEYS[1], 'reason')
if not reason or reason == 'null' then redis.call('HSET', KEYS[1], 'reason', ARGV[4]) end
redis.call('HSET', KEYS[1], 'state', 'expired', 'updated_at', ARGV[2])
redis.call('ZREM', KEYS[S[cur]], ARGV[1])
redis.call('ZADD', KEYS[S['expired']], ARGV[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
"""
)

# KEYS: the state sets (STATES order). Returns the live count of each, in that order. Redis's
# own clock decides, as it does for the hashes' expiry: a member scored at or before now is gone.
COUNT_TRACES = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  out[i] = redis.call('ZCARD', key)
end
return out
"""

# KEYS: bucket hash. ARGV: refill per second, burst (capacity), cost, idle TTL ms.
# The shared token bucket for per-key limits: every gateway replica takes from the same bucket,
# so a limit holds for the sum of the replicas. Redis's clock refills it (replica clocks may
# disagree). Returns {1, 0} when taken, else {0, ms until enough tokens}.
TAKE_TOKENS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(b[1]), tonumber(b[2])
if not tokens then tokens, at = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local ok, wait_ms = 0, 0
if tokens >= cost then
  tokens = tokens - cost
  ok = 1
else
  wait_ms = math.ceil((cost - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {ok, wait_ms}
"""
