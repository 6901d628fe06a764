"""The thread conformance suite on the local ("chat") backend, over each local store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from threadkit.testing import ThreadConformance


class TestLocalMemory(ThreadConformance):
    @pytest.fixture
    def config(self) -> dict[str, Any]:
        return {"backend": "chat", "store": "memory://"}


class TestLocalSQLite(ThreadConformance):
    @pytest.fixture
    def config(self, tmp_path: Path) -> dict[str, Any]:
        return {"backend": "chat", "store": f"sqlite:///{tmp_path}/threads.db"}
