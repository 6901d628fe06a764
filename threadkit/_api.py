"""The entry points: :func:`open_backend` and :func:`resume`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, cast

from threadkit.config import Config, load_config
from threadkit.errors import BackendMismatchError
from threadkit.registry import load_backend_class
from threadkit.snapshot import Snapshot, decode_snapshot
from threadkit.thread import AgentThread, ThreadBackend

__all__ = ["config_from_snapshot", "open_backend", "resume"]

ConfigLike = Config | Mapping[str, Any] | str | os.PathLike[str] | None


async def open_backend(config: ConfigLike = None) -> ThreadBackend:
    """Open the backend a configuration names (see :mod:`threadkit.config` for the keys).

    Args:
        config: a dict, a path to a ``threadkit.toml``, a :class:`~threadkit.config.Config`,
            or None to read ``THREADKIT_*`` environment variables.

    Returns:
        A :class:`~threadkit.thread.ThreadBackend` with ``create_thread(metadata=)``,
        ``get_thread(id)``, ``list_threads()`` and ``close()``; also an async context manager.

    Raises:
        ConfigError: a bad configuration (``err.key`` names the key).
        MissingExtraError: the backend's or store's extra is not installed.
        StoreError: the store cannot be opened or set up.
    """
    cfg = load_config(config)
    cls = load_backend_class(cfg.backend)
    backend = await cls.from_config(cfg)  # type: ignore[attr-defined]
    return cast(ThreadBackend, backend)


def config_from_snapshot(snapshot: Snapshot) -> Config:
    """The configuration that reopens the backend and store a snapshot names."""
    keys = set(Config.__struct_fields__)
    data: dict[str, Any] = {k: v for k, v in snapshot.settings.items() if k in keys}
    data["backend"] = snapshot.backend
    if snapshot.store:
        data["store"] = snapshot.store
    return load_config(data)


async def resume(
    blob: bytes | bytearray | memoryview | str, config: ConfigLike = None
) -> AgentThread:
    """Rebuild a thread from :meth:`AgentThread.serialize` output, in any process.

    Args:
        blob: the snapshot (JSON or MessagePack bytes).
        config: the configuration to resume under; None reopens the backend and store the
            snapshot names (credentials still come from the environment, never the snapshot).

    Returns:
        The thread; ``await thread.close()`` (or ``async with``) releases the backend it opened.

    Raises:
        SnapshotError: corrupt, truncated or foreign input, or history missing in the store.
        IncompatibleVersionError: a snapshot from a newer threadkit.
        BackendMismatchError: ``config`` names another backend or store than the snapshot's.
        ThreadNotFoundError: the store or service no longer has the thread.
        ConfigError, MissingExtraError: as for :func:`open_backend`.
    """
    snapshot = decode_snapshot(blob)
    cfg = config_from_snapshot(snapshot) if config is None else load_config(config)
    if cfg.backend != snapshot.backend:
        raise BackendMismatchError(
            f"this snapshot was made by the {snapshot.backend!r} backend; the configuration "
            f"names {cfg.backend!r}. Resume it under a {snapshot.backend!r} configuration, or "
            "copy the thread across with threadkit.copy_thread.",
            expected=snapshot.backend,
            configured=cfg.backend,
        )
    backend = await open_backend(cfg)
    try:
        return await backend.resume_thread(snapshot)
    except BaseException:
        await backend.close()
        raise
