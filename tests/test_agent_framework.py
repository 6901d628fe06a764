"""agent-framework interop: a real ``Agent`` keeps its history in threadkit stores.

The agent's chat client is agent-framework's own ``OpenAIChatCompletionClient`` talking HTTP to
the scripted OpenAI-compatible server of ``tests/chat_server.py`` on 127.0.0.1, which records
every request: the tests assert on what the model was actually sent. History lives in the
SQLite store and the Redis store (127.0.0.1:6379, a unique key prefix per test; skipped with a
reason naming the server when Redis is absent).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, get_args

import msgspec
import pytest
import redis.asyncio as aioredis
from agent_framework import (
    Agent,
    AgentSession,
    Content,
    ContextProvider,
    InMemoryHistoryProvider,
    Message,
    SessionContext,
    tool,
)
from agent_framework._types import ContentType  # the Literal of every content type
from agent_framework.openai import OpenAIChatCompletionClient

import threadkit
from tests.chat_server import ChatServer, Reply, running_chat_server
from tests.servers import redis_url
from threadkit._ids import new_id
from threadkit.adapters.agent_framework import (
    SESSION_ID_KEY,
    ThreadkitHistoryProvider,
    export_session,
    import_session,
    session_thread_id,
    to_af_content,
    to_af_message,
    to_threadkit_message,
    to_threadkit_part,
)
from threadkit.errors import OrphanToolResultError, StoreError, ValidationError
from threadkit.registry import open_store
from threadkit.stores.base import MessageStore
from threadkit.types import (
    Attachment,
    ContentPart,
    FileContent,
    ImageFileContent,
    ImageUrlContent,
    ReasoningContent,
    TextContent,
    ToolCallContent,
    ToolResultContent,
)
from threadkit.types import Message as TkMessage

ROOT = Path(__file__).resolve().parent.parent
REDIS, REDIS_WHY = redis_url()
INSTRUCTIONS = "Be brief."
_MESSAGE = msgspec.json.Decoder(TkMessage)


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"sunny in {city}"


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def _running() -> Iterator[ChatServer]:
    with running_chat_server() as server:
        yield server


@pytest.fixture
def server(_running: ChatServer) -> ChatServer:
    _running.reset()
    return _running


async def _drop_redis_prefix(prefix: str) -> None:
    assert REDIS is not None
    client = aioredis.Redis.from_url(REDIS)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(params=["sqlite", "redis"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A store URL: a fresh SQLite file, or Redis under a unique prefix (deleted afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'af.db'}"
        return
    if REDIS is None:
        pytest.skip(REDIS_WHY)
    prefix = new_id("tkaf")
    yield f"{REDIS}?prefix={prefix}"
    await _drop_redis_prefix(prefix)


async def _open(url: str) -> MessageStore:
    store: MessageStore = open_store(url)
    await store.setup()
    return store


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[MessageStore]:
    s = await _open(store_url)
    yield s
    await s.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[MessageStore]:
    s = await _open(f"sqlite:///{tmp_path / 'flags.db'}")
    yield s
    await s.close()


_CLIENTS: list[OpenAIChatCompletionClient[Any]] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """Close the HTTP clients a test made, in its own event loop."""
    yield
    while _CLIENTS:
        await _CLIENTS.pop().client.close()


def chat_client(server: ChatServer) -> OpenAIChatCompletionClient[Any]:
    """agent-framework's own OpenAI chat-completions client, on the scripted server."""
    client = OpenAIChatCompletionClient(
        model="gpt-test", api_key="sk-test", base_url=server.base_url
    )
    _CLIENTS.append(client)
    return client


def make_agent(server: ChatServer, *providers: ContextProvider) -> Agent[Any]:
    """A real agent-framework Agent on its own OpenAI chat-completions client."""
    client = chat_client(server)
    return Agent(
        client=client,
        name="helper",
        instructions=INSTRUCTIONS,
        tools=[get_weather],
        context_providers=list(providers),
    )


def weather_call(call_id: str, city: str = "Oslo") -> Reply:
    return Reply(
        tool_calls=[{"id": call_id, "name": "get_weather", "arguments": json.dumps({"city": city})}]
    )


async def three_turns(server: ChatServer, agent: Agent[Any], session: AgentSession) -> None:
    """Turn 1 plain, turn 2 with a get_weather call (id call_oslo_1), turn 3 plain."""
    server.push(Reply(content="Nice to meet you, Ada."))
    await agent.run("My name is Ada.", session=session)
    server.push(weather_call("call_oslo_1"), Reply(content="It is sunny in Oslo."))
    await agent.run("What is the weather in Oslo?", session=session)
    server.push(Reply(content="You're welcome."))
    await agent.run("Thanks!", session=session)


