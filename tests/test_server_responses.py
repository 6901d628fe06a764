"""The Responses surface of threadkit serve, and the engine's ``tool_call_mode="complete"``.

The HTTP tests drive the REAL ``openai`` SDK (``_strict_response_validation=True``) and
``azure-ai-projects`` 2.x over HTTP on 127.0.0.1 against
:func:`threadkit.testing.server.running_server`. The last section validates the live JSON of
every Responses and Conversations operation against ``openai-openapi.json``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from threadkit.engine import RunEngine
from threadkit.errors import ValidationError
from threadkit.models import ChatRequest
from threadkit.stores.memory import MemoryStore
from threadkit.testing import ScriptedModel, default_reply
from threadkit.types import (
    FunctionDefinition,
    FunctionTool,
    Message,
    RunStatus,
    TextContent,
    ToolCallContent,
    ToolCallsDetails,
    ToolResultContent,
)

pytest.importorskip("starlette")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from openai import BadRequestError, NotFoundError, OpenAI  # noqa: E402

from threadkit.testing.server import RunningServer, running_server  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

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


# --------------------------------------------------------------------------- HTTP fixtures

SLOW = 1.5  # seconds a "slowly" request keeps the model busy (to cancel it in flight)

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "strict": None,
}


async def _reply(request: ChatRequest) -> Any:
    last = request.messages[-1] if request.messages else None
    if last is not None and last.role == "user" and "slowly" in last.text:
        await asyncio.sleep(SLOW)
    return default_reply(request)


def strict_client(base_url: str, api_key: str = "x") -> OpenAI:
    return OpenAI(
        base_url=base_url, api_key=api_key, _strict_response_validation=True, max_retries=0
    )


@pytest.fixture(scope="module")
def model() -> ScriptedModel:
    return ScriptedModel(_reply)


@pytest.fixture(scope="module")
def server(model: ScriptedModel) -> Iterator[RunningServer]:
    with running_server({"store": "memory://"}, model=model) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[OpenAI]:
    c = strict_client(server.openai_base_url)
    yield c
    c.close()


def wait_for(client: OpenAI, response_id: str, statuses: set[str], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        r = client.responses.retrieve(response_id)
        if r.status in statuses or time.monotonic() > deadline:
            return r
        time.sleep(0.02)


# --------------------------------------------------------------------------- basics


def test_create_returns_a_complete_response(client: OpenAI) -> None:
    r = client.responses.create(
        model="gpt-4o-mini",
        input="hello there",
        instructions="Be brief.",
        metadata={"case": "basic"},
        temperature=0.5,
        max_output_tokens=500,
    )
    assert r.id.startswith("resp_") and r.object == "response" and r.status == "completed"
    assert r.model == "gpt-4o-mini" and r.instructions == "Be brief."
    assert r.output_text == "You said: hello there (I can see 1 messages.)"
    (item,) = r.output
    assert item.type == "message" and item.role == "assistant" and item.status == "completed"
    assert r.usage is not None and r.usage.total_tokens == (
        r.usage.input_tokens + r.usage.output_tokens
    )
    assert r.usage.input_tokens > 0 and r.usage.input_tokens_details.cached_tokens == 0
    assert r.metadata == {"case": "basic"} and r.temperature == 0.5
    assert r.max_output_tokens == 500 and r.completed_at is not None
    assert r.conversation is None and r.previous_response_id is None
    got = client.responses.retrieve(r.id)
    assert got.model_dump() == r.model_dump()


def test_instructions_and_settings_reach_the_model(client: OpenAI, model: ScriptedModel) -> None:
    first = client.responses.create(
        model="m", input="my city is Paris", instructions="Answer in French."
    )
    assert model.last_request.instructions == "Answer in French."
    client.responses.create(
        model="m",
        input="what is my city?",
        previous_response_id=first.id,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        text={"format": {"type": "json_object"}},
    )
    request = model.last_request
    assert request.instructions is None  # instructions are not carried over, as in the API
    assert [t.function.name for t in request.tools] == ["get_weather"]
    assert request.tool_choice == {"type": "function", "function": {"name": "get_weather"}}
    assert request.parallel_tool_calls is False
    assert request.response_format == {"type": "json_object"}
    assert [m.text for m in request.messages] == [
        "my city is Paris",
        "Noted: your city is Paris.",
        "what is my city?",
    ]


# --------------------------------------------------------------------------- chains and forks


def test_previous_response_chain_and_fork(client: OpenAI) -> None:
    r1 = client.responses.create(model="m", input="my name is Ada")
    r2 = client.responses.create(model="m", input="my name is Bob", previous_response_id=r1.id)
    assert r2.previous_response_id == r1.id
    # continuing the latest response carries the whole chain
    r3 = client.responses.create(model="m", input="what is my name?", previous_response_id=r2.id)
    assert r3.output_text == "Your name is Bob."
    # continuing an older one forks: r2 and r3 are not in its context
    fork = client.responses.create(model="m", input="what is my name?", previous_response_id=r1.id)
    assert fork.output_text == "Your name is Ada."
    # the original chain is untouched by the fork, and the fork is a chain of its own
    assert (
        client.responses.create(
            model="m", input="what is my name?", previous_response_id=r3.id
        ).output_text
        == "Your name is Bob."
    )
    fork2 = client.responses.create(model="m", input="my pet is Rex", previous_response_id=fork.id)
    assert (
        client.responses.create(
            model="m", input="what is my pet?", previous_response_id=fork2.id
        ).output_text
        == "Your pet is Rex."
    )
    assert (
        client.responses.create(
            model="m", input="what is my pet?", previous_response_id=r3.id
        ).output_text
        == "I don't know your pet yet."
    )


def test_continuing_a_conversation_response_forks_and_leaves_the_conversation(
    client: OpenAI,
) -> None:
    conv = client.conversations.create()
    first = client.responses.create(model="m", input="my name is Ada", conversation=conv.id)
    chained = client.responses.create(
        model="m", input="what is my name?", previous_response_id=first.id
    )
    assert chained.output_text == "Your name is Ada." and chained.conversation is None
    assert len(list(client.conversations.items.list(conv.id))) == 2


# --------------------------------------------------------------------------- function calls


def test_function_call_round(client: OpenAI) -> None:
    first = client.responses.create(
        model="m", input="What does get_weather say for Paris?", tools=[WEATHER_TOOL]
    )
    assert first.status == "completed"
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "What does get_weather say for Paris?"}
    assert call.id is not None and call.status == "completed"
    assert first.tools[0].type == "function" and first.tools[0].name == "get_weather"
    second = client.responses.create(
        model="m",
        previous_response_id=first.id,
        tools=[WEATHER_TOOL],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    assert second.output_text == "get_weather returned sunny."
    inputs = list(client.responses.input_items.list(second.id))
    assert [(i.type, getattr(i, "call_id", None)) for i in inputs] == [
        ("function_call_output", call.call_id)
    ]


def test_function_call_round_in_a_conversation(client: OpenAI) -> None:
    conv = client.conversations.create()
    first = client.responses.create(
        model="m", input="call get_weather please", tools=[WEATHER_TOOL], conversation=conv.id
    )
    (call,) = first.output
    assert call.type == "function_call"
    final = client.responses.create(
        model="m",
        conversation=conv.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "cloudy"}],
    )
    assert final.output_text == "get_weather returned cloudy."
    types = [i.type for i in client.conversations.items.list(conv.id, order="asc")]
    assert types == ["message", "function_call", "function_call_output", "message"]


def test_an_output_for_no_call_is_400(client: OpenAI) -> None:
    with pytest.raises(BadRequestError, match="call_nope"):
        client.responses.create(
            model="m",
            input=[{"type": "function_call_output", "call_id": "call_nope", "output": "x"}],
        )


def test_replayed_function_call_items_are_accepted(client: OpenAI) -> None:
    r = client.responses.create(
        model="m",
        tools=[WEATHER_TOOL],
        input=[
            {"role": "user", "content": "weather in Oslo?"},
            {"type": "function_call", "call_id": "c9", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c9", "output": "snow"},
        ],
    )
    assert r.output_text == "get_weather returned snow."


# --------------------------------------------------------------------------- store, background


def test_store_false_is_not_kept(client: OpenAI) -> None:
    r = client.responses.create(model="m", input="my name is Ada", store=False)
    assert r.status == "completed" and r.output_text == "Noted: your name is Ada."
    with pytest.raises(NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(NotFoundError):
        client.responses.create(model="m", input="what is my name?", previous_response_id=r.id)
    with pytest.raises(NotFoundError):
        client.responses.input_items.list(r.id)
    with pytest.raises(BadRequestError, match="store"):
        client.responses.create(model="m", input="x", store=False, background=True)


def test_store_false_continuation_leaves_the_chain_alone(client: OpenAI) -> None:
    r1 = client.responses.create(model="m", input="my name is Ada")
    client.responses.create(
        model="m", input="my name is Bob", previous_response_id=r1.id, store=False
    )
    assert (
        client.responses.create(
            model="m", input="what is my name?", previous_response_id=r1.id
        ).output_text
        == "Your name is Ada."
    )


def test_background_is_polled_to_completion(client: OpenAI) -> None:
    r = client.responses.create(model="m", input="hello in the background", background=True)
    assert r.status in ("queued", "in_progress") and r.background is True and r.output == []
    done = wait_for(client, r.id, {"completed"})
    assert done.status == "completed"
    assert done.output_text == "You said: hello in the background (I can see 1 messages.)"
    with pytest.raises(BadRequestError, match="completed"):
        client.responses.cancel(r.id)


def test_background_cancel(client: OpenAI) -> None:
    r = client.responses.create(model="m", input="answer slowly please", background=True)
    assert wait_for(client, r.id, {"in_progress"}).status == "in_progress"
    cancelled = client.responses.cancel(r.id)
    assert cancelled.status == "cancelled" and cancelled.output == []
    assert client.responses.cancel(r.id).status == "cancelled"  # idempotent
    time.sleep(SLOW + 0.3)  # the model call returns; its answer is dropped
    again = client.responses.retrieve(r.id)
    assert again.status == "cancelled" and again.output == []


def test_cancel_needs_a_background_response(client: OpenAI) -> None:
    r = client.responses.create(model="m", input="hi")
    with pytest.raises(BadRequestError, match="background"):
        client.responses.cancel(r.id)
    with pytest.raises(NotFoundError):
        client.responses.cancel("resp_nope")


# --------------------------------------------------------------------------- streaming


def test_stream_event_order_and_text(client: OpenAI) -> None:
    events = list(client.responses.create(model="m", input="stream this please", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2:4] == ["response.output_item.added", "response.content_part.added"]
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(d.delta for d in deltas)
    assert text == "You said: stream this please (I can see 1 messages.)"
    done = events[-1]
    assert done.type == "response.completed" and done.response.output_text == text
    assert done.response.usage is not None and done.response.usage.output_tokens > 0
    item_id = events[2].item.id  # type: ignore[union-attr]
    assert {d.item_id for d in deltas} == {item_id} == {done.response.output[0].id}
    assert client.responses.retrieve(done.response.id).output_text == text


def test_stream_helper_and_function_call_events(client: OpenAI) -> None:
    with client.responses.stream(
        model="m",
        input="get_weather for Lima",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    ) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    (call,) = final.output
    assert call.type == "function_call" and call.name == "get_weather"


def test_stream_in_a_conversation_with_background(client: OpenAI) -> None:
    conv = client.conversations.create(items=[{"role": "user", "content": "my name is Ada"}])
    events = list(
        client.responses.create(
            model="m",
            input="what is my name?",
            conversation=conv.id,
            stream=True,
            background=True,
        )
    )
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.queued", "response.in_progress"]
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "Your name is Ada."


# --------------------------------------------------------------------------- items, delete


def test_input_items_listing(client: OpenAI) -> None:
    r = client.responses.create(
        model="m",
        input=[
            {"role": "developer", "content": "be nice"},
            {"role": "user", "content": [{"type": "input_text", "text": "one"}]},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"},
        ],
    )

    def label(i: Any) -> str:
        return f"{i.role}:{i.content[0].text}"

    desc = [label(i) for i in client.responses.input_items.list(r.id)]
    assert desc == ["user:three", "assistant:two", "user:one", "developer:be nice"]
    asc = [label(i) for i in client.responses.input_items.list(r.id, order="asc")]
    assert asc == desc[::-1]
    page = client.responses.input_items.list(r.id, limit=3, order="asc")
    assert [label(i) for i in page.data] == asc[:3] and page.has_more is True
    rest = client.responses.input_items.list(r.id, limit=3, order="asc", after=page.data[-1].id)
    assert [label(i) for i in rest.data] == asc[3:] and rest.has_more is False
    assert [label(i) for i in client.responses.input_items.list(r.id, limit=1)] == desc


def test_delete_response(client: OpenAI) -> None:
    r = client.responses.create(model="m", input="bye")
    assert client.responses.delete(r.id) is None
    with pytest.raises(NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(NotFoundError):
        client.responses.delete(r.id)
    with pytest.raises(NotFoundError):
        client.responses.input_items.list(r.id)


# --------------------------------------------------------------------------- errors


def test_error_cases(server: RunningServer, client: OpenAI) -> None:
    conv = client.conversations.create()
    prev = client.responses.create(model="m", input="hi")
    with pytest.raises(BadRequestError) as exc:
        client.responses.create(
            model="m", input="x", conversation=conv.id, previous_response_id=prev.id
        )
    assert exc.value.body["param"] == "previous_response_id"  # type: ignore[index]
    with pytest.raises(NotFoundError):
        client.responses.retrieve("resp_nope")
    with pytest.raises(NotFoundError):
        client.responses.create(model="m", input="x", previous_response_id="resp_nope")
    with pytest.raises(NotFoundError):
        client.responses.create(model="m", input="x", conversation="conv_nope")
    with pytest.raises(BadRequestError, match="web_search"):
        client.responses.create(model="m", input="x", tools=[{"type": "web_search"}])
    with pytest.raises(BadRequestError, match="truncation"):
        client.responses.create(model="m", input="x", truncation="sometimes")  # type: ignore[arg-type]
    with httpx.Client(base_url=server.openai_base_url) as raw:
        r = raw.post("/responses", content=b"{bad", headers={"content-type": "application/json"})
        assert r.status_code == 400 and set(r.json()["error"]) == {
            "message",
            "type",
            "param",
            "code",
        }
        r = raw.post("/responses", json={"input": 5})
        assert r.status_code == 400 and r.json()["error"]["param"] == "input"
        r = raw.post(
            "/responses", json={"input": [{"role": "user", "content": [{"type": "bogus"}]}]}
        )
        assert r.status_code == 400 and "bogus" in r.json()["error"]["message"]
        r = raw.get(f"/responses/{prev.id}", params={"stream": "true"})
        assert r.status_code == 400


def test_a_busy_conversation_refuses_a_second_response(client: OpenAI) -> None:
    conv = client.conversations.create()
    slow = client.responses.create(
        model="m", input="think slowly", conversation=conv.id, background=True
    )
    with pytest.raises(BadRequestError):
        client.responses.create(model="m", input="me too", conversation=conv.id)
    with pytest.raises(BadRequestError):
        client.conversations.items.create(conv.id, items=[{"role": "user", "content": "x"}])
    assert wait_for(client, slow.id, {"completed"}).status == "completed"


# --------------------------------------------------------------------------- agents


def test_agent_reference_resolves_an_assistant_by_name(client: OpenAI) -> None:
    client.beta.assistants.create(model="gpt-4o", name="old-helper", instructions="v1")
    client.beta.assistants.create(
        model="gpt-4o-mini",
        name="old-helper",
        instructions="Be kind.",
        tools=[
            {"type": "function", "function": {k: v for k, v in WEATHER_TOOL.items() if k != "type"}}
        ],
    )
    r = client.responses.create(
        input="hello",
        extra_body={"agent_reference": {"type": "agent_reference", "name": "old-helper"}},
    )
    assert r.model == "gpt-4o-mini" and r.instructions == "Be kind."  # the newest one
    assert [t.name for t in r.tools if t.type == "function"] == ["get_weather"]
    old_key = client.responses.create(
        input="hello", extra_body={"agent": {"type": "agent_reference", "name": "old-helper"}}
    )
    assert old_key.instructions == "Be kind."
    with pytest.raises(NotFoundError, match="nobody"):
        client.responses.create(
            input="x", extra_body={"agent_reference": {"type": "agent_reference", "name": "nobody"}}
        )


# --------------------------------------------------------------------------- azure-ai-projects

KEY = "projects-test-key"


class StaticToken:
    """A TokenCredential stand-in: always the same token (the server's API key)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self.token, int(time.time()) + 3600)


def _loopback_policy() -> Any:
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class AllowLoopbackBearer(SansIOHTTPPolicy):  # type: ignore[type-arg]
        """Let the bearer policy send the token over http to 127.0.0.1, nowhere else."""

        def on_request(self, request: Any) -> None:
            if urlsplit(request.http_request.url).hostname == "127.0.0.1":
                request.context["enforce_https"] = False

    return AllowLoopbackBearer()


def test_azure_ai_projects_openai_client_with_agent_reference() -> None:
    projects = pytest.importorskip("azure.ai.projects")
    models = pytest.importorskip("azure.ai.projects.models")
    with running_server({"store": "memory://", "model": "offline"}, api_keys=[KEY]) as s:
        project = projects.AIProjectClient(
            endpoint=s.foundry_endpoint("proj"),
            credential=StaticToken(KEY),
            per_call_policies=[_loopback_policy()],
            retry_total=0,
        )
        agent = project.agents.create_version(
            agent_name="weather-agent",
            definition=models.PromptAgentDefinition(
                model="gpt-4o-mini",
                instructions="You report the weather.",
                tools=[
                    models.FunctionTool(
                        name="get_weather",
                        parameters=WEATHER_TOOL["parameters"],
                        strict=False,
                        description="Weather for a city",
                    )
                ],
            ),
            description="test agent",
        )
        assert agent.name == "weather-agent" and agent.version == "1"
        v2 = project.agents.create_version(
            agent_name="weather-agent",
            definition=models.PromptAgentDefinition(model="gpt-4o-mini", instructions="v2 rules"),
        )
        assert v2.version == "2"
        assert project.agents.get(agent_name="weather-agent").versions.latest.version == "2"
        oai = project.get_openai_client(_strict_response_validation=True, max_retries=0)
        assert str(oai.base_url).rstrip("/").endswith("/api/projects/proj/openai/v1")
        conv = oai.conversations.create(items=[{"role": "user", "content": "my name is Ada"}])
        ref = {"agent_reference": {"name": "weather-agent", "type": "agent_reference"}}
        first = oai.responses.create(conversation=conv.id, input="hi", extra_body=ref)
        assert first.instructions == "v2 rules" and first.model == "gpt-4o-mini"
        second = oai.responses.create(
            conversation=conv.id, input="what is my name?", extra_body=ref
        )
        assert second.output_text == "Your name is Ada."
        pinned = oai.responses.create(
            input="get_weather in Quito",
            extra_body={"agent_reference": {**ref["agent_reference"], "version": "1"}},
        )
        assert pinned.instructions == "You report the weather."
        assert pinned.output[0].type == "function_call"
        items = list(oai.conversations.items.list(conv.id, order="asc"))
        assert len(items) == 5
        with pytest.raises(NotFoundError):
            oai.responses.create(
                input="x",
                extra_body={"agent_reference": {"name": "weather-agent", "version": "9"}},
            )
        # the bearer token is checked: a wrong one is refused
        bad = projects.AIProjectClient(
            endpoint=s.foundry_endpoint("proj"), credential=StaticToken("wrong")
        ).get_openai_client(max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.conversations.create()
        project.agents.delete(agent_name="weather-agent")
        with pytest.raises(NotFoundError):
            oai.responses.create(input="x", extra_body=ref)
        oai.close()
        project.close()


# --------------------------------------------------------------------------- spec conformance

SPECS = Path(__file__).resolve().parents[1].parent / "shared" / "specs"
OPENAI_SPEC = SPECS / "openai-openapi.json"


def _with_nulls(schema: Any) -> Any:
    """Rewrite the spec's 3.0-style ``nullable: true`` into JSON-schema null unions."""
    if isinstance(schema, list):
        return [_with_nulls(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _with_nulls(v) for k, v in schema.items()}
    if out.pop("nullable", None) is True:
        if isinstance(out.get("type"), str) and "$ref" not in out:
            out["type"] = [out["type"], "null"]
            if isinstance(out.get("enum"), list) and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            return {"anyOf": [out, {"type": "null"}]}
    return out


class OpenAISpec:
    """``openai-openapi.json`` (nullables rewritten) and a validator per component schema."""

    URI = "urn:threadkit:openai-openapi"

    def __init__(self) -> None:
        jsonschema = pytest.importorskip("jsonschema")
        referencing = pytest.importorskip("referencing")
        from referencing.jsonschema import DRAFT202012

        self.doc = _with_nulls(json.loads(OPENAI_SPEC.read_text()))
        self.registry = referencing.Registry().with_resource(
            self.URI,
            referencing.Resource.from_contents(self.doc, default_specification=DRAFT202012),
        )
        self.cls = jsonschema.Draft202012Validator
        self.checked: set[str] = set()

    def check(self, instance: Any, schema_name: str, label: str) -> None:
        assert schema_name in self.doc["components"]["schemas"], schema_name
        validator = self.cls(
            {"$ref": f"{self.URI}#/components/schemas/{schema_name}"}, registry=self.registry
        )
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        assert not errors, f"{label} ({schema_name}): " + "; ".join(
            f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors[:5]
        )
        self.checked.add(label)


def _sse_data(body: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


@pytest.mark.skipif(not OPENAI_SPEC.is_file(), reason=f"the wire specs are not at {SPECS}")
def test_live_json_conforms_to_the_openai_spec(server: RunningServer) -> None:
    spec = OpenAISpec()
    for base in (server.openai_base_url, server.foundry_endpoint("proj-c") + "/openai/v1"):
        with httpx.Client(base_url=base, timeout=30) as h:

            def ok(r: Any) -> Any:
                assert r.status_code == 200, r.text
                return r.json()

            conv = ok(
                h.post(
                    "/conversations",
                    json={
                        "metadata": {"a": "b"},
                        "items": [
                            {"role": "developer", "content": "be brief"},
                            {
                                "role": "user",
                                "content": [
                                    {"type": "input_text", "text": "my name is Ada"},
                                    {
                                        "type": "input_image",
                                        "image_url": "https://example.com/a.png",
                                    },
                                    {
                                        "type": "input_file",
                                        "file_id": "file_1",
                                        "filename": "a.pdf",
                                    },
                                ],
                            },
                        ],
                    },
                )
            )
            spec.check(conv, "ConversationResource", "createConversation")
            cid = conv["id"]
            spec.check(
                ok(h.get(f"/conversations/{cid}")), "ConversationResource", "getConversation"
            )
            spec.check(
                ok(h.post(f"/conversations/{cid}", json={"metadata": {"x": "y"}})),
                "ConversationResource",
                "updateConversation",
            )
            added = ok(
                h.post(
                    f"/conversations/{cid}/items",
                    json={
                        "items": [
                            {"role": "assistant", "content": "noted"},
                            {
                                "type": "function_call",
                                "call_id": "c1",
                                "name": "get_weather",
                                "arguments": "{}",
                            },
                            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                            {
                                "type": "reasoning",
                                "summary": [{"type": "summary_text", "text": "hm"}],
                                "encrypted_content": "opaque",
                            },
                        ]
                    },
                )
            )
            spec.check(added, "ConversationItemList", "createConversationItems")
            listed = ok(h.get(f"/conversations/{cid}/items", params={"limit": 3}))
            spec.check(listed, "ConversationItemList", "listConversationItems")
            for item in ok(h.get(f"/conversations/{cid}/items", params={"limit": 100}))["data"]:
                got = ok(h.get(f"/conversations/{cid}/items/{item['id']}"))
                spec.check(got, "ConversationItem", f"getConversationItem {item['type']}")
            first = listed["data"][-1]["id"]
            spec.check(
                ok(h.delete(f"/conversations/{cid}/items/{listed['data'][0]['id']}")),
                "ConversationResource",
                "deleteConversationItem",
            )
            assert first

            resp = ok(
                h.post(
                    "/responses",
                    json={
                        "model": "m",
                        "input": "what is my name?",
                        "conversation": cid,
                        "metadata": {"k": "v"},
                        "tools": [WEATHER_TOOL],
                    },
                )
            )
            spec.check(resp, "Response", "createResponse")
            assert resp["output"][0]["content"][0]["text"] == "Your name is Ada."
            call = ok(
                h.post(
                    "/responses",
                    json={
                        "model": "m",
                        "input": "get_weather for Lima",
                        "tools": [WEATHER_TOOL],
                    },
                )
            )
            spec.check(call, "Response", "createResponse function_call")
            assert call["output"][0]["type"] == "function_call"
            answered = ok(
                h.post(
                    "/responses",
                    json={
                        "model": "m",
                        "previous_response_id": call["id"],
                        "input": [
                            {
                                "type": "function_call_output",
                                "call_id": call["output"][0]["call_id"],
                                "output": "sunny",
                            }
                        ],
                    },
                )
            )
            spec.check(answered, "Response", "createResponse previous_response_id")
            spec.check(ok(h.get(f"/responses/{resp['id']}")), "Response", "getResponse")
            items = ok(h.get(f"/responses/{answered['id']}/input_items"))
            spec.check(items, "ResponseItemList", "listInputItems function_call_output")
            items = ok(h.get(f"/responses/{resp['id']}/input_items"))
            spec.check(items, "ResponseItemList", "listInputItems message")

            bg = ok(
                h.post(
                    "/responses",
                    json={
                        "model": "m",
                        "input": "go slowly",
                        "background": True,
                    },
                )
            )
            spec.check(bg, "Response", "createResponse background")
            cancelled = ok(h.post(f"/responses/{bg['id']}/cancel"))
            spec.check(cancelled, "Response", "cancelResponse")
            assert cancelled["status"] == "cancelled"

            for body in (
                {"model": "m", "input": "stream me", "stream": True},
                {
                    "model": "m",
                    "input": "get_weather in Rome",
                    "stream": True,
                    "tools": [WEATHER_TOOL],
                },
            ):
                r = h.post("/responses", json=body)
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                for event in _sse_data(r.text):
                    spec.check(event, "ResponseStreamEvent", f"stream {event['type']}")

            assert h.delete(f"/responses/{resp['id']}").status_code == 200
            spec.check(
                ok(h.delete(f"/conversations/{cid}")),
                "DeletedConversationResource",
                "deleteConversation",
            )
            missing = h.get(f"/responses/{resp['id']}")
            assert missing.status_code == 404
            spec.check(missing.json(), "ErrorResponse", "error 404")
            bad = h.post("/responses", json={"conversation": cid, "previous_response_id": "r"})
            assert bad.status_code == 400
            spec.check(bad.json(), "ErrorResponse", "error 400")
    assert {
        "createConversation",
        "getConversation",
        "updateConversation",
        "deleteConversation",
        "createConversationItems",
        "listConversationItems",
        "deleteConversationItem",
        "createResponse",
        "getResponse",
        "cancelResponse",
        "listInputItems message",
        "stream response.completed",
        "stream response.output_text.delta",
        "stream response.function_call_arguments.done",
    } <= spec.checked
