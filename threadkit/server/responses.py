"""The Responses API of ``threadkit serve``, plus the Foundry agent versions it resolves.

Served under ``/v1`` and under ``/api/projects/{project}/openai/v1`` (the base URL that
``azure-ai-projects`` 2.x ``AIProjectClient.get_openai_client()`` hands out: the project
endpoint plus ``/openai/v1``, no ``api-version``, a bearer token), following ``createResponse``,
``getResponse``, ``deleteResponse``, ``cancelResponse`` and ``listInputItems`` in
``openai-openapi.json``. Foundry's ``POST /api/projects/{project}/agents/{name}/versions``
(``project.agents.create_version``), with get and delete, keeps prompt agents for
``agent_reference``.

**A response is a run on a thread** (no second implementation of runs). Its input items become
messages (:func:`threadkit.server.conversations.items_to_messages`), appended as the run's
``additional_messages``; the :class:`~threadkit.engine.RunEngine` runs the model with
``tool_call_mode="complete"``, so tool calls END the response (``completed``, with
``function_call`` output items) and the caller answers in a new response with
``function_call_output`` items. The output items are the run's messages, shown as items. Which
thread:

* ``conversation``: the conversation's thread (a conversation is a thread);
* ``previous_response_id``: the chain's hidden thread (thread metadata
  ``threadkit.responses = chain``). Continuing the LATEST response of that thread appends to it;
  continuing an older one forks: the thread up to that response's last message is copied into a
  new hidden thread (likewise when the previous response lives in a conversation, which is never
  changed through ``previous_response_id``). Both at once → 400;
* neither: a new hidden thread.

**Records.** Each response is kept as a stored object (kind ``"response"``, msgspec JSON
:class:`ResponseRecord`: the wire object, its input items, and its thread and run ids), so get,
``input_items``, cancel and delete work after a restart on the same store. A record still in
progress is reconciled with its run whenever it is read. ``store: false`` keeps nothing: the
response cannot be retrieved or continued (404), and its run happens on a temporary copy that
is deleted when it ends.

**Modes.** By default the request waits for the response. ``background: true`` answers
``queued`` at once and processes it in a background task (poll with get; cancel works only on
background responses, else 400, as OpenAI answers). ``stream: true`` answers with server-sent
events named as in the spec (``response.created``, ``response.in_progress``,
``response.output_item.added``, ``response.content_part.added``, ``response.output_text.delta``
..., ``response.function_call_arguments.done``, ``response.output_item.done``,
``response.completed``), each with its ``sequence_number``.

**Supported fields.** ``model``, ``input`` (a string or items), ``instructions`` (not carried
over from a previous response, as in the API), flat function ``tools``
(``{"type": "function", "name", "description", "parameters", "strict"}``; hosted tools → 400),
``tool_choice``, ``parallel_tool_calls``, ``max_output_tokens``, ``temperature``, ``top_p``,
``metadata``, ``truncation`` (``auto`` → the engine's ``auto`` strategy; ``disabled``, the
default → the whole thread), ``text.format`` (json_schema / json_object, passed to the model),
``store``, ``background``, ``stream``, and Foundry's ``agent_reference`` (or the older
``agent``): ``{"type": "agent_reference", "name", "version"?}`` takes model, instructions and
tools from the named agent (a Foundry agent version, else an assistant of that name, newest
first), which the request's own fields override; an unknown agent → 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from threadkit._ids import new_id, now
from threadkit.engine import MessageDelta
from threadkit.errors import (
    ActiveRunError,
    InvalidRunStateError,
    MessageNotFoundError,
    NotFoundError,
    ObjectNotFoundError,
    ValidationError,
)
from threadkit.server.assistants import ASSISTANT_KIND
from threadkit.server.common import (
    ENCODER,
    ApiError,
    json_response,
    list_body,
    page_params,
    read_body,
    to_api_error,
)
from threadkit.server.conversations import (
    ensure_conversation,
    items_to_messages,
    message_items,
)
from threadkit.server.state import ServerState
from threadkit.server.wire import AssistantRecord
from threadkit.stores.base import check_metadata, supports_import
from threadkit.types import (
    Agent,
    FunctionDefinition,
    FunctionTool,
    Message,
    Run,
    RunStatus,
    Tool,
    TruncationStrategy,
)

__all__ = [
    "AGENT_KIND",
    "AGENT_VERSION_KIND",
    "HIDDEN_THREAD_KEY",
    "RESPONSE_KIND",
    "AgentVersionRecord",
    "CreateResponseBody",
    "ResponseRecord",
    "agent_routes",
    "flat_tools_from_wire",
    "flat_tools_to_wire",
    "routes",
]

_log = logging.getLogger("threadkit.server")

RESPONSE_KIND = "response"
"""The stored-object kind of response records."""

AGENT_VERSION_KIND = "agent_version"
"""The stored-object kind of Foundry agent versions (object id ``<name>:<version>``)."""

AGENT_KIND = "agent"
"""The stored-object kind of Foundry agents by name: ``{"latest": "<version>"}``."""

HIDDEN_THREAD_KEY = "threadkit.responses"
"""Thread metadata key marking a ``previous_response_id`` chain's hidden thread (value ``chain``)."""