def shape(messages: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """A wire message list reduced to (role, text, tool call ids or answered call id)."""
    out: list[tuple[Any, ...]] = []
    for m in messages:
        calls = tuple(c["id"] for c in m.get("tool_calls") or ())
        out.append((m["role"], m.get("content"), calls or m.get("tool_call_id")))
    return out


THREE_TURNS = [
    ("system", INSTRUCTIONS, None),
    ("user", "My name is Ada.", None),
    ("assistant", "Nice to meet you, Ada.", None),
    ("user", "What is the weather in Oslo?", None),
    ("assistant", None, ("call_oslo_1",)),
    ("tool", "sunny in Oslo", "call_oslo_1"),
    ("assistant", "It is sunny in Oslo.", None),
    ("user", "Thanks!", None),
]


async def stored(store: MessageStore, thread_id: str) -> list[TkMessage]:
    return (await store.list_messages(thread_id, limit=None)).data


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("THREADKIT_", "OPENAI_")) and k != "PYTHONPATH"
    }
    env["PYTHONPATH"] = str(ROOT)
    return env


RESUME = textwrap.dedent(
    """
    import asyncio, sys
    from agent_framework import Agent, AgentSession, tool
    from agent_framework.openai import OpenAIChatCompletionClient
    from threadkit.adapters.agent_framework import ThreadkitHistoryProvider

    @tool
    def get_weather(city: str) -> str:
        \"\"\"The current weather in a city.\"\"\"
        return f"sunny in {city}"

    async def main() -> None:
        store_url, base_url, session_id, text = sys.argv[1:5]
        provider = ThreadkitHistoryProvider(store_url)  # opened from its URL in this process
        client = OpenAIChatCompletionClient(model="gpt-test", api_key="sk-test", base_url=base_url)
        agent = Agent(client=client, name="helper", instructions="Be brief.",
                      tools=[get_weather], context_providers=[provider])
        try:
            response = await agent.run(text, session=AgentSession(session_id=session_id))
        finally:
            await provider.aclose()
        print(response.text)

    asyncio.run(main())
    """
)


# ------------------------------------------------------------------------------ a real agent


async def test_agent_history_lives_in_the_store_and_resumes_in_a_new_process(
    server: ChatServer, store: MessageStore, store_url: str
) -> None:
    provider = ThreadkitHistoryProvider(store)
    agent = make_agent(server, provider)
    session = AgentSession(session_id=f"sess-{new_id('t')}")
    await three_turns(server, agent, session)

    # each turn the model saw the whole history, from the store
    assert len(server.requests) == 4
    assert shape(server.requests[0]["messages"]) == THREE_TURNS[:2]
    assert shape(server.requests[1]["messages"]) == THREE_TURNS[:4]
    assert shape(server.requests[3]["messages"]) == THREE_TURNS

    tid = session_thread_id(session.session_id)
    assert provider.thread_id(session.session_id) == tid
    assert session.state["threadkit"]["thread_id"] == tid
    info = await store.get_thread(tid)
    assert info.metadata[SESSION_ID_KEY] == session.session_id
    messages = await stored(store, tid)
    assert [m.role for m in messages] == ["user", "assistant"] * 2 + ["tool", "assistant"] * 1 + [
        "user",
        "assistant",
    ]
    (call,) = messages[3].tool_calls
    (result,) = messages[4].tool_results
    assert (call.id, call.name, json.loads(call.arguments)) == (
        "call_oslo_1",
        "get_weather",
        {"city": "Oslo"},
    )
    assert (result.tool_call_id, result.output) == ("call_oslo_1", "sunny in Oslo")

    # a new process resumes the session from the store alone and the model sees everything
    server.push(Reply(content="Your name is Ada."))
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", RESUME, store_url, server.base_url, session.session_id, "Name?"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Your name is Ada."
    assert len(server.requests) == 5
    resumed = server.requests[4]["messages"]
    assert resumed == server.requests[3]["messages"] + [
        {"role": "assistant", "name": "helper", "content": "You're welcome."},
        {"role": "user", "content": "Name?"},
    ]
    assert shape(resumed)[4:6] == [
        ("assistant", None, ("call_oslo_1",)),
        ("tool", "sunny in Oslo", "call_oslo_1"),
    ]
    assert len(await stored(store, tid)) == 10


async def test_agent_on_threadkit_serve_recalls_history_in_a_new_process(
    store_url: str,
) -> None:
    """The endpoint is ``threadkit serve``'s /v1/chat/completions with the offline model, whose
    answer to "what is my name?" comes only from the context it was sent."""
    from threadkit.testing.server import running_server

    session_id = f"serve-{new_id('s')}"
    with running_server({"store": "memory://"}) as served:
        client = OpenAIChatCompletionClient(
            model="offline", api_key="sk-test", base_url=served.openai_base_url
        )
        _CLIENTS.append(client)
        provider = ThreadkitHistoryProvider(store_url)
        agent = Agent(client=client, instructions=INSTRUCTIONS, context_providers=[provider])
        try:
            first = await agent.run("My name is Ada.", session=AgentSession(session_id=session_id))
        finally:
            await provider.aclose()
        assert first.text == "Noted: your name is Ada."
        proc = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-c",
                RESUME,
                store_url,
                served.openai_base_url,
                session_id,
                "What is my name?",
            ],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=120,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Your name is Ada."


