"""``SQLiteStore``: threads in one SQLite file (stdlib ``sqlite3``), shared safely by processes.

Open it with ``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``sqlite:///:memory:``.
The event loop never waits on another process's lock or on an fsync: a call runs on the loop
thread only when it can finish without either, and otherwise on the store's worker thread (see
:class:`SQLiteStore`). Writes are short ``BEGIN IMMEDIATE`` transactions; the journal is WAL, so
readers never block the writer.

Schema: the append-only :data:`MIGRATIONS` list (index = version), recorded in the
``threadkit_migrations`` table and applied by :meth:`SQLiteStore.setup`. Each message is one
msgspec MessagePack blob beside its indexed columns; its rowid is ``(thread number << 32) | seq``,
so the table is itself the ``(thread, seq)`` index and ``tail``/listing are rowid range scans
that cost the same at any thread length. A unique ``(thread, id)`` index finds messages by id.
An append writes only its message rows (and tool-call or idempotency-key rows when it has
them): a thread's ``updated_at`` and message count are derived from its newest message.

Listing and ``tail`` keep the decoded messages they read in a bounded per-store cache (the
newest part of each recently read thread), checked against the database on every call with one
indexed read of the thread row: appends show as a higher newest key (read and decoded alone),
any other change to a thread's messages rewrites the thread's random ``msg_rev``. So another
process's update, delete, or thread re-created under a reused internal number is never served
stale. See :class:`SQLiteStore` (``cache_messages``, ``cache_bytes``).
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import msgspec

from threadkit._ids import new_id, now
from threadkit.errors import (
    ActiveRunError,
    ConfigError,
    InvalidRunStateError,
    MessageNotFoundError,
    NotFoundError,
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
    check_import,
    check_metadata,
    check_tool_results,
    page_of,
    prepare_messages,
    tool_ids,
)
from threadkit.types import Message, Page, Run, RunStatus, RunStep, ThreadInfo

__all__ = ["MIGRATIONS", "SQLiteStore"]

_T = TypeVar("_T")

Synchronous = Literal["normal", "full"]

_encoder = msgspec.msgpack.Encoder()
_message_decoder = msgspec.msgpack.Decoder(Message)
_run_decoder = msgspec.msgpack.Decoder(Run)
_step_decoder = msgspec.msgpack.Decoder(RunStep)
_json_encoder = msgspec.json.Encoder()
_metadata_decoder = msgspec.json.Decoder(dict[str, str])

_ACTIVE_SQL = "('queued', 'in_progress', 'requires_action', 'cancelling')"
assert {RunStatus(s) for s in ("queued", "in_progress", "requires_action", "cancelling")} == {
    s for s in RunStatus if s.is_active
}

MIGRATIONS: list[tuple[str, ...]] = [
    # 0: the first schema
    (
        """CREATE TABLE threads (
            pos INTEGER PRIMARY KEY,               -- creation order; child tables' thread key
            id TEXT NOT NULL UNIQUE,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,           -- last change other than an append
            metadata TEXT NOT NULL,                -- JSON object of strings
            seq_floor INTEGER NOT NULL DEFAULT 0,  -- highest seq given, as of the last delete
            deleted INTEGER NOT NULL DEFAULT 0     -- messages deleted so far
        )""",
        # key = tk * 2**32 + seq is the rowid: the table itself is the (thread, seq) index, so
        # an append writes two b-trees (rows, ids) and tail/listing are rowid range scans
        """CREATE TABLE messages (
            key INTEGER PRIMARY KEY,               -- (threads.pos << 32) | seq
            tk INTEGER NOT NULL,                   -- threads.pos
            id TEXT NOT NULL,
            appended_at INTEGER NOT NULL,
            data BLOB NOT NULL                     -- msgspec MessagePack of the Message
        )""",
        "CREATE UNIQUE INDEX messages_by_id ON messages (tk, id)",
        """CREATE TABLE tool_calls (
            tk INTEGER NOT NULL,
            call_id TEXT NOT NULL,
            answered INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (tk, call_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE idempotency_keys (
            tk INTEGER NOT NULL,
            key TEXT NOT NULL,
            first_seq INTEGER NOT NULL,
            last_seq INTEGER NOT NULL,
            PRIMARY KEY (tk, key)
        ) WITHOUT ROWID""",
        """CREATE TABLE runs (
            pos INTEGER PRIMARY KEY,               -- creation order
            tk INTEGER NOT NULL,
            id TEXT NOT NULL,
            status TEXT NOT NULL,
            expires_at INTEGER,
            data BLOB NOT NULL,
            UNIQUE (tk, id)
        )""",
        "CREATE INDEX runs_by_thread ON runs (tk, pos)",
        f"CREATE INDEX runs_active ON runs (tk, pos) WHERE status IN {_ACTIVE_SQL}",
        """CREATE TABLE steps (
            pos INTEGER PRIMARY KEY,               -- creation order
            tk INTEGER NOT NULL,
            run_id TEXT NOT NULL,
            id TEXT NOT NULL,
            data BLOB NOT NULL,
            UNIQUE (tk, run_id, id)
        )""",
        "CREATE INDEX steps_by_run ON steps (tk, run_id, pos)",
        """CREATE TABLE objects (
            pos INTEGER PRIMARY KEY,               -- creation order
            kind TEXT NOT NULL,
            id TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            data BLOB NOT NULL,
            UNIQUE (kind, id)
        )""",
        "CREATE INDEX objects_by_kind ON objects (kind, pos)",
    ),
    # 1: threads.msg_rev, a random stamp rewritten whenever one of the thread's messages is
    # updated or deleted (and on thread metadata updates), set anew for every thread created.
    # The message cache checks it (appends show as a higher newest key instead, so they write
    # no thread row). threadkit sets it itself; the triggers cover an older threadkit still
    # running on the file, which sets threads.updated_at on each such change and inserts
    # threads without it. Threads made before this version keep 0 until changed.
    (
        "ALTER TABLE threads ADD COLUMN msg_rev INTEGER NOT NULL DEFAULT 0",
        """CREATE TRIGGER threads_msg_rev_on_insert AFTER INSERT ON threads
            WHEN NEW.msg_rev = 0
            BEGIN UPDATE threads SET msg_rev = random() WHERE pos = NEW.pos; END""",
        """CREATE TRIGGER threads_msg_rev_on_update AFTER UPDATE OF updated_at ON threads
            WHEN NEW.msg_rev = OLD.msg_rev
            BEGIN UPDATE threads SET msg_rev = random() WHERE pos = NEW.pos; END""",
    ),
]
"""Schema migrations, append-only: ``MIGRATIONS[v]`` brings the schema to version ``v``.

Never edit a released entry; add a new one. :meth:`SQLiteStore.setup` applies the missing ones
in one ``BEGIN IMMEDIATE`` transaction and records each in ``threadkit_migrations``.
"""


def _page_bounds(
    order: Order,
    after: int | None,
    before: int | None,
    limit: int | None,
    lo: int | None = None,
    hi: int | None = None,
) -> tuple[int | None, int | None, bool, bool]:
    """The key range and scan direction of a cursor page.

    ``after``/``before`` are the cursor items' keys; ``lo``/``hi`` optional inclusive bounds of
    the whole listing. They are merged into at most one lower and one upper inclusive bound
    (``None``: unbounded). Returns ``(low, high, ascending, reverse)``: the scan runs from
    ``low`` up when ``ascending``, else from ``high`` down, and its rows come in the reverse of
    the asked order when ``reverse`` (the ``before``-only case, which scans from the cursor
    outwards).

    Raises:
        ValidationError: ``order`` is not ``asc``/``desc``, or ``limit`` is negative.
    """
    if order not in ("asc", "desc"):
        raise ValidationError(f"order must be 'asc' or 'desc', not {order!r}")
    if limit is not None and limit < 0:
        raise ValidationError(f"limit must be >= 0, not {limit}")
    up = order == "asc"
    low, high = lo, hi
    if after is not None:
        if up:
            low = after + 1 if low is None else max(low, after + 1)
        else:
            high = after - 1 if high is None else min(high, after - 1)
    if before is not None:
        if up:
            high = before - 1 if high is None else min(high, before - 1)
        else:
            low = before + 1 if low is None else max(low, before + 1)
    reverse = before is not None and after is None
    return low, high, up != reverse, reverse


def _page_sql(
    key: str,
    order: Order,
    after: int | None,
    before: int | None,
    limit: int | None,
    lo: int | None = None,
    hi: int | None = None,
) -> tuple[str, list[Any], bool]:
    """SQL ``AND ... ORDER BY ... LIMIT ...`` tail for a cursor page over the integer ``key``.

    Arguments as in :func:`_page_bounds`, whose one lower and one upper bound let SQLite seek
    straight to the page (given two lower bounds it seeks on one and filters on the other,
    which costs O(position)). Returns the SQL, its parameters and whether the rows come back in
    the reverse of the asked order. One extra row is fetched to tell ``has_more``.
    """
    low, high, ascending, reverse = _page_bounds(order, after, before, limit, lo, hi)
    sql = ""
    params: list[Any] = []
    if low is not None and high is not None:
        sql += f" AND {key} BETWEEN ? AND ?"
        params += [low, high]
    elif low is not None:
        sql += f" AND {key} >= ?"
        params.append(low)
    elif high is not None:
        sql += f" AND {key} <= ?"
        params.append(high)
    sql += f" ORDER BY {key} {'ASC' if ascending else 'DESC'}"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit + 1)
    return sql, params, reverse


def _trim(rows: list[Any], limit: int | None, reverse: bool) -> tuple[list[Any], bool]:
    has_more = limit is not None and len(rows) > limit
    if has_more:
        del rows[limit:]
    if reverse:
        rows.reverse()
    return rows, has_more


_hex_lock = threading.Lock()
_hex_pool = ""
_hex_used = 0


def _forget_hex_pool() -> None:
    """In a forked child: drop the pool inherited from the parent, whose next bytes the parent
    uses too."""
    global _hex_pool, _hex_used
    _hex_pool, _hex_used = "", 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_hex_pool)


def _new_rev() -> int:
    """A fresh ``threads.msg_rev``: 63 random bits from the OS CSPRNG (fork-safe, unlike
    SQLite's ``random()`` or a seeded generator), never 0."""
    return (int.from_bytes(os.urandom(8), "big") >> 1) or 1


def _new_message_id() -> str:
    """``msg_`` + 24 hex digits, like :func:`threadkit._ids.new_id`, but time-ordered: 48 bits
    of unix milliseconds then 48 bits from the OS CSPRNG, so new ids land at the end of the id
    index instead of on a random page (fewer pages written per append). The random bits come
    from a 4 KiB pool: one ``os.urandom`` call per ~680 ids."""
    global _hex_pool, _hex_used
    with _hex_lock:
        if _hex_used + 12 > len(_hex_pool):
            _hex_pool, _hex_used = os.urandom(4096).hex(), 0
        rand = _hex_pool[_hex_used : _hex_used + 12]
        _hex_used += 12
    return f"msg_{time.time_ns() // 1_000_000:012x}{rand}"


def _decode_message(key: int, data: bytes) -> Message:
    m = _message_decoder.decode(data)
    m.seq = key & _SEQ_MASK
    return m


def _thread_info(row: tuple[Any, ...]) -> ThreadInfo:
    return ThreadInfo(
        id=row[0],
        created_at=row[1],
        updated_at=row[2],
        metadata=_metadata_decoder.decode(row[3]),
        message_count=row[4],
    )


# A thread's newest message gives its updated_at and (with seq_floor and deleted) its message
# count, so an append writes no thread row: only the message rows and their index entries.
_THREAD_SELECT = """SELECT t.id, t.created_at,
    max(t.updated_at, coalesce(m.appended_at, 0)) AS updated_at,
    t.metadata,
    max(t.seq_floor, coalesce(m.key - t.pos * 4294967296, 0)) - t.deleted
FROM threads AS t
LEFT JOIN messages AS m ON m.key = (
    SELECT key FROM messages WHERE key BETWEEN t.pos * 4294967296 AND t.pos * 4294967296 + 4294967295
    ORDER BY key DESC LIMIT 1)"""

_SEQ_BITS = 32  # messages.key = (thread key << 32) | seq
_SEQ_MASK = (1 << _SEQ_BITS) - 1


def _key_range(tk: int) -> tuple[int, int]:
    """The first and last ``messages.key`` of thread ``tk``."""
    lo = tk << _SEQ_BITS
    return lo, lo | _SEQ_MASK


class _Span:
    """The cached newest messages of one thread, valid while the thread row keeps ``pos`` and
    ``rev`` (its ``msg_rev``).

    ``keys``, ``msgs`` and ``sizes`` (keys ascending; encoded bytes) hold every message of the
    thread whose key is in ``[lo, top]``; ``top`` is the newest key seen, so messages above it
    were appended since and are read on the next use. An empty span has ``lo = top + 1``.
    Every change to a span is what one read snapshot showed together with the stamp it was
    checked against, so a span stays right even when the call that grew it fails later.
    """

    __slots__ = ("counted", "keys", "lo", "msgs", "nbytes", "pos", "rev", "sizes", "top")

    def __init__(self, pos: int, rev: int, top: int) -> None:
        self.pos = pos
        self.rev = rev
        self.lo = top + 1
        self.top = top
        self.keys: list[int] = []
        self.msgs: list[Message] = []
        self.sizes: list[int] = []
        self.nbytes = 0  # sum(sizes)
        self.counted = (0, 0)  # (messages, bytes) the cache has counted for this span

    def below(self, rows: list[tuple[int, bytes]], msgs: list[Message], lo: int) -> None:
        """Prepend ``rows`` (ascending) and their decoded ``msgs``, which with the span hold
        every message from key ``lo`` up."""
        self.keys[:0] = [k for k, _ in rows]
        self.msgs[:0] = msgs
        sizes = [len(d) for _, d in rows]
        self.sizes[:0] = sizes
        self.nbytes += sum(sizes)
        self.lo = lo

    def above(self, rows: list[tuple[int, bytes]], msgs: list[Message], top: int) -> None:
        """Append ``rows`` (ascending, all above ``self.top``) and their decoded ``msgs``, which
        with the span hold every message up to key ``top``."""
        self.keys += [k for k, _ in rows]
        self.msgs += msgs
        sizes = [len(d) for _, d in rows]
        self.sizes += sizes
        self.nbytes += sum(sizes)
        self.top = top

    def drop_oldest(self, n: int) -> None:
        """Forget the ``n`` oldest messages (the span then starts at the next one)."""
        self.nbytes -= sum(self.sizes[:n])
        del self.keys[:n], self.msgs[:n], self.sizes[:n]
        self.lo = self.keys[0] if self.keys else self.top + 1


class _MessageCache:
    """Decoded messages of recently read threads (a :class:`_Span` each, by thread id),
    bounded by message count and by their encoded size in bytes. Least recently used threads
    go first; a thread bigger than the bounds keeps its newest messages.

    Not locked itself: the store touches it only inside operations, which run holding the
    store's connection lock (on the event-loop thread or on the worker thread).
    """

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.enabled = max_messages > 0 and max_bytes > 0
        self.spans: OrderedDict[str, _Span] = OrderedDict()
        self.messages = 0  # messages held, over all spans
        self.nbytes = 0  # their encoded bytes

    def get(self, thread_id: str) -> _Span | None:
        return self.spans.get(thread_id)

    def put(self, thread_id: str, span: _Span) -> None:
        """Keep ``span`` (made or grown by a read) as the thread's, most recently used."""
        if not self.enabled:
            return
        self._forget(thread_id)
        if not span.keys:
            return
        self.spans[thread_id] = span
        self._count(span)
        while len(self.spans) > 1 and (
            self.messages > self.max_messages or self.nbytes > self.max_bytes
        ):
            self._forget(next(iter(self.spans)))
        if self.messages > self.max_messages or self.nbytes > self.max_bytes:
            n = max(len(span.keys) - self.max_messages, 0)
            excess = span.nbytes - self.max_bytes
            while excess > 0 and n < len(span.keys):
                excess -= span.sizes[n]
                n += 1
            span.drop_oldest(n)
            self._count(span)
            if not span.keys:
                self._forget(thread_id)

    def drop(self, thread_id: str) -> None:
        """Forget the thread's messages."""
        self._forget(thread_id)

    def changed(
        self,
        thread_id: str,
        pos: int,
        old_rev: int,
        new_rev: int,
        key: int | None = None,
        message: Message | None = None,
        size: int = 0,
    ) -> None:
        """This store changed the thread's ``msg_rev`` from ``old_rev`` to ``new_rev`` in a
        committed write that updated the message at ``key`` to ``message`` (``size`` encoded
        bytes), deleted it (``message`` None) or (``key`` None) left the messages alone. The
        span follows if it was current before the write, else it is dropped."""
        span = self.spans.get(thread_id)
        if span is None:
            return
        if span.pos != pos or span.rev != old_rev:
            self._forget(thread_id)
            return
        span.rev = new_rev
        if key is None or not span.lo <= key <= span.top:
            return  # not held: read afresh when needed
        i = bisect.bisect_left(span.keys, key)
        if i == len(span.keys) or span.keys[i] != key:
            self._forget(thread_id)  # cannot happen while the span is right; be safe
            return
        span.nbytes -= span.sizes[i]
        if message is None:
            del span.keys[i], span.msgs[i], span.sizes[i]
        else:
            span.msgs[i] = message
            span.sizes[i] = size
            span.nbytes += size
        self.put(thread_id, span)

    def clear(self) -> None:
        self.spans.clear()
        self.messages = self.nbytes = 0

    def _count(self, span: _Span) -> None:
        messages, nbytes = span.counted
        span.counted = (len(span.keys), span.nbytes)
        self.messages += span.counted[0] - messages
        self.nbytes += span.counted[1] - nbytes

    def _forget(self, thread_id: str) -> None:
        span = self.spans.pop(thread_id, None)
        if span is not None:
            self.messages -= span.counted[0]
            self.nbytes -= span.counted[1]
            span.counted = (0, 0)


_CACHE_MESSAGES = 50_000  # default bounds of the message cache: messages,
_CACHE_BYTES = 32 << 20  # and bytes of their stored size
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_CHECKPOINT_PAGES = 1000  # about as many WAL pages between two checkpoints as SQLite's default
_SETTLE_EVERY = 8  # every 8th checkpoint holds the connection, so that the WAL starts over
_WAL_SIZE_LIMIT = 64 << 20  # bytes the WAL file is truncated to after a checkpoint


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


class SQLiteStore(BaseStore):
    """A message store in one SQLite file, safe for many processes at once.

    Durability (``synchronous``), with the WAL journal this store always uses on files:

    * ``"normal"`` (default): a committed append survives the application crashing or being
      killed; on power loss or an OS crash the last few transactions may be lost (the database
      itself stays consistent). No fsync per commit, so appends are fast.
    * ``"full"``: every commit is fsynced before the call returns, so it also survives power
      loss and OS crashes, at the cost of one fsync per write transaction.

    Where the work runs: the store owns one connection and one worker thread. A call first
    tries the connection on the event-loop thread *without waiting*: only if no other call of
    this store is using it, with SQLite's busy timeout at 0 (a lock held by another process
    fails at once instead of waiting) and never with an fsync (``synchronous="normal"`` commits
    do not sync; WAL checkpoints, which do, run on the worker). Anything that would wait (a
    busy database, a ``"full"`` commit, ``setup``) runs on the worker thread instead, where
    SQLite waits up to ``busy_timeout`` seconds for other processes' short ``BEGIN IMMEDIATE``
    transactions, so "database is locked" is not seen under normal contention. This keeps an
    append at roughly the cost of the bare SQL; ``fast_path=False`` sends every call through
    the worker (one thread hop each, as aiosqlite does). WAL checkpoints run on the worker,
    mostly in the background, so the ``-wal`` file may reach a few tens of MB under a steady
    stream of writes before a checkpoint lets it start over.

    Message cache: ``list_messages`` and ``tail`` keep the messages they decode, the newest part
    of each recently read thread, so that reading a thread again decodes only what changed.
    Each call checks the cache against the database first, in its read transaction, with one
    indexed read of the thread row: messages appended since (by any process) show as a newer
    newest key and are read alone; an update or delete of a message, a thread metadata update,
    or a thread deleted and created again (its internal number may be reused) changes the
    thread row's random 63-bit ``msg_rev``, and the cached messages of that thread are dropped
    (this store's own updates and deletes patch them instead). So a listing never returns a
    message another process has since changed or deleted. The cache is bounded by
    ``cache_messages`` messages and ``cache_bytes`` bytes of their stored (MessagePack) size,
    whichever is reached first; decoded messages take about 1 to 3 times that in memory. The
    least recently read threads go first.

    Returned messages are shared with the cache (and with other callers): treat them as
    read-only, as with :class:`~threadkit.stores.memory.MemoryStore`; threadkit never mutates
    them. Copy one with ``msgspec.structs.replace`` to change it.

    Args:
        path: the database file (created when missing), or ``":memory:"`` for a private
            in-memory database that lives as long as this store.
        synchronous: ``"normal"`` or ``"full"``, see above.
        busy_timeout: seconds to wait for another connection's lock (on the worker thread).
        fast_path: try calls on the event-loop thread first, as described above.
        cache_messages: at most this many messages in the message cache (0 turns it off).
        cache_bytes: at most this many bytes of stored message size in the message cache
            (0 turns it off).

    Raises:
        ConfigError: (key ``store``) a bad ``synchronous``, ``busy_timeout``,
            ``cache_messages`` or ``cache_bytes``.
    """

    schemes = ("sqlite",)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "normal",
        busy_timeout: float = 30.0,
        fast_path: bool = True,
        cache_messages: int = _CACHE_MESSAGES,
        cache_bytes: int = _CACHE_BYTES,
    ) -> None:
        sync = str(synchronous).lower()
        if sync not in ("normal", "full"):
            raise ConfigError(
                f"synchronous must be 'normal' or 'full', not {synchronous!r}", key="store"
            )
        if not busy_timeout >= 0:
            raise ConfigError(f"busy_timeout must be >= 0 seconds, not {busy_timeout}", key="store")
        for name, value in (("cache_messages", cache_messages), ("cache_bytes", cache_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be an integer >= 0, not {value!r}", key="store")
        self._cache = _MessageCache(cache_messages, cache_bytes)
        raw = os.fspath(path)
        self._memory = raw in (":memory:", "")
        self._path = ":memory:" if self._memory else os.path.abspath(raw)
        self._synchronous = sync
        self._busy_timeout = float(busy_timeout)
        self._busy_ms = int(self._busy_timeout * 1000)
        self._fast_reads = fast_path
        self._fast_writes = fast_path and (sync == "normal" or self._memory)
        # the fast path never waits for a lock; the worker raises the timeout while it works
        self._resting_busy_ms = 0 if fast_path else self._busy_ms
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="threadkit-sqlite")
        self._lock = threading.Lock()  # whoever holds it may use self._conn
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._pages = 0  # about how many WAL pages were written since the last checkpoint
        self._checkpoints = 0  # checkpoints started
        self._checkpointing = False  # one is queued or running
        self._settling = False  # the one queued or running holds the connection
        self._checkpointer: sqlite3.Connection | None = None  # the worker's, for background ones

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        synchronous: Synchronous | None = None,
        busy_timeout: float | None = None,
        fast_path: bool = True,
        cache_messages: int | None = None,
        cache_bytes: int | None = None,
    ) -> SQLiteStore:
        """Open ``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``sqlite:///:memory:``.

        The query may carry ``synchronous`` (``normal``/``full``), ``busy_timeout`` (seconds),
        ``cache_messages`` and ``cache_bytes`` (integers, see :class:`SQLiteStore`); keyword
        arguments win over the query.

        Raises:
            ConfigError: (key ``store``) not a ``sqlite:`` URL, a host in the URL, an unknown
                query parameter or a bad value.
        """
        parts = urlsplit(url)
        if parts.scheme != "sqlite":
            raise ConfigError(f"{url!r} is not a sqlite:// URL", key="store")
        if parts.netloc:
            raise ConfigError(
                f"{url!r} names a host; use sqlite:///relative.db or sqlite:////abs/path.db",
                key="store",
            )
        path = unquote(parts.path)
        path = path[1:] if path.startswith("/") else path
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = set(query) - {"synchronous", "busy_timeout", "cache_messages", "cache_bytes"}
        if unknown:
            raise ConfigError(f"unknown sqlite URL parameters: {sorted(unknown)}", key="store")
        sync: Any = synchronous if synchronous is not None else query.get("synchronous", "normal")
        timeout: Any = busy_timeout if busy_timeout is not None else query.get("busy_timeout", 30.0)
        try:
            timeout = float(timeout)
        except ValueError as exc:
            raise ConfigError(
                f"busy_timeout must be seconds, not {timeout!r}", key="store"
            ) from exc
        sizes: dict[str, int] = {}
        for name, given, default in (
            ("cache_messages", cache_messages, _CACHE_MESSAGES),
            ("cache_bytes", cache_bytes, _CACHE_BYTES),
        ):
            if given is not None:
                sizes[name] = given
                continue
            try:
                sizes[name] = int(query.get(name, default))
            except ValueError as exc:
                raise ConfigError(
                    f"{name} must be an integer, not {query[name]!r}", key="store"
                ) from exc
        return cls(
            path or ":memory:",
            synchronous=sync,
            busy_timeout=timeout,
            fast_path=fast_path,
            cache_messages=sizes["cache_messages"],
            cache_bytes=sizes["cache_bytes"],
        )

    @property
    def locator(self) -> str:
        """``sqlite:////abs/path.db`` (plus non-default settings), or ``sqlite:///:memory:``
        (which cannot reopen this store's private data)."""
        if self._memory:
            return "sqlite:///:memory:"
        params = []
        if self._synchronous != "normal":
            params.append(f"synchronous={self._synchronous}")
        if self._busy_timeout != 30.0:
            params.append(f"busy_timeout={self._busy_timeout:g}")
        if self._cache.max_messages != _CACHE_MESSAGES:
            params.append(f"cache_messages={self._cache.max_messages}")
        if self._cache.max_bytes != _CACHE_BYTES:
            params.append(f"cache_bytes={self._cache.max_bytes}")
        query = f"?{'&'.join(params)}" if params else ""
        return f"sqlite:///{quote(self._path)}{query}"

    @property
    def path(self) -> str:
        """The absolute path of the database file (``":memory:"`` for an in-memory one)."""
        return self._path

    # ----------------------------------------------------------------------- plumbing

    def _connect(self) -> sqlite3.Connection:
        """Open the connection (on the worker thread), waiting up to ``busy_timeout`` for the
        locks that switching a new file to WAL needs when other processes open it too."""
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # used by the worker and the loop thread, under self._lock
            cached_statements=256,
        )
        try:
            if not self._memory:
                deadline = time.monotonic() + self._busy_timeout
                while True:
                    try:
                        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                        break
                    except sqlite3.OperationalError as exc:
                        if not _is_busy(exc) or time.monotonic() > deadline:
                            raise
                        time.sleep(0.005)
                if str(mode).lower() != "wal":
                    raise StoreError(f"{self._path}: could not switch to WAL (journal {mode})")
                if self._fast_writes:
                    conn.execute("PRAGMA wal_autocheckpoint = 0")  # see _checkpoint
                conn.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
            conn.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute(f"PRAGMA busy_timeout = {self._resting_busy_ms}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _in_worker(self, fn: Callable[..., _T], args: tuple[Any, ...], pages: int) -> _T:
        """Run ``fn(conn, *args)`` on the worker thread, waiting for locks as long as needed."""
        with self._lock:
            conn = self._conn
            if conn is None:
                if self._closed:
                    raise StoreError("the sqlite store is closed")
                try:
                    conn = self._conn = self._connect()
                except sqlite3.Error as exc:
                    raise StoreError(f"cannot open sqlite database {self._path}: {exc}") from exc
            try:
                if self._resting_busy_ms != self._busy_ms:
                    conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
                try:
                    return fn(conn, *args)
                finally:
                    if self._resting_busy_ms != self._busy_ms:
                        conn.execute(f"PRAGMA busy_timeout = {self._resting_busy_ms}")
                    if pages:
                        self._wrote(pages)
            except sqlite3.Error as exc:
                raise StoreError(f"sqlite error on {self._path}: {exc}") from exc

    def _wrote(self, pages: int) -> None:
        """Count about ``pages`` WAL pages written; every ~1000, checkpoint on the worker."""
        if not self._fast_writes or self._memory:
            return
        self._pages += pages
        if self._pages >= _CHECKPOINT_PAGES and not self._checkpointing and not self._closed:
            self._pages = 0
            self._checkpoints += 1
            self._checkpointing = True
            self._settling = self._checkpoints % _SETTLE_EVERY == 0
            self._executor.submit(self._checkpoint, self._settling)

    def _checkpoint(self, settle: bool) -> None:
        """A PASSIVE WAL checkpoint on the worker thread (it fsyncs; the fast path turns
        SQLite's automatic checkpoints off so that nothing fsyncs on the event loop).

        Most run in the background on a second connection while calls go on, so their fsyncs
        overlap with the caller's work. Frames written meanwhile stay in the WAL, which grows
        while writes never pause; so every ``_SETTLE_EVERY``-th checkpoint *settles*: it holds
        the store's connection (calls wait on the worker, never on the loop), completes, and
        the next write starts the WAL over.
        """
        try:
            if settle:
                with self._lock:
                    if self._conn is not None:
                        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            elif not self._closed:
                if self._checkpointer is None:
                    self._checkpointer = sqlite3.connect(
                        self._path, isolation_level=None, check_same_thread=False
                    )
                self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass  # a later checkpoint (or closing the last connection) catches up
        finally:
            self._checkpointing = self._settling = False

    async def _call(
        self,
        fn: Callable[..., _T],
        *args: Any,
        write: bool = False,
        pages: int = 4,
        bulk: bool = False,
    ) -> _T:
        """Run ``fn(conn, *args)``: on the fast path when it may, else on the worker.

        ``write`` marks a write transaction, writing about ``pages`` WAL pages; ``bulk`` (work
        proportional to a whole thread) always goes to the worker.
        """
        if self._closed:
            raise StoreError("the sqlite store is closed")
        # a settling checkpoint goes first: calls queue behind it on the worker meanwhile
        fast = (self._fast_writes if write else self._fast_reads) and not bulk
        fast = fast and not self._settling
        if fast and self._conn is not None and self._lock.acquire(blocking=False):
            try:
                conn = self._conn
                if conn is not None:
                    try:
                        result = fn(conn, *args)
                    except sqlite3.Error as exc:
                        if not _is_busy(exc):
                            raise StoreError(f"sqlite error on {self._path}: {exc}") from exc
                        # another process holds a lock: the worker waits for it instead
                    else:
                        if write:
                            self._wrote(pages)
                        return result
            finally:
                self._lock.release()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, functools.partial(self._in_worker, fn, args, pages if write else 0)
            )
        except RuntimeError as exc:  # the executor was shut down under us
            if self._closed:
                raise StoreError("the sqlite store is closed") from exc
            raise

    async def setup(self) -> None:
        """Switch to WAL and apply the missing :data:`MIGRATIONS` in one immediate transaction.

        Idempotent, and safe when several processes call it at once (they take turns).

        Raises:
            StoreError: the database is unusable, or its schema is newer than this threadkit.
        """
        if self._closed:
            raise StoreError("the sqlite store is closed")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._executor, functools.partial(self._in_worker, _migrate, (), 0)
        )

    async def close(self) -> None:
        """Close the connection and stop the worker thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_conn)
        self._executor.shutdown(wait=False)

    def _close_conn(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        with self._lock:
            self._cache.clear()
            if self._conn is not None:
                self._conn.close()  # the last connection to close also checkpoints the WAL
                self._conn = None

    # ----------------------------------------------------------------------- threads

    async def create_thread(
        self, *, thread_id: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> ThreadInfo:
        """See :meth:`MessageStore.create_thread`."""
        meta = check_metadata(metadata)
        tid = thread_id or new_id("thread")
        return await self._call(_create_thread, tid, meta, write=True)

    async def get_thread(self, thread_id: str) -> ThreadInfo:
        """See :meth:`MessageStore.get_thread`."""
        return await self._call(_get_thread, thread_id)

    async def update_thread(self, thread_id: str, *, metadata: Mapping[str, str]) -> ThreadInfo:
        """See :meth:`MessageStore.update_thread`."""
        meta = check_metadata(metadata)
        return await self._call(_update_thread, self._cache, thread_id, meta, write=True)

    async def delete_thread(self, thread_id: str) -> bool:
        """See :meth:`MessageStore.delete_thread`."""
        return await self._call(_delete_thread, self._cache, thread_id, write=True, bulk=True)

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
        """See :meth:`MessageStore.list_threads`."""
        return await self._call(
            _list_threads, limit, after, before, order, dict(metadata or {}), updated_before
        )

    # ----------------------------------------------------------------------- messages

    async def append(
        self,
        thread_id: str,
        messages: Sequence[Message],
        *,
        idempotency_key: str | None = None,
    ) -> list[Message]:
        """See :meth:`MessageStore.append`: one immediate transaction per call."""
        prepared = prepare_messages(thread_id, messages, new_message_id=_new_message_id)
        calls, results = tool_ids(prepared)
        # encoded before the transaction (seq lives in its own column), to keep it short
        rows = [(m.id, _encoder.encode(m)) for m in prepared]
        return await self._call(
            _append,
            thread_id,
            prepared,
            rows,
            calls,
            results,
            idempotency_key,
            write=True,
            pages=3 + sum(len(r[1]) for r in rows) // 4096,
        )

    async def import_thread(
        self,
        thread_id: str,
        messages: Sequence[Message],
        *,
        metadata: Mapping[str, str] | None = None,
        created_at: int | None = None,
    ) -> ThreadInfo:
        """See :meth:`~threadkit.stores.base.SupportsImport.import_thread`: the thread and all
        its messages (ids, ``seq`` and timestamps kept) in one transaction, on the worker."""
        meta = check_metadata(metadata)
        check_import(thread_id, messages)
        if messages and messages[-1].seq > _SEQ_MASK:
            raise ValidationError(f"seq {messages[-1].seq} is over the limit of {_SEQ_MASK}")
        calls, results = tool_ids(messages)
        rows = [
            (
                m.seq,
                m.id,
                _encoder.encode(
                    m
                    if m.thread_id == thread_id
                    else msgspec.structs.replace(m, thread_id=thread_id)
                ),
            )
            for m in messages
        ]
        return await self._call(
            _import_thread,
            thread_id,
            meta,
            created_at,
            rows,
            calls,
            set(results),
            write=True,
            bulk=True,
        )

    async def get_message(self, thread_id: str, message_id: str) -> Message:
        """See :meth:`MessageStore.get_message`."""
        return await self._call(_get_message, thread_id, message_id)

    async def list_messages(
        self,
        thread_id: str,
        *,
        order: Order = "asc",
        limit: int | None = 20,
        after: str | None = None,
        before: str | None = None,
    ) -> Page[Message]:
        """See :meth:`MessageStore.list_messages`: messages held in the message cache come from
        it (after one indexed read checks it), the rest from one index range scan."""
        return await self._call(_list_messages, self._cache, thread_id, order, limit, after, before)

    async def tail(self, thread_id: str, n: int) -> list[Message]:
        """See :meth:`MessageStore.tail`: from the message cache where it holds them, else
        ``ORDER BY key DESC LIMIT n`` on the primary key."""
        if n < 0:
            raise ValidationError(f"tail needs n >= 0, not {n}")
        return await self._call(_tail, self._cache, thread_id, n)

    async def count_messages(self, thread_id: str) -> int:
        """See :meth:`MessageStore.count_messages`."""
        return (await self._call(_get_thread, thread_id)).message_count

    async def update_message(
        self, thread_id: str, message_id: str, *, metadata: Mapping[str, str]
    ) -> Message:
        """See :meth:`MessageStore.update_message`."""
        meta = check_metadata(metadata)
        return await self._call(
            _update_message, self._cache, thread_id, message_id, meta, write=True
        )

    async def delete_message(self, thread_id: str, message_id: str) -> bool:
        """See :meth:`MessageStore.delete_message`."""
        return await self._call(_delete_message, self._cache, thread_id, message_id, write=True)

    # ----------------------------------------------------------------------- runs

    async def create_run(self, run: Run) -> Run:
        """See :meth:`MessageStore.create_run`: the active-run check and the insert share one
        immediate transaction, so it is atomic across processes."""
        return await self._call(_create_run, run, _encoder.encode(run), write=True)

    async def get_run(self, thread_id: str, run_id: str) -> Run:
        """See :meth:`MessageStore.get_run`."""
        return await self._call(_get_run, thread_id, run_id)

    async def update_run(self, run: Run, *, expected_status: str | None = None) -> Run:
        """See :meth:`MessageStore.update_run`: compare-and-set in one immediate transaction."""
        return await self._call(_update_run, run, _encoder.encode(run), expected_status, write=True)

    async def list_runs(
        self,
        thread_id: str,
        *,
        order: Order = "desc",
        limit: int | None = 20,
        after: str | None = None,
        before: str | None = None,
    ) -> Page[Run]:
        """See :meth:`MessageStore.list_runs`."""
        return await self._call(_list_runs, thread_id, order, limit, after, before)

    async def get_active_run(self, thread_id: str) -> Run | None:
        """See :meth:`MessageStore.get_active_run`."""
        return await self._call(_get_active_run, thread_id)

    async def put_step(self, step: RunStep) -> RunStep:
        """See :meth:`MessageStore.put_step`."""
        return await self._call(_put_step, step, _encoder.encode(step), write=True)

    async def get_step(self, thread_id: str, run_id: str, step_id: str) -> RunStep:
        """See :meth:`MessageStore.get_step`."""
        return await self._call(_get_step, thread_id, run_id, step_id)

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
        """See :meth:`MessageStore.list_steps`."""
        return await self._call(_list_steps, thread_id, run_id, order, limit, after, before)

    # ----------------------------------------------------------------------- objects

    async def put_object(self, kind: str, object_id: str, data: bytes) -> StoredObject:
        """See :meth:`MessageStore.put_object`."""
        return await self._call(_put_object, kind, object_id, bytes(data), write=True)

    async def get_object(self, kind: str, object_id: str) -> StoredObject:
        """See :meth:`MessageStore.get_object`."""
        return await self._call(_get_object, kind, object_id)

    async def delete_object(self, kind: str, object_id: str) -> bool:
        """See :meth:`MessageStore.delete_object`."""
        return await self._call(_delete_object, kind, object_id, write=True)

    async def list_objects(
        self,
        kind: str,
        *,
        order: Order = "desc",
        limit: int | None = 20,
        after: str | None = None,
        before: str | None = None,
    ) -> Page[StoredObject]:
        """See :meth:`MessageStore.list_objects`."""
        return await self._call(_list_objects, kind, order, limit, after, before)


# --------------------------------------------------------------------------- operations
# Each operation below is one transaction (or one statement) on the store's connection, run by
# SQLiteStore._call on the event-loop thread (fast path) or on the worker thread. Any of them
# may be retried whole on the worker after SQLITE_BUSY, since a failed one has written nothing.


class _write:
    """One ``BEGIN IMMEDIATE`` transaction: the write lock is taken up front, so it never
    fails half-way on a lock upgrade; committed on success, rolled back on any exception."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        conn = self.conn
        if kind is None:
            try:
                conn.execute("COMMIT")
                return
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        if conn.in_transaction:
            conn.execute("ROLLBACK")


