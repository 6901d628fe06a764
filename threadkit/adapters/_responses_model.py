"""The Responses-API object model, shared by the ``responses`` and ``foundry-agents`` adapters.

OpenAI's Responses API and Foundry's new agents (``azure-ai-projects`` 2.x, whose
``get_openai_client()`` speaks the same protocol) share one wire model: input and output ITEMS
(``message``, ``reasoning``, ``function_call``, ``function_call_output``...) instead of thread
messages, a ``Response`` object instead of a run, conversations instead of threads
(``openai-openapi.json``: ``CreateResponse``, ``Response``, ``InputItem``, ``OutputItem``,
``ConversationItem``). These functions map between those JSON objects (plain dicts, from
``model_dump()``) and threadkit's types:

======================================== ====================================================
threadkit                                Responses API
======================================== ====================================================
user/system message, text/image/file     ``message`` item, ``input_text`` / ``input_image`` /
parts                                    ``input_file`` content
assistant message text                   ``message`` item (role assistant), ``output_text``
:class:`ReasoningContent`                ``reasoning`` item (``encrypted_content``, summary)
:class:`ToolCallContent`                 ``function_call`` item (``call_id``, ``name``,
                                         ``arguments``)
``tool`` message, :class:`ToolResultContent` ``function_call_output`` item
:class:`FunctionTool`                    flat ``{"type": "function", "name", "parameters"...}``
``max_completion_tokens``                ``max_output_tokens``
``response_format``                      ``text.format``
``usage.prompt/completion_tokens``       ``usage.input/output_tokens``
======================================== ====================================================
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from threadkit.errors import ServiceError, UnsupportedOperation, ValidationError
from threadkit.types import (
    CodeInterpreterTool,
    ContentPart,
    FileContent,
    FileSearchTool,
    FunctionTool,
    ImageFileContent,
    ImageUrlContent,
    IncompleteDetails,
    LastError,
    Message,
    ReasoningContent,
    RunStatus,
    TextContent,
    Tool,
    ToolCallContent,
    ToolResultContent,
    Usage,
)

__all__ = [
    "RESPONSE_STATUSES",
    "Turn",
    "definition_fingerprint",
    "incomplete_from_response",
    "item_to_message",
    "last_error_from_response",
    "message_to_items",
    "messages_to_items",
    "parse_output",
    "response_format_to_text",
    "tool_choice_to_request",
    "tools_to_request",
    "usage_from_response",
]

_ROLE_KEY = "threadkit.role"

RESPONSE_STATUSES: dict[str, RunStatus] = {
    "queued": RunStatus.QUEUED,
    "in_progress": RunStatus.IN_PROGRESS,
    "completed": RunStatus.COMPLETED,
    "incomplete": RunStatus.INCOMPLETE,
    "failed": RunStatus.FAILED,
    "cancelled": RunStatus.CANCELLED,
}
"""A ``Response.status`` → the run status it means (``completed`` with function calls is
``requires_action``, decided by the caller)."""


def _clean(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


# --------------------------------------------------------------------------- messages → items


def _input_content(backend: str, role: str, parts: Sequence[ContentPart]) -> list[dict[str, Any]]:
    """Message parts as ``message`` item content (tool and reasoning parts excluded)."""
    out: list[dict[str, Any]] = []
    assistant = role == "assistant"
    for p in parts:
        match p:
            case TextContent():
                if assistant:
                    out.append({"type": "output_text", "text": p.text, "annotations": []})
                else:
                    out.append({"type": "input_text", "text": p.text})
            case ImageUrlContent() | ImageFileContent() | FileContent() if assistant:
                raise UnsupportedOperation(
                    backend,
                    "images or files in assistant messages",
                    "the Responses API takes only output text in assistant message items",
                )
            case ImageUrlContent():
                out.append(
                    {"type": "input_image", "image_url": p.url, "detail": p.detail or "auto"}
                )
            case ImageFileContent():
                out.append(
                    {"type": "input_image", "file_id": p.file_id, "detail": p.detail or "auto"}
                )
            case FileContent():
                part: dict[str, Any] = {"type": "input_file"}
                if p.file_id:
                    part["file_id"] = p.file_id
                elif p.url and p.url.startswith("data:"):
                    part["file_data"] = p.url
                elif p.url:
                    part["file_url"] = p.url
                else:
                    raise ValidationError("a file part needs a file_id or a url")
                if p.filename:
                    part["filename"] = p.filename
                out.append(part)
            case ToolCallContent() | ToolResultContent() | ReasoningContent():
                pass  # separate items
            case _:  # pragma: no cover - exhaustive over ContentPart
                raise ValidationError(f"unknown content part {type(p).__name__}")
    return out


def message_to_items(backend: str, m: Message) -> list[dict[str, Any]]:
    """One threadkit message as Responses input items, in order.

    A ``tool`` message becomes one ``function_call_output`` item per result; an assistant
    message becomes its reasoning items (only those carrying ``encrypted_content`` and an id,
    which is all a service can resolve), then one ``message`` item for its text, then one
    ``function_call`` item per tool call; a user or system message becomes one ``message``
    item (``developer`` kept where the message came from one).

    Raises:
        UnsupportedOperation: images or files in an assistant message; attachments.
        ValidationError: a file part with neither file id nor url.
    """
    if m.attachments:
        raise UnsupportedOperation(
            backend,
            "message attachments",
            "the Responses API has no attachments; put files in input_file content parts",
        )
    if m.role == "tool":
        return [
            {"type": "function_call_output", "call_id": r.tool_call_id, "output": r.output}
            for r in m.tool_results
        ]
    items: list[dict[str, Any]] = []
    if m.role == "assistant":
        for p in m.content:
            if isinstance(p, ReasoningContent) and p.encrypted_content and p.id:
                items.append(
                    {
                        "type": "reasoning",
                        "id": p.id,
                        "summary": [{"type": "summary_text", "text": t} for t in p.summary],
                        "encrypted_content": p.encrypted_content,
                    }
                )
    content = _input_content(backend, m.role, m.content)
    if content:
        role = (m.provider_details or {}).get(_ROLE_KEY) or m.role
        items.append({"type": "message", "role": role, "content": content})
    for c in m.tool_calls:
        items.append(
            {"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments}
        )
    return items


def messages_to_items(backend: str, messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages (oldest first) as one input item list, in order (see :func:`message_to_items`)."""
    return [item for m in messages for item in message_to_items(backend, m)]


