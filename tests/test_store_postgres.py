"""PostgresStore passes the message-store conformance suite, plus PostgreSQL-only checks."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import AsyncIterator

import psycopg
import pytest

from tests.servers import postgres_url
from threadkit.errors import ConfigError, MissingExtraError, StoreError
from threadkit.registry import open_store
from threadkit.stores.postgres import MIGRATIONS, PostgresStore
from threadkit.testing.store_suite import (
    StoreConformance,
    make_run,
    make_step,
    tool_call,
    tool_result,
    turn,
    user,
)

URL, WHY = postgres_url()
pytestmark = pytest.mark.skipif(URL is None, reason=WHY)


async def _drop_schema(schema: str) -> None:
    assert URL is not None
    async with await psycopg.AsyncConnection.connect(URL, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    """A unique schema name, dropped (with everything in it) afterwards."""
    name = f"tktest_{secrets.token_hex(6)}"
    yield name
    await _drop_schema(name)


class TestPostgresStore(StoreConformance):
    reopen_by_locator = True  # the locator keeps the schema

    @pytest.fixture
    async def store(self, schema: str) -> AsyncIterator[PostgresStore]:
        s = PostgresStore.from_url(f"{URL}?schema={schema}", max_size=4)
        await s.setup()
        yield s
        await s.close()


# ------------------------------------------------------------------------- PostgreSQL-only


async def _versions(schema: str) -> list[int]:
    assert URL is not None
    async with await psycopg.AsyncConnection.connect(URL) as conn:
        cur = await conn.execute(f'SELECT v FROM "{schema}".threadkit_migrations ORDER BY v')
        return [row[0] for row in await cur.fetchall()]


async def test_setup_records_every_migration_once(schema: str) -> None:
    s = PostgresStore.from_url(URL or "", schema=schema)
    try:
        await s.setup()
        t = await s.create_thread()
        await s.append(t.id, turn())
        await s.setup()  # a no-op the second time
        assert await _versions(schema) == list(range(len(MIGRATIONS)))
        assert await s.count_messages(t.id) == 2
    finally:
        await s.close()


async def test_concurrent_setup_is_safe(schema: str) -> None:
    stores = [PostgresStore.from_url(URL or "", schema=schema) for _ in range(3)]
    try:
        await asyncio.gather(*(s.setup() for s in stores))
        assert await _versions(schema) == list(range(len(MIGRATIONS)))
        t = await stores[0].create_thread()
        assert (await stores[2].get_thread(t.id)).id == t.id
    finally:
        for s in stores:
            await s.close()


async def test_use_before_setup_says_to_run_setup(schema: str) -> None:
    s = PostgresStore.from_url(URL or "", schema=schema)
    try:
        with pytest.raises(StoreError) as info:
            await s.create_thread()
        assert "setup()" in str(info.value)
        assert "threadkit store setup" in str(info.value)
        with pytest.raises(StoreError):
            await s.list_threads()
        await s.setup()
        assert (await s.create_thread()).id.startswith("thread_")
    finally:
        await s.close()


async def test_setup_inside_an_open_transaction(schema: str) -> None:
    assert URL is not None
    s = PostgresStore.from_url(URL, schema=schema)
    try:
        async with await psycopg.AsyncConnection.connect(URL) as conn:
            await conn.execute("SELECT 1")  # the caller's transaction is open
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            await s.setup(connection=conn)
            cur = await conn.execute(f'SELECT count(*) FROM "{schema}".threadkit_migrations')
            assert (await cur.fetchone()) == (len(MIGRATIONS),)
            await conn.rollback()  # the caller decides: nothing was kept
        with pytest.raises(StoreError, match="setup"):
            await s.create_thread()
        async with await psycopg.AsyncConnection.connect(URL) as conn:
            await conn.execute("SELECT 1")
            await s.setup(connection=conn)
            await s.setup(connection=conn)  # twice in one transaction: still fine
            await conn.commit()
        assert await _versions(schema) == list(range(len(MIGRATIONS)))
        t = await s.create_thread()
        assert (await s.append(t.id, [user()]))[0].seq == 1
    finally:
        await s.close()


async def _prepared_statements(store: PostgresStore) -> int:
    async with store.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM pg_prepared_statements")
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


@pytest.mark.parametrize("prepare", [True, False])
async def test_prepare_false_sends_no_prepared_statements(schema: str, prepare: bool) -> None:
    query = f"schema={schema}" + ("" if prepare else "&prepare=false")
    s = PostgresStore.from_url(f"{URL}?{query}", min_size=1, max_size=1)
    try:
        await s.setup()
        t = await s.create_thread()
        for _ in range(8):  # past psycopg's prepare threshold of 5
            await s.append(t.id, turn())
            await s.get_thread(t.id)
            await s.tail(t.id, 2)
        assert await s.count_messages(t.id) == 16
        if prepare:
            assert await _prepared_statements(s) > 0
        else:
            assert await _prepared_statements(s) == 0
            assert s.locator.endswith("&prepare=false")
    finally:
        await s.close()


async def test_delete_thread_leaves_no_rows(schema: str) -> None:
    assert URL is not None
    s = PostgresStore.from_url(URL, schema=schema)
    try:
        await s.setup()
        t = await s.create_thread()
        keep = await s.create_thread()
        for tid in (t.id, keep.id):
            await s.append(tid, turn(), idempotency_key="k")
            await s.append(tid, [tool_call("call_1"), tool_result("call_1")])
            run = await s.create_run(make_run(tid))
            await s.put_step(make_step(run))
        assert await s.delete_thread(t.id)
        rows = {"messages": 4, "tool_calls": 1, "idempotency_keys": 1, "runs": 1, "run_steps": 1}
        async with await psycopg.AsyncConnection.connect(URL) as conn:
            for table, count in rows.items():
                cur = await conn.execute(
                    f'SELECT thread_id, count(*) FROM "{schema}".{table} GROUP BY thread_id'
                )
                assert dict(await cur.fetchall()) == {keep.id: count}, table
    finally:
        await s.close()


def test_from_url_options_and_locator() -> None:
    s = PostgresStore.from_url(
        "postgresql://ann:secret@127.0.0.1:5432/app?schema=tk&sslmode=disable"
    )
    assert s.schema == "tk"
    assert s.locator == "postgresql://ann@127.0.0.1:5432/app?sslmode=disable&schema=tk"
    s = PostgresStore.from_url("postgres://127.0.0.1/app?password=x&prepare=false")
    assert s.schema == "threadkit"
    assert s.locator == "postgresql://127.0.0.1/app?schema=threadkit&prepare=false"
    s = PostgresStore.from_url("postgresql://127.0.0.1/app?schema=a", schema="b", prepare=False)
    assert s.locator == "postgresql://127.0.0.1/app?schema=b&prepare=false"


@pytest.mark.parametrize(
    "url",
    ["postgresql://127.0.0.1/app?schema=bad-name", "postgresql://127.0.0.1/app?prepare=maybe"],
)
def test_bad_options_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        PostgresStore.from_url(url)


def test_open_store_by_url() -> None:
    s = open_store("postgresql://127.0.0.1:5432/test?schema=via_registry")
    assert isinstance(s, PostgresStore) and s.schema == "via_registry"


async def test_unreachable_server_is_a_store_error() -> None:
    s = PostgresStore.from_url("postgresql://127.0.0.1:1/test?connect_timeout=1", timeout=1.0)
    try:
        with pytest.raises(StoreError) as info:
            await s.create_thread()
        assert isinstance(info.value.__cause__, psycopg.Error)
    finally:
        await s.close()


def test_missing_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg_pool", None)
    with pytest.raises(MissingExtraError) as info:
        PostgresStore.from_url("postgresql://127.0.0.1/test")
    assert 'pip install "threadkit[postgres]"' in str(info.value)