@contextmanager
def _read(conn: sqlite3.Connection) -> Iterator[None]:
    """One read transaction: every statement inside sees the same snapshot."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


def _migrate(conn: sqlite3.Connection) -> None:
    with _write(conn):
        conn.execute(
            "CREATE TABLE IF NOT EXISTS threadkit_migrations "
            "(v INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
        )
        row = conn.execute("SELECT max(v) FROM threadkit_migrations").fetchone()
        current = -1 if row[0] is None else int(row[0])
        if current >= len(MIGRATIONS):
            raise StoreError(
                f"the database schema is at version {current}, newer than this threadkit "
                f"supports ({len(MIGRATIONS) - 1}); upgrade threadkit"
            )
        for version in range(current + 1, len(MIGRATIONS)):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute("INSERT INTO threadkit_migrations VALUES (?, ?)", (version, now()))


def _thread_key(conn: sqlite3.Connection, thread_id: str) -> int:
    row = conn.execute("SELECT pos FROM threads WHERE id = ?", (thread_id,)).fetchone()
    if row is None:
        raise ThreadNotFoundError(f"no thread {thread_id}")
    return int(row[0])


def _create_thread(conn: sqlite3.Connection, tid: str, meta: dict[str, str]) -> ThreadInfo:
    ts = now()
    with _write(conn):
        try:
            conn.execute(
                "INSERT INTO threads (id, created_at, updated_at, metadata, msg_rev)"
                " VALUES (?, ?, ?, ?, ?)",
                (tid, ts, ts, _json_encoder.encode(meta).decode(), _new_rev()),
            )
        except sqlite3.IntegrityError as exc:
            raise ValidationError(f"thread {tid} already exists") from exc
    return ThreadInfo(id=tid, created_at=ts, updated_at=ts, metadata=meta)


def _get_thread(conn: sqlite3.Connection, thread_id: str) -> ThreadInfo:
    row = conn.execute(f"{_THREAD_SELECT} WHERE t.id = ?", (thread_id,)).fetchone()
    if row is None:
        raise ThreadNotFoundError(f"no thread {thread_id}")
    return _thread_info(row)


def _update_thread(
    conn: sqlite3.Connection, cache: _MessageCache, thread_id: str, meta: dict[str, str]
) -> ThreadInfo:
    rev = _new_rev()  # a new one, or the trigger for older writers would set one
    with _write(conn):
        tk, old_rev = _thread_rev(conn, thread_id)
        conn.execute(
            "UPDATE threads SET metadata = ?, updated_at = ?, msg_rev = ? WHERE pos = ?",
            (_json_encoder.encode(meta).decode(), now(), rev, tk),
        )
        info = _get_thread(conn, thread_id)
    cache.changed(thread_id, tk, old_rev, rev)
    return info


def _delete_thread(conn: sqlite3.Connection, cache: _MessageCache, thread_id: str) -> bool:
    cache.drop(thread_id)
    with _write(conn):
        row = conn.execute("SELECT pos FROM threads WHERE id = ?", (thread_id,)).fetchone()
        if row is None:
            return False
        tk = (row[0],)
        conn.execute("DELETE FROM messages WHERE key BETWEEN ? AND ?", _key_range(row[0]))
        for table in ("tool_calls", "idempotency_keys", "steps", "runs"):
            conn.execute(f"DELETE FROM {table} WHERE tk = ?", tk)
        conn.execute("DELETE FROM threads WHERE pos = ?", tk)
        return True


def _list_threads(
    conn: sqlite3.Connection,
    limit: int | None,
    after: str | None,
    before: str | None,
    order: Order,
    metadata: dict[str, str],
    updated_before: int | None,
) -> Page[ThreadInfo]:
    with _read(conn):
        after_pos = _thread_key(conn, after) if after is not None else None
        before_pos = _thread_key(conn, before) if before is not None else None
        where = "1"
        params: list[Any] = []
        if updated_before is not None:
            where += " AND max(t.updated_at, coalesce(m.appended_at, 0)) < ?"
            params.append(updated_before)
        for key, value in metadata.items():
            where += (
                " AND EXISTS (SELECT 1 FROM json_each(t.metadata) AS j"
                " WHERE j.key = ? AND j.value = ?)"
            )
            params += [key, value]
        tail, tail_params, reverse = _page_sql("t.pos", order, after_pos, before_pos, limit)
        rows = conn.execute(
            f"{_THREAD_SELECT} WHERE {where}{tail}", params + tail_params
        ).fetchall()
    rows, has_more = _trim(rows, limit, reverse)
    return page_of([_thread_info(r) for r in rows], [r[0] for r in rows], has_more)


def _append(
    conn: sqlite3.Connection,
    thread_id: str,
    prepared: list[Message],
    rows: list[tuple[str, bytes]],
    calls: list[str],
    results: list[str],
    key: str | None,
) -> list[Message]:
    with _write(conn):
        row = conn.execute(
            "SELECT t.pos, max(t.seq_floor, coalesce((SELECT key FROM messages"
            " WHERE key BETWEEN t.pos * 4294967296 AND t.pos * 4294967296 + 4294967295"
            " ORDER BY key DESC LIMIT 1) - t.pos * 4294967296, 0))"
            " FROM threads AS t WHERE t.id = ?",
            (thread_id,),
        ).fetchone()
        if row is None:
            raise ThreadNotFoundError(f"no thread {thread_id}")
        tk, last = row
        base = tk << _SEQ_BITS
        if key is not None:
            done = conn.execute(
                "SELECT first_seq, last_seq FROM idempotency_keys WHERE tk = ? AND key = ?",
                (tk, key),
            ).fetchone()
            if done is not None:
                stored = conn.execute(
                    "SELECT key, data FROM messages WHERE key BETWEEN ? AND ? ORDER BY key",
                    (base + done[0], base + done[1]),
                ).fetchall()
                return [_decode_message(k, d) for k, d in stored]
        if calls or results:
            existing: dict[str, bool] = {}
            for cid in {*calls, *results}:
                found = conn.execute(
                    "SELECT answered FROM tool_calls WHERE tk = ? AND call_id = ?", (tk, cid)
                ).fetchone()
                if found is not None:
                    existing[cid] = bool(found[0])
            check_tool_results(prepared, existing)
        first = last + 1
        if first + len(rows) > _SEQ_MASK:
            raise ValidationError(f"thread {thread_id} is full ({_SEQ_MASK} messages)")
        ts = now()
        try:
            conn.executemany(
                "INSERT INTO messages (key, tk, id, appended_at, data) VALUES (?, ?, ?, ?, ?)",
                [(base + first + i, tk, mid, ts, data) for i, (mid, data) in enumerate(rows)],
            )
        except sqlite3.IntegrityError as exc:
            raise ValidationError(
                f"a message id of the batch already exists in thread {thread_id}"
            ) from exc
        if calls:
            conn.executemany(
                "INSERT INTO tool_calls (tk, call_id) VALUES (?, ?)", [(tk, c) for c in calls]
            )
        if results:
            conn.executemany(
                "UPDATE tool_calls SET answered = 1 WHERE tk = ? AND call_id = ?",
                [(tk, r) for r in results],
            )
        if key is not None:
            conn.execute(
                "INSERT INTO idempotency_keys (tk, key, first_seq, last_seq) VALUES (?, ?, ?, ?)",
                (tk, key, first, first + len(rows) - 1),
            )
    for i, m in enumerate(prepared):
        m.seq = first + i
    return prepared


def _import_thread(
    conn: sqlite3.Connection,
    thread_id: str,
    meta: dict[str, str],
    created_at: int | None,
    rows: list[tuple[int, str, bytes]],
    calls: list[str],
    answered: set[str],
) -> ThreadInfo:
    ts = now()
    last = rows[-1][0] if rows else 0
    with _write(conn):
        try:
            cur = conn.execute(
                "INSERT INTO threads (id, created_at, updated_at, metadata, seq_floor, deleted,"
                " msg_rev) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    thread_id,
                    created_at or ts,
                    ts,
                    _json_encoder.encode(meta).decode(),
                    last,
                    last - len(rows),  # the gaps: messages deleted before the export
                    _new_rev(),
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise ValidationError(f"thread {thread_id} already exists") from exc
        tk = cur.lastrowid
        assert tk is not None
        base = tk << _SEQ_BITS
        conn.executemany(
            "INSERT INTO messages (key, tk, id, appended_at, data) VALUES (?, ?, ?, ?, ?)",
            [(base + seq, tk, mid, ts, data) for seq, mid, data in rows],
        )
        conn.executemany(
            "INSERT INTO tool_calls (tk, call_id, answered) VALUES (?, ?, ?)",
            [(tk, c, c in answered) for c in calls],
        )
    return ThreadInfo(
        id=thread_id,
        created_at=created_at or ts,
        updated_at=ts,
        metadata=meta,
        message_count=len(rows),
    )


def _message_key(conn: sqlite3.Connection, tk: int, message_id: str) -> int:
    """The message's key; MessageNotFoundError if the thread has no such id."""
    row = conn.execute(
        "SELECT key FROM messages WHERE tk = ? AND id = ?", (tk, message_id)
    ).fetchone()
    if row is None:
        raise MessageNotFoundError(f"no message {message_id} in the thread")
    return int(row[0])


