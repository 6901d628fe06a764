"""Retention: ``prune_threads`` and ``threadkit threads prune`` on every store, ``store setup``.

Old threads are made by moving the clock the stores read (``now`` in each ``threadkit`` module)
back 40 days while they are written; the stores and servers themselves are real. After a prune
the old threads are gone with everything of theirs (the API says NotFound; SQLite, Redis and
PostgreSQL hold no row or key of them), the recent ones are whole, and ``--dry-run`` deletes
nothing. Redis runs on a unique key prefix and PostgreSQL on a unique schema, both removed
afterwards; without a server those cases skip, naming it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

# imported up front so the clock fixture reaches each store module's `now`
import threadkit.stores.memory
import threadkit.stores.postgres
import threadkit.stores.redis
import threadkit.stores.sqlite
from tests.servers import postgres_url, redis_url
from threadkit import _ids
from threadkit.cli import build_app
from threadkit.errors import NotFoundError, ThreadNotFoundError, ValidationError
from threadkit.registry import open_store
from threadkit.retention import parse_duration, prune_threads
from threadkit.stores.base import MessageStore
from threadkit.stores.memory import MemoryStore
from threadkit.testing.store_suite import make_run, make_step, tool_call, tool_result, turn
from threadkit.types import Page, ThreadInfo

DAY = 86_400
STORES = ["memory", "sqlite", "redis", "postgres"]


# ----------------------------------------------------------------------------- the clock


class Clock:
    """The stores' clock: real time, or ``at`` (unix seconds) while it is set."""

    def __init__(self) -> None:
        self.at: int | None = None

    def __call__(self) -> int:
        return int(time.time()) if self.at is None else self.at


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Patch ``now`` wherever a threadkit module imported it (stores, suite factories)."""
    c = Clock()
    real = _ids.now
    for name, module in list(sys.modules.items()):
        if name.startswith("threadkit.") and getattr(module, "now", None) is real:
            monkeypatch.setattr(module, "now", c)
    monkeypatch.setattr(_ids, "now", c)
    return c


# ----------------------------------------------------------------------------- stores


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty store of each kind, removed afterwards."""
    kind = request.param
    token = secrets.token_hex(6)
    if kind == "memory":
        yield f"memory://tkprune_{token}"
        MemoryStore.drop(f"tkprune_{token}")
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path}/prune.db"
    elif kind == "redis":
        base, why = redis_url()
        if base is None:
            pytest.skip(why)
        yield f"{base}?prefix=tkprune_{token}"
        _drop_redis(base, f"tkprune_{token}")
    else:
        base, why = postgres_url()
        if base is None:
            pytest.skip(why)
        yield f"{base}?schema=tkprune_{token}"
        _drop_postgres(base, f"tkprune_{token}")


def _drop_redis(base: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(base)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _drop_postgres(base: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[MessageStore]:
    s: MessageStore = open_store(store_url)
    await s.setup()
    yield s
    await s.close()


def leftovers(url: str) -> dict[str, int]:
    """Rows (SQLite, PostgreSQL) or keys (Redis) the store still holds, by table or key kind,
    leaving out the migration record; empty when nothing is left. Memory: always empty."""
    parts = urlsplit(url)
    query = dict(p.split("=", 1) for p in parts.query.split("&") if p)
    found: dict[str, int] = {}
    if parts.scheme == "sqlite":
        with sqlite3.connect(parts.path) as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%' AND name != 'threadkit_migrations'"
                )
            ]
            for table in tables:
                found[table] = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    elif parts.scheme == "redis":
        import redis

        client = redis.Redis.from_url(url.split("?")[0])
        try:
            prefix = query["prefix"]
            for key in client.scan_iter(match=f"{prefix}:*", count=500):
                name = key.decode()
                if name in (f"{prefix}:n:threads", f"{prefix}:n:objects"):
                    continue  # id counters, not data
                kind = name[len(prefix) + 1 :].split(":", 1)[0]
                found[kind] = found.get(kind, 0) + 1
        finally:
            client.close()
    elif parts.scheme.startswith("postgres"):
        import psycopg

        schema = query["schema"]
        with psycopg.connect(url.split("?")[0]) as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                    "AND table_name != 'threadkit_migrations'",
                    (schema,),
                )
            ]
            for table in tables:
                row = conn.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()
                found[table] = row[0] if row else 0
    return {k: v for k, v in found.items() if v}


async def fill(store: MessageStore, thread_id: str, text: str) -> None:
    """Give a thread every kind of data: messages (with a tool call pair and an idempotency
    key), a run and a run step."""
    await store.append(thread_id, turn(text), idempotency_key=f"key-{text}")
    call = f"call_{secrets.token_hex(4)}"
    await store.append(thread_id, [tool_call(call), tool_result(call)])
    run = await store.create_run(make_run(thread_id))
    await store.put_step(make_step(run))


