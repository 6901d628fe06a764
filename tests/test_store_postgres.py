"""PostgresStore passes the message-store conformance suite, plus PostgreSQL-only checks."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import psycopg
import pytest

from tests.servers import postgres_url
from threadkit.stores.postgres import PostgresStore
from threadkit.testing.store_suite import StoreConformance

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
