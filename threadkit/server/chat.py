"""``POST /v1/chat/completions`` backed by the configured :class:`~threadkit.models.ChatModel`.

Follows ``createChatCompletion`` in ``openai-openapi.json``: ``system`` / ``developer`` messages
become the instructions, ``user`` messages text and image parts, ``assistant`` messages text and
``tool_calls``, ``tool`` messages tool results; function ``tools``, ``tool_choice``,
``temperature``, ``top_p``, ``max_completion_tokens`` (or the older ``max_tokens``),
``parallel_tool_calls`` and ``response_format`` pass to the model. Only ``n = 1`` is served.

``stream: true`` answers with ``chat.completion.chunk`` objects as ``data:`` lines (a role chunk,
content chunks, one chunk per tool call, a chunk with ``finish_reason``, a usage chunk when
``stream_options.include_usage`` is set), ending ``data: [DONE]``. Text streams fragment by
fragment when the model supports streaming, else as one chunk. Nothing is stored.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from threadkit._ids import new_id
from threadkit.errors import ValidationError
from threadkit.models import ChatRequest, ChatResponse, supports_streaming
from threadkit.server.common import ENCODER, ApiError, json_response, read_body, to_api_error
from threadkit.server.state import ServerState
from threadkit.server.wire import tools_from_wire
from threadkit.types import (
    ContentPart,
    FunctionTool,
    ImageUrlContent,
    Message,
    TextContent,
    ToolCallContent,
    ToolResultContent,
    Usage,
)

__all__ = ["CreateChatCompletionBody", "chat_request", "routes"]


class CreateChatCompletionBody(msgspec.Struct, kw_only=True):
    """The fields of ``CreateChatCompletionRequest`` threadkit serves (others are ignored)."""

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    n: int | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None


def _text_of(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise ValidationError(f"{where}: only text parts are allowed here")
            texts.append(str(part.get("text", "")))
        return "\n".join(texts)
    raise ValidationError(f"{where}: content must be a string or a list of parts")


def _user_parts(content: Any, where: str) -> list[ContentPart]:
    if isinstance(content, str):
        return [TextContent(text=content)]
    if not isinstance(content, list):
        raise ValidationError(f"{where}: content must be a string or a list of parts")
    parts: list[ContentPart] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append(TextContent(text=str(part.get("text", ""))))
        elif kind == "image_url" and isinstance(part.get("image_url"), dict):
            image = part["image_url"]
            parts.append(ImageUrlContent(url=str(image.get("url", "")), detail=image.get("detail")))
        else:
            raise ValidationError(
                f"{where}.content[{j}]: part type {kind!r} is not supported by threadkit serve"
            )
    return parts


def chat_request(body: CreateChatCompletionBody) -> ChatRequest:
    """Translate a chat-completions body into the model's :class:`ChatRequest`.

    Raises:
        ValidationError: an unknown role, a malformed message or tool, or ``n`` > 1.
    """
    if body.n not in (None, 1):
        raise ValidationError("threadkit serve answers n = 1 only")
    if not body.messages:
        raise ValidationError("messages must not be empty")
    instructions: list[str] = []
    messages: list[Message] = []
    for i, raw in enumerate(body.messages):
        where = f"messages[{i}]"
        role = raw.get("role")
        content = raw.get("content")
        if role in ("system", "developer"):
            instructions.append(_text_of(content, where))
            continue
        mid = new_id("msg")
        if role == "user":
            messages.append(
                Message(id=mid, thread_id="", role="user", content=_user_parts(content, where))
            )
        elif role == "assistant":
            parts: list[ContentPart] = []
            text = _text_of(content, where)
            if text:
                parts.append(TextContent(text=text))
            for k, call in enumerate(raw.get("tool_calls") or []):
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict) or not isinstance(call.get("id"), str):
                    raise ValidationError(f"{where}.tool_calls[{k}] needs an id and a function")
                parts.append(
                    ToolCallContent(
                        id=call["id"],
                        name=str(fn.get("name", "")),
                        arguments=str(fn.get("arguments", "{}")),
                    )
                )
            messages.append(Message(id=mid, thread_id="", role="assistant", content=parts))
        elif role == "tool":
            call_id = raw.get("tool_call_id")
            if not isinstance(call_id, str):
                raise ValidationError(f"{where}.tool_call_id is required")
            messages.append(
                Message(
                    id=mid,
                    thread_id="",
                    role="tool",
                    content=[
                        ToolResultContent(tool_call_id=call_id, output=_text_of(content, where))
                    ],
                )
            )
        else:
            raise ValidationError(f"{where}.role {role!r} is not a chat role")
    tools = tools_from_wire(body.tools or [])
    return ChatRequest(
        messages=messages,
        instructions="\n\n".join(instructions) or None,
        tools=[t for t in tools if isinstance(t, FunctionTool)],
        model=body.model,
        temperature=body.temperature,
        top_p=body.top_p,
        max_completion_tokens=body.max_completion_tokens or body.max_tokens,
        tool_choice=body.tool_choice,
        parallel_tool_calls=True if body.parallel_tool_calls is None else body.parallel_tool_calls,
        response_format=body.response_format,
    )


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def _tool_call(call: ToolCallContent) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def completion_to_wire(
    response: ChatResponse, completion_id: str, created: int, model: str
) -> dict[str, Any]:
    """A model answer → ``CreateChatCompletionResponse``."""
    calls = response.tool_calls
    text = response.text
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if (text or not calls) else None,
        "refusal": None,
        "annotations": [],
    }
    if calls:
        message["tool_calls"] = [_tool_call(c) for c in calls]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": response.model or model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": response.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": _usage(response.usage),
    }


async def create_chat_completion(request: Request) -> Response:
    st: ServerState = request.app.state.threadkit
    body = await read_body(request, CreateChatCompletionBody, st.max_body_bytes)
    chat = chat_request(body)
    completion_id = f"chatcmpl-{new_id('c')[2:]}"
    created = int(time.time())
    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        return StreamingResponse(
            _chunks(st, chat, completion_id, created, body.model, include_usage),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache"},
        )
    response = await st.model.complete(chat)
    return json_response(completion_to_wire(response, completion_id, created, body.model))


async def _chunks(
    st: ServerState,
    chat: ChatRequest,
    completion_id: str,
    created: int,
    model: str,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None, name: str = model) -> bytes:
        obj = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        return b"data: " + ENCODER.encode(obj) + b"\n\n"

    yield chunk({"role": "assistant", "content": ""})
    response: ChatResponse | None = None
    calls = 0
    try:
        if supports_streaming(st.model):
            async for delta in st.model.stream(chat):
                if delta.text:
                    yield chunk({"content": delta.text})
                if delta.tool_call is not None:
                    yield chunk({"tool_calls": [{"index": calls, **_tool_call(delta.tool_call)}]})
                    calls += 1
                if delta.response is not None:
                    response = delta.response
        else:
            response = await st.model.complete(chat)
            if response.text:
                yield chunk({"content": response.text})
        if response is None:
            raise ApiError(500, "The model's stream ended without a response.", type="server_error")
        for call in response.tool_calls[calls:]:
            yield chunk({"tool_calls": [{"index": calls, **_tool_call(call)}]})
            calls += 1
    except Exception as exc:  # the status line is sent: report in the stream
        yield b"data: " + ENCODER.encode(to_api_error(exc).body()) + b"\n\n"
        return
    name = response.model or model
    yield chunk({}, response.finish_reason, name)
    if include_usage:
        usage = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": name,
            "choices": [],
            "usage": _usage(response.usage),
        }
        yield b"data: " + ENCODER.encode(usage) + b"\n\n"
    yield b"data: [DONE]\n\n"


def routes() -> list[Route]:
    """The Chat Completions routes, relative to ``/v1``."""
    return [Route("/chat/completions", create_chat_completion, methods=["POST"])]