_HIDDEN = {HIDDEN_THREAD_KEY: "chain"}
_AGENT_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})
_END = "threadkit.end"


# --------------------------------------------------------------------------- bodies, records


class CreateResponseBody(msgspec.Struct, kw_only=True):
    """The fields of ``CreateResponse`` threadkit serves (others are ignored)."""

    model: str | None = None
    input: str | list[Any] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    store: bool | None = None
    background: bool | None = None
    stream: bool | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    metadata: dict[str, str] | None = None
    truncation: str | None = None
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    user: str | None = None
    agent_reference: dict[str, Any] | None = None
    agent: dict[str, Any] | None = None


class ResponseRecord(msgspec.Struct, kw_only=True):
    """How a response is kept in the store (kind ``"response"``, msgspec JSON).

    Attributes:
        v: format version (1).
        response: the wire ``Response`` object as last saved.
        input_items: the response's input items (wire), oldest first.
        thread_id: the thread the run ran on (a conversation or a hidden thread).
        run_id: the run.
        after_message_id: the thread's last message before the output (the last input
            message, or the thread's tail when there was no input); None for an empty thread.
        last_message_id: the response's last message in the thread (set when final); a
            later response continuing this one continues from it.
        hidden: the thread is a hidden ``previous_response_id`` chain thread.
        temporary: the thread is deleted once the response ends (``store: false``).
        final: the response reached a terminal status and ``response`` is complete.
    """

    v: int = 1
    response: dict[str, Any]
    input_items: list[dict[str, Any]] = []
    thread_id: str
    run_id: str
    after_message_id: str | None = None
    last_message_id: str | None = None
    hidden: bool = False
    temporary: bool = False
    final: bool = False


class AgentVersionRecord(msgspec.Struct, kw_only=True):
    """A Foundry agent version (kind ``"agent_version"``, id ``<name>:<version>``).

    Attributes:
        definition: the ``PromptAgentDefinition`` as given (``kind: prompt``, ``model``,
            ``instructions``, flat ``tools``...).
        created_at: unix seconds.
    """

    v: int = 1
    name: str
    version: str
    description: str | None = None
    metadata: dict[str, str] = {}
    definition: dict[str, Any]
    created_at: int


class _AgentPointer(msgspec.Struct, kw_only=True):
    latest: str


_rec_encoder = msgspec.json.Encoder()
_rec_decoder = msgspec.json.Decoder(ResponseRecord)
_version_decoder = msgspec.json.Decoder(AgentVersionRecord)
_pointer_decoder = msgspec.json.Decoder(_AgentPointer)
_assistant_decoder = msgspec.json.Decoder(AssistantRecord)


def _state(request: Request) -> ServerState:
    st: ServerState = request.app.state.threadkit
    return st


def _drivers(st: ServerState) -> dict[str, asyncio.Task[ResponseRecord]]:
    drivers: dict[str, asyncio.Task[ResponseRecord]] = st.extras.setdefault("responses.drivers", {})
    return drivers


# --------------------------------------------------------------------------- tools


def flat_tools_from_wire(tools: Sequence[Any], param: str = "tools") -> list[Tool]:
    """Responses-API function tools (flat: ``type``, ``name``, ``description``,
    ``parameters``, ``strict``) → threadkit tools. The Assistants form (``function: {...}``)
    is accepted too.

    Raises:
        ValidationError: a malformed tool, or a hosted tool (only functions run here).
    """
    out: list[Tool] = []
    for i, raw in enumerate(tools):
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind != "function":
            raise ValidationError(
                f"{param}[{i}]: tool type {kind!r} is not supported by threadkit serve; "
                "only 'function' tools run here"
            )
        assert isinstance(raw, dict)
        nested = raw.get("function")
        fn: dict[str, Any] = nested if isinstance(nested, dict) else raw
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise ValidationError(f"{param}[{i}].name is required")
        params = fn.get("parameters")
        try:
            definition = FunctionDefinition(
                name=name,
                description=msgspec.convert(fn.get("description"), str | None),
                parameters=msgspec.convert(params, dict[str, Any])
                if params is not None
                else {"type": "object", "properties": {}},
                strict=msgspec.convert(fn.get("strict"), bool | None),
            )
        except msgspec.ValidationError as exc:
            raise ValidationError(f"{param}[{i}]: {exc}") from exc
        out.append(FunctionTool(function=definition))
    return out


