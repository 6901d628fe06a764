"""``RedisStore``: threads, messages, runs and objects in Redis, shared by many processes.

Open it with ``RedisStore.from_url("redis://127.0.0.1:6379/0?prefix=threadkit&ttl=86400")``
(needs ``pip install "threadkit[redis]"``). Every write that must be atomic runs as one Lua
script, so concurrent writers in any number of processes never interleave a turn, lose a message,
reuse a ``seq`` or start two runs on one thread.

Key layout (``P`` = the prefix; ``{T}`` = the thread id in braces, a Redis Cluster hash tag)::

    P:threads            ZSET  thread id -> creation order (global counter P:n:threads)
    P:t:{T}              HASH  id, created_at, updated_at, metadata (JSON), seq (last seq given),
                               count (messages), runs / steps (order counters)
    P:t:{T}:m            ZSET  message id -> seq
    P:t:{T}:md           HASH  message id -> msgpack Message (its seq comes from P:t:{T}:m)
    P:t:{T}:tc           HASH  tool call id -> "" while open, else the id of the answering message
    P:t:{T}:ik           HASH  idempotency key -> JSON list of the message ids it stored
    P:t:{T}:r            ZSET  run id -> creation order
    P:t:{T}:rd           HASH  run id -> msgpack Run
    P:t:{T}:rs           HASH  run id -> status (for compare-and-set)
    P:t:{T}:ra           HASH  id of each run with an active status -> expires_at ("" = never)
    P:t:{T}:s            ZSET  (all scores 0) "<run id>\\0<12-digit step counter>", by lex order
    P:t:{T}:sd           HASH  that member -> msgpack RunStep
    P:t:{T}:si           HASH  "<run id>\\0<step id>" -> that member
    P:o:{K}              ZSET  object id -> creation order (global counter P:n:objects), kind K
    P:o:{K}:d            HASH  object id -> b"<created_at>:" + data

Costs: ``tail(n)`` is ``ZRANGE -n -1`` plus ``HMGET`` (O(log N + n)); cursor listings of messages,
runs, steps and objects resolve the cursor with one ``ZSCORE``/``HGET`` and read one window
(O(log N + limit)), both orders. ``list_threads`` walks the registry in chunks; without filters it
reads about ``limit`` entries, with ``metadata``/``updated_before`` filters it reads entries (in
chunks of 100, one round trip each) until ``limit + 1`` match, so a sparse filter over many threads
costs O(threads scanned) -- filtering is done client-side, Redis has no index on metadata.

Expiry: with ``ttl`` (seconds) every write to a thread sets the TTL of *every* key of that thread,
so a thread expires whole, ``ttl`` seconds after its last write. The registry entry of an expired
thread is dropped lazily by the next ``list_threads`` that meets it. Stored objects never expire.

Scope: one Redis server (or a primary with replicas). Scripts touch the global registry keys next
to a thread's keys, so Redis Cluster is not supported.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import (
    SplitResult,
    parse_qsl,
    quote,
    unquote,
    urlencode,
    urlsplit,
    urlunsplit,
)

import msgspec

from threadkit._extras import require
from threadkit._ids import new_id, now
from threadkit.errors import (
    ActiveRunError,
    ConfigError,
    InvalidRunStateError,
    MessageNotFoundError,
    ObjectNotFoundError,
    RunNotFoundError,
    RunStepNotFoundError,
    StoreError,
    ThreadNotFoundError,
    ValidationError,
)
from threadkit.stores.base import (
    BaseStore,
    Order,
    StoredObject,
    check_metadata,
    check_tool_results,
    page_of,
    prepare_messages,
)
from threadkit.types import (
    Message,
    Page,
    Run,
    RunStep,
    ThreadInfo,
    ToolCallContent,
    ToolResultContent,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisStore"]

_ENC = msgspec.msgpack.Encoder()
_MSG = msgspec.msgpack.Decoder(Message)
_RUN = msgspec.msgpack.Decoder(Run)
_STEP = msgspec.msgpack.Decoder(RunStep)
_IDS = msgspec.json.Decoder(list[str])
_META = msgspec.json.Decoder(dict[str, str])
_JSON = msgspec.json.Encoder()

_THREAD_FIELDS = ["created_at", "updated_at", "metadata", "count"]
_SCAN_CHUNK = 100

# ------------------------------------------------------------------------------- Lua scripts
# Every thread script gets the thread's 12 keys as KEYS[1..12], in this order:
_SUFFIXES = ("", ":m", ":md", ":tc", ":ik", ":r", ":rd", ":rs", ":ra", ":s", ":sd", ":si")

_PRELUDE = """
local function touch(ttl)
  ttl = tonumber(ttl)
  if ttl and ttl > 0 then
    for i = 1, 12 do redis.call('EXPIRE', KEYS[i], ttl) end
  end
end
"""

# KEYS 1..12 thread, 13 registry, 14 thread counter. ARGV ttl, id, now, metadata JSON.
_CREATE_THREAD = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 2, 12 do redis.call('DEL', KEYS[i]) end
local ord = redis.call('INCR', KEYS[14])
redis.call('HSET', KEYS[1], 'id', ARGV[2], 'created_at', ARGV[3], 'updated_at', ARGV[3],
  'metadata', ARGV[4], 'seq', 0, 'count', 0, 'runs', 0, 'steps', 0)
redis.call('ZADD', KEYS[13], ord, ARGV[2])
touch(ARGV[1])
return 1
"""
)

