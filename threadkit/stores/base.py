"""The ``MessageStore`` seam: what every message store provides, and shared helpers.

A store keeps threads, their messages (ordered by a per-thread sequence number), runs, run steps
and opaque stored objects (agents, responses). Third parties implement the :class:`MessageStore`
Protocol; threadkit's own stores subclass :class:`BaseStore`, which adds the shared checks.

Rules every store follows (the conformance suite in ``threadkit.testing`` checks them):

* **Order is the sequence number.** Each appended message gets ``seq`` = previous highest + 1 in its
  thread, assigned atomically; listings and ``tail`` order by ``seq``, never by timestamp (timestamp
  ties split tool-call pairs, openai-agents #1900). Deleting a message leaves a gap; numbers are
  never reused.
* **Appends are atomic.** ``append(thread_id, [m1, m2, ...])`` writes every message or none, and
  concurrent appends to one thread never interleave.
* **Appends are idempotent by key.** A retried append with the same ``idempotency_key`` on the same
  thread writes nothing and returns the messages the first call stored.
* **Appends are validated.** A tool result must answer a tool call already in the thread (or earlier
  in the same append) that has no result yet; else :class:`~threadkit.errors.OrphanToolResultError`
  and nothing is written (openai-agents #4827).
* **Cursors are ids.** ``after``/``before`` name an item; ``after`` means "items that come after it
  in the order asked for", as in the OpenAI list endpoints.
* **One active run per thread.** ``create_run`` refuses a run while another run on the thread is
  active and not past its ``expires_at`` (:class:`~threadkit.errors.ActiveRunError`), atomically,
  across processes. A run whose holder crashed stops blocking once ``expires_at`` passes.
* **Deleting a thread deletes everything of it**: messages, runs, steps, idempotency keys.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import (
    Literal,
    NamedTuple,
    Protocol,
    TypeAlias,
    TypeGuard,
    TypeVar,
    cast,
    runtime_checkable,
)

import msgspec

from threadkit._ids import new_id, now
from threadkit.errors import OrphanToolResultError, ValidationError
from threadkit.types import (
    Message,
    Page,
    Run,
    RunStep,
    ThreadInfo,
    ToolCallContent,
    ToolResultContent,
)

T = TypeVar("T")

__all__ = [
    "BaseStore",
    "ImportPlan",
    "MessageStore",
    "Order",
    "StoredObject",
    "SupportsImport",
    "check_import",
    "check_metadata",
    "check_tool_results",
    "page_of",
    "prepare_messages",
    "supports_import",
    "tool_ids",
]

Order: TypeAlias = Literal["asc", "desc"]
"""Listing order: ``asc`` = oldest first, ``desc`` = newest first."""


class StoredObject(msgspec.Struct, kw_only=True):
    """An opaque object a store keeps for a server or adapter (an agent, a response...).

    Attributes:
        id: the object's id, unique within its kind.
        kind: the namespace (``"agent"``, ``"response"``...).
        created_at: unix seconds of the first ``put_object``.
        data: the encoded object (any bytes; threadkit uses JSON).
    """

    id: str
    kind: str
    created_at: int
    data: bytes


@runtime_checkable
class MessageStore(Protocol):
    """Where threads, messages, runs, run steps and stored objects live.

    Every method is a coroutine. Ids are strings; times are unix seconds; ``limit=None`` means
    "no limit". Unknown ids raise the matching :class:`~threadkit.errors.NotFoundError` subclass;
    driver failures raise :class:`~threadkit.errors.StoreError`.
    """

    @property
    def locator(self) -> str:
        """A URL that reopens this store in another process, without secrets
        (``sqlite:///abs/path.db``, ``redis://host:6379/0?prefix=tk``). ``memory://...`` for
        process-local stores."""
        ...

    async def setup(self) -> None:
        """Create or migrate the schema. Idempotent; safe to call on every start."""
        ...

    async def close(self) -> None:
        """Release connections. The store is unusable afterwards."""
        ...

    # -- threads -------------------------------------------------------------------------
    async def create_thread(
        self, *, thread_id: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> ThreadInfo:
        """Create an empty thread (id generated as ``thread_...`` when not given).

        Raises:
            ValidationError: a thread with ``thread_id`` already exists, or bad metadata.
        """
        ...

    async def get_thread(self, thread_id: str) -> ThreadInfo:
        """The thread's registry entry. Raises ThreadNotFoundError."""
        ...

    async def update_thread(self, thread_id: str, *, metadata: Mapping[str, str]) -> ThreadInfo:
        """Replace the thread's metadata. Raises ThreadNotFoundError, ValidationError."""
        ...

    async def delete_thread(self, thread_id: str) -> bool:
        """Delete the thread with its messages, runs, steps and keys. False if it did not exist."""
        ...

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
        """Threads by creation (``desc`` = newest first, the default), cursor-paginated.

        Args:
            metadata: keep only threads whose metadata contains every given pair.
            updated_before: keep only threads last updated before this unix time (for pruning).

        Raises:
            ThreadNotFoundError: ``after``/``before`` names no thread.
        """
        ...

    # -- messages ------------------------------------------------------------------------
    async def append(
        self,
        thread_id: str,
        messages: Sequence[Message],
        *,
        idempotency_key: str | None = None,
    ) -> list[Message]:
        """Append messages atomically, assigning consecutive ``seq`` numbers.

        Messages with an empty ``id`` get one (``msg_...``); ``created_at == 0`` becomes now;
        ``thread_id`` is set to this thread.

        Returns:
            The stored messages, in the order given, with ``seq`` set. On a retried
            ``idempotency_key``: the messages the first call stored, and nothing is written.

        Raises:
            ThreadNotFoundError: no such thread.
            OrphanToolResultError: a tool result answers no (or an already answered) tool call.
            ValidationError: a message id already exists in the thread, or bad metadata.
        """
        ...

    async def get_message(self, thread_id: str, message_id: str) -> Message:
        """One message. Raises ThreadNotFoundError, MessageNotFoundError."""
        ...

    async def list_messages(
        self,
        thread_id: str,
        *,
        order: Order = "asc",
        limit: int | None = 20,
        after: str | None = None,
        before: str | None = None,
    ) -> Page[Message]:
        """Messages by ``seq`` (``asc`` = oldest first), cursor-paginated; costs O(limit).

        Raises:
            ThreadNotFoundError: no such thread.
            MessageNotFoundError: ``after``/``before`` names no message of the thread.
        """
        ...

    async def tail(self, thread_id: str, n: int) -> list[Message]:
        """The newest ``n`` messages, oldest first; costs O(n). Raises ThreadNotFoundError."""
        ...

    async def count_messages(self, thread_id: str) -> int:
        """How many messages the thread holds. Raises ThreadNotFoundError."""
        ...

    async def update_message(
        self, thread_id: str, message_id: str, *, metadata: Mapping[str, str]
    ) -> Message:
        """Replace a message's metadata (content is immutable, as in the specs).

        Raises ThreadNotFoundError, MessageNotFoundError, ValidationError."""
        ...

    async def delete_message(self, thread_id: str, message_id: str) -> bool:
        """Delete one message. False if it did not exist.

        Raises:
            ValidationError: it holds a tool call whose result is still in the thread (deleting
                it would orphan that result); delete the result first.
        """
        ...

    # -- runs and steps ------------------------------------------------------------------
    async def create_run(self, run: Run) -> Run:
        """Store a new run, atomically refusing it while another run on the thread is active.

        A run counts as active while its status is active and ``expires_at`` is unset or later
        than the new run's ``created_at``.

        Raises:
            ThreadNotFoundError: no such thread.
            ActiveRunError: another run on the thread is active.
            ValidationError: a run with this id exists.
        """
        ...

    async def get_run(self, thread_id: str, run_id: str) -> Run:
        """One run. Raises ThreadNotFoundError, RunNotFoundError."""
        ...

    async def update_run(self, run: Run, *, expected_status: str | None = None) -> Run:
        """Replace a stored run. With ``expected_status``, only if the stored status still is
        that one (compare-and-set), so concurrent writers cannot both move a run.

        Raises:
            RunNotFoundError: no such run.
            InvalidRunStateError: the stored status differs from ``expected_status``
                (its ``status`` attribute holds the stored one).
        """
        ...

    async def list_runs(
        self,
        thread_id: str,
        *,
        order: Order = "desc",
        limit: int | None = 20,
        after: str | None = None,
        before: str | None = None,
    ) -> Page[Run]:
        """Runs by creation (``desc`` = newest first). Raises ThreadNotFoundError, RunNotFoundError."""
        ...

    async def get_active_run(self, thread_id: str) -> Run | None:
        """The newest run with an active status (expired or not), or None."""
        ...

    async def put_step(self, step: RunStep) -> RunStep:
        """Insert or replace a run step (by id). Raises ThreadNotFoundError, RunNotFoundError."""
        ...

    async def get_step(self, thread_id: str, run_id: str, step_id: str) -> RunStep:
        """One run step. Raises RunNotFoundError, RunStepNotFoundError."""
        ...

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
        """A run's steps by creation (``asc`` = oldest first). Raises RunNotFoundError,
        RunStepNotFoundError (bad cursor)."""
        ...

    # -- stored objects ------------------------------------------------------------------
    async def put_object(self, kind: str, object_id: str, data: bytes) -> StoredObject:
        """Insert or replace an opaque object; ``created_at`` is kept from the first put."""
        ...

    async def get_object(self, kind: str, object_id: str) -> StoredObject:
        """One object. Raises ObjectNotFoundError."""
        ...

    async def delete_object(self, kind: str, object_id: str) -> bool:
        """Delete one object. False if it did not exist."""
        ...

    async def list_objects(
        self,
        kind: str,
        *,
        order: Order = "desc",
        limit: int | None = 20,
        after: str | None = None,
        before: str | None = None,
    ) -> Page[StoredObject]:
        """Objects of a kind by creation (``desc`` = newest first). Raises ObjectNotFoundError
        for a bad cursor."""
        ...


@runtime_checkable
class SupportsImport(Protocol):
    """Optional store ability: create a whole thread from messages in one step.

    Used to restore snapshots that carry a thread inline, and by copies; a store without it is
    filled through ordinary appends. Check with :func:`supports_import`.
    """

    async def import_thread(
        self,
        thread_id: str,
        messages: Sequence[Message],
        *,
        metadata: Mapping[str, str] | None = None,
        created_at: int | None = None,
    ) -> ThreadInfo:
        """Create ``thread_id`` holding ``messages`` exactly as given (ids, ``seq``, timestamps).

        The store takes ownership of the message objects.

        Raises:
            ValidationError: the thread exists, ``seq`` is not strictly ascending and positive,
                a message id repeats, or a message names another thread.
            OrphanToolResultError: a tool result answers no earlier tool call.
        """
        ...


def supports_import(store: object) -> TypeGuard[SupportsImport]:
    """Whether ``store`` implements :class:`SupportsImport`."""
    return callable(getattr(store, "import_thread", None))


class ImportPlan(NamedTuple):
    """What :func:`check_import` worked out while checking, so a store need not redo it.

    Attributes:
        seqs: the messages' ``seq`` numbers, in the order given (strictly ascending).
        seq_of: message id -> ``seq``, in the order given.
        calls: the tool-call ids the messages make, in order.
        results: the tool-call ids the messages answer, in order.
        unowned: whether some message has an empty ``thread_id`` (the store fills it in).
    """

    seqs: list[int]
    seq_of: dict[str, int]
    calls: list[str]
    results: list[str]
    unowned: bool


def check_import(thread_id: str, messages: Sequence[Message]) -> ImportPlan:
    """The checks of :meth:`SupportsImport.import_thread`, shared by stores.

    O(len(messages)): a few flat passes (comprehensions, one ``dict`` and ``set`` build, one
    ``sorted``); the tool parts are walked once, and only when some message holds one.

    Returns:
        What the checks worked out (:class:`ImportPlan`); callers may ignore it.

    Raises:
        ValidationError, OrphanToolResultError: see :meth:`SupportsImport.import_thread`.
    """
    seq_of = {m.id: m.seq for m in messages}
    unique = len(seq_of) == len(messages)
    # with unique ids the index holds every seq in order; else the ids are refused below
    seqs = list(seq_of.values()) if unique else [m.seq for m in messages]
    if seqs and (seqs[0] < 1 or len(set(seqs)) != len(seqs) or seqs != sorted(seqs)):
        raise ValidationError("imported messages need strictly ascending seq numbers >= 1")
    if not unique or "" in seq_of:
        raise ValidationError("imported message ids must be non-empty and unique")
    owners = [m.thread_id for m in messages]
    unowned = False
    if owners.count(thread_id) != len(owners):  # string compares, no hashing, when all agree
        if not set(owners) <= {"", thread_id}:
            raise ValidationError(f"an imported message belongs to another thread than {thread_id}")
        unowned = True
    calls, results = _checked_tool_ids(messages)
    return ImportPlan(seqs, seq_of, calls, results, unowned)


class BaseStore(abc.ABC):
    """Base class of threadkit's own stores: shared input checks and URL plumbing.

    Subclasses implement every :class:`MessageStore` method; this class only adds helpers.
    """

    #: URL schemes the store opens (``("sqlite",)``).
    schemes: tuple[str, ...] = ()

    @property
    @abc.abstractmethod
    def locator(self) -> str: ...

    async def setup(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Create or migrate the schema; the default does nothing."""

    async def __aenter__(self) -> BaseStore:
        await self.setup()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abc.abstractmethod
    async def close(self) -> None: ...


# --------------------------------------------------------------------------- shared checks

_MAX_METADATA_PAIRS = 16
_MAX_METADATA_KEY = 64
_MAX_METADATA_VALUE = 512


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Validate metadata as the specs do: at most 16 pairs, keys <= 64 and values <= 512 chars,
    all strings. Returns a plain dict copy.

    Raises:
        ValidationError: a rule is broken (the message says which).
    """
    if not metadata:
        return {}
    if len(metadata) > _MAX_METADATA_PAIRS:
        raise ValidationError(f"metadata has {len(metadata)} pairs; at most 16 are allowed")
    out: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValidationError(f"metadata keys and values must be strings (key {key!r})")
        if len(key) > _MAX_METADATA_KEY:
            raise ValidationError(f"metadata key {key[:20]!r}... is over 64 characters")
        if len(value) > _MAX_METADATA_VALUE:
            raise ValidationError(f"metadata value of {key!r} is over 512 characters")
        out[key] = value
    return out


def prepare_messages(
    thread_id: str,
    messages: Sequence[Message],
    *,
    new_message_id: Callable[[], str] | None = None,
) -> list[Message]:
    """Copy messages for storing: set ``thread_id``, fill empty ids and zero ``created_at``.

    Returns new Message objects (the caller's are not mutated); ``seq`` is left for the store.
    ``new_message_id`` makes the ids for messages without one (default ``new_id("msg")``).

    Raises:
        ValidationError: empty batch, duplicate ids within the batch, a message that names
            another thread, or bad metadata.
    """
    if not messages:
        raise ValidationError("append needs at least one message")
    ts = now()
    out: list[Message] = []
    seen: set[str] = set()
    for m in messages:
        if m.thread_id and m.thread_id != thread_id:
            raise ValidationError(
                f"message {m.id or '(new)'} belongs to thread {m.thread_id}, not {thread_id}"
            )
        mid = m.id or (new_message_id() if new_message_id is not None else new_id("msg"))
        if mid in seen:
            raise ValidationError(f"message id {mid} appears twice in one append")
        seen.add(mid)
        out.append(
            msgspec.structs.replace(
                m,
                id=mid,
                thread_id=thread_id,
                created_at=m.created_at or ts,
                metadata=check_metadata(m.metadata),
            )
        )
    return out


_TOOL_PARTS = frozenset({ToolCallContent, ToolResultContent})


def _has_tool_parts(messages: Sequence[Message]) -> bool:
    """Whether any message holds a tool call or result (one pass over the part types)."""
    return not {type(p) for m in messages for p in m.content}.isdisjoint(_TOOL_PARTS)


def tool_ids(messages: Sequence[Message]) -> tuple[list[str], list[str]]:
    """The tool-call ids made and the tool-call ids answered by ``messages``, in order."""
    calls: list[str] = []
    results: list[str] = []
    if not _has_tool_parts(messages):
        return calls, results
    for m in messages:
        for part in m.content:
            kind = type(part)
            if kind is ToolCallContent:
                calls.append(cast(ToolCallContent, part).id)
            elif kind is ToolResultContent:
                results.append(cast(ToolResultContent, part).tool_call_id)
    return calls, results


def _checked_tool_ids(messages: Sequence[Message]) -> tuple[list[str], list[str]]:
    """:func:`tool_ids` and ``check_tool_results(messages, {})`` in one walk (for imports).

    Same rules, errors and messages as :func:`check_tool_results` with nothing in the thread
    yet; ``test_snapshot_inline`` holds the two to the same verdicts.
    """
    calls: list[str] = []
    results: list[str] = []
    if not _has_tool_parts(messages):
        return calls, results
    made: set[str] = set()
    open_calls: set[str] = set()
    for m in messages:
        for part in m.content:
            kind = type(part)  # exact types, as check_tool_results and tool_ids match them
            if kind is ToolCallContent:
                cid = cast(ToolCallContent, part).id
                if cid in made:
                    raise ValidationError(f"tool call id {cid} is already used in the thread")
                made.add(cid)
                open_calls.add(cid)
                calls.append(cid)
            elif kind is ToolResultContent:
                cid = cast(ToolResultContent, part).tool_call_id
                if cid not in open_calls:
                    why = "was already answered" if cid in made else "is not in the thread"
                    raise OrphanToolResultError(
                        f"tool result in message {m.id} answers tool call {cid}, which {why}; "
                        "a result must follow its call",
                        tool_call_id=cid,
                    )
                open_calls.discard(cid)
                results.append(cid)
    return calls, results


def check_tool_results(messages: Sequence[Message], existing: Mapping[str, bool]) -> None:
    """Refuse a batch whose tool results do not answer open tool calls.

    Args:
        messages: the batch about to be appended, in order.
        existing: for every tool-call id of the batch (calls and results) already in the thread,
            whether it has been answered. Ids not in the mapping are unknown to the thread.

    Raises:
        ValidationError: a tool call reuses an id already in the thread or the batch.
        OrphanToolResultError: a result answers an unknown call, a call made later in the
            batch, or a call already answered.
    """
    if not _has_tool_parts(messages):
        return
    open_calls: set[str] = {cid for cid, answered in existing.items() if not answered}
    made: set[str] = set(existing)
    for m in messages:
        for part in m.content:
            kind = type(part)
            if kind is ToolCallContent:
                cid = cast(ToolCallContent, part).id
                if cid in made:
                    raise ValidationError(f"tool call id {cid} is already used in the thread")
                made.add(cid)
                open_calls.add(cid)
            elif kind is ToolResultContent:
                cid = cast(ToolResultContent, part).tool_call_id
                if cid not in open_calls:
                    why = "was already answered" if cid in made else "is not in the thread"
                    raise OrphanToolResultError(
                        f"tool result in message {m.id} answers tool call {cid}, which {why}; "
                        "a result must follow its call",
                        tool_call_id=cid,
                    )
                open_calls.discard(cid)


def page_of(items: list[T], ids: list[str], has_more: bool) -> Page[T]:
    """Build a :class:`Page` from items and their ids (same order)."""
    return Page(
        data=items,
        has_more=has_more,
        first_id=ids[0] if ids else None,
        last_id=ids[-1] if ids else None,
    )
