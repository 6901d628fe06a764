"""The Responses surface of threadkit serve, and the engine's ``tool_call_mode="complete"``.

The HTTP tests drive the REAL ``openai`` SDK (``_strict_response_validation=True``) and
``azure-ai-projects`` 2.x over HTTP on 127.0.0.1 against :func:`threadkit.testing.server.running_server`.
"""

from __future__ import annotations

import pytest

from threadkit.engine import RunEngine
from threadkit.errors import ValidationError
from threadkit.stores.memory import MemoryStore
from threadkit.testing import ScriptedModel
from threadkit.types import (
    FunctionDefinition,
    FunctionTool,
    Message,
    RunStatus,
    TextContent,
    ToolCallContent,
    ToolCallsDetails,
)

WEATHER = FunctionTool(
    function=FunctionDefinition(
        name="get_weather",
        parameters={
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    )
)


# --------------------------------------------------------------------------- engine mode


async def test_complete_mode_stores_the_tool_call_turn_and_completes() -> None:
    store = MemoryStore()
    engine = RunEngine(store, ScriptedModel())
    thread = await store.create_thread()
    ask = Message(
        id="", thread_id="", role="user", content=[TextContent(text="get_weather in Paris")]
    )
    run = await engine.create_run(
        thread.id, tools=[WEATHER], additional_messages=[ask], tool_call_mode="complete"
    )
    done = await engine.process(thread.id, run.id)
    assert done.status is RunStatus.COMPLETED
    assert done.required_action is None and done.completed_at is not None
    assert done.usage is not None and done.usage.total_tokens > 0
    messages = (await store.list_messages(thread.id)).data
    assert [m.role for m in messages] == ["user", "assistant"]
    (call,) = messages[1].tool_calls
    assert call.name == "get_weather" and messages[1].run_id == run.id
    (step,) = (await store.list_steps(thread.id, run.id)).data
    assert step.type == "tool_calls" and step.status.value == "completed"
    assert isinstance(step.step_details, ToolCallsDetails)
    assert step.step_details.tool_calls[0].id == call.id
    # the thread is free: the answer comes as a tool message before the next run
    from threadkit.types import ToolResultContent

    result = Message(
        id="",
        thread_id="",
        role="tool",
        content=[ToolResultContent(tool_call_id=call.id, output="sunny")],
    )
    nxt = await engine.create_run(
        thread.id, tools=[WEATHER], additional_messages=[result], tool_call_mode="complete"
    )
    final = await engine.process(thread.id, nxt.id)
    assert final.status is RunStatus.COMPLETED
    tail = await store.tail(thread.id, 1)
    assert tail[0].text == "get_weather returned sunny."


async def test_default_mode_still_stops_at_requires_action() -> None:
    store = MemoryStore()
    engine = RunEngine(store, ScriptedModel(replies=[[ToolCallContent(id="c1", name="f")]]))
    thread = await store.create_thread()
    run = await engine.create_run(thread.id, tools=[WEATHER])
    assert (await engine.process(thread.id, run.id)).status is RunStatus.REQUIRES_ACTION
    assert await store.count_messages(thread.id) == 0


async def test_unknown_tool_call_mode_is_refused() -> None:
    store = MemoryStore()
    engine = RunEngine(store, ScriptedModel())
    thread = await store.create_thread()
    with pytest.raises(ValidationError):
        await engine.create_run(thread.id, tool_call_mode="later")  # type: ignore[arg-type]