async def test_model_sees_the_same_context_as_with_agent_frameworks_own_history(
    server: ChatServer, sqlite_store: MessageStore
) -> None:
    baseline = make_agent(server, InMemoryHistoryProvider())
    await three_turns(server, baseline, AgentSession(session_id="same"))
    expected = [r["messages"] for r in server.requests]
    server.reset()
    ours = make_agent(server, ThreadkitHistoryProvider(sqlite_store))
    await three_turns(server, ours, AgentSession(session_id="same"))
    assert [r["messages"] for r in server.requests] == expected


async def test_function_call_ids_survive_a_save_load_round_trip(
    store: MessageStore, store_url: str
) -> None:
    """agent-framework #4672: a restored session must keep every call id and its pairing."""
    calls = Message(
        "assistant",
        [
            Content.from_text("Checking both."),
            Content.from_function_call(
                "call_a", "get_weather", arguments={"city": "Oslo"}, id="af-call-1"
            ),
            Content.from_function_call(
                "call_b", "get_weather", arguments='{"city": "Rome"}', id="af-call-2"
            ),
        ],
        author_name="helper",
        message_id="chatcmpl-1",
    )
    results = Message(
        "tool",
        [
            Content.from_function_result("call_a", result="sunny in Oslo", id="af-call-1"),
            Content.from_function_result(
                "call_b", result="no data", exception="boom", id="af-call-2"
            ),
        ],
    )
    history = [Message("user", ["Weather in Oslo and Rome?"]), calls, results]
    await ThreadkitHistoryProvider(store).save_messages("s-1", history)

    # another store object (as another process would open it) and another provider
    other = await _open(store.locator if store_url.startswith("sqlite") else store_url)
    try:
        loaded = await ThreadkitHistoryProvider(other).get_messages("s-1")
    finally:
        await other.close()
    assert [m.to_dict() for m in loaded] == [m.to_dict() for m in history]
    assert [(c.call_id, c.id) for c in loaded[1].contents[1:]] == [
        ("call_a", "af-call-1"),
        ("call_b", "af-call-2"),
    ]
    assert [(c.call_id, c.id, c.exception) for c in loaded[2].contents] == [
        ("call_a", "af-call-1", None),
        ("call_b", "af-call-2", "FunctionInvocationError"),
    ]
    tk = await stored(store, session_thread_id("s-1"))
    assert [c.id for c in tk[1].tool_calls] == ["call_a", "call_b"]
    assert [(r.tool_call_id, r.is_error) for r in tk[2].tool_results] == [
        ("call_a", False),
        ("call_b", True),
    ]


async def test_per_service_call_persistence_stores_each_call_once(
    server: ChatServer, sqlite_store: MessageStore
) -> None:
    """With require_per_service_call_history_persistence the provider saves after every model
    call, so the tool call is stored before its result exists; nothing is stored twice."""
    provider = ThreadkitHistoryProvider(sqlite_store)
    agent = Agent(
        client=chat_client(server),
        instructions=INSTRUCTIONS,
        tools=[get_weather],
        context_providers=[provider],
        require_per_service_call_history_persistence=True,
    )
    session = AgentSession(session_id="per-call")
    server.push(weather_call("call_pc_1", "Rome"), Reply(content="Sunny in Rome."))
    await agent.run("Weather in Rome?", session=session)
    server.push(Reply(content="Bye."))
    await agent.run("Thanks", session=session)
    got = [
        (m.role, m.text, [c.id for c in m.tool_calls], [r.tool_call_id for r in m.tool_results])
        for m in await stored(sqlite_store, provider.thread_id("per-call"))
    ]
    assert got == [
        ("user", "Weather in Rome?", [], []),
        ("assistant", "", ["call_pc_1"], []),
        ("tool", "", [], ["call_pc_1"]),
        ("assistant", "Sunny in Rome.", [], []),
        ("user", "Thanks", [], []),
        ("assistant", "Bye.", [], []),
    ]
    assert shape(server.requests[2]["messages"])[-3:] == [
        ("tool", "sunny in Rome", "call_pc_1"),
        ("assistant", "Sunny in Rome.", None),
        ("user", "Thanks", None),
    ]


# ------------------------------------------------------------------------------ flags


