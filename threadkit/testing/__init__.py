"""Testing helpers: the offline ``ScriptedModel`` and the shared conformance suites.

``StoreConformance`` (every message store) and ``ThreadConformance`` (every thread backend) are
pytest test mixins: a backend's whole test module is a subclass providing a fixture. They import
pytest, so they load only when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from threadkit.testing.scripted import ScriptedModel, default_reply

if TYPE_CHECKING:
    from threadkit.testing.store_suite import StoreConformance
    from threadkit.testing.thread_suite import ThreadConformance

__all__ = ["ScriptedModel", "StoreConformance", "ThreadConformance", "default_reply"]

_LAZY = {
    "StoreConformance": "threadkit.testing.store_suite",
    "ThreadConformance": "threadkit.testing.thread_suite",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'threadkit.testing' has no attribute {name!r}")