# --------------------------------------------------------------------------- items → messages


def _parts_from_content(content: Any) -> tuple[list[ContentPart], list[Any]]:
    if isinstance(content, str):
        return [TextContent(text=content)], []
    parts: list[ContentPart] = []
    other: list[Any] = []
    for c in content or []:
        kind = c.get("type") if isinstance(c, Mapping) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append(
                TextContent(
                    text=str(c.get("text") or ""),
                    annotations=[dict(a) for a in (c.get("annotations") or [])],
                )
            )
        elif kind == "input_image" and c.get("image_url"):
            parts.append(ImageUrlContent(url=str(c["image_url"]), detail=c.get("detail")))
        elif kind == "input_image" and c.get("file_id"):
            parts.append(ImageFileContent(file_id=str(c["file_id"]), detail=c.get("detail")))
        elif kind == "input_file":
            parts.append(
                FileContent(
                    file_id=c.get("file_id") or None,
                    filename=c.get("filename") or None,
                    url=c.get("file_url") or c.get("file_data") or None,
                )
            )
        else:
            other.append(dict(c) if isinstance(c, Mapping) else c)
    return parts, other


def item_to_message(item: Mapping[str, Any], thread_id: str) -> Message:
    """A conversation item as a :class:`Message` (one message per item, id = the item id).

    ``message`` items keep their role (``developer`` → ``system``, with the original role in
    ``provider_details["threadkit.role"]``); a ``function_call`` is an assistant message with
    one tool-call part, a ``function_call_output`` a ``tool`` message, a ``reasoning`` item an
    assistant message with one reasoning part. Other item kinds (hosted tool calls...) are
    assistant messages without parts, the item kept in ``provider_details["item"]``. Content
    threadkit has no part for (``refusal``...) is kept in ``provider_details["content"]``.
    ``created_at`` is 0: conversation items carry no time.
    """
    kind = item.get("type") or ("message" if "role" in item else None)
    iid = str(item.get("id") or "")
    details: dict[str, Any] = {"item_type": kind}
    if item.get("status") not in (None, "completed"):
        details["status"] = item.get("status")
    content: list[ContentPart] = []
    role: Any = "assistant"
    if kind == "message":
        raw_role = item.get("role")
        if raw_role == "developer":
            role = "system"
            details[_ROLE_KEY] = "developer"
        elif raw_role in ("user", "assistant", "system"):
            role = raw_role
        else:
            raise ServiceError(f"the service returned a message item with role {raw_role!r}")
        content, other = _parts_from_content(item.get("content"))
        if other:
            details["content"] = other
    elif kind == "function_call":
        content = [
            ToolCallContent(
                id=str(item.get("call_id") or ""),
                name=str(item.get("name") or ""),
                arguments=str(item.get("arguments") or "{}"),
            )
        ]
    elif kind == "function_call_output":
        role = "tool"
        out = item.get("output")
        if not isinstance(out, str):
            out = "".join(str(p.get("text", "")) for p in (out or []) if isinstance(p, Mapping))
        content = [ToolResultContent(tool_call_id=str(item.get("call_id") or ""), output=out)]
    elif kind == "reasoning":
        content = [_reasoning(item)]
    else:
        details["item"] = dict(item)
    return Message(
        id=iid,
        thread_id=thread_id,
        role=role,
        content=content,
        provider_details=details,
    )