async def test_load_messages_false_stores_but_never_loads(
    server: ChatServer, sqlite_store: MessageStore
) -> None:
    provider = ThreadkitHistoryProvider(sqlite_store, load_messages=False)
    agent = make_agent(server, provider)
    server.push(Reply(content="one"), Reply(content="two"))
    # a fresh session object per run: agent-framework's auto-added in-memory history is empty
    await agent.run("first", session=AgentSession(session_id="s"))
    await agent.run("second", session=AgentSession(session_id="s"))
    assert shape(server.requests[1]["messages"]) == [
        ("system", INSTRUCTIONS, None),
        ("user", "second", None),
    ]
    assert [m.text for m in await stored(sqlite_store, provider.thread_id("s"))] == [
        "first",
        "one",
        "second",
        "two",
    ]
    loading = ThreadkitHistoryProvider(sqlite_store)
    assert [m.text for m in await loading.get_messages("s")] == ["first", "one", "second", "two"]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({}, [("user", "hi"), ("assistant", "hello")]),
        ({"store_inputs": False}, [("assistant", "hello")]),
        ({"store_outputs": False}, [("user", "hi")]),
        (
            {"store_context_messages": True},
            [("user", "Fact: sky"), ("user", "hi"), ("assistant", "hello")],
        ),
        (
            {"store_context_messages": True, "store_context_from": {"other"}},
            [("user", "hi"), ("assistant", "hello")],
        ),
    ],
)
async def test_store_flags_select_what_is_saved(
    server: ChatServer,
    sqlite_store: MessageStore,
    flags: dict[str, Any],
    expected: list[tuple[str, str]],
) -> None:
    class Facts(ContextProvider):
        def __init__(self) -> None:
            super().__init__("facts")

        async def before_run(
            self,
            *,
            agent: Any,
            session: AgentSession,
            context: SessionContext,
            state: dict[str, Any],
        ) -> None:
            context.extend_messages(self, [Message("user", ["Fact: sky"])])

    provider = ThreadkitHistoryProvider(sqlite_store, **flags)
    agent = make_agent(server, Facts(), provider)
    server.push(Reply(content="hello"))
    await agent.run("hi", session=AgentSession(session_id="flags"))
    got = [(m.role, m.text) for m in await stored(sqlite_store, provider.thread_id("flags"))]
    assert got == expected
    # the context message reached the model either way; it is stored only when asked
    assert ("user", "Fact: sky", None) in shape(server.requests[0]["messages"])


async def test_max_messages_loads_the_newest_window_without_splitting_tool_pairs(
    sqlite_store: MessageStore,
) -> None:
    history = [
        Message("user", ["Weather?"]),
        Message("assistant", [Content.from_function_call("c1", "get_weather", arguments="{}")]),
        Message("tool", [Content.from_function_result("c1", result="sunny")]),
        Message("assistant", ["Sunny."]),
        Message("user", ["And later?"]),
        Message(
            "assistant",
            ["Let me look.", Content.from_function_call("c2", "get_weather", arguments="{}")],
        ),
    ]
    await ThreadkitHistoryProvider(sqlite_store).save_messages("w", history)

    def texts(messages: list[Message]) -> list[tuple[str, list[str]]]:
        return [(m.role, [c.type for c in m.contents]) for m in messages]

    # newest 5: the call c1 and its result are both in; c2 has no result yet and is left out
    five = await ThreadkitHistoryProvider(sqlite_store, max_messages=5).get_messages("w")
    assert texts(five) == [
        ("assistant", ["function_call"]),
        ("tool", ["function_result"]),
        ("assistant", ["text"]),
        ("user", ["text"]),
        ("assistant", ["text"]),
    ]
    # newest 4: c1's call fell outside, so its result is dropped with it
    four = await ThreadkitHistoryProvider(sqlite_store, max_messages=4).get_messages("w")
    assert texts(four) == [("assistant", ["text"]), ("user", ["text"]), ("assistant", ["text"])]
    assert [m.text for m in four] == ["Sunny.", "And later?", "Let me look."]
    everything = await ThreadkitHistoryProvider(sqlite_store).get_messages("w")
    assert [m.to_dict() for m in everything] == [m.to_dict() for m in history]
    with pytest.raises(ValidationError):
        ThreadkitHistoryProvider(sqlite_store, max_messages=0)


# ------------------------------------------------------------------------------ idempotency


class FlakyStore:
    """A store whose first append commits and then reports a failure (a lost reply)."""

    def __init__(self, inner: MessageStore) -> None:
        self.inner = inner
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def append(self, thread_id: str, messages: Any, **kw: Any) -> list[TkMessage]:
        out = await self.inner.append(thread_id, messages, **kw)
        if not self.failed:
            self.failed = True
            raise StoreError("connection lost after the write")
        return out


async def test_a_retried_save_never_duplicates(store: MessageStore) -> None:
    flaky = FlakyStore(store)
    provider = ThreadkitHistoryProvider(flaky)
    turn = [Message("user", ["hi"]), Message("assistant", ["hello"])]
    with pytest.raises(StoreError):
        await provider.save_messages("r", turn)
    await provider.save_messages("r", turn)  # the retry: same messages
    await provider.save_messages("r", turn)  # and once more
    tid = provider.thread_id("r")
    assert [m.text for m in await stored(store, tid)] == ["hi", "hello"]
    # a new turn with equal content is a new turn, not a retry
    await provider.save_messages("r", [Message("user", ["hi"]), Message("assistant", ["hello"])])
    assert [m.text for m in await stored(store, tid)] == ["hi", "hello", "hi", "hello"]


