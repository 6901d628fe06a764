"""``ScriptedModel``: a deterministic, offline chat model for tests, samples and the demo.

In the spirit of pydantic-ai's ``TestModel`` / ``FunctionModel``: give it a function (or a list
of replies) to script exactly what it answers, or let it apply its documented default rules. It
records every request, so a test can assert what context a run actually sent (retention and
truncation).

Default rules, applied to the newest message of the context, first match wins:

1. **Tool results came back** (the context ends with ``tool`` messages): answer
   ``"<tool> returned <output>."`` for each result, joined by spaces.
2. **A tool is asked for**: the newest user message names a function tool (its name, or the name
   with ``_`` read as a space, case-insensitive), or contains an arithmetic expression and a tool
   whose name contains ``calc`` exists, or says ``time``/``clock`` and a tool whose name contains
   ``time`` or ``clock`` exists. The model then calls each such tool once; required arguments are
   filled from the message: a string parameter gets the arithmetic expression (for ``calc``
   tools) or the message text; integer/number parameters get the first number in the message;
   booleans ``false``; enums their first value. Call ids are derived from the message id, so
   they are deterministic and unique per thread.
3. **A fact is told**: "my <thing> is <value>" (also "our", several per message) →
   ``"Noted: your <thing> is <value>."``.
4. **A fact is asked**: "what is my <thing>?" → the newest matching fact told anywhere in the
   context (``"Your <thing> is <value>."``), else ``"I don't know your <thing> yet."``.
5. **Otherwise**: ``"You said: <text> (I can see <n> messages.)"``, where ``n`` counts the
   context messages, which makes truncation visible.

Usage is estimated at about 4 characters per token.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from threadkit.models import ChatDelta, ChatRequest, ChatResponse, estimate_tokens
from threadkit.types import (
    ContentPart,
    FunctionTool,
    Message,
    TextContent,
    ToolCallContent,
    ToolResultContent,
    Usage,
)

__all__ = ["ScriptedModel"]

Reply = ChatResponse | str | list[ContentPart]
ReplyFunction = Callable[[ChatRequest], Reply | Awaitable[Reply]]

_EXPR = re.compile(r"(?<![\w.])(\(?\s*\d+(?:\.\d+)?(?:\s*[-+*/^]\s*\(?\s*\d+(?:\.\d+)?\s*\)?)+)")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_TELL = re.compile(
    r"\b(?:my|our)\s+([a-z][\w' ]{0,40}?)\s+(?:is|are)\s+([^.?!,;]+?)(?=\s+and\s+(?:my|our)\b|[.?!,;]|$)",
    re.IGNORECASE,
)
_ASK = re.compile(
    r"\bwhat(?:'s|\s+is|\s+are)\s+(?:my|our)\s+([a-z][\w' ]{0,40}?)\s*\?", re.IGNORECASE
)


class ScriptedModel:
    """An offline :class:`~threadkit.models.ChatModel` (and ``StreamingChatModel``).

    Args:
        fn: called with each :class:`~threadkit.models.ChatRequest`; returns (or awaits to) a
            :class:`~threadkit.models.ChatResponse`, a string (one text part) or a list of
            content parts. Overrides the default rules.
        replies: answers handed out in order, one per call, before ``fn`` or the default
            rules are used (same types as ``fn`` returns).
        model_name: the model id it reports (default ``"offline"``).
        context_window: the context size in tokens it reports (default None: the engine's
            default 128,000 applies).

    Attributes:
        requests: every request received, oldest first.
    """

    def __init__(
        self,
        fn: ReplyFunction | None = None,
        *,
        replies: Iterable[Reply] = (),
        model_name: str = "offline",
        context_window: int | None = None,
    ) -> None:
        self._fn = fn
        self._replies = list(replies)
        self.model_name = model_name
        self.context_window = context_window
        self.requests: list[ChatRequest] = []

    @property
    def last_request(self) -> ChatRequest:
        """The newest request. Raises IndexError when none came yet."""
        return self.requests[-1]

    @property
    def last_context(self) -> list[Message]:
        """The context messages of the newest request, oldest first."""
        return self.last_request.messages

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Answer ``request`` by the script, the function or the default rules (see module doc)."""
        self.requests.append(request)
        if self._replies:
            reply: Reply = self._replies.pop(0)
        elif self._fn is not None:
            produced = self._fn(request)
            reply = await produced if inspect.isawaitable(produced) else produced
        else:
            reply = default_reply(request)
        return _as_response(reply, request, self.model_name)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatDelta]:
        """Like :meth:`complete`, streamed: text word by word, then tool calls, then the response."""
        response = await self.complete(request)
        for part in response.content:
            if isinstance(part, TextContent):
                words = part.text.split(" ")
                for i, word in enumerate(words):
                    yield ChatDelta(text=word if i == 0 else " " + word)
            elif isinstance(part, ToolCallContent):
                yield ChatDelta(tool_call=part)
        yield ChatDelta(response=response)