# KEYS 1..12. ARGV ttl, now, metadata JSON.
_UPDATE_THREAD = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'metadata', ARGV[3], 'updated_at', ARGV[2])
touch(ARGV[1])
return 1
"""
)

# KEYS 1..12 thread, 13 registry. ARGV thread id.
_DELETE_THREAD = """
local existed = redis.call('EXISTS', KEYS[1])
for i = 1, 12 do redis.call('DEL', KEYS[i]) end
redis.call('ZREM', KEYS[13], ARGV[1])
return existed
"""

# KEYS 1 registry, 2 thread hash. ARGV thread id. Drops a registry entry whose thread expired.
_PRUNE_ENTRY = """
if redis.call('EXISTS', KEYS[2]) == 0 then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
"""

# KEYS 1..12. ARGV ttl, now, idempotency key ('' = none), JSON of the batch's ids, n,
# then n pairs (message id, blob), then triplets (kind 'c'|'r', tool call id, message id).
# Returns {'ok', previous seq} | {'idem', seq, blob, ...} | {'nothread'} | {'dupid', id}
# | {'tool', call id, '0'|'1' (answered), ...} (the stored state of the batch's tool call ids).
_APPEND = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'nothread'} end
local key = ARGV[3]
if key ~= '' then
  local prior = redis.call('HGET', KEYS[5], key)
  if prior then
    local out = {'idem'}
    for _, id in ipairs(cjson.decode(prior)) do
      local seq = redis.call('ZSCORE', KEYS[2], id)
      local blob = redis.call('HGET', KEYS[3], id)
      if seq and blob then
        out[#out + 1] = seq
        out[#out + 1] = blob
      end
    end
    return out
  end
end
local n = tonumber(ARGV[5])
for i = 0, n - 1 do
  if redis.call('HEXISTS', KEYS[3], ARGV[6 + 2 * i]) == 1 then
    return {'dupid', ARGV[6 + 2 * i]}
  end
end
local ev = 6 + 2 * n
local state, made, open = {}, {}, {}
for j = ev, #ARGV, 3 do
  local cid = ARGV[j + 1]
  if state[cid] == nil then
    local v = redis.call('HGET', KEYS[4], cid)
    if v then
      state[cid] = v
      made[cid] = true
      if v == '' then open[cid] = true end
    else
      state[cid] = false
    end
  end
end
local valid = true
for j = ev, #ARGV, 3 do
  local cid = ARGV[j + 1]
  if ARGV[j] == 'c' then
    if made[cid] then valid = false break end
    made[cid] = true
    open[cid] = true
  else
    if not open[cid] then valid = false break end
    open[cid] = nil
  end
end
if not valid then
  local out = {'tool'}
  for cid, v in pairs(state) do
    if v then
      out[#out + 1] = cid
      out[#out + 1] = (v == '') and '0' or '1'
    end
  end
  return out
end
local base = tonumber(redis.call('HGET', KEYS[1], 'seq'))
for i = 0, n - 1 do
  redis.call('ZADD', KEYS[2], base + i + 1, ARGV[6 + 2 * i])
  redis.call('HSET', KEYS[3], ARGV[6 + 2 * i], ARGV[7 + 2 * i])
end
for j = ev, #ARGV, 3 do
  if ARGV[j] == 'c' then
    redis.call('HSET', KEYS[4], ARGV[j + 1], '')
  else
    redis.call('HSET', KEYS[4], ARGV[j + 1], ARGV[j + 2])
  end
end
redis.call('HSET', KEYS[1], 'seq', base + n, 'updated_at', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'count', n)
if key ~= '' then redis.call('HSET', KEYS[5], key, ARGV[4]) end
touch(ARGV[1])
return {'ok', base}
"""
)

# KEYS 1 thread hash, 2 message zset, 3 message hash. ARGV message id.
# Returns {'nothread'} | {'missing'} | {'ok', seq, blob}.
_GET_MESSAGE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'nothread'} end
local seq = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not seq then return {'missing'} end
return {'ok', seq, redis.call('HGET', KEYS[3], ARGV[1])}
"""

# KEYS 1..12. ARGV ttl, now, message id, blob. Returns {'nothread'} | {'missing'} | {'ok'}.
_UPDATE_MESSAGE = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'nothread'} end
if redis.call('HEXISTS', KEYS[3], ARGV[3]) == 0 then return {'missing'} end
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])
touch(ARGV[1])
return {'ok'}
"""
)

# KEYS 1..12. ARGV ttl, now, message id, then pairs (kind 'c'|'r', tool call id) of the message.
# Returns {'nothread'} | {'missing'} | {'answered', call id, answering message id} | {'ok'}.
_DELETE_MESSAGE = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'nothread'} end
local mid = ARGV[3]
if redis.call('HEXISTS', KEYS[3], mid) == 0 then return {'missing'} end
for j = 4, #ARGV, 2 do
  if ARGV[j] == 'c' then
    local by = redis.call('HGET', KEYS[4], ARGV[j + 1])
    if by and by ~= '' and by ~= mid and redis.call('HEXISTS', KEYS[3], by) == 1 then
      return {'answered', ARGV[j + 1], by}
    end
  end
end
for j = 4, #ARGV, 2 do
  local cid = ARGV[j + 1]
  if ARGV[j] == 'c' then
    redis.call('HDEL', KEYS[4], cid)
  elseif redis.call('HGET', KEYS[4], cid) == mid then
    redis.call('HSET', KEYS[4], cid, '')
  end
end
redis.call('ZREM', KEYS[2], mid)
redis.call('HDEL', KEYS[3], mid)
redis.call('HINCRBY', KEYS[1], 'count', -1)
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])
touch(ARGV[1])
return {'ok'}
"""
)

# One window of a score-ordered ZSET with its data HASH.
# KEYS 1 existence key, 2 zset, 3 data hash. ARGV check existence ('1'|'0'), order, fetch count
# (-1 = all), after id, before id. When only `before` is given the window is the items nearest
# to it, read backwards. Returns {'nothread'} | {'nocursor', id} | {'ok', reversed, id, score,
# blob, ...} in read order.
_WINDOW = """
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then return {'nothread'} end
local a, b = ARGV[4], ARGV[5]
local as, bs
if a ~= '' then
  as = redis.call('ZSCORE', KEYS[2], a)
  if not as then return {'nocursor', a} end
end
if b ~= '' then
  bs = redis.call('ZSCORE', KEYS[2], b)
  if not bs then return {'nocursor', b} end
end
local back = (a == '' and b ~= '')
local low, high, forward
if ARGV[2] == 'asc' then
  low = as and ('(' .. as) or '-inf'
  high = bs and ('(' .. bs) or '+inf'
  forward = not back
else
  low = bs and ('(' .. bs) or '-inf'
  high = as and ('(' .. as) or '+inf'
  forward = back