async def test_session_id_is_required_and_missing_threads_load_empty(
    sqlite_store: MessageStore,
) -> None:
    provider = ThreadkitHistoryProvider(sqlite_store)
    assert await provider.get_messages("never-saved") == []
    with pytest.raises(ValidationError, match="session id"):
        await provider.get_messages(None)
    with pytest.raises(ValidationError, match="session id"):
        await provider.save_messages("", [Message("user", ["x"])])
    # an orphan function result is refused whole, as every threadkit append is
    with pytest.raises(OrphanToolResultError):
        await provider.save_messages("o", [Message("tool", [Content.from_function_result("zz")])])
    assert await provider.clear("o") is True  # the thread was created; it is empty
    assert await provider.clear("o") is False


async def test_namespaces_keep_providers_on_one_store_apart(sqlite_store: MessageStore) -> None:
    a = ThreadkitHistoryProvider(sqlite_store)
    b = ThreadkitHistoryProvider(sqlite_store, source_id="audit")
    assert a.thread_id("s") != b.thread_id("s") == session_thread_id("s", "audit")
    await a.save_messages("s", [Message("user", ["for a"])])
    assert await b.get_messages("s") == []
    assert session_thread_id("s").startswith("thread_") and len(session_thread_id("s")) == 39


# ------------------------------------------------------------------------------ conversion


_FC = Content.from_function_call("call_1", "get", arguments={"a": 1}, id="occ1")
_PNG = "data:image/png;base64,iVBORw0KGgo="


def _af_samples() -> list[Content]:
    """One agent-framework content of every type (and the mapped types in several shapes)."""
    c = Content
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # computer-use constructors are experimental
        computer = [
            c.from_computer_tool_call(id="cc1", call_id="cc", actions=[{"type": "click", "x": 1}]),
            c.from_computer_tool_result(call_id="cc", screenshot=c.from_uri(_PNG)),
        ]
    return [
        c.from_text("hi", annotations=[{"type": "citation", "title": "t", "url": "https://x"}]),
        c.from_text("plain"),
        c.from_text_reasoning(text="think", protected_data="enc", id="rs_1"),
        c.from_text_reasoning(protected_data="only-encrypted"),
        c.from_uri(_PNG, additional_properties={"openai": {"image_detail": "low"}}),
        c.from_uri("data:application/pdf;base64,JVBERi0=", name="a.pdf"),
        c.from_uri("https://example.com/a.png", media_type="image/png"),
        c.from_uri("https://example.com/a.pdf", media_type="application/pdf"),
        c.from_data(b"RIFF", "audio/wav"),
        c.from_error(message="bad", error_code="E1"),
        _FC,
        c.from_function_call("call_2", "get", arguments='{"b": 2}'),
        c.from_function_call("call_3", "get"),
        c.from_function_result("call_1", result="42", exception="boom", id="occ1"),
        c.from_function_result("call_2", result=[c.from_text("x"), c.from_uri(_PNG)]),
        c.from_usage({"input_token_count": 3, "output_token_count": 4}),
        c.from_hosted_file("file_1", name="x.txt"),
        c.from_hosted_file("file_2", media_type="image/jpeg"),
        c.from_hosted_vector_store("vs_1"),
        c.from_code_interpreter_tool_call(call_id="ci", inputs=[c.from_text("print(1)")]),
        c.from_code_interpreter_tool_result(call_id="ci", outputs=[c.from_text("1")]),
        c.from_image_generation_tool_call(image_id="img"),
        c.from_image_generation_tool_result(
            image_id="img", outputs=c.from_uri("https://example.com/b.png", media_type="image/png")
        ),
        c.from_mcp_server_tool_call("m1", "tool", server_name="srv", arguments={"q": 1}),
        c.from_mcp_server_tool_result("m1", output=[c.from_text("r")]),
        c.from_search_tool_call("s1", tool_name="web_search", arguments={"q": "x"}),
        c.from_search_tool_result("s1", tool_name="web_search", result={"hits": 1}),
        c.from_shell_tool_call(call_id="sh", commands=["ls"]),
        c.from_shell_tool_result(
            call_id="sh", outputs=[c.from_shell_command_output(stdout="a", exit_code=0)]
        ),
        c.from_shell_command_output(stdout="b", stderr="", exit_code=1, timed_out=False),
        *computer,
        c.from_function_approval_request("occ1", _FC),
        c.from_function_approval_response(True, "occ1", _FC),
        c.from_oauth_consent_request("https://login.example.com"),
    ]


AF_SAMPLES = _af_samples()
MAPPED = {
    "text",
    "text_reasoning",
    "data",
    "uri",
    "hosted_file",
    "function_call",
    "function_result",
}


def test_the_samples_cover_every_agent_framework_content_type() -> None:
    assert {c.type for c in AF_SAMPLES} == set(get_args(ContentType))