def flat_tools_to_wire(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    """threadkit tools → Responses-API ``FunctionTool`` objects (``strict`` may be null)."""
    return [
        {
            "type": "function",
            "name": t.function.name,
            "description": t.function.description,
            "parameters": t.function.parameters,
            "strict": t.function.strict,
        }
        for t in tools
        if isinstance(t, FunctionTool)
    ]


def _tool_choice_for_model(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    """A Responses ``tool_choice`` → the Chat Completions form the model seam takes."""
    if choice is None or isinstance(choice, str):
        if choice not in (None, "auto", "none", "required"):
            raise ValidationError(f"tool_choice {choice!r} is not 'auto', 'none' or 'required'")
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    if choice.get("type") == "allowed_tools":
        return choice.get("mode", "auto")  # type: ignore[no-any-return]
    raise ValidationError(f"tool_choice {choice!r} is not supported; use a function tool choice")


def _response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    """``text.format`` → the Chat Completions ``response_format`` (None for plain text)."""
    fmt = (text or {}).get("format")
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise ValidationError(f"text.format type {fmt['type']!r} is not supported")


# --------------------------------------------------------------------------- agents


def _agent_from_definition(rec: AgentVersionRecord) -> Agent:
    d = rec.definition
    tools = flat_tools_from_wire(d.get("tools") or [], "definition.tools")
    return Agent(
        id=f"{rec.name}:{rec.version}",
        name=rec.name,
        model=d.get("model"),
        instructions=d.get("instructions"),
        tools=tools,
        temperature=d.get("temperature"),
        top_p=d.get("top_p"),
    )


async def _resolve_agent(st: ServerState, ref: dict[str, Any]) -> tuple[Agent, dict[str, Any]]:
    """Find the agent an ``agent_reference`` names: a Foundry agent version (the given one, else
    the latest), else the newest assistant with that name.

    Returns:
        The agent and the reference to echo (``type``, ``name``, ``version``).

    Raises:
        ApiError: 400 for a reference without a name, 404 when no agent matches.
    """
    name, version = ref.get("name"), ref.get("version")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "agent_reference.name is required.", param="agent_reference.name")
    if version is not None and not isinstance(version, str):
        raise ApiError(400, "agent_reference.version must be a string.", param="agent_reference")
    if version is None:
        with contextlib.suppress(ObjectNotFoundError):
            pointer = await st.store.get_object(AGENT_KIND, name)
            version = _pointer_decoder.decode(pointer.data).latest
    if version is not None:
        try:
            obj = await st.store.get_object(AGENT_VERSION_KIND, f"{name}:{version}")
        except ObjectNotFoundError:
            pass
        else:
            rec = _version_decoder.decode(obj.data)
            echo = {"type": "agent_reference", "name": name, "version": rec.version}
            return _agent_from_definition(rec), echo
    if ref.get("version") is None:
        after: str | None = None
        while True:
            page = await st.store.list_objects(ASSISTANT_KIND, order="desc", limit=100, after=after)
            for o in page.data:
                agent = _assistant_decoder.decode(o.data).agent
                if agent.name == name:
                    return agent, {"type": "agent_reference", "name": name, "version": None}
            if not page.has_more:
                break
            after = page.last_id
    shown = f"{name}:{version}" if ref.get("version") is not None else name
    raise ApiError(404, f"Agent '{shown}' not found.", param="agent_reference", code="not_found")


def _check_api_version(request: Request) -> None:
    version = request.query_params.get("api-version")
    if not version:
        raise ApiError(
            400,
            "The api-version query parameter (?api-version=v1) is required for all requests.",
            param="api-version",
            code="MissingApiVersionParameter",
        )
    if version != "v1":
        raise ApiError(
            400,
            f"The api-version {version!r} is not supported; this server supports 'v1'.",
            param="api-version",
            code="UnsupportedApiVersionValue",
        )


def _version_to_wire(rec: AgentVersionRecord) -> dict[str, Any]:
    return {
        "object": "agent.version",
        "id": f"{rec.name}:{rec.version}",
        "name": rec.name,
        "version": rec.version,
        "description": rec.description,
        "created_at": rec.created_at,
        "definition": rec.definition,
        "metadata": rec.metadata,
        "status": "active",
    }


async def _latest_version(st: ServerState, name: str) -> AgentVersionRecord:
    try:
        pointer = _pointer_decoder.decode((await st.store.get_object(AGENT_KIND, name)).data)
        obj = await st.store.get_object(AGENT_VERSION_KIND, f"{name}:{pointer.latest}")
    except ObjectNotFoundError as exc:
        raise ApiError(404, f"Agent '{name}' not found.", param="agent_name") from exc
    return _version_decoder.decode(obj.data)


async def create_agent_version(request: Request) -> Response:
    """``POST /api/projects/{project}/agents/{agent_name}/versions?api-version=v1``: a new
    version of a prompt agent (``definition.kind == "prompt"``)."""
    _check_api_version(request)
    st = _state(request)
    name = request.path_params["agent_name"]
    if not _AGENT_NAME.match(name):
        raise ApiError(
            400,
            f"Invalid agent name {name!r}: use letters, digits and inner hyphens, at most 63.",
            param="agent_name",
        )
    body = await read_body(request, dict[str, Any], st.max_body_bytes)
    definition = body.get("definition")
    if not isinstance(definition, dict) or definition.get("kind", "prompt") != "prompt":
        raise ApiError(
            400,
            "definition is required and must be a prompt agent definition.",
            param="definition",
        )
    if not isinstance(definition.get("model"), str):
        raise ApiError(400, "definition.model is required.", param="definition.model")
    flat_tools_from_wire(definition.get("tools") or [], "definition.tools")
    latest = 0
    with contextlib.suppress(ObjectNotFoundError):
        pointer = await st.store.get_object(AGENT_KIND, name)
        latest = int(_pointer_decoder.decode(pointer.data).latest)
    description = body.get("description")
    rec = AgentVersionRecord(
        name=name,
        version=str(latest + 1),
        description=description if isinstance(description, str) else None,
        metadata=check_metadata(body.get("metadata")),
        definition={"kind": "prompt", **definition},
        created_at=now(),
    )
    await st.store.put_object(AGENT_VERSION_KIND, f"{name}:{rec.version}", _rec_encoder.encode(rec))
    await st.store.put_object(
        AGENT_KIND, name, _rec_encoder.encode(_AgentPointer(latest=rec.version))
    )
    return json_response(_version_to_wire(rec))


async def get_agent_version(request: Request) -> Response:
    """``GET .../agents/{agent_name}/versions/{agent_version}``."""
    _check_api_version(request)
    st = _state(request)
    name, version = request.path_params["agent_name"], request.path_params["agent_version"]
    try:
        obj = await st.store.get_object(AGENT_VERSION_KIND, f"{name}:{version}")
    except ObjectNotFoundError as exc:
        raise ApiError(404, f"Agent '{name}' version '{version}' not found.") from exc
    return json_response(_version_to_wire(_version_decoder.decode(obj.data)))


async def get_agent(request: Request) -> Response:
    """``GET .../agents/{agent_name}``: the agent with its latest version."""
    _check_api_version(request)
    rec = await _latest_version(_state(request), request.path_params["agent_name"])
    return json_response(
        {
            "object": "agent",
            "id": rec.name,
            "name": rec.name,
            "state": "enabled",
            "configuration_state": "enabled",
            "versions": {"latest": _version_to_wire(rec)},
        }
    )


async def delete_agent(request: Request) -> Response:
    """``DELETE .../agents/{agent_name}``: the agent and all its versions."""
    _check_api_version(request)
    st = _state(request)
    rec = await _latest_version(st, request.path_params["agent_name"])
    for v in range(1, int(rec.version) + 1):
        await st.store.delete_object(AGENT_VERSION_KIND, f"{rec.name}:{v}")
    await st.store.delete_object(AGENT_KIND, rec.name)
    return json_response({"object": "agent.deleted", "name": rec.name, "deleted": True})


def agent_routes() -> list[Route]:
    """Foundry agent-version routes, with their full path under ``/api/projects/{project}``
    (mount them before the Foundry classic mount)."""
    base = "/api/projects/{project}/agents/{agent_name}"
    return [
        Route(f"{base}/versions", create_agent_version, methods=["POST"]),
        Route(f"{base}/versions/{{agent_version}}", get_agent_version, methods=["GET"]),
        Route(base, get_agent, methods=["GET"]),
        Route(base, delete_agent, methods=["DELETE"]),
    ]


# --------------------------------------------------------------------------- wire objects


def _status(run: Run, background: bool) -> str:
    s = run.status
    if s is RunStatus.QUEUED:
        return "queued" if background else "in_progress"
    if s in (RunStatus.IN_PROGRESS, RunStatus.REQUIRES_ACTION, RunStatus.CANCELLING):
        return "in_progress"
    if s is RunStatus.EXPIRED:
        return "failed"
    return s.value


def _usage(run: Run) -> dict[str, Any]:
    u = run.usage
    prompt, completion = (u.prompt_tokens, u.completion_tokens) if u else (0, 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.total_tokens if u else 0,
    }


def _error(run: Run) -> dict[str, str] | None:
    if run.status is RunStatus.EXPIRED:
        return {"code": "server_error", "message": "The response expired before it finished."}
    if run.status is not RunStatus.FAILED:
        return None
    err = run.last_error
    code = err.code if err and err.code in _ERROR_CODES else "server_error"
    return {"code": code, "message": err.message if err else "The response failed."}


def _base_wire(
    *,
    rid: str,
    created_at: int,
    body: CreateResponseBody,
    model: str,
    instructions: str | None,
    tools: list[Tool],
    conversation_id: str | None,
    store: bool,
    background: bool,
    agent_ref: dict[str, Any] | None,
) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "id": rid,
        "object": "response",
        "created_at": created_at,
        "status": "queued" if background else "in_progress",
        "background": background,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": instructions,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": body.max_tool_calls,
        "model": model,
        "output": [],
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": store,
        "temperature": body.temperature if body.temperature is not None else 1.0,
        "text": {"format": (body.text or {}).get("format") or {"type": "text"}},
        "tool_choice": body.tool_choice if body.tool_choice is not None else "auto",
        "tools": flat_tools_to_wire(tools),
        "top_p": body.top_p if body.top_p is not None else 1.0,
        "truncation": body.truncation or "disabled",
        "metadata": check_metadata(body.metadata),
        "conversation": {"id": conversation_id} if conversation_id else None,
    }
    if body.user is not None:
        wire["user"] = body.user
    if agent_ref is not None:
        wire["agent_reference"] = agent_ref
    return wire


