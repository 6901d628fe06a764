"""OpenAIChatModel over real HTTP: the official openai SDK against tests/chat_server.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator

import openai
import pytest

from tests.chat_server import ChatServer, Reply, running_chat_server
from threadkit.adapters.chat_completions import OpenAIChatModel
from threadkit.errors import (
    ConfigError,
    MissingExtraError,
    ModelError,
    ModelRateLimitError,
    UnsupportedOperation,
    ValidationError,
)
from threadkit.models import ChatDelta, ChatRequest, StreamingChatModel, supports_streaming
from threadkit.types import (
    ContentPart,
    FileContent,
    FunctionDefinition,
    FunctionTool,
    ImageFileContent,
    ImageUrlContent,
    Message,
    ReasoningContent,
    Role,
    TextContent,
    ToolCallContent,
    ToolResultContent,
    Usage,
)

KEY = "sk-test-do-not-leak-7f3a"

WEATHER = FunctionTool(
    function=FunctionDefinition(
        name="get_weather",
        description="Current weather for a city.",
        parameters={
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    )
)


def msg(role: Role, *parts: ContentPart | str) -> Message:
    content = [TextContent(text=p) if isinstance(p, str) else p for p in parts]
    return Message(id=f"msg_{role}", thread_id="thread_test", role=role, content=content)


@pytest.fixture(scope="module")
def _running() -> Iterator[ChatServer]:
    with running_chat_server() as server:
        yield server


@pytest.fixture
def server(_running: ChatServer) -> ChatServer:
    _running.reset()
    return _running


@pytest.fixture
async def model(server: ChatServer) -> AsyncIterator[OpenAIChatModel]:
    m = OpenAIChatModel("gpt-4o-mini", base_url=server.base_url, api_key=KEY, max_retries=2)
    yield m
    await m.aclose()


async def collect(model: OpenAIChatModel, request: ChatRequest) -> list[ChatDelta]:
    return [d async for d in model.stream(request)]


# --------------------------------------------------------------------------- plain answers


async def test_text_answer_with_usage(model: OpenAIChatModel, server: ChatServer) -> None:
    server.push(
        Reply(
            content="Hello there",
            model="gpt-4o-mini-2024-07-18",
            usage={"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
        )
    )
    response = await model.complete(ChatRequest(messages=[msg("user", "hi")]))

    assert response.content == [TextContent(text="Hello there")]
    assert response.usage == Usage(prompt_tokens=12, completion_tokens=3, total_tokens=15)
    assert response.finish_reason == "stop"
    assert response.model == "gpt-4o-mini-2024-07-18"
    [sent] = server.requests
    assert sent == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"


async def test_missing_usage_gives_zeros(model: OpenAIChatModel, server: ChatServer) -> None:
    server.push(Reply(content="ok", usage=None))
    response = await model.complete(ChatRequest(messages=[msg("user", "hi")]))
    assert response.usage == Usage()
    assert response.text == "ok"


async def test_settings_are_sent_only_when_set(model: OpenAIChatModel, server: ChatServer) -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    server.push(Reply(content="{}"), Reply(content="{}"), Reply(content="{}"))
    await model.complete(
        ChatRequest(
            messages=[msg("user", "hi")],
            model="gpt-4.1",
            temperature=0.2,
            top_p=0.9,
            max_completion_tokens=50,
            response_format=schema,
            tool_choice="none",  # no tools: must not be sent (the API rejects it)
            parallel_tool_calls=False,
        )
    )
    await model.complete(ChatRequest(messages=[msg("user", "hi")], response_format="json_object"))
    await model.complete(ChatRequest(messages=[msg("user", "hi")], response_format="auto"))

    first, second, third = server.requests
    assert first["model"] == "gpt-4.1"
    assert first["temperature"] == 0.2
    assert first["top_p"] == 0.9
    assert first["max_completion_tokens"] == 50
    assert first["response_format"] == schema
    for key in ("tools", "tool_choice", "parallel_tool_calls"):
        assert key not in first
    assert second["response_format"] == {"type": "json_object"}
    assert "response_format" not in third
    assert "temperature" not in third


async def test_instructions_come_first_as_system(
    model: OpenAIChatModel, server: ChatServer
) -> None:
    server.push(Reply(content="ok"))
    await model.complete(
        ChatRequest(
            instructions="You are terse.",
            messages=[msg("system", "Policy A.", "Policy B."), msg("user", "hi")],
        )
    )
    assert server.requests[0]["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "system", "content": "Policy A.\nPolicy B."},
        {"role": "user", "content": "hi"},
    ]


async def test_finish_reasons_are_mapped(model: OpenAIChatModel, server: ChatServer) -> None:
    call = {"id": "call_1", "name": "get_weather", "arguments": "{}"}
    server.push(
        Reply(tool_calls=[call], finish_reason="function_call"),
        Reply(content="cut", finish_reason="length"),
        Reply(tool_calls=[call], finish_reason="stop"),
    )
    request = ChatRequest(messages=[msg("user", "hi")], tools=[WEATHER])
    assert (await model.complete(request)).finish_reason == "tool_calls"
    assert (await model.complete(request)).finish_reason == "length"
    assert (await model.complete(request)).finish_reason == "tool_calls"


# --------------------------------------------------------------------------- tool calls


async def test_tool_call_round(model: OpenAIChatModel, server: ChatServer) -> None:
    server.push(
        Reply(
            content="Let me check.",
            tool_calls=[
                {"id": "call_a", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
                {"id": "call_b", "name": "get_weather", "arguments": '{"city": "Bergen"}'},
            ],
        ),
        Reply(content="Oslo 3°C, Bergen 7°C."),
    )
    user = msg("user", "Weather in Oslo and Bergen?")
    first = await model.complete(ChatRequest(messages=[user], tools=[WEATHER], tool_choice="auto"))

    assert first.finish_reason == "tool_calls"
    assert first.content == [
        TextContent(text="Let me check."),
        ToolCallContent(id="call_a", name="get_weather", arguments='{"city": "Oslo"}'),
        ToolCallContent(id="call_b", name="get_weather", arguments='{"city": "Bergen"}'),
    ]
    sent = server.requests[0]
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": WEATHER.function.parameters,
            },
        }
    ]
    assert sent["tool_choice"] == "auto"
    assert sent["parallel_tool_calls"] is True

    assistant = Message(
        id="msg_a", thread_id="thread_test", role="assistant", content=first.content
    )
    results = Message(
        id="msg_t",
        thread_id="thread_test",
        role="tool",
        content=[
            ToolResultContent(tool_call_id="call_a", output="3°C"),
            ToolResultContent(tool_call_id="call_b", output="7°C"),
        ],
    )
    second = await model.complete(ChatRequest(messages=[user, assistant, results], tools=[WEATHER]))

    assert second.text == "Oslo 3°C, Bergen 7°C."
    assert server.requests[1]["messages"] == [
        {"role": "user", "content": "Weather in Oslo and Bergen?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Bergen"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "3°C"},
        {"role": "tool", "tool_call_id": "call_b", "content": "7°C"},
    ]


async def test_tool_choice_object_and_no_parallel_calls(
    model: OpenAIChatModel, server: ChatServer
) -> None:
    server.push(Reply(content="ok"))
    choice = {"type": "function", "function": {"name": "get_weather"}}
    await model.complete(
        ChatRequest(
            messages=[msg("user", "hi")],
            tools=[WEATHER],
            tool_choice=choice,
            parallel_tool_calls=False,
        )
    )
    assert server.requests[0]["tool_choice"] == choice
    assert server.requests[0]["parallel_tool_calls"] is False


# --------------------------------------------------------------------------- content parts


async def test_every_content_part_conversion(model: OpenAIChatModel, server: ChatServer) -> None:
    server.push(Reply(content="seen"))
    user = msg(
        "user",
        "Compare these.",
        ImageUrlContent(url="https://example.test/a.png", detail="low"),
        ImageUrlContent(url="data:image/png;base64,iVBORw0KGgo="),
        FileContent(file_id="file-123", filename="report.pdf"),
        FileContent(url="data:application/pdf;base64,JVBERi0=", filename="inline.pdf"),
    )
    assistant = msg(
        "assistant",
        ReasoningContent(id="rs_1", encrypted_content="opaque", summary=["thought"]),
        "Earlier answer.",
    )
    reasoning_only = msg("assistant", ReasoningContent(id="rs_2"))
    await model.complete(ChatRequest(messages=[user, assistant, reasoning_only]))

    assert server.requests[0]["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare these."},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.test/a.png", "detail": "low"},
                },
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "file", "file": {"file_id": "file-123", "filename": "report.pdf"}},
                {
                    "type": "file",
                    "file": {
                        "file_data": "data:application/pdf;base64,JVBERi0=",
                        "filename": "inline.pdf",
                    },
                },
            ],
        },
        {"role": "assistant", "content": "Earlier answer."},
    ]


@pytest.mark.parametrize(
    ("message", "error", "words"),
    [
        (msg("user", ImageFileContent(file_id="file-img")), UnsupportedOperation, "image_file"),
        (
            msg("user", FileContent(url="https://example.test/a.pdf")),
            UnsupportedOperation,
            "file content by URL",
        ),
        (
            msg("assistant", ImageUrlContent(url="https://example.test/a.png")),
            UnsupportedOperation,
            "assistant message",
        ),
        (
            msg("system", FileContent(file_id="file-1")),
            UnsupportedOperation,
            "system message",
        ),
        (msg("user", FileContent()), ValidationError, "file_id or a url"),
        (msg("user", ToolCallContent(id="c", name="f")), ValidationError, "tool calls"),
        (msg("tool", "loose text"), ValidationError, "tool message"),
    ],
)
async def test_unsendable_content_is_refused_before_any_request(
    model: OpenAIChatModel,
    server: ChatServer,
    message: Message,
    error: type[Exception],
    words: str,
) -> None:
    with pytest.raises(error, match=words):
        await model.complete(ChatRequest(messages=[msg("user", "hi"), message]))
    with pytest.raises(error, match=words):
        await collect(model, ChatRequest(messages=[message]))
    assert server.requests == []


async def test_image_file_error_names_the_backend_and_operation(model: OpenAIChatModel) -> None:
    with pytest.raises(UnsupportedOperation) as info:
        await model.complete(
            ChatRequest(messages=[msg("user", ImageFileContent(file_id="file-img"))])
        )
    assert info.value.backend == "chat"
    assert info.value.operation == "image_file content"
    assert "file-img" in str(info.value)


# --------------------------------------------------------------------------- streaming


async def test_stream_text(model: OpenAIChatModel, server: ChatServer) -> None:
    server.push(
        Reply(
            content="Hello, world!",
            text_fragments=["Hel", "lo, ", "world!"],
            usage={"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
        )
    )
    deltas = await collect(model, ChatRequest(messages=[msg("user", "hi")]))

    assert [d.text for d in deltas[:-1]] == ["Hel", "lo, ", "world!"]
    final = deltas[-1].response
    assert final is not None
    assert final.content == [TextContent(text="Hello, world!")]
    assert final.usage == Usage(prompt_tokens=5, completion_tokens=4, total_tokens=9)
    assert final.finish_reason == "stop"
    assert final.model == "gpt-4o-mini"
    sent = server.requests[0]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


async def test_stream_assembles_tool_call_fragments(
    model: OpenAIChatModel, server: ChatServer
) -> None:
    args_a = '{"city": "Oslo", "unit": "celsius"}'
    args_b = '{"city": "Bergen"}'
    server.push(
        Reply(
            content="Checking.",
            tool_calls=[
                {"id": "call_a", "name": "get_weather", "arguments": args_a},
                {"id": "call_b", "name": "get_weather", "arguments": args_b},
            ],
            argument_fragments=4,
        )
    )
    deltas = await collect(model, ChatRequest(messages=[msg("user", "hi")], tools=[WEATHER]))

    calls = [d.tool_call for d in deltas if d.tool_call is not None]
    assert calls == [
        ToolCallContent(id="call_a", name="get_weather", arguments=args_a),
        ToolCallContent(id="call_b", name="get_weather", arguments=args_b),
    ]
    kinds = ["text" if d.text else "call" if d.tool_call else "response" for d in deltas]
    assert kinds == ["text", "text", "text", "call", "call", "response"]
    final = deltas[-1].response
    assert final is not None
    assert final.finish_reason == "tool_calls"
    assert final.content == [TextContent(text="Checking."), *calls]
    assert final.usage.total_tokens == 18


async def test_stream_closed_early_releases_the_connection(server: ChatServer) -> None:
    model = OpenAIChatModel("gpt-4o", base_url=server.base_url, api_key=KEY, max_retries=0)
    server.push(Reply(content="a long answer", text_fragments=["a ", "long ", "answer"]))
    server.push(Reply(content="next"))
    stream = model.stream(ChatRequest(messages=[msg("user", "hi")]))
    first = await anext(aiter(stream))
    assert first.text == "a "
    await stream.aclose()  # type: ignore[attr-defined]
    assert (await model.complete(ChatRequest(messages=[msg("user", "hi")]))).text == "next"
    await model.aclose()


async def test_stream_rate_limit_is_translated(server: ChatServer) -> None:
    model = OpenAIChatModel("gpt-4o", base_url=server.base_url, api_key=KEY, max_retries=1)
    server.push(*[Reply.failure(429, retry_after_ms="1") for _ in range(2)])
    with pytest.raises(ModelRateLimitError) as info:
        await collect(model, ChatRequest(messages=[msg("user", "hi")]))
    assert isinstance(info.value.__cause__, openai.RateLimitError)
    assert len(server.requests) == 2
    await model.aclose()


# --------------------------------------------------------------------------- errors


async def test_429_then_success_retries_once(model: OpenAIChatModel, server: ChatServer) -> None:
    server.push(Reply.failure(429, retry_after="0.01"), Reply(content="after the wait"))
    response = await model.complete(ChatRequest(messages=[msg("user", "hi")]))
    assert response.text == "after the wait"
    assert len(server.requests) == 2
    assert server.requests[0] == server.requests[1]


async def test_persistent_429_raises_rate_limit_error(
    model: OpenAIChatModel, server: ChatServer
) -> None:
    server.push(*[Reply.failure(429, "slow down", retry_after_ms="1") for _ in range(3)])
    with pytest.raises(ModelRateLimitError) as info:
        await model.complete(ChatRequest(messages=[msg("user", "hi")]))

    assert isinstance(info.value.__cause__, openai.RateLimitError)
    assert len(server.requests) == 3  # the first try and max_retries=2 retries
    text = str(info.value)
    assert "429" in text
    assert server.base_url in text
    assert KEY not in text


async def test_500_raises_model_error(server: ChatServer) -> None:
    model = OpenAIChatModel("gpt-4o", base_url=server.base_url, api_key=KEY, max_retries=1)
    server.push(*[Reply.failure(500, "boom", retry_after_ms="1") for _ in range(2)])
    with pytest.raises(ModelError) as info:
        await model.complete(ChatRequest(messages=[msg("user", "hi")]))
    await model.aclose()

    assert not isinstance(info.value, ModelRateLimitError)
    assert isinstance(info.value.__cause__, openai.InternalServerError)
    assert len(server.requests) == 2
    assert "HTTP 500" in str(info.value)
    assert server.base_url in str(info.value)


async def test_401_is_not_retried_and_never_shows_the_key(
    model: OpenAIChatModel, server: ChatServer
) -> None:
    server.push(Reply.failure(401, "Incorrect API key provided"))
    with pytest.raises(ModelError) as info:
        await model.complete(ChatRequest(messages=[msg("user", "hi")]))

    assert isinstance(info.value.__cause__, openai.AuthenticationError)
    assert len(server.requests) == 1
    assert "HTTP 401" in str(info.value)
    assert KEY not in str(info.value)
    assert KEY not in repr(info.value)


async def test_connection_refused_raises_model_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = OpenAIChatModel(
        "gpt-4o", base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0
    )
    with pytest.raises(ModelError) as info:
        await model.complete(ChatRequest(messages=[msg("user", "hi")]))
    await model.aclose()
    assert isinstance(info.value.__cause__, openai.APIConnectionError)
    assert f"127.0.0.1:{port}" in str(info.value)


async def test_timeout_raises_model_error(server: ChatServer) -> None:
    model = OpenAIChatModel(
        "gpt-4o", base_url=server.base_url, api_key=KEY, max_retries=0, timeout=0.2
    )
    server.push(Reply(content="too late", delay=1.0))
    with pytest.raises(ModelError) as info:
        await model.complete(ChatRequest(messages=[msg("user", "hi")]))
    await model.aclose()
    assert isinstance(info.value.__cause__, openai.APITimeoutError)
    assert "timed out" in str(info.value)


# --------------------------------------------------------------------------- configuration


def test_missing_key_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("MY_LLM_KEY", raising=False)
    with pytest.raises(ConfigError) as info:
        OpenAIChatModel("gpt-4o")
    assert info.value.key == "api_key_env"
    assert "OPENAI_API_KEY" in str(info.value)

    with pytest.raises(ConfigError, match="MY_LLM_KEY"):
        OpenAIChatModel("gpt-4o", api_key_env="MY_LLM_KEY")
    monkeypatch.setenv("MY_LLM_KEY", "")
    with pytest.raises(ConfigError, match="MY_LLM_KEY"):
        OpenAIChatModel("gpt-4o", api_key_env="MY_LLM_KEY")


async def test_key_from_named_env_var_and_base_url_from_env(
    server: ChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_LLM_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    model = OpenAIChatModel("local-model", api_key_env="MY_LLM_KEY")
    server.push(Reply(content="ok"))
    assert (await model.complete(ChatRequest(messages=[msg("user", "hi")]))).text == "ok"
    await model.aclose()
    assert server.headers[0]["authorization"] == "Bearer sk-from-env"
    assert model.base_url == server.base_url + "/"


async def test_a_passed_in_client_is_used_and_left_open(server: ChatServer) -> None:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-client", max_retries=0)
    model = OpenAIChatModel("gpt-4o", client=client)
    server.push(Reply(content="one"), Reply(content="two"))
    assert (await model.complete(ChatRequest(messages=[msg("user", "hi")]))).text == "one"
    await model.aclose()
    assert not client.is_closed()
    assert (await model.complete(ChatRequest(messages=[msg("user", "hi")]))).text == "two"
    assert server.headers[0]["authorization"] == "Bearer sk-client"
    await client.close()

    with pytest.raises(ConfigError) as info:
        OpenAIChatModel("gpt-4o", client=client, base_url=server.base_url)
    assert info.value.key == "client"


def test_repr_never_shows_the_key() -> None:
    model = OpenAIChatModel("gpt-4o", base_url="http://user:pw@127.0.0.1:9/v1", api_key=KEY)
    assert KEY not in repr(model)
    assert "gpt-4o" in repr(model)
    assert "pw" not in model.base_url
    assert model.base_url == "http://127.0.0.1:9/v1/"


def test_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_LLM_KEY", "sk-x")
    model = OpenAIChatModel.from_config(
        "openai:gpt-4.1-mini", base_url="http://127.0.0.1:9/v1", api_key_env="MY_LLM_KEY"
    )
    assert model.model_name == "gpt-4.1-mini"
    assert model.base_url == "http://127.0.0.1:9/v1/"
    for bad in ("gpt-4o", "openai:", "anthropic:claude", ":gpt-4o", ""):
        with pytest.raises(ConfigError) as info:
            OpenAIChatModel.from_config(bad, api_key_env="MY_LLM_KEY")
        assert info.value.key == "model"


@pytest.mark.parametrize(
    ("name", "window"),
    [
        ("gpt-4o", 128_000),
        ("gpt-4o-mini-2024-07-18", 128_000),
        ("gpt-4.1-nano", 1_047_576),
        ("gpt-5", 400_000),
        ("gpt-5.1", 400_000),
        ("gpt-5-chat-latest", 128_000),
        ("o1-mini", 128_000),
        ("o3", 200_000),
        ("o4-mini", 200_000),
        ("openai/gpt-4o", 128_000),
        ("llama3.1:8b", None),
        ("o30", None),
        ("gpt-4", None),
    ],
)
def test_context_window_table(name: str, window: int | None) -> None:
    assert OpenAIChatModel(name, api_key=KEY).context_window == window


def test_explicit_context_window_wins() -> None:
    assert OpenAIChatModel("gpt-4o", api_key=KEY, context_window=8192).context_window == 8192
    assert OpenAIChatModel("my-local", api_key=KEY, context_window=32_768).context_window == 32_768


def test_implements_the_streaming_protocol() -> None:
    model = OpenAIChatModel("gpt-4o", api_key=KEY)
    assert isinstance(model, StreamingChatModel)
    assert supports_streaming(model)


# --------------------------------------------------------------------------- optional SDK


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(MissingExtraError) as info:
        OpenAIChatModel("gpt-4o", api_key=KEY)
    assert 'pip install "threadkit[openai]"' in str(info.value)
    assert "OpenAIChatModel" in str(info.value)
    assert isinstance(info.value, ImportError)


def test_module_imports_without_the_sdk() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["openai"] = None
        import threadkit.adapters
        import threadkit.adapters.chat_completions as cc
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "openai" and sys.modules[m])
        assert not loaded, loaded
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
