"""Truncation: what context a run sends, and how much of the thread it reads to build it.

Two things are checked against the requests a :class:`ScriptedModel` actually received:

* whatever the strategy and window size, a tool call is never separated from its results (a model
  given one without the other answers HTTP 400 on every later turn), and nothing else of the
  window is lost;
* only the window is read from the store: a counting proxy around the store shows a
  ``last_messages(10)`` run over a 5,000-message thread reads about 10 messages, an ``auto`` run
  with a small budget reads O(window), and only ``none`` reads everything.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest

from threadkit import Agent
from threadkit._local import LocalBackend, LocalThread
from threadkit.engine import RunEngine
from threadkit.errors import ValidationError
from threadkit.models import estimate_tokens, message_tokens
from threadkit.stores.memory import MemoryStore
from threadkit.testing import ScriptedModel
from threadkit.truncation import build_context, keep_tool_pairs
from threadkit.types import (
    ContentPart,
    Message,
    Page,
    RunStatus,
    TextContent,
    ToolCallContent,
    ToolResultContent,
    TruncationStrategy,
)

# --------------------------------------------------------------------------- thread builders


def user(text: str) -> Message:
    return Message(id="", thread_id="", role="user", content=[TextContent(text=text)])


def assistant(*parts: ContentPart) -> Message:
    return Message(id="", thread_id="", role="assistant", content=list(parts))


def tool(*results: tuple[str, str]) -> Message:
    return Message(
        id="",
        thread_id="",
        role="tool",
        content=[ToolResultContent(tool_call_id=c, output=o) for c, o in results],
    )


def call(cid: str, name: str = "lookup") -> ToolCallContent:
    return ToolCallContent(id=cid, name=name, arguments='{"q": "x"}')


def conversation(turns: int, seed: int = 7, tag: str = "") -> list[Message]:
    """A thread with plain turns and tool turns of several shapes, ending with a user message.

    Shapes (by turn number): plain; text + two calls answered in two tool messages; one call;
    two calls answered in ONE tool message.
    """
    rng = random.Random(seed)
    out: list[Message] = []

    def pad(c: str, most: int) -> str:
        return c * rng.randint(0, most)

    for i in range(turns):
        out.append(user(f"question {i} {pad('q', 80)}"))
        a, b = f"call_{tag}{i}_a", f"call_{tag}{i}_b"
        shape = i % 4
        if shape == 1:
            out.append(assistant(TextContent(text=f"checking {i}"), call(a), call(b)))
            out.append(tool((a, pad("r", 60) or "r")))
            out.append(tool((b, pad("s", 60) or "s")))
        elif shape == 2:
            out.append(assistant(call(a)))
            out.append(tool((a, pad("t", 90) or "t")))
        elif shape == 3:
            out.append(assistant(call(a), call(b)))
            out.append(tool((a, "one"), (b, pad("u", 40) or "u")))
        out.append(assistant(TextContent(text=f"answer {i} {pad('y', 120)}")))
    out.append(user("and the final question?"))
    return out


# --------------------------------------------------------------------------- the property


def tool_parts(messages: Iterable[Message]) -> tuple[set[str], set[str]]:
    calls: set[str] = set()
    results: set[str] = set()
    for m in messages:
        for p in m.content:
            if isinstance(p, ToolCallContent):
                calls.add(p.id)
            elif isinstance(p, ToolResultContent):
                results.add(p.tool_call_id)
    return calls, results


def check_window(window: list[Message], seen: list[Message]) -> None:
    """``seen`` is ``window`` with exactly the unpaired tool parts removed, nothing else."""
    w_ids = [m.id for m in window]
    s_ids = [m.id for m in seen]
    assert set(s_ids) <= set(w_ids), "the model saw messages outside the window"
    assert s_ids == [i for i in w_ids if i in set(s_ids)], "order changed"
    originals = {m.id: m for m in window}
    for m in seen:
        orig = originals[m.id]
        assert (m.role, m.seq) == (orig.role, orig.seq)
        assert m.content, "an empty message was sent"
        assert [p for p in orig.content if p in m.content] == m.content, "parts changed"
    # every call seen has its result seen, and the other way round
    calls, results = tool_parts(seen)
    assert calls == results, f"separated: calls {calls ^ results}"
    # each result comes after its call
    position: dict[str, int] = {}
    for i, m in enumerate(seen):
        for p in m.content:
            if isinstance(p, ToolCallContent):
                position[p.id] = i
            elif isinstance(p, ToolResultContent):
                assert position[p.tool_call_id] < i
    # and nothing else was dropped: every pair inside the window, and every other part
    w_calls, w_results = tool_parts(window)
    assert calls == w_calls & w_results
    seen_by_id = {m.id: m for m in seen}
    for m in window:
        others = [p for p in m.content if not isinstance(p, ToolCallContent | ToolResultContent)]
        if others:
            assert m.id in seen_by_id, f"message {m.seq} ({m.role}) was lost"
            assert all(p in seen_by_id[m.id].content for p in others)


def reach_back(thread: list[Message], n: int) -> list[Message]:
    """``thread[-n:]``, extended back to the tool-call message of any result at its start
    whose call fell outside (the ``last_messages`` rule)."""
    start = max(len(thread) - n, 0)
    window = thread[start:]
    calls, results = tool_parts(window)
    missing = results - calls
    while missing and start > 0:
        start -= 1
        missing -= tool_parts([thread[start]])[0]
    return thread[start:]


def auto_window(thread: list[Message], budget: int) -> list[Message]:
    """The newest messages whose token estimates fit ``budget`` (always at least the newest)."""
    used = 0
    start = len(thread)
    for m in reversed(thread):
        cost = message_tokens(m)
        if start < len(thread) and used + cost > budget:
            break
        used += cost
        start -= 1
    return thread[start:]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
async def local() -> AsyncIterator[tuple[LocalBackend, ScriptedModel]]:
    model = ScriptedModel()
    backend = LocalBackend(MemoryStore(), model)
    yield backend, model
    await backend.close()


async def seeded_thread(backend: LocalBackend, messages: list[Message]) -> LocalThread:
    thread = await backend.create_thread()
    for i in range(0, len(messages), 500):
        await backend.store.append(thread.id, messages[i : i + 500])
    return thread


async def everything(thread: LocalThread) -> list[Message]:
    return [m async for m in thread.messages()]


# --------------------------------------------------------------------------- keep_tool_pairs


def test_keep_tool_pairs_cases() -> None:
    msgs = [
        Message(
            id="m1",
            thread_id="t",
            role="tool",
            content=[ToolResultContent(tool_call_id="old", output="o")],
        ),
        Message(id="m2", thread_id="t", role="user", content=[TextContent(text="hi")]),
        Message(
            id="m3",
            thread_id="t",
            role="assistant",
            content=[TextContent(text="let me see"), call("c1"), call("c2")],
        ),
        Message(
            id="m4",
            thread_id="t",
            role="tool",
            content=[ToolResultContent(tool_call_id="c1", output="1")],
        ),
    ]
    out = keep_tool_pairs(msgs)
    # the orphan result's message is gone; c2 (no result) is cut from m3, whose text stays
    assert [m.id for m in out] == ["m2", "m3", "m4"]
    assert out[1].content == [TextContent(text="let me see"), call("c1")]
    # the input is not modified
    assert len(msgs[2].content) == 3
    # a complete window is returned as is
    complete = [
        *msgs[1:4],
        Message(
            id="m5",
            thread_id="t",
            role="tool",
            content=[ToolResultContent(tool_call_id="c2", output="2")],
        ),
    ]
    assert keep_tool_pairs(complete) == complete
    assert keep_tool_pairs([]) == []


async def test_last_messages_needs_a_positive_count(
    local: tuple[LocalBackend, ScriptedModel],
) -> None:
    backend, _ = local
    thread = await seeded_thread(backend, conversation(2))
    for n in (None, 0, -1):
        with pytest.raises(ValidationError):
            await build_context(
                backend.store,
                thread.id,
                TruncationStrategy(type="last_messages", last_messages=n),
                token_budget=100,
            )
        with pytest.raises(ValidationError):
            await thread.run(
                truncation_strategy=TruncationStrategy(type="last_messages", last_messages=n)
            )


# --------------------------------------------------------------------------- pairs are never split


async def test_last_messages_never_separates_pairs_for_any_n(
    local: tuple[LocalBackend, ScriptedModel],
) -> None:
    backend, model = local
    msgs = conversation(12)
    size = len(msgs)
    assert size > 40
    starts: set[str] = set()
    for n in range(1, size + 3):
        thread = await seeded_thread(backend, msgs)  # the same thread each time, fresh
        before = await everything(thread)
        starts.add(before[-n:][0].role)
        strategy = TruncationStrategy(type="last_messages", last_messages=n)
        run = await thread.run(truncation_strategy=strategy)
        assert run.status is RunStatus.COMPLETED
        assert run.truncation_strategy == strategy
        seen = model.last_context
        check_window(reach_back(before, n), seen)
        # the newest message always goes (a run answers it)
        assert seen[-1].id == before[-1].id
        if n == 1:
            assert len(seen) == 1
    assert starts == {"user", "assistant", "tool"}  # windows began at every kind of message


async def test_last_messages_starting_at_results_keeps_them_with_their_call(
    local: tuple[LocalBackend, ScriptedModel],
) -> None:
    backend, model = local
    thread = await backend.create_thread()
    await thread.add_message("user", "Please compute 6 * 7")
    run = await thread.run(functions={"calculator": lambda expression: "42"})
    assert run.status is RunStatus.COMPLETED
    # the thread ends [..., assistant(call), tool(result), assistant(answer)]
    await thread.add_message("user", "thanks")
    strategy = TruncationStrategy(type="last_messages", last_messages=3)
    await thread.run(truncation_strategy=strategy)
    roles = [m.role for m in model.last_context]
    assert roles == ["assistant", "tool", "assistant", "user"]  # the call was reached back to


async def test_auto_never_separates_pairs_for_small_budgets(
    local: tuple[LocalBackend, ScriptedModel],
) -> None:
    backend, model = local
    msgs = conversation(12, seed=3)
    budgets = [*range(1, 40, 3), *range(40, 700, 17), 10_000]
    sizes = []
    for budget in budgets:
        thread = await seeded_thread(backend, msgs)
        before = await everything(thread)
        run = await thread.run(max_prompt_tokens=budget)
        assert run.status is RunStatus.COMPLETED
        window = auto_window(before, budget)
        check_window(window, model.last_context)
        if len(window) > 1:
            assert sum(message_tokens(m) for m in window) <= budget
        sizes.append(len(window))
    assert sizes[0] == 1 and sizes[-1] > 40  # from the newest message only to everything
    assert sizes == sorted(sizes)


async def test_auto_uses_the_model_context_window_less_instructions_and_output_reserve(
    local: tuple[LocalBackend, ScriptedModel],
) -> None:
    backend, model = local
    msgs = conversation(10, seed=11)
    instructions = "Be exact. " * 30
    reserve = 20
    for window_size in range(60, 400, 23):
        model.context_window = window_size
        thread = await seeded_thread(backend, msgs)
        before = await everything(thread)
        await thread.run(Agent(instructions=instructions), max_completion_tokens=reserve)
        budget = window_size - estimate_tokens((), instructions) - reserve
        check_window(auto_window(before, max(budget, 1)), model.last_context)
    # max_prompt_tokens of the run wins over the model's window
    model.context_window = 100_000
    before = await everything(thread)
    await thread.run(max_prompt_tokens=40)
    check_window(auto_window(before, 40), model.last_context)


async def test_none_sends_the_whole_thread(local: tuple[LocalBackend, ScriptedModel]) -> None:
    backend, model = local
    thread = await seeded_thread(backend, conversation(9))
    before = await everything(thread)
    await thread.run(
        truncation_strategy=TruncationStrategy(type="none"), max_prompt_tokens=5
    )  # the budget does not apply to "none"
    assert [m.id for m in model.last_context] == [m.id for m in before]


async def test_a_tool_turn_in_progress_sees_its_own_call_and_results(
    local: tuple[LocalBackend, ScriptedModel],
) -> None:
    """The second model call of a tool run, under a small window, gets the call with its results."""
    backend, _ = local
    model = ScriptedModel(
        replies=[[call("call_now_a", "ping"), call("call_now_b", "ping")], "done"]
    )
    backend.engine = RunEngine(backend.store, model)
    thread = LocalThread((await backend.create_thread()).id, backend)
    await thread.add_message("user", "ping twice")

    def ping() -> str:
        return "pong"

    strategy = TruncationStrategy(type="last_messages", last_messages=3)
    run = await thread.run(functions=[ping], truncation_strategy=strategy)
    assert run.status is RunStatus.COMPLETED
    second = model.requests[1].messages
    assert [m.role for m in second] == ["assistant", "tool", "tool"]
    check_window((await everything(thread))[1:4], second)


# --------------------------------------------------------------------------- only the window is read


class CountingStore:
    """Delegates every store method to ``inner``; counts the messages the store returned."""

    def __init__(self, inner: MemoryStore) -> None:
        self._inner = inner
        self.read = 0
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def locator(self) -> str:
        return self._inner.locator

    async def list_messages(self, thread_id: str, **kw: Any) -> Page[Message]:
        page = await self._inner.list_messages(thread_id, **kw)
        self.read += len(page.data)
        self.calls.append("list_messages")
        return page

    async def tail(self, thread_id: str, n: int) -> list[Message]:
        out = await self._inner.tail(thread_id, n)
        self.read += len(out)
        self.calls.append("tail")
        return out

    async def get_message(self, thread_id: str, message_id: str) -> Message:
        self.read += 1
        self.calls.append("get_message")
        return await self._inner.get_message(thread_id, message_id)


BIG = 5_000


@pytest.fixture(scope="module")
def big_conversation() -> list[Message]:
    msgs = conversation(1_400, seed=5)
    return msgs[-BIG:] if len(msgs) > BIG else msgs


@pytest.fixture
async def big_thread(
    big_conversation: list[Message],
) -> AsyncIterator[tuple[LocalThread, CountingStore, ScriptedModel]]:
    counting = CountingStore(MemoryStore())
    model = ScriptedModel()
    backend = LocalBackend(counting, model)
    info = await counting.create_thread()
    # the slice may start with orphan results: drop those messages so the append is valid
    msgs = keep_tool_pairs(big_conversation)
    for i in range(0, len(msgs), 500):
        await counting.append(info.id, msgs[i : i + 500])
    assert await counting.count_messages(info.id) >= BIG - 5
    counting.read = 0
    counting.calls.clear()
    yield LocalThread(info.id, backend), counting, model
    await backend.close()


async def test_last_messages_run_reads_only_its_window(
    big_thread: tuple[LocalThread, CountingStore, ScriptedModel],
) -> None:
    thread, counting, model = big_thread
    run = await thread.run(
        truncation_strategy=TruncationStrategy(type="last_messages", last_messages=10)
    )
    assert run.status is RunStatus.COMPLETED
    assert counting.read <= 10 + 2, counting.calls
    assert 1 <= len(model.last_context) <= 10


async def test_auto_run_with_a_small_budget_reads_o_window(
    big_thread: tuple[LocalThread, CountingStore, ScriptedModel],
) -> None:
    thread, counting, model = big_thread
    run = await thread.run(max_prompt_tokens=300)
    assert run.status is RunStatus.COMPLETED
    sent = len(model.last_context)
    assert 3 <= sent <= 60
    assert counting.read <= 2 * 64 + sent, counting.calls
    assert counting.read < BIG // 20


async def test_auto_with_the_model_window_reads_o_window(
    big_thread: tuple[LocalThread, CountingStore, ScriptedModel],
) -> None:
    thread, counting, model = big_thread
    model.context_window = 1_000
    await thread.run()
    assert counting.read <= 3 * 64 + len(model.last_context)
    assert counting.read < BIG // 10


async def test_none_reads_the_whole_thread(
    big_thread: tuple[LocalThread, CountingStore, ScriptedModel],
) -> None:
    thread, counting, model = big_thread
    total = await counting.count_messages(thread.id)
    await thread.run(truncation_strategy=TruncationStrategy(type="none"))
    assert counting.read >= total
    assert len(model.last_context) == total
