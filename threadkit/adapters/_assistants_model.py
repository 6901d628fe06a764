"""The Assistants object model, shared by the ``assistants`` and ``foundry`` (classic) adapters.

OpenAI Assistants v2 and the Foundry Agent Service (classic, api-version ``v1``) share one wire
model: threads, messages, runs and run steps with the same field names (``openai-openapi.json``
``MessageObject``/``RunObject``/``RunStepObject``; ``azure-ai-agents-v1.json`` ``ThreadMessage``/
``ThreadRun``/``RunStep``). These functions map between those JSON objects (as plain dicts, from
``model_dump()`` or ``as_dict()``) and threadkit's types, so both adapters share one mapping.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from threadkit.errors import ServiceError, UnsupportedOperation, ValidationError
from threadkit.stores.base import check_metadata
from threadkit.thread import Content, normalize_content
from threadkit.types import (
    Agent,
    Attachment,
    ContentPart,
    FileContent,
    FunctionTool,
    ImageFileContent,
    ImageUrlContent,
    Message,
    ReasoningContent,
    Role,
    Run,
    RunStep,
    TextContent,
    Tool,
    ToolCallContent,
    ToolResultContent,
    TruncationStrategy,
)

__all__ = [
    "agent_fingerprint",
    "check_writable",
    "content_to_service",
    "message_body",
    "message_from_service",
    "run_from_service",
    "run_options_to_service",
    "step_from_service",
    "tools_to_service",
]


def _clean(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def content_to_service(backend: str, parts: Sequence[ContentPart]) -> list[dict[str, Any]]:
    """Message content parts as the service's ``MessageContent`` input list.

    Raises:
        UnsupportedOperation: tool calls, tool results, reasoning or URL-only files, which an
            Assistants/Foundry-classic thread cannot hold as message content (tool calls live in
            run steps there).
    """
    out: list[dict[str, Any]] = []
    for p in parts:
        match p:
            case TextContent():
                out.append({"type": "text", "text": p.text})
            case ImageUrlContent():
                out.append(
                    {"type": "image_url", "image_url": _clean({"url": p.url, "detail": p.detail})}
                )
            case ImageFileContent():
                out.append(
                    {
                        "type": "image_file",
                        "image_file": _clean({"file_id": p.file_id, "detail": p.detail}),
                    }
                )
            case FileContent():
                raise UnsupportedOperation(
                    backend,
                    "file content parts",
                    "attach files to a message with attachments=[Attachment(file_id=...)]",
                )
            case ToolCallContent() | ToolResultContent():
                raise UnsupportedOperation(
                    backend,
                    "tool calls or tool results as thread messages",
                    "the service keeps tool calls in run steps",
                )
            case ReasoningContent():
                raise UnsupportedOperation(backend, "reasoning content in thread messages")
            case _:  # pragma: no cover - exhaustive over ContentPart
                raise ValidationError(f"unknown content part {type(p).__name__}")
    return out


def message_body(
    backend: str,
    role: Role,
    content: Content,
    *,
    attachments: Sequence[Attachment] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The create-message request body (``role``, ``content``, ``attachments``, ``metadata``).

    Raises:
        UnsupportedOperation: a role other than user/assistant, or content the thread cannot
            hold (see :func:`content_to_service`).
        ValidationError: bad content or metadata.
    """
    if role not in ("user", "assistant"):
        raise UnsupportedOperation(backend, f"{role!r} messages", "use 'user' or 'assistant'")
    body: dict[str, Any] = {
        "role": role,
        "content": content_to_service(backend, normalize_content(role, content)),
    }
    if attachments:
        body["attachments"] = [{"file_id": a.file_id, "tools": a.tools} for a in attachments]
    meta = check_metadata(metadata)
    if meta:
        body["metadata"] = meta
    return body


def check_writable(backend: str, messages: Sequence[Message]) -> None:
    """Refuse, before anything is written, messages an Assistants-model thread cannot hold.

    Raises:
        UnsupportedOperation: a role other than user/assistant, or a tool call, tool result,
            reasoning or file part.
    """
    for m in messages:
        if m.role not in ("user", "assistant"):
            raise UnsupportedOperation(backend, f"{m.role!r} messages")
        content_to_service(backend, m.content)


def _content_from_service(
    items: Sequence[Mapping[str, Any]],
) -> tuple[list[ContentPart], list[Any]]:
    parts: list[ContentPart] = []
    unmapped: list[Any] = []
    for item in items:
        kind = item.get("type")
        if kind == "text":
            text = item.get("text") or {}
            if isinstance(text, Mapping):
                parts.append(
                    TextContent(
                        text=str(text.get("value", "")),
                        annotations=list(text.get("annotations") or []),
                    )
                )
            else:
                parts.append(TextContent(text=str(text)))
        elif kind == "image_file":
            f = item.get("image_file") or {}
            parts.append(
                ImageFileContent(file_id=str(f.get("file_id", "")), detail=f.get("detail"))
            )
        elif kind == "image_url":
            u = item.get("image_url") or {}
            parts.append(ImageUrlContent(url=str(u.get("url", "")), detail=u.get("detail")))
        else:
            unmapped.append(dict(item))
    return parts, unmapped