def _message_row(conn: sqlite3.Connection, tk: int, message_id: str) -> tuple[int, bytes]:
    """The message's ``(key, data)``; MessageNotFoundError if the thread has no such id."""
    row = conn.execute(
        "SELECT key, data FROM messages WHERE tk = ? AND id = ?", (tk, message_id)
    ).fetchone()
    if row is None:
        raise MessageNotFoundError(f"no message {message_id} in the thread")
    return row  # type: ignore[no-any-return]


def _get_message(conn: sqlite3.Connection, thread_id: str, message_id: str) -> Message:
    with _read(conn):
        return _decode_message(*_message_row(conn, _thread_key(conn, thread_id), message_id))


# The thread's pos and msg_rev, and its newest message key (pos << 32 when it has none).
_HEAD_SQL = """SELECT pos, msg_rev, coalesce((SELECT key FROM messages
    WHERE key BETWEEN threads.pos * 4294967296 AND threads.pos * 4294967296 + 4294967295
    ORDER BY key DESC LIMIT 1), threads.pos * 4294967296)
FROM threads WHERE id = ?"""

_CATCH_UP = 256  # new messages read into a cached span at once (or, if more, as many as it has)


def _span_of(conn: sqlite3.Connection, cache: _MessageCache, thread_id: str) -> _Span:
    """The thread's cached span checked against the database and caught up with the messages
    appended since, or a new empty one (inside a read transaction).

    Raises:
        ThreadNotFoundError: no such thread.
    """
    row = conn.execute(_HEAD_SQL, (thread_id,)).fetchone()
    if row is None:
        cache.drop(thread_id)
        raise ThreadNotFoundError(f"no thread {thread_id}")
    pos, rev, top = row
    span = cache.get(thread_id)
    if (
        span is None
        or span.pos != pos
        or span.rev != rev
        or top - span.top > max(_CATCH_UP, len(span.keys))
    ):
        return _Span(pos, rev, top)
    if top > span.top:
        rows = _rows(conn, span.top + 1, top, True, None)
        span.above(rows, [_decode_message(k, d) for k, d in rows], top)
    return span