@pytest.mark.parametrize("content", AF_SAMPLES, ids=lambda c: c.type)
def test_every_agent_framework_content_round_trips_through_a_stored_message(
    content: Content,
) -> None:
    message = Message(
        "assistant", [Content.from_text("before"), content, Content.from_text("after")]
    )
    tk = to_threadkit_message(message, thread_id="thread_x")
    decoded = _MESSAGE.decode(msgspec.json.encode(tk))  # what a store writes and reads back
    assert to_af_message(decoded).to_dict() == message.to_dict()
    part = to_threadkit_part(content)
    if content.type in MAPPED:
        assert part is not None
        assert len(tk.content) == 3
    else:
        assert part is None  # no threadkit part: kept whole in provider_details
        assert [p.text for p in tk.content if isinstance(p, TextContent)] == ["before", "after"]
        assert tk.provider_details is not None
        (kept,) = [r for r in tk.provider_details["agent_framework"]["contents"] if r and "af" in r]
        assert kept["af"]["type"] == content.type


def test_a_message_of_every_content_type_round_trips_whole() -> None:
    message = Message(
        "assistant",
        AF_SAMPLES,
        author_name="bot",
        message_id="m-1",
        additional_properties={"k": 1, "nested": {"x": [1, 2]}},
    )
    tk = to_threadkit_message(message)
    assert to_af_message(_MESSAGE.decode(msgspec.json.encode(tk))).to_dict() == message.to_dict()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (Content.from_text("hi"), TextContent(text="hi")),
        (
            Content.from_text_reasoning(id="rs", text="sum", protected_data="enc"),
            ReasoningContent(id="rs", encrypted_content="enc", summary=["sum"]),
        ),
        (
            Content.from_uri(_PNG, additional_properties={"openai": {"image_detail": "high"}}),
            ImageUrlContent(url=_PNG, detail="high"),
        ),
        (
            Content.from_uri("https://x.test/a.png", media_type="image/png"),
            ImageUrlContent(url="https://x.test/a.png"),
        ),
        (
            Content.from_uri("https://x.test/a.pdf", media_type="application/pdf", name="a.pdf"),
            FileContent(url="https://x.test/a.pdf", filename="a.pdf"),
        ),
        (
            Content.from_hosted_file("file_9", media_type="image/png"),
            ImageFileContent(file_id="file_9"),
        ),
        (
            Content.from_hosted_file("file_8", name="r.csv"),
            FileContent(file_id="file_8", filename="r.csv"),
        ),
        (
            Content.from_function_call("call_7", "f", arguments={"x": 1}),
            ToolCallContent(id="call_7", name="f", arguments='{"x": 1}'),
        ),
        (
            Content.from_function_result("call_7", result="ok", exception="e"),
            ToolResultContent(tool_call_id="call_7", output="ok", is_error=True),
        ),
    ],
    ids=lambda x: getattr(x, "type", ""),
)
def test_agent_framework_contents_map_to_the_documented_threadkit_parts(
    content: Content, expected: ContentPart
) -> None:
    assert to_threadkit_part(content) == expected


TK_PARTS: list[ContentPart] = [
    TextContent(text="hi"),
    TextContent(text="cited", annotations=[{"type": "file_citation", "file_id": "f1"}]),
    ImageUrlContent(url=_PNG),
    ImageUrlContent(url="https://x.test/cat.jpg", detail="low"),
    ImageUrlContent(url="https://x.test/no-extension"),
    ImageFileContent(file_id="file_img"),
    ImageFileContent(file_id="file_img2", detail="high"),
    FileContent(file_id="file_doc", filename="doc.pdf"),
    FileContent(url="https://x.test/doc.pdf"),
    FileContent(url="data:application/pdf;base64,JVBERi0=", filename="d.pdf"),
    FileContent(url=_PNG),  # an image sent as a file stays a file
    FileContent(file_id="file_both", url="https://x.test/both.txt"),
    FileContent(),
    ToolCallContent(id="call_1", name="f", arguments='{"a": 1}'),
    ToolCallContent(id="call_2", name="g"),
    ToolResultContent(tool_call_id="call_1", output="42"),
    ToolResultContent(tool_call_id="call_2", output="bad", is_error=True),
    ReasoningContent(id="rs_1", encrypted_content="enc"),
    ReasoningContent(summary=["one"]),
    ReasoningContent(summary=["one", "two"]),
]


def test_the_threadkit_samples_cover_every_part_type() -> None:
    assert {type(p) for p in TK_PARTS} == set(get_args(ContentPart))


@pytest.mark.parametrize("part", TK_PARTS, ids=lambda p: type(p).__name__)
def test_every_threadkit_part_round_trips_through_agent_framework(part: ContentPart) -> None:
    content = to_af_content(part)
    assert to_threadkit_part(content) == part
    # and through agent-framework's own serialization, as a session would store it
    assert to_threadkit_part(Content.from_dict(content.to_dict())) == part


