"""Copying a thread between any two backends.

Agent Framework documents that a thread cannot move between agent types; threadkit copies one:
every message in order, with roles, text, image and file references, metadata, and tool-call /
result pairs kept paired, written through :meth:`AgentThread.append_messages` of the destination.
The result maps old message ids to new ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from threadkit.thread import AgentThread, ThreadBackend
from threadkit.types import Message, ToolCallContent, ToolResultContent

__all__ = ["CopyResult", "copy_thread"]

_COPIED_FROM = "threadkit.copied_from"


@dataclass
class CopyResult:
    """What :func:`copy_thread` made.

    Attributes:
        thread: the new thread on the destination backend.
        source_thread_id: the thread that was copied.
        message_ids: source message id → destination message id, for every message copied.
    """

    thread: AgentThread
    source_thread_id: str
    message_ids: dict[str, str] = field(default_factory=dict)


def _turns(messages: list[Message], batch: int) -> list[list[Message]]:
    """Split messages into batches of about ``batch``, never inside an open tool-call turn."""
    out: list[list[Message]] = []
    current: list[Message] = []
    open_calls: set[str] = set()
    for m in messages:
        current.append(m)
        for p in m.content:
            if isinstance(p, ToolCallContent):
                open_calls.add(p.id)
            elif isinstance(p, ToolResultContent):
                open_calls.discard(p.tool_call_id)
        if len(current) >= batch and not open_calls:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


async def copy_thread(
    source: AgentThread,
    destination: ThreadBackend,
    *,
    metadata: Mapping[str, str] | None = None,
    batch: int = 100,
) -> CopyResult:
    """Copy every message of ``source`` into a new thread of ``destination``, in order.

    Args:
        source: the thread to copy (any backend); it is only read.
        destination: the backend to copy into (any backend, the same kind or another).
        metadata: the new thread's metadata (default: the source thread's, plus
            ``threadkit.copied_from`` = the source id when there is room for it).
        batch: messages written per :meth:`AgentThread.append_messages` call (a tool-call turn
            is never split across calls).

    Returns:
        A :class:`CopyResult`: the new thread and the old → new message id mapping.

    Raises:
        UnsupportedOperation: the destination cannot hold some message (e.g. tool results in an
            Assistants thread). The partly written destination thread is deleted again.
        ThreadNotFoundError: the source thread does not exist.
    """
    info = await source.info()
    meta = dict(info.metadata if metadata is None else metadata)
    if metadata is None and len(meta) < 16:
        meta.setdefault(_COPIED_FROM, source.id)
    messages = [m async for m in source.messages()]
    target = await destination.create_thread(metadata=meta)
    result = CopyResult(thread=target, source_thread_id=source.id)
    try:
        for chunk in _turns(messages, max(batch, 1)):
            written = await target.append_messages(chunk)
            for old, new in zip(chunk, written, strict=True):
                result.message_ids[old.id] = new.id
    except BaseException:
        with contextlib.suppress(Exception):
            await target.delete()
        raise
    return result
