"""The local ("chat") backend: threads kept in a threadkit store, runs by the run engine."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal

import msgspec

from threadkit._ids import now
from threadkit.config import Config, make_model
from threadkit.engine import RunEngine
from threadkit.errors import (
    ActiveRunError,
    BackendMismatchError,
    RunTimeoutError,
    SnapshotError,
    ThreadNotFoundError,
    ValidationError,
)
from threadkit.models import ChatModel
from threadkit.registry import open_store
from threadkit.snapshot import FORMAT, VERSION, InlineThread, Snapshot, encode_snapshot
from threadkit.stores.base import MessageStore, supports_import
from threadkit.thread import (
    RUN_OPTIONS,
    BaseAgentThread,
    Content,
    Order,
    PollPolicy,
    build_message,
    normalize_content,
)
from threadkit.types import (
    Agent,
    Attachment,
    Message,
    Page,
    Role,
    Run,
    RunStep,
    ThreadInfo,
    ToolOutput,
)

__all__ = ["LocalBackend", "LocalThread"]


def _same_store(a: str | None, b: str) -> bool:
    return (a or "").rstrip("/") == b.rstrip("/")


class LocalBackend:
    """Local threads: messages in a :class:`MessageStore`, runs by a :class:`RunEngine`.

    Args:
        store: the message store (already set up, or set up by :meth:`from_config`).
        model: the chat model runs call.
        settings: non-secret settings recorded in snapshots (``model``, ``base_url``...).
        requires_action_timeout, run_timeout, max_model_calls: see :class:`RunEngine`.
        poll: the polling policy threads use.
        owns_store: close the store in :meth:`close`.
        owns_model: close the model (``aclose()``, when it has one) in :meth:`close`.
    """

    kind = "chat"

    def __init__(
        self,
        store: MessageStore,
        model: ChatModel,
        *,
        settings: Mapping[str, Any] | None = None,
        requires_action_timeout: float = 600.0,
        run_timeout: float = 600.0,
        max_model_calls: int = 25,
        poll: PollPolicy | None = None,
        owns_store: bool = True,
        owns_model: bool = False,
    ) -> None:
        self.store = store
        self.model = model
        self.engine = RunEngine(
            store,
            model,
            requires_action_timeout=requires_action_timeout,
            run_timeout=run_timeout,
            max_model_calls=max_model_calls,
        )
        self.poll = poll or PollPolicy()
        self._settings = dict(settings or {"model": model.model_name})
        self._owns_store = owns_store
        self._owns_model = owns_model
        self._closed = False

    @classmethod
    async def from_config(cls, cfg: Config) -> LocalBackend:
        """Open the store and model a :class:`~threadkit.config.Config` names.

        Raises:
            ConfigError, MissingExtraError: bad store URL or model, missing extra.
            StoreError: the store cannot be reached or set up.
        """
        model = make_model(cfg)
        store = open_store(cfg.store)
        await store.setup()
        settings: dict[str, Any] = {"model": cfg.model, "api_key_env": cfg.api_key_env}
        if cfg.base_url:
            settings["base_url"] = cfg.base_url
        return cls(
            store,
            model,
            settings=settings,
            requires_action_timeout=cfg.requires_action_timeout,
            run_timeout=cfg.run_timeout,
            max_model_calls=cfg.max_model_calls,
            poll=PollPolicy(timeout=cfg.poll_timeout, retry_failed=cfg.retry_failed_runs),
            owns_model=True,
        )

    @property
    def settings(self) -> dict[str, Any]:
        """Non-secret settings: ``store`` (locator), ``model``, ``base_url``, ``api_key_env``."""
        return {"backend": self.kind, "store": self.store.locator, **self._settings}

    async def create_thread(self, *, metadata: Mapping[str, str] | None = None) -> LocalThread:
        """Create an empty thread. Raises ValidationError for bad metadata."""
        info = await self.store.create_thread(metadata=metadata)
        return LocalThread(info.id, self)

    async def get_thread(self, thread_id: str) -> LocalThread:
        """An existing thread. Raises ThreadNotFoundError."""
        await self.store.get_thread(thread_id)
        return LocalThread(thread_id, self)

    async def list_threads(
        self, *, limit: int | None = None, metadata: Mapping[str, str] | None = None
    ) -> AsyncIterator[ThreadInfo]:
        """Iterate threads newest first, optionally only those whose metadata has every pair."""
        left = limit
        after: str | None = None
        while left is None or left > 0:
            size = 100 if left is None else min(left, 100)
            page = await self.store.list_threads(limit=size, after=after, metadata=metadata)
            for info in page.data:
                yield info
            if left is not None:
                left -= len(page.data)
            if not page.has_more or not page.data:
                return
            after = page.last_id

    async def resume_thread(self, snapshot: Snapshot) -> LocalThread:
        """The thread a snapshot names, in this backend's store.

        A snapshot with the thread inline (memory store) is loaded into this backend's store
        when that store is a memory store; any other snapshot must name this very store.

        Raises:
            BackendMismatchError: another backend kind or another store made the snapshot.
            ThreadNotFoundError: the store no longer has the thread.
            SnapshotError: the store holds fewer messages than the snapshot recorded.
        """
        if snapshot.backend != self.kind:
            raise BackendMismatchError(
                f"this snapshot was made by the {snapshot.backend!r} backend; the configured "
                f"backend is {self.kind!r}",
                expected=snapshot.backend,
                configured=self.kind,
            )
        locator = self.store.locator
        if snapshot.inline is not None:
            if not locator.startswith("memory://"):
                raise BackendMismatchError(
                    f"this snapshot carries a memory-store thread inline; the configured store "
                    f"is {locator}. Resume it with a memory:// store, then copy the thread.",
                    expected="memory://",
                    configured=locator,
                )
            await self._load_inline(snapshot, snapshot.inline)
        elif not _same_store(snapshot.store, locator):
            raise BackendMismatchError(
                f"thread {snapshot.thread_id} lives in {snapshot.store}; the configured store "
                f"is {locator}",
                expected=snapshot.store or "",
                configured=locator,
            )
        info = await self.store.get_thread(snapshot.thread_id)
        if snapshot.last_seq:
            tail = await self.store.tail(snapshot.thread_id, 1)
            have = tail[-1].seq if tail else 0
            if have < snapshot.last_seq:
                raise SnapshotError(
                    f"store {locator} holds thread {snapshot.thread_id} only up to message "
                    f"{have}, but the snapshot recorded {snapshot.last_seq}: history is missing"
                )
        return LocalThread(info.id, self)

    async def _load_inline(self, snapshot: Snapshot, inline: InlineThread) -> None:
        try:
            await self.store.get_thread(snapshot.thread_id)
            return  # already here (same process, same named memory store)
        except ThreadNotFoundError:
            pass
        if supports_import(self.store):
            await self.store.import_thread(
                snapshot.thread_id,
                inline.messages,
                metadata=inline.metadata,
                created_at=inline.created_at,
            )
            return
        await self.store.create_thread(thread_id=snapshot.thread_id, metadata=inline.metadata)
        batch = 500
        for i in range(0, len(inline.messages), batch):
            chunk = [msgspec.structs.replace(m, seq=0) for m in inline.messages[i : i + batch]]
            await self.store.append(snapshot.thread_id, chunk)

    async def close(self) -> None:
        """Stop background runs and close the store (when this backend opened it)."""
        if self._closed:
            return
        self._closed = True
        await self.engine.aclose()
        if self._owns_model:
            closer = getattr(self.model, "aclose", None)
            if closer is not None:
                await closer()
        if self._owns_store:
            await self.store.close()

    async def __aenter__(self) -> LocalBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class LocalThread(BaseAgentThread):
    """A thread of the local backend (see :class:`~threadkit.thread.BaseAgentThread`)."""

    backend = "chat"

    def __init__(self, thread_id: str, owner: LocalBackend) -> None:
        super().__init__(thread_id, poll=owner.poll)
        self.owner = owner
        self._store = owner.store
        self._engine = owner.engine

    async def add_message(
        self,
        role: Role,
        content: Content,
        *,
        attachments: Sequence[Attachment] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Message:
        message = build_message(self.id, role, content, attachments=attachments, metadata=metadata)
        await self._check_no_active_run()
        (stored,) = await self._store.append(self.id, [message])
        return stored

    async def append_messages(self, messages: Sequence[Message]) -> list[Message]:
        fresh = [
            Message(
                id="",
                thread_id=self.id,
                role=m.role,
                content=normalize_content(m.role, m.content),
                attachments=list(m.attachments),
                metadata=dict(m.metadata),
                run_id=m.run_id,
                agent_id=m.agent_id,
                provider_details=m.provider_details,
            )
            for m in messages
        ]
        if not fresh:
            return []
        await self._check_no_active_run()
        return await self._store.append(self.id, fresh)

    async def _check_no_active_run(self) -> None:
        active = await self._store.get_active_run(self.id)
        if active is not None:
            active = await self._engine.refresh(active)
            if active.status.is_active:
                raise ActiveRunError(self.id, active.id)

    async def list_messages(
        self,
        *,
        order: Order = "asc",
        limit: int = 100,
        after: str | None = None,
        before: str | None = None,
    ) -> Page[Message]:
        return await self._store.list_messages(
            self.id, order=order, limit=limit, after=after, before=before
        )

    async def get_message(self, message_id: str) -> Message:
        return await self._store.get_message(self.id, message_id)

    async def create_run(self, agent: Agent | None = None, **options: Any) -> Run:
        unknown = sorted(set(options) - RUN_OPTIONS)
        if unknown:
            raise ValidationError(
                f"unknown run option {unknown[0]!r} (known: {', '.join(sorted(RUN_OPTIONS))})"
            )
        extra = options.pop("additional_messages", None) or ()
        messages = [
            m if isinstance(m, Message) else build_message(self.id, m["role"], m["content"])
            for m in extra
        ]
        run = await self._engine.create_run(self.id, agent, additional_messages=messages, **options)
        self._engine.start(self.id, run.id)
        return run

    async def get_run(self, run_id: str) -> Run:
        return await self._engine.get_run(self.id, run_id)

    async def wait_run(self, run_id: str, *, timeout: float | None = None) -> Run:
        """Wait for a run to stop (terminal or ``requires_action``).

        A run processed by this process is awaited directly (no polling delay); one processed
        elsewhere is polled with the thread's :class:`~threadkit.thread.PollPolicy`.

        Raises:
            RunTimeoutError: the run did not stop in ``timeout`` seconds.
        """
        task = self._engine._tasks.get(run_id)
        limit = timeout if timeout is not None else self.poll.timeout
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), limit)
            except TimeoutError as exc:
                raise RunTimeoutError(f"run {run_id} did not stop in {limit} seconds") from exc
            return await self.get_run(run_id)
        return await super().wait_run(run_id, timeout=limit)

    async def list_runs(
        self, *, order: Order = "desc", limit: int = 100, after: str | None = None
    ) -> Page[Run]:
        return await self._store.list_runs(self.id, order=order, limit=limit, after=after)

    async def list_run_steps(
        self, run_id: str, *, order: Order = "asc", limit: int = 100, after: str | None = None
    ) -> Page[RunStep]:
        return await self._store.list_steps(self.id, run_id, order=order, limit=limit, after=after)

    async def submit_tool_outputs(self, run_id: str, outputs: Sequence[ToolOutput]) -> Run:
        run = await self._engine.submit_tool_outputs(self.id, run_id, outputs)
        self._engine.start(self.id, run_id)
        return run

    async def cancel_run(self, run_id: str) -> Run:
        return await self._engine.cancel(self.id, run_id)

    async def delete(self) -> bool:
        for run_id, task in list(self._engine._tasks.items()):
            with contextlib.suppress(Exception):
                run = await self._store.get_run(self.id, run_id)
                if run.thread_id == self.id:
                    task.cancel()
        return await self._store.delete_thread(self.id)

    async def info(self) -> ThreadInfo:
        return await self._store.get_thread(self.id)

    async def serialize(self, format: Literal["json", "msgpack"] = "json") -> bytes:
        store = self._store
        locator = store.locator
        info = await store.get_thread(self.id)
        inline: InlineThread | None = None
        if locator.startswith("memory://"):
            # The whole thread in one call: tail() with no real bound is one slice of the
            # store's own (read-only) messages, where a listing builds a page and its ids.
            # The count and last seq come from that same list, so they always agree with it.
            messages = await store.tail(self.id, sys.maxsize)
            count = len(messages)
            last_seq = messages[-1].seq if messages else 0
            inline = InlineThread(
                created_at=info.created_at, metadata=info.metadata, messages=messages
            )
        else:
            tail = await store.tail(self.id, 1)
            count = info.message_count
            last_seq = tail[-1].seq if tail else 0
        settings = {k: v for k, v in self.owner.settings.items() if k not in ("backend", "store")}
        snapshot = Snapshot(
            format=FORMAT,
            version=VERSION,
            backend=self.backend,
            thread_id=self.id,
            created_at=now(),
            settings=settings,
            store=locator,
            message_count=count,
            last_seq=last_seq,
            inline=inline,
        )
        return encode_snapshot(snapshot, format)

    async def close(self) -> None:
        """Close the backend this thread came from (threads from :func:`threadkit.resume` own
        theirs)."""
        await self.owner.close()

    async def __aenter__(self) -> LocalThread:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