def _reasoning(item: Mapping[str, Any]) -> ReasoningContent:
    summary = [
        str(s.get("text", "")) for s in (item.get("summary") or []) if isinstance(s, Mapping)
    ]
    return ReasoningContent(
        id=item.get("id") or None,
        encrypted_content=item.get("encrypted_content") or None,
        summary=summary,
    )


class Turn(msgspec.Struct, kw_only=True):
    """What one response produced, from its ``output`` items.

    Attributes:
        content: the assistant turn as parts, in output order: reasoning, text (one part per
            ``output_text``), tool calls.
        message_item_ids: the ids of the output ``message`` items, in order.
        call_item_ids: the ids of the ``function_call`` items, in order.
        reasoning_item_ids: the ids of the ``reasoning`` items, in order.
        other: output items threadkit has no part for (hosted tool calls...), verbatim.
    """

    content: list[ContentPart] = []
    message_item_ids: list[str] = []
    call_item_ids: list[str] = []
    reasoning_item_ids: list[str] = []
    other: list[dict[str, Any]] = []

    @property
    def calls(self) -> list[ToolCallContent]:
        """The function calls of the turn, in order."""
        return [p for p in self.content if isinstance(p, ToolCallContent)]

    @property
    def has_message(self) -> bool:
        """Whether the turn wrote text (or reasoning) besides its calls."""
        return any(isinstance(p, TextContent | ReasoningContent) for p in self.content)


def parse_output(output: Sequence[Mapping[str, Any]]) -> Turn:
    """A response's ``output`` items as a :class:`Turn`."""
    turn = Turn()
    for item in output:
        kind = item.get("type")
        iid = str(item.get("id") or "")
        if kind == "message" and item.get("role", "assistant") == "assistant":
            parts, other = _parts_from_content(item.get("content"))
            turn.content.extend(p for p in parts if isinstance(p, TextContent))
            for c in other:
                if isinstance(c, Mapping) and c.get("type") == "refusal":
                    turn.content.append(TextContent(text=str(c.get("refusal") or "")))
            turn.message_item_ids.append(iid)
        elif kind == "function_call":
            turn.content.append(
                ToolCallContent(
                    id=str(item.get("call_id") or ""),
                    name=str(item.get("name") or ""),
                    arguments=str(item.get("arguments") or "{}"),
                )
            )
            turn.call_item_ids.append(iid)
        elif kind == "reasoning":
            turn.content.append(_reasoning(item))
            turn.reasoning_item_ids.append(iid)
        else:
            turn.other.append(dict(item))
    # reasoning first, then text, then calls (the order a model turn is stored in)
    order = {ReasoningContent: 0, TextContent: 1, ToolCallContent: 2}
    turn.content.sort(key=lambda p: order.get(type(p), 1))
    return turn


# --------------------------------------------------------------------------- responses → runs


