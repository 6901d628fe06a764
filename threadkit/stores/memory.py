"""``MemoryStore``: threads kept in this process's memory (``memory://`` and ``memory://NAME``).

``memory://`` opens a fresh private store; ``memory://NAME`` opens the process-wide space
``NAME``, shared by every store opened with that URL, so a snapshot taken in one part of a
process can be resumed by another part. Nothing survives the process.

Messages are kept as the store's own copies (made at append) and handed out as they are: treat
returned messages as read-only (threadkit never mutates them), which keeps listing and snapshots
free of copies. Runs and run steps are kept msgspec-encoded. Every
operation runs without awaiting inside, under one ``threading.Lock`` per space, so it is atomic
under asyncio concurrency and also when several event loops (threads) share a named space.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import msgspec

from threadkit._ids import new_id, now
from threadkit.errors import (
    ActiveRunError,
    ConfigError,
    InvalidRunStateError,
    MessageNotFoundError,
    NotFoundError,
    ObjectNotFoundError,
    RunNotFoundError,
    RunStepNotFoundError,
    StoreError,
    ThreadNotFoundError,
    ValidationError,
)
from threadkit.stores.base import (
    BaseStore,
    Order,
    StoredObject,
    check_import,
    check_metadata,
    check_tool_results,
    page_of,
    prepare_messages,
    tool_ids,
)
from threadkit.types import Message, Page, Run, RunStatus, RunStep, ThreadInfo

__all__ = ["MemoryStore"]

_T = TypeVar("_T")

_encoder = msgspec.msgpack.Encoder()
_run_decoder = msgspec.msgpack.Decoder(Run)
_step_decoder = msgspec.msgpack.Decoder(RunStep)


@dataclass
class _Run:
    blob: bytes
    status: RunStatus
    expires_at: int | None
    steps: dict[str, bytes] = field(default_factory=dict)  # step id -> encoded step, by creation


@dataclass
class _Thread:
    id: str
    created_at: int
    updated_at: int
    metadata: dict[str, str]
    last_seq: int = 0
    seqs: list[int] = field(default_factory=list)  # live messages' seq, ascending
    msgs: list[Message] = field(default_factory=list)  # the store's own copies, same order
    seq_of: dict[str, int] = field(default_factory=dict)  # message id -> seq
    calls: dict[str, bool] = field(default_factory=dict)  # tool-call id -> answered
    keys: dict[str, list[str]] = field(default_factory=dict)  # idempotency key -> message ids
    runs: dict[str, _Run] = field(default_factory=dict)  # run id -> run, by creation

    def info(self) -> ThreadInfo:
        return ThreadInfo(
            id=self.id,
            created_at=self.created_at,
            updated_at=self.updated_at,
            metadata=dict(self.metadata),
            message_count=len(self.seqs),
        )

    def index_of(self, message_id: str) -> int:
        """Position of a live message in ``seqs``/``msgs``; MessageNotFoundError if absent."""
        seq = self.seq_of.get(message_id)
        if seq is None:
            raise MessageNotFoundError(f"no message {message_id} in thread {self.id}")
        return bisect.bisect_left(self.seqs, seq)


@dataclass
class _Space:
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: dict[str, _Thread] = field(default_factory=dict)  # by creation
    objects: dict[str, dict[str, StoredObject]] = field(default_factory=dict)  # kind -> id -> obj


def _window(
    n: int,
    order: Order,
    after: int | None,
    before: int | None,
    limit: int | None,
) -> tuple[list[int], bool]:
    """Positions (in an ascending list of ``n`` items) of one page, in the order asked for.

    ``after``/``before`` are the cursor items' positions; see the pagination rules in
    :mod:`threadkit.testing.store_suite`. Returns the positions and ``has_more``.
    """
    if limit is not None and limit < 0:
        raise ValidationError(f"limit must be >= 0, not {limit}")
    if order not in ("asc", "desc"):
        raise ValidationError(f"order must be 'asc' or 'desc', not {order!r}")
    lo, hi = 0, n  # candidate positions [lo, hi)
    if order == "asc":
        if after is not None:
            lo = after + 1
        if before is not None:
            hi = before
        from_low = after is not None or before is None
    else:
        if after is not None:
            hi = after
        if before is not None:
            lo = before + 1
        from_low = before is not None and after is None
    if hi <= lo:
        return [], False
    size = hi - lo if limit is None else min(limit, hi - lo)
    has_more = size < hi - lo
    picked = range(lo, lo + size) if from_low else range(hi - size, hi)
    out = list(picked)
    if order == "desc":
        out.reverse()
    return out, has_more


class MemoryStore(BaseStore):
    """A message store in process memory; see the module docstring for sharing by name.

    Args:
        name: the process-wide space to share, or ``None`` for a private store.
    """

    schemes = ("memory",)

    _spaces: ClassVar[dict[str, _Space]] = {}
    _spaces_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str | None = None) -> None:
        self._name = name
        if name is None:
            self._space = _Space()
        else:
            with self._spaces_lock:
                self._space = self._spaces.setdefault(name, _Space())
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryStore:
        """Open ``memory://`` (a fresh private store) or ``memory://NAME`` (shared space NAME).

        Raises:
            ConfigError: (key ``store``) not a ``memory:`` URL, or an option was given (the
                memory store takes none).
        """
        parts = urlsplit(url)
        if parts.scheme != "memory":
            raise ConfigError(f"{url!r} is not a memory:// URL", key="store")
        if options:
            raise ConfigError(
                f"the memory store takes no options (got {sorted(options)})", key="store"
            )
        name = (parts.netloc + parts.path).strip("/")
        return cls(name or None)

    @classmethod
    def drop(cls, name: str) -> bool:
        """Forget the shared space ``name`` and everything in it (stores still open on it keep
        their data; new ones start empty). Returns False if there was no such space."""
        with cls._spaces_lock:
            return cls._spaces.pop(name, None) is not None

    @property
    def locator(self) -> str:
        """``memory://NAME`` for a shared space; ``memory://`` (which cannot reopen this private
        store's data) otherwise."""
        return f"memory://{self._name or ''}"

    async def close(self) -> None:
        """Mark the store closed; a shared space keeps its data for other stores."""
        self._closed = True

    # ----------------------------------------------------------------------- internals

    def _lock(self) -> threading.Lock:
        if self._closed:
            raise StoreError("the memory store is closed")
        return self._space.lock

    def _thread(self, thread_id: str) -> _Thread:
        t = self._space.threads.get(thread_id)
        if t is None:
            raise ThreadNotFoundError(f"no thread {thread_id}")
        return t

    def _run(self, thread_id: str, run_id: str) -> _Run:
        r = self._thread(thread_id).runs.get(run_id)
        if r is None:
            raise RunNotFoundError(f"no run {run_id} in thread {thread_id}")
        return r

    @staticmethod
    def _keyed_page(
        keys: Sequence[str],
        items: Callable[[list[str]], list[_T]],
        missing: type[NotFoundError],
        order: Order,
        limit: int | None,
        after: str | None,
        before: str | None,
    ) -> Page[_T]:
        """A page over ``keys`` (ascending creation order), cursors resolved by key."""
        pos: dict[str, int] | None = None
        if after is not None or before is not None:
            pos = {k: i for i, k in enumerate(keys)}
        a = b = None
        if after is not None:
            assert pos is not None
            if after not in pos:
                raise missing(f"no item {after} to list after")
            a = pos[after]
        if before is not None:
            assert pos is not None
            if before not in pos:
                raise missing(f"no item {before} to list before")
            b = pos[before]
        picked, has_more = _window(len(keys), order, a, b, limit)
        chosen = [keys[i] for i in picked]
        return page_of(items(chosen), chosen, has_more)

    # ----------------------------------------------------------------------- threads

    async def create_thread(
        self, *, thread_id: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> ThreadInfo:
        """See :meth:`MessageStore.create_thread`."""
        meta = check_metadata(metadata)
        tid = thread_id or new_id("thread")
        with self._lock():
            if tid in self._space.threads:
                raise ValidationError(f"thread {tid} already exists")
            ts = now()
            t = _Thread(id=tid, created_at=ts, updated_at=ts, metadata=meta)
            self._space.threads[tid] = t
            return t.info()

    async def get_thread(self, thread_id: str) -> ThreadInfo:
        """See :meth:`MessageStore.get_thread`."""
        with self._lock():
            return self._thread(thread_id).info()

    async def update_thread(self, thread_id: str, *, metadata: Mapping[str, str]) -> ThreadInfo:
        """See :meth:`MessageStore.update_thread`."""
        meta = check_metadata(metadata)
        with self._lock():
            t = self._thread(thread_id)
            t.metadata = meta
            t.updated_at = now()
            return t.info()

    async def delete_thread(self, thread_id: str) -> bool:
        """See :meth:`MessageStore.delete_thread`."""
        with self._lock():
            return self._space.threads.pop(thread_id, None) is not None

    async def list_threads(
        self,
        *,
        limit: int | None = 20,
        after: str | None = None,
        before: str | None = None,
        order: Order = "desc",
        metadata: Mapping[str, str] | None = None,
        updated_before: int | None = None,
    ) -> Page[ThreadInfo]:
        """See :meth:`MessageStore.list_threads`."""
        with self._lock():
            threads = self._space.threads
            for cursor in (after, before):
                if cursor is not None and cursor not in threads:
                    raise ThreadNotFoundError(f"no thread {cursor} to list from")
            wanted = dict(metadata or {})
            keys = [
                t.id
                for t in threads.values()
                if (
                    (updated_before is None or t.updated_at < updated_before)
                    and all(t.metadata.get(k) == v for k, v in wanted.items())
                )
                or t.id in (after, before)
            ]
            # cursor threads stay in ``keys`` to mark the place; a page never includes them
            return self._keyed_page(
                keys,
                lambda chosen: [threads[k].info() for k in chosen],
                ThreadNotFoundError,
                order,
                limit,
                after,
                before,
            )

    # ----------------------------------------------------------------------- messages

    async def append(
        self,
        thread_id: str,
        messages: Sequence[Message],
        *,
        idempotency_key: str | None = None,
    ) -> list[Message]:
        """See :meth:`MessageStore.append`."""
        prepared = prepare_messages(thread_id, messages)
        with self._lock():
            t = self._thread(thread_id)
            if idempotency_key is not None and idempotency_key in t.keys:
                return [
                    t.msgs[t.index_of(mid)] for mid in t.keys[idempotency_key] if mid in t.seq_of
                ]
            for m in prepared:
                if m.id in t.seq_of:
                    raise ValidationError(f"message {m.id} already exists in thread {thread_id}")
            calls, results = tool_ids(prepared)
            if calls or results:
                check_tool_results(
                    prepared, {c: t.calls[c] for c in (*calls, *results) if c in t.calls}
                )
            seq = t.last_seq
            for m in prepared:
                seq += 1
                m.seq = seq
            # everything is checked and encoded: nothing below can fail
            for c in calls:
                t.calls[c] = False
            for r in results:
                t.calls[r] = True
            for m in prepared:
                t.seqs.append(m.seq)
                t.msgs.append(m)
                t.seq_of[m.id] = m.seq
            t.last_seq = seq
            t.updated_at = now()
            if idempotency_key is not None:
                t.keys[idempotency_key] = [m.id for m in prepared]
            return prepared

    async def import_thread(
        self,
        thread_id: str,
        messages: Sequence[Message],
        *,
        metadata: Mapping[str, str] | None = None,
        created_at: int | None = None,
    ) -> ThreadInfo:
        """See :meth:`~threadkit.stores.base.SupportsImport.import_thread`; O(len(messages)).

        The checks' own lists and index become the thread's (no second pass), and the message
        objects are kept as they are: only messages with an empty ``thread_id`` are touched.
        """
        meta = check_metadata(metadata)
        plan = check_import(thread_id, messages)
        msgs = list(messages)
        with self._lock():
            if thread_id in self._space.threads:
                raise ValidationError(f"thread {thread_id} already exists")
            if plan.unowned:
                for m in msgs:
                    if not m.thread_id:
                        m.thread_id = thread_id
            ts = now()
            t = _Thread(
                id=thread_id,
                created_at=created_at or ts,
                updated_at=ts,
                metadata=meta,
                last_seq=plan.seqs[-1] if plan.seqs else 0,
                seqs=plan.seqs,
                msgs=msgs,
                seq_of=plan.seq_of,
                calls=dict.fromkeys(plan.calls, False) | dict.fromkeys(plan.results, True),
            )
            self._space.threads[thread_id] = t
            return t.info()

    async def get_message(self, thread_id: str, message_id: str) -> Message:
        """See :meth:`MessageStore.get_message`."""
        with self._lock():
            t = self._thread(thread_id)
            return t.msgs[t.index_of(message_id)]

    async def list_messages(
        self,
        thread_id: str,
        *,
        order: Order = "asc",
        limit: int | None = 20,
        after: str | None = None,
        before: str | None = None,
    ) -> Page[Message]:
        """See :meth:`MessageStore.list_messages`; O(limit + log n)."""
        with self._lock():
            t = self._thread(thread_id)
            a = t.index_of(after) if after is not None else None
            b = t.index_of(before) if before is not None else None
            picked, has_more = _window(len(t.seqs), order, a, b, limit)
            data = [t.msgs[i] for i in picked]
            return page_of(data, [m.id for m in data], has_more)

    async def tail(self, thread_id: str, n: int) -> list[Message]:
        """See :meth:`MessageStore.tail`; O(n)."""
        if n < 0:
            raise ValidationError(f"tail needs n >= 0, not {n}")
        with self._lock():
            t = self._thread(thread_id)
            if n == 0:
                return []
            return t.msgs[-n:]

    async def count_messages(self, thread_id: str) -> int:
        """See :meth:`MessageStore.count_messages`."""
        with self._lock():
            return len(self._thread(thread_id).seqs)

    async def update_message(
        self, thread_id: str, message_id: str, *, metadata: Mapping[str, str]
    ) -> Message:
        """See :meth:`MessageStore.update_message`."""
        meta = check_metadata(metadata)
        with self._lock():
            t = self._thread(thread_id)
            i = t.index_of(message_id)
            m = msgspec.structs.replace(t.msgs[i], metadata=meta)
            t.msgs[i] = m
            t.updated_at = now()
            return m

    async def delete_message(self, thread_id: str, message_id: str) -> bool:
        """See :meth:`MessageStore.delete_message`."""
        with self._lock():
            t = self._thread(thread_id)
            if message_id not in t.seq_of:
                return False
            i = t.index_of(message_id)
            calls, results = tool_ids([t.msgs[i]])
            answered = [c for c in calls if t.calls.get(c)]
            if answered:
                raise ValidationError(
                    f"message {message_id} holds tool call {answered[0]}, whose result is still "
                    "in the thread; delete the result first"
                )
            for c in calls:
                t.calls.pop(c, None)
            for r in results:
                if r in t.calls:
                    t.calls[r] = False
            del t.seqs[i], t.msgs[i], t.seq_of[message_id]
            t.updated_at = now()
            return True

    # ----------------------------------------------------------------------- runs

    async def create_run(self, run: Run) -> Run:
        """See :meth:`MessageStore.create_run`."""
        blob = _encoder.encode(run)
        with self._lock():
            t = self._thread(run.thread_id)
            if run.id in t.runs:
                raise ValidationError(f"run {run.id} already exists in thread {t.id}")
            for rid, r in reversed(t.runs.items()):
                if r.status.is_active and (r.expires_at is None or r.expires_at > run.created_at):
                    raise ActiveRunError(t.id, rid)
            t.runs[run.id] = _Run(blob, RunStatus(run.status), run.expires_at)
            return _run_decoder.decode(blob)

    async def get_run(self, thread_id: str, run_id: str) -> Run:
        """See :meth:`MessageStore.get_run`."""
        with self._lock():
            return _run_decoder.decode(self._run(thread_id, run_id).blob)

    async def update_run(self, run: Run, *, expected_status: str | None = None) -> Run:
        """See :meth:`MessageStore.update_run`."""
        blob = _encoder.encode(run)
        with self._lock():
            r = self._run(run.thread_id, run.id)
            if expected_status is not None and r.status != expected_status:
                raise InvalidRunStateError(
                    f"run {run.id} is {r.status.value}, not {expected_status}",
                    run_id=run.id,
                    status=r.status.value,
                )
            r.blob, r.status, r.expires_at = blob, RunStatus(run.status), run.expires_at
            return _run_decoder.decode(blob)

    async def list_runs(
        self,
        thread_id: str,
        *,
        order: Order = "desc",
        limit: int | None = 20,
        after: str | None = None,
        before: str | None = None,
    ) -> Page[Run]:
        """See :meth:`MessageStore.list_runs`."""
        with self._lock():
            runs = self._thread(thread_id).runs
            return self._keyed_page(
                list(runs),
                lambda chosen: [_run_decoder.decode(runs[k].blob) for k in chosen],
                RunNotFoundError,
                order,
                limit,
                after,
                before,
            )

    async def get_active_run(self, thread_id: str) -> Run | None:
        """See :meth:`MessageStore.get_active_run`."""
        with self._lock():
            for r in reversed(self._thread(thread_id).runs.values()):
                if r.status.is_active:
                    return _run_decoder.decode(r.blob)
            return None

    async def put_step(self, step: RunStep) -> RunStep:
        """See :meth:`MessageStore.put_step`."""
        blob = _encoder.encode(step)
        with self._lock():
            self._run(step.thread_id, step.run_id).steps[step.id] = blob
            return _step_decoder.decode(blob)

    async def get_step(self, thread_id: str, run_id: str, step_id: str) -> RunStep:
        """See :meth:`MessageStore.get_step`."""
        with self._lock():
            blob = self._run(thread_id, run_id).steps.get(step_id)
            if blob is None:
                raise RunStepNotFoundError(f"no step {step_id} in run {run_id}")
            return _step_decoder.decode(blob)

    async def list_steps(
        self,
        thread_id: str,
        run_id: str,
        *,
        order: Order = "asc",
        limit: int | None = 20,
        after: str | None = None,
        before: str | None = None,
    ) -> Page[RunStep]:
        """See :meth:`MessageStore.list_steps`."""
        with self._lock():
            steps = self._run(thread_id, run_id).steps
            return self._keyed_page(
                list(steps),
                lambda chosen: [_step_decoder.decode(steps[k]) for k in chosen],
                RunStepNotFoundError,
                order,
                limit,
                after,
                before,
            )

    # ----------------------------------------------------------------------- objects

    async def put_object(self, kind: str, object_id: str, data: bytes) -> StoredObject:
        """See :meth:`MessageStore.put_object`."""
        with self._lock():
            objects = self._space.objects.setdefault(kind, {})
            old = objects.get(object_id)
            created = old.created_at if old is not None else now()
            obj = StoredObject(id=object_id, kind=kind, created_at=created, data=bytes(data))
            objects[object_id] = obj  # replacing a key keeps its place (creation order)
            return obj

    async def get_object(self, kind: str, object_id: str) -> StoredObject:
        """See :meth:`MessageStore.get_object`."""
        with self._lock():
            obj = self._space.objects.get(kind, {}).get(object_id)
            if obj is None:
                raise ObjectNotFoundError(f"no {kind} object {object_id}")
            return obj

    async def delete_object(self, kind: str, object_id: str) -> bool:
        """See :meth:`MessageStore.delete_object`."""
        with self._lock():
            return self._space.objects.get(kind, {}).pop(object_id, None) is not None

    async def list_objects(
        self,
        kind: str,
        *,
        order: Order = "desc",
        limit: int | None = 20,
        after: str | None = None,
        before: str | None = None,
    ) -> Page[StoredObject]:
        """See :meth:`MessageStore.list_objects`."""
        with self._lock():
            objects = self._space.objects.get(kind, {})
            return self._keyed_page(
                list(objects),
                lambda chosen: [objects[k] for k in chosen],
                ObjectNotFoundError,
                order,
                limit,
                after,
                before,
            )