# --------------------------------------------------------------------------- threads


async def _tail_id(st: ServerState, thread_id: str) -> str | None:
    tail = await st.store.tail(thread_id, 1)
    return tail[-1].id if tail else None


async def _fork(st: ServerState, prev: ResponseRecord) -> str:
    """A new hidden thread holding ``prev``'s thread up to its last message (ids kept)."""
    upto = prev.last_message_id
    copied: list[Message] = []
    if upto is not None:
        after: str | None = None
        done = False
        while not done:
            page = await st.store.list_messages(prev.thread_id, order="asc", limit=200, after=after)
            for m in page.data:
                copied.append(m)
                if m.id == upto:
                    done = True
                    break
            if not page.has_more or not page.data:
                break
            after = page.data[-1].id
        if not done:
            raise ApiError(
                400,
                f"Response '{prev.response['id']}' can no longer be continued: its messages "
                "were deleted.",
                param="previous_response_id",
            )
    tid = new_id("thread")
    if supports_import(st.store):
        await st.store.import_thread(
            tid, [msgspec.structs.replace(m, thread_id=tid) for m in copied], metadata=_HIDDEN
        )
        return tid
    await st.store.create_thread(thread_id=tid, metadata=_HIDDEN)
    try:
        for i in range(0, len(copied), 200):
            batch = [msgspec.structs.replace(m, thread_id=tid, seq=0) for m in copied[i : i + 200]]
            await st.store.append(tid, batch)
    except Exception:
        await st.store.delete_thread(tid)
        raise
    return tid