def _rows(
    conn: sqlite3.Connection, low: int, high: int, ascending: bool, count: int | None
) -> list[tuple[int, bytes]]:
    """``(key, data)`` of the messages with key in ``[low, high]``, at most ``count``."""
    if count is None:
        sql = "SELECT key, data FROM messages WHERE key BETWEEN ? AND ? ORDER BY key"
        return conn.execute(sql if ascending else f"{sql} DESC", (low, high)).fetchall()
    sql = (
        "SELECT key, data FROM messages WHERE key BETWEEN ? AND ? ORDER BY key "
        f"{'ASC' if ascending else 'DESC'} LIMIT ?"
    )
    return conn.execute(sql, (low, high, count)).fetchall()


def _scan(
    conn: sqlite3.Connection,
    span: _Span,
    low: int,
    high: int,
    ascending: bool,
    count: int | None,
) -> list[Message]:
    """The messages with key in ``[low, high]``, by key ascending or descending, at most
    ``count`` (``None``: all); ``span`` must be caught up (:func:`_span_of`).

    Messages the span holds come from it; the rest are read and decoded, and those that
    border the span (the ones just older than its oldest) join it. Returns a new list.
    """
    if low > high or count == 0:
        return []
    if low >= span.lo:  # the span holds every message in range
        keys = span.keys
        i = bisect.bisect_left(keys, low)
        j = bisect.bisect_right(keys, high)
        if ascending:
            return span.msgs[i : j if count is None else min(j, i + count)]
        out = span.msgs[i if count is None else max(i, j - count) : j]
        out.reverse()
        return out
    gap = min(high, span.lo - 1)  # the part of the range below the span
    borders = gap == span.lo - 1
    if ascending:
        rows = _rows(conn, low, gap, True, count)
        got = [_decode_message(k, d) for k, d in rows]
        if count is not None and len(rows) >= count:
            return got  # the page ends below the span
        if not borders:
            return got  # the whole range was below the span
        span.below(rows, got, low)
        return _scan(conn, span, low, high, ascending, count)
    head = _scan(conn, span, span.lo, high, False, count) if borders else []
    need = None if count is None else count - len(head)
    if need == 0:
        return head
    rows = _rows(conn, low, gap, False, need)
    got = [_decode_message(k, d) for k, d in rows]
    if borders:
        whole = need is None or len(rows) < need
        span.below(rows[::-1], got[::-1], low if whole else rows[-1][0])
    return head + got