async def seed(store: MessageStore, clock: Clock) -> tuple[list[str], list[str]]:
    """Three threads last updated 40 days ago and three recent ones (one of them created 40
    days ago but written to now). Returns ``(old ids, recent ids)``, each oldest-created first."""
    real = int(time.time())
    clock.at = real - 40 * DAY
    old = []
    for i in range(4):
        t = await store.create_thread(metadata={"n": str(i)})
        await fill(store, t.id, f"old {i}")
        old.append(t.id)
    revived = old.pop(1)
    clock.at = real
    await store.append(revived, turn("back again"))
    recent = [revived]
    for i in range(2):
        t = await store.create_thread()
        await fill(store, t.id, f"recent {i}")
        recent.append(t.id)
    clock.at = None
    return old, recent


async def assert_gone(store: MessageStore, thread_id: str) -> None:
    with pytest.raises(ThreadNotFoundError):
        await store.get_thread(thread_id)
    with pytest.raises(ThreadNotFoundError):
        await store.list_messages(thread_id)
    with pytest.raises(ThreadNotFoundError):
        await store.list_runs(thread_id)
    with pytest.raises(NotFoundError):
        await store.tail(thread_id, 5)


async def all_threads(store: MessageStore) -> list[ThreadInfo]:
    page: Page[ThreadInfo] = await store.list_threads(limit=None, order="asc")
    return page.data


# ----------------------------------------------------------------------------- prune_threads


@pytest.mark.parametrize("page_size", [2, 100])
async def test_prune_deletes_old_threads_whole_and_keeps_recent(
    store: MessageStore, store_url: str, clock: Clock, page_size: int
) -> None:
    old, recent = await seed(store, clock)
    counts = {t: await store.count_messages(t) for t in recent}

    pruned = await prune_threads(store, 30 * DAY, page_size=page_size)

    assert [t.id for t in pruned] == old  # listed oldest-created first
    assert all(t.message_count == 4 for t in pruned)
    for tid in old:
        await assert_gone(store, tid)
    assert [t.id for t in await all_threads(store)] == recent
    for tid in recent:
        assert await store.count_messages(tid) == counts[tid]
        assert len((await store.list_runs(tid)).data) == 1
    # a second prune finds nothing more
    assert await prune_threads(store, 30 * DAY, page_size=page_size) == []

    # pruning the rest leaves no row or key behind (messages, tool calls, keys, runs, steps)
    inspectable = not store_url.startswith("memory:")
    assert leftovers(store_url) or not inspectable  # the check does see data while there is some
    later = int(time.time()) + DAY
    gone = await prune_threads(store, 0, now=later, page_size=page_size)
    assert sorted(t.id for t in gone) == sorted(recent)
    assert await all_threads(store) == []
    assert leftovers(store_url) == {}


async def test_dry_run_deletes_nothing(store: MessageStore, clock: Clock) -> None:
    old, _recent = await seed(store, clock)
    before = {t.id: t.message_count for t in await all_threads(store)}

    would = await prune_threads(store, 30 * DAY, dry_run=True, page_size=2)

    assert [t.id for t in would] == old
    after = {t.id: t.message_count for t in await all_threads(store)}
    assert after == before
    for tid in old:
        assert len((await store.list_runs(tid)).data) == 1


async def test_cutoff_is_strict_and_uses_updated_at(store: MessageStore, clock: Clock) -> None:
    clock.at = 1_000_000
    t = await store.create_thread()
    clock.at = None
    # updated exactly at the cutoff: kept; one second later: pruned
    assert await prune_threads(store, 100, now=1_000_100) == []
    assert [i.id for i in await prune_threads(store, 100, now=1_000_101)] == [t.id]


class _WritesWhileListing:
    """A real store whose ``list_threads`` lets another writer touch a thread right after the
    listing, as a concurrent process would."""

    def __init__(self, store: MessageStore, victim: str) -> None:
        self._store = store
        self._victim = victim

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def list_threads(self, **kwargs: Any) -> Page[ThreadInfo]:
        page = await self._store.list_threads(**kwargs)
        if any(t.id == self._victim for t in page.data):
            await self._store.append(self._victim, turn("just in time"))
        return page


async def test_thread_updated_after_the_listing_is_kept(clock: Clock) -> None:
    store = MemoryStore()
    clock.at = int(time.time()) - 40 * DAY
    a = await store.create_thread()
    b = await store.create_thread()
    clock.at = None
    pruned = await prune_threads(_WritesWhileListing(store, a.id), 30 * DAY)
    assert [t.id for t in pruned] == [b.id]
    assert (await store.get_thread(a.id)).message_count == 2


