"""ScriptedModel: each documented default rule, the fn and replies modes, recording, streaming."""

from __future__ import annotations

import enum
import json
from typing import Any, Literal

import pytest

from threadkit import function_tool
from threadkit.models import (
    ChatModel,
    ChatRequest,
    ChatResponse,
    StreamingChatModel,
    estimate_tokens,
    supports_streaming,
)
from threadkit.testing import ScriptedModel, default_reply
from threadkit.types import (
    ContentPart,
    FunctionTool,
    Message,
    Role,
    TextContent,
    ToolCallContent,
    ToolResultContent,
    Usage,
)

_n = 0


def msg(role: Role, *parts: ContentPart | str, mid: str | None = None) -> Message:
    global _n
    _n += 1
    content = [TextContent(text=p) if isinstance(p, str) else p for p in parts]
    return Message(id=mid or f"msg_{_n}", thread_id="thread_1", role=role, content=content)


def req(*messages: Message, tools: list[FunctionTool] | None = None, **kw: Any) -> ChatRequest:
    return ChatRequest(messages=list(messages), tools=tools or [], **kw)


def text_of(parts: list[ContentPart]) -> str:
    assert all(isinstance(p, TextContent) for p in parts), parts
    return "".join(p.text for p in parts if isinstance(p, TextContent))


def calls_of(parts: list[ContentPart]) -> list[tuple[str, dict[str, Any]]]:
    assert all(isinstance(p, ToolCallContent) for p in parts), parts
    return [(p.name, json.loads(p.arguments)) for p in parts if isinstance(p, ToolCallContent)]


# --------------------------------------------------------------------------- tools for rule 2


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


def calculator(expression: str) -> str:
    """Evaluate arithmetic."""
    return expression


def get_time(zone: str = "UTC") -> str:
    """The time."""
    return zone


def world_clock() -> str:
    """Clock."""
    return ""


def weather_report(
    city: str,
    days: int,
    threshold: float,
    verbose: bool,
    mode: Mode,
    unit: Literal["c", "f"],
    tags: list[str],
    extra: dict[str, int],
    note: str = "optional",
) -> str:
    """Weather."""
    return city


TOOLS = [function_tool(f) for f in (calculator, get_time, world_clock, weather_report)]


# --------------------------------------------------------------------------- rule 1: results


def test_rule1_tool_results_are_described() -> None:
    call_a = ToolCallContent(id="call_a", name="add", arguments="{}")
    call_b = ToolCallContent(id="call_b", name="get_time", arguments="{}")
    messages = [
        msg("user", "go"),
        msg("assistant", call_a, call_b),
        msg("tool", ToolResultContent(tool_call_id="call_a", output="4")),
        msg("tool", ToolResultContent(tool_call_id="call_b", output="noon")),
    ]
    assert text_of(default_reply(req(*messages))) == "add returned 4. get_time returned noon."
    # several results in one tool message, and a result whose call is not in the context
    one = msg(
        "tool",
        ToolResultContent(tool_call_id="call_a", output="4"),
        ToolResultContent(tool_call_id="call_x", output="?"),
    )
    got = text_of(default_reply(req(messages[1], one)))
    assert got == "add returned 4. the tool returned ?."
    # only the trailing tool messages count (older results are history)
    older = [*messages, msg("assistant", "ok"), msg("user", "hello there")]
    assert "returned" not in text_of(default_reply(req(*older)))


# --------------------------------------------------------------------------- rule 2: tool calls


def test_rule2_tool_named_in_the_message_is_called_with_filled_arguments() -> None:
    user = msg("user", "Weather report please, 3 days at 2.5 degrees")
    calls = calls_of(default_reply(req(user, tools=TOOLS)))
    assert [name for name, _ in calls] == ["weather_report"]  # "weather report" = weather_report
    args = calls[0][1]
    assert args == {
        "city": "Weather report please, 3 days at 2.5 degrees",  # strings get the message
        "days": 3,  # the first number
        "threshold": 3.0,
        "verbose": False,
        "mode": "fast",  # enums: the first value
        "unit": "c",
        "tags": [],
        "extra": {},
    }
    assert "note" not in args  # optional parameters are left out


