"""The synchronous facade: the same names as the async API, for scripts and notebooks.

Nothing is implemented twice: every call runs the async implementation on one private event loop
in a background thread (a "portal"), and waits for the result. Async iterators become ordinary
iterators that fetch a page at a time.

    from threadkit import sync as threadkit

    with threadkit.open_backend({"store": "sqlite:///app.db"}) as backend:
        thread = backend.create_thread()
        thread.add_message("user", "Hello")
        run = thread.run(agent)
        for m in thread.messages():
            print(m.role, m.text)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar

from threadkit import _api
from threadkit.thread import AgentThread, Content, Order, ThreadBackend
from threadkit.tools import ToolFunction
from threadkit.types import (
    Agent,
    Attachment,
    Message,
    Role,
    Run,
    RunStep,
    ThreadInfo,
    ToolOutput,
)

__all__ = ["SyncAgentThread", "SyncBackend", "open_backend", "resume"]

T = TypeVar("T")


class _Portal:
    """One event loop in a daemon thread; coroutines are submitted to it and waited for."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="threadkit-sync", daemon=True
        )
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("the sync facade cannot be called from inside a tool it runs")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        async def step() -> tuple[bool, T | None]:
            try:
                return True, await anext(agen)
            except StopAsyncIteration:
                return False, None

        while True:
            ok, item = self.call(step())
            if not ok:
                return
            yield item  # type: ignore[misc]


_portal: _Portal | None = None
_portal_lock = threading.Lock()


def _get_portal() -> _Portal:
    global _portal
    with _portal_lock:
        if _portal is None:
            _portal = _Portal()
        return _portal


class SyncAgentThread:
    """Blocking twin of :class:`~threadkit.thread.AgentThread`; see it for every method's docs."""

    def __init__(self, thread: AgentThread) -> None:
        self.aio = thread
        """The async thread underneath."""
        self._p = _get_portal()

    @property
    def id(self) -> str:
        return self.aio.id

    @property
    def backend(self) -> str:
        return self.aio.backend

    def __repr__(self) -> str:
        return f"<SyncAgentThread {self.aio!r}>"

    def add_message(
        self,
        role: Role,
        content: Content,
        *,
        attachments: Sequence[Attachment] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Message:
        return self._p.call(
            self.aio.add_message(role, content, attachments=attachments, metadata=metadata)
        )

    def messages(
        self,
        order: Order = "asc",
        *,
        limit: int | None = None,
        after: str | None = None,
        before: str | None = None,
    ) -> Iterator[Message]:
        return self._p.iterate(self.aio.messages(order, limit=limit, after=after, before=before))

    def get_message(self, message_id: str) -> Message:
        return self._p.call(self.aio.get_message(message_id))

    def run(
        self,
        agent: Agent | None = None,
        *,
        functions: Iterable[ToolFunction] | Mapping[str, ToolFunction] | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> Run:
        return self._p.call(self.aio.run(agent, functions=functions, timeout=timeout, **options))

    def create_run(self, agent: Agent | None = None, **options: Any) -> Run:
        return self._p.call(self.aio.create_run(agent, **options))

    def get_run(self, run_id: str) -> Run:
        return self._p.call(self.aio.get_run(run_id))

    def wait_run(self, run_id: str, *, timeout: float | None = None) -> Run:
        return self._p.call(self.aio.wait_run(run_id, timeout=timeout))

    def runs(self, order: Order = "desc", *, limit: int | None = None) -> Iterator[Run]:
        return self._p.iterate(self.aio.runs(order, limit=limit))

    def run_steps(self, run_id: str, order: Order = "asc") -> Iterator[RunStep]:
        return self._p.iterate(self.aio.run_steps(run_id, order))

    def submit_tool_outputs(self, run_id: str, outputs: Sequence[ToolOutput]) -> Run:
        return self._p.call(self.aio.submit_tool_outputs(run_id, outputs))

    def cancel_run(self, run_id: str) -> Run:
        return self._p.call(self.aio.cancel_run(run_id))

    def delete(self) -> bool:
        return self._p.call(self.aio.delete())

    def serialize(self, format: Literal["json", "msgpack"] = "json") -> bytes:
        return self._p.call(self.aio.serialize(format))

    def export(self) -> dict[str, Any]:
        return self._p.call(self.aio.export())

    def info(self) -> ThreadInfo:
        return self._p.call(self.aio.info())

    def close(self) -> None:
        """Release the backend this thread owns (threads from :func:`resume`)."""
        closer = getattr(self.aio, "close", None)
        if closer is not None:
            self._p.call(closer())

    def __enter__(self) -> SyncAgentThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncBackend:
    """Blocking twin of :class:`~threadkit.thread.ThreadBackend`."""

    def __init__(self, backend: ThreadBackend) -> None:
        self.aio = backend
        """The async backend underneath."""
        self._p = _get_portal()

    @property
    def kind(self) -> str:
        return self.aio.kind

    @property
    def settings(self) -> dict[str, Any]:
        return self.aio.settings

    def create_thread(self, *, metadata: Mapping[str, str] | None = None) -> SyncAgentThread:
        return SyncAgentThread(self._p.call(self.aio.create_thread(metadata=metadata)))

    def get_thread(self, thread_id: str) -> SyncAgentThread:
        return SyncAgentThread(self._p.call(self.aio.get_thread(thread_id)))

    def list_threads(
        self, *, limit: int | None = None, metadata: Mapping[str, str] | None = None
    ) -> Iterator[ThreadInfo]:
        return self._p.iterate(self.aio.list_threads(limit=limit, metadata=metadata))

    def close(self) -> None:
        self._p.call(self.aio.close())

    def __enter__(self) -> SyncBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_backend(config: _api.ConfigLike = None) -> SyncBackend:
    """Blocking :func:`threadkit.open_backend`."""
    return SyncBackend(_get_portal().call(_api.open_backend(config)))


def resume(
    blob: bytes | bytearray | memoryview | str, config: _api.ConfigLike = None
) -> SyncAgentThread:
    """Blocking :func:`threadkit.resume`."""
    return SyncAgentThread(_get_portal().call(_api.resume(blob, config)))