# --------------------------------------------------------------------------- records


async def _load(st: ServerState, response_id: str, param: str = "response_id") -> ResponseRecord:
    try:
        obj = await st.store.get_object(RESPONSE_KIND, response_id)
    except ObjectNotFoundError as exc:
        raise ApiError(
            404, f"Response with id '{response_id}' not found.", param=param, code="not_found"
        ) from exc
    return _rec_decoder.decode(obj.data)


async def _save(st: ServerState, rec: ResponseRecord) -> None:
    if rec.response.get("store"):
        await st.store.put_object(RESPONSE_KIND, rec.response["id"], _rec_encoder.encode(rec))


async def _run_messages(st: ServerState, rec: ResponseRecord, run_id: str) -> list[Message]:
    """The messages run ``run_id`` wrote, oldest first (they follow ``after_message_id``)."""
    out: list[Message] = []
    after = rec.after_message_id
    strict = True
    while True:
        try:
            page = await st.store.list_messages(rec.thread_id, order="asc", limit=50, after=after)
        except MessageNotFoundError:  # the anchor was deleted: scan the whole thread
            after, strict = None, False
            continue
        for m in page.data:
            if m.run_id == run_id:
                out.append(m)
            elif strict or out:
                return out
        if not page.has_more or not page.data:
            return out
        after = page.data[-1].id


async def _settle(st: ServerState, rec: ResponseRecord) -> ResponseRecord:
    """Bring a record up to date with its run; a run that ended is finalized (and saved)."""
    if rec.final:
        return rec
    try:
        run = await st.engine.get_run(rec.thread_id, rec.run_id)
    except NotFoundError:
        rec.response.update(
            status="failed",
            error={"code": "server_error", "message": "The response's thread was deleted."},
        )
        rec.final = True
        await _save(st, rec)
        return rec
    background = bool(rec.response.get("background"))
    if run.status.is_active:
        rec.response["status"] = _status(run, background)
        return rec
    output_messages = await _run_messages(st, rec, run.id)
    output = [item for m in output_messages for item in message_items(m)]
    status = _status(run, background)
    rec.response.update(
        status=status,
        output=output,
        usage=_usage(run),
        error=_error(run),
        incomplete_details={"reason": "max_output_tokens"}
        if run.status is RunStatus.INCOMPLETE
        else None,
        completed_at=run.completed_at if status == "completed" else None,
    )
    rec.last_message_id = output_messages[-1].id if output_messages else rec.after_message_id
    rec.final = True
    if rec.temporary:
        await st.store.delete_thread(rec.thread_id)
    if rec.response.get("store"):
        try:  # a response deleted while it ran stays deleted
            await st.store.get_object(RESPONSE_KIND, rec.response["id"])
        except ObjectNotFoundError:
            return rec
        await _save(st, rec)
    return rec


async def _drive(st: ServerState, rec: ResponseRecord) -> ResponseRecord:
    """Process the response's run to its end, then finalize the record."""
    try:
        await st.engine.start(rec.thread_id, rec.run_id)
    except asyncio.CancelledError:
        raise
    except Exception:
        _log.exception("response %s: run processing failed", rec.response["id"])
    return await _settle(st, rec)


