"""Lazy loading of optional dependencies, with the install command in the error."""

from __future__ import annotations

import importlib
from types import ModuleType

from threadkit.errors import MissingExtraError

__all__ = ["require"]


def require(module: str, extra: str, feature: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``threadkit[extra]``.

    Args:
        module: the import name, e.g. ``"redis.asyncio"``.
        extra: the threadkit extra that installs it, e.g. ``"redis"``.
        feature: what needs it, for the message (``"RedisStore"``).

    Returns:
        The imported module.

    Raises:
        MissingExtraError: the module (or one it imports) is not installed. It is also an
            ``ImportError`` and its message reads ``pip install "threadkit[<extra>]"``.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        what = f"{feature} needs {module!r}" if feature else None
        raise MissingExtraError(extra, module, what) from exc
