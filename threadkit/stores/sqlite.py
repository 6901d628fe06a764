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
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import threading
import time
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
]
"""Schema migrations, append-only: ``MIGRATIONS[v]`` brings the schema to version ``v``.

Never edit a released entry; add a new one. :meth:`SQLiteStore.setup` applies the missing ones
in one ``BEGIN IMMEDIATE`` transaction and records each in ``threadkit_migrations``.
"""


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

    ``after``/``before`` are the cursor items' keys; ``lo``/``hi`` optional inclusive bounds of
    the whole listing. They are merged here into at most one lower and one upper bound, so that
    SQLite seeks straight to the page (given two lower bounds it seeks on one and filters on
    the other, which costs O(position)). Returns the SQL, its parameters and whether the rows
    come back in the reverse of the asked order (the ``before``-only case, which scans from the
    cursor outwards). One extra row is fetched to tell ``has_more``.
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
    reverse = before is not None and after is None
    ascending = up != reverse
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

    Args:
        path: the database file (created when missing), or ``":memory:"`` for a private
            in-memory database that lives as long as this store.
        synchronous: ``"normal"`` or ``"full"``, see above.
        busy_timeout: seconds to wait for another connection's lock (on the worker thread).
        fast_path: try calls on the event-loop thread first, as described above.

    Raises:
        ConfigError: (key ``store``) a bad ``synchronous`` or ``busy_timeout``.
    """

    schemes = ("sqlite",)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "normal",
        busy_timeout: float = 30.0,
        fast_path: bool = True,
    ) -> None:
        sync = str(synchronous).lower()
        if sync not in ("normal", "full"):
            raise ConfigError(
                f"synchronous must be 'normal' or 'full', not {synchronous!r}", key="store"
            )
        if not busy_timeout >= 0:
            raise ConfigError(f"busy_timeout must be >= 0 seconds, not {busy_timeout}", key="store")
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
    ) -> SQLiteStore:
        """Open ``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``sqlite:///:memory:``.

        The query may carry ``synchronous`` (``normal``/``full``) and ``busy_timeout``
        (seconds); keyword arguments win over the query.

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
        unknown = set(query) - {"synchronous", "busy_timeout"}
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
        return cls(path or ":memory:", synchronous=sync, busy_timeout=timeout, fast_path=fast_path)

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
        return await self._call(_update_thread, thread_id, meta, write=True)

    async def delete_thread(self, thread_id: str) -> bool:
        """See :meth:`MessageStore.delete_thread`."""
        return await self._call(_delete_thread, thread_id, write=True, bulk=True)

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
        """See :meth:`MessageStore.list_messages`; one index range scan."""
        return await self._call(_list_messages, thread_id, order, limit, after, before)

    async def tail(self, thread_id: str, n: int) -> list[Message]:
        """See :meth:`MessageStore.tail`; ``ORDER BY seq DESC LIMIT n`` on the primary key."""
        if n < 0:
            raise ValidationError(f"tail needs n >= 0, not {n}")
        return await self._call(_tail, thread_id, n)

    async def count_messages(self, thread_id: str) -> int:
        """See :meth:`MessageStore.count_messages`."""
        return (await self._call(_get_thread, thread_id)).message_count

    async def update_message(
        self, thread_id: str, message_id: str, *, metadata: Mapping[str, str]
    ) -> Message:
        """See :meth:`MessageStore.update_message`."""
        meta = check_metadata(metadata)
        return await self._call(_update_message, thread_id, message_id, meta, write=True)

    async def delete_message(self, thread_id: str, message_id: str) -> bool:
        """See :meth:`MessageStore.delete_message`."""
        return await self._call(_delete_message, thread_id, message_id, write=True)

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
                "INSERT INTO threads (id, created_at, updated_at, metadata) VALUES (?, ?, ?, ?)",
                (tid, ts, ts, _json_encoder.encode(meta).decode()),
            )
        except sqlite3.IntegrityError as exc:
            raise ValidationError(f"thread {tid} already exists") from exc
    return ThreadInfo(id=tid, created_at=ts, updated_at=ts, metadata=meta)


def _get_thread(conn: sqlite3.Connection, thread_id: str) -> ThreadInfo:
    row = conn.execute(f"{_THREAD_SELECT} WHERE t.id = ?", (thread_id,)).fetchone()
    if row is None:
        raise ThreadNotFoundError(f"no thread {thread_id}")
    return _thread_info(row)


def _update_thread(conn: sqlite3.Connection, thread_id: str, meta: dict[str, str]) -> ThreadInfo:
    with _write(conn):
        cur = conn.execute(
            "UPDATE threads SET metadata = ?, updated_at = ? WHERE id = ?",
            (_json_encoder.encode(meta).decode(), now(), thread_id),
        )
        if cur.rowcount == 0:
            raise ThreadNotFoundError(f"no thread {thread_id}")
        return _get_thread(conn, thread_id)


def _delete_thread(conn: sqlite3.Connection, thread_id: str) -> bool:
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
                "INSERT INTO threads (id, created_at, updated_at, metadata, seq_floor, deleted)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    thread_id,
                    created_at or ts,
                    ts,
                    _json_encoder.encode(meta).decode(),
                    last,
                    last - len(rows),  # the gaps: messages deleted before the export
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


def _list_messages(
    conn: sqlite3.Connection,
    thread_id: str,
    order: Order,
    limit: int | None,
    after: str | None,
    before: str | None,
) -> Page[Message]:
    with _read(conn):
        tk = _thread_key(conn, thread_id)
        a = _message_row(conn, tk, after)[0] if after is not None else None
        b = _message_row(conn, tk, before)[0] if before is not None else None
        tail, params, reverse = _page_sql("key", order, a, b, limit, *_key_range(tk))
        rows = conn.execute(f"SELECT key, data FROM messages WHERE 1{tail}", params).fetchall()
    rows, has_more = _trim(rows, limit, reverse)
    data = [_decode_message(k, d) for k, d in rows]
    return page_of(data, [m.id for m in data], has_more)


def _tail(conn: sqlite3.Connection, thread_id: str, n: int) -> list[Message]:
    with _read(conn):
        tk = _thread_key(conn, thread_id)
        if n == 0:
            return []
        rows = conn.execute(
            "SELECT key, data FROM messages WHERE key BETWEEN ? AND ? ORDER BY key DESC LIMIT ?",
            (*_key_range(tk), n),
        ).fetchall()
    rows.reverse()
    return [_decode_message(k, d) for k, d in rows]


def _update_message(
    conn: sqlite3.Connection, thread_id: str, message_id: str, meta: dict[str, str]
) -> Message:
    with _write(conn):
        tk = _thread_key(conn, thread_id)
        mkey, data = _message_row(conn, tk, message_id)
        m = msgspec.structs.replace(_message_decoder.decode(data), metadata=meta)
        conn.execute("UPDATE messages SET data = ? WHERE key = ?", (_encoder.encode(m), mkey))
        conn.execute("UPDATE threads SET updated_at = ? WHERE pos = ?", (now(), tk))
    m.seq = mkey & _SEQ_MASK
    return m


def _delete_message(conn: sqlite3.Connection, thread_id: str, message_id: str) -> bool:
    with _write(conn):
        tk = _thread_key(conn, thread_id)
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
            " deleted = deleted + 1, updated_at = ?3 WHERE pos = ?4",
            (lo, hi, now(), tk),
        )
        conn.execute("DELETE FROM messages WHERE key = ?", (mkey,))
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