def _start_driver(st: ServerState, rec: ResponseRecord) -> asyncio.Task[ResponseRecord]:
    rid = rec.response["id"]
    drivers = _drivers(st)
    task = drivers.get(rid)
    if task is not None and not task.done():
        return task
    task = asyncio.get_running_loop().create_task(_drive(st, rec))
    drivers[rid] = task

    def forget(t: asyncio.Task[ResponseRecord]) -> None:
        if drivers.get(rid) is t:
            del drivers[rid]
        if not t.cancelled() and t.exception() is not None:
            _log.warning("response %s could not be finalized", rid, exc_info=t.exception())

    task.add_done_callback(forget)
    return task


# --------------------------------------------------------------------------- create


def _conversation_id(raw: str | dict[str, Any] | None) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw or None
    cid = raw.get("id")
    if not isinstance(cid, str) or not cid:
        raise ApiError(400, "conversation.id is required.", param="conversation")
    return cid


def _truncation(raw: str | None) -> TruncationStrategy:
    if raw in (None, "disabled"):
        return TruncationStrategy(type="none")
    if raw == "auto":
        return TruncationStrategy(type="auto")
    raise ApiError(
        400, f"Invalid truncation {raw!r}: expected 'auto' or 'disabled'.", param="truncation"
    )


async def create_response(request: Request) -> Response:
    """``POST /responses`` (see the module docstring)."""
    st = _state(request)
    body = await read_body(request, CreateResponseBody, st.max_body_bytes)
    conversation_id = _conversation_id(body.conversation)
    if body.previous_response_id and conversation_id:
        raise ApiError(
            400,
            "Mutually exclusive parameters: provide either 'previous_response_id' or "
            "'conversation', not both.",
            param="previous_response_id",
            code="mutually_exclusive_parameters",
        )
    store = body.store is not False
    background = bool(body.background)
    if background and not store:
        raise ApiError(
            400,
            "Background responses must be stored: background=true needs store=true.",
            param="background",
        )
    ref = body.agent_reference if body.agent_reference is not None else body.agent
    agent: Agent | None = None
    agent_ref: dict[str, Any] | None = None
    if ref is not None:
        agent, agent_ref = await _resolve_agent(st, ref)
    tools = (
        flat_tools_from_wire(body.tools)
        if body.tools is not None
        else list(agent.tools if agent else [])
    )
    raw_input: list[Any] = (
        [{"role": "user", "content": body.input}]
        if isinstance(body.input, str)
        else body.input or []
    )
    messages = items_to_messages(raw_input, param="input")
    options: dict[str, Any] = {
        "model": body.model,
        "instructions": body.instructions,
        "tools": tools,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "max_completion_tokens": body.max_output_tokens,
        "truncation_strategy": _truncation(body.truncation),
        "tool_choice": _tool_choice_for_model(body.tool_choice),
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "response_format": _response_format(body.text),
        "additional_messages": messages,
        "tool_call_mode": "complete",
    }
    check_metadata(body.metadata)

    prev: ResponseRecord | None = None
    created = False
    hidden = False
    if conversation_id:
        await ensure_conversation(st, conversation_id)
        thread_id = conversation_id
    elif body.previous_response_id:
        prev = await _settle(st, await _load(st, body.previous_response_id, "previous_response_id"))
        if not prev.final:
            raise ApiError(
                400,
                f"Previous response '{body.previous_response_id}' is still in progress; wait "
                "for it to finish before continuing it.",
                param="previous_response_id",
            )
        hidden = True
        if store and prev.hidden and await _tail_id(st, prev.thread_id) == prev.last_message_id:
            thread_id = prev.thread_id
        else:
            thread_id, created = await _fork(st, prev), True
    else:
        thread_id = (await st.store.create_thread(metadata=_HIDDEN)).id
        created, hidden = True, True

    try:
        try:
            after = messages[-1].id if messages else await _tail_id(st, thread_id)
            run = await st.engine.create_run(thread_id, agent, **options)
        except ActiveRunError:
            if prev is None or created:
                raise
            # another response continued the same one first: fork from it instead
            thread_id, created = await _fork(st, prev), True
            after = messages[-1].id if messages else await _tail_id(st, thread_id)
            run = await st.engine.create_run(thread_id, agent, **options)
    except Exception:
        if created:
            await st.store.delete_thread(thread_id)
        raise

    rid = new_id("resp")
    wire = _base_wire(
        rid=rid,
        created_at=run.created_at,
        body=body,
        model=run.model or st.model_name,
        instructions=run.instructions,
        tools=tools,
        conversation_id=conversation_id,
        store=store,
        background=background,
        agent_ref=agent_ref,
    )
    rec = ResponseRecord(
        response=wire,
        input_items=[item for m in messages for item in message_items(m)],
        thread_id=thread_id,
        run_id=run.id,
        after_message_id=after,
        hidden=hidden,
        temporary=created and not store,
    )
    await _save(st, rec)
    if body.stream:
        return _stream(st, rec, background)
    driver = _start_driver(st, rec)
    if background:
        return json_response(rec.response)
    rec = await asyncio.shield(driver)
    return json_response(rec.response)


