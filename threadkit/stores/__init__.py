"""Message stores: the :class:`MessageStore` seam and the store registry.

Stores open from URLs through :func:`threadkit.registry.open_store` (``memory://``,
``sqlite:///path.db``, ``redis://...``, ``postgresql://...``).
"""

from __future__ import annotations

from threadkit.stores.base import BaseStore, MessageStore, Order, StoredObject

__all__ = ["BaseStore", "MessageStore", "Order", "StoredObject"]
