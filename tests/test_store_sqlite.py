"""SQLiteStore passes the message-store conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from threadkit.stores.sqlite import SQLiteStore
from threadkit.testing.store_suite import StoreConformance


class TestSQLiteStore(StoreConformance):
    reopen_by_locator = True  # a second connection (and worker thread) on the same file

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLiteStore]:
        s = SQLiteStore.from_url(f"sqlite:///{tmp_path}/t.db")
        await s.setup()
        yield s
        await s.close()