# --------------------------------------------------------------------------- streaming


class _Events:
    """Turns run events into Responses stream events (``ResponseStreamEvent``)."""

    def __init__(self) -> None:
        self.seq = 0
        self.next_index = 0
        self.open: dict[str, int] = {}  # announced message item id → output index
        self.text: dict[str, str] = {}

    def sse(self, kind: str, payload: dict[str, Any]) -> bytes:
        data = {"type": kind, "sequence_number": self.seq, **payload}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + ENCODER.encode(data) + b"\n\n"

    def _index(self) -> int:
        i = self.next_index
        self.next_index += 1
        return i

    def announce(self, message_id: str) -> list[bytes]:
        if message_id in self.open:
            return []
        i = self.open[message_id] = self._index()
        self.text[message_id] = ""
        item = {
            "type": "message",
            "id": message_id,
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        return [
            self.sse("response.output_item.added", {"output_index": i, "item": item}),
            self.sse(
                "response.content_part.added",
                {
                    "item_id": message_id,
                    "output_index": i,
                    "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
                },
            ),
        ]

    def delta(self, d: MessageDelta) -> list[bytes]:
        out = self.announce(d.id)
        self.text[d.id] += d.text
        out.append(
            self.sse(
                "response.output_text.delta",
                {
                    "item_id": d.id,
                    "output_index": self.open[d.id],
                    "content_index": d.index,
                    "delta": d.text,
                    "logprobs": [],
                },
            )
        )
        return out

    def completed(self, m: Message) -> list[bytes]:
        out: list[bytes] = []
        for item in message_items(m):
            kind = item["type"]
            if kind == "message":
                text_parts = [c for c in item["content"] if c.get("type") == "output_text"]
                if text_parts and item["id"] not in self.open:
                    out += self.announce(item["id"])
                i = self.open.get(item["id"])
                if i is None:
                    i = self._index()
                    added = {**item, "status": "in_progress", "content": []}
                    out.append(
                        self.sse("response.output_item.added", {"output_index": i, "item": added})
                    )
                for j, part in enumerate(text_parts):
                    full = part["text"]
                    if j > 0:
                        out.append(self._part("response.content_part.added", item["id"], i, j, ""))
                    sent = self.text.get(item["id"], "") if j == 0 else ""
                    if full.startswith(sent) and len(full) > len(sent):
                        out.append(
                            self.sse(
                                "response.output_text.delta",
                                {
                                    "item_id": item["id"],
                                    "output_index": i,
                                    "content_index": j,
                                    "delta": full[len(sent) :],
                                    "logprobs": [],
                                },
                            )
                        )
                    out.append(
                        self.sse(
                            "response.output_text.done",
                            {
                                "item_id": item["id"],
                                "output_index": i,
                                "content_index": j,
                                "text": full,
                                "logprobs": [],
                            },
                        )
                    )
                    out.append(self._part("response.content_part.done", item["id"], i, j, full))
                out.append(self.sse("response.output_item.done", {"output_index": i, "item": item}))
            elif kind == "function_call":
                i = self._index()
                added = {**item, "status": "in_progress", "arguments": ""}
                out.append(
                    self.sse("response.output_item.added", {"output_index": i, "item": added})
                )
                common = {"item_id": item["id"], "output_index": i}
                out.append(
                    self.sse(
                        "response.function_call_arguments.delta",
                        {**common, "delta": item["arguments"]},
                    )
                )
                out.append(
                    self.sse(
                        "response.function_call_arguments.done",
                        {**common, "arguments": item["arguments"], "name": item["name"]},
                    )
                )
                out.append(self.sse("response.output_item.done", {"output_index": i, "item": item}))
            else:
                i = self._index()
                out.append(
                    self.sse("response.output_item.added", {"output_index": i, "item": item})
                )
                out.append(self.sse("response.output_item.done", {"output_index": i, "item": item}))
        return out

    def _part(self, kind: str, item_id: str, i: int, j: int, text: str) -> bytes:
        return self.sse(
            kind,
            {
                "item_id": item_id,
                "output_index": i,
                "content_index": j,
                "part": {"type": "output_text", "text": text, "annotations": [], "logprobs": []},
            },
        )


_TERMINAL_EVENTS = {
    "completed": "response.completed",
    "incomplete": "response.incomplete",
    "failed": "response.failed",
}


def _stream(st: ServerState, rec: ResponseRecord, background: bool) -> Response:
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    async def handler(event: str, data: Any) -> None:
        queue.put_nowait((event, data))

    stack = contextlib.ExitStack()
    stack.enter_context(st.engine.listen(rec.run_id, handler))
    driver = _start_driver(st, rec)
    driver.add_done_callback(lambda t: queue.put_nowait((_END, t)))
    return StreamingResponse(
        _stream_body(stack, queue, rec, background),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache"},
    )


async def _stream_body(
    stack: contextlib.ExitStack,
    queue: asyncio.Queue[tuple[str, Any]],
    rec: ResponseRecord,
    background: bool,
) -> AsyncIterator[bytes]:
    ev = _Events()
    try:
        snapshot = dict(rec.response)
        yield ev.sse("response.created", {"response": snapshot})
        if background:
            yield ev.sse("response.queued", {"response": snapshot})
        while True:
            event, data = await queue.get()
            if event == _END:
                task: asyncio.Task[ResponseRecord] = data
                if task.cancelled():
                    break
                exc = task.exception()
                if exc is not None:
                    err = to_api_error(exc if isinstance(exc, Exception) else RuntimeError(exc))
                    yield ev.sse(
                        "error", {"code": err.code, "message": err.message, "param": err.param}
                    )
                    break
                final = task.result().response
                kind = _TERMINAL_EVENTS.get(final["status"])
                if kind is not None:
                    yield ev.sse(kind, {"response": final})
                break
            if event == "thread.run.in_progress":
                yield ev.sse(
                    "response.in_progress", {"response": {**snapshot, "status": "in_progress"}}
                )
            elif event == "thread.message.created" and isinstance(data, Message):
                for chunk in ev.announce(data.id):
                    yield chunk
            elif event == "thread.message.delta" and isinstance(data, MessageDelta):
                for chunk in ev.delta(data):
                    yield chunk
            elif event == "thread.message.completed" and isinstance(data, Message):
                for chunk in ev.completed(data):
                    yield chunk
    finally:
        stack.close()


# --------------------------------------------------------------------------- get, delete, cancel


async def get_response(request: Request) -> Response:
    """``GET /responses/{response_id}``: the response, reconciled with its run."""
    st = _state(request)
    if request.query_params.get("stream") in ("true", "True", "1"):
        raise ApiError(
            400,
            "Resuming a response stream (stream=true on retrieve) is not supported by "
            "threadkit serve; poll without stream.",
            param="stream",
        )
    rec = await _settle(st, await _load(st, request.path_params["response_id"]))
    return json_response(rec.response)


async def delete_response(request: Request) -> Response:
    """``DELETE /responses/{response_id}``: forget the response (its thread stays)."""
    st = _state(request)
    rid = request.path_params["response_id"]
    if not await st.store.delete_object(RESPONSE_KIND, rid):
        raise ApiError(
            404, f"Response with id '{rid}' not found.", param="response_id", code="not_found"
        )
    return json_response({"id": rid, "object": "response", "deleted": True})


async def cancel_response(request: Request) -> Response:
    """``POST /responses/{response_id}/cancel``: background responses only (else 400)."""
    st = _state(request)
    rid = request.path_params["response_id"]
    rec = await _load(st, rid)
    if not rec.response.get("background"):
        raise ApiError(
            400,
            "Only responses created with background=true can be cancelled.",
            param="response_id",
        )
    rec = await _settle(st, rec)
    if rec.final:
        if rec.response["status"] == "cancelled":
            return json_response(rec.response)
        raise ApiError(
            400,
            f"Cannot cancel a response with status '{rec.response['status']}'.",
            param="response_id",
        )
    try:
        run = await st.engine.cancel(rec.thread_id, rec.run_id)
    except InvalidRunStateError:
        run = await st.engine.get_run(rec.thread_id, rec.run_id)
    if run.status is RunStatus.CANCELLING:
        driver = _start_driver(st, rec)  # the run's holder finishes cancelling it
        with contextlib.suppress(asyncio.TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(driver), 10.0)
    rec = await _settle(st, rec)
    return json_response(rec.response)


async def list_input_items(request: Request) -> Response:
    """``GET /responses/{response_id}/input_items``: the response's input items (default
    ``desc``), paginated with ``after`` (an item id)."""
    st = _state(request)
    params = page_params(request)
    rec = await _load(st, request.path_params["response_id"])
    items = list(rec.input_items)
    if params.order == "desc":
        items.reverse()
    if params.after:
        ids = [it["id"] for it in items]
        if params.after not in ids:
            raise ApiError(400, f"Invalid 'after': no input item '{params.after}'.", param="after")
        items = items[ids.index(params.after) + 1 :]
    data = items[: params.limit]
    return json_response(list_body(data, len(items) > params.limit, "openai"))


# --------------------------------------------------------------------------- routes


def routes() -> list[Route]:
    """The Responses routes, relative to ``/v1`` or ``/api/projects/{project}/openai/v1``."""
    return [
        Route("/responses", create_response, methods=["POST"]),
        Route("/responses/{response_id}", get_response, methods=["GET"]),
        Route("/responses/{response_id}", delete_response, methods=["DELETE"]),
        Route("/responses/{response_id}/cancel", cancel_response, methods=["POST"]),
        Route("/responses/{response_id}/input_items", list_input_items, methods=["GET"]),
    ]
