"""RedisStore passes the message-store conformance suite, plus Redis-only checks (TTL, prefix)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.servers import redis_url
from threadkit._ids import new_id
from threadkit.stores.redis import RedisStore
from threadkit.testing.store_suite import StoreConformance

URL, WHY = redis_url()
pytestmark = pytest.mark.skipif(URL is None, reason=WHY)


async def _drop(store: RedisStore) -> None:
    keys = [k async for k in store.client.scan_iter(match=f"{store.prefix}:*", count=500)]
    if keys:
        await store.client.delete(*keys)


@pytest.fixture
async def fresh() -> AsyncIterator[RedisStore]:
    """A store on a unique prefix, its keys deleted afterwards."""
    s = RedisStore.from_url(f"{URL}?prefix={new_id('tktest')}")
    yield s
    await _drop(s)
    await s.close()


class TestRedisStore(StoreConformance):
    reopen_by_locator = True  # the locator keeps the prefix

    @pytest.fixture
    async def store(self, fresh: RedisStore) -> AsyncIterator[RedisStore]:
        await fresh.setup()
        yield fresh