end
local rows
if forward then
  rows = redis.call('ZRANGEBYSCORE', KEYS[2], low, high, 'WITHSCORES', 'LIMIT', 0, ARGV[3])
else
  rows = redis.call('ZREVRANGEBYSCORE', KEYS[2], high, low, 'WITHSCORES', 'LIMIT', 0, ARGV[3])
end
local out = {'ok', back and 1 or 0}
for i = 1, #rows, 2 do
  out[#out + 1] = rows[i]
  out[#out + 1] = rows[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[3], rows[i])
end
return out
"""

# KEYS 1 thread hash, 2 message zset, 3 message hash. ARGV n.
# Returns {'nothread'} | {'ok', id, seq, blob, ...} oldest first.
_TAIL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'nothread'} end
local out = {'ok'}
local n = tonumber(ARGV[1])
if n <= 0 then return out end
local rows = redis.call('ZRANGE', KEYS[2], -n, -1, 'WITHSCORES')
for i = 1, #rows, 2 do
  out[#out + 1] = rows[i]
  out[#out + 1] = rows[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[3], rows[i])
end
return out
"""

# KEYS 1..12. ARGV ttl, run id, created_at, expires_at ('' = never), status, active '1'|'0', blob.
# Returns {'nothread'} | {'dup'} | {'active', run id} | {'ok'}.
_CREATE_RUN = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'nothread'} end
if redis.call('HEXISTS', KEYS[7], ARGV[2]) == 1 then return {'dup'} end
local created = tonumber(ARGV[3])
local act = redis.call('HGETALL', KEYS[9])
local best, best_ord = nil, -1
for i = 1, #act, 2 do
  local exp = act[i + 1]
  if exp == '' or tonumber(exp) > created then
    local ord = tonumber(redis.call('ZSCORE', KEYS[6], act[i]) or '0')
    if ord > best_ord then
      best, best_ord = act[i], ord
    end
  end
end
if best then return {'active', best} end
local ord = redis.call('HINCRBY', KEYS[1], 'runs', 1)
redis.call('ZADD', KEYS[6], ord, ARGV[2])
redis.call('HSET', KEYS[7], ARGV[2], ARGV[7])
redis.call('HSET', KEYS[8], ARGV[2], ARGV[5])
if ARGV[6] == '1' then redis.call('HSET', KEYS[9], ARGV[2], ARGV[4]) end
touch(ARGV[1])
return {'ok'}
"""
)

# KEYS 1..12. ARGV ttl, run id, expected status ('' = any), status, expires_at, active, blob.
# Returns {'norun'} | {'state', stored status} | {'ok'}.
_UPDATE_RUN = (
    _PRELUDE
    + """
local cur = redis.call('HGET', KEYS[8], ARGV[2])
if not cur then return {'norun'} end
if ARGV[3] ~= '' and cur ~= ARGV[3] then return {'state', cur} end
redis.call('HSET', KEYS[7], ARGV[2], ARGV[7])
redis.call('HSET', KEYS[8], ARGV[2], ARGV[4])
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[9], ARGV[2], ARGV[5])
else
  redis.call('HDEL', KEYS[9], ARGV[2])
end
touch(ARGV[1])
return {'ok'}
"""
)

# KEYS 1 thread hash, 2 run hash. ARGV run id. Returns {'nothread'} | {'norun'} | {'ok', blob}.
_GET_RUN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'nothread'} end
local blob = redis.call('HGET', KEYS[2], ARGV[1])
if not blob then return {'norun'} end
return {'ok', blob}
"""

# KEYS 1 thread hash, 2 run zset, 3 run hash, 4 active hash.
# Returns {'nothread'} | {'none'} | {'ok', blob} (the active-status run created last).
_GET_ACTIVE_RUN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'nothread'} end
local best, best_ord = nil, -1
for _, id in ipairs(redis.call('HKEYS', KEYS[4])) do
  local ord = tonumber(redis.call('ZSCORE', KEYS[2], id) or '0')
  if ord > best_ord then best, best_ord = id, ord end
end
if not best then return {'none'} end
return {'ok', redis.call('HGET', KEYS[3], best)}
"""

# KEYS 1..12. ARGV ttl, run id, step id, blob. Returns {'nothread'} | {'norun'} | {'ok'}.
_PUT_STEP = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'nothread'} end
if redis.call('HEXISTS', KEYS[7], ARGV[2]) == 0 then return {'norun'} end
local idx = ARGV[2] .. '\\0' .. ARGV[3]
local member = redis.call('HGET', KEYS[12], idx)
if not member then
  local n = redis.call('HINCRBY', KEYS[1], 'steps', 1)
  member = ARGV[2] .. '\\0' .. string.format('%012d', n)
  redis.call('HSET', KEYS[12], idx, member)
  redis.call('ZADD', KEYS[10], 0, member)
end
redis.call('HSET', KEYS[11], member, ARGV[4])
touch(ARGV[1])
return {'ok'}
"""
)

# KEYS 1 run hash, 2 step hash, 3 step index. ARGV run id, step id.
# Returns {'norun'} | {'nostep'} | {'ok', blob}.
_GET_STEP = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return {'norun'} end
local member = redis.call('HGET', KEYS[3], ARGV[1] .. '\\0' .. ARGV[2])
if not member then return {'nostep'} end
return {'ok', redis.call('HGET', KEYS[2], member)}
"""

# KEYS 1 run hash, 2 step zset, 3 step hash, 4 step index. ARGV run id, order, fetch count
# (-1 = all), after step id, before step id. Returns {'norun'} | {'nocursor', id}
# | {'ok', reversed, blob, ...} in read order.
_STEP_WINDOW = """
local rid = ARGV[1]
if redis.call('HEXISTS', KEYS[1], rid) == 0 then return {'norun'} end
local a, b = ARGV[4], ARGV[5]
local am, bm
if a ~= '' then
  am = redis.call('HGET', KEYS[4], rid .. '\\0' .. a)
  if not am then return {'nocursor', a} end
end
if b ~= '' then
  bm = redis.call('HGET', KEYS[4], rid .. '\\0' .. b)
  if not bm then return {'nocursor', b} end