def test_rule2_arithmetic_calls_calc_tools_with_the_expression() -> None:
    calls = calls_of(default_reply(req(msg("user", "What is (2 + 3) * 4^2 ?"), tools=TOOLS)))
    assert calls == [("calculator", {"expression": "(2 + 3) * 4**2"})]
    nested = calls_of(default_reply(req(msg("user", "Compute 2 * (3 + 4) now"), tools=TOOLS)))
    assert nested == [("calculator", {"expression": "2 * (3 + 4)"})]
    simple = calls_of(default_reply(req(msg("user", "What is 12 * 7?"), tools=TOOLS)))
    assert simple == [("calculator", {"expression": "12 * 7"})]
    # without a calc tool, arithmetic is just text
    plain = default_reply(req(msg("user", "What is 12 * 7?"), tools=TOOLS[1:2]))
    assert text_of(plain).startswith("You said: What is 12 * 7?")


def test_rule2_time_and_clock() -> None:
    calls = calls_of(default_reply(req(msg("user", "What TIME is it?"), tools=TOOLS)))
    assert [n for n, _ in calls] == ["get_time", "world_clock"]
    assert calls[0][1] == {}  # zone is optional
    calls = calls_of(default_reply(req(msg("user", "check the clock"), tools=TOOLS)))
    assert [n for n, _ in calls] == ["get_time", "world_clock"]


def test_rule2_call_ids_are_deterministic_and_unique_per_message() -> None:
    a1 = default_reply(req(msg("user", "time?", mid="msg_a"), tools=TOOLS))
    a2 = default_reply(req(msg("user", "time?", mid="msg_a"), tools=TOOLS))
    b = default_reply(req(msg("user", "time?", mid="msg_b"), tools=TOOLS))
    ids_a1 = [p.id for p in a1 if isinstance(p, ToolCallContent)]
    ids_a2 = [p.id for p in a2 if isinstance(p, ToolCallContent)]
    ids_b = [p.id for p in b if isinstance(p, ToolCallContent)]
    assert ids_a1 == ids_a2 and len(set(ids_a1)) == 2
    assert not set(ids_a1) & set(ids_b)
    assert all(i.startswith("call_") for i in ids_a1)


def test_rule2_only_when_the_user_message_is_the_newest() -> None:
    context = [msg("user", "What time is it?"), msg("assistant", "It is noon.")]
    assert text_of(default_reply(req(*context, tools=TOOLS))).startswith("You said:")
    # and no tools offered: no calls
    assert text_of(default_reply(req(msg("user", "What time is it?")))).startswith("You said:")


# --------------------------------------------------------------------------- rules 3 and 4: facts


def test_rule3_facts_told_are_noted() -> None:
    got = text_of(default_reply(req(msg("user", "Hi. My name is Ada and my city is Paris."))))
    assert got == "Noted: your name is Ada; your city is Paris."
    assert text_of(default_reply(req(msg("user", "our team is blue")))) == (
        "Noted: your team is blue."
    )


def test_rule4_facts_asked_are_recalled_newest_first() -> None:
    context = [
        msg("user", "My name is Ada."),
        msg("assistant", "Noted: your name is Ada."),
        msg("user", "Actually my name is Grace."),
        msg("assistant", "Noted."),
        msg("user", "What is my name?"),
    ]
    assert text_of(default_reply(req(*context))) == "Your name is Grace."
    assert text_of(default_reply(req(*context[:2], context[4]))) == "Your name is Ada."
    assert text_of(default_reply(req(msg("user", "what's my dog?")))) == (
        "I don't know your dog yet."
    )
    # a fact outside the context is not known: this is how truncation becomes visible
    assert text_of(default_reply(req(context[4]))) == "I don't know your name yet."
    # an assistant saying "my ..." is not the user's fact
    said = [msg("assistant", "my name is Bot"), msg("user", "What is my name?")]
    assert text_of(default_reply(req(*said))) == "I don't know your name yet."


# --------------------------------------------------------------------------- rule 5: echo


def test_rule5_echo_counts_the_context() -> None:
    context = [msg("user", "one"), msg("assistant", "two"), msg("user", "three")]
    assert text_of(default_reply(req(*context))) == "You said: three (I can see 3 messages.)"
    assert text_of(default_reply(req())) == "Hello! (I can see 0 messages.)"


# --------------------------------------------------------------------------- modes


