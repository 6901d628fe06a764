"""``PostgresStore``: threads, messages, runs and objects in PostgreSQL (psycopg 3, async pool).

Open it with ``PostgresStore.from_url("postgresql://user@127.0.0.1:5432/app?schema=threadkit")``
(needs ``pip install "threadkit[postgres]"``), then create the tables once with
``await store.setup()`` (or ``threadkit store setup URL``). Using the store before that raises
:class:`~threadkit.errors.StoreError` saying so.

**Schema and migrations.** Every table lives in one schema (``threadkit`` unless ``schema=`` or
``?schema=`` says otherwise). :data:`MIGRATIONS` is an append-only list of SQL statements whose
index is the schema version; ``setup()`` applies the missing ones and records each in
``<schema>.threadkit_migrations``. ``setup()`` is idempotent, holds a transaction-scoped advisory
lock so two processes can run it at once, and runs inside one transaction: no statement needs to
run outside a transaction block (no ``CREATE INDEX CONCURRENTLY``, langgraph #7630), so
``setup(connection=conn)`` can also run inside a transaction the caller owns.

**Storage.** Messages, runs and run steps are stored as msgspec MessagePack (``bytea``) next to
the indexed columns the store queries (``thread_id``, ``seq``, ``id``, ``status``,
``expires_at``...); they are decoded with module-level decoders. Thread metadata is ``jsonb``
(GIN-indexed) so ``list_threads(metadata=...)`` filters in the server with ``@>``.

**Costs.** ``tail(n)`` and cursor listings read one window of the ``(thread_id, seq)`` primary key
(or the ``(…, ord)`` index of runs, steps and objects): O(log N + limit) in both orders.
``count_messages`` reads a counter kept on the thread row.

**Concurrency.** An append locks its thread row (``SELECT ... FOR UPDATE``), checks the
idempotency key and the tool calls, inserts the batch with consecutive ``seq`` numbers (unique
per thread) and commits, so appends from any number of processes never interleave or reuse a
number. ``create_run`` takes the same row lock before looking for an active run. ``update_run``
with ``expected_status`` is one compare-and-set ``UPDATE``. Deleting a thread cascades through
foreign keys (``ON DELETE CASCADE``).

**PgBouncer / Supavisor.** In *transaction* pooling mode server-side prepared statements break
(a statement prepared on one server connection is missing on the next; langgraph #5675). Open the
store with ``prepare=False`` (or ``?prepare=false``) to turn them off (psycopg
``prepare_threshold=None``); every query is then sent unprepared.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

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
    RunStatus,
    RunStep,
    ThreadInfo,
    ToolCallContent,
    ToolResultContent,
)

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

__all__ = ["MIGRATIONS", "PostgresStore"]

_ENC = msgspec.msgpack.Encoder()
_MSG = msgspec.msgpack.Decoder(Message)
_RUN = msgspec.msgpack.Decoder(Run)
_STEP = msgspec.msgpack.Decoder(RunStep)
_META = msgspec.json.Decoder(dict[str, str])
_JSON = msgspec.json.Encoder()

_ACTIVE = tuple(s.value for s in RunStatus if s.is_active)
_ACTIVE_SQL = ", ".join(f"'{s}'" for s in _ACTIVE)
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SETUP_HINT = "run `await store.setup()` (or `threadkit store setup URL`) first"

MIGRATIONS: list[str] = [
    # 0: threads, with the counters an append keeps under the row lock
    """CREATE TABLE {schema}.threads (
        id text PRIMARY KEY,
        ord bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL,
        metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
        last_seq bigint NOT NULL DEFAULT 0,
        message_count bigint NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX threads_metadata ON {schema}.threads USING gin (metadata jsonb_path_ops)",
    "CREATE INDEX threads_updated ON {schema}.threads (updated_at)",
    # 3: messages; the primary key is the window index of listings and tail(n)
    """CREATE TABLE {schema}.messages (
        thread_id text NOT NULL REFERENCES {schema}.threads (id) ON DELETE CASCADE,
        seq bigint NOT NULL,
        id text NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (thread_id, seq),
        UNIQUE (thread_id, id)
    )""",
    # 4: tool calls of each thread and the message that answered each (NULL while open)
    """CREATE TABLE {schema}.tool_calls (
        thread_id text NOT NULL REFERENCES {schema}.threads (id) ON DELETE CASCADE,
        call_id text NOT NULL,
        message_id text NOT NULL,
        answered_by text,
        PRIMARY KEY (thread_id, call_id)
    )""",
    "CREATE INDEX tool_calls_message ON {schema}.tool_calls (thread_id, message_id)",
    """CREATE INDEX tool_calls_answer ON {schema}.tool_calls (thread_id, answered_by)
        WHERE answered_by IS NOT NULL""",
    # 7: idempotency keys of appends
    """CREATE TABLE {schema}.idempotency_keys (
        thread_id text NOT NULL REFERENCES {schema}.threads (id) ON DELETE CASCADE,
        key text NOT NULL,
        message_ids text[] NOT NULL,
        PRIMARY KEY (thread_id, key)
    )""",
    # 8: runs
    """CREATE TABLE {schema}.runs (
        thread_id text NOT NULL REFERENCES {schema}.threads (id) ON DELETE CASCADE,
        id text NOT NULL,
        ord bigint GENERATED ALWAYS AS IDENTITY,
        status text NOT NULL,
        expires_at bigint,
        data bytea NOT NULL,
        PRIMARY KEY (thread_id, id)
    )""",
    "CREATE UNIQUE INDEX runs_order ON {schema}.runs (thread_id, ord)",
    f"""CREATE INDEX runs_active ON {{schema}}.runs (thread_id, ord)
        WHERE status IN ({_ACTIVE_SQL})""",
    # 11: run steps
    """CREATE TABLE {schema}.run_steps (
        thread_id text NOT NULL,
        run_id text NOT NULL,
        id text NOT NULL,
        ord bigint GENERATED ALWAYS AS IDENTITY,
        data bytea NOT NULL,
        PRIMARY KEY (thread_id, run_id, id),
        FOREIGN KEY (thread_id, run_id) REFERENCES {schema}.runs (thread_id, id)
            ON DELETE CASCADE
    )""",
    "CREATE UNIQUE INDEX run_steps_order ON {schema}.run_steps (thread_id, run_id, ord)",
    # 13: stored objects
    """CREATE TABLE {schema}.objects (
        kind text NOT NULL,
        id text NOT NULL,
        ord bigint GENERATED ALWAYS AS IDENTITY,
        created_at bigint NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (kind, id)
    )""",
    "CREATE UNIQUE INDEX objects_order ON {schema}.objects (kind, ord)",
]
"""Append-only schema migrations: ``MIGRATIONS[v]`` takes the schema to version ``v``.

Each is one SQL statement with ``{schema}`` standing for the quoted schema name. Never edit or
reorder an entry that has shipped; add new ones at the end."""


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lock_key(schema: str) -> int:
    """A stable signed 64-bit advisory-lock key for migrating ``schema``."""
    digest = hashlib.blake2b(f"threadkit-migrate:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _fetch_count(limit: int | None) -> int | None:
    if limit is None:
        return None
    if limit < 0:
        raise ValidationError(f"limit must be >= 0 or None, got {limit}")
    return limit + 1


def _check_order(order: str) -> None:
    if order not in ("asc", "desc"):
        raise ValidationError(f"order must be 'asc' or 'desc', got {order!r}")


def _trim(items: list[Any], limit: int | None, backwards: bool) -> tuple[list[Any], bool]:
    """Cut a window read with :func:`_fetch_count` to ``limit``; reverse a backwards read."""
    has_more = limit is not None and len(items) > limit
    if has_more:
        items = items[:limit]
    if backwards:
        items.reverse()
    return items, has_more


class PostgresStore(BaseStore):
    """A :class:`~threadkit.stores.base.MessageStore` in PostgreSQL (psycopg 3 async pool).

    Safe for many processes and hosts at once (row locks, unique indexes, compare-and-set
    updates); see the module docstring for the schema, the costs and PgBouncer use.

    Args:
        conninfo: a libpq connection URL or string, without threadkit's own parameters.
        schema: the schema holding every table (a plain identifier, default ``threadkit``).
        prepare: use server-side prepared statements (psycopg's default threshold of 5
            executions); ``False`` for PgBouncer/Supavisor transaction pooling.
        min_size: connections the pool keeps open.
        max_size: most connections the pool opens.
        url: the URL for :attr:`locator` (password removed); built from ``conninfo`` if absent.
        **pool_options: passed to ``psycopg_pool.AsyncConnectionPool`` (``timeout=`` seconds to
            wait for a connection, ``max_idle=``...).

    Raises:
        MissingExtraError: psycopg or psycopg_pool is not installed.
        ConfigError: (key ``store``) a schema name that is not a plain identifier.
    """

    schemes = ("postgresql", "postgres")

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "threadkit",
        prepare: bool = True,
        min_size: int = 1,
        max_size: int = 10,
        url: str | None = None,
        **pool_options: Any,
    ) -> None:
        self._pg = require("psycopg", "postgres", "PostgresStore")
        pool_mod = require("psycopg_pool", "postgres", "PostgresStore")
        if not _SCHEMA_NAME.match(schema):
            raise ConfigError(
                f"schema {schema!r} is not a plain identifier (letters, digits, _)", key="store"
            )
        self._schema = schema
        self._prepare = prepare
        self._url = url or _locator(conninfo, schema, prepare)
        kwargs: dict[str, Any] = {"autocommit": True}
        if not prepare:
            kwargs["prepare_threshold"] = None
        self._pool: AsyncConnectionPool = pool_mod.AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs=kwargs,
            open=False,
            **pool_options,
        )
        self._opened = False
        self._ready = False
        s = _quote_ident(schema)
        self._s = s
        self._threads = f"{s}.threads"
        self._messages = f"{s}.messages"
        self._tools = f"{s}.tool_calls"
        self._keys = f"{s}.idempotency_keys"
        self._runs = f"{s}.runs"
        self._steps = f"{s}.run_steps"
        self._objects = f"{s}.objects"
        self._migrations = f"{s}.threadkit_migrations"

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        schema: str | None = None,
        prepare: bool | None = None,
        min_size: int = 1,
        max_size: int = 10,
        **pool_options: Any,
    ) -> PostgresStore:
        """Open a store from a ``postgresql://`` (or ``postgres://``) URL; no connection is made
        until first use.

        Args:
            url: e.g. ``postgresql://app:secret@db:5432/app?schema=tk&prepare=false``. The query
                parameters ``schema`` and ``prepare`` configure the store; the others
                (``sslmode``...) go to libpq.
            schema: overrides ``?schema=`` (default ``threadkit``).
            prepare: overrides ``?prepare=`` (default true); see the class docs.
            min_size: connections the pool keeps open.
            max_size: most connections the pool opens.
            **pool_options: passed to ``psycopg_pool.AsyncConnectionPool``.

        Raises:
            MissingExtraError: psycopg is not installed (``pip install "threadkit[postgres]"``).
            ConfigError: (key ``store``) a malformed ``prepare`` value or schema name.
        """
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        own = {k: v for k, v in query if k in ("schema", "prepare")}
        rest = [(k, v) for k, v in query if k not in ("schema", "prepare")]
        if schema is None:
            schema = own.get("schema") or "threadkit"
        if prepare is None:
            flag = own.get("prepare", "true").lower()
            if flag not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ConfigError(f"prepare must be true or false, got {flag!r}", key="store")
            prepare = flag in ("true", "1", "yes", "on")
        scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
        conninfo = urlunsplit(parts._replace(scheme=scheme, query=urlencode(rest)))
        return cls(
            conninfo,
            schema=schema,
            prepare=prepare,
            min_size=min_size,
            max_size=max_size,
            url=_locator(conninfo, schema, prepare),
            **pool_options,
        )

    @property
    def locator(self) -> str:
        """The URL that reopens this store: password removed, ``schema`` (and
        ``prepare=false``) kept."""
        return self._url

    @property
    def schema(self) -> str:
        """The schema holding the store's tables."""
        return self._schema

    @property
    def pool(self) -> AsyncConnectionPool:
        """The underlying ``psycopg_pool.AsyncConnectionPool`` (opened on first use)."""
        return self._pool

    async def close(self) -> None:
        """Close the pool's connections; the store is unusable afterwards."""
        with self._translate():
            await self._pool.close()

    # ------------------------------------------------------------------ schema
    async def setup(self, *, connection: AsyncConnection[Any] | None = None) -> None:
        """Create the schema or bring it to the newest version (see :data:`MIGRATIONS`).

        Idempotent; safe when several processes call it at once (a transaction-scoped
        advisory lock serializes them) and inside a transaction (nothing needs autocommit).

        Args:
            connection: run the migrations on this connection, inside its current transaction
                (or one opened for them); the caller commits. Default: a pool connection, in a
                transaction of its own.

        Raises:
            StoreError: the database refused a statement, or is unreachable.
        """
        with self._translate():
            if connection is not None:
                await self._migrate(connection)
            else:
                await self._open()
                async with self._pool.connection() as conn:
                    await self._migrate(conn)
                self._ready = True

    async def _migrate(self, conn: AsyncConnection[Any]) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(self._schema),))
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self._s}")
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._migrations} "
                "(v integer PRIMARY KEY, applied_at bigint NOT NULL)"
            )
            cur = await conn.execute(f"SELECT coalesce(max(v), -1) FROM {self._migrations}")
            row = await cur.fetchone()
            done = int(row[0]) if row else -1
            for version in range(done + 1, len(MIGRATIONS)):
                await conn.execute(MIGRATIONS[version].replace("{schema}", self._s))
                await conn.execute(
                    f"INSERT INTO {self._migrations} (v, applied_at) VALUES (%s, %s)",
                    (version, now()),
                )

    async def _open(self) -> None:
        if not self._opened:
            await self._pool.open()
            self._opened = True

    # ------------------------------------------------------------------ plumbing
    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        pg = self._pg
        try:
            yield
        except (pg.errors.UndefinedTable, pg.errors.InvalidSchemaName) as exc:
            self._ready = False
            raise StoreError(
                f"the threadkit tables are missing from schema {self._schema!r}; {_SETUP_HINT}"
            ) from exc
        except pg.Error as exc:
            raise StoreError(f"PostgreSQL failed: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A pool connection (autocommit) with driver errors translated."""
        with self._translate():
            await self._open()
            async with self._pool.connection() as conn:
                if not self._ready:
                    await self._check_schema(conn)
                yield conn

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A pool connection inside a transaction (committed unless an exception escapes)."""
        async with self._conn() as conn, conn.transaction():
            yield conn

    async def _check_schema(self, conn: AsyncConnection[Any]) -> None:
        try:
            cur = await conn.execute(f"SELECT max(v) FROM {self._migrations}")
        except (self._pg.errors.UndefinedTable, self._pg.errors.InvalidSchemaName) as exc:
            raise StoreError(
                f"the PostgresStore schema {self._schema!r} is not set up; {_SETUP_HINT}"
            ) from exc
        row = await cur.fetchone()
        version = -1 if row is None or row[0] is None else int(row[0])
        if version < len(MIGRATIONS) - 1:
            raise StoreError(
                f"the PostgresStore schema {self._schema!r} is at version {version}, this "
                f"threadkit needs {len(MIGRATIONS) - 1}; {_SETUP_HINT}"
            )
        self._ready = True

    async def _one(self, conn: AsyncConnection[Any], sql: str, args: Sequence[Any] = ()) -> Any:
        cur = await conn.execute(sql, args)
        return await cur.fetchone()

    async def _all(
        self, conn: AsyncConnection[Any], sql: str, args: Sequence[Any] = ()
    ) -> list[Any]:
        cur = await conn.execute(sql, args)
        return await cur.fetchall()

    async def _thread_exists(self, conn: AsyncConnection[Any], thread_id: str) -> bool:
        row = await self._one(conn, f"SELECT 1 FROM {self._threads} WHERE id = %s", (thread_id,))
        return row is not None

    async def _cursors(
        self,
        conn: AsyncConnection[Any],
        parent_sql: str,
        parent_args: Sequence[Any],
        position_sql: str,
        position_args: Sequence[Any],
        after: str | None,
        before: str | None,
    ) -> tuple[bool, Any, Any]:
        """Whether the parent exists, and the ``after``/``before`` positions (None = unknown).

        ``position_sql`` selects the order column of one item; its last placeholder is the id.
        """
        sql = f"SELECT ({parent_sql}), ({position_sql}), ({position_sql})"
        row = await self._one(
            conn, sql, [*parent_args, *position_args, after, *position_args, before]
        )
        assert row is not None
        return bool(row[0]), row[1], row[2]

    async def _window(
        self,
        conn: AsyncConnection[Any],
        *,
        select: str,
        where: str,
        args: Sequence[Any],
        column: str,
        order: Order,
        limit: int | None,
        low_high: tuple[Any, Any],
        backwards: bool,
    ) -> list[Any]:
        """Rows strictly between the two cursor positions, read from the right side.

        ``low_high`` are the ``after``/``before`` positions (None = open); the rows come back
        in read order (see :func:`_trim`).
        """
        after_pos, before_pos = low_high
        lower, upper = (after_pos, before_pos) if order == "asc" else (before_pos, after_pos)
        conds = [where]
        values = list(args)
        if lower is not None:
            conds.append(f"{column} > %s")
            values.append(lower)
        if upper is not None:
            conds.append(f"{column} < %s")
            values.append(upper)
        up = (order == "asc") != backwards
        sql = f"{select} WHERE {' AND '.join(conds)} ORDER BY {column} {'ASC' if up else 'DESC'}"
        fetch = _fetch_count(limit)
        if fetch is not None:
            sql += " LIMIT %s"
            values.append(fetch)
        return await self._all(conn, sql, values)

    # ------------------------------------------------------------------ threads
    async def create_thread(
        self, *, thread_id: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> ThreadInfo:
        """Create an empty thread (id ``thread_...`` generated when not given).

        Raises:
            ValidationError: a thread with ``thread_id`` exists, or bad metadata.
            StoreError: PostgreSQL failed or the schema is not set up.
        """
        meta = check_metadata(metadata)
        tid = thread_id or new_id("thread")
        ts = now()
        async with self._conn() as conn:
            row = await self._one(
                conn,
                f"INSERT INTO {self._threads} (id, created_at, updated_at, metadata) "
                "VALUES (%s, %s, %s, %s::jsonb) ON CONFLICT (id) DO NOTHING RETURNING 1",
                (tid, ts, ts, _JSON.encode(meta).decode()),
            )
        if row is None:
            raise ValidationError(f"thread {tid} already exists")
        return ThreadInfo(id=tid, created_at=ts, updated_at=ts, metadata=meta)

    _THREAD_COLS = "id, created_at, updated_at, metadata::text, message_count"

    async def get_thread(self, thread_id: str) -> ThreadInfo:
        """The thread's registry entry. Raises ThreadNotFoundError, StoreError."""
        async with self._conn() as conn:
            row = await self._one(
                conn, f"SELECT {self._THREAD_COLS} FROM {self._threads} WHERE id = %s", (thread_id,)
            )
        if row is None:
            raise ThreadNotFoundError(f"no thread {thread_id}")
        return _thread(row)

    async def update_thread(self, thread_id: str, *, metadata: Mapping[str, str]) -> ThreadInfo:
        """Replace the thread's metadata. Raises ThreadNotFoundError, ValidationError, StoreError."""
        meta = check_metadata(metadata)
        async with self._conn() as conn:
            row = await self._one(
                conn,
                f"UPDATE {self._threads} SET metadata = %s::jsonb, updated_at = %s WHERE id = %s "
                f"RETURNING {self._THREAD_COLS}",
                (_JSON.encode(meta).decode(), now(), thread_id),
            )
        if row is None:
            raise ThreadNotFoundError(f"no thread {thread_id}")
        return _thread(row)

    async def delete_thread(self, thread_id: str) -> bool:
        """Delete the thread; its messages, tool calls, keys, runs and steps go with it
        (``ON DELETE CASCADE``). False if it did not exist. Raises StoreError."""
        async with self._conn() as conn:
            row = await self._one(
                conn, f"DELETE FROM {self._threads} WHERE id = %s RETURNING 1", (thread_id,)
            )
        return row is not None

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
        """Threads by creation (``desc`` = newest first), cursor-paginated; filters run in the
        server (``metadata @> ...`` on a GIN index, ``updated_at < ...``).

        Raises:
            ThreadNotFoundError: ``after``/``before`` names no thread.
            ValidationError: negative ``limit`` or a bad ``order``.
            StoreError: PostgreSQL failed or the schema is not set up.
        """
        _check_order(order)
        where = ["true"]
        args: list[Any] = []
        if metadata:
            where.append("metadata @> %s::jsonb")
            args.append(_JSON.encode(dict(metadata)).decode())
        if updated_before is not None:
            where.append("updated_at < %s")
            args.append(updated_before)
        async with self._conn() as conn:
            positions: tuple[Any, Any] = (None, None)
            if after is not None or before is not None:
                _, a, b = await self._cursors(
                    conn,
                    "true",
                    (),
                    f"SELECT ord FROM {self._threads} WHERE id = %s",
                    (),
                    after,
                    before,
                )
                for name, given, pos in (("after", after, a), ("before", before, b)):
                    if given is not None and pos is None:
                        raise ThreadNotFoundError(f"no thread {given} ({name} cursor)")
                positions = (a, b)
            backwards = after is None and before is not None
            rows = await self._window(
                conn,
                select=f"SELECT {self._THREAD_COLS} FROM {self._threads}",
                where=" AND ".join(where),
                args=args,
                column="ord",
                order=order,
                limit=limit,
                low_high=positions,
                backwards=backwards,
            )
        items, has_more = _trim([_thread(r) for r in rows], limit, backwards)
        return page_of(items, [t.id for t in items], has_more)

    # ------------------------------------------------------------------ messages
    async def append(
        self,
        thread_id: str,
        messages: Sequence[Message],
        *,
        idempotency_key: str | None = None,
    ) -> list[Message]:
        """Append messages in one transaction, under the thread's row lock, with consecutive
        ``seq`` numbers.

        Returns:
            The stored messages in the order given, ``seq`` set; on a retried
            ``idempotency_key`` the messages the first call stored (those not deleted since).

        Raises:
            ThreadNotFoundError: no such thread.
            OrphanToolResultError: a tool result answers no (or an already answered) tool call.
            ValidationError: a message id already exists in the thread, a tool call id is
                reused, an empty batch, or bad metadata.
            StoreError: PostgreSQL failed or the schema is not set up.
        """
        prepared = prepare_messages(thread_id, messages)
        calls: list[tuple[str, str]] = []
        results: list[tuple[str, str]] = []
        for m in prepared:
            for part in m.content:
                if isinstance(part, ToolCallContent):
                    calls.append((part.id, m.id))
                elif isinstance(part, ToolResultContent):
                    results.append((part.tool_call_id, m.id))
        async with self._tx() as conn:
            row = await self._one(
                conn,
                f"SELECT last_seq FROM {self._threads} WHERE id = %s FOR UPDATE",
                (thread_id,),
            )
            if row is None:
                raise ThreadNotFoundError(f"no thread {thread_id}")
            base = int(row[0])
            if idempotency_key is not None:
                prior = await self._one(
                    conn,
                    f"SELECT message_ids FROM {self._keys} WHERE thread_id = %s AND key = %s",
                    (thread_id, idempotency_key),
                )
                if prior is not None:
                    return await self._messages_by_id(conn, thread_id, prior[0])
            if calls or results:
                wanted = list({cid for cid, _ in calls} | {cid for cid, _ in results})
                known = await self._all(
                    conn,
                    f"SELECT call_id, answered_by IS NOT NULL FROM {self._tools} "
                    "WHERE thread_id = %s AND call_id = ANY(%s)",
                    (thread_id, wanted),
                )
                check_tool_results(prepared, {cid: bool(done) for cid, done in known})
            for i, m in enumerate(prepared, start=1):
                m.seq = base + i
            n = len(prepared)
            try:
                async with conn.pipeline():
                    await conn.execute(
                        f"INSERT INTO {self._messages} (thread_id, seq, id, data) "
                        "SELECT %s, * FROM unnest(%s::bigint[], %s::text[], %s::bytea[])",
                        (
                            thread_id,
                            [m.seq for m in prepared],
                            [m.id for m in prepared],
                            [_ENC.encode(m) for m in prepared],
                        ),
                    )
                    if calls:
                        await conn.execute(
                            f"INSERT INTO {self._tools} (thread_id, call_id, message_id) "
                            "SELECT %s, * FROM unnest(%s::text[], %s::text[])",
                            (thread_id, [c for c, _ in calls], [m for _, m in calls]),
                        )
                    if results:
                        await conn.execute(
                            f"UPDATE {self._tools} AS t SET answered_by = v.mid "
                            "FROM unnest(%s::text[], %s::text[]) AS v(cid, mid) "
                            "WHERE t.thread_id = %s AND t.call_id = v.cid",
                            ([c for c, _ in results], [m for _, m in results], thread_id),
                        )
                    if idempotency_key is not None:
                        await conn.execute(
                            f"INSERT INTO {self._keys} (thread_id, key, message_ids) "
                            "VALUES (%s, %s, %s)",
                            (thread_id, idempotency_key, [m.id for m in prepared]),
                        )
                    await conn.execute(
                        f"UPDATE {self._threads} SET last_seq = last_seq + %s, "
                        "message_count = message_count + %s, updated_at = %s WHERE id = %s",
                        (n, n, now(), thread_id),
                    )
            except self._pg.errors.UniqueViolation as exc:
                raise ValidationError(
                    f"a message id of the batch already exists in thread {thread_id}"
                ) from exc
        return prepared

    async def _messages_by_id(
        self, conn: AsyncConnection[Any], thread_id: str, message_ids: list[str]
    ) -> list[Message]:
        rows = await self._all(
            conn,
            f"SELECT id, data FROM {self._messages} WHERE thread_id = %s AND id = ANY(%s)",
            (thread_id, message_ids),
        )
        found = {mid: data for mid, data in rows}
        return [_MSG.decode(found[mid]) for mid in message_ids if mid in found]

    async def get_message(self, thread_id: str, message_id: str) -> Message:
        """One message. Raises ThreadNotFoundError, MessageNotFoundError, StoreError."""
        async with self._conn() as conn:
            row = await self._one(
                conn,
                f"SELECT data FROM {self._messages} WHERE thread_id = %s AND id = %s",
                (thread_id, message_id),
            )
            if row is None:
                if not await self._thread_exists(conn, thread_id):
                    raise ThreadNotFoundError(f"no thread {thread_id}")
                raise MessageNotFoundError(f"no message {message_id} in thread {thread_id}")
        return _MSG.decode(row[0])

    async def list_messages(
        self,
        thread_id: str,
        *,
        order: Order = "asc",
        limit: int | None = 20,
        after: str | None = None,
        before: str | None = None,
    ) -> Page[Message]:
        """Messages by ``seq`` (``asc`` = oldest first), cursor-paginated; one index window,
        O(log N + limit).

        Raises:
            ThreadNotFoundError: no such thread.
            MessageNotFoundError: ``after``/``before`` names no message of the thread.
            ValidationError: negative ``limit`` or a bad ``order``.
            StoreError: PostgreSQL failed or the schema is not set up.
        """
        _check_order(order)
        async with self._conn() as conn:
            positions: tuple[Any, Any] = (None, None)
            checked = False
            if after is not None or before is not None:
                exists, a, b = await self._cursors(
                    conn,
                    f"SELECT EXISTS (SELECT 1 FROM {self._threads} WHERE id = %s)",
                    (thread_id,),
                    f"SELECT seq FROM {self._messages} WHERE thread_id = %s AND id = %s",
                    (thread_id,),
                    after,
                    before,
                )
                if not exists:
                    raise ThreadNotFoundError(f"no thread {thread_id}")
                for given, pos in ((after, a), (before, b)):
                    if given is not None and pos is None:
                        raise MessageNotFoundError(f"no message {given} in thread {thread_id}")
                positions, checked = (a, b), True
            backwards = after is None and before is not None
            rows = await self._window(
                conn,
                select=f"SELECT data FROM {self._messages}",
                where="thread_id = %s",
                args=(thread_id,),
                column="seq",
                order=order,
                limit=limit,
                low_high=positions,
                backwards=backwards,
            )
            if not rows and not checked and not await self._thread_exists(conn, thread_id):
                raise ThreadNotFoundError(f"no thread {thread_id}")
        items, has_more = _trim([_MSG.decode(r[0]) for r in rows], limit, backwards)
        return page_of(items, [m.id for m in items], has_more)

    async def tail(self, thread_id: str, n: int) -> list[Message]:
        """The newest ``n`` messages, oldest first; O(log N + n).

        Raises ThreadNotFoundError, StoreError."""
        async with self._conn() as conn:
            rows = []
            if n > 0:
                rows = await self._all(
                    conn,
                    f"SELECT data FROM (SELECT seq, data FROM {self._messages} "
                    "WHERE thread_id = %s ORDER BY seq DESC LIMIT %s) AS t ORDER BY seq",
                    (thread_id, n),
                )
            if not rows and not await self._thread_exists(conn, thread_id):
                raise ThreadNotFoundError(f"no thread {thread_id}")
        return [_MSG.decode(r[0]) for r in rows]

    async def count_messages(self, thread_id: str) -> int:
        """How many messages the thread holds (a counter on the thread row, O(1)).

        Raises ThreadNotFoundError, StoreError."""
        async with self._conn() as conn:
            row = await self._one(
                conn, f"SELECT message_count FROM {self._threads} WHERE id = %s", (thread_id,)
            )
        if row is None:
            raise ThreadNotFoundError(f"no thread {thread_id}")
        return int(row[0])

    async def update_message(
        self, thread_id: str, message_id: str, *, metadata: Mapping[str, str]
    ) -> Message:
        """Replace a message's metadata (content stays as it is).

        Raises ThreadNotFoundError, MessageNotFoundError, ValidationError, StoreError."""
        meta = check_metadata(metadata)
        async with self._tx() as conn:
            row = await self._one(
                conn,
                f"SELECT data FROM {self._messages} WHERE thread_id = %s AND id = %s FOR UPDATE",
                (thread_id, message_id),
            )
            if row is None:
                if not await self._thread_exists(conn, thread_id):
                    raise ThreadNotFoundError(f"no thread {thread_id}")
                raise MessageNotFoundError(f"no message {message_id} in thread {thread_id}")
            updated = msgspec.structs.replace(_MSG.decode(row[0]), metadata=meta)
            await conn.execute(
                f"UPDATE {self._messages} SET data = %s WHERE thread_id = %s AND id = %s",
                (_ENC.encode(updated), thread_id, message_id),
            )
            await conn.execute(
                f"UPDATE {self._threads} SET updated_at = %s WHERE id = %s", (now(), thread_id)
            )
        return updated

    async def delete_message(self, thread_id: str, message_id: str) -> bool:
        """Delete one message; its tool calls are forgotten and the calls its tool results
        answered are open again. False if it did not exist.

        Raises:
            ThreadNotFoundError: no such thread.
            ValidationError: it holds a tool call whose result is still in the thread.
            StoreError: PostgreSQL failed or the schema is not set up.
        """
        async with self._tx() as conn:
            if (
                await self._one(
                    conn, f"SELECT 1 FROM {self._threads} WHERE id = %s FOR UPDATE", (thread_id,)
                )
                is None
            ):
                raise ThreadNotFoundError(f"no thread {thread_id}")
            held = await self._one(
                conn,
                f"SELECT call_id, answered_by FROM {self._tools} WHERE thread_id = %s "
                "AND message_id = %s AND answered_by IS NOT NULL AND answered_by <> %s LIMIT 1",
                (thread_id, message_id, message_id),
            )
            if held is not None:
                raise ValidationError(
                    f"message {message_id} holds tool call {held[0]}, answered by message "
                    f"{held[1]}; delete the result first"
                )
            gone = await self._one(
                conn,
                f"DELETE FROM {self._messages} WHERE thread_id = %s AND id = %s RETURNING 1",
                (thread_id, message_id),
            )
            if gone is None:
                return False
            async with conn.pipeline():
                await conn.execute(
                    f"DELETE FROM {self._tools} WHERE thread_id = %s AND message_id = %s",
                    (thread_id, message_id),
                )
                await conn.execute(
                    f"UPDATE {self._tools} SET answered_by = NULL "
                    "WHERE thread_id = %s AND answered_by = %s",
                    (thread_id, message_id),
                )
                await conn.execute(
                    f"UPDATE {self._threads} SET message_count = message_count - 1, "
                    "updated_at = %s WHERE id = %s",
                    (now(), thread_id),
                )
        return True

    # ------------------------------------------------------------------ runs and steps
    async def create_run(self, run: Run) -> Run:
        """Store a new run; under the thread's row lock, refuse it while another run on the
        thread is active (active status and ``expires_at`` unset or later than
        ``run.created_at``).

        Raises:
            ThreadNotFoundError: no such thread.
            ActiveRunError: another run on the thread is active.
            ValidationError: a run with this id exists on the thread.
            StoreError: PostgreSQL failed or the schema is not set up.
        """
        async with self._tx() as conn:
            if (
                await self._one(
                    conn,
                    f"SELECT 1 FROM {self._threads} WHERE id = %s FOR UPDATE",
                    (run.thread_id,),
                )
                is None
            ):
                raise ThreadNotFoundError(f"no thread {run.thread_id}")
            active = await self._one(
                conn,
                f"SELECT id FROM {self._runs} WHERE thread_id = %s AND status IN ({_ACTIVE_SQL}) "
                "AND (expires_at IS NULL OR expires_at > %s) ORDER BY ord DESC LIMIT 1",
                (run.thread_id, run.created_at),
            )
            if active is not None:
                raise ActiveRunError(run.thread_id, active[0])
            row = await self._one(
                conn,
                f"INSERT INTO {self._runs} (thread_id, id, status, expires_at, data) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (thread_id, id) DO NOTHING RETURNING 1",
                (run.thread_id, run.id, run.status.value, run.expires_at, _ENC.encode(run)),
            )
            if row is None:
                raise ValidationError(f"run {run.id} already exists in thread {run.thread_id}")
        return run

    async def get_run(self, thread_id: str, run_id: str) -> Run:
        """One run. Raises ThreadNotFoundError, RunNotFoundError, StoreError."""
        async with self._conn() as conn:
            row = await self._one(
                conn,
                f"SELECT data FROM {self._runs} WHERE thread_id = %s AND id = %s",
                (thread_id, run_id),
            )
            if row is None:
                if not await self._thread_exists(conn, thread_id):
                    raise ThreadNotFoundError(f"no thread {thread_id}")
                raise RunNotFoundError(f"no run {run_id} in thread {thread_id}")
        return _RUN.decode(row[0])

    async def update_run(self, run: Run, *, expected_status: str | None = None) -> Run:
        """Replace a stored run; with ``expected_status`` only if the stored status still is that
        one (compare-and-set in one ``UPDATE ... WHERE status = expected``).

        Raises:
            RunNotFoundError: no such run (or no such thread).
            InvalidRunStateError: the stored status differs from ``expected_status``.
            StoreError: PostgreSQL failed or the schema is not set up.
        """
        expected = None if expected_status is None else str(expected_status)
        async with self._conn() as conn:
            row = await self._one(
                conn,
                f"WITH upd AS (UPDATE {self._runs} SET status = %s, expires_at = %s, data = %s "
                "WHERE thread_id = %s AND id = %s AND (%s::text IS NULL OR status = %s) "
                f"RETURNING 1) SELECT EXISTS (SELECT 1 FROM upd), (SELECT status FROM {self._runs} "
                "WHERE thread_id = %s AND id = %s)",
                (
                    run.status.value,
                    run.expires_at,
                    _ENC.encode(run),
                    run.thread_id,
                    run.id,
                    expected,
                    expected,
                    run.thread_id,
                    run.id,
                ),
            )
            assert row is not None
            updated, stored = row
            if not updated and stored is not None and stored == expected:
                # lost a race: the status changed after this statement's snapshot; read it again
                again = await self._one(
                    conn,
                    f"SELECT status FROM {self._runs} WHERE thread_id = %s AND id = %s",
                    (run.thread_id, run.id),
                )
                stored = None if again is None else again[0]
        if updated:
            return run
        if stored is None:
            raise RunNotFoundError(f"no run {run.id} in thread {run.thread_id}")
        raise InvalidRunStateError(
            f"run {run.id} is {stored}, not {expected_status}", run_id=run.id, status=stored
        )

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

        Raises ThreadNotFoundError, RunNotFoundError (bad cursor), ValidationError, StoreError."""
        _check_order(order)
        async with self._conn() as conn:
            exists, a, b = await self._cursors(
                conn,
                f"SELECT EXISTS (SELECT 1 FROM {self._threads} WHERE id = %s)",
                (thread_id,),
                f"SELECT ord FROM {self._runs} WHERE thread_id = %s AND id = %s",
                (thread_id,),
                after,
                before,
            )
            if not exists:
                raise ThreadNotFoundError(f"no thread {thread_id}")
            for given, pos in ((after, a), (before, b)):
                if given is not None and pos is None:
                    raise RunNotFoundError(f"no run {given} in thread {thread_id}")
            backwards = after is None and before is not None
            rows = await self._window(
                conn,
                select=f"SELECT data FROM {self._runs}",
                where="thread_id = %s",
                args=(thread_id,),
                column="ord",
                order=order,
                limit=limit,
                low_high=(a, b),
                backwards=backwards,
            )
        items, has_more = _trim([_RUN.decode(r[0]) for r in rows], limit, backwards)
        return page_of(items, [r.id for r in items], has_more)

    async def get_active_run(self, thread_id: str) -> Run | None:
        """The newest run with an active status (expired or not), or None.

        Raises ThreadNotFoundError, StoreError."""
        async with self._conn() as conn:
            row = await self._one(
                conn,
                f"SELECT data FROM {self._runs} WHERE thread_id = %s "
                f"AND status IN ({_ACTIVE_SQL}) ORDER BY ord DESC LIMIT 1",
                (thread_id,),
            )
            if row is None:
                if not await self._thread_exists(conn, thread_id):
                    raise ThreadNotFoundError(f"no thread {thread_id}")
                return None
        return _RUN.decode(row[0])

    async def put_step(self, step: RunStep) -> RunStep:
        """Insert or replace a run step (by id); a new step goes after the run's others.

        Raises ThreadNotFoundError, RunNotFoundError, StoreError."""
        async with self._conn() as conn:
            try:
                await conn.execute(
                    f"INSERT INTO {self._steps} (thread_id, run_id, id, data) "
                    "VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (thread_id, run_id, id) DO UPDATE SET data = EXCLUDED.data",
                    (step.thread_id, step.run_id, step.id, _ENC.encode(step)),
                )
            except self._pg.errors.ForeignKeyViolation as exc:
                if not await self._thread_exists(conn, step.thread_id):
                    raise ThreadNotFoundError(f"no thread {step.thread_id}") from exc
                raise RunNotFoundError(f"no run {step.run_id} in thread {step.thread_id}") from exc
        return step

    async def _run_exists(self, conn: AsyncConnection[Any], thread_id: str, run_id: str) -> bool:
        row = await self._one(
            conn,
            f"SELECT 1 FROM {self._runs} WHERE thread_id = %s AND id = %s",
            (thread_id, run_id),
        )
        return row is not None

    async def get_step(self, thread_id: str, run_id: str, step_id: str) -> RunStep:
        """One run step. Raises RunNotFoundError (also for an unknown thread),
        RunStepNotFoundError, StoreError."""
        async with self._conn() as conn:
            row = await self._one(
                conn,
                f"SELECT data FROM {self._steps} WHERE thread_id = %s AND run_id = %s AND id = %s",
                (thread_id, run_id, step_id),
            )
            if row is None:
                if not await self._run_exists(conn, thread_id, run_id):
                    raise RunNotFoundError(f"no run {run_id} in thread {thread_id}")
                raise RunStepNotFoundError(f"no step {step_id} in run {run_id}")
        return _STEP.decode(row[0])

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
        ValidationError, StoreError."""
        _check_order(order)
        async with self._conn() as conn:
            exists, a, b = await self._cursors(
                conn,
                f"SELECT EXISTS (SELECT 1 FROM {self._runs} WHERE thread_id = %s AND id = %s)",
                (thread_id, run_id),
                f"SELECT ord FROM {self._steps} WHERE thread_id = %s AND run_id = %s AND id = %s",
                (thread_id, run_id),
                after,
                before,
            )
            if not exists:
                raise RunNotFoundError(f"no run {run_id} in thread {thread_id}")
            for given, pos in ((after, a), (before, b)):
                if given is not None and pos is None:
                    raise RunStepNotFoundError(f"no step {given} in run {run_id}")
            backwards = after is None and before is not None
            rows = await self._window(
                conn,
                select=f"SELECT data FROM {self._steps}",
                where="thread_id = %s AND run_id = %s",
                args=(thread_id, run_id),
                column="ord",
                order=order,
                limit=limit,
                low_high=(a, b),
                backwards=backwards,
            )
        items, has_more = _trim([_STEP.decode(r[0]) for r in rows], limit, backwards)
        return page_of(items, [s.id for s in items], has_more)

    # ------------------------------------------------------------------ stored objects
    async def put_object(self, kind: str, object_id: str, data: bytes) -> StoredObject:
        """Insert or replace an opaque object; ``created_at`` is kept from the first put.

        Raises StoreError."""
        async with self._conn() as conn:
            row = await self._one(
                conn,
                f"INSERT INTO {self._objects} (kind, id, created_at, data) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (kind, id) DO UPDATE SET data = EXCLUDED.data RETURNING created_at",
                (kind, object_id, now(), bytes(data)),
            )
        assert row is not None
        return StoredObject(id=object_id, kind=kind, created_at=int(row[0]), data=bytes(data))

    async def get_object(self, kind: str, object_id: str) -> StoredObject:
        """One object. Raises ObjectNotFoundError, StoreError."""
        async with self._conn() as conn:
            row = await self._one(
                conn,
                f"SELECT created_at, data FROM {self._objects} WHERE kind = %s AND id = %s",
                (kind, object_id),
            )
        if row is None:
            raise ObjectNotFoundError(f"no {kind} object {object_id}")
        return StoredObject(id=object_id, kind=kind, created_at=int(row[0]), data=bytes(row[1]))

    async def delete_object(self, kind: str, object_id: str) -> bool:
        """Delete one object. False if it did not exist. Raises StoreError."""
        async with self._conn() as conn:
            row = await self._one(
                conn,
                f"DELETE FROM {self._objects} WHERE kind = %s AND id = %s RETURNING 1",
                (kind, object_id),
            )
        return row is not None

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

        Raises ObjectNotFoundError (bad cursor), ValidationError, StoreError."""
        _check_order(order)
        async with self._conn() as conn:
            positions: tuple[Any, Any] = (None, None)
            if after is not None or before is not None:
                _, a, b = await self._cursors(
                    conn,
                    "true",
                    (),
                    f"SELECT ord FROM {self._objects} WHERE kind = %s AND id = %s",
                    (kind,),
                    after,
                    before,
                )
                for given, pos in ((after, a), (before, b)):
                    if given is not None and pos is None:
                        raise ObjectNotFoundError(f"no {kind} object {given}")
                positions = (a, b)
            backwards = after is None and before is not None
            rows = await self._window(
                conn,
                select=f"SELECT id, created_at, data FROM {self._objects}",
                where="kind = %s",
                args=(kind,),
                column="ord",
                order=order,
                limit=limit,
                low_high=positions,
                backwards=backwards,
            )
        items, has_more = _trim(
            [StoredObject(id=i, kind=kind, created_at=int(c), data=bytes(d)) for i, c, d in rows],
            limit,
            backwards,
        )
        return page_of(items, [o.id for o in items], has_more)


# ----------------------------------------------------------------------------- helpers


def _thread(row: Sequence[Any]) -> ThreadInfo:
    tid, created, updated, meta, count = row
    return ThreadInfo(
        id=tid,
        created_at=int(created),
        updated_at=int(updated),
        metadata=_META.decode(meta),
        message_count=int(count),
    )


def _locator(conninfo: str, schema: str, prepare: bool) -> str:
    """The store URL without password (in the netloc or a ``password`` query parameter)."""
    parts = urlsplit(conninfo)
    if not parts.scheme:  # a key=value conninfo string: keep only where it points
        return f"postgresql:///?schema={schema}" + ("" if prepare else "&prepare=false")
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6 literal
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    if parts.username:
        netloc = f"{quote(unquote(parts.username), safe='')}@{netloc}"
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in ("password", "schema", "prepare")
    ]
    query.append(("schema", schema))
    if not prepare:
        query.append(("prepare", "false"))
    return urlunsplit(("postgresql", netloc, parts.path, urlencode(query), ""))