end
local back = (a == '' and b ~= '')
local low, high, forward
if ARGV[2] == 'asc' then
  low = am and ('(' .. am) or ('[' .. rid .. '\\0')
  high = bm and ('(' .. bm) or ('(' .. rid .. '\\1')
  forward = not back
else
  low = bm and ('(' .. bm) or ('[' .. rid .. '\\0')
  high = am and ('(' .. am) or ('(' .. rid .. '\\1')
  forward = back
end
local rows
if forward then
  rows = redis.call('ZRANGEBYLEX', KEYS[2], low, high, 'LIMIT', 0, ARGV[3])
else
  rows = redis.call('ZREVRANGEBYLEX', KEYS[2], high, low, 'LIMIT', 0, ARGV[3])
end
local out = {'ok', back and 1 or 0}
for _, member in ipairs(rows) do out[#out + 1] = redis.call('HGET', KEYS[3], member) end
return out
"""

# KEYS 1 kind zset, 2 kind hash, 3 object counter. ARGV id, now, data. Returns created_at.
_PUT_OBJECT = """
local prior = redis.call('HGET', KEYS[2], ARGV[1])
local created
if prior then
  created = string.sub(prior, 1, string.find(prior, ':', 1, true) - 1)
else
  created = ARGV[2]
  redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[3]), ARGV[1])