async def test_default_mode_builds_a_response_with_usage_and_records_requests() -> None:
    model = ScriptedModel()
    assert model.model_name == "offline" and model.context_window is None
    with pytest.raises(IndexError):
        _ = model.last_request
    request = req(msg("user", "hello"), instructions="Be kind.")
    response = await model.complete(request)
    assert response.text == "You said: hello (I can see 1 messages.)"
    assert response.finish_reason == "stop" and response.model == "offline"
    prompt = estimate_tokens(request.messages, "Be kind.")
    assert response.usage.prompt_tokens == prompt > 0
    assert response.usage.total_tokens == prompt + response.usage.completion_tokens
    assert response.usage.completion_tokens == len(response.text) // 4 + 4
    assert model.requests == [request] and model.last_request is request
    assert model.last_context == request.messages
    # the request's model id wins
    other = await model.complete(req(msg("user", "x"), model="gpt-x"))
    assert other.model == "gpt-x"
    assert len(model.requests) == 2


async def test_tool_call_answers_finish_with_tool_calls() -> None:
    response = await ScriptedModel().complete(req(msg("user", "time?"), tools=TOOLS))
    assert response.finish_reason == "tool_calls"
    assert [c.name for c in response.tool_calls] == ["get_time", "world_clock"]


async def test_fn_mode_sync_and_async_and_every_return_type() -> None:
    seen: list[ChatRequest] = []

    def as_text(r: ChatRequest) -> str:
        seen.append(r)
        return "plain"

    async def as_parts(r: ChatRequest) -> list[ContentPart]:
        return [TextContent(text="a"), ToolCallContent(id="c1", name="f")]

    fixed = ChatResponse(content=[TextContent(text="verbatim")], finish_reason="length")

    def as_response(r: ChatRequest) -> ChatResponse:
        return fixed

    r1 = await ScriptedModel(as_text).complete(req(msg("user", "q")))
    assert r1.text == "plain" and r1.finish_reason == "stop" and len(seen) == 1
    r2 = await ScriptedModel(as_parts).complete(req(msg("user", "q")))
    assert r2.finish_reason == "tool_calls" and [c.id for c in r2.tool_calls] == ["c1"]
    assert r2.text == "a"
    r3 = await ScriptedModel(as_response).complete(req(msg("user", "q")))
    assert r3 is fixed  # returned as given


async def test_replies_come_first_then_fn_then_defaults() -> None:
    model = ScriptedModel(replies=["first", [TextContent(text="second")]])
    outs = [(await model.complete(req(msg("user", "x")))).text for _ in range(3)]
    assert outs == ["first", "second", "You said: x (I can see 1 messages.)"]
    with_fn = ScriptedModel(lambda r: "from fn", replies=["scripted"])
    outs = [(await with_fn.complete(req(msg("user", "x")))).text for _ in range(3)]
    assert outs == ["scripted", "from fn", "from fn"]
    assert len(with_fn.requests) == 3  # replies are recorded too


def test_protocols() -> None:
    model = ScriptedModel(model_name="m", context_window=1234)
    assert isinstance(model, ChatModel) and isinstance(model, StreamingChatModel)
    assert supports_streaming(model)
    assert (model.model_name, model.context_window) == ("m", 1234)


# --------------------------------------------------------------------------- streaming


async def test_stream_yields_words_then_calls_then_the_response() -> None:
    model = ScriptedModel(
        replies=[[TextContent(text="Let me check that."), ToolCallContent(id="c9", name="f")]]
    )
    deltas = [d async for d in model.stream(req(msg("user", "q")))]
    texts = [d.text for d in deltas if d.text is not None]
    assert texts == ["Let", " me", " check", " that."]
    assert "".join(texts) == "Let me check that."
    calls = [d.tool_call for d in deltas if d.tool_call is not None]
    assert [c.id for c in calls] == ["c9"]
    assert deltas[-1].response is not None and deltas[-1].text is None
    assert all(d.response is None for d in deltas[:-1])
    final = deltas[-1].response
    assert final.text == "Let me check that." and final.finish_reason == "tool_calls"
    assert len(model.requests) == 1  # streaming records the request once


async def test_stream_of_default_rules_matches_complete() -> None:
    request = req(msg("user", "My name is Ada."))
    streamed = [d async for d in ScriptedModel().stream(request)]
    completed = await ScriptedModel().complete(request)
    final = streamed[-1].response
    assert final is not None
    assert final.content == completed.content
    assert "".join(d.text or "" for d in streamed) == completed.text
    assert final.usage == completed.usage != Usage()
