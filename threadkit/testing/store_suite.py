"""The message-store conformance suite: one spec every :class:`~threadkit.stores.base.MessageStore`
passes.

A store's whole test module is a subclass of :class:`StoreConformance` that provides a ``store``
fixture (fsspec's ``fsspec/tests/abstract`` mixins and langgraph's checkpoint-conformance suite
work the same way)::

    import pytest
    from threadkit.stores.sqlite import SQLiteStore
    from threadkit.testing.store_suite import StoreConformance

    class TestSQLiteStore(StoreConformance):
        reopen_by_locator = True  # a second instance from ``from_url(store.locator)``

        @pytest.fixture
        async def store(self, tmp_path):
            s = SQLiteStore.from_url(f"sqlite:///{tmp_path}/t.db")
            await s.setup()
            yield s
            await s.close()

Fixture contract:

* ``store`` (required): an async fixture yielding a set-up, **empty** store, closed by the
  fixture afterwards. Each test gets its own.
* ``reopen`` (optional): a fixture returning ``None`` (the default: cross-instance tests are
  skipped) or an async callable ``() -> MessageStore`` that opens *another* instance on the same
  backing data, already set up. The suite closes every instance it opens. Setting the class
  attribute ``reopen_by_locator = True`` gives the common one:
  ``type(store).from_url(store.locator)`` followed by ``setup()``.
* ``thread_id`` and ``second_store`` are the suite's own fixtures (a fresh thread of ``store``;
  the instance ``reopen`` opened); do not define fixtures with these names.

Pagination semantics the suite pins down (the OpenAI list endpoints' cursors):

* ``after=X``: items that come after ``X`` in the order asked for, starting next to ``X``;
  ``has_more`` says whether items remain past ``data[-1]``.
* ``before=X``: the ``limit`` items right before ``X`` in the order asked for (the previous
  page), still returned in the order asked for; ``has_more`` says whether items remain before
  ``data[0]``.
* both: the items strictly between the two, taken from the ``after`` side.
* no cursor: from the start of the order; ``limit=None`` means no limit.

Optional abilities are checked only where a store has them (``import_thread``: see
:class:`~threadkit.stores.base.SupportsImport`); the tests skip otherwise.

Every rule of :mod:`threadkit.stores.base` is checked here; the suite runs in a few seconds per
store (one test sleeps about a second to see unix-second clocks move).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import msgspec
import pytest

from threadkit._ids import new_id, now
from threadkit.errors import (
    ActiveRunError,
    InvalidRunStateError,
    MessageNotFoundError,
    NotFoundError,
    ObjectNotFoundError,
    OrphanToolResultError,
    RunNotFoundError,
    RunStepNotFoundError,
    ThreadNotFoundError,
    ValidationError,
)
from threadkit.stores.base import MessageStore, SupportsImport, supports_import
from threadkit.types import (
    Attachment,
    FileContent,
    FunctionCall,
    FunctionDefinition,
    FunctionTool,
    ImageFileContent,
    ImageUrlContent,
    IncompleteDetails,
    LastError,
    Message,
    MessageCreationDetails,
    Page,
    ReasoningContent,
    RequiredAction,
    Role,
    Run,
    RunStatus,
    RunStep,
    RunStepStatus,
    SubmitToolOutputs,
    TextContent,
    ToolCall,
    ToolCallContent,
    ToolCallsDetails,
    ToolResultContent,
    TruncationStrategy,
    Usage,
)

__all__ = [
    "Reopen",
    "StoreConformance",
    "assistant",
    "make_run",
    "make_step",
    "tool_call",
    "tool_result",
    "tool_turn",
    "turn",
    "user",
]

Reopen = Callable[[], Awaitable[MessageStore]]
"""Opens another instance of the store under test on the same backing data (already set up)."""

ACTIVE = [
    RunStatus.QUEUED,
    RunStatus.IN_PROGRESS,
    RunStatus.REQUIRES_ACTION,
    RunStatus.CANCELLING,
]
TERMINAL = [
    RunStatus.COMPLETED,
    RunStatus.FAILED,
    RunStatus.CANCELLED,
    RunStatus.INCOMPLETE,
    RunStatus.EXPIRED,
]


# --------------------------------------------------------------------------- factories


def _msg(role: Role, *parts: Any, **fields: Any) -> Message:
    fields.setdefault("id", "")
    fields.setdefault("thread_id", "")
    return Message(role=role, content=list(parts), **fields)


def user(text: str = "hello", **fields: Any) -> Message:
    """A new (unstored) user message with one text part."""
    return _msg("user", TextContent(text=text), **fields)


def assistant(text: str = "hi there", **fields: Any) -> Message:
    """A new (unstored) assistant message with one text part."""
    return _msg("assistant", TextContent(text=text), **fields)


def tool_call(*call_ids: str, name: str = "lookup", **fields: Any) -> Message:
    """A new assistant message making one tool call per id."""
    calls = [ToolCallContent(id=cid, name=name, arguments='{"q": 1}') for cid in call_ids]
    return _msg("assistant", *calls, **fields)


def tool_result(call_id: str, output: str = "42", **fields: Any) -> Message:
    """A new tool message answering ``call_id``."""
    return _msg("tool", ToolResultContent(tool_call_id=call_id, output=output), **fields)


def tool_turn(call_id: str | None = None) -> list[Message]:
    """A tool call and its result, as two new messages."""
    cid = call_id or new_id("call")
    return [tool_call(cid), tool_result(cid)]


def turn(text: str = "q") -> list[Message]:
    """A user message and an assistant answer."""
    return [user(text), assistant(f"answer to {text}")]


def make_run(
    thread_id: str,
    *,
    status: RunStatus = RunStatus.QUEUED,
    run_id: str | None = None,
    created_at: int | None = None,
    expires_at: int | None = None,
    **fields: Any,
) -> Run:
    """A new run on ``thread_id`` (created now unless given)."""
    return Run(
        id=run_id or new_id("run"),
        thread_id=thread_id,
        status=status,
        created_at=now() if created_at is None else created_at,
        expires_at=expires_at,
        **fields,
    )


def make_step(run: Run, *, step_id: str | None = None, message_id: str = "msg_1") -> RunStep:
    """A completed message-creation step of ``run``."""
    return RunStep(
        id=step_id or new_id("step"),
        run_id=run.id,
        thread_id=run.thread_id,
        type="message_creation",
        status=RunStepStatus.COMPLETED,
        step_details=MessageCreationDetails(message_creation={"message_id": message_id}),
        created_at=now(),
    )


def texts(messages: Sequence[Message]) -> list[str]:
    """The text of each message, in order."""
    return [m.text for m in messages]


def ids(page: Page[Any]) -> list[str]:
    """The ids of a page's items, in order."""
    return [item.id for item in page.data]


def _check_page(page: Page[Any]) -> None:
    got = ids(page)
    assert page.first_id == (got[0] if got else None)
    assert page.last_id == (got[-1] if got else None)


def _full_message(**fields: Any) -> Message:
    """A message using every content-part type with every field set."""
    return Message(
        id=fields.pop("id", ""),
        thread_id="",
        role="assistant",
        content=[
            TextContent(
                text="see [1]",
                annotations=[{"type": "file_citation", "text": "[1]", "start_index": 4}],
            ),
            ImageUrlContent(url="https://example.com/cat.png", detail="high"),
            ImageUrlContent(url="data:image/png;base64,iVBORw0KGgo="),
            ImageFileContent(file_id="file_img", detail="low"),
            FileContent(file_id="file_doc", filename="report.pdf", url="https://x.test/r.pdf"),
            FileContent(),
            ReasoningContent(id="rs_1", encrypted_content="gAAAA...", summary=["a", "b"]),
            ReasoningContent(),
            ToolCallContent(id=fields.pop("call_id", "call_full"), name="f", arguments="{}"),
        ],
        created_at=1_700_000_000,
        run_id="run_x",
        agent_id="agent_x",
        attachments=[
            Attachment(file_id="file_a", tools=[{"type": "file_search"}]),
            Attachment(file_id="file_b"),
        ],
        metadata={"k": "v", "empty": ""},
        provider_details={
            "nested": {"list": [1, 2.5, None, True, "s"], "deep": {"x": []}},
            "n": -7,
        },
        **fields,
    )