end
redis.call('HSET', KEYS[2], ARGV[1], created .. ':' .. ARGV[3])
return created
"""

# KEYS 1 kind zset, 2 kind hash. ARGV id. Returns 1 if it existed.
_DELETE_OBJECT = """
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('HDEL', KEYS[2], ARGV[1])
"""

_SCRIPTS = {
    "create_thread": _CREATE_THREAD,
    "update_thread": _UPDATE_THREAD,
    "delete_thread": _DELETE_THREAD,
    "prune_entry": _PRUNE_ENTRY,
    "append": _APPEND,
    "get_message": _GET_MESSAGE,
    "update_message": _UPDATE_MESSAGE,
    "delete_message": _DELETE_MESSAGE,
    "window": _WINDOW,
    "tail": _TAIL,
    "create_run": _CREATE_RUN,
    "update_run": _UPDATE_RUN,
    "get_run": _GET_RUN,
    "get_active_run": _GET_ACTIVE_RUN,
    "put_step": _PUT_STEP,
    "get_step": _GET_STEP,
    "step_window": _STEP_WINDOW,
    "put_object": _PUT_OBJECT,
    "delete_object": _DELETE_OBJECT,
}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _fetch_count(limit: int | None) -> int:
    """How many items a window reads: ``limit + 1`` (to learn ``has_more``), -1 for all."""
    if limit is None:
        return -1
    if limit < 0:
        raise ValidationError(f"limit must be >= 0 or None, got {limit}")
    return limit + 1


def _trim(items: list[Any], limit: int | None, backwards: bool) -> tuple[list[Any], bool]:
    """Cut a window read with :func:`_fetch_count` to ``limit`` and put it in the asked order.

    ``items`` are in read order; a backwards read (``before`` only) started at the cursor and
    moved away from it, so it is reversed after cutting.
    """
    has_more = limit is not None and len(items) > limit
    if has_more:
        items = items[:limit]
    if backwards:
        items.reverse()
    return items, has_more


class RedisStore(BaseStore):
    """A :class:`~threadkit.stores.base.MessageStore` in Redis (redis-py asyncio client).

    Safe for many processes and hosts at once: appends, run creation and run updates are single
    Lua scripts. See the module docstring for the key layout and the cost of each listing.

    Args:
        client: a ``redis.asyncio.Redis`` created with ``decode_responses=False`` (the default;
            stored values are bytes).
        prefix: namespace of every key (``"threadkit"`` -> ``threadkit:t:{thread_...}``).
        ttl: seconds a thread lives after its last write (``None``: forever).
        url: the URL the client was opened from, for :attr:`locator`.
        owns_client: whether :meth:`close` closes ``client``.

    Raises:
        ConfigError: (key ``store``) empty prefix, a non-positive ``ttl``, or a client that
            decodes responses.
    """

    schemes = ("redis", "rediss", "unix")

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "threadkit",
        ttl: int | None = None,
        url: str | None = None,
        owns_client: bool = False,
    ) -> None:
        redis = require("redis", "redis", "RedisStore")
        if not prefix:
            raise ConfigError("the Redis key prefix must not be empty", key="store")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0):
            raise ConfigError(f"ttl must be a positive number of seconds, got {ttl!r}", key="store")
        # redis-py types its commands as sync-or-async unions; the asyncio client is async.
        self._client: Any = client
        pool = getattr(client, "connection_pool", None)
        if pool is not None and pool.connection_kwargs.get("decode_responses"):
            raise ConfigError(
                "RedisStore needs a client with decode_responses=False (values are bytes)",
                key="store",
            )
        self._prefix = prefix
        self._ttl = ttl
        self._url = url or "redis://127.0.0.1:6379/0"
        self._owns_client = owns_client
        self._errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError,)
        self._scripts = {name: client.register_script(src) for name, src in _SCRIPTS.items()}
        self._registry = f"{prefix}:threads"
        self._thread_counter = f"{prefix}:n:threads"
        self._object_counter = f"{prefix}:n:objects"

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str | None = None,
        ttl: int | None = None,
        **client_options: Any,
    ) -> RedisStore:
        """Open a store from a ``redis://``, ``rediss://`` or ``unix://`` URL.

        Args:
            url: e.g. ``redis://:secret@127.0.0.1:6379/0?prefix=tk&ttl=86400``. The query
                parameters ``prefix`` and ``ttl`` (seconds) configure the store; the others go
                to ``redis.asyncio.from_url``.
            prefix: key namespace; overrides ``?prefix=`` (default ``"threadkit"``).
            ttl: thread lifetime in seconds after its last write; overrides ``?ttl=``.
            **client_options: passed to ``redis.asyncio.from_url`` (``socket_timeout=``...).

        Returns:
            A store; no connection is made until first use.

        Raises:
            MissingExtraError: redis-py is not installed (``pip install "threadkit[redis]"``).
            ConfigError: (key ``store``) a malformed ``ttl`` or an empty prefix.
        """
        aioredis = require("redis.asyncio", "redis", "RedisStore")
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        own = {k: v for k, v in query if k in ("prefix", "ttl")}
        rest = [(k, v) for k, v in query if k not in ("prefix", "ttl")]
        if prefix is None:
            prefix = own.get("prefix", "threadkit")
        if ttl is None and own.get("ttl"):
            try:
                ttl = int(own["ttl"])
            except ValueError as exc:
                raise ConfigError(
                    f"ttl must be whole seconds, got {own['ttl']!r}", key="store"
                ) from exc
        client_url = urlunsplit(parts._replace(query=urlencode(rest)))
        client = aioredis.from_url(client_url, **client_options)
        locator = _locator(parts, rest, prefix, ttl)
        return cls(client, prefix=prefix, ttl=ttl, url=locator, owns_client=True)

    @property
    def locator(self) -> str:
        """The URL that reopens this store: password removed, ``prefix`` (and ``ttl``) kept."""
        return self._url

    @property
    def prefix(self) -> str:
        """The key namespace."""
        return self._prefix

    @property
    def ttl(self) -> int | None:
        """Seconds a thread lives after its last write, or None."""
        return self._ttl

    @property
    def client(self) -> Redis:
        """The underlying ``redis.asyncio.Redis`` client."""
        client: Redis = self._client
        return client

    async def close(self) -> None:
        """Close the client's connections if this store opened it (see ``owns_client``)."""
        if self._owns_client:
            with self._translate():
                await self._client.aclose()

    # ------------------------------------------------------------------ plumbing
    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise StoreError(f"Redis failed: {exc}") from exc

    async def _call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        with self._translate():
            return await self._scripts[name](keys=list(keys), args=list(args))

    def _tkeys(self, thread_id: str) -> list[str]:
        base = f"{self._prefix}:t:{{{thread_id}}}"
        return [base + s for s in _SUFFIXES]

    def _okeys(self, kind: str) -> list[str]:
        base = f"{self._prefix}:o:{{{kind}}}"
        return [base, base + ":d"]

    @property
    def _ttl_arg(self) -> int:
        return self._ttl or 0

    # ------------------------------------------------------------------ threads
    async def create_thread(
        self, *, thread_id: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> ThreadInfo:
        """Create an empty thread (id ``thread_...`` generated when not given).

        Raises:
            ValidationError: a thread with ``thread_id`` exists, or bad metadata.
            StoreError: Redis failed.
        """
        meta = check_metadata(metadata)
        tid = thread_id or new_id("thread")
        ts = now()
        keys = [*self._tkeys(tid), self._registry, self._thread_counter]
        created = await self._call(
            "create_thread", keys, [self._ttl_arg, tid, ts, _JSON.encode(meta)]
        )
        if not created:
            raise ValidationError(f"thread {tid} already exists")
        return ThreadInfo(id=tid, created_at=ts, updated_at=ts, metadata=meta)

    async def get_thread(self, thread_id: str) -> ThreadInfo:
        """The thread's registry entry. Raises ThreadNotFoundError, StoreError."""
        with self._translate():
            row = await self._client.hmget(self._tkeys(thread_id)[0], _THREAD_FIELDS)
        info = _thread_info(thread_id, row)
        if info is None:
            raise ThreadNotFoundError(f"no thread {thread_id}")
        return info

    async def update_thread(self, thread_id: str, *, metadata: Mapping[str, str]) -> ThreadInfo:
        """Replace the thread's metadata. Raises ThreadNotFoundError, ValidationError, StoreError."""
        meta = check_metadata(metadata)
        args = [self._ttl_arg, now(), _JSON.encode(meta)]
        if not await self._call("update_thread", self._tkeys(thread_id), args):
            raise ThreadNotFoundError(f"no thread {thread_id}")
        return await self.get_thread(thread_id)

    async def delete_thread(self, thread_id: str) -> bool:
        """Delete every key of the thread and its registry entry. False if it did not exist."""
        keys = [*self._tkeys(thread_id), self._registry]
        return bool(await self._call("delete_thread", keys, [thread_id]))

    async def list_threads(
        self,
        *,
        limit: int | None = 20,
        after: str | None = None,
        before: str | None = None,
        order: Order = "desc",
        metadata: Mapping[str, str] | None = None,
        updated_before: int | None = None,
    ) -> Page[ThreadInfo]:
        """Threads by creation (``desc`` = newest first), cursor-paginated.

        Reads the registry in chunks and filters ``metadata``/``updated_before`` client-side:
        O(limit) without filters, O(threads scanned) with them (see the module docstring).

        Raises:
            ThreadNotFoundError: ``after``/``before`` names no thread.
            ValidationError: negative ``limit``.
            StoreError: Redis failed.
        """
        fetch = _fetch_count(limit)
        want = None if fetch < 0 else fetch
        filters = dict(metadata or {})
        with self._translate():
            cursor = {}
            for name, tid in (("after", after), ("before", before)):
                if tid is not None:
                    score = await self._client.zscore(self._registry, tid)
                    if score is None:
                        raise ThreadNotFoundError(f"no thread {tid} ({name} cursor)")
                    cursor[name] = score
            backwards = after is None and before is not None
            # Read towards higher scores when (asc, not backwards) or (desc, backwards).
            up = (order == "asc") != backwards
            low = f"({cursor['after']}" if order == "asc" and "after" in cursor else "-inf"
            high = f"({cursor['before']}" if order == "asc" and "before" in cursor else "+inf"
            if order == "desc":
                low = f"({cursor['before']}" if "before" in cursor else "-inf"
                high = f"({cursor['after']}" if "after" in cursor else "+inf"
            found: list[ThreadInfo] = []
            stale: list[str] = []
            chunk = _SCAN_CHUNK if filters or updated_before is not None or want is None else want
            while want is None or len(found) < want:
                if up:
                    rows = await self._client.zrangebyscore(
                        self._registry, low, high, start=0, num=chunk, withscores=True
                    )
                else:
                    rows = await self._client.zrevrangebyscore(
                        self._registry, high, low, start=0, num=chunk, withscores=True
                    )
                if not rows:
                    break
                pipe = self._client.pipeline(transaction=False)
                for tid_raw, _ in rows:
                    pipe.hmget(self._tkeys(_text(tid_raw))[0], _THREAD_FIELDS)
                infos = await pipe.execute()
                for (tid_raw, _), row in zip(rows, infos, strict=True):
                    tid = _text(tid_raw)
                    info = _thread_info(tid, row)
                    if info is None:
                        stale.append(tid)
                    elif _matches(info, filters, updated_before):
                        found.append(info)
                        if want is not None and len(found) >= want:
                            break
                last = rows[-1][1]
                if up:
                    low = f"({last!r}"
                else:
                    high = f"({last!r}"
                if len(rows) < chunk:
                    break
            for tid in stale:
                await self._scripts["prune_entry"](
                    keys=[self._registry, self._tkeys(tid)[0]], args=[tid]
                )
        items, has_more = _trim(found, limit, backwards)
        return page_of(items, [t.id for t in items], has_more)

    # ------------------------------------------------------------------ messages
    async def append(
        self,
        thread_id: str,
        messages: Sequence[Message],
        *,
        idempotency_key: str | None = None,
    ) -> list[Message]:
        """Append messages atomically (one Lua script), assigning consecutive ``seq`` numbers.

        Returns:
            The stored messages in the order given, ``seq`` set; on a retried
            ``idempotency_key`` the messages the first call stored (those not deleted since).

        Raises:
            ThreadNotFoundError: no such thread.
            OrphanToolResultError: a tool result answers no (or an already answered) tool call.
            ValidationError: a message id already exists in the thread, a tool call id is
                reused, an empty batch, or bad metadata.
            StoreError: Redis failed.
        """
        prepared = prepare_messages(thread_id, messages)
        args: list[Any] = [
            self._ttl_arg,
            now(),
            idempotency_key or "",
            _JSON.encode([m.id for m in prepared]),
            len(prepared),
        ]
        for m in prepared:
            args += (m.id, _ENC.encode(m))
        for m in prepared:
            for part in m.content:
                if isinstance(part, ToolCallContent):
                    args += ("c", part.id, m.id)
                elif isinstance(part, ToolResultContent):
                    args += ("r", part.tool_call_id, m.id)
        reply = await self._call("append", self._tkeys(thread_id), args)
        status = _text(reply[0])
        if status == "ok":
            base = int(reply[1])
            for i, m in enumerate(prepared, start=1):
                m.seq = base + i
            return prepared
        if status == "idem":
            return [_message(reply[i + 1], reply[i]) for i in range(1, len(reply), 2)]
        if status == "nothread":
            raise ThreadNotFoundError(f"no thread {thread_id}")
        if status == "dupid":
            raise ValidationError(f"message {_text(reply[1])} already exists in thread {thread_id}")
        existing = {_text(reply[i]): reply[i + 1] == b"1" for i in range(1, len(reply), 2)}
        check_tool_results(prepared, existing)
        raise StoreError(f"append to {thread_id} refused by the store script ({status})")

    async def get_message(self, thread_id: str, message_id: str) -> Message:
        """One message. Raises ThreadNotFoundError, MessageNotFoundError, StoreError."""
        keys = self._tkeys(thread_id)[:3]
        reply = await self._call("get_message", keys, [message_id])
        status = _text(reply[0])
        if status == "nothread":
            raise ThreadNotFoundError(f"no thread {thread_id}")
        if status == "missing":
            raise MessageNotFoundError(f"no message {message_id} in thread {thread_id}")
        return _message(reply[2], reply[1])

    async def list_messages(
        self,
        thread_id: str,
        *,
        order: Order = "asc",
        limit: int | None = 20,
        after: str | None = None,
        before: str | None = None,
    ) -> Page[Message]:
        """Messages by ``seq`` (``asc`` = oldest first), cursor-paginated; O(log N + limit).

        Raises:
            ThreadNotFoundError: no such thread.
            MessageNotFoundError: ``after``/``before`` names no message of the thread.
            StoreError: Redis failed.
        """
        keys = self._tkeys(thread_id)[:3]
        reply = await self._window(keys, True, order, limit, after, before)
        if reply is None:
            raise ThreadNotFoundError(f"no thread {thread_id}")
        if isinstance(reply, str):
            raise MessageNotFoundError(f"no message {reply} in thread {thread_id}")
        backwards, rows = reply
        items, has_more = _trim(
            [_message(rows[i + 2], rows[i + 1]) for i in range(0, len(rows), 3)],
            limit,
            backwards,
        )
        return page_of(items, [m.id for m in items], has_more)

    async def _window(
        self,
        keys: list[str],
        check_exists: bool,
        order: Order,
        limit: int | None,
        after: str | None,
        before: str | None,
    ) -> str | tuple[bool, list[Any]] | None:
        """Run the window script: None = no parent, str = the unknown cursor, else rows."""
        if order not in ("asc", "desc"):
            raise ValidationError(f"order must be 'asc' or 'desc', got {order!r}")
        args = ["1" if check_exists else "0", order, _fetch_count(limit), after or "", before or ""]
        reply = await self._call("window", keys, args)
        status = _text(reply[0])
        if status == "nothread":
            return None
        if status == "nocursor":
            return _text(reply[1])
        return bool(reply[1]), reply[2:]

    async def tail(self, thread_id: str, n: int) -> list[Message]:
        """The newest ``n`` messages, oldest first; O(log N + n).

        Raises ThreadNotFoundError, StoreError."""
        keys = self._tkeys(thread_id)[:3]
        reply = await self._call("tail", keys, [n])
        if _text(reply[0]) == "nothread":
            raise ThreadNotFoundError(f"no thread {thread_id}")
        return [_message(reply[i + 2], reply[i + 1]) for i in range(1, len(reply), 3)]

    async def count_messages(self, thread_id: str) -> int:
        """How many messages the thread holds. Raises ThreadNotFoundError, StoreError."""
        keys = self._tkeys(thread_id)
        with self._translate():
            pipe = self._client.pipeline(transaction=True)
            pipe.exists(keys[0])
            pipe.zcard(keys[1])
            exists, count = await pipe.execute()
        if not exists:
            raise ThreadNotFoundError(f"no thread {thread_id}")
        return int(count)

    async def update_message(
        self, thread_id: str, message_id: str, *, metadata: Mapping[str, str]
    ) -> Message:
        """Replace a message's metadata (content stays as it is).

        Raises ThreadNotFoundError, MessageNotFoundError, ValidationError, StoreError."""
        meta = check_metadata(metadata)
        current = await self.get_message(thread_id, message_id)
        updated = msgspec.structs.replace(current, metadata=meta)
        args = [self._ttl_arg, now(), message_id, _ENC.encode(updated)]
        reply = await self._call("update_message", self._tkeys(thread_id), args)
        status = _text(reply[0])
        if status == "nothread":
            raise ThreadNotFoundError(f"no thread {thread_id}")
        if status == "missing":
            raise MessageNotFoundError(f"no message {message_id} in thread {thread_id}")
        return updated

    async def delete_message(self, thread_id: str, message_id: str) -> bool:
        """Delete one message; its tool calls are forgotten and the calls its tool results
        answered are open again. False if it did not exist.

        Raises:
            ThreadNotFoundError: no such thread.
            ValidationError: it holds a tool call whose result is still in the thread.
            StoreError: Redis failed.
        """
        try:
            current = await self.get_message(thread_id, message_id)
        except MessageNotFoundError:
            return False
        args: list[Any] = [self._ttl_arg, now(), message_id]
        for part in current.content:
            if isinstance(part, ToolCallContent):
                args += ("c", part.id)
            elif isinstance(part, ToolResultContent):
                args += ("r", part.tool_call_id)
        reply = await self._call("delete_message", self._tkeys(thread_id), args)
        status = _text(reply[0])
        if status == "nothread":
            raise ThreadNotFoundError(f"no thread {thread_id}")
        if status == "answered":
            raise ValidationError(
                f"message {message_id} holds tool call {_text(reply[1])}, answered by message "
                f"{_text(reply[2])}; delete the result first"
            )
        return status == "ok"

    # ------------------------------------------------------------------ runs and steps
    async def create_run(self, run: Run) -> Run:
        """Store a new run; one Lua script refuses it while another run on the thread is active
        (active status and ``expires_at`` unset or later than ``run.created_at``).

        Raises:
            ThreadNotFoundError: no such thread.
            ActiveRunError: another run on the thread is active.
            ValidationError: a run with this id exists on the thread.
            StoreError: Redis failed.
        """
        status = run.status
        args = [
            self._ttl_arg,
            run.id,
            run.created_at,
            "" if run.expires_at is None else run.expires_at,
            status.value,
            "1" if status.is_active else "0",
            _ENC.encode(run),
        ]
        reply = await self._call("create_run", self._tkeys(run.thread_id), args)
        outcome = _text(reply[0])
        if outcome == "nothread":
            raise ThreadNotFoundError(f"no thread {run.thread_id}")
        if outcome == "dup":
            raise ValidationError(f"run {run.id} already exists in thread {run.thread_id}")
        if outcome == "active":
            raise ActiveRunError(run.thread_id, _text(reply[1]))
        return run

    async def get_run(self, thread_id: str, run_id: str) -> Run:
        """One run. Raises ThreadNotFoundError, RunNotFoundError, StoreError."""
        keys = self._tkeys(thread_id)
        reply = await self._call("get_run", [keys[0], keys[6]], [run_id])
        status = _text(reply[0])
        if status == "nothread":
            raise ThreadNotFoundError(f"no thread {thread_id}")
        if status == "norun":
            raise RunNotFoundError(f"no run {run_id} in thread {thread_id}")
        return _RUN.decode(reply[1])

    async def update_run(self, run: Run, *, expected_status: str | None = None) -> Run:
        """Replace a stored run; with ``expected_status`` only if the stored status still is that
        one (compare-and-set in one Lua script).

        Raises:
            RunNotFoundError: no such run (or no such thread).
            InvalidRunStateError: the stored status differs from ``expected_status``.
            StoreError: Redis failed.
        """
        status = run.status
        args = [
            self._ttl_arg,
            run.id,
            expected_status or "",
            status.value,
            "" if run.expires_at is None else run.expires_at,
            "1" if status.is_active else "0",
            _ENC.encode(run),
        ]
        reply = await self._call("update_run", self._tkeys(run.thread_id), args)
        outcome = _text(reply[0])
        if outcome == "norun":
            raise RunNotFoundError(f"no run {run.id} in thread {run.thread_id}")
        if outcome == "state":
            stored = _text(reply[1])
            raise InvalidRunStateError(
                f"run {run.id} is {stored}, not {expected_status}", run_id=run.id, status=stored
            )
        return run

    async def list_runs(
        self,
        thread_id: str,
        *,
        order: Order = "desc",
        limit: int | None = 20,
        after: str | None = None,
        before: str | None = None,
    ) -> Page[Run]:
        """Runs by creation (``desc`` = newest first); O(log N + limit).

        Raises ThreadNotFoundError, RunNotFoundError (bad cursor), StoreError."""
        keys = self._tkeys(thread_id)
        reply = await self._window([keys[0], keys[5], keys[6]], True, order, limit, after, before)
        if reply is None:
            raise ThreadNotFoundError(f"no thread {thread_id}")
        if isinstance(reply, str):
            raise RunNotFoundError(f"no run {reply} in thread {thread_id}")
        backwards, rows = reply
        items, has_more = _trim(
            [_RUN.decode(rows[i + 2]) for i in range(0, len(rows), 3)], limit, backwards
        )
        return page_of(items, [r.id for r in items], has_more)

    async def get_active_run(self, thread_id: str) -> Run | None:
        """The newest run with an active status (expired or not), or None.

        Raises ThreadNotFoundError, StoreError."""
        keys = self._tkeys(thread_id)
        reply = await self._call("get_active_run", [keys[0], keys[5], keys[6], keys[8]], [])
        status = _text(reply[0])
        if status == "nothread":
            raise ThreadNotFoundError(f"no thread {thread_id}")
        if status == "none":
            return None
        return _RUN.decode(reply[1])

    async def put_step(self, step: RunStep) -> RunStep:
        """Insert or replace a run step (by id); a new step goes after the run's others.

        Raises ThreadNotFoundError, RunNotFoundError, StoreError."""
        args = [self._ttl_arg, step.run_id, step.id, _ENC.encode(step)]
        reply = await self._call("put_step", self._tkeys(step.thread_id), args)
        status = _text(reply[0])
        if status == "nothread":
            raise ThreadNotFoundError(f"no thread {step.thread_id}")
        if status == "norun":
            raise RunNotFoundError(f"no run {step.run_id} in thread {step.thread_id}")
        return step

    async def get_step(self, thread_id: str, run_id: str, step_id: str) -> RunStep:
        """One run step. Raises RunNotFoundError (also for an unknown thread),
        RunStepNotFoundError, StoreError."""
        keys = self._tkeys(thread_id)
        reply = await self._call("get_step", [keys[6], keys[10], keys[11]], [run_id, step_id])
        status = _text(reply[0])
        if status == "norun":
            raise RunNotFoundError(f"no run {run_id} in thread {thread_id}")
        if status == "nostep":
            raise RunStepNotFoundError(f"no step {step_id} in run {run_id}")
        return _STEP.decode(reply[1])

    async def list_steps(
        self,
        thread_id: str,
        run_id: str,
        *,
        order: Order = "asc",
        limit: int | None = 20,
        after: str | None = None,
        before: str | None = None,
    ) -> Page[RunStep]:
        """A run's steps by creation (``asc`` = oldest first); O(log N + limit).

        Raises RunNotFoundError (also for an unknown thread), RunStepNotFoundError (bad cursor),
        StoreError."""
        if order not in ("asc", "desc"):
            raise ValidationError(f"order must be 'asc' or 'desc', got {order!r}")
        keys = self._tkeys(thread_id)
        args = [run_id, order, _fetch_count(limit), after or "", before or ""]
        reply = await self._call("step_window", [keys[6], keys[9], keys[10], keys[11]], args)
        status = _text(reply[0])
        if status == "norun":
            raise RunNotFoundError(f"no run {run_id} in thread {thread_id}")
        if status == "nocursor":
            raise RunStepNotFoundError(f"no step {_text(reply[1])} in run {run_id}")
        items, has_more = _trim([_STEP.decode(b) for b in reply[2:]], limit, bool(reply[1]))
        return page_of(items, [s.id for s in items], has_more)

    # ------------------------------------------------------------------ stored objects
    async def put_object(self, kind: str, object_id: str, data: bytes) -> StoredObject:
        """Insert or replace an opaque object; ``created_at`` is kept from the first put.

        Raises StoreError."""
        keys = [*self._okeys(kind), self._object_counter]
        created = await self._call("put_object", keys, [object_id, now(), data])
        return StoredObject(id=object_id, kind=kind, created_at=int(created), data=bytes(data))

    async def get_object(self, kind: str, object_id: str) -> StoredObject:
        """One object. Raises ObjectNotFoundError, StoreError."""
        with self._translate():
            raw = await self._client.hget(self._okeys(kind)[1], object_id)
        if raw is None:
            raise ObjectNotFoundError(f"no {kind} object {object_id}")
        return _object(kind, object_id, raw)

    async def delete_object(self, kind: str, object_id: str) -> bool:
        """Delete one object. False if it did not exist. Raises StoreError."""
        return bool(await self._call("delete_object", self._okeys(kind), [object_id]))

    async def list_objects(
        self,
        kind: str,
        *,
        order: Order = "desc",
        limit: int | None = 20,
        after: str | None = None,
        before: str | None = None,
    ) -> Page[StoredObject]:
        """Objects of a kind by creation (``desc`` = newest first); O(log N + limit).

        Raises ObjectNotFoundError (bad cursor), StoreError."""
        zset, data = self._okeys(kind)
        reply = await self._window([zset, zset, data], False, order, limit, after, before)
        if isinstance(reply, str):
            raise ObjectNotFoundError(f"no {kind} object {reply}")
        assert reply is not None  # existence is not checked for objects
        backwards, rows = reply
        items, has_more = _trim(
            [_object(kind, _text(rows[i]), rows[i + 2]) for i in range(0, len(rows), 3)],
            limit,
            backwards,
        )
        return page_of(items, [o.id for o in items], has_more)


# ----------------------------------------------------------------------------- helpers


def _message(blob: bytes, seq: bytes | int) -> Message:
    msg = _MSG.decode(blob)
    msg.seq = int(seq)
    return msg


def _object(kind: str, object_id: str, raw: bytes) -> StoredObject:
    created, _, data = raw.partition(b":")
    return StoredObject(id=object_id, kind=kind, created_at=int(created), data=data)


def _thread_info(thread_id: str, row: Sequence[bytes | None]) -> ThreadInfo | None:
    created, updated, meta, count = row
    if created is None or updated is None:
        return None
    return ThreadInfo(
        id=thread_id,
        created_at=int(created),
        updated_at=int(updated),
        metadata=_META.decode(meta) if meta else {},
        message_count=int(count or 0),
    )


def _matches(info: ThreadInfo, filters: Mapping[str, str], updated_before: int | None) -> bool:
    if updated_before is not None and info.updated_at >= updated_before:
        return False
    return all(info.metadata.get(k) == v for k, v in filters.items())


def _locator(parts: SplitResult, rest: list[tuple[str, str]], prefix: str, ttl: int | None) -> str:
    """The store URL without password (in the netloc or a ``password`` query parameter)."""
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6 literal
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    if parts.username:
        netloc = f"{quote(unquote(parts.username), safe='')}@{netloc}"
    query: list[tuple[str, str]] = [(k, v) for k, v in rest if k.lower() != "password"]
    query.append(("prefix", prefix))
    if ttl is not None:
        query.append(("ttl", str(ttl)))
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))