def test_threadkit_parts_become_contents_agent_framework_clients_understand() -> None:
    image = to_af_content(ImageUrlContent(url="https://x.test/cat.jpg", detail="low"))
    assert (image.type, image.media_type, image.uri) == (
        "uri",
        "image/jpeg",
        "https://x.test/cat.jpg",
    )
    assert image.additional_properties == {"openai": {"image_detail": "low"}}
    inline = to_af_content(ImageUrlContent(url=_PNG))
    assert (inline.type, inline.media_type) == ("data", "image/png")
    call = to_af_content(ToolCallContent(id="call_1", name="f", arguments='{"a": 1}'))
    assert (call.type, call.call_id, call.name, call.arguments) == (
        "function_call",
        "call_1",
        "f",
        '{"a": 1}',
    )
    result = to_af_content(ToolResultContent(tool_call_id="call_1", output="42"))
    assert (result.type, result.call_id, result.result, result.exception) == (
        "function_result",
        "call_1",
        "42",
        None,
    )
    assert to_af_content(TextContent(text="plain")).additional_properties == {}


@pytest.mark.parametrize("role", ["user", "assistant", "system", "tool"])
def test_roles_map_both_ways(role: str) -> None:
    contents = (
        [Content.from_function_result("c", result="r")]
        if role == "tool"
        else [Content.from_text("x")]
    )
    tk = to_threadkit_message(Message(role, contents))
    assert tk.role == role
    assert tk.provider_details is None  # nothing extra to keep
    assert to_af_message(tk).role == role


def test_a_custom_role_is_kept() -> None:
    message = Message("critic", ["Too long."])
    tk = to_threadkit_message(message)
    assert tk.role == "user"
    assert to_af_message(tk).to_dict() == message.to_dict()


def test_threadkit_message_fields_survive_a_trip_through_agent_framework() -> None:
    tk = TkMessage(
        id="msg_1",
        thread_id="thread_1",
        role="assistant",
        content=[TextContent(text="hello"), ToolCallContent(id="call_1", name="f")],
        run_id="run_1",
        agent_id="agent_1",
        metadata={"topic": "greeting"},
        attachments=[Attachment(file_id="file_1", tools=[{"type": "file_search"}])],
        provider_details={"foundry": {"raw": 1}},
    )
    af = to_af_message(tk)
    assert af.text == "hello"
    assert af.additional_properties["threadkit"]["run_id"] == "run_1"
    session = AgentSession(session_id="x")
    session.state["in_memory"] = {"messages": [af]}
    restored = AgentSession.from_dict(json.loads(json.dumps(session.to_dict())))
    back = to_threadkit_message(
        restored.state["in_memory"]["messages"][0], thread_id="thread_1", message_id="msg_1"
    )
    assert back == tk


# ------------------------------------------------------------------------------ sessions


async def _session_from_agent(server: ChatServer) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Three turns on agent-framework's own in-memory history; the session dict (JSON-decoded)
    and its messages' dicts."""
    session = AgentSession(session_id=f"af-{new_id('s')}")
    await three_turns(server, make_agent(server, InMemoryHistoryProvider()), session)
    data = json.loads(json.dumps(session.to_dict()))
    return data, [m.to_dict() for m in session.state["in_memory"]["messages"]]


@pytest.mark.parametrize("how", ["memory backend", "store backend", "bare store"])
async def test_import_then_export_gives_the_session_back_message_by_message(
    server: ChatServer, store_url: str, how: str
) -> None:
    data, originals = await _session_from_agent(server)
    assert len(originals) == 8
    owned: MessageStore | None = None
    config = {"store": f"memory://{new_id('m')}" if how == "memory backend" else store_url}
    if how != "bare store":
        thread = await import_session(data, backend=config)
    else:
        owned = await _open(store_url)
        thread = await import_session(data, store=owned)
    try:
        assert thread.id == session_thread_id(data["session_id"])
        assert [m.role async for m in thread.messages()] == [
            "user",
            "assistant",
            "user",
            "assistant",
            "tool",
            "assistant",
            "user",
            "assistant",
        ]
        exported = json.loads(json.dumps(await export_session(thread)))
        assert exported["session_id"] == data["session_id"]
        restored = AgentSession.from_dict(exported)
        assert [m.to_dict() for m in restored.state["in_memory"]["messages"]] == originals
        assert exported == data  # the whole session dict, not only its messages
        with pytest.raises(ValidationError):  # the session's thread exists already
            if owned is not None:
                await import_session(data, store=owned)
            else:
                await import_session(data, backend=config)
    finally:
        await thread.close()
        if owned is not None:
            await owned.close()


async def test_an_imported_session_continues_under_the_history_provider(
    server: ChatServer, store: MessageStore
) -> None:
    data, _ = await _session_from_agent(server)
    thread = await import_session(data, store=store)
    await thread.close()
    server.reset()
    agent = make_agent(server, ThreadkitHistoryProvider(store))
    server.push(Reply(content="Ada."))
    await agent.run("Name?", session=AgentSession(session_id=data["session_id"]))
    assert shape(server.requests[0]["messages"]) == [
        *THREE_TURNS,
        ("assistant", "You're welcome.", None),
        ("user", "Name?", None),
    ]


