"""MemoryStore passes the message-store conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from threadkit._ids import new_id
from threadkit.stores.memory import MemoryStore
from threadkit.testing.store_suite import StoreConformance


class TestMemoryStore(StoreConformance):
    reopen_by_locator = True  # memory://NAME: every store opened with the URL shares the space

    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryStore]:
        name = new_id("test")
        s = MemoryStore.from_url(f"memory://{name}")
        await s.setup()
        yield s
        await s.close()
        MemoryStore.drop(name)
