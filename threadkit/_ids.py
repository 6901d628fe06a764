"""Id and clock helpers shared by every backend."""

from __future__ import annotations

import secrets
import time

__all__ = ["new_id", "now"]


def new_id(prefix: str) -> str:
    """A new random id like ``msg_4f1c...`` (prefix, underscore, 24 hex digits = 96 random bits)."""
    return f"{prefix}_{secrets.token_hex(12)}"


def now() -> int:
    """The current time in integer unix seconds (UTC)."""
    return int(time.time())