async def test_a_threadkit_thread_moves_to_an_agent_framework_agent(server: ChatServer) -> None:
    async with await threadkit.open_backend({"store": "memory://"}) as backend:
        thread = await backend.create_thread()
        await thread.add_message("user", "Weather in Oslo?")
        await thread.add_message(
            "assistant", [ToolCallContent(id="call_tk_1", name="get_weather", arguments="{}")]
        )
        await thread.add_message(
            "tool", [ToolResultContent(tool_call_id="call_tk_1", output="sunny")]
        )
        await thread.add_message("assistant", "Sunny in Oslo.")
        data = await export_session(thread, session_id="moved")
    session = AgentSession.from_dict(json.loads(json.dumps(data)))
    agent = make_agent(server)  # agent-framework's own in-memory history
    server.push(Reply(content="Yes."))
    await agent.run("Sure?", session=session)
    assert shape(server.requests[0]["messages"]) == [
        ("system", INSTRUCTIONS, None),
        ("user", "Weather in Oslo?", None),
        ("assistant", None, ("call_tk_1",)),
        ("tool", "sunny", "call_tk_1"),
        ("assistant", "Sunny in Oslo.", None),
        ("user", "Sure?", None),
    ]


class ApiOnlyBackend:
    """A backend reached only through the ThreadBackend API (as service backends are)."""

    kind = "api-only"

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    @property
    def settings(self) -> dict[str, Any]:
        return {"backend": self.kind}

    async def create_thread(self, *, metadata: Any = None) -> Any:
        return await self._inner.create_thread(metadata=metadata)

    async def get_thread(self, thread_id: str) -> Any:
        return await self._inner.get_thread(thread_id)

    def list_threads(self, *, limit: int | None = None, metadata: Any = None) -> Any:
        return self._inner.list_threads(limit=limit, metadata=metadata)

    async def resume_thread(self, snapshot: Any) -> Any:
        return await self._inner.resume_thread(snapshot)

    async def close(self) -> None:
        await self._inner.close()

    async def __aenter__(self) -> ApiOnlyBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def test_import_session_into_a_backend_without_a_store_uses_its_api(
    server: ChatServer,
) -> None:
    data, originals = await _session_from_agent(server)
    async with await threadkit.open_backend({"store": "memory://"}) as inner:
        backend = ApiOnlyBackend(inner)
        assert isinstance(backend, threadkit.ThreadBackend)
        thread = await import_session(data, backend=backend)
        assert thread.id != session_thread_id(data["session_id"])  # the service picks ids
        assert (await thread.info()).metadata[SESSION_ID_KEY] == data["session_id"]
        exported = await export_session(thread)
    restored = AgentSession.from_dict(exported).state["in_memory"]["messages"]
    assert exported["session_id"] == data["session_id"]
    # roles, texts and call ids come through; agent-framework-only details do not
    assert [(m.role, m.text) for m in restored] == [
        (o["role"], " ".join(c.get("text", "") for c in o["contents"] if c["type"] == "text"))
        for o in originals
    ]
    assert [c.call_id for m in restored for c in m.contents if c.call_id] == [
        "call_oslo_1",
        "call_oslo_1",
    ]
    with pytest.raises(ValidationError, match="thread_id"):
        await import_session(data, backend=ApiOnlyBackend(inner), thread_id="thread_x")


async def test_import_session_checks_its_arguments(sqlite_store: MessageStore) -> None:
    data = AgentSession(session_id="x").to_dict()
    with pytest.raises(ValidationError, match="exactly one"):
        await import_session(data)
    with pytest.raises(ValidationError, match="exactly one"):
        await import_session(data, store=sqlite_store, backend={"store": "memory://"})
    with pytest.raises(ValidationError, match="session"):
        await import_session({"state": {}}, store=sqlite_store)
    empty = await import_session(data, store=sqlite_store, thread_id="thread_custom")
    assert empty.id == "thread_custom"
    assert (await empty.info()).metadata == {SESSION_ID_KEY: "x"}
    assert (await export_session(empty))["state"] == {"in_memory": {"messages": []}}


# ------------------------------------------------------------------------------ the extra


def test_a_missing_agent_framework_names_the_extra_and_the_core_never_imports_it() -> None:
    script = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "agent_framework" or name.startswith("agent_framework."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, Block())
        import threadkit, threadkit.adapters, threadkit.cli, threadkit.registry
        assert "agent_framework" not in sys.modules
        try:
            import threadkit.adapters.agent_framework
        except threadkit.MissingExtraError as exc:
            assert isinstance(exc, ImportError)
            print(exc)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert 'pip install "threadkit[agent-framework]"' in proc.stdout
