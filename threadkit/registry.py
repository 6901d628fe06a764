"""Registries of backend and store names, with entry points for third parties.

Built-in names map to ``"module:attribute"`` strings plus the extra that installs their
dependencies, in the manner of fsspec's ``registry.py``; nothing is imported until used. Third
parties add names through the entry-point groups ``threadkit.backends`` and ``threadkit.stores``
(the entry point's object is the class), or at run time with :func:`register_store` /
:func:`register_backend`.

A store class opens from a URL with ``cls.from_url(url, **options)``; a backend class is built
with ``cls.from_config(config)``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from threadkit.errors import ConfigError, MissingExtraError

__all__ = [
    "BACKENDS",
    "STORES",
    "RegistryEntry",
    "load_backend_class",
    "load_store_class",
    "open_store",
    "register_backend",
    "register_store",
    "store_scheme",
]


class RegistryEntry(NamedTuple):
    """Where a named implementation lives (``"module:attr"``) and which extra installs it."""

    target: str
    extra: str | None = None


STORES: dict[str, RegistryEntry] = {
    "memory": RegistryEntry("threadkit.stores.memory:MemoryStore"),
    "sqlite": RegistryEntry("threadkit.stores.sqlite:SQLiteStore"),
    "redis": RegistryEntry("threadkit.stores.redis:RedisStore", "redis"),
    "rediss": RegistryEntry("threadkit.stores.redis:RedisStore", "redis"),
    "postgresql": RegistryEntry("threadkit.stores.postgres:PostgresStore", "postgres"),
    "postgres": RegistryEntry("threadkit.stores.postgres:PostgresStore", "postgres"),
}
"""URL scheme → store class."""

BACKENDS: dict[str, RegistryEntry] = {
    "chat": RegistryEntry("threadkit._local:LocalBackend"),
    "assistants": RegistryEntry("threadkit.adapters.assistants:AssistantsBackend", "openai"),
    "responses": RegistryEntry("threadkit.adapters.responses:ResponsesBackend", "openai"),
    "foundry-agents": RegistryEntry(
        "threadkit.adapters.foundry_agents:FoundryAgentsBackend", "foundry"
    ),
    "foundry": RegistryEntry("threadkit.adapters.foundry:FoundryBackend", "foundry"),
}
"""Backend name (the ``backend`` config key) → backend class."""

_loaded_entry_points = False


def register_store(scheme: str, target: str | type, extra: str | None = None) -> None:
    """Register a store class for a URL scheme (``target`` = class or ``"module:attr"``)."""
    STORES[scheme] = RegistryEntry(target if isinstance(target, str) else _path(target), extra)


def register_backend(name: str, target: str | type, extra: str | None = None) -> None:
    """Register a backend class under a ``backend`` config name."""
    BACKENDS[name] = RegistryEntry(target if isinstance(target, str) else _path(target), extra)


def _path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _load_entry_points() -> None:
    global _loaded_entry_points
    if _loaded_entry_points:
        return
    _loaded_entry_points = True
    for group, table in (("threadkit.stores", STORES), ("threadkit.backends", BACKENDS)):
        for ep in entry_points(group=group):
            table.setdefault(ep.name, RegistryEntry(ep.value))


def _load(entry: RegistryEntry, what: str) -> Any:
    module_name, _, attr = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except MissingExtraError:
        raise
    except ModuleNotFoundError as exc:
        if entry.extra:
            raise MissingExtraError(entry.extra, exc.name or module_name, what) from exc
        raise
    return getattr(module, attr)


def store_scheme(url: str) -> str:
    """The scheme of a store URL (``"sqlite"`` for ``sqlite:///x.db``).

    Raises:
        ConfigError: (key ``store``) the URL has no scheme.
    """
    scheme = urlsplit(url).scheme
    if not scheme or "://" not in url:
        raise ConfigError(
            f"{url!r} is not a store URL; expected e.g. 'memory://', 'sqlite:///threadkit.db', "
            "'redis://127.0.0.1:6379/0' or 'postgresql://127.0.0.1:5432/test'",
            key="store",
        )
    return scheme.lower()


def load_store_class(scheme: str) -> type:
    """The store class for a URL scheme.

    Raises:
        ConfigError: (key ``store``) no store is registered for the scheme.
        MissingExtraError: the store's extra is not installed.
    """
    _load_entry_points()
    entry = STORES.get(scheme)
    if entry is None:
        known = ", ".join(sorted(STORES))
        raise ConfigError(f"no store for URL scheme {scheme!r} (known: {known})", key="store")
    return _load(entry, f"the {scheme!r} store")  # type: ignore[no-any-return]


def load_backend_class(name: str) -> type:
    """The backend class for a ``backend`` name.

    Raises:
        ConfigError: (key ``backend``) no backend is registered under that name.
        MissingExtraError: the backend's extra is not installed.
    """
    _load_entry_points()
    entry = BACKENDS.get(name)
    if entry is None:
        known = ", ".join(sorted(BACKENDS))
        raise ConfigError(f"unknown backend {name!r} (known: {known})", key="backend")
    return _load(entry, f"the {name!r} backend")  # type: ignore[no-any-return]


def open_store(url: str, **options: Any) -> Any:
    """Open the store a URL names (not yet set up: call ``await store.setup()``).

    Args:
        url: ``memory://[name]``, ``sqlite:///path.db``, ``redis://host:port/db``,
            ``postgresql://host:port/db`` or a registered third-party scheme.
        **options: store-specific keyword options (``prefix=``, ``synchronous=``...).

    Returns:
        A :class:`~threadkit.stores.base.MessageStore`.

    Raises:
        ConfigError: (key ``store``) malformed URL or unknown scheme.
        MissingExtraError: the store's extra is not installed.
    """
    cls = load_store_class(store_scheme(url))
    return cls.from_url(url, **options)  # type: ignore[attr-defined]
