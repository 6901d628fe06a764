"""The run engine: every status transition of the Assistants v2 run lifecycle, checked end to end.

Runs are driven on a :class:`MemoryStore` wrapped in a proxy that records every status change
the engine writes, so each test also checks that the engine only ever made transitions that
:data:`ALLOWED_TRANSITIONS` permits. The engine clock is injected, so expiry is tested without
sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import threadkit
from threadkit import Agent
from threadkit._local import LocalBackend
from threadkit.engine import ALLOWED_TRANSITIONS, RunEngine
from threadkit.errors import (
    ActiveRunError,
    InvalidRunStateError,
    ModelError,
    ModelRateLimitError,
    RunNotFoundError,
    RunTimeoutError,
    ThreadNotFoundError,
    ValidationError,
)
from threadkit.models import ChatRequest, ChatResponse
from threadkit.stores.memory import MemoryStore
from threadkit.testing import ScriptedModel
from threadkit.types import (
    Message,
    MessageCreationDetails,
    Run,
    RunStatus,
    RunStep,
    RunStepStatus,
    TextContent,
    ThreadInfo,
    ToolCallContent,
    ToolCallsDetails,
    ToolOutput,
    ToolResultContent,
    Usage,
)

S = RunStatus
T0 = 1_700_000_000.0


class FakeClock:
    """An engine clock that only moves when told to (unix seconds)."""

    def __init__(self, start: float = T0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class RecordingStore:
    """Delegates everything to a real store and records each run status change it stores.

    ``transitions`` holds ``(run_id, before, after)`` for every successful ``update_run`` that
    changed the stored status, in order; ``created`` the status of every run created.
    """

    def __init__(self, inner: MemoryStore) -> None:
        self._inner = inner
        self.transitions: list[tuple[str, RunStatus, RunStatus]] = []
        self.created: list[RunStatus] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def locator(self) -> str:
        return self._inner.locator

    async def create_run(self, run: Run) -> Run:
        stored = await self._inner.create_run(run)
        self.created.append(stored.status)
        return stored

    async def update_run(self, run: Run, *, expected_status: str | None = None) -> Run:
        before = await self._inner.get_run(run.thread_id, run.id)
        stored = await self._inner.update_run(run, expected_status=expected_status)
        if before.status != stored.status:
            self.transitions.append((run.id, before.status, stored.status))
        return stored

    def path(self, run_id: str) -> list[tuple[RunStatus, RunStatus]]:
        return [(a, b) for rid, a, b in self.transitions if rid == run_id]


def assert_allowed(store: RecordingStore) -> None:
    assert all(s is S.QUEUED for s in store.created), store.created
    for run_id, before, after in store.transitions:
        assert after in ALLOWED_TRANSITIONS[before], f"{run_id}: {before} -> {after}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store() -> AsyncIterator[RecordingStore]:
    inner = MemoryStore()
    await inner.setup()
    rec = RecordingStore(inner)
    yield rec
    assert_allowed(rec)  # every test also checks the engine's transitions
    await inner.close()


@pytest.fixture
async def thread_id(store: RecordingStore) -> str:
    info: ThreadInfo = await store.create_thread()
    await store.append(
        info.id, [Message(id="", thread_id=info.id, role="user", content=[TextContent(text="hi")])]
    )
    return info.id


def make_engine(
    store: RecordingStore, model: ScriptedModel, clock: FakeClock, **kw: Any
) -> RunEngine:
    return RunEngine(store, model, clock=clock, **kw)


async def all_messages(store: RecordingStore, thread_id: str) -> list[Message]:
    page = await store.list_messages(thread_id, limit=None)
    return list(page.data)


async def steps_of(store: RecordingStore, thread_id: str, run_id: str) -> list[RunStep]:
    page = await store.list_steps(thread_id, run_id, limit=None)
    return list(page.data)


def call(cid: str, name: str = "lookup", args: str = "{}") -> ToolCallContent:
    return ToolCallContent(id=cid, name=name, arguments=args)


def answer(content: list[Any], prompt: int, completion: int, finish: Any = None) -> ChatResponse:
    has_calls = any(isinstance(p, ToolCallContent) for p in content)
    return ChatResponse(
        content=content,
        usage=Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        ),
        finish_reason=finish or ("tool_calls" if has_calls else "stop"),
    )


# --------------------------------------------------------------------------- the table itself


def test_allowed_transitions_cover_every_status_and_terminal_ones_are_final() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(RunStatus)
    for status, targets in ALLOWED_TRANSITIONS.items():
        assert (not targets) == status.is_terminal, status
        assert status not in targets
    # the spec's main edges are present
    assert S.IN_PROGRESS in ALLOWED_TRANSITIONS[S.QUEUED]
    assert S.REQUIRES_ACTION in ALLOWED_TRANSITIONS[S.IN_PROGRESS]
    assert S.IN_PROGRESS in ALLOWED_TRANSITIONS[S.REQUIRES_ACTION]
    assert S.EXPIRED in ALLOWED_TRANSITIONS[S.REQUIRES_ACTION]
    assert S.CANCELLED in ALLOWED_TRANSITIONS[S.CANCELLING]
    # and impossible ones are not
    assert S.COMPLETED not in ALLOWED_TRANSITIONS[S.REQUIRES_ACTION]
    assert S.QUEUED not in ALLOWED_TRANSITIONS[S.IN_PROGRESS]


def test_engine_refuses_non_positive_timeouts(store: RecordingStore) -> None:
    with pytest.raises(ValidationError):
        RunEngine(store, ScriptedModel(), requires_action_timeout=0)
    with pytest.raises(ValidationError):
        RunEngine(store, ScriptedModel(), run_timeout=-1)


# --------------------------------------------------------------------------- the happy path


async def test_queued_in_progress_completed(
    store: RecordingStore, thread_id: str, clock: FakeClock
) -> None:
    model = ScriptedModel(replies=[answer([TextContent(text="hello back")], 11, 3)])
    engine = make_engine(store, model, clock)
    run = await engine.create_run(thread_id, Agent(instructions="Be kind.", model="m1"))
    assert run.status is S.QUEUED
    assert run.created_at == int(T0)
    assert run.started_at is None and run.completed_at is None
    assert run.expires_at == int(T0) + 600
    assert run.instructions == "Be kind." and run.model == "m1"

    clock.advance(5)
    done = await engine.process(thread_id, run.id)
    assert done.status is S.COMPLETED
    assert done.started_at == int(T0) + 5
    assert done.completed_at == int(T0) + 5
    assert done.expires_at is None and done.required_action is None
    assert done.usage == Usage(prompt_tokens=11, completion_tokens=3, total_tokens=14)
    assert store.path(run.id) == [(S.QUEUED, S.IN_PROGRESS), (S.IN_PROGRESS, S.COMPLETED)]

    msgs = await all_messages(store, thread_id)
    assert [(m.role, m.text) for m in msgs] == [("user", "hi"), ("assistant", "hello back")]
    assert msgs[-1].run_id == run.id and msgs[-1].seq == 2
    (step,) = await steps_of(store, thread_id, run.id)
    assert step.type == "message_creation" and step.status is RunStepStatus.COMPLETED
    assert isinstance(step.step_details, MessageCreationDetails)
    assert step.step_details.message_creation == {"message_id": msgs[-1].id}
    assert step.usage == Usage(prompt_tokens=11, completion_tokens=3, total_tokens=14)
    # the model saw the instructions and the thread
    assert model.last_request.instructions == "Be kind."
    assert [m.text for m in model.last_context] == ["hi"]
    # the stored run agrees with what process returned
    assert await engine.get_run(thread_id, run.id) == done


async def test_create_run_overrides_and_additional_instructions(
    store: RecordingStore, thread_id: str, clock: FakeClock
) -> None:
    model = ScriptedModel()
    engine = make_engine(store, model, clock)
    agent = Agent(instructions="Base.", temperature=0.1, model="agent-model")
    run = await engine.create_run(
        thread_id,
        agent,
        additional_instructions="Extra.",
        temperature=0.7,
        metadata={"k": "v"},
    )
    assert run.instructions == "Base.\n\nExtra."
    assert run.temperature == 0.7 and run.model == "agent-model"
    assert run.metadata == {"k": "v"}
    await engine.process(thread_id, run.id)
    assert model.last_request.temperature == 0.7
    assert model.last_request.instructions == "Base.\n\nExtra."


async def test_additional_messages_are_appended_with_the_run(
    store: RecordingStore, thread_id: str, clock: FakeClock
) -> None:
    model = ScriptedModel()
    engine = make_engine(store, model, clock)
    extra = Message(id="", thread_id=thread_id, role="user", content=[TextContent(text="more")])
    run = await engine.create_run(thread_id, additional_messages=[extra])
    await engine.process(thread_id, run.id)
    assert [m.text for m in model.last_context] == ["hi", "more"]


async def test_unknown_ids(store: RecordingStore, thread_id: str, clock: FakeClock) -> None:
    engine = make_engine(store, ScriptedModel(), clock)
    with pytest.raises(ThreadNotFoundError):
        await engine.create_run("thread_nope")
    with pytest.raises(RunNotFoundError):
        await engine.get_run(thread_id, "run_nope")
    with pytest.raises(RunNotFoundError):
        await engine.submit_tool_outputs(thread_id, "run_nope", [])


async def test_bad_truncation_strategy_is_refused_before_anything_is_stored(
    store: RecordingStore, thread_id: str, clock: FakeClock
) -> None:
    from threadkit.types import TruncationStrategy

    engine = make_engine(store, ScriptedModel(), clock)
    with pytest.raises(ValidationError):
        await engine.create_run(
            thread_id, truncation_strategy=TruncationStrategy(type="last_messages")
        )
    assert (await store.list_runs(thread_id)).data == []


# --------------------------------------------------------------------------- tool calls


def two_calls_then_text() -> ScriptedModel:
    return ScriptedModel(
        replies=[
            answer(
                [TextContent(text="Let me look."), call("call_a", args='{"q": 1}'), call("call_b")],
                20,
                7,
            ),
            answer([TextContent(text="All done.")], 40, 4),
        ]
    )


async def test_requires_action_then_submit_then_completed(
    store: RecordingStore, thread_id: str, clock: FakeClock
) -> None:
    model = two_calls_then_text()
    engine = make_engine(store, model, clock, requires_action_timeout=30)
    run = await engine.create_run(thread_id)
    waiting = await engine.process(thread_id, run.id)

    assert waiting.status is S.REQUIRES_ACTION
    assert waiting.required_action is not None
    calls = waiting.required_action.submit_tool_outputs.tool_calls
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_a", "lookup", '{"q": 1}'),
        ("call_b", "lookup", "{}"),
    ]
    assert all(c.function.output is None for c in calls)
    assert waiting.expires_at == int(T0) + 30
    (step,) = await steps_of(store, thread_id, run.id)
    assert step.type == "tool_calls" and step.status is RunStepStatus.IN_PROGRESS
    assert isinstance(step.step_details, ToolCallsDetails)
    assert [c.id for c in step.step_details.tool_calls] == ["call_a", "call_b"]
    # nothing is written to the thread until the outputs come
    assert [m.role for m in await all_messages(store, thread_id)] == ["user"]

    clock.advance(3)
    outs = [
        ToolOutput(tool_call_id="call_b", output="B!"),  # any order
        ToolOutput(tool_call_id="call_a", output="A!"),
    ]
    resumed = await engine.submit_tool_outputs(thread_id, run.id, outs)
    assert resumed.status is S.IN_PROGRESS
    assert resumed.required_action is None
    assert resumed.expires_at == int(T0) + 3 + 600
    (step,) = await steps_of(store, thread_id, run.id)
    assert step.status is RunStepStatus.COMPLETED and step.completed_at == int(T0) + 3
    assert isinstance(step.step_details, ToolCallsDetails)
    assert {c.id: c.function.output for c in step.step_details.tool_calls} == {
        "call_a": "A!",
        "call_b": "B!",
    }

    msgs = await all_messages(store, thread_id)
    assert [m.role for m in msgs] == ["user", "assistant", "tool", "tool"]
    assert [m.seq for m in msgs] == [1, 2, 3, 4]
    assistant = msgs[1]
    assert assistant.text == "Let me look."  # the text that came with the calls is kept
    assert [c.id for c in assistant.tool_calls] == ["call_a", "call_b"]
    assert [(r.tool_call_id, r.output) for m in msgs[2:] for r in m.tool_results] == [
        ("call_a", "A!"),
        ("call_b", "B!"),
    ]
    assert all(m.run_id == run.id for m in msgs[1:])

    done = await engine.process(thread_id, run.id)
    assert done.status is S.COMPLETED
    # usage is summed over both model calls
    assert done.usage == Usage(prompt_tokens=60, completion_tokens=11, total_tokens=71)
    # the second model call saw the calls next to their results
    assert [m.role for m in model.last_context] == ["user", "assistant", "tool", "tool"]
    assert isinstance(model.last_context[2].content[0], ToolResultContent)
    msgs = await all_messages(store, thread_id)
    assert [m.text for m in msgs][-1] == "All done."
    steps = await steps_of(store, thread_id, run.id)
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    assert store.path(run.id) == [
        (S.QUEUED, S.IN_PROGRESS),
        (S.IN_PROGRESS, S.REQUIRES_ACTION),
        (S.REQUIRES_ACTION, S.IN_PROGRESS),
        (S.IN_PROGRESS, S.COMPLETED),
    ]


@pytest.mark.parametrize(
    "outputs",
    [
        pytest.param([("call_a", "A")], id="missing-one"),
        pytest.param([("call_a", "A"), ("call_b", "B"), ("call_x", "X")], id="unknown-id"),
        pytest.param([("call_a", "A"), ("call_a", "A2"), ("call_b", "B")], id="duplicate"),
        pytest.param([], id="none"),
    ],
)
async def test_bad_tool_outputs_are_refused_and_nothing_is_written(
    store: RecordingStore, thread_id: str, clock: FakeClock, outputs: list[tuple[str, str]]
) -> None:
    engine = make_engine(store, two_calls_then_text(), clock)
    run = await engine.create_run(thread_id)
    waiting = await engine.process(thread_id, run.id)
    before_msgs = await all_messages(store, thread_id)
    before_steps = await steps_of(store, thread_id, run.id)

    with pytest.raises(ValidationError):
        await engine.submit_tool_outputs(
            thread_id, run.id, [ToolOutput(tool_call_id=c, output=o) for c, o in outputs]
        )
    assert await all_messages(store, thread_id) == before_msgs
    assert await steps_of(store, thread_id, run.id) == before_steps
    assert await engine.get_run(thread_id, run.id) == waiting

    # the run still takes a correct answer afterwards
    good = [
        ToolOutput(tool_call_id="call_a", output="A"),
        ToolOutput(tool_call_id="call_b", output="B"),
    ]
    assert (await engine.submit_tool_outputs(thread_id, run.id, good)).status is S.IN_PROGRESS


async def test_submit_to_a_run_not_waiting_is_invalid_state(
    store: RecordingStore, thread_id: str, clock: FakeClock
) -> None:
    engine = make_engine(store, ScriptedModel(), clock)
    run = await engine.create_run(thread_id)
    with pytest.raises(InvalidRunStateError) as queued:
        await engine.submit_tool_outputs(thread_id, run.id, [])
    assert queued.value.status == "queued"
    done = await engine.process(thread_id, run.id)
    assert done.status is S.COMPLETED
    with pytest.raises(InvalidRunStateError) as exc:
        await engine.submit_tool_outputs(
            thread_id, run.id, [ToolOutput(tool_call_id="call_a", output="x")]
        )
    assert exc.value.run_id == run.id and exc.value.status == "completed"
    assert len(await all_messages(store, thread_id)) == 2


async def test_submitting_twice_is_refused(
    store: RecordingStore, thread_id: str, clock: FakeClock
) -> None:
    engine = make_engine(store, two_calls_then_text(), clock)
    run = await engine.create_run(thread_id)
    await engine.process(thread_id, run.id)
    outs = [
        ToolOutput(tool_call_id="call_a", output="A"),
        ToolOutput(tool_call_id="call_b", output="B"),
    ]
    await engine.submit_tool_outputs(thread_id, run.id, outs)
    with pytest.raises(InvalidRunStateError):
        await engine.submit_tool_outputs(thread_id, run.id, outs)
    assert len(await all_messages(store, thread_id)) == 4


# --------------------------------------------------------------------------- expiry


async def test_requires_action_expires_when_read_after_the_timeout(
    store: RecordingStore, thread_id: str, clock: FakeClock
) -> None:
    engine = make_engine(store, two_calls_then_text(), clock, requires_action_timeout=30)
    run = await engine.create_run(thread_id)
    await engine.process(thread_id, run.id)

    clock.advance(29)
    assert (await engine.get_run(thread_id, run.id)).status is S.REQUIRES_ACTION
    with pytest.raises(ActiveRunError):
        await engine.create_run(thread_id)

    clock.advance(2)
    expired = await engine.get_run(thread_id, run.id)
    assert expired.status is S.EXPIRED
    assert expired.required_action is None
    (step,) = await steps_of(store, thread_id, run.id)
    assert step.status is RunStepStatus.EXPIRED and step.expired_at == int(T0) + 31
    assert store.path(run.id)[-1] == (S.REQUIRES_ACTION, S.EXPIRED)

    with pytest.raises(InvalidRunStateError) as exc:
        await engine.submit_tool_outputs(
            thread_id,
            run.id,
            [
                ToolOutput(tool_call_id="call_a", output="A"),
                ToolOutput(tool_call_id="call_b", output="B"),
            ],
        )
    assert exc.value.status == "expired"
    assert [m.role for m in await all_messages(store, thread_id)] == ["user"]
    with pytest.raises(InvalidRunStateError):
        await engine.cancel(thread_id, run.id)

    # the thread is no longer blocked
    assert await store.get_active_run(thread_id) is None
    nxt = await engine.create_run(thread_id)
    assert nxt.status is S.QUEUED


async def test_expired_holder_does_not_block_add_message(
    store: RecordingStore, thread_id: str, clock: FakeClock
) -> None:
    model = two_calls_then_text()
    backend = LocalBackend(store, model, requires_action_timeout=30)
    backend.engine = make_engine(store, model, clock, requires_action_timeout=30)
    thread = await backend.get_thread(thread_id)
    run = await thread.create_run()
    waiting = await thread.wait_run(run.id, timeout=5)
    assert waiting.status is S.REQUIRES_ACTION
    with pytest.raises(ActiveRunError) as exc:
        await thread.add_message("user", "too early")
    assert exc.value.run_id == run.id and exc.value.thread_id == thread_id

    clock.advance(31)
    stored = await thread.add_message("user", "after expiry")
    assert stored.seq == 2
    assert (await thread.get_run(run.id)).status is S.EXPIRED
    await backend.close()


async def test_crashed_holder_past_its_lease_does_not_block(
    store: RecordingStore, thread_id: str, clock: FakeClock
) -> None:
    """A run left in_progress by a process that died stops holding the thread at expires_at."""
    engine = make_engine(store, ScriptedModel(), clock)
    crashed = Run(
        id="run_crashed",
        thread_id=thread_id,
        status=S.IN_PROGRESS,
        created_at=int(T0) - 1000,
        started_at=int(T0) - 1000,
        expires_at=int(T0) - 10,
    )
    await store._inner.create_run(crashed)
    run = await engine.create_run(thread_id)
    assert run.status is S.QUEUED
    assert (await store.get_run(thread_id, "run_crashed")).status is S.EXPIRED
    assert (await engine.process(thread_id, run.id)).status is S.COMPLETED


async def test_holder_within_its_lease_still_blocks(
    store: RecordingStore, thread_id: str, clock: FakeClock
) -> None:
    engine = make_engine(store, ScriptedModel(), clock)
    holder = Run(
        id="run_holder",
        thread_id=thread_id,
        status=S.IN_PROGRESS,
        created_at=int(T0) - 100,
        expires_at=int(T0) + 100,
    )
    await store._inner.create_run(holder)
    with pytest.raises(ActiveRunError) as exc:
        await engine.create_run(thread_id)
    assert exc.value.run_id == "run_holder"
    clock.advance(101)
    assert (await engine.create_run(thread_id)).status is S.QUEUED
    assert (await store.get_run(thread_id, "run_holder")).status is S.EXPIRED


# --------------------------------------------------------------------------- cancel


async def test_cancel_queued(store: RecordingStore, thread_id: str, clock: FakeClock) -> None:
    model = ScriptedModel()
    engine = make_engine(store, model, clock)
    run = await engine.create_run(thread_id)
    clock.advance(2)
    cancelled = await engine.cancel(thread_id, run.id)
    assert cancelled.status is S.CANCELLED and cancelled.cancelled_at == int(T0) + 2
    # processing a cancelled run does nothing
    assert (await engine.process(thread_id, run.id)).status is S.CANCELLED
    assert model.requests == []
    assert len(await all_messages(store, thread_id)) == 1
    assert (await engine.create_run(thread_id)).status is S.QUEUED


async def test_cancel_requires_action(
    store: RecordingStore, thread_id: str, clock: FakeClock
) -> None:
    engine = make_engine(store, two_calls_then_text(), clock)
    run = await engine.create_run(thread_id)
    await engine.process(thread_id, run.id)
    cancelled = await engine.cancel(thread_id, run.id)
    assert cancelled.status is S.CANCELLED and cancelled.required_action is None
    (step,) = await steps_of(store, thread_id, run.id)
    assert step.status is RunStepStatus.CANCELLED and step.cancelled_at == int(T0)
    with pytest.raises(InvalidRunStateError):
        await engine.submit_tool_outputs(
            thread_id,
            run.id,
            [
                ToolOutput(tool_call_id="call_a", output="A"),
                ToolOutput(tool_call_id="call_b", output="B"),
            ],
        )
    assert [m.role for m in await all_messages(store, thread_id)] == ["user"]
    assert store.path(run.id)[-1] == (S.REQUIRES_ACTION, S.CANCELLED)


def gated(reply: Any) -> tuple[ScriptedModel, asyncio.Event, asyncio.Event]:
    """A model whose call waits for ``release`` (``entered`` is set once the call started)."""
    entered, release = asyncio.Event(), asyncio.Event()

    async def fn(request: ChatRequest) -> Any:
        entered.set()
        await release.wait()
        if isinstance(reply, BaseException):
            raise reply
        return reply

    return ScriptedModel(fn), entered, release


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param("the late answer", id="text"),
        pytest.param([call("call_late")], id="tool-call"),
        pytest.param(ModelError("late failure"), id="model-error"),
    ],
)
async def test_cancel_during_an_in_flight_model_call(
    store: RecordingStore, thread_id: str, clock: FakeClock, reply: Any
) -> None:
    model, entered, release = gated(reply)
    engine = make_engine(store, model, clock)
    run = await engine.create_run(thread_id)
    task = engine.start(thread_id, run.id)
    await asyncio.wait_for(entered.wait(), 5)

    cancelling = await engine.cancel(thread_id, run.id)
    assert cancelling.status is S.CANCELLING
    assert (await engine.cancel(thread_id, run.id)).status is S.CANCELLING  # idempotent
    with pytest.raises(ActiveRunError):
        await engine.create_run(thread_id)

    release.set()
    final = await asyncio.wait_for(task, 5)
    assert final.status is S.CANCELLED
    assert final.cancelled_at is not None and final.last_error is None
    # the model's answer was NOT written
    msgs = await all_messages(store, thread_id)
    assert [m.text for m in msgs] == ["hi"]
    assert await steps_of(store, thread_id, run.id) == []
    assert store.path(run.id) == [
        (S.QUEUED, S.IN_PROGRESS),
        (S.IN_PROGRESS, S.CANCELLING),
        (S.CANCELLING, S.CANCELLED),
    ]
    await engine.aclose()


async def test_cancel_of_an_ended_run_is_invalid_state(
    store: RecordingStore, thread_id: str, clock: FakeClock
) -> None:
    engine = make_engine(store, ScriptedModel(), clock)
    run = await engine.create_run(thread_id)
    await engine.process(thread_id, run.id)
    with pytest.raises(InvalidRunStateError) as exc:
        await engine.cancel(thread_id, run.id)
    assert exc.value.status == "completed"
    assert (await engine.get_run(thread_id, run.id)).status is S.COMPLETED


# --------------------------------------------------------------------------- failures and limits


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ModelError("upstream 500"), "server_error"),
        (ModelRateLimitError("429 after retries"), "rate_limit_exceeded"),
        (ValidationError("context too long"), "invalid_prompt"),
    ],
)
async def test_model_failure_fails_the_run(
    store: RecordingStore, thread_id: str, clock: FakeClock, error: Exception, code: str
) -> None:
    def fn(request: ChatRequest) -> str:
        raise error

    engine = make_engine(store, ScriptedModel(fn), clock)
    run = await engine.create_run(thread_id)
    clock.advance(1)
    failed = await engine.process(thread_id, run.id)
    assert failed.status is S.FAILED
    assert failed.last_error is not None and failed.last_error.code == code
    assert str(error) in failed.last_error.message
    assert failed.failed_at == int(T0) + 1 and failed.expires_at is None
    assert failed.completed_at is None
    assert len(await all_messages(store, thread_id)) == 1
    assert store.path(run.id) == [(S.QUEUED, S.IN_PROGRESS), (S.IN_PROGRESS, S.FAILED)]
    # the thread is free again
    assert (await engine.create_run(thread_id)).status is S.QUEUED


async def test_finish_reason_length_ends_incomplete(
    store: RecordingStore, thread_id: str, clock: FakeClock
) -> None:
    model = ScriptedModel(replies=[answer([TextContent(text="a partial")], 5, 16, "length")])
    engine = make_engine(store, model, clock)
    run = await engine.create_run(thread_id, max_completion_tokens=16)
    done = await engine.process(thread_id, run.id)
    assert done.status is S.INCOMPLETE
    assert done.incomplete_details is not None
    assert done.incomplete_details.reason == "max_completion_tokens"
    assert done.usage == Usage(prompt_tokens=5, completion_tokens=16, total_tokens=21)
    assert model.last_request.max_completion_tokens == 16
    # the partial answer is kept, as the services keep it
    assert [m.text for m in await all_messages(store, thread_id)] == ["hi", "a partial"]
    assert store.path(run.id)[-1] == (S.IN_PROGRESS, S.INCOMPLETE)
    assert (await engine.create_run(thread_id)).status is S.QUEUED


def endless_tool_calls() -> ScriptedModel:
    n = 0

    def fn(request: ChatRequest) -> list[Any]:
        nonlocal n
        n += 1
        return [call(f"call_{n}")]

    return ScriptedModel(fn)


async def test_max_model_calls_loop_guard_ends_incomplete(
    store: RecordingStore, thread_id: str, clock: FakeClock
) -> None:
    model = endless_tool_calls()
    engine = make_engine(store, model, clock, max_model_calls=3)
    run = await engine.create_run(thread_id)
    rounds = 0
    current = await engine.process(thread_id, run.id)
    while current.status is S.REQUIRES_ACTION:
        rounds += 1
        assert rounds <= 3, "the loop guard did not stop the run"
        assert current.required_action is not None
        (tc,) = current.required_action.submit_tool_outputs.tool_calls
        await engine.submit_tool_outputs(
            thread_id, run.id, [ToolOutput(tool_call_id=tc.id, output="again")]
        )
        current = await engine.process(thread_id, run.id)
    assert current.status is S.INCOMPLETE
    assert current.incomplete_details is not None
    assert current.incomplete_details.reason == "max_model_calls"
    assert len(model.requests) == 3 and rounds == 3
    assert store.path(run.id)[-1] == (S.IN_PROGRESS, S.INCOMPLETE)


# --------------------------------------------------------------------------- one active run


async def test_one_active_run_per_thread(
    store: RecordingStore, thread_id: str, clock: FakeClock
) -> None:
    engine = make_engine(store, ScriptedModel(), clock)
    first = await engine.create_run(thread_id)
    with pytest.raises(ActiveRunError) as exc:
        await engine.create_run(thread_id)
    assert exc.value.run_id == first.id and exc.value.thread_id == thread_id
    assert [r.id for r in (await store.list_runs(thread_id)).data] == [first.id]

    # another thread is not affected
    other = await store.create_thread()
    assert (await engine.create_run(other.id)).status is S.QUEUED

    await engine.process(thread_id, first.id)
    assert (await engine.create_run(thread_id)).status is S.QUEUED


async def test_concurrent_create_run_admits_exactly_one(
    store: RecordingStore, thread_id: str, clock: FakeClock
) -> None:
    engine = make_engine(store, ScriptedModel(), clock)
    results = await asyncio.gather(
        *(engine.create_run(thread_id) for _ in range(8)), return_exceptions=True
    )
    runs = [r for r in results if isinstance(r, Run)]
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(runs) == 1
    assert len(errors) == 7 and all(isinstance(e, ActiveRunError) for e in errors)


async def test_add_message_during_an_active_run_is_refused(
    store: RecordingStore, thread_id: str
) -> None:
    model, entered, release = gated("answer")
    backend = LocalBackend(store, model)
    thread = await backend.get_thread(thread_id)
    run = await thread.create_run()
    await asyncio.wait_for(entered.wait(), 5)
    with pytest.raises(ActiveRunError):
        await thread.add_message("user", "interrupting")
    with pytest.raises(ActiveRunError):
        await thread.create_run()
    release.set()
    done = await thread.wait_run(run.id, timeout=5)
    assert done.status is S.COMPLETED
    assert (await thread.add_message("user", "now it is fine")).seq == 3
    await backend.close()


# --------------------------------------------------------------------------- background tasks


async def test_start_returns_the_running_task_and_aclose_stops_it(
    store: RecordingStore, thread_id: str, clock: FakeClock
) -> None:
    model, entered, _release = gated("never")
    engine = make_engine(store, model, clock)
    run = await engine.create_run(thread_id)
    task = engine.start(thread_id, run.id)
    assert engine.start(thread_id, run.id) is task
    await asyncio.wait_for(entered.wait(), 5)
    await engine.aclose()
    assert task.cancelled()
    assert len(model.requests) == 1


async def test_lease_is_renewed_at_each_model_call(
    store: RecordingStore, thread_id: str, clock: FakeClock
) -> None:
    seen: list[int | None] = []

    async def fn(request: ChatRequest) -> str:
        runs = (await store.list_runs(thread_id)).data
        seen.append(runs[0].expires_at)
        return "ok"

    engine = make_engine(store, ScriptedModel(fn), clock, run_timeout=50)
    run = await engine.create_run(thread_id)
    assert run.expires_at == int(T0) + 50
    clock.advance(40)
    await engine.process(thread_id, run.id)
    assert seen == [int(T0) + 40 + 50]


async def test_crashed_holder_does_not_block_add_message_or_run(
    store: RecordingStore, thread_id: str
) -> None:
    backend = LocalBackend(store, ScriptedModel())
    thread = await backend.get_thread(thread_id)
    now = int(time.time())
    await store._inner.create_run(
        Run(
            id="run_dead",
            thread_id=thread_id,
            status=S.REQUIRES_ACTION,
            created_at=now - 2000,
            expires_at=now - 1,
        )
    )
    assert (await thread.add_message("user", "still here")).seq == 2
    assert (await thread.get_run("run_dead")).status is S.EXPIRED
    run = await thread.run()
    assert run.status is S.COMPLETED
    await backend.close()


async def test_run_timeout_leaves_the_run_going(store: RecordingStore, thread_id: str) -> None:
    model, entered, release = gated("eventually")
    backend = LocalBackend(store, model)
    thread = await backend.get_thread(thread_id)
    with pytest.raises(RunTimeoutError):
        await thread.run(timeout=0.2)
    assert entered.is_set()
    (run,) = (await store.list_runs(thread_id)).data
    assert run.status is S.IN_PROGRESS
    release.set()
    done = await thread.wait_run(run.id, timeout=5)
    assert done.status is S.COMPLETED
    await backend.close()


async def test_truncation_strategy_as_a_spec_dict() -> None:
    async with await threadkit.open_backend({"store": "memory://"}) as backend:
        thread = await backend.create_thread()
        await thread.add_message("user", "hi")
        run = await thread.run(truncation_strategy={"type": "last_messages", "last_messages": 2})
        assert run.truncation_strategy == threadkit.TruncationStrategy(
            type="last_messages", last_messages=2
        )
        with pytest.raises(threadkit.ValidationError, match="truncation_strategy"):
            await thread.run(truncation_strategy={"type": "sometimes"})


async def test_backend_from_config_closes_the_model_it_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed: list[bool] = []

    class Closing(ScriptedModel):
        async def aclose(self) -> None:
            closed.append(True)

    monkeypatch.setattr("threadkit._local.make_model", lambda cfg: Closing())
    backend = await threadkit.open_backend({"store": "memory://"})
    await backend.close()
    assert closed == [True]