async def test_bad_arguments() -> None:
    store = MemoryStore()
    with pytest.raises(ValidationError):
        await prune_threads(store, -1)
    with pytest.raises(ValidationError):
        await prune_threads(store, 10, page_size=0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * DAY), ("12h", 12 * 3600), ("90m", 5400), ("45s", 45), ("2w", 14 * DAY)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "d", "1.5h", "3mo", "0d", "-1d", "30D", "1d2h", ""])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValidationError, match="not a duration"):
        parse_duration(text)


# ----------------------------------------------------------------------------- CLI


def invoke(args: Sequence[str], env: Mapping[str, str] | None = None) -> Any:
    env = {"THREADKIT_CONFIG": "", **(env or {})}
    return CliRunner().invoke(build_app(), list(args), env=dict(env))


async def _seed_url(url: str, clock: Clock) -> tuple[list[str], list[str]]:
    s: MessageStore = open_store(url)
    await s.setup()
    try:
        return await seed(s, clock)
    finally:
        await s.close()


async def _ids_in(url: str) -> list[str]:
    s: MessageStore = open_store(url)
    await s.setup()
    try:
        return [t.id for t in await all_threads(s)]
    finally:
        await s.close()


def test_cli_prune(store_url: str, clock: Clock) -> None:
    old, recent = asyncio.run(_seed_url(store_url, clock))

    dry = invoke(["threads", "prune", "--older-than", "30d", "--dry-run", "--store", store_url])
    assert dry.exit_code == 0, dry.output
    assert "Would delete 3 thread(s)" in dry.output
    assert all(tid in dry.output for tid in old)
    assert not any(tid in dry.output for tid in recent)
    assert set(asyncio.run(_ids_in(store_url))) == set(old + recent)  # nothing deleted

    real = invoke(["--store", store_url, "threads", "prune", "--older-than", "4w", "--json"])
    assert real.exit_code == 0, real.output
    record = json.loads(real.stdout)
    assert record["dry_run"] is False
    assert record["count"] == 3
    assert [t["id"] for t in record["threads"]] == old
    assert asyncio.run(_ids_in(store_url)) == recent

    again = invoke(["threads", "prune", "--older-than", "30d", "--store", store_url])
    assert again.exit_code == 0, again.output
    assert "Deleted 0 thread(s)" in again.output
    if not store_url.startswith("memory:"):
        assert leftovers(store_url)  # the recent threads are untouched


@pytest.mark.parametrize("bad", ["30", "3mo", "1.5h", "0s"])
def test_cli_prune_rejects_a_bad_duration(bad: str, tmp_path: Path) -> None:
    result = invoke(
        ["threads", "prune", "--older-than", bad, "--store", f"sqlite:///{tmp_path}/x.db"]
    )
    assert result.exit_code == 2
    assert "--older-than" in result.output
    assert "not a duration" in result.output
    assert "30d" in result.output  # the message shows the accepted form


def test_cli_prune_needs_older_than(tmp_path: Path) -> None:
    result = invoke(["threads", "prune", "--store", f"sqlite:///{tmp_path}/x.db"])
    assert result.exit_code == 2
    assert "--older-than" in result.output


def test_cli_store_setup_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "setup.db"
    url = f"sqlite:///{db}"
    first = invoke(["store", "setup", url])
    assert first.exit_code == 0, first.output
    assert "is set up" in first.output
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        versions = conn.execute("SELECT count(*) FROM threadkit_migrations").fetchone()[0]
    assert {"threads", "messages", "runs", "threadkit_migrations"} <= tables
    assert versions == len(threadkit.stores.sqlite.MIGRATIONS)
    again = invoke(["--store", url, "store", "setup"])  # idempotent; URL from --store
    assert again.exit_code == 0, again.output
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM threadkit_migrations").fetchone()[0] == versions


def test_cli_store_setup_postgres_is_the_migration_step() -> None:
    base, why = postgres_url()
    if base is None:
        pytest.skip(why)
    import psycopg

    schema = f"tkprune_{secrets.token_hex(6)}"
    url = f"{base}?schema={schema}"
    try:

        async def use_before_setup() -> None:
            s: MessageStore = open_store(url)
            try:
                await s.create_thread()
            finally:
                await s.close()

        with pytest.raises(Exception, match="not set up"):
            asyncio.run(use_before_setup())

        result = invoke(["store", "setup", url])
        assert result.exit_code == 0, result.output
        assert schema in result.output
        with psycopg.connect(base) as conn:
            rows = conn.execute(f'SELECT v FROM "{schema}".threadkit_migrations ORDER BY v')
            assert [r[0] for r in rows] == list(range(len(threadkit.stores.postgres.MIGRATIONS)))
        assert invoke(["store", "setup", url]).exit_code == 0  # idempotent
    finally:
        _drop_postgres(base, schema)


def test_cli_store_setup_bad_url() -> None:
    result = invoke(["store", "setup", "nosuch://x"])
    assert result.exit_code == 2  # a ConfigError
    assert "nosuch" in result.output
