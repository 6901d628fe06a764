"""The Conversations API of ``threadkit serve``, and the mapping between Responses-API items and
threadkit messages that the Responses surface (:mod:`threadkit.server.responses`) shares.

Served under ``/v1`` and under ``/api/projects/{project}/openai/v1`` (the base URL
``azure-ai-projects`` 2.x ``AIProjectClient.get_openai_client()`` hands out), following
``createConversation``, ``getConversation``, ``updateConversation``, ``deleteConversation``,
``createConversationItems``, ``listConversationItems``, ``getConversationItem`` and
``deleteConversationItem`` in ``openai-openapi.json``.

**A conversation is a threadkit thread.** Its id (``conv_...``) is the thread id, its metadata the
thread's metadata, and a stored object of kind ``"conversation"`` marks the thread as one (so a
plain Assistants thread is not a conversation, and the marker survives restarts). Its items are
the thread's messages, oldest first by ``seq``:

====================================== =============================================================
item                                   message
====================================== =============================================================
``message`` (user, system, developer)  a ``user`` / ``system`` message; ``developer`` is kept as
                                       ``system`` with ``provider_details["threadkit.role"]``;
                                       ``input_text`` ↔ text, ``input_image`` ↔ image url / file,
                                       ``input_file`` ↔ file (``file_data`` kept as a ``data:`` url)
``message`` (assistant)                an ``assistant`` message; ``output_text`` ↔ text
``reasoning``                          a reasoning part of an assistant message (encrypted content
                                       and summary texts carried)
``function_call``                      a tool-call part of an assistant message
``function_call_output``               a ``tool`` message holding the tool result
====================================== =============================================================

Consecutive assistant-side items (reasoning, then at most one assistant message, then function
calls) form ONE assistant message, as the run engine stores a model turn; a message therefore
expands to one or more items. Item ids are stable and name their message:

* the message item: the message id;
* the k-th function call of a message: ``fc_<k>_<message id>``;
* the k-th reasoning part: ``rs_<k>_<message id>``;
* a tool result: the tool message's id (the k-th result for k > 0: ``fco_<k>_<message id>``).

Ids given on incoming items are not kept; the server assigns its own. Deleting an item deletes
its message, so an item that shares its message with other items (a function call next to text)
cannot be deleted alone (400), and nor can a function call whose output is still in the
conversation (the store refuses to orphan a tool result). Lists default to ``desc`` and
paginate with ``after`` (an item id); items are added with at most 20 per request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from threadkit._ids import new_id
from threadkit.errors import MessageNotFoundError, ObjectNotFoundError, ValidationError
from threadkit.server.common import (
    ApiError,
    PageParams,
    json_response,
    list_body,
    page_params,
    read_body,
)
from threadkit.server.state import ServerState
from threadkit.stores.base import check_metadata
from threadkit.types import (
    ContentPart,
    FileContent,
    ImageFileContent,
    ImageUrlContent,
    Message,
    ReasoningContent,
    TextContent,
    ThreadInfo,
    ToolCallContent,
    ToolResultContent,
)

__all__ = [
    "CONVERSATION_KIND",
    "MAX_ITEMS_PER_REQUEST",
    "conversation_to_wire",
    "ensure_conversation",
    "item_text",
    "items_to_messages",
    "list_items",
    "message_items",
    "parse_item_id",
    "routes",
]

CONVERSATION_KIND = "conversation"
"""The stored-object kind that marks a thread as a conversation (data: ``{"v": 1}``)."""

MAX_ITEMS_PER_REQUEST = 20
"""At most this many items per ``POST /conversations`` or ``POST .../items`` (the spec's limit)."""

_ROLE_KEY = "threadkit.role"
_MARKER = msgspec.json.encode({"v": 1})
_DERIVED = re.compile(r"^(fc|fco|rs)_(\d+)_(.+)$", re.DOTALL)
_IMAGE_DETAILS = ("auto", "low", "high")


class CreateConversationBody(msgspec.Struct, kw_only=True):
    """``CreateConversationBody``: optional metadata and up to 20 starting items."""

    metadata: dict[str, str] | None = None
    items: list[dict[str, Any]] | None = None


class UpdateConversationBody(msgspec.Struct, kw_only=True):
    """``UpdateConversationBody``: the new metadata (required)."""

    metadata: dict[str, str]


class CreateItemsBody(msgspec.Struct, kw_only=True):
    """The body of ``createConversationItems``: up to 20 items."""

    items: list[dict[str, Any]]


# --------------------------------------------------------------------------- items → messages


def _detail(raw: Any, where: str) -> Literal["auto", "low", "high"] | None:
    if raw is None:
        return None
    if raw not in _IMAGE_DETAILS:
        raise ValidationError(f"{where}.detail must be 'auto', 'low' or 'high' here, not {raw!r}")
    return raw  # type: ignore[no-any-return]


def _content_parts(content: Any, where: str) -> list[ContentPart]:
    """Message content (a string or a list of content parts) → threadkit parts."""
    if isinstance(content, str):
        return [TextContent(text=content)]
    if not isinstance(content, list):
        raise ValidationError(f"{where} must be a string or a list of content parts")
    parts: list[ContentPart] = []
    for j, raw in enumerate(content):
        at = f"{where}[{j}]"
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind in ("input_text", "output_text", "text", "refusal"):
            text = raw.get("refusal") if kind == "refusal" else raw.get("text")
            if not isinstance(text, str):
                raise ValidationError(f"{at}.text must be a string")
            notes = raw.get("annotations") or []
            parts.append(TextContent(text=text, annotations=list(notes)))
        elif kind == "input_image":
            url, file_id = raw.get("image_url"), raw.get("file_id")
            detail = _detail(raw.get("detail"), at)
            if isinstance(url, str) and url:
                parts.append(ImageUrlContent(url=url, detail=detail))
            elif isinstance(file_id, str) and file_id:
                parts.append(ImageFileContent(file_id=file_id, detail=detail))
            else:
                raise ValidationError(f"{at} needs an image_url or a file_id")
        elif kind == "input_file":
            file_id, url = raw.get("file_id"), raw.get("file_url") or raw.get("file_data")
            if not (isinstance(file_id, str) and file_id) and not (isinstance(url, str) and url):
                raise ValidationError(f"{at} needs a file_id, file_url or file_data")
            name = raw.get("filename")
            parts.append(
                FileContent(
                    file_id=file_id if isinstance(file_id, str) and file_id else None,
                    filename=name if isinstance(name, str) else None,
                    url=url if isinstance(url, str) and url else None,
                )
            )
        else:
            raise ValidationError(
                f"{at}: content type {kind!r} is not supported; use input_text, output_text, "
                "input_image or input_file"
            )
    return parts


def _output_text(raw: Any, where: str) -> str:
    """A ``function_call_output`` output (a string, or text parts) → text."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):
        texts: list[str] = []
        for j, part in enumerate(raw):
            if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text"):
                raise ValidationError(
                    f"{where}[{j}]: only text parts are supported in a function_call_output"
                )
            texts.append(str(part.get("text", "")))
        return "\n".join(texts)
    raise ValidationError(f"{where} must be a string or a list of text parts")


def items_to_messages(
    items: Sequence[Any], *, param: str = "input", thread_id: str = ""
) -> list[Message]:
    """Responses-API input items → unsaved messages with fresh ids, in order.

    See the module docstring for the mapping and the grouping of assistant-side items.

    Args:
        items: ``message`` (also the short form without ``type``), ``reasoning``,
            ``function_call`` and ``function_call_output`` items.
        param: the request field the items came in (for error messages).
        thread_id: the thread the messages are for (may be empty).

    Returns:
        Messages with ids set (``msg_...``) and ``seq`` 0.

    Raises:
        ValidationError: an unsupported item or content type, or a malformed item.
    """
    out: list[Message] = []
    group: Message | None = None  # the open assistant message
    phase = 0  # of the open group: 0 reasoning, 1 text, 2 function calls

    def new(role: Any, parts: list[ContentPart], details: dict[str, Any] | None) -> Message:
        m = Message(
            id=new_id("msg"),
            thread_id=thread_id,
            role=role,
            content=parts,
            provider_details=details,
        )
        out.append(m)
        return m

    for i, raw in enumerate(items):
        at = f"{param}[{i}]"
        if not isinstance(raw, dict):
            raise ValidationError(f"{at} must be an object")
        kind = raw.get("type") or ("message" if "role" in raw else None)
        if kind == "message":
            role = raw.get("role")
            parts = _content_parts(raw.get("content"), f"{at}.content")
            if role == "assistant":
                if group is None or phase >= 1:
                    group = new("assistant", [], None)
                group.content.extend(parts)
                phase = 1
                continue
            group = None
            if role == "user" or role == "system":
                new(role, parts, None)
            elif role == "developer":
                new("system", parts, {_ROLE_KEY: "developer"})
            else:
                raise ValidationError(
                    f"{at}.role must be 'user', 'assistant', 'system' or 'developer', not {role!r}"
                )
        elif kind == "function_call":
            call_id, name = raw.get("call_id"), raw.get("name")
            arguments = raw.get("arguments", "{}")
            if not isinstance(call_id, str) or not call_id:
                raise ValidationError(f"{at}.call_id is required")
            if not isinstance(name, str) or not name:
                raise ValidationError(f"{at}.name is required")
            if not isinstance(arguments, str):
                raise ValidationError(f"{at}.arguments must be a JSON string")
            if group is None:
                group = new("assistant", [], None)
            group.content.append(ToolCallContent(id=call_id, name=name, arguments=arguments))
            phase = 2
        elif kind == "reasoning":
            summary = raw.get("summary") or []
            if not isinstance(summary, list):
                raise ValidationError(f"{at}.summary must be a list")
            texts = [str(s.get("text", "")) for s in summary if isinstance(s, dict)]
            encrypted = raw.get("encrypted_content")
            rid = raw.get("id")
            if group is None or phase > 0:
                group = new("assistant", [], None)
            group.content.append(
                ReasoningContent(
                    id=rid if isinstance(rid, str) else None,
                    encrypted_content=encrypted if isinstance(encrypted, str) else None,
                    summary=texts,
                )
            )
        elif kind == "function_call_output":
            call_id = raw.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise ValidationError(f"{at}.call_id is required")
            output = _output_text(raw.get("output"), f"{at}.output")
            group = None
            new("tool", [ToolResultContent(tool_call_id=call_id, output=output)], None)
        else:
            raise ValidationError(
                f"{at}: item type {kind!r} is not supported by threadkit serve; use message, "
                "function_call, function_call_output or reasoning items"
            )
    return out


# --------------------------------------------------------------------------- messages → items


def _role(m: Message) -> str:
    details = m.provider_details or {}
    role = details.get(_ROLE_KEY)
    return role if isinstance(role, str) else m.role


def _content_to_wire(m: Message) -> list[dict[str, Any]]:
    assistant = m.role == "assistant"
    out: list[dict[str, Any]] = []
    for p in m.content:
        if isinstance(p, TextContent):
            if assistant:
                out.append(
                    {
                        "type": "output_text",
                        "text": p.text,
                        "annotations": p.annotations,
                        "logprobs": [],
                    }
                )
            else:
                out.append({"type": "input_text", "text": p.text})
        elif isinstance(p, ImageUrlContent):
            out.append(
                {
                    "type": "input_image",
                    "image_url": p.url,
                    "file_id": None,
                    "detail": p.detail or "auto",
                }
            )
        elif isinstance(p, ImageFileContent):
            out.append(
                {
                    "type": "input_image",
                    "image_url": None,
                    "file_id": p.file_id,
                    "detail": p.detail or "auto",
                }
            )
        elif isinstance(p, FileContent):
            part: dict[str, Any] = {"type": "input_file", "file_id": p.file_id}
            if p.filename is not None:
                part["filename"] = p.filename
            if p.url is not None:
                part["file_data" if p.url.startswith("data:") else "file_url"] = p.url
            out.append(part)
    return out


def _is_message_part(p: ContentPart) -> bool:
    return isinstance(p, (TextContent, ImageUrlContent, ImageFileContent, FileContent))


def message_items(m: Message, status: str = "completed") -> list[dict[str, Any]]:
    """A stored message → its Responses-API items, in order (see the module docstring).

    The shapes are the spec's ``Message`` / ``OutputMessage``, ``FunctionToolCallResource``,
    ``FunctionToolCallOutputResource`` and ``ReasoningItem``, each with ``status``.
    """
    items: list[dict[str, Any]] = []
    if m.role == "tool":
        for k, r in enumerate(m.tool_results):
            items.append(
                {
                    "type": "function_call_output",
                    "id": m.id if k == 0 else f"fco_{k}_{m.id}",
                    "call_id": r.tool_call_id,
                    "output": r.output,
                    "status": status,
                }
            )
        return items
    calls = reasons = 0
    emitted = False
    for p in m.content:
        if isinstance(p, ToolCallContent):
            items.append(
                {
                    "type": "function_call",
                    "id": f"fc_{calls}_{m.id}",
                    "call_id": p.id,
                    "name": p.name,
                    "arguments": p.arguments,
                    "status": status,
                }
            )
            calls += 1
        elif isinstance(p, ReasoningContent):
            items.append(
                {
                    "type": "reasoning",
                    "id": f"rs_{reasons}_{m.id}",
                    "summary": [{"type": "summary_text", "text": t} for t in p.summary],
                    "encrypted_content": p.encrypted_content,
                    "status": status,
                }
            )
            reasons += 1
        elif isinstance(p, ToolResultContent):
            continue  # results live in tool messages
        elif not emitted and _is_message_part(p):
            emitted = True
            items.append(
                {
                    "type": "message",
                    "id": m.id,
                    "status": status,
                    "role": _role(m),
                    "content": _content_to_wire(m),
                }
            )
    if not items:
        items.append(
            {"type": "message", "id": m.id, "status": status, "role": _role(m), "content": []}
        )
    return items


def item_text(items: Sequence[dict[str, Any]]) -> str:
    """The concatenated ``output_text`` of the assistant message items among ``items``."""
    return "".join(
        c.get("text", "")
        for it in items
        if it.get("type") == "message"
        for c in it.get("content", [])
        if c.get("type") == "output_text"
    )


def parse_item_id(item_id: str) -> str:
    """The id of the message an item id belongs to (see the module docstring)."""
    match = _DERIVED.match(item_id)
    return match.group(3) if match else item_id


# --------------------------------------------------------------------------- conversations


def conversation_to_wire(info: ThreadInfo) -> dict[str, Any]:
    """A conversation thread → ``ConversationResource``."""
    return {
        "id": info.id,
        "object": "conversation",
        "created_at": info.created_at,
        "metadata": info.metadata,
    }


async def ensure_conversation(st: ServerState, conversation_id: str) -> ThreadInfo:
    """The thread of conversation ``conversation_id``.

    Raises:
        ApiError: 404 when no such conversation exists (a plain thread is not one).
    """
    try:
        await st.store.get_object(CONVERSATION_KIND, conversation_id)
    except ObjectNotFoundError as exc:
        raise ApiError(
            404, f"Conversation with id '{conversation_id}' not found.", param="conversation_id"
        ) from exc
    return await st.store.get_thread(conversation_id)


def _state(request: Request) -> ServerState:
    st: ServerState = request.app.state.threadkit
    return st


def _too_many(items: Sequence[Any]) -> None:
    if len(items) > MAX_ITEMS_PER_REQUEST:
        raise ApiError(
            400,
            f"You may add at most {MAX_ITEMS_PER_REQUEST} items at a time; got {len(items)}.",
            param="items",
        )


async def _check_idle(st: ServerState, thread_id: str) -> None:
    active = await st.store.get_active_run(thread_id)
    if active is not None and (await st.engine.refresh(active)).status.is_active:
        raise ApiError(
            400,
            f"Conversation {thread_id} has a response in progress; wait for it to finish "
            "before adding items.",
            code="conversation_locked",
        )


async def create_conversation(request: Request) -> Response:
    st = _state(request)
    body = await read_body(request, CreateConversationBody, st.max_body_bytes)
    items = body.items or []
    _too_many(items)
    metadata = check_metadata(body.metadata)
    cid = new_id("conv")
    messages = items_to_messages(items, param="items", thread_id=cid)
    info = await st.store.create_thread(thread_id=cid, metadata=metadata)
    try:
        if messages:
            await st.store.append(cid, messages)
        await st.store.put_object(CONVERSATION_KIND, cid, _MARKER)
    except Exception:
        await st.store.delete_thread(cid)
        raise
    return json_response(conversation_to_wire(info))


async def get_conversation(request: Request) -> Response:
    st = _state(request)
    info = await ensure_conversation(st, request.path_params["conversation_id"])
    return json_response(conversation_to_wire(info))


async def update_conversation(request: Request) -> Response:
    st = _state(request)
    cid = request.path_params["conversation_id"]
    body = await read_body(request, UpdateConversationBody, st.max_body_bytes)
    await ensure_conversation(st, cid)
    info = await st.store.update_thread(cid, metadata=check_metadata(body.metadata))
    return json_response(conversation_to_wire(info))


async def delete_conversation(request: Request) -> Response:
    st = _state(request)
    cid = request.path_params["conversation_id"]
    await ensure_conversation(st, cid)
    await st.store.delete_thread(cid)
    await st.store.delete_object(CONVERSATION_KIND, cid)
    return json_response({"id": cid, "object": "conversation.deleted", "deleted": True})


async def create_items(request: Request) -> Response:
    st = _state(request)
    cid = request.path_params["conversation_id"]
    body = await read_body(request, CreateItemsBody, st.max_body_bytes)
    _too_many(body.items)
    if not body.items:
        raise ApiError(400, "items must hold at least one item.", param="items")
    messages = items_to_messages(body.items, param="items", thread_id=cid)
    await ensure_conversation(st, cid)
    await _check_idle(st, cid)
    stored = await st.store.append(cid, messages)
    data = [item for m in stored for item in message_items(m)]
    return json_response(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": False,
        }
    )


async def list_items(
    st: ServerState, thread_id: str, params: PageParams
) -> tuple[list[dict[str, Any]], bool]:
    """One page of a thread's items in ``params.order``, after the item ``params.after``.

    Returns:
        The items (at most ``params.limit``) and whether more follow.

    Raises:
        ApiError: 400 when ``after`` names no item of the thread.
    """
    order = params.order
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    if params.after:
        mid = parse_item_id(params.after)
        try:
            anchor = await st.store.get_message(thread_id, mid)
        except MessageNotFoundError as exc:
            raise ApiError(
                400,
                f"Invalid 'after': no item '{params.after}' in this conversation.",
                param="after",
            ) from exc
        items = message_items(anchor)
        if order == "desc":
            items.reverse()
        ids = [it["id"] for it in items]
        if params.after not in ids:
            raise ApiError(
                400,
                f"Invalid 'after': no item '{params.after}' in this conversation.",
                param="after",
            )
        out.extend(items[ids.index(params.after) + 1 :])
        cursor = mid
    while len(out) <= params.limit:
        page = await st.store.list_messages(
            thread_id, order=order, limit=params.limit + 1, after=cursor
        )
        for m in page.data:
            items = message_items(m)
            if order == "desc":
                items.reverse()
            out.extend(items)
        if not page.has_more or not page.data:
            break
        cursor = page.data[-1].id
    return out[: params.limit], len(out) > params.limit


async def list_conversation_items(request: Request) -> Response:
    st = _state(request)
    cid = request.path_params["conversation_id"]
    params = page_params(request)
    await ensure_conversation(st, cid)
    data, has_more = await list_items(st, cid, params)
    return json_response(list_body(data, has_more, "openai"))


async def _find_item(
    st: ServerState, cid: str, item_id: str
) -> tuple[Message, list[dict[str, Any]]]:
    try:
        message = await st.store.get_message(cid, parse_item_id(item_id))
    except MessageNotFoundError as exc:
        raise ApiError(404, f"Item with id '{item_id}' not found.", param="item_id") from exc
    items = message_items(message)
    if not any(it["id"] == item_id for it in items):
        raise ApiError(404, f"Item with id '{item_id}' not found.", param="item_id")
    return message, items


async def get_item(request: Request) -> Response:
    st = _state(request)
    cid, item_id = request.path_params["conversation_id"], request.path_params["item_id"]
    await ensure_conversation(st, cid)
    _, items = await _find_item(st, cid, item_id)
    return json_response(next(it for it in items if it["id"] == item_id))


async def delete_item(request: Request) -> Response:
    st = _state(request)
    cid, item_id = request.path_params["conversation_id"], request.path_params["item_id"]
    await ensure_conversation(st, cid)
    message, items = await _find_item(st, cid, item_id)
    if len(items) > 1:
        others = ", ".join(it["id"] for it in items if it["id"] != item_id)
        raise ApiError(
            400,
            f"Item '{item_id}' shares its stored message (one model turn) with items "
            f"{others}; threadkit serve deletes an item only when it is alone in its message.",
            param="item_id",
            code="item_not_deletable",
        )
    await _check_idle(st, cid)
    await st.store.delete_message(cid, message.id)
    return json_response(conversation_to_wire(await st.store.get_thread(cid)))


# --------------------------------------------------------------------------- routes


def routes() -> list[Route]:
    """The Conversations routes, relative to ``/v1`` or ``/api/projects/{project}/openai/v1``."""
    return [
        Route("/conversations", create_conversation, methods=["POST"]),
        Route("/conversations/{conversation_id}", get_conversation, methods=["GET"]),
        Route("/conversations/{conversation_id}", update_conversation, methods=["POST"]),
        Route("/conversations/{conversation_id}", delete_conversation, methods=["DELETE"]),
        Route("/conversations/{conversation_id}/items", create_items, methods=["POST"]),
        Route("/conversations/{conversation_id}/items", list_conversation_items, methods=["GET"]),
        Route("/conversations/{conversation_id}/items/{item_id}", get_item, methods=["GET"]),
        Route("/conversations/{conversation_id}/items/{item_id}", delete_item, methods=["DELETE"]),
    ]