def _list_messages(
    conn: sqlite3.Connection,
    cache: _MessageCache,
    thread_id: str,
    order: Order,
    limit: int | None,
    after: str | None,
    before: str | None,
) -> Page[Message]:
    with _read(conn):
        span = _span_of(conn, cache, thread_id)
        tk = span.pos
        a = _message_key(conn, tk, after) if after is not None else None
        b = _message_key(conn, tk, before) if before is not None else None
        low, high, ascending, reverse = _page_bounds(order, a, b, limit, *_key_range(tk))
        assert low is not None and high is not None
        data = _scan(conn, span, low, high, ascending, None if limit is None else limit + 1)
    cache.put(thread_id, span)
    data, has_more = _trim(data, limit, reverse)
    return Page(
        data=data,
        has_more=has_more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )


def _tail(conn: sqlite3.Connection, cache: _MessageCache, thread_id: str, n: int) -> list[Message]:
    with _read(conn):
        span = _span_of(conn, cache, thread_id)
        data = _scan(conn, span, *_key_range(span.pos), False, n)
    cache.put(thread_id, span)
    data.reverse()
    return data


def _thread_rev(conn: sqlite3.Connection, thread_id: str) -> tuple[int, int]:
    """The thread's ``(pos, msg_rev)``; ThreadNotFoundError if there is no such thread."""
    row = conn.execute("SELECT pos, msg_rev FROM threads WHERE id = ?", (thread_id,)).fetchone()
    if row is None:
        raise ThreadNotFoundError(f"no thread {thread_id}")
    return row  # type: ignore[no-any-return]