# --------------------------------------------------------------------------- the suite


class StoreConformance:
    """Mixin test class: subclass it and provide the ``store`` fixture (see module docstring)."""

    #: When True, the default ``reopen`` fixture opens ``type(store).from_url(store.locator)``.
    reopen_by_locator: bool = False

    @pytest.fixture
    def reopen(self, store: MessageStore) -> Reopen | None:
        """Override to open another instance on the same data; ``None`` skips those tests."""
        if not self.reopen_by_locator:
            return None

        async def _open() -> MessageStore:
            other: MessageStore = type(store).from_url(store.locator)  # type: ignore[attr-defined]
            await other.setup()
            return other

        return _open

    @pytest.fixture
    async def second_store(self, reopen: Reopen | None) -> AsyncIterator[MessageStore]:
        """A second instance on the same data; skips the test when the store has none."""
        if reopen is None:
            pytest.skip("the store under test gives no `reopen` hook")
        second = await reopen()
        try:
            yield second
        finally:
            await second.close()

    @pytest.fixture
    async def thread_id(self, store: MessageStore) -> str:
        """A fresh, empty thread of ``store``."""
        return (await store.create_thread()).id

    # ----------------------------------------------------------------------- basics

    async def test_is_a_message_store(self, store: MessageStore) -> None:
        assert isinstance(store, MessageStore)
        assert isinstance(store.locator, str)
        assert "://" in store.locator

    async def test_setup_is_idempotent(self, store: MessageStore) -> None:
        t = await store.create_thread()
        await store.append(t.id, [user("kept")])
        await store.setup()
        await store.setup()
        assert texts(await store.tail(t.id, 5)) == ["kept"]

    # ----------------------------------------------------------------------- threads

    async def test_create_thread_defaults(self, store: MessageStore) -> None:
        t0 = int(time.time())
        t = await store.create_thread()
        t1 = int(time.time())
        assert t.id.startswith("thread_")
        assert t0 <= t.created_at <= t1
        assert t.updated_at == t.created_at
        assert t.metadata == {}
        assert t.message_count == 0
        assert await store.get_thread(t.id) == t

    async def test_create_thread_with_id_and_metadata(self, store: MessageStore) -> None:
        t = await store.create_thread(thread_id="thread_mine", metadata={"user": "ann"})
        assert t.id == "thread_mine"
        assert t.metadata == {"user": "ann"}
        got = await store.get_thread("thread_mine")
        assert got.metadata == {"user": "ann"}
        assert got == t

    async def test_create_thread_twice_is_refused(self, store: MessageStore) -> None:
        await store.create_thread(thread_id="thread_dup", metadata={"a": "1"})
        with pytest.raises(ValidationError):
            await store.create_thread(thread_id="thread_dup")
        assert (await store.get_thread("thread_dup")).metadata == {"a": "1"}

    async def test_create_thread_bad_metadata(self, store: MessageStore) -> None:
        with pytest.raises(ValidationError):
            await store.create_thread(metadata={f"k{i}": "v" for i in range(17)})
        with pytest.raises(ValidationError):
            await store.create_thread(metadata={"k" * 65: "v"})
        with pytest.raises(ValidationError):
            await store.create_thread(metadata={"k": "v" * 513})
        assert (await store.list_threads(limit=None)).data == []

    async def test_unknown_thread(self, store: MessageStore) -> None:
        with pytest.raises(ThreadNotFoundError) as info:
            await store.get_thread("thread_nope")
        assert isinstance(info.value, NotFoundError)
        assert isinstance(info.value, LookupError)
        with pytest.raises(ThreadNotFoundError):
            await store.update_thread("thread_nope", metadata={})
        nope = "thread_nope"
        strict: list[Callable[[], Awaitable[Any]]] = [
            lambda: store.append(nope, [user()]),
            lambda: store.get_message(nope, "msg_x"),
            lambda: store.list_messages(nope),
            lambda: store.tail(nope, 3),
            lambda: store.count_messages(nope),
            lambda: store.update_message(nope, "msg_x", metadata={}),
            lambda: store.delete_message(nope, "msg_x"),
            lambda: store.create_run(make_run(nope)),
            lambda: store.get_run(nope, "run_x"),
            lambda: store.list_runs(nope),
            lambda: store.put_step(make_step(make_run(nope))),
        ]
        for call in strict:
            with pytest.raises(ThreadNotFoundError):
                await call()
        # these name a run too; the thread is what is missing, any NotFoundError is fine
        lenient: list[Callable[[], Awaitable[Any]]] = [
            lambda: store.get_active_run(nope),
            lambda: store.update_run(make_run(nope)),
            lambda: store.get_step(nope, "run_x", "step_x"),
            lambda: store.list_steps(nope, "run_x"),
        ]
        for call in lenient:
            with pytest.raises(NotFoundError):
                await call()

    async def test_update_thread_replaces_metadata(self, store: MessageStore) -> None:
        t = await store.create_thread(metadata={"a": "1", "b": "2"})
        updated = await store.update_thread(t.id, metadata={"c": "3"})
        assert updated.metadata == {"c": "3"}
        assert updated.id == t.id and updated.created_at == t.created_at
        assert (await store.get_thread(t.id)).metadata == {"c": "3"}
        with pytest.raises(ValidationError):
            await store.update_thread(t.id, metadata={f"k{i}": "v" for i in range(17)})
        assert (await store.get_thread(t.id)).metadata == {"c": "3"}
        assert (await store.update_thread(t.id, metadata={})).metadata == {}

    async def test_delete_thread(self, store: MessageStore) -> None:
        t = await store.create_thread()
        keep = await store.create_thread()
        assert await store.delete_thread(t.id) is True
        assert await store.delete_thread(t.id) is False
        assert await store.delete_thread("thread_never") is False
        with pytest.raises(ThreadNotFoundError):
            await store.get_thread(t.id)
        with pytest.raises(ThreadNotFoundError):
            await store.append(t.id, [user()])
        assert ids(await store.list_threads()) == [keep.id]

    async def test_list_threads_order(self, store: MessageStore) -> None:
        made = [(await store.create_thread()).id for _ in range(5)]
        newest_first = await store.list_threads()
        assert ids(newest_first) == made[::-1]
        assert newest_first.has_more is False
        _check_page(newest_first)
        oldest_first = await store.list_threads(order="asc")
        assert ids(oldest_first) == made
        assert ids(await store.list_threads(limit=None)) == made[::-1]

    async def test_list_threads_pagination(self, store: MessageStore) -> None:
        made = [(await store.create_thread()).id for _ in range(7)]
        desc = made[::-1]
        p1 = await store.list_threads(limit=3)
        assert ids(p1) == desc[:3] and p1.has_more
        _check_page(p1)
        p2 = await store.list_threads(limit=3, after=p1.last_id)
        assert ids(p2) == desc[3:6] and p2.has_more
        p3 = await store.list_threads(limit=3, after=p2.last_id)
        assert ids(p3) == desc[6:] and not p3.has_more
        # back again: the page right before p3's first item
        back = await store.list_threads(limit=3, before=p3.first_id)
        assert ids(back) == desc[3:6] and back.has_more
        back2 = await store.list_threads(limit=3, before=back.first_id)
        assert ids(back2) == desc[:3] and not back2.has_more
        # ascending
        a1 = await store.list_threads(order="asc", limit=4)
        assert ids(a1) == made[:4] and a1.has_more
        a2 = await store.list_threads(order="asc", limit=4, after=a1.last_id)
        assert ids(a2) == made[4:] and not a2.has_more
        ab = await store.list_threads(order="asc", limit=2, before=made[3])
        assert ids(ab) == made[1:3] and ab.has_more
        between = await store.list_threads(limit=None, after=made[5], before=made[1])
        assert ids(between) == [made[4], made[3], made[2]]
        assert not between.has_more

    async def test_list_threads_unknown_cursor(self, store: MessageStore) -> None:
        await store.create_thread()
        with pytest.raises(ThreadNotFoundError):
            await store.list_threads(after="thread_nope")
        with pytest.raises(ThreadNotFoundError):
            await store.list_threads(before="thread_nope")

    async def test_list_threads_metadata_filter(self, store: MessageStore) -> None:
        t = [
            await store.create_thread(metadata={"team": "a", "tier": "gold"}),
            await store.create_thread(metadata={"team": "b"}),
            await store.create_thread(metadata={"team": "a"}),
            await store.create_thread(),
            await store.create_thread(metadata={"team": "a", "tier": "free"}),
            await store.create_thread(metadata={"tier": "gold"}),
        ]
        team_a = await store.list_threads(metadata={"team": "a"})
        assert ids(team_a) == [t[4].id, t[2].id, t[0].id]
        gold_a = await store.list_threads(metadata={"team": "a", "tier": "gold"})
        assert ids(gold_a) == [t[0].id]
        assert ids(await store.list_threads(metadata={"team": "c"})) == []
        assert len((await store.list_threads(metadata={})).data) == 6
        p1 = await store.list_threads(metadata={"team": "a"}, limit=2)
        assert ids(p1) == [t[4].id, t[2].id] and p1.has_more
        p2 = await store.list_threads(metadata={"team": "a"}, limit=2, after=p1.last_id)
        assert ids(p2) == [t[0].id] and not p2.has_more
        asc = await store.list_threads(metadata={"tier": "gold"}, order="asc")
        assert ids(asc) == [t[0].id, t[5].id]

    async def test_thread_message_count(self, store: MessageStore) -> None:
        t = await store.create_thread()
        other = await store.create_thread()
        stored = await store.append(t.id, [*turn("a"), user("b")])
        await store.append(other.id, [user()])
        assert (await store.get_thread(t.id)).message_count == 3
        listed = {info.id: info for info in (await store.list_threads()).data}
        assert listed[t.id].message_count == 3
        assert listed[other.id].message_count == 1
        await store.delete_message(t.id, stored[0].id)
        assert (await store.get_thread(t.id)).message_count == 2

    async def test_clock_moves_updated_at_and_keeps_object_created_at(
        self, store: MessageStore
    ) -> None:
        old = await store.create_thread()
        touched = await store.create_thread()
        obj = await store.put_object("agent", "agent_1", b"v1")
        # wait for the next unix second, so that "later" is visible at this resolution
        boundary = int(time.time()) + 1
        await asyncio.sleep(boundary - time.time() + 0.02)
        await store.append(touched.id, [user()])
        info = await store.get_thread(touched.id)
        assert info.updated_at >= boundary > info.created_at
        assert (await store.get_thread(old.id)).updated_at < boundary
        listed = {i.id: i for i in (await store.list_threads()).data}
        assert listed[touched.id].updated_at == info.updated_at
        prunable = await store.list_threads(updated_before=boundary, limit=None)
        assert ids(prunable) == [old.id]
        assert len((await store.list_threads(updated_before=boundary + 3600)).data) == 2
        again = await store.put_object("agent", "agent_1", b"v2")
        assert again.created_at == obj.created_at < boundary
        assert (await store.get_object("agent", "agent_1")).created_at == obj.created_at

    # ----------------------------------------------------------------------- append

    async def test_append_assigns_seq_and_fills_fields(
        self, store: MessageStore, thread_id: str
    ) -> None:
        given = [user("one"), assistant("two"), user("three")]
        t0 = int(time.time())
        stored = await store.append(thread_id, given)
        t1 = int(time.time())
        assert [m.seq for m in stored] == [1, 2, 3]
        assert texts(stored) == ["one", "two", "three"]
        assert [m.role for m in stored] == ["user", "assistant", "user"]
        for m in stored:
            assert m.id.startswith("msg_")
            assert m.thread_id == thread_id
            assert t0 <= m.created_at <= t1
        assert len({m.id for m in stored}) == 3
        # the caller's objects are not mutated
        assert [(m.id, m.seq, m.thread_id) for m in given] == [("", 0, "")] * 3
        more = await store.append(thread_id, [assistant("four")])
        assert more[0].seq == 4
        assert await store.count_messages(thread_id) == 4
        assert list(await store.tail(thread_id, 10)) == [*stored, *more]

    async def test_append_keeps_given_id_and_created_at(
        self, store: MessageStore, thread_id: str
    ) -> None:
        stored = await store.append(
            thread_id, [user("x", id="msg_given", created_at=1_600_000_000, thread_id=thread_id)]
        )
        assert stored[0].id == "msg_given"
        assert stored[0].created_at == 1_600_000_000
        assert await store.get_message(thread_id, "msg_given") == stored[0]

    async def test_append_refuses_bad_batches(self, store: MessageStore, thread_id: str) -> None:
        await store.append(thread_id, [user("first", id="msg_a")])
        with pytest.raises(ValidationError):
            await store.append(thread_id, [])
        with pytest.raises(ValidationError):
            await store.append(thread_id, [user("x", thread_id="thread_other")])
        with pytest.raises(ValidationError):
            await store.append(thread_id, [user("x", id="msg_b"), user("y", id="msg_b")])
        # an id already in the thread: nothing of the batch is written
        with pytest.raises(ValidationError):
            await store.append(thread_id, [user("new", id="msg_c"), user("dup", id="msg_a")])
        with pytest.raises(ValidationError):
            await store.append(thread_id, [user("x", metadata={"k" * 65: "v"})])
        assert texts(await store.tail(thread_id, 10)) == ["first"]
        assert await store.count_messages(thread_id) == 1
        with pytest.raises(MessageNotFoundError):
            await store.get_message(thread_id, "msg_c")
        assert (await store.append(thread_id, [user("next")]))[0].seq == 2

    async def test_same_message_id_in_two_threads(self, store: MessageStore) -> None:
        a = await store.create_thread()
        b = await store.create_thread()
        await store.append(a.id, [user("in a", id="msg_same")])
        await store.append(b.id, [user("in b", id="msg_same")])
        assert (await store.get_message(a.id, "msg_same")).text == "in a"
        assert (await store.get_message(b.id, "msg_same")).text == "in b"

    async def test_append_is_atomic(self, store: MessageStore, thread_id: str) -> None:
        await store.append(thread_id, turn("before"))
        with pytest.raises(OrphanToolResultError):
            await store.append(thread_id, [user("lost"), assistant("lost"), tool_result("call_x")])
        assert await store.count_messages(thread_id) == 2
        assert texts(await store.tail(thread_id, 10)) == ["before", "answer to before"]
        assert (await store.get_thread(thread_id)).message_count == 2
        after = await store.append(thread_id, [user("after")])
        assert after[0].seq == 3

    async def test_seq_is_never_reused(self, store: MessageStore, thread_id: str) -> None:
        stored = await store.append(thread_id, [user("1"), user("2"), user("3")])
        assert await store.delete_message(thread_id, stored[2].id)
        assert await store.delete_message(thread_id, stored[1].id)
        nxt = await store.append(thread_id, [user("4")])
        assert nxt[0].seq == 4
        assert [m.seq for m in await store.tail(thread_id, 10)] == [1, 4]

    async def test_concurrent_appends_never_interleave(
        self, store: MessageStore, thread_id: str
    ) -> None:
        await asyncio.gather(*(store.append(thread_id, turn(f"t{i}")) for i in range(20)))
        msgs = (await store.list_messages(thread_id, limit=None)).data
        assert [m.seq for m in msgs] == list(range(1, 41))
        for first, second in zip(msgs[::2], msgs[1::2], strict=True):
            assert second.text == f"answer to {first.text}"
        assert sorted(m.text for m in msgs[::2]) == sorted(f"t{i}" for i in range(20))

    async def test_threads_are_independent(self, store: MessageStore) -> None:
        a = await store.create_thread()
        b = await store.create_thread()
        await asyncio.gather(
            store.append(a.id, turn("a1")),
            store.append(b.id, turn("b1")),
            store.append(a.id, turn("a2")),
        )
        assert [m.seq for m in await store.tail(a.id, 10)] == [1, 2, 3, 4]
        assert texts(await store.tail(b.id, 10)) == ["b1", "answer to b1"]
        assert [m.seq for m in await store.tail(b.id, 10)] == [1, 2]

    # ----------------------------------------------------------------------- idempotency

    async def test_idempotent_retry(self, store: MessageStore, thread_id: str) -> None:
        first = await store.append(thread_id, turn("once"), idempotency_key="key-1")
        retry = await store.append(thread_id, turn("once"), idempotency_key="key-1")
        assert retry == first
        assert await store.count_messages(thread_id) == 2
        # a retry returns the first call's messages even when the batch differs
        odd = await store.append(thread_id, [user("other")], idempotency_key="key-1")
        assert odd == first
        assert await store.count_messages(thread_id) == 2
        fresh = await store.append(thread_id, turn("twice"), idempotency_key="key-2")
        assert [m.seq for m in fresh] == [3, 4]
        unkeyed = await store.append(thread_id, [user("no key")])
        assert unkeyed[0].seq == 5

    async def test_idempotency_key_is_per_thread(self, store: MessageStore) -> None:
        a = await store.create_thread()
        b = await store.create_thread()
        in_a = await store.append(a.id, [user("a")], idempotency_key="same")
        in_b = await store.append(b.id, [user("b")], idempotency_key="same")
        assert in_b[0].thread_id == b.id and in_b[0].text == "b"
        assert in_a[0].id != in_b[0].id
        assert await store.count_messages(a.id) == 1
        assert await store.count_messages(b.id) == 1

    async def test_failed_append_does_not_burn_its_key(
        self, store: MessageStore, thread_id: str
    ) -> None:
        with pytest.raises(OrphanToolResultError):
            await store.append(thread_id, [tool_result("call_none")], idempotency_key="k")
        stored = await store.append(thread_id, [user("ok")], idempotency_key="k")
        assert texts(stored) == ["ok"]
        assert await store.append(thread_id, [user("again")], idempotency_key="k") == stored
        assert await store.count_messages(thread_id) == 1

    async def test_concurrent_retries_write_once(self, store: MessageStore, thread_id: str) -> None:
        results = await asyncio.gather(
            *(store.append(thread_id, turn("x"), idempotency_key="race") for _ in range(5))
        )
        assert all(r == results[0] for r in results)
        assert await store.count_messages(thread_id) == 2

    # ----------------------------------------------------------------------- tool results

    async def test_orphan_tool_result(self, store: MessageStore, thread_id: str) -> None:
        await store.append(thread_id, [user()])
        with pytest.raises(OrphanToolResultError) as info:
            await store.append(thread_id, [tool_result("call_missing")])
        assert info.value.tool_call_id == "call_missing"
        assert isinstance(info.value, ValidationError)
        assert await store.count_messages(thread_id) == 1

    async def test_tool_result_answers_earlier_call(
        self, store: MessageStore, thread_id: str
    ) -> None:
        await store.append(thread_id, [user(), tool_call("call_1", "call_2")])
        r1 = await store.append(thread_id, [tool_result("call_2")])
        r2 = await store.append(thread_id, [tool_result("call_1"), assistant("done")])
        assert [m.seq for m in (*r1, *r2)] == [3, 4, 5]
        same_batch = await store.append(thread_id, tool_turn("call_3"))
        assert [m.seq for m in same_batch] == [6, 7]

    async def test_tool_call_answered_twice(self, store: MessageStore, thread_id: str) -> None:
        await store.append(thread_id, tool_turn("call_1"))
        with pytest.raises(OrphanToolResultError) as info:
            await store.append(thread_id, [tool_result("call_1")])
        assert info.value.tool_call_id == "call_1"
        with pytest.raises(OrphanToolResultError):
            await store.append(
                thread_id, [tool_call("call_2"), tool_result("call_2"), tool_result("call_2")]
            )
        assert await store.count_messages(thread_id) == 2

    async def test_tool_result_before_its_call(self, store: MessageStore, thread_id: str) -> None:
        with pytest.raises(OrphanToolResultError):
            await store.append(thread_id, [tool_result("call_1"), tool_call("call_1")])
        assert await store.count_messages(thread_id) == 0

    async def test_duplicate_tool_call_id(self, store: MessageStore, thread_id: str) -> None:
        await store.append(thread_id, [tool_call("call_1")])
        with pytest.raises(ValidationError) as info:
            await store.append(thread_id, [tool_call("call_1")])
        assert not isinstance(info.value, OrphanToolResultError)
        with pytest.raises(ValidationError) as info:
            await store.append(thread_id, [tool_call("call_2"), tool_call("call_2")])
        assert not isinstance(info.value, OrphanToolResultError)
        # the failed batches left call_2 unknown
        with pytest.raises(OrphanToolResultError):
            await store.append(thread_id, [tool_result("call_2")])
        assert await store.count_messages(thread_id) == 1

    async def test_tool_call_ids_are_per_thread(self, store: MessageStore) -> None:
        a = await store.create_thread()
        b = await store.create_thread()
        await store.append(a.id, tool_turn("call_1"))
        with pytest.raises(OrphanToolResultError):
            await store.append(b.id, [tool_result("call_1")])
        await store.append(b.id, tool_turn("call_1"))
        assert await store.count_messages(b.id) == 2

    async def test_deleting_a_result_reopens_its_call(
        self, store: MessageStore, thread_id: str
    ) -> None:
        call, result = await store.append(thread_id, tool_turn("call_1"))
        assert await store.delete_message(thread_id, result.id)
        redo = await store.append(thread_id, [tool_result("call_1", output="retried")])
        assert redo[0].seq == 3
        with pytest.raises(ValidationError):  # answered again: the call is held once more
            await store.delete_message(thread_id, call.id)
        with pytest.raises(OrphanToolResultError):
            await store.append(thread_id, [tool_result("call_1")])

    async def test_deleting_an_open_call_orphans_later_results(
        self, store: MessageStore, thread_id: str
    ) -> None:
        (call,) = await store.append(thread_id, [tool_call("call_2")])
        assert await store.delete_message(thread_id, call.id)
        with pytest.raises(OrphanToolResultError):
            await store.append(thread_id, [tool_result("call_2")])

    # ----------------------------------------------------------------------- listing

    async def test_list_messages_defaults(self, store: MessageStore, thread_id: str) -> None:
        empty = await store.list_messages(thread_id)
        assert empty.data == [] and not empty.has_more
        assert empty.first_id is None and empty.last_id is None
        for i in range(5):
            await store.append(thread_id, [user(f"m{i:02}") for i in range(5 * i, 5 * i + 5)])
        page = await store.list_messages(thread_id)
        assert texts(page.data) == [f"m{i:02}" for i in range(20)]
        assert page.has_more
        _check_page(page)
        rest = await store.list_messages(thread_id, after=page.last_id)
        assert texts(rest.data) == [f"m{i:02}" for i in range(20, 25)]
        assert not rest.has_more
        everything = await store.list_messages(thread_id, limit=None)
        assert [m.seq for m in everything.data] == list(range(1, 26))
        assert not everything.has_more
        desc = await store.list_messages(thread_id, order="desc", limit=3)
        assert [m.seq for m in desc.data] == [25, 24, 23] and desc.has_more
        _check_page(desc)

    async def test_list_messages_cursors(self, store: MessageStore, thread_id: str) -> None:
        m = await store.append(thread_id, [user(str(i)) for i in range(10)])
        mid = [x.id for x in m]

        async def page(**kw: Any) -> tuple[list[int], bool]:
            p = await store.list_messages(thread_id, **kw)
            _check_page(p)
            return [x.seq for x in p.data], p.has_more

        assert await page(limit=3, after=mid[2]) == ([4, 5, 6], True)
        assert await page(limit=3, after=mid[6]) == ([8, 9, 10], False)
        assert await page(limit=3, after=mid[9]) == ([], False)
        assert await page(limit=3, before=mid[5]) == ([3, 4, 5], True)
        assert await page(limit=3, before=mid[2]) == ([1, 2], False)
        assert await page(limit=3, before=mid[0]) == ([], False)
        assert await page(order="desc", limit=3, after=mid[7]) == ([7, 6, 5], True)
        assert await page(order="desc", limit=3, after=mid[2]) == ([2, 1], False)
        assert await page(order="desc", limit=3, before=mid[3]) == ([7, 6, 5], True)
        assert await page(order="desc", limit=3, before=mid[6]) == ([10, 9, 8], False)
        assert await page(limit=None, after=mid[1], before=mid[5]) == ([3, 4, 5], False)
        assert await page(order="desc", limit=None, after=mid[8], before=mid[4]) == (
            [8, 7, 6],
            False,
        )

    async def test_list_messages_bad_cursor(self, store: MessageStore, thread_id: str) -> None:
        await store.append(thread_id, [user()])
        other = await store.create_thread()
        (foreign,) = await store.append(other.id, [user()])
        for kw in ({"after": "msg_nope"}, {"before": "msg_nope"}, {"after": foreign.id}):
            with pytest.raises(MessageNotFoundError):
                await store.list_messages(thread_id, **kw)  # type: ignore[arg-type]

    async def test_list_messages_skips_deleted(self, store: MessageStore, thread_id: str) -> None:
        m = await store.append(thread_id, [user(str(i)) for i in range(6)])
        await store.delete_message(thread_id, m[2].id)
        await store.delete_message(thread_id, m[3].id)
        p = await store.list_messages(thread_id, limit=2, after=m[1].id)
        assert [x.seq for x in p.data] == [5, 6] and not p.has_more
        p = await store.list_messages(thread_id, limit=2, before=m[4].id)
        assert [x.seq for x in p.data] == [1, 2] and not p.has_more
        with pytest.raises(MessageNotFoundError):
            await store.list_messages(thread_id, after=m[2].id)

    async def test_pagination_over_many_messages(self, store: MessageStore, thread_id: str) -> None:
        for start in range(0, 250, 50):
            await store.append(thread_id, [user(f"{i}") for i in range(start, start + 50)])
        expected = [str(i) for i in range(250)]
        walked: list[str] = []
        cursor: str | None = None
        while True:
            p = await store.list_messages(thread_id, limit=20, after=cursor)
            walked += texts(p.data)
            cursor = p.last_id
            if not p.has_more:
                break
        assert walked == expected
        # back from the end in ascending pages: each page is the 30 right before the cursor
        last = await store.list_messages(thread_id, limit=30, order="desc")
        backwards = texts(last.data)[::-1]
        before = last.last_id
        while True:
            p = await store.list_messages(thread_id, limit=30, before=before, order="asc")
            assert len(p.data) == 30 or not p.has_more
            backwards = texts(p.data) + backwards
            before = p.first_id
            if not p.has_more:
                break
        assert backwards == expected
        newest_first: list[str] = []
        cursor = None
        while True:
            p = await store.list_messages(thread_id, order="desc", limit=64, after=cursor)
            newest_first += texts(p.data)
            cursor = p.last_id
            if not p.has_more:
                break
        assert newest_first == expected[::-1]
        assert texts(await store.tail(thread_id, 3)) == ["247", "248", "249"]
        assert await store.count_messages(thread_id) == 250

    async def test_tail(self, store: MessageStore, thread_id: str) -> None:
        assert await store.tail(thread_id, 5) == []
        stored = await store.append(thread_id, [user(str(i)) for i in range(8)])
        assert await store.tail(thread_id, 3) == stored[5:]
        assert await store.tail(thread_id, 8) == stored
        assert await store.tail(thread_id, 100) == stored
        assert await store.tail(thread_id, 0) == []
        await store.delete_message(thread_id, stored[6].id)
        assert [m.seq for m in await store.tail(thread_id, 3)] == [5, 6, 8]

    async def test_count_messages(self, store: MessageStore, thread_id: str) -> None:
        assert await store.count_messages(thread_id) == 0
        stored = await store.append(thread_id, turn())
        await store.append(thread_id, turn())
        assert await store.count_messages(thread_id) == 4
        await store.delete_message(thread_id, stored[0].id)
        assert await store.count_messages(thread_id) == 3

    # ----------------------------------------------------------------------- one message

    async def test_get_message(self, store: MessageStore, thread_id: str) -> None:
        stored = await store.append(thread_id, turn())
        assert await store.get_message(thread_id, stored[1].id) == stored[1]
        with pytest.raises(MessageNotFoundError):
            await store.get_message(thread_id, "msg_nope")
        other = await store.create_thread()
        with pytest.raises(MessageNotFoundError):
            await store.get_message(other.id, stored[0].id)

    async def test_update_message(self, store: MessageStore, thread_id: str) -> None:
        first, second = await store.append(thread_id, [user("a", metadata={"x": "1"}), user("b")])
        updated = await store.update_message(thread_id, first.id, metadata={"y": "2"})
        assert updated.metadata == {"y": "2"}
        assert msgspec.structs.replace(updated, metadata=first.metadata) == first
        assert await store.get_message(thread_id, first.id) == updated
        assert await store.get_message(thread_id, second.id) == second
        with pytest.raises(ValidationError):
            await store.update_message(
                thread_id, first.id, metadata={f"k{i}": "v" for i in range(17)}
            )
        assert (await store.get_message(thread_id, first.id)).metadata == {"y": "2"}
        with pytest.raises(MessageNotFoundError):
            await store.update_message(thread_id, "msg_nope", metadata={})

    async def test_delete_message(self, store: MessageStore, thread_id: str) -> None:
        stored = await store.append(thread_id, [user("a"), user("b"), user("c")])
        assert await store.delete_message(thread_id, stored[1].id) is True
        assert await store.delete_message(thread_id, stored[1].id) is False
        assert await store.delete_message(thread_id, "msg_nope") is False
        with pytest.raises(MessageNotFoundError):
            await store.get_message(thread_id, stored[1].id)
        assert texts((await store.list_messages(thread_id)).data) == ["a", "c"]

    async def test_delete_refuses_to_orphan_a_result(
        self, store: MessageStore, thread_id: str
    ) -> None:
        call, result = await store.append(thread_id, tool_turn("call_1"))
        with pytest.raises(ValidationError):
            await store.delete_message(thread_id, call.id)
        assert await store.get_message(thread_id, call.id) == call
        assert await store.count_messages(thread_id) == 2
        assert await store.delete_message(thread_id, result.id)
        assert await store.delete_message(thread_id, call.id)
        assert await store.count_messages(thread_id) == 0

    # ----------------------------------------------------------------------- round trips

    async def test_every_content_part_round_trips(
        self, store: MessageStore, thread_id: str
    ) -> None:
        given = _full_message()
        (stored,) = await store.append(thread_id, [given])
        assert stored == msgspec.structs.replace(given, id=stored.id, thread_id=thread_id, seq=1)
        assert await store.get_message(thread_id, stored.id) == stored
        assert (await store.list_messages(thread_id)).data == [stored]
        assert await store.tail(thread_id, 1) == [stored]
        (result,) = await store.append(
            thread_id,
            [
                Message(
                    id="",
                    thread_id="",
                    role="tool",
                    content=[ToolResultContent(tool_call_id="call_full", output="", is_error=True)],
                    provider_details=None,
                )
            ],
        )
        assert await store.get_message(thread_id, result.id) == result
        assert result.tool_results[0].is_error is True

    async def test_unicode_round_trips(self, store: MessageStore, thread_id: str) -> None:
        text = "héllo 世界 🧵👩🏽‍💻 مرحبا e\u0301 \"quotes\" 'single' \\ back\nnew\ttab \u2028 \U0010fffd"
        (stored,) = await store.append(
            thread_id,
            [user(text, metadata={"ключ": "值 🎉"}, provider_details={"ß": ["ŋ", "\u00a0"]})],
        )
        got = await store.get_message(thread_id, stored.id)
        assert got.text == text
        assert got.metadata == {"ключ": "值 🎉"}
        assert got == stored
        t = await store.create_thread(metadata={"名前": "スレッド"})
        assert (await store.get_thread(t.id)).metadata == {"名前": "スレッド"}
        assert ids(await store.list_threads(metadata={"名前": "スレッド"})) == [t.id]

    async def test_large_message_round_trips(self, store: MessageStore, thread_id: str) -> None:
        big = "".join(chr(0x41 + i % 26) for i in range(1 << 20))  # 1 MiB of text
        (stored,) = await store.append(thread_id, [user(big)])
        got = await store.get_message(thread_id, stored.id)
        assert got.text == big
        assert (await store.tail(thread_id, 1))[0].text == big

    async def test_run_and_step_round_trip(self, store: MessageStore, thread_id: str) -> None:
        call = ToolCall(id="call_1", function=FunctionCall(name="f", arguments='{"a": 1}'))
        run = make_run(
            thread_id,
            status=RunStatus.REQUIRES_ACTION,
            agent_id="agent_1",
            model="gpt-x",
            instructions="be brief ✂",
            tools=[
                FunctionTool(
                    function=FunctionDefinition(
                        name="f",
                        description="d",
                        parameters={"type": "object", "properties": {"a": {"type": "integer"}}},
                        strict=True,
                    )
                )
            ],
            started_at=1,
            expires_at=now() + 600,
            required_action=RequiredAction(
                submit_tool_outputs=SubmitToolOutputs(tool_calls=[call])
            ),
            last_error=LastError(code="server_error", message="m"),
            usage=Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7),
            incomplete_details=IncompleteDetails(reason="max_prompt_tokens"),
            metadata={"k": "v"},
            temperature=0.5,
            top_p=0.25,
            max_prompt_tokens=1000,
            max_completion_tokens=200,
            truncation_strategy=TruncationStrategy(type="last_messages", last_messages=7),
            tool_choice={"type": "function", "function": {"name": "f"}},
            parallel_tool_calls=False,
            response_format={"type": "json_object"},
            provider_details={"raw": [1, "two"]},
        )
        assert await store.create_run(run) == run
        assert await store.get_run(thread_id, run.id) == run
        step = RunStep(
            id="step_1",
            run_id=run.id,
            thread_id=thread_id,
            type="tool_calls",
            status=RunStepStatus.IN_PROGRESS,
            step_details=ToolCallsDetails(
                tool_calls=[
                    ToolCall(id="call_1", function=FunctionCall(name="f", output="out")),
                ]
            ),
            created_at=now(),
            agent_id="agent_1",
            completed_at=5,
            last_error=LastError(code="tool_error", message="boom"),
            usage=Usage(total_tokens=1),
            metadata={"m": "n"},
        )
        assert await store.put_step(step) == step
        assert await store.get_step(thread_id, run.id, "step_1") == step

    # ----------------------------------------------------------------------- runs

    async def test_create_and_get_run(self, store: MessageStore, thread_id: str) -> None:
        run = make_run(thread_id)
        assert await store.create_run(run) == run
        assert await store.get_run(thread_id, run.id) == run
        with pytest.raises(RunNotFoundError):
            await store.get_run(thread_id, "run_nope")
        other = await store.create_thread()
        with pytest.raises(RunNotFoundError):
            await store.get_run(other.id, run.id)

    async def test_create_run_with_existing_id(self, store: MessageStore, thread_id: str) -> None:
        run = make_run(thread_id, status=RunStatus.COMPLETED)
        await store.create_run(run)
        with pytest.raises(ValidationError):
            await store.create_run(msgspec.structs.replace(run, model="changed"))
        assert (await store.get_run(thread_id, run.id)).model is None

    @pytest.mark.parametrize("status", ACTIVE)
    async def test_one_active_run_per_thread(
        self, store: MessageStore, thread_id: str, status: RunStatus
    ) -> None:
        active = await store.create_run(make_run(thread_id, status=status))
        with pytest.raises(ActiveRunError) as info:
            await store.create_run(make_run(thread_id))
        assert info.value.thread_id == thread_id
        assert info.value.run_id == active.id
        assert ids(await store.list_runs(thread_id)) == [active.id]
        other = await store.create_thread()
        await store.create_run(make_run(other.id))  # other threads are not held

    @pytest.mark.parametrize("status", TERMINAL)
    async def test_terminal_runs_do_not_block(
        self, store: MessageStore, thread_id: str, status: RunStatus
    ) -> None:
        await store.create_run(make_run(thread_id, status=status))
        run = await store.create_run(make_run(thread_id))
        assert (await store.get_active_run(thread_id)) == run

    async def test_expired_active_run_does_not_block(
        self, store: MessageStore, thread_id: str
    ) -> None:
        t = now()
        stale = await store.create_run(
            make_run(thread_id, status=RunStatus.IN_PROGRESS, created_at=t - 100, expires_at=t)
        )
        # a run counts as active while expires_at is later than the new run's created_at
        with pytest.raises(ActiveRunError):
            await store.create_run(make_run(thread_id, created_at=t - 1))
        fresh = await store.create_run(make_run(thread_id, created_at=t))
        assert (await store.get_run(thread_id, stale.id)).status == RunStatus.IN_PROGRESS
        assert await store.get_active_run(thread_id) == fresh
        with pytest.raises(ActiveRunError) as info:
            await store.create_run(make_run(thread_id, created_at=t + 1))
        assert info.value.run_id == fresh.id

    async def test_get_active_run(self, store: MessageStore, thread_id: str) -> None:
        assert await store.get_active_run(thread_id) is None
        done = await store.create_run(make_run(thread_id, status=RunStatus.COMPLETED))
        assert await store.get_active_run(thread_id) is None
        t = now()
        expired = await store.create_run(
            make_run(thread_id, status=RunStatus.REQUIRES_ACTION, created_at=t - 9, expires_at=t)
        )
        assert await store.get_active_run(thread_id) == expired  # expired or not
        assert done.id != expired.id

    async def test_concurrent_create_run(self, store: MessageStore, thread_id: str) -> None:
        results = await asyncio.gather(
            store.create_run(make_run(thread_id)),
            store.create_run(make_run(thread_id)),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, Run)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(won) == 1, results
        assert len(lost) == 1 and isinstance(lost[0], ActiveRunError), results
        assert lost[0].run_id == won[0].id
        assert ids(await store.list_runs(thread_id)) == [won[0].id]

    async def test_update_run(self, store: MessageStore, thread_id: str) -> None:
        run = await store.create_run(make_run(thread_id))
        moved = msgspec.structs.replace(run, status=RunStatus.IN_PROGRESS, started_at=now())
        assert await store.update_run(moved) == moved
        assert await store.get_run(thread_id, run.id) == moved
        done = msgspec.structs.replace(
            moved, status=RunStatus.COMPLETED, completed_at=now(), usage=Usage(total_tokens=9)
        )
        assert await store.update_run(done, expected_status=RunStatus.IN_PROGRESS) == done
        assert await store.get_run(thread_id, run.id) == done
        assert await store.get_active_run(thread_id) is None
        nxt = await store.create_run(make_run(thread_id))  # the thread is free again
        assert ids(await store.list_runs(thread_id)) == [nxt.id, run.id]
        with pytest.raises(RunNotFoundError):
            await store.update_run(make_run(thread_id, run_id="run_nope"))

    async def test_update_run_compare_and_set(self, store: MessageStore, thread_id: str) -> None:
        run = await store.create_run(make_run(thread_id, status=RunStatus.IN_PROGRESS))
        cancel = msgspec.structs.replace(run, status=RunStatus.CANCELLING)
        with pytest.raises(InvalidRunStateError) as info:
            await store.update_run(cancel, expected_status=RunStatus.QUEUED)
        assert info.value.status == RunStatus.IN_PROGRESS
        assert info.value.run_id == run.id
        assert await store.get_run(thread_id, run.id) == run
        assert await store.update_run(cancel, expected_status="in_progress") == cancel

    async def test_concurrent_compare_and_set(self, store: MessageStore, thread_id: str) -> None:
        run = await store.create_run(make_run(thread_id, status=RunStatus.REQUIRES_ACTION))
        moves = [
            msgspec.structs.replace(run, status=RunStatus.IN_PROGRESS, metadata={"by": str(i)})
            for i in range(4)
        ]
        results = await asyncio.gather(
            *(store.update_run(m, expected_status=RunStatus.REQUIRES_ACTION) for m in moves),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, Run)]
        assert len(won) == 1, results
        assert all(isinstance(r, InvalidRunStateError) for r in results if r not in won)
        assert all(
            r.status == RunStatus.IN_PROGRESS
            for r in results
            if isinstance(r, InvalidRunStateError)
        )
        assert await store.get_run(thread_id, run.id) == won[0]

    async def test_list_runs(self, store: MessageStore, thread_id: str) -> None:
        made = [
            (await store.create_run(make_run(thread_id, status=RunStatus.COMPLETED))).id
            for _ in range(5)
        ]
        other = await store.create_thread()
        await store.create_run(make_run(other.id))
        p = await store.list_runs(thread_id)
        assert ids(p) == made[::-1] and not p.has_more
        _check_page(p)
        assert ids(await store.list_runs(thread_id, order="asc")) == made
        p1 = await store.list_runs(thread_id, limit=2)
        assert ids(p1) == [made[4], made[3]] and p1.has_more
        p2 = await store.list_runs(thread_id, limit=2, after=p1.last_id)
        assert ids(p2) == [made[2], made[1]] and p2.has_more
        back = await store.list_runs(thread_id, limit=2, before=p2.first_id)
        assert ids(back) == [made[4], made[3]] and not back.has_more
        asc = await store.list_runs(thread_id, order="asc", limit=2, after=made[2])
        assert ids(asc) == [made[3], made[4]] and not asc.has_more
        assert ids(await store.list_runs(thread_id, limit=None)) == made[::-1]
        for kw in ({"after": "run_nope"}, {"before": "run_nope"}):
            with pytest.raises(RunNotFoundError):
                await store.list_runs(thread_id, **kw)  # type: ignore[arg-type]
        assert ids(await store.list_runs((await store.create_thread()).id)) == []

    # ----------------------------------------------------------------------- steps

    async def test_steps(self, store: MessageStore, thread_id: str) -> None:
        other_run = await store.create_run(make_run(thread_id, status=RunStatus.COMPLETED))
        run = await store.create_run(make_run(thread_id))
        steps = [make_step(run, message_id=f"msg_{i}") for i in range(4)]
        for s in steps:
            assert await store.put_step(s) == s
        await store.put_step(make_step(other_run))
        assert await store.get_step(thread_id, run.id, steps[1].id) == steps[1]
        # upsert by id keeps the step's place
        done = msgspec.structs.replace(steps[1], status=RunStepStatus.FAILED, failed_at=now())
        assert await store.put_step(done) == done
        assert await store.get_step(thread_id, run.id, steps[1].id) == done
        expected = [steps[0].id, steps[1].id, steps[2].id, steps[3].id]
        p = await store.list_steps(thread_id, run.id)
        assert ids(p) == expected and not p.has_more
        assert p.data[1] == done
        _check_page(p)
        assert ids(await store.list_steps(thread_id, run.id, order="desc")) == expected[::-1]
        p1 = await store.list_steps(thread_id, run.id, limit=2)
        assert ids(p1) == expected[:2] and p1.has_more
        p2 = await store.list_steps(thread_id, run.id, limit=2, after=p1.last_id)
        assert ids(p2) == expected[2:] and not p2.has_more
        back = await store.list_steps(thread_id, run.id, limit=1, before=expected[2])
        assert ids(back) == [expected[1]] and back.has_more
        assert len((await store.list_steps(thread_id, other_run.id)).data) == 1

    async def test_step_errors(self, store: MessageStore, thread_id: str) -> None:
        run = await store.create_run(make_run(thread_id))
        await store.put_step(make_step(run))
        with pytest.raises(RunStepNotFoundError):
            await store.get_step(thread_id, run.id, "step_nope")
        with pytest.raises(RunNotFoundError):
            await store.get_step(thread_id, "run_nope", "step_nope")
        with pytest.raises(RunNotFoundError):
            await store.list_steps(thread_id, "run_nope")
        with pytest.raises(RunNotFoundError):
            await store.put_step(make_step(make_run(thread_id, run_id="run_nope")))
        for kw in ({"after": "step_nope"}, {"before": "step_nope"}):
            with pytest.raises(RunStepNotFoundError):
                await store.list_steps(thread_id, run.id, **kw)  # type: ignore[arg-type]

    # ----------------------------------------------------------------------- objects

    async def test_objects(self, store: MessageStore) -> None:
        t0 = int(time.time())
        first = await store.put_object("agent", "agent_1", b'{"name": "a"}')
        assert first.id == "agent_1" and first.kind == "agent"
        assert t0 <= first.created_at <= int(time.time())
        assert await store.get_object("agent", "agent_1") == first
        binary = bytes(range(256))
        await store.put_object("agent", "agent_2", binary)
        await store.put_object("agent", "agent_3", b"")
        await store.put_object("response", "agent_1", b"other kind")
        assert (await store.get_object("agent", "agent_2")).data == binary
        assert (await store.get_object("agent", "agent_3")).data == b""
        assert (await store.get_object("response", "agent_1")).data == b"other kind"
        replaced = await store.put_object("agent", "agent_1", b"v2")
        assert replaced.data == b"v2" and replaced.created_at == first.created_at
        assert (await store.get_object("agent", "agent_1")).data == b"v2"
        p = await store.list_objects("agent")
        assert ids(p) == ["agent_3", "agent_2", "agent_1"] and not p.has_more
        _check_page(p)
        assert p.data[2].data == b"v2"
        assert ids(await store.list_objects("agent", order="asc")) == [
            "agent_1",
            "agent_2",
            "agent_3",
        ]
        p1 = await store.list_objects("agent", limit=2)
        assert ids(p1) == ["agent_3", "agent_2"] and p1.has_more
        p2 = await store.list_objects("agent", limit=2, after=p1.last_id)
        assert ids(p2) == ["agent_1"] and not p2.has_more
        back = await store.list_objects("agent", limit=5, before="agent_1")
        assert ids(back) == ["agent_3", "agent_2"] and not back.has_more
        assert ids(await store.list_objects("response")) == ["agent_1"]
        assert ids(await store.list_objects("nothing")) == []
        for kw in ({"after": "agent_9"}, {"before": "agent_9"}):
            with pytest.raises(ObjectNotFoundError):
                await store.list_objects("agent", **kw)  # type: ignore[arg-type]
        assert await store.delete_object("agent", "agent_2") is True
        assert await store.delete_object("agent", "agent_2") is False
        with pytest.raises(ObjectNotFoundError):
            await store.get_object("agent", "agent_2")
        assert ids(await store.list_objects("agent")) == ["agent_3", "agent_1"]
        assert (await store.get_object("response", "agent_1")).data == b"other kind"
        with pytest.raises(ObjectNotFoundError):
            await store.get_object("nothing", "x")

    # ----------------------------------------------------------------------- cascade

    async def test_delete_thread_cascades(self, store: MessageStore) -> None:
        tid = "thread_cascade"
        keep = await store.create_thread()
        # created last, so a store that numbers threads may give the new one the same number
        await store.create_thread(thread_id=tid, metadata={"a": "b"})
        await store.append(keep.id, turn("kept"), idempotency_key="k1")
        await store.append(tid, turn("gone"), idempotency_key="k1")
        await store.append(tid, [tool_call("call_1")])
        await store.append(tid, [tool_call("call_2"), tool_result("call_2")])
        run = await store.create_run(make_run(tid, run_id="run_cascade"))
        await store.put_step(make_step(run, step_id="step_cascade"))
        await store.put_object("agent", "agent_kept", b"x")
        assert await store.delete_thread(tid) is True

        again = await store.create_thread(thread_id=tid)
        assert again.metadata == {} and again.message_count == 0
        assert await store.count_messages(tid) == 0
        assert await store.tail(tid, 10) == []
        assert (await store.list_messages(tid)).data == []
        assert (await store.list_runs(tid)).data == []
        assert await store.get_active_run(tid) is None
        with pytest.raises(RunNotFoundError):
            await store.get_run(tid, "run_cascade")
        with pytest.raises(RunNotFoundError):
            await store.list_steps(tid, "run_cascade")
        # the old key and the old tool calls are gone: these write, with seq from 1
        fresh = await store.append(tid, [user("new")], idempotency_key="k1")
        assert texts(fresh) == ["new"] and fresh[0].seq == 1
        with pytest.raises(OrphanToolResultError):
            await store.append(tid, [tool_result("call_1")])
        await store.append(tid, tool_turn("call_2"))
        # the same run id can be used again, and nothing holds the thread
        await store.create_run(make_run(tid, run_id="run_cascade"))
        with pytest.raises(RunStepNotFoundError):
            await store.get_step(tid, "run_cascade", "step_cascade")
        # other threads and stored objects are untouched
        assert texts(await store.tail(keep.id, 5)) == ["kept", "answer to kept"]
        assert (await store.get_object("agent", "agent_kept")).data == b"x"

    # ----------------------------------------------------------------------- import (optional)

    @staticmethod
    def _importer(store: MessageStore) -> SupportsImport:
        if not supports_import(store):
            pytest.skip("the store under test has no import_thread (optional ability)")
        return store

    async def test_import_thread(self, store: MessageStore) -> None:
        importer = self._importer(store)
        msgs = [
            msgspec.structs.replace(m, id=f"msg_{i}", seq=seq, created_at=1_600_000_000 + i)
            for i, (m, seq) in enumerate(
                zip(
                    [user("a"), tool_call("call_1", "call_2"), tool_result("call_1"), user("b")],
                    [1, 2, 3, 7],  # a gap: messages deleted before the export
                    strict=True,
                )
            )
        ]
        info = await importer.import_thread(
            "thread_imported", msgs, metadata={"k": "v"}, created_at=1_500_000_000
        )
        assert info.id == "thread_imported" and info.message_count == 4
        assert info.created_at == 1_500_000_000 and info.metadata == {"k": "v"}
        assert await store.get_thread("thread_imported") == info
        got = await store.tail("thread_imported", 10)
        assert [m.seq for m in got] == [1, 2, 3, 7]
        assert [m.id for m in got] == ["msg_0", "msg_1", "msg_2", "msg_3"]
        assert all(m.thread_id == "thread_imported" for m in got)
        assert [m.created_at for m in got] == [1_600_000_000 + i for i in range(4)]
        assert texts(got) == texts(msgs)
        # the thread goes on: seq after the highest, open calls still open, answered ones not
        (nxt,) = await store.append("thread_imported", [tool_result("call_2")])
        assert nxt.seq == 8
        with pytest.raises(OrphanToolResultError):
            await store.append("thread_imported", [tool_result("call_1")])
        with pytest.raises(ValidationError):
            await store.delete_message("thread_imported", "msg_1")
        assert await store.count_messages("thread_imported") == 5

    async def test_import_thread_refusals(self, store: MessageStore) -> None:
        importer = self._importer(store)
        one = [msgspec.structs.replace(user(), id="msg_1", seq=1)]
        await importer.import_thread("thread_there", one)
        with pytest.raises(ValidationError):
            await importer.import_thread("thread_there", one)
        assert await store.count_messages("thread_there") == 1
        bad_order = [
            msgspec.structs.replace(user(), id="msg_1", seq=2),
            msgspec.structs.replace(user(), id="msg_2", seq=1),
        ]
        orphan = [msgspec.structs.replace(tool_result("call_x"), id="msg_1", seq=1)]
        with pytest.raises(ValidationError):
            await importer.import_thread("thread_bad", bad_order)
        with pytest.raises(OrphanToolResultError):
            await importer.import_thread("thread_bad", orphan)
        with pytest.raises(ThreadNotFoundError):
            await store.get_thread("thread_bad")
        empty = await importer.import_thread("thread_empty", [])
        assert empty.message_count == 0
        assert (await store.append("thread_empty", [user()]))[0].seq == 1

    # ----------------------------------------------------------------------- two instances

    async def test_second_instance_sees_everything(
        self, store: MessageStore, second_store: MessageStore
    ) -> None:
        other = second_store
        t = await store.create_thread(metadata={"x": "y"})
        stored = await store.append(t.id, [*turn(), _full_message()], idempotency_key="k")
        run = await store.create_run(make_run(t.id))
        step = await store.put_step(make_step(run))
        obj = await store.put_object("agent", "agent_1", b"data")
        assert await other.get_thread(t.id) == await store.get_thread(t.id)
        assert await other.tail(t.id, 10) == stored
        assert await other.append(t.id, [user("again")], idempotency_key="k") == stored
        assert await other.get_run(t.id, run.id) == run
        assert await other.get_active_run(t.id) == run
        assert await other.get_step(t.id, run.id, step.id) == step
        assert await other.get_object("agent", "agent_1") == obj
        more = await other.append(t.id, [user("from other")])
        assert more[0].seq == 4
        assert (await store.get_message(t.id, more[0].id)).text == "from other"
        assert await other.delete_thread(t.id)
        with pytest.raises(ThreadNotFoundError):
            await store.get_thread(t.id)

    async def test_two_instances_append_concurrently(
        self, store: MessageStore, second_store: MessageStore
    ) -> None:
        other = second_store
        t = await store.create_thread()
        await asyncio.gather(
            *(
                s.append(t.id, turn(f"{n}{i}"))
                for i in range(10)
                for n, s in (("a", store), ("b", other))
            )
        )
        msgs = (await other.list_messages(t.id, limit=None)).data
        assert [m.seq for m in msgs] == list(range(1, 41))
        for first, second in zip(msgs[::2], msgs[1::2], strict=True):
            assert second.text == f"answer to {first.text}"

    async def test_two_instances_race_for_a_run(
        self, store: MessageStore, second_store: MessageStore
    ) -> None:
        other = second_store
        t = await store.create_thread()
        results = await asyncio.gather(
            store.create_run(make_run(t.id)),
            other.create_run(make_run(t.id)),
            return_exceptions=True,
        )
        assert sum(isinstance(r, Run) for r in results) == 1, results
        assert sum(isinstance(r, ActiveRunError) for r in results) == 1, results
