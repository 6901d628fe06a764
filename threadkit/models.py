"""The ``ChatModel`` seam: what the run engine calls to get the next assistant turn.

A chat model takes the model context (instructions, then the truncated thread, oldest first) and
the function tools, and answers with content parts: text and/or tool calls. Implementations:

* ``threadkit.adapters.chat_completions.OpenAIChatModel``: any OpenAI-compatible
  ``/chat/completions`` endpoint, over the official ``openai`` SDK (extra ``openai``);
* ``threadkit.testing.ScriptedModel``: deterministic and offline, for tests and the demo.

Third parties implement the :class:`ChatModel` Protocol; streaming is the optional
:class:`StreamingChatModel` sub-protocol (see :func:`supports_streaming`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal, Protocol, TypeGuard, runtime_checkable

import msgspec

from threadkit.types import (
    ContentPart,
    FunctionTool,
    Message,
    TextContent,
    ToolCallContent,
    ToolResultContent,
    Usage,
)

__all__ = [
    "ChatDelta",
    "ChatModel",
    "ChatRequest",
    "ChatResponse",
    "FinishReason",
    "StreamingChatModel",
    "estimate_tokens",
    "message_tokens",
    "supports_streaming",
]

FinishReason = Literal["stop", "tool_calls", "length", "content_filter"]


class ChatRequest(msgspec.Struct, kw_only=True):
    """One model call.

    Attributes:
        messages: the context window, oldest first, tool calls never separated from their
            results. Instructions are NOT in it; they are in ``instructions``.
        instructions: the system prompt, or None.
        tools: function tools the model may call (hosted tools are never passed).
        model: the model id to use, or None for the model's default.
        temperature, top_p: sampling settings, None for the model's default.
        max_completion_tokens: a cap on output tokens, or None.
        tool_choice: ``"auto"``, ``"none"``, ``"required"`` or a spec tool-choice object.
        parallel_tool_calls: whether several tool calls may come in one turn.
        response_format: ``"auto"`` or a spec response-format object.
    """

    messages: list[Message]
    instructions: str | None = None
    tools: list[FunctionTool] = []
    model: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_completion_tokens: int | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    response_format: str | dict[str, Any] | None = None


class ChatResponse(msgspec.Struct, kw_only=True):
    """The model's answer.

    Attributes:
        content: text and/or tool-call parts (and reasoning parts), in order.
        usage: tokens used by this call.
        finish_reason: ``stop``, ``tool_calls``, ``length`` (output cap reached) or
            ``content_filter``.
        model: the model id that answered.
    """

    content: list[ContentPart]
    usage: Usage = Usage()
    finish_reason: FinishReason = "stop"
    model: str = ""

    @property
    def tool_calls(self) -> list[ToolCallContent]:
        """The tool calls of this answer, in order."""
        return [p for p in self.content if isinstance(p, ToolCallContent)]

    @property
    def text(self) -> str:
        """The text of this answer (parts joined with newlines)."""
        return "\n".join(p.text for p in self.content if isinstance(p, TextContent))


class ChatDelta(msgspec.Struct, kw_only=True):
    """One streamed increment: a text fragment, a whole tool call, or (last) the full response."""

    text: str | None = None
    tool_call: ToolCallContent | None = None
    response: ChatResponse | None = None


@runtime_checkable
class ChatModel(Protocol):
    """A chat model the run engine can call.

    Attributes:
        model_name: the default model id (``"gpt-4o-mini"``, ``"offline"``...).
        context_window: the context size in tokens, or None when unknown (the engine then
            assumes 128,000 for the ``auto`` truncation strategy).
    """

    model_name: str
    context_window: int | None

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Answer one request.

        Raises:
            ModelRateLimitError: rate limited after the model's own retries.
            ModelError: any other failure (the SDK's exception on ``__cause__``).
        """
        ...


@runtime_checkable
class StreamingChatModel(ChatModel, Protocol):
    """A chat model that can also stream its answer."""

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatDelta]:
        """Yield text fragments and tool calls as they come; the last delta has ``response``."""
        ...


def supports_streaming(model: ChatModel) -> TypeGuard[StreamingChatModel]:
    """Whether ``model`` implements :class:`StreamingChatModel`."""
    return callable(getattr(model, "stream", None))


def estimate_tokens(messages: Sequence[Message], instructions: str | None = None) -> int:
    """A fast token estimate: about 4 characters per token plus 4 tokens per message.

    Used by the ``auto`` truncation strategy when the model offers no tokenizer. It errs high
    for English text, so the window stays within the model's limit.
    """
    total = len(instructions or "") // 4 + (4 if instructions else 0)
    for m in messages:
        total += message_tokens(m)
    return total


def message_tokens(m: Message) -> int:
    """The token estimate of one message (see :func:`estimate_tokens`)."""
    chars = 0
    for p in m.content:
        if isinstance(p, TextContent):
            chars += len(p.text)
        elif isinstance(p, ToolCallContent):
            chars += len(p.name) + len(p.arguments)
        elif isinstance(p, ToolResultContent):
            chars += len(p.output)
        else:
            chars += 340  # an image or file reference: a flat allowance (~85 tokens)
    return chars // 4 + 4