def usage_from_response(resp: Mapping[str, Any]) -> Usage | None:
    """``Response.usage`` (input/output tokens) as a :class:`Usage`, or None."""
    u = resp.get("usage")
    if not isinstance(u, Mapping):
        return None
    prompt = int(u.get("input_tokens") or 0)
    completion = int(u.get("output_tokens") or 0)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(u.get("total_tokens") or prompt + completion),
    )


def last_error_from_response(resp: Mapping[str, Any]) -> LastError:
    """``Response.error`` as a :class:`LastError` (``server_error`` when the service gave none)."""
    err = resp.get("error")
    if isinstance(err, Mapping):
        return LastError(
            code=str(err.get("code") or "server_error"),
            message=str(err.get("message") or "the response failed"),
        )
    return LastError(code="server_error", message="the response failed")


def incomplete_from_response(resp: Mapping[str, Any]) -> IncompleteDetails:
    """``Response.incomplete_details`` as :class:`IncompleteDetails`
    (``max_output_tokens`` → ``max_completion_tokens``, as the Assistants specs name it)."""
    raw = resp.get("incomplete_details")
    reason = str(raw.get("reason") or "") if isinstance(raw, Mapping) else ""
    if reason in ("", "max_output_tokens"):
        reason = "max_completion_tokens"
    return IncompleteDetails(reason=reason)


# --------------------------------------------------------------------------- requests


def tools_to_request(backend: str, tools: Sequence[Tool]) -> list[dict[str, Any]]:
    """Tool definitions as Responses ``tools``: flat function tools, hosted tools by type.

    Raises:
        UnsupportedOperation: ``file_search`` without ``vector_store_ids`` (the Responses API
            attaches vector stores to the tool, not to the thread).
    """
    out: list[dict[str, Any]] = []
    for t in tools:
        match t:
            case FunctionTool():
                f = t.function
                out.append(
                    _clean(
                        {
                            "type": "function",
                            "name": f.name,
                            "description": f.description,
                            "parameters": f.parameters,
                            "strict": f.strict,
                        }
                    )
                )
            case CodeInterpreterTool():
                out.append({"type": "code_interpreter", "container": {"type": "auto"}})
            case FileSearchTool():
                spec = dict(t.file_search or {})
                if not spec.get("vector_store_ids"):
                    raise UnsupportedOperation(
                        backend,
                        "file_search without vector_store_ids",
                        "give FileSearchTool(file_search={'vector_store_ids': [...]})",
                    )
                out.append({"type": "file_search", **spec})
            case _:  # pragma: no cover - exhaustive over Tool
                raise ValidationError(f"unknown tool {type(t).__name__}")
    return out


def tool_choice_to_request(choice: str | Mapping[str, Any]) -> str | dict[str, Any]:
    """An Assistants-style ``tool_choice`` as the Responses form
    (``{"type": "function", "function": {"name": n}}`` → ``{"type": "function", "name": n}``).

    Raises:
        ValidationError: an unknown string or shape.
    """
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise ValidationError(f"tool_choice {choice!r} is not 'auto', 'none' or 'required'")
        return choice
    if choice.get("type") == "function":
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, Mapping) else choice.get("name")
        if not isinstance(name, str) or not name:
            raise ValidationError("a function tool_choice needs the function's name")
        return {"type": "function", "name": name}
    return dict(choice)


def response_format_to_text(fmt: str | Mapping[str, Any]) -> dict[str, Any] | None:
    """An Assistants-style ``response_format`` as the Responses ``text`` field (None: default).

    Raises:
        ValidationError: an unknown format.
    """
    if isinstance(fmt, str):
        if fmt != "auto":
            raise ValidationError(f"response_format {fmt!r} is not 'auto' or a format object")
        return None
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        return {"format": {"type": kind}}
    if kind == "json_schema":
        schema = fmt.get("json_schema") if isinstance(fmt.get("json_schema"), Mapping) else fmt
        assert isinstance(schema, Mapping)
        body = {k: schema[k] for k in ("name", "schema", "strict", "description") if k in schema}
        return {"format": {"type": "json_schema", **body}}
    raise ValidationError(f"response_format type {kind!r} is not supported")


def definition_fingerprint(definition: Mapping[str, Any]) -> str:
    """A stable digest of an agent definition (to create one service agent version per
    definition)."""
    data = msgspec.json.encode(dict(definition), order="sorted")
    return hashlib.blake2b(data, digest_size=10).hexdigest()
