"""threadkit types ↔ Assistants v2 / Foundry classic wire objects.

Outgoing objects are plain dicts shaped as the spec schemas (``openai-openapi.json``
``AssistantObject``, ``ThreadObject``, ``MessageObject``, ``RunObject``, ``RunStepObject``;
``azure-ai-agents-v1.json`` ``Agent``, ``AgentThread``, ``ThreadMessage``, ``ThreadRun``,
``RunStep``; the two agree field by field). Every required field is present, ``null`` where the
spec allows it.

Wire decisions:

* ``assistant_id`` on the wire is ``agent_id`` in threadkit.
* Local threads keep tool calls as messages (an assistant message with ``tool_call`` parts,
  then ``tool`` messages). The Assistants surface shows only ``user`` and ``assistant`` messages
  with text or image content (:func:`is_visible`); tool-call parts are stripped and tool calls
  appear as ``tool_calls`` run steps, as on the services.
* Stored messages are complete: ``status`` is ``completed`` and ``completed_at`` is
  ``created_at``; streamed in-progress messages say ``in_progress``.
* Non-spec values map to the nearest spec value: a truncation strategy ``none`` is shown as
  ``auto``; a run ``last_error.code`` outside the spec enum (``tool_error``) as ``server_error``;
  the ``incomplete_details.reason`` ``max_model_calls`` as ``max_completion_tokens``.
* Only function tools run. ``code_interpreter``, ``file_search`` and other hosted tools are
  refused with 400 (threadkit never fakes a tool).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from threadkit.engine import MessageDelta
from threadkit.errors import ValidationError
from threadkit.types import (
    Agent,
    Attachment,
    ContentPart,
    FunctionDefinition,
    FunctionTool,
    ImageFileContent,
    ImageUrlContent,
    LastError,
    Message,
    MessageCreationDetails,
    Run,
    RunStep,
    TextContent,
    ThreadInfo,
    Tool,
    ToolCallsDetails,
    TruncationStrategy,
    Usage,
)

__all__ = [
    "UNSET",
    "AssistantRecord",
    "CreateAssistantBody",
    "CreateMessageBody",
    "CreateRunBody",
    "CreateThreadAndRunBody",
    "CreateThreadBody",
    "MetadataBody",
    "SubmitToolOutputsBody",
    "UpdateAssistantBody",
    "assistant_to_wire",
    "content_from_wire",
    "delta_to_wire",
    "is_visible",
    "message_from_wire",
    "message_to_wire",
    "run_to_wire",
    "step_to_wire",
    "thread_to_wire",
    "tools_from_wire",
    "tools_to_wire",
    "truncation_from_wire",
]

UNSET = msgspec.UNSET
_Unset = msgspec.UnsetType

# --------------------------------------------------------------------------- request bodies


class _Body(msgspec.Struct, kw_only=True):
    """Base of request bodies: unknown fields are ignored, as the services do."""


class CreateAssistantBody(_Body):
    """``CreateAssistantRequest`` / Foundry ``CreateAgent``."""

    model: str
    name: str | None = None
    description: str | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_resources: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    response_format: str | dict[str, Any] | None = None


class UpdateAssistantBody(_Body):
    """``ModifyAssistantRequest`` / Foundry ``UpdateAgent``: absent fields stay as they are."""

    model: str | _Unset = UNSET
    name: str | _Unset | None = UNSET
    description: str | _Unset | None = UNSET
    instructions: str | _Unset | None = UNSET
    tools: list[dict[str, Any]] | _Unset | None = UNSET
    tool_resources: dict[str, Any] | _Unset | None = UNSET
    metadata: dict[str, str] | _Unset | None = UNSET
    temperature: float | _Unset | None = UNSET
    top_p: float | _Unset | None = UNSET
    response_format: str | dict[str, Any] | _Unset | None = UNSET


class CreateMessageBody(_Body):
    """``CreateMessageRequest``: a user or assistant message with text / image content."""

    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]
    attachments: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = None


class CreateThreadBody(_Body):
    """``CreateThreadRequest``: optional starting messages and metadata."""

    messages: list[CreateMessageBody] | None = None
    metadata: dict[str, str] | None = None
    tool_resources: dict[str, Any] | None = None


class MetadataBody(_Body):
    """Modify requests that change only metadata (threads, messages, runs)."""

    metadata: dict[str, str] | None = None
    tool_resources: dict[str, Any] | None = None


class _RunSettings(_Body):
    assistant_id: str
    model: str | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    stream: bool | None = None
    max_prompt_tokens: int | None = None
    max_completion_tokens: int | None = None
    truncation_strategy: dict[str, Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: str | dict[str, Any] | None = None


class CreateRunBody(_RunSettings):
    """``CreateRunRequest``."""

    additional_instructions: str | None = None
    additional_messages: list[CreateMessageBody] | None = None


class CreateThreadAndRunBody(_RunSettings):
    """``CreateThreadAndRunRequest``."""

    thread: CreateThreadBody | None = None
    tool_resources: dict[str, Any] | None = None


class ToolOutputBody(_Body):
    """One tool output: ``tool_call_id`` and ``output`` (text)."""

    tool_call_id: str
    output: str = ""


class SubmitToolOutputsBody(_Body):
    """``SubmitToolOutputsRunRequest``."""

    tool_outputs: list[ToolOutputBody]
    stream: bool | None = None


class AssistantRecord(msgspec.Struct, kw_only=True):
    """How an assistant (agent) is kept in the store: kind ``"assistant"``, msgspec JSON.

    Attributes:
        v: format version (1).
        agent: the agent (id, model, instructions, tools...; ``created_at`` from the store).
        tool_resources: the spec's ``tool_resources`` object, kept verbatim.
    """

    v: int = 1
    agent: Agent
    tool_resources: dict[str, Any] | None = None


# --------------------------------------------------------------------------- tools


def tools_from_wire(tools: list[dict[str, Any]], param: str = "tools") -> list[Tool]:
    """Spec tool definitions → threadkit tools (function tools only).

    Raises:
        ValidationError: a tool is malformed, or not a function tool (hosted tools such as
            ``code_interpreter`` do not run on threadkit serve).
    """
    out: list[Tool] = []
    for i, raw in enumerate(tools):
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind != "function":
            raise ValidationError(
                f"{param}[{i}]: tool type {kind!r} is not supported by threadkit serve; "
                "only 'function' tools run here"
            )
        fn = raw.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ValidationError(f"{param}[{i}].function.name is required")
        try:
            definition = msgspec.convert(fn, FunctionDefinition)
        except msgspec.ValidationError as exc:
            raise ValidationError(f"{param}[{i}].function: {exc}") from exc
        out.append(FunctionTool(function=definition))
    return out


def tools_to_wire(tools: list[Tool]) -> list[dict[str, Any]]:
    """threadkit tools → spec tool definitions (``AssistantToolsFunction`` etc.)."""
    out: list[dict[str, Any]] = []
    for tool in tools:
        if isinstance(tool, FunctionTool):
            fn: dict[str, Any] = {"name": tool.function.name}
            if tool.function.description is not None:
                fn["description"] = tool.function.description
            fn["parameters"] = tool.function.parameters
            if tool.function.strict is not None:
                fn["strict"] = tool.function.strict
            out.append({"type": "function", "function": fn})
        else:
            out.append(msgspec.to_builtins(tool))
    return out


def truncation_from_wire(raw: dict[str, Any] | None) -> TruncationStrategy | None:
    """A ``TruncationObject`` → :class:`TruncationStrategy` (None when absent).

    Raises:
        ValidationError: an unknown type, or ``last_messages`` without a count >= 1.
    """
    if raw is None:
        return None
    kind = raw.get("type", "auto")
    if kind not in ("auto", "last_messages"):
        raise ValidationError(f"truncation_strategy.type {kind!r} is not 'auto' or 'last_messages'")
    count = raw.get("last_messages")
    if count is not None and not isinstance(count, int):
        raise ValidationError("truncation_strategy.last_messages must be an integer")
    return TruncationStrategy(type=kind, last_messages=count)


# --------------------------------------------------------------------------- messages in


def content_from_wire(content: str | list[dict[str, Any]]) -> list[ContentPart]:
    """Message content (a string, or ``text`` / ``image_file`` / ``image_url`` parts) → parts.

    Raises:
        ValidationError: an unknown part type or a malformed part.
    """
    if isinstance(content, str):
        return [TextContent(text=content)]
    parts: list[ContentPart] = []
    for i, raw in enumerate(content):
        kind = raw.get("type")
        if kind == "text" and isinstance(raw.get("text"), str):
            parts.append(TextContent(text=raw["text"]))
        elif kind == "image_file" and isinstance(raw.get("image_file"), dict):
            image = raw["image_file"]
            if not isinstance(image.get("file_id"), str):
                raise ValidationError(f"content[{i}].image_file.file_id is required")
            parts.append(ImageFileContent(file_id=image["file_id"], detail=image.get("detail")))
        elif kind == "image_url" and isinstance(raw.get("image_url"), dict):
            image = raw["image_url"]
            if not isinstance(image.get("url"), str):
                raise ValidationError(f"content[{i}].image_url.url is required")
            parts.append(ImageUrlContent(url=image["url"], detail=image.get("detail")))
        else:
            raise ValidationError(
                f"content[{i}]: expected a 'text', 'image_file' or 'image_url' part, got {kind!r}"
            )
    if not parts:
        raise ValidationError("content must not be empty")
    return parts


def message_from_wire(body: CreateMessageBody, thread_id: str = "") -> Message:
    """A create-message body → an unsaved :class:`Message` (id and seq set by the store).

    Raises:
        ValidationError: bad content or attachments.
    """
    attachments: list[Attachment] = []
    for i, raw in enumerate(body.attachments or []):
        file_id = raw.get("file_id")
        if not isinstance(file_id, str):
            raise ValidationError(f"attachments[{i}].file_id is required")
        tools = raw.get("tools") or []
        attachments.append(Attachment(file_id=file_id, tools=list(tools)))
    return Message(
        id="",
        thread_id=thread_id,
        role=body.role,
        content=content_from_wire(body.content),
        attachments=attachments,
        metadata=body.metadata or {},
    )


# --------------------------------------------------------------------------- objects out


def is_visible(message: Message) -> bool:
    """Whether the Assistants surface shows ``message``: a user or assistant message with text
    or image content (tool calls and tool results are run steps there)."""
    if message.role != "user" and message.role != "assistant":
        return False
    return any(
        isinstance(p, (TextContent, ImageFileContent, ImageUrlContent)) for p in message.content
    )


def _content_to_wire(parts: list[ContentPart]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, TextContent):
            out.append({"type": "text", "text": {"value": p.text, "annotations": p.annotations}})
        elif isinstance(p, ImageFileContent):
            out.append(
                {
                    "type": "image_file",
                    "image_file": {"file_id": p.file_id, "detail": p.detail or "auto"},
                }
            )
        elif isinstance(p, ImageUrlContent):
            out.append(
                {"type": "image_url", "image_url": {"url": p.url, "detail": p.detail or "auto"}}
            )
    return out


def message_to_wire(
    m: Message, status: Literal["completed", "in_progress"] = "completed"
) -> dict[str, Any]:
    """A message → ``MessageObject`` / ``ThreadMessage`` (tool-call parts stripped)."""
    done = status == "completed"
    return {
        "id": m.id,
        "object": "thread.message",
        "created_at": m.created_at,
        "thread_id": m.thread_id,
        "status": status,
        "incomplete_details": None,
        "completed_at": m.created_at if done else None,
        "incomplete_at": None,
        "role": "assistant" if m.role == "assistant" else "user",
        "content": _content_to_wire(m.content),
        "assistant_id": m.agent_id,
        "run_id": m.run_id,
        "attachments": [{"file_id": a.file_id, "tools": a.tools} for a in m.attachments],
        "metadata": m.metadata,
    }


def delta_to_wire(delta: MessageDelta) -> dict[str, Any]:
    """A text fragment → ``MessageDeltaObject`` (``thread.message.delta``)."""
    return {
        "id": delta.id,
        "object": "thread.message.delta",
        "delta": {
            "content": [
                {
                    "index": delta.index,
                    "type": "text",
                    "text": {"value": delta.text, "annotations": []},
                }
            ]
        },
    }


def thread_to_wire(info: ThreadInfo) -> dict[str, Any]:
    """A thread → ``ThreadObject`` / ``AgentThread`` (``tool_resources`` is null)."""
    return {
        "id": info.id,
        "object": "thread",
        "created_at": info.created_at,
        "tool_resources": None,
        "metadata": info.metadata,
    }


def assistant_to_wire(
    record: AssistantRecord, created_at: int, default_model: str
) -> dict[str, Any]:
    """A stored assistant → ``AssistantObject`` / Foundry ``Agent``."""
    a = record.agent
    return {
        "id": a.id,
        "object": "assistant",
        "created_at": created_at,
        "name": a.name,
        "description": a.description,
        "model": a.model or default_model,
        "instructions": a.instructions,
        "tools": tools_to_wire(a.tools),
        "tool_resources": record.tool_resources,
        "metadata": a.metadata,
        "temperature": a.temperature,
        "top_p": a.top_p,
        "response_format": a.response_format if a.response_format is not None else "auto",
    }


def _usage(usage: Usage | None) -> dict[str, int] | None:
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


_RUN_ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})
_STEP_ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded"})


def _error(err: LastError | None, allowed: frozenset[str]) -> dict[str, str] | None:
    if err is None:
        return None
    return {"code": err.code if err.code in allowed else "server_error", "message": err.message}


def run_to_wire(run: Run) -> dict[str, Any]:
    """A run → ``RunObject`` / ``ThreadRun``."""
    required = None
    if run.required_action is not None:
        required = {
            "type": "submit_tool_outputs",
            "submit_tool_outputs": {
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.function.name, "arguments": c.function.arguments},
                    }
                    for c in run.required_action.submit_tool_outputs.tool_calls
                ]
            },
        }
    incomplete = None
    if run.incomplete_details is not None:
        reason = run.incomplete_details.reason
        if reason not in ("max_completion_tokens", "max_prompt_tokens"):
            reason = "max_completion_tokens"
        incomplete = {"reason": reason}
    strategy = run.truncation_strategy
    return {
        "id": run.id,
        "object": "thread.run",
        "created_at": run.created_at,
        "thread_id": run.thread_id,
        "assistant_id": run.agent_id or "",
        "status": run.status.value,
        "required_action": required,
        "last_error": _error(run.last_error, _RUN_ERROR_CODES),
        "expires_at": run.expires_at,
        "started_at": run.started_at,
        "cancelled_at": run.cancelled_at,
        "failed_at": run.failed_at,
        "completed_at": run.completed_at,
        "incomplete_details": incomplete,
        "model": run.model or "",
        "instructions": run.instructions or "",
        "tools": tools_to_wire(run.tools),
        "metadata": run.metadata,
        "usage": _usage(run.usage),
        "temperature": run.temperature,
        "top_p": run.top_p,
        "max_prompt_tokens": run.max_prompt_tokens,
        "max_completion_tokens": run.max_completion_tokens,
        "truncation_strategy": {
            "type": "last_messages" if strategy.type == "last_messages" else "auto",
            "last_messages": strategy.last_messages,
        },
        "tool_choice": run.tool_choice if run.tool_choice is not None else "auto",
        "parallel_tool_calls": run.parallel_tool_calls,
        "response_format": run.response_format if run.response_format is not None else "auto",
    }


def step_to_wire(step: RunStep) -> dict[str, Any]:
    """A run step → ``RunStepObject`` / Foundry ``RunStep``."""
    details: dict[str, Any]
    if isinstance(step.step_details, MessageCreationDetails):
        details = {
            "type": "message_creation",
            "message_creation": {
                "message_id": step.step_details.message_creation.get("message_id", "")
            },
        }
    else:
        assert isinstance(step.step_details, ToolCallsDetails)
        details = {
            "type": "tool_calls",
            "tool_calls": [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {
                        "name": c.function.name,
                        "arguments": c.function.arguments,
                        "output": c.function.output,
                    },
                }
                for c in step.step_details.tool_calls
            ],
        }
    return {
        "id": step.id,
        "object": "thread.run.step",
        "created_at": step.created_at,
        "assistant_id": step.agent_id or "",
        "thread_id": step.thread_id,
        "run_id": step.run_id,
        "type": step.type,
        "status": step.status.value,
        "step_details": details,
        "last_error": _error(step.last_error, _STEP_ERROR_CODES),
        "expired_at": step.expired_at,
        "cancelled_at": step.cancelled_at,
        "failed_at": step.failed_at,
        "completed_at": step.completed_at,
        "metadata": step.metadata,
        "usage": _usage(step.usage),
    }
