"""threadkit serve driven by the real ``openai`` SDK over HTTP on 127.0.0.1 (Assistants v2 + chat).

Every client validates responses strictly (``_strict_response_validation=True``), so a field of
the wrong type or a missing required field fails the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")
openai = pytest.importorskip("openai")

from openai import AssistantEventHandler, OpenAI  # noqa: E402

from threadkit.testing.server import RunningServer, running_server  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server({"store": "memory://", "model": "offline"}) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[OpenAI]:
    c = OpenAI(
        base_url=server.openai_base_url,
        api_key="x",
        _strict_response_validation=True,
        max_retries=0,
    )
    yield c
    c.close()


@pytest.fixture(scope="module")
def assistant_id(client: OpenAI) -> str:
    return client.beta.assistants.create(
        model="gpt-4o-mini", name="helper", instructions="Be brief.", tools=[WEATHER_TOOL]
    ).id


def texts(client: OpenAI, thread_id: str, **kw: Any) -> list[str]:
    out = []
    for m in client.beta.threads.messages.list(thread_id, **kw):
        out.append(m.content[0].text.value if m.content and m.content[0].type == "text" else "")
    return out


def test_thread_message_run_poll_then_list(client: OpenAI, assistant_id: str) -> None:
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(thread.id, role="user", content="my name is Ada")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant_id, poll_interval_ms=20
    )
    assert run.status == "completed"
    assert run.assistant_id == assistant_id
    assert run.usage is not None and run.usage.total_tokens > 0
    assert run.instructions == "Be brief."
    newest_first = texts(client, thread.id)
    assert newest_first == ["Noted: your name is Ada.", "my name is Ada"]
    messages = list(client.beta.threads.messages.list(thread.id, order="asc"))
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].run_id == run.id and messages[1].assistant_id == assistant_id
    assert messages[0].run_id is None


def test_requires_action_then_submit_tool_outputs_and_poll(
    client: OpenAI, assistant_id: str
) -> None:
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "please call get_weather for Paris"}]
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant_id, poll_interval_ms=20
    )
    assert run.status == "requires_action"
    assert run.required_action is not None
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert [c.function.name for c in calls] == ["get_weather"]
    # a second run while this one waits is refused with 400 (not 409, which the SDK retries)
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant_id)
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.messages.create(thread.id, role="user", content="hello?")
    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": calls[0].id, "output": "sunny, 21 C"}],
        poll_interval_ms=20,
    )
    assert run.status == "completed"
    # tool calls are run steps, not messages
    assert texts(client, thread.id, order="asc") == [
        "please call get_weather for Paris",
        "get_weather returned sunny, 21 C.",
    ]
    steps = list(client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc"))
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    assert all(s.status == "completed" for s in steps)
    tool_step = steps[0].step_details
    assert tool_step.type == "tool_calls"
    fn = tool_step.tool_calls[0]
    assert fn.type == "function" and fn.function.output == "sunny, 21 C"
    assert fn.id == calls[0].id
    message_step = steps[1].step_details
    assert message_step.type == "message_creation"
    final = client.beta.threads.messages.retrieve(
        message_step.message_creation.message_id, thread_id=thread.id
    )
    assert final.content[0].type == "text"
    assert final.content[0].text.value == "get_weather returned sunny, 21 C."
    one = client.beta.threads.runs.steps.retrieve(steps[0].id, thread_id=thread.id, run_id=run.id)
    assert one.id == steps[0].id and one.run_id == run.id


def test_create_and_run_poll(client: OpenAI, assistant_id: str) -> None:
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant_id,
        thread={"messages": [{"role": "user", "content": "our city is Oslo"}]},
        metadata={"case": "create_and_run"},
        poll_interval_ms=20,
    )
    assert run.status == "completed"
    assert run.metadata == {"case": "create_and_run"}
    assert texts(client, run.thread_id)[0] == "Noted: your city is Oslo."
    runs = list(client.beta.threads.runs.list(run.thread_id))
    assert [r.id for r in runs] == [run.id]


def test_cancel_and_terminal_cancel_is_400(client: OpenAI, assistant_id: str) -> None:
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "get_weather in Rome"}]
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant_id, poll_interval_ms=20
    )
    assert run.status == "requires_action"
    cancelled = client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
    steps = list(client.beta.threads.runs.steps.list(run.id, thread_id=thread.id))
    assert [s.status for s in steps] == ["cancelled"]
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": "x", "output": "y"}]
        )
    # the thread is free again
    again = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant_id, tools=[], poll_interval_ms=20
    )
    assert again.status == "completed"


def test_update_objects_and_delete(client: OpenAI) -> None:
    a = client.beta.assistants.create(model="m", name="tmp", metadata={"k": "v"})
    a2 = client.beta.assistants.update(a.id, name="renamed", instructions="hi")
    assert (a2.name, a2.instructions, a2.metadata, a2.model) == ("renamed", "hi", {"k": "v"}, "m")
    assert client.beta.assistants.retrieve(a.id).name == "renamed"
    assert a.id in [x.id for x in client.beta.assistants.list(limit=100)]
    thread = client.beta.threads.create(metadata={"a": "1"})
    assert client.beta.threads.update(thread.id, metadata={"b": "2"}).metadata == {"b": "2"}
    assert client.beta.threads.retrieve(thread.id).metadata == {"b": "2"}
    msg = client.beta.threads.messages.create(thread.id, role="user", content="x")
    upd = client.beta.threads.messages.update(msg.id, thread_id=thread.id, metadata={"m": "1"})
    assert upd.metadata == {"m": "1"}
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=a.id, poll_interval_ms=20
    )
    updated = client.beta.threads.runs.update(run.id, thread_id=thread.id, metadata={"r": "1"})
    assert updated.metadata == {"r": "1"} and updated.status == "completed"
    deleted = client.beta.threads.messages.delete(msg.id, thread_id=thread.id)
    assert deleted.deleted and deleted.id == msg.id
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.retrieve(msg.id, thread_id=thread.id)
    assert client.beta.threads.delete(thread.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.retrieve(thread.id)
    assert client.beta.assistants.delete(a.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.beta.assistants.retrieve(a.id)


class Collector(AssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.deltas: list[str] = []
        self.tool_calls: list[tuple[str, str, Any]] = []

    def on_event(self, event: Any) -> None:
        self.events.append(event.event)

    def on_text_delta(self, delta: Any, snapshot: Any) -> None:
        self.deltas.append(delta.value)

    def on_tool_call_created(self, tool_call: Any) -> None:
        self.tool_calls.append(("created", tool_call.function.name, tool_call.id))

    def on_tool_call_done(self, tool_call: Any) -> None:
        self.tool_calls.append(("done", tool_call.function.name, tool_call.function.arguments))


def test_stream_with_event_handler(client: OpenAI, assistant_id: str) -> None:
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "what is my name? I have not told you"}]
    )
    handler = Collector()
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant_id, event_handler=handler
    ) as stream:
        stream.until_done()
    text = "I don't know your name yet."
    assert "".join(handler.deltas) == text
    assert len(handler.deltas) > 1  # the offline model streams word by word
    assert handler.events[:2] == ["thread.run.created", "thread.run.queued"]
    assert handler.events[-1] == "thread.run.completed"
    for name in ("thread.message.created", "thread.message.completed", "thread.run.step.completed"):
        assert name in handler.events
    final = stream.get_final_messages()
    assert final[0].content[0].type == "text" and final[0].content[0].text.value == text
    # the streamed message is the stored one
    assert texts(client, thread.id)[0] == text


def test_stream_requires_action_then_submit_stream(client: OpenAI, assistant_id: str) -> None:
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "get_weather Oslo"}])
    handler = Collector()
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant_id, event_handler=handler
    ) as stream:
        stream.until_done()
    run = stream.current_run
    assert run is not None and run.status == "requires_action"
    assert handler.events[-1] == "thread.run.requires_action"
    call = run.required_action.submit_tool_outputs.tool_calls[0]  # type: ignore[union-attr]
    # the step delta carries the call once: callbacks fire, arguments are not doubled
    assert handler.tool_calls == [
        ("created", "get_weather", call.id),
        ("done", "get_weather", call.function.arguments),
    ]
    second = Collector()
    with client.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=thread.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "snow"}],
        event_handler=second,
    ) as stream2:
        stream2.until_done()
    assert "".join(second.deltas) == "get_weather returned snow."
    assert second.events[-1] == "thread.run.completed"
    assert second.events[0] == "thread.run.step.completed"


def test_create_with_stream_true(client: OpenAI, assistant_id: str) -> None:
    run_thread = client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
    events = list(
        client.beta.threads.runs.create(
            thread_id=run_thread.id, assistant_id=assistant_id, stream=True
        )
    )
    names = [e.event for e in events]
    assert names[0] == "thread.run.created" and names[-1] == "thread.run.completed"
    assert events[-1].data.status == "completed"  # type: ignore[union-attr]
    events2 = list(
        client.beta.threads.create_and_run(
            assistant_id=assistant_id,
            thread={"messages": [{"role": "user", "content": "hi"}]},
            stream=True,
        )
    )
    assert events2[0].event == "thread.created"
    assert events2[-1].event == "thread.run.completed"


def test_pagination_both_ways_across_hidden_messages(client: OpenAI, assistant_id: str) -> None:
    first = [{"role": "user", "content": f"m{i:03d}"} for i in range(59)]
    first.append({"role": "user", "content": "m059 call get_weather"})
    thread = client.beta.threads.create(messages=first)  # type: ignore[arg-type]
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant_id, poll_interval_ms=20
    )
    call = run.required_action.submit_tool_outputs.tool_calls[0]  # type: ignore[union-attr]
    client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id,
        thread_id=thread.id,
        tool_outputs=[{"tool_call_id": call.id, "output": "ok"}],
        poll_interval_ms=20,
    )
    for i in range(60, 105):
        client.beta.threads.messages.create(thread.id, role="user", content=f"m{i:03d}")
    asc = list(client.beta.threads.messages.list(thread.id, order="asc", limit=7))
    assert len(asc) == 106  # 105 user messages + the final answer; the 2 tool messages hidden
    assert len({m.id for m in asc}) == 106
    assert asc[60].role == "assistant"
    assert asc[60].content[0].text.value == "get_weather returned ok."  # type: ignore[union-attr]
    desc = list(client.beta.threads.messages.list(thread.id, limit=100))
    assert [m.id for m in desc] == [m.id for m in reversed(asc)]
    ids = [m.id for m in asc]
    # a page ending just before the answer skips the hidden tool messages
    page = client.beta.threads.messages.list(thread.id, order="asc", limit=3, before=ids[60])
    assert [m.id for m in page.data] == ids[57:60] and page.has_more
    page = client.beta.threads.messages.list(thread.id, order="desc", limit=3, before=ids[59])
    assert [m.id for m in page.data] == [ids[62], ids[61], ids[60]] and page.has_more
    page = client.beta.threads.messages.list(thread.id, order="asc", limit=5, after=ids[58])
    assert [m.id for m in page.data] == ids[59:64]
    page = client.beta.threads.messages.list(
        thread.id, order="asc", limit=100, after=ids[10], before=ids[14]
    )
    assert [m.id for m in page.data] == ids[11:14] and not page.has_more
    page = client.beta.threads.messages.list(thread.id, order="desc", limit=4, before=ids[2])
    assert [m.id for m in page.data] == [ids[6], ids[5], ids[4], ids[3]]
    page = client.beta.threads.messages.list(thread.id, order="asc", limit=5, before=ids[2])
    assert [m.id for m in page.data] == ids[0:2] and not page.has_more
    last = client.beta.threads.messages.list(thread.id, order="asc", limit=1, after=ids[-1])
    assert last.data == [] and not last.has_more
    by_run = client.beta.threads.messages.list(thread.id, run_id=run.id)
    assert [m.id for m in by_run.data] == [ids[60]]


def test_chat_completions(client: OpenAI) -> None:
    done = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "my color is teal"},
        ],
    )
    assert done.choices[0].message.content == "Noted: your color is teal."
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.total_tokens > 0
    called = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "get_weather for Lima"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    choice = called.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls and choice.message.tool_calls[0].function.name == "get_weather"
    tc = choice.message.tool_calls[0]
    answered = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "user", "content": "get_weather for Lima"},
            {"role": "assistant", "content": None, "tool_calls": [tc.model_dump()]},  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": tc.id, "content": "warm"},
        ],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    assert answered.choices[0].message.content == "get_weather returned warm."


def test_chat_completions_stream(client: OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hello there"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: hello there (I can see 1 messages.)"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    tools = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "get_weather please"}],
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
            stream=True,
        )
    )
    calls = [tc for c in tools if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert [tc.function.name for tc in calls] == ["get_weather"]  # type: ignore[union-attr]
    assert tools[-1].choices[0].finish_reason == "tool_calls"