def message_from_service(d: Mapping[str, Any]) -> Message:
    """A service message object as a :class:`Message` (``seq`` 0: services have none).

    Content types threadkit has no part for (e.g. ``refusal``) are kept in
    ``provider_details["content"]``.
    """
    parts, unmapped = _content_from_service(d.get("content") or [])
    details: dict[str, Any] = {}
    if unmapped:
        details["content"] = unmapped
    if d.get("status") not in (None, "completed"):
        details["status"] = d.get("status")
    role = d.get("role", "user")
    if role not in ("user", "assistant"):
        raise ServiceError(f"the service returned a message with role {role!r}")
    return Message(
        id=str(d["id"]),
        thread_id=str(d.get("thread_id") or ""),
        role=role,
        content=parts,
        created_at=int(d.get("created_at") or 0),
        run_id=d.get("run_id"),
        agent_id=d.get("assistant_id") or d.get("agent_id"),
        attachments=[
            Attachment(file_id=str(a.get("file_id")), tools=list(a.get("tools") or []))
            for a in (d.get("attachments") or [])
            if a.get("file_id")
        ],
        metadata=dict(d.get("metadata") or {}),
        provider_details=details or None,
    )


def _tools_from_service(raw: Sequence[Mapping[str, Any]]) -> tuple[list[Tool], list[Any]]:
    tools: list[Tool] = []
    other: list[Any] = []
    for t in raw:
        if t.get("type") in ("function", "code_interpreter", "file_search"):
            tools.append(msgspec.convert(dict(t), Tool, strict=False))
        else:
            other.append(dict(t))
    return tools, other


def run_from_service(d: Mapping[str, Any]) -> Run:
    """A service run object as a :class:`Run` (``assistant_id`` → ``agent_id``).

    Hosted tools other than function/code_interpreter/file_search go to
    ``provider_details["tools"]``; the raw ``usage`` extras are kept there too.
    """
    data = dict(d)
    data["agent_id"] = data.pop("assistant_id", None) or data.pop("agent_id", None)
    tools, other = _tools_from_service(data.pop("tools", None) or [])
    trunc = data.get("truncation_strategy")
    if not isinstance(trunc, Mapping) or trunc.get("type") not in ("auto", "last_messages"):
        data.pop("truncation_strategy", None)
    for key in ("metadata",):
        if data.get(key) is None:
            data.pop(key, None)
    if data.get("parallel_tool_calls") is None:
        data.pop("parallel_tool_calls", None)
    details: dict[str, Any] = {}
    if other:
        details["tools"] = other
    try:
        run = msgspec.convert(data, Run, strict=False)
    except msgspec.ValidationError as exc:
        raise ServiceError(f"the service returned a run threadkit cannot read: {exc}") from exc
    return msgspec.structs.replace(run, tools=tools, provider_details=details or None)


def step_from_service(d: Mapping[str, Any]) -> RunStep:
    """A service run step as a :class:`RunStep`.

    Tool calls of hosted tools (code interpreter, file search...) are not function calls: they are
    kept in ``metadata``-free ``step_details`` only when they are functions; the others are
    dropped from ``tool_calls`` (their count is still visible in the service's own records).
    """
    data = dict(d)
    data["agent_id"] = data.pop("assistant_id", None) or data.pop("agent_id", None)
    details = dict(data.get("step_details") or {})
    if details.get("type") == "tool_calls":
        details["tool_calls"] = [
            c for c in (details.get("tool_calls") or []) if c.get("type") == "function"
        ]
    data["step_details"] = details
    if data.get("metadata") is None:
        data.pop("metadata", None)
    try:
        return msgspec.convert(data, RunStep, strict=False)
    except msgspec.ValidationError as exc:
        raise ServiceError(f"the service returned a run step threadkit cannot read: {exc}") from exc


def tools_to_service(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    """Tool definitions as the service's JSON (the same shape: ``{"type": "function", ...}``)."""
    out: list[dict[str, Any]] = []
    for t in tools:
        d = msgspec.to_builtins(t)
        if isinstance(t, FunctionTool):
            d["function"] = _clean(d["function"])
        out.append(d)
    return out


_RUN_KEYS = {
    "model",
    "instructions",
    "additional_instructions",
    "metadata",
    "temperature",
    "top_p",
    "max_prompt_tokens",
    "max_completion_tokens",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
}


def run_options_to_service(backend: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``create_run`` options as the service's create-run body fields.

    Raises:
        ValidationError: an unknown option.
        UnsupportedOperation: ``truncation_strategy`` ``none`` (the services know only
            ``auto`` and ``last_messages``), or additional messages the service cannot hold.
    """
    body: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key in _RUN_KEYS:
            body[key] = value
        elif key == "tools":
            body["tools"] = tools_to_service(value)
        elif key == "truncation_strategy":
            ts: TruncationStrategy = value
            if ts.type == "none":
                raise UnsupportedOperation(backend, "truncation_strategy 'none'")
            body["truncation_strategy"] = _clean(msgspec.to_builtins(ts))
        elif key == "additional_messages":
            body["additional_messages"] = [
                _clean(
                    {
                        "role": m.role,
                        "content": content_to_service(backend, m.content),
                        "metadata": m.metadata or None,
                    }
                )
                for m in value
            ]
        else:
            raise ValidationError(f"unknown run option {key!r}")
    return body


def agent_fingerprint(agent: Agent, model: str | None) -> str:
    """A stable digest of an agent definition, to reuse one service agent per definition."""
    data = msgspec.json.encode(
        [
            agent.name,
            model or agent.model,
            agent.instructions,
            agent.description,
            msgspec.to_builtins(agent.tools),
            agent.temperature,
            agent.top_p,
            agent.response_format,
        ]
    )
    return hashlib.blake2b(data, digest_size=10).hexdigest()