def _update_message(
    conn: sqlite3.Connection,
    cache: _MessageCache,
    thread_id: str,
    message_id: str,
    meta: dict[str, str],
) -> Message:
    rev = _new_rev()
    with _write(conn):
        tk, old_rev = _thread_rev(conn, thread_id)
        mkey, data = _message_row(conn, tk, message_id)
        m = msgspec.structs.replace(_message_decoder.decode(data), metadata=meta)
        blob = _encoder.encode(m)  # before seq is set: seq lives in the key
        conn.execute("UPDATE messages SET data = ? WHERE key = ?", (blob, mkey))
        conn.execute(
            "UPDATE threads SET updated_at = ?, msg_rev = ? WHERE pos = ?", (now(), rev, tk)
        )
    m.seq = mkey & _SEQ_MASK  # before the cache shares it
    cache.changed(thread_id, tk, old_rev, rev, mkey, m, len(blob))
    return m


def _delete_message(
    conn: sqlite3.Connection, cache: _MessageCache, thread_id: str, message_id: str
) -> bool:
    rev = _new_rev()
    with _write(conn):
        tk, old_rev = _thread_rev(conn, thread_id)
        try:
            mkey, data = _message_row(conn, tk, message_id)
        except MessageNotFoundError:
            return False
        calls, results = tool_ids([_message_decoder.decode(data)])
        for cid in calls:
            answered = conn.execute(
                "SELECT answered FROM tool_calls WHERE tk = ? AND call_id = ?", (tk, cid)
            ).fetchone()
            if answered is not None and answered[0]:
                raise ValidationError(
                    f"message {message_id} holds tool call {cid}, whose result is still in the "
                    "thread; delete the result first"
                )
        conn.executemany(
            "DELETE FROM tool_calls WHERE tk = ? AND call_id = ?", [(tk, c) for c in calls]
        )
        conn.executemany(
            "UPDATE tool_calls SET answered = 0 WHERE tk = ? AND call_id = ?",
            [(tk, r) for r in results],
        )
        # remember the highest seq given before it can go, so that it is never given again
        lo, hi = _key_range(tk)
        conn.execute(
            "UPDATE threads SET seq_floor = max(seq_floor, coalesce((SELECT key FROM messages"
            " WHERE key BETWEEN ?1 AND ?2 ORDER BY key DESC LIMIT 1) - ?1, 0)),"
            " deleted = deleted + 1, updated_at = ?3, msg_rev = ?4 WHERE pos = ?5",
            (lo, hi, now(), rev, tk),
        )
        conn.execute("DELETE FROM messages WHERE key = ?", (mkey,))
    cache.changed(thread_id, tk, old_rev, rev, mkey)
    return True


