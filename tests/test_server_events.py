"""The run engine's optional event hook (``RunEngine.listen``) that streamed runs are built on."""

from __future__ import annotations

from typing import Any

from threadkit.engine import MessageDelta, RunEngine
from threadkit.models import ChatRequest, ChatResponse
from threadkit.stores.memory import MemoryStore
from threadkit.testing import ScriptedModel
from threadkit.types import (
    Agent,
    FunctionDefinition,
    FunctionTool,
    Message,
    Run,
    RunStep,
    TextContent,
    ToolOutput,
)


class CompleteOnly:
    """A chat model without ``stream``: the engine must fall back to one delta per answer."""

    def __init__(self) -> None:
        self.inner = ScriptedModel()
        self.model_name = "offline"
        self.context_window: int | None = None

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return await self.inner.complete(request)


async def setup(model: Any, text: str) -> tuple[RunEngine, str]:
    store = MemoryStore()
    await store.setup()
    engine = RunEngine(store, model)
    thread = await store.create_thread()
    await store.append(
        thread.id,
        [Message(id="", thread_id=thread.id, role="user", content=[TextContent(text=text)])],
    )
    return engine, thread.id


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    async def __call__(self, event: str, data: Any) -> None:
        self.events.append((event, data))

    @property
    def names(self) -> list[str]:
        return [e for e, _ in self.events]


async def test_streaming_model_emits_spec_events_and_ids_match_the_store() -> None:
    engine, tid = await setup(ScriptedModel(), "hello there")
    run = await engine.create_run(tid, Agent(id="asst_1"))
    rec = Recorder()
    with engine.listen(run.id, rec):
        done = await engine.process(tid, run.id)
    assert rec.names == [
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.message.created",
        "thread.message.in_progress",
        *["thread.message.delta"] * 9,  # "You said: hello there (I can see 1 messages.)"
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
    ]
    deltas = [d for e, d in rec.events if isinstance(d, MessageDelta)]
    stored = (await engine.store.list_messages(tid, order="desc", limit=1)).data[0]
    assert "".join(d.text for d in deltas) == stored.text
    assert {d.id for d in deltas} == {stored.id}
    step = rec.events[-2][1]
    assert isinstance(step, RunStep) and step.step_details.message_creation == {  # type: ignore[union-attr]
        "message_id": stored.id
    }
    assert (await engine.store.get_step(tid, run.id, step.id)).status == "completed"
    assert isinstance(rec.events[-1][1], Run) and done.status == "completed"
    assert engine._listeners == {}


async def test_complete_only_model_sends_one_delta() -> None:
    engine, tid = await setup(CompleteOnly(), "my cat is Tom")
    run = await engine.create_run(tid, Agent(id="a"))
    rec = Recorder()
    with engine.listen(run.id, rec):
        await engine.process(tid, run.id)
    deltas = [d.text for _, d in rec.events if isinstance(d, MessageDelta)]
    assert deltas == ["Noted: your cat is Tom."]


async def test_tool_calls_then_outputs_emit_step_and_run_events() -> None:
    tool = FunctionTool(function=FunctionDefinition(name="lookup"))
    engine, tid = await setup(ScriptedModel(), "lookup please")
    run = await engine.create_run(tid, Agent(id="a", tools=[tool]))
    rec = Recorder()
    with engine.listen(run.id, rec):
        waiting = await engine.process(tid, run.id)
        assert rec.names == [
            "thread.run.in_progress",
            "thread.run.step.created",
            "thread.run.step.in_progress",
            "thread.run.requires_action",
        ]
        call = waiting.required_action.submit_tool_outputs.tool_calls[0]  # type: ignore[union-attr]
        await engine.submit_tool_outputs(
            tid, run.id, [ToolOutput(tool_call_id=call.id, output="1")]
        )
        assert rec.names[4:] == ["thread.run.step.completed", "thread.run.in_progress"]
        await engine.process(tid, run.id)
    assert rec.names[-1] == "thread.run.completed"


async def test_without_a_listener_the_model_is_not_streamed() -> None:
    calls: list[str] = []

    class Spy(ScriptedModel):
        async def complete(self, request: ChatRequest) -> ChatResponse:
            calls.append("complete")
            return await super().complete(request)

        async def stream(self, request: ChatRequest) -> Any:  # pragma: no cover - must not run
            calls.append("stream")
            raise AssertionError("streamed without a listener")
            yield

    engine, tid = await setup(Spy(), "hi")
    run = await engine.create_run(tid, Agent(id="a"))
    assert (await engine.process(tid, run.id)).status == "completed"
    assert calls == ["complete"]


async def test_a_failing_listener_never_breaks_the_run() -> None:
    engine, tid = await setup(ScriptedModel(), "hi")
    run = await engine.create_run(tid, Agent(id="a"))

    async def broken(event: str, data: Any) -> None:
        raise RuntimeError("listener bug")

    rec = Recorder()
    with engine.listen(run.id, broken), engine.listen(run.id, rec):
        done = await engine.process(tid, run.id)
    assert done.status == "completed"
    assert rec.names[-1] == "thread.run.completed"  # the second listener still heard all


async def test_cancel_from_elsewhere_reaches_the_listener() -> None:
    engine, tid = await setup(ScriptedModel(), "hi")
    run = await engine.create_run(tid, Agent(id="a"))
    rec = Recorder()
    with engine.listen(run.id, rec):
        await engine.cancel(tid, run.id)
    assert rec.names == ["thread.run.cancelled"]