def _as_response(reply: Reply, request: ChatRequest, model: str) -> ChatResponse:
    if isinstance(reply, ChatResponse):
        return reply
    content: list[ContentPart] = [TextContent(text=reply)] if isinstance(reply, str) else reply
    prompt = estimate_tokens(request.messages, request.instructions)
    completion = estimate_tokens([Message(id="", thread_id="", role="assistant", content=content)])
    has_calls = any(isinstance(p, ToolCallContent) for p in content)
    return ChatResponse(
        content=content,
        usage=Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        ),
        finish_reason="tool_calls" if has_calls else "stop",
        model=request.model or model,
    )


def default_reply(request: ChatRequest) -> list[ContentPart]:
    """The default rules of the module docstring, applied to ``request``."""
    messages = request.messages
    if not messages:
        return [TextContent(text="Hello! (I can see 0 messages.)")]
    last = messages[-1]
    if last.role == "tool":
        return [TextContent(text=_describe_results(messages))]
    user = next((m for m in reversed(messages) if m.role == "user"), None)
    text = user.text if user else ""
    if user is not None and last is user:
        calls = _tool_calls_for(user, request.tools)
        if calls:
            return list(calls)
    told = [(k.strip().lower(), v.strip()) for k, v in _TELL.findall(text)]
    if told:
        noted = "; ".join(f"your {k} is {v}" for k, v in told)
        return [TextContent(text=f"Noted: {noted}.")]
    asked = _ASK.search(text)
    if asked:
        key = asked.group(1).strip().lower()
        for m in reversed(messages):
            if m.role != "user":
                continue
            for k, v in reversed(_TELL.findall(m.text)):
                if k.strip().lower() == key:
                    return [TextContent(text=f"Your {key} is {v.strip()}.")]
        return [TextContent(text=f"I don't know your {key} yet.")]
    return [TextContent(text=f"You said: {text} (I can see {len(messages)} messages.)")]


def _describe_results(messages: list[Message]) -> str:
    names: dict[str, str] = {}
    for m in messages:
        for call in m.tool_calls:
            names[call.id] = call.name
    results: list[ToolResultContent] = []
    for m in reversed(messages):
        if m.role != "tool":
            break
        results[:0] = m.tool_results
    return " ".join(
        f"{names.get(r.tool_call_id, 'the tool')} returned {r.output}." for r in results
    )


def _wants(tool: FunctionTool, text: str) -> bool:
    name = tool.function.name.lower()
    low = text.lower()
    if name in low or name.replace("_", " ") in low:
        return True
    if "calc" in name and _EXPR.search(text):
        return True
    return ("time" in name or "clock" in name) and ("time" in low or "clock" in low)


def _tool_calls_for(user: Message, tools: list[FunctionTool]) -> list[ToolCallContent]:
    calls: list[ToolCallContent] = []
    text = user.text
    for i, tool in enumerate(tools):
        if not _wants(tool, text):
            continue
        args = _arguments(tool, text)
        digest = hashlib.blake2b(f"{user.id}\x1f{i}".encode(), digest_size=8).hexdigest()
        calls.append(ToolCallContent(id=f"call_{digest}", name=tool.function.name, arguments=args))
    return calls


def _arguments(tool: FunctionTool, text: str) -> str:
    schema = tool.function.parameters
    props: dict[str, Any] = schema.get("properties", {})
    required: list[str] = schema.get("required", [])
    defs: dict[str, Any] = schema.get("$defs", {})
    expr = _EXPR.search(text)
    number = _NUMBER.search(text)
    args: dict[str, Any] = {}
    for pname in required:
        spec = props.get(pname, {})
        ref = spec.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):  # Enum, Struct... by reference
            spec = defs.get(ref.rsplit("/", 1)[-1], spec)
        kind = spec.get("type")
        if "enum" in spec:
            args[pname] = spec["enum"][0]
        elif kind == "string":
            is_calc = "calc" in tool.function.name.lower()
            args[pname] = expr.group(1).strip().replace("^", "**") if (expr and is_calc) else text
        elif kind == "integer":
            args[pname] = int(float(number.group())) if number else 0
        elif kind == "number":
            args[pname] = float(number.group()) if number else 0.0
        elif kind == "boolean":
            args[pname] = False
        elif kind == "array":
            args[pname] = []
        else:
            args[pname] = {} if kind == "object" else text
    return json.dumps(args)