def _create_run(conn: sqlite3.Connection, run: Run, blob: bytes) -> Run:
    with _write(conn):
        tk = _thread_key(conn, run.thread_id)
        active = conn.execute(
            f"SELECT id FROM runs WHERE tk = ? AND status IN {_ACTIVE_SQL}"
            " AND (expires_at IS NULL OR expires_at > ?) ORDER BY pos DESC LIMIT 1",
            (tk, run.created_at),
        ).fetchone()
        if active is not None:
            raise ActiveRunError(run.thread_id, active[0])
        try:
            conn.execute(
                "INSERT INTO runs (tk, id, status, expires_at, data) VALUES (?, ?, ?, ?, ?)",
                (tk, run.id, str(run.status), run.expires_at, blob),
            )
        except sqlite3.IntegrityError as exc:
            raise ValidationError(f"run {run.id} already exists in thread {run.thread_id}") from exc
    return run


def _run_row(conn: sqlite3.Connection, tk: int, run_id: str) -> tuple[int, str, bytes]:
    row = conn.execute(
        "SELECT pos, status, data FROM runs WHERE tk = ? AND id = ?", (tk, run_id)
    ).fetchone()
    if row is None:
        raise RunNotFoundError(f"no run {run_id} in the thread")
    return row  # type: ignore[no-any-return]


def _get_run(conn: sqlite3.Connection, thread_id: str, run_id: str) -> Run:
    with _read(conn):
        return _run_decoder.decode(_run_row(conn, _thread_key(conn, thread_id), run_id)[2])


def _update_run(
    conn: sqlite3.Connection, run: Run, blob: bytes, expected_status: str | None
) -> Run:
    with _write(conn):
        tk = _thread_key(conn, run.thread_id)
        pos, status, _ = _run_row(conn, tk, run.id)
        if expected_status is not None and status != str(expected_status):
            raise InvalidRunStateError(
                f"run {run.id} is {status}, not {expected_status}", run_id=run.id, status=status
            )
        conn.execute(
            "UPDATE runs SET status = ?, expires_at = ?, data = ? WHERE pos = ?",
            (str(run.status), run.expires_at, blob, pos),
        )
    return run


def _keyed_page(
    conn: sqlite3.Connection,
    select: str,
    params: list[Any],
    cursor_sql: str,
    missing: type[NotFoundError],
    order: Order,
    limit: int | None,
    after: str | None,
    before: str | None,
) -> tuple[list[Any], bool]:
    """Rows of ``select`` (whose WHERE takes ``params``) paged on ``pos``; cursors are ids
    resolved with ``cursor_sql`` (``params`` plus the id)."""
    keys: list[int | None] = []
    for cursor in (after, before):
        if cursor is None:
            keys.append(None)
            continue
        row = conn.execute(cursor_sql, [*params, cursor]).fetchone()
        if row is None:
            raise missing(f"no item {cursor} to list from")
        keys.append(row[0])
    tail, tail_params, reverse = _page_sql("pos", order, keys[0], keys[1], limit)
    rows = conn.execute(select + tail, params + tail_params).fetchall()
    return _trim(rows, limit, reverse)


def _list_runs(
    conn: sqlite3.Connection,
    thread_id: str,
    order: Order,
    limit: int | None,
    after: str | None,
    before: str | None,
) -> Page[Run]:
    with _read(conn):
        tk = _thread_key(conn, thread_id)
        rows, has_more = _keyed_page(
            conn,
            "SELECT data FROM runs WHERE tk = ?",
            [tk],
            "SELECT pos FROM runs WHERE tk = ? AND id = ?",
            RunNotFoundError,
            order,
            limit,
            after,
            before,
        )
    runs = [_run_decoder.decode(r[0]) for r in rows]
    return page_of(runs, [r.id for r in runs], has_more)


def _get_active_run(conn: sqlite3.Connection, thread_id: str) -> Run | None:
    with _read(conn):
        tk = _thread_key(conn, thread_id)
        row = conn.execute(
            f"SELECT data FROM runs WHERE tk = ? AND status IN {_ACTIVE_SQL}"
            " ORDER BY pos DESC LIMIT 1",
            (tk,),
        ).fetchone()
    return None if row is None else _run_decoder.decode(row[0])


def _put_step(conn: sqlite3.Connection, step: RunStep, blob: bytes) -> RunStep:
    with _write(conn):
        tk = _thread_key(conn, step.thread_id)
        _run_row(conn, tk, step.run_id)
        conn.execute(
            "INSERT INTO steps (tk, run_id, id, data) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (tk, run_id, id) DO UPDATE SET data = excluded.data",
            (tk, step.run_id, step.id, blob),
        )
    return step


def _get_step(conn: sqlite3.Connection, thread_id: str, run_id: str, step_id: str) -> RunStep:
    with _read(conn):
        tk = _thread_key(conn, thread_id)
        _run_row(conn, tk, run_id)
        row = conn.execute(
            "SELECT data FROM steps WHERE tk = ? AND run_id = ? AND id = ?", (tk, run_id, step_id)
        ).fetchone()
    if row is None:
        raise RunStepNotFoundError(f"no step {step_id} in run {run_id}")
    return _step_decoder.decode(row[0])


def _list_steps(
    conn: sqlite3.Connection,
    thread_id: str,
    run_id: str,
    order: Order,
    limit: int | None,
    after: str | None,
    before: str | None,
) -> Page[RunStep]:
    with _read(conn):
        tk = _thread_key(conn, thread_id)
        _run_row(conn, tk, run_id)
        rows, has_more = _keyed_page(
            conn,
            "SELECT data FROM steps WHERE tk = ? AND run_id = ?",
            [tk, run_id],
            "SELECT pos FROM steps WHERE tk = ? AND run_id = ? AND id = ?",
            RunStepNotFoundError,
            order,
            limit,
            after,
            before,
        )
    steps = [_step_decoder.decode(r[0]) for r in rows]
    return page_of(steps, [s.id for s in steps], has_more)


def _put_object(conn: sqlite3.Connection, kind: str, object_id: str, data: bytes) -> StoredObject:
    with _write(conn):
        row = conn.execute(
            "SELECT created_at FROM objects WHERE kind = ? AND id = ?", (kind, object_id)
        ).fetchone()
        if row is None:
            created = now()
            conn.execute(
                "INSERT INTO objects (kind, id, created_at, data) VALUES (?, ?, ?, ?)",
                (kind, object_id, created, data),
            )
        else:
            created = row[0]
            conn.execute(
                "UPDATE objects SET data = ? WHERE kind = ? AND id = ?", (data, kind, object_id)
            )
    return StoredObject(id=object_id, kind=kind, created_at=created, data=data)


def _get_object(conn: sqlite3.Connection, kind: str, object_id: str) -> StoredObject:
    row = conn.execute(
        "SELECT created_at, data FROM objects WHERE kind = ? AND id = ?", (kind, object_id)
    ).fetchone()
    if row is None:
        raise ObjectNotFoundError(f"no {kind} object {object_id}")
    return StoredObject(id=object_id, kind=kind, created_at=row[0], data=bytes(row[1]))


def _delete_object(conn: sqlite3.Connection, kind: str, object_id: str) -> bool:
    with _write(conn):
        cur = conn.execute("DELETE FROM objects WHERE kind = ? AND id = ?", (kind, object_id))
        return cur.rowcount > 0


def _list_objects(
    conn: sqlite3.Connection,
    kind: str,
    order: Order,
    limit: int | None,
    after: str | None,
    before: str | None,
) -> Page[StoredObject]:
    with _read(conn):
        rows, has_more = _keyed_page(
            conn,
            "SELECT id, created_at, data FROM objects WHERE kind = ?",
            [kind],
            "SELECT pos FROM objects WHERE kind = ? AND id = ?",
            ObjectNotFoundError,
            order,
            limit,
            after,
            before,
        )
    objects = [StoredObject(id=i, kind=kind, created_at=c, data=bytes(d)) for i, c, d in rows]
    return page_of(objects, [o.id for o in objects], has_more)
