"""The Assistants v2 surface, served twice: under ``/v1`` (OpenAI) and under
``/api/projects/{project}`` (Foundry Agent Service classic, api-version ``v1``).

One set of handlers serves both; :func:`routes` takes the flavour, which decides:

========================= ================================== ====================================
                          ``openai``                         ``foundry``
========================= ================================== ====================================
precondition              header ``OpenAI-Beta: assistants=v2`` query ``api-version=v1``
list threads              not offered (not in the spec)      ``GET /threads``
last page of a list       ``last_id`` = id of the last item  ``last_id: null``
========================= ================================== ====================================

Every success is HTTP 200 in both flavours (the Azure SDK rejects 201). Responses carry
``openai-poll-after-ms`` so SDK pollers ask again soon. All Foundry projects share one store.

Runs are the core's: :class:`~threadkit.engine.RunEngine` creates them ``queued`` and processes
them in a background task; ``stream: true`` answers with server-sent events named as in the spec
(``thread.run.created`` ... ``thread.message.delta`` ... ``thread.run.completed``), ending
``event: done`` / ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from threadkit._ids import new_id
from threadkit.engine import MessageDelta
from threadkit.errors import (
    InvalidRunStateError,
    NotFoundError,
    ObjectNotFoundError,
)
from threadkit.server.common import (
    ENCODER,
    ApiError,
    Flavour,
    PageParams,
    json_response,
    list_body,
    page_params,
    read_body,
    to_api_error,
)
from threadkit.server.state import ServerState
from threadkit.server.wire import (
    UNSET,
    AssistantRecord,
    CreateAssistantBody,
    CreateMessageBody,
    CreateRunBody,
    CreateThreadAndRunBody,
    CreateThreadBody,
    MetadataBody,
    SubmitToolOutputsBody,
    UpdateAssistantBody,
    assistant_to_wire,
    delta_to_wire,
    is_visible,
    message_from_wire,
    message_to_wire,
    run_to_wire,
    step_to_wire,
    thread_to_wire,
    tools_from_wire,
    truncation_from_wire,
)
from threadkit.stores.base import check_metadata
from threadkit.types import (
    Agent,
    Message,
    Page,
    Run,
    RunStatus,
    RunStep,
    ThreadInfo,
    ToolOutput,
)

__all__ = ["ASSISTANT_KIND", "routes"]

_log = logging.getLogger("threadkit.server")

ASSISTANT_KIND = "assistant"
"""The stored-object kind assistants (agents) are kept under."""

_record_decoder = msgspec.json.Decoder(AssistantRecord)
_record_encoder = msgspec.json.Encoder()
_END = "threadkit.end"

Handler = Callable[[Request, ServerState, Flavour], Awaitable[Response]]


# --------------------------------------------------------------------------- plumbing


def _check_flavour(request: Request, flavour: Flavour) -> None:
    if flavour == "openai":
        beta = request.headers.get("openai-beta", "")
        if "assistants=v2" not in beta.replace(" ", ""):
            raise ApiError(
                400,
                "You must provide the 'OpenAI-Beta' header to access the Assistants API. "
                "Please try again by setting the header 'OpenAI-Beta: assistants=v2'.",
                code="invalid_beta",
            )
        return
    version = request.query_params.get("api-version")
    if version is None or version == "":
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


def _route(path: str, handler: Handler, methods: list[str], flavour: Flavour) -> Route:
    async def endpoint(request: Request) -> Response:
        _check_flavour(request, flavour)
        return await handler(request, request.app.state.threadkit, flavour)

    endpoint.__name__ = handler.__name__
    return Route(path, endpoint, methods=methods)


def _ok(st: ServerState, obj: Any) -> Response:
    return json_response(obj, headers=st.poll_headers)


async def _cursor_page(call: Awaitable[Page[Any]], params: PageParams) -> Page[Any]:
    """Await a store listing; a cursor naming no item is a 400 on ``after``/``before``."""
    try:
        return await call
    except NotFoundError as exc:
        raise ApiError(
            400,
            f"Invalid pagination cursor: {exc}",
            param="after" if params.after else "before",
        ) from exc


def _watch(task: asyncio.Task[Run]) -> None:
    def done(t: asyncio.Task[Run]) -> None:
        if not t.cancelled() and t.exception() is not None:
            _log.warning("run processing stopped with an error", exc_info=t.exception())

    task.add_done_callback(done)


# --------------------------------------------------------------------------- assistants


async def _load_assistant(st: ServerState, assistant_id: str) -> tuple[AssistantRecord, int]:
    try:
        obj = await st.store.get_object(ASSISTANT_KIND, assistant_id)
    except ObjectNotFoundError as exc:
        raise ApiError(
            404, f"No assistant found with id '{assistant_id}'.", param="assistant_id"
        ) from exc
    record = _record_decoder.decode(obj.data)
    record.agent.created_at = obj.created_at
    return record, obj.created_at


async def _agent(st: ServerState, assistant_id: str) -> Agent:
    record, _ = await _load_assistant(st, assistant_id)
    return record.agent


async def create_assistant(request: Request, st: ServerState, fl: Flavour) -> Response:
    body = await read_body(request, CreateAssistantBody, st.max_body_bytes)
    agent = Agent(
        id=new_id("asst"),
        name=body.name,
        model=body.model,
        instructions=body.instructions,
        tools=tools_from_wire(body.tools or []),
        description=body.description,
        temperature=body.temperature,
        top_p=body.top_p,
        response_format=body.response_format,
        metadata=check_metadata(body.metadata),
    )
    record = AssistantRecord(agent=agent, tool_resources=body.tool_resources)
    assert agent.id is not None
    stored = await st.store.put_object(ASSISTANT_KIND, agent.id, _record_encoder.encode(record))
    return _ok(st, assistant_to_wire(record, stored.created_at, st.model_name))


async def list_assistants(request: Request, st: ServerState, fl: Flavour) -> Response:
    params = page_params(request)
    page = await _cursor_page(
        st.store.list_objects(
            ASSISTANT_KIND,
            order=params.order,
            limit=params.limit,
            after=params.after,
            before=params.before,
        ),
        params,
    )
    data = [
        assistant_to_wire(_record_decoder.decode(o.data), o.created_at, st.model_name)
        for o in page.data
    ]
    return _ok(st, list_body(data, page.has_more, fl))


async def get_assistant(request: Request, st: ServerState, fl: Flavour) -> Response:
    record, created = await _load_assistant(st, request.path_params["assistant_id"])
    return _ok(st, assistant_to_wire(record, created, st.model_name))


async def update_assistant(request: Request, st: ServerState, fl: Flavour) -> Response:
    assistant_id = request.path_params["assistant_id"]
    body = await read_body(request, UpdateAssistantBody, st.max_body_bytes)
    record, _ = await _load_assistant(st, assistant_id)
    agent = record.agent
    changes: dict[str, Any] = {}
    for name in ("model", "name", "description", "instructions", "temperature", "top_p"):
        value = getattr(body, name)
        if value is not UNSET:
            changes[name] = value
    if body.response_format is not UNSET:
        changes["response_format"] = body.response_format
    if body.tools is not UNSET:
        changes["tools"] = tools_from_wire(body.tools or [])
    if body.metadata is not UNSET:
        changes["metadata"] = check_metadata(body.metadata)
    agent = msgspec.structs.replace(agent, **changes)
    resources = record.tool_resources if body.tool_resources is UNSET else body.tool_resources
    record = AssistantRecord(agent=agent, tool_resources=resources)
    stored = await st.store.put_object(ASSISTANT_KIND, assistant_id, _record_encoder.encode(record))
    return _ok(st, assistant_to_wire(record, stored.created_at, st.model_name))


async def delete_assistant(request: Request, st: ServerState, fl: Flavour) -> Response:
    assistant_id = request.path_params["assistant_id"]
    if not await st.store.delete_object(ASSISTANT_KIND, assistant_id):
        raise ApiError(404, f"No assistant found with id '{assistant_id}'.")
    return _ok(st, {"id": assistant_id, "object": "assistant.deleted", "deleted": True})


# --------------------------------------------------------------------------- threads


async def _new_thread(st: ServerState, body: CreateThreadBody | None) -> ThreadInfo:
    body = body or CreateThreadBody()
    messages = [message_from_wire(m) for m in body.messages or []]
    info = await st.store.create_thread(metadata=check_metadata(body.metadata))
    if messages:
        try:
            await st.store.append(info.id, messages)
        except Exception:
            await st.store.delete_thread(info.id)
            raise
    return info


async def create_thread(request: Request, st: ServerState, fl: Flavour) -> Response:
    body = await read_body(request, CreateThreadBody, st.max_body_bytes)
    return _ok(st, thread_to_wire(await _new_thread(st, body)))


async def _is_classic_thread(st: ServerState, info: ThreadInfo) -> bool:
    """Whether a stored thread is an Assistants/Foundry-classic thread, not a Conversations
    conversation or a hidden Responses chain (those live in the same store)."""
    from threadkit.server.conversations import CONVERSATION_KIND
    from threadkit.server.responses import HIDDEN_THREAD_KEY

    if HIDDEN_THREAD_KEY in info.metadata:
        return False
    try:
        await st.store.get_object(CONVERSATION_KIND, info.id)
    except ObjectNotFoundError:
        return True
    return False


async def list_threads(request: Request, st: ServerState, fl: Flavour) -> Response:
    """Foundry's list threads: classic threads only, pages filled past hidden ones.

    A ``before``-only page is walked in the opposite order from ``before`` and flipped back.
    """
    params = page_params(request)
    backwards = params.before is not None and params.after is None
    order: Any = params.order
    if backwards:
        order = "asc" if params.order == "desc" else "desc"
    cursor = params.before if backwards else params.after
    stop = None if backwards else params.before
    found: list[ThreadInfo] = []
    has_more = False
    while True:
        page = await _cursor_page(
            st.store.list_threads(order=order, limit=params.limit, after=cursor, before=stop),
            params,
        )
        for i, info in enumerate(page.data):
            if len(found) == params.limit:
                has_more = True
                break
            if await _is_classic_thread(st, info):
                found.append(info)
            if len(found) == params.limit and (i + 1 < len(page.data) or page.has_more):
                has_more = True
        if len(found) == params.limit or not page.has_more or not page.data:
            break
        cursor = page.data[-1].id
    if backwards:
        found.reverse()
    return _ok(st, list_body([thread_to_wire(t) for t in found], has_more, fl))


async def get_thread(request: Request, st: ServerState, fl: Flavour) -> Response:
    return _ok(st, thread_to_wire(await st.store.get_thread(request.path_params["thread_id"])))


async def update_thread(request: Request, st: ServerState, fl: Flavour) -> Response:
    thread_id = request.path_params["thread_id"]
    body = await read_body(request, MetadataBody, st.max_body_bytes)
    if body.metadata is None:
        info = await st.store.get_thread(thread_id)
    else:
        info = await st.store.update_thread(thread_id, metadata=check_metadata(body.metadata))
    return _ok(st, thread_to_wire(info))


async def delete_thread(request: Request, st: ServerState, fl: Flavour) -> Response:
    thread_id = request.path_params["thread_id"]
    if not await st.store.delete_thread(thread_id):
        raise ApiError(404, f"No thread found with id '{thread_id}'.")
    return _ok(st, {"id": thread_id, "object": "thread.deleted", "deleted": True})


# --------------------------------------------------------------------------- messages


async def visible_page(
    fetch: Callable[..., Awaitable[Page[Message]]],
    params: PageParams,
    keep: Callable[[Message], bool] = is_visible,
) -> tuple[list[Message], bool]:
    """One page of the messages ``keep`` admits, paging through the hidden ones.

    Cursor semantics are the store's (:mod:`threadkit.testing.store_suite`): ``after`` /
    ``before`` bound the page, ``before`` alone takes the items just before the cursor. A
    ``before``-only page is walked as an ``after`` page in the opposite order, then reversed.

    Returns:
        The kept messages in the order asked for, and whether more kept messages follow.
    """
    flip = params.before is not None and params.after is None
    order = ("desc" if params.order == "asc" else "asc") if flip else params.order
    cursor = params.before if flip else params.after
    bound = None if flip else params.before
    out: list[Message] = []
    while True:
        need = params.limit + 1 - len(out)
        page = await fetch(order=order, limit=min(need + 8, 200), after=cursor, before=bound)
        out.extend(m for m in page.data if keep(m))
        if len(out) > params.limit or not page.has_more or not page.data:
            break
        cursor = page.data[-1].id
    has_more = len(out) > params.limit
    del out[params.limit :]
    if flip:
        out.reverse()
    return out, has_more


async def _visible_message(st: ServerState, thread_id: str, message_id: str) -> Message:
    message = await st.store.get_message(thread_id, message_id)
    if not is_visible(message):
        raise ApiError(404, f"No message found with id '{message_id}'.")
    return message


async def _check_no_active_run(st: ServerState, thread_id: str) -> None:
    active = await st.store.get_active_run(thread_id)
    if active is not None:
        active = await st.engine.refresh(active)
        if active.status.is_active:
            raise ApiError(
                400,
                f"Can't add messages to {thread_id} while a run {active.id} is active.",
                code="thread_locked",
            )


async def create_message(request: Request, st: ServerState, fl: Flavour) -> Response:
    thread_id = request.path_params["thread_id"]
    body = await read_body(request, CreateMessageBody, st.max_body_bytes)
    message = message_from_wire(body, thread_id)
    await _check_no_active_run(st, thread_id)
    (stored,) = await st.store.append(thread_id, [message])
    return _ok(st, message_to_wire(stored))


async def list_messages(request: Request, st: ServerState, fl: Flavour) -> Response:
    thread_id = request.path_params["thread_id"]
    params = page_params(request)
    run_id = request.query_params.get("run_id") or None
    await st.store.get_thread(thread_id)

    def keep(m: Message) -> bool:
        return is_visible(m) and (run_id is None or m.run_id == run_id)

    async def fetch(**kw: Any) -> Page[Message]:
        return await _cursor_page(st.store.list_messages(thread_id, **kw), params)

    messages, has_more = await visible_page(fetch, params, keep)
    return _ok(st, list_body([message_to_wire(m) for m in messages], has_more, fl))


async def get_message(request: Request, st: ServerState, fl: Flavour) -> Response:
    p = request.path_params
    return _ok(st, message_to_wire(await _visible_message(st, p["thread_id"], p["message_id"])))


async def update_message(request: Request, st: ServerState, fl: Flavour) -> Response:
    p = request.path_params
    body = await read_body(request, MetadataBody, st.max_body_bytes)
    message = await _visible_message(st, p["thread_id"], p["message_id"])
    if body.metadata is not None:
        message = await st.store.update_message(
            p["thread_id"], p["message_id"], metadata=check_metadata(body.metadata)
        )
    return _ok(st, message_to_wire(message))


async def delete_message(request: Request, st: ServerState, fl: Flavour) -> Response:
    p = request.path_params
    await _visible_message(st, p["thread_id"], p["message_id"])
    if not await st.store.delete_message(p["thread_id"], p["message_id"]):
        raise ApiError(404, f"No message found with id '{p['message_id']}'.")
    return _ok(st, {"id": p["message_id"], "object": "thread.message.deleted", "deleted": True})


# --------------------------------------------------------------------------- runs


def _run_options(body: CreateRunBody | CreateThreadAndRunBody) -> dict[str, Any]:
    return {
        "model": body.model,
        "instructions": body.instructions,
        "tools": tools_from_wire(body.tools) if body.tools is not None else None,
        "metadata": body.metadata,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "max_prompt_tokens": body.max_prompt_tokens,
        "max_completion_tokens": body.max_completion_tokens,
        "truncation_strategy": truncation_from_wire(body.truncation_strategy),
        "tool_choice": body.tool_choice,
        "parallel_tool_calls": True
        if body.parallel_tool_calls is None
        else body.parallel_tool_calls,
        "response_format": body.response_format,
    }


async def create_run(request: Request, st: ServerState, fl: Flavour) -> Response:
    thread_id = request.path_params["thread_id"]
    body = await read_body(request, CreateRunBody, st.max_body_bytes)
    options = _run_options(body)
    extra = [message_from_wire(m, thread_id) for m in body.additional_messages or []]
    await st.store.get_thread(thread_id)
    agent = await _agent(st, body.assistant_id)
    run = await st.engine.create_run(
        thread_id,
        agent,
        additional_instructions=body.additional_instructions,
        additional_messages=extra,
        **options,
    )
    prelude = [("thread.run.created", run_to_wire(run)), ("thread.run.queued", run_to_wire(run))]
    return _start(st, run, body.stream, prelude)


async def create_thread_and_run(request: Request, st: ServerState, fl: Flavour) -> Response:
    body = await read_body(request, CreateThreadAndRunBody, st.max_body_bytes)
    options = _run_options(body)
    agent = await _agent(st, body.assistant_id)
    info = await _new_thread(st, body.thread)
    try:
        run = await st.engine.create_run(info.id, agent, **options)
    except Exception:
        await st.store.delete_thread(info.id)
        raise
    prelude = [
        ("thread.created", thread_to_wire(info)),
        ("thread.run.created", run_to_wire(run)),
        ("thread.run.queued", run_to_wire(run)),
    ]
    return _start(st, run, body.stream, prelude)


def _start(
    st: ServerState,
    run: Run,
    stream: bool | None,
    prelude: list[tuple[str, dict[str, Any]]],
) -> Response:
    """Process ``run`` in the background; answer with the run, or with its event stream."""
    if not stream:
        _watch(st.engine.start(run.thread_id, run.id))
        return _ok(st, run_to_wire(run))
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    async def handler(event: str, data: Any) -> None:
        queue.put_nowait((event, data))

    stack = contextlib.ExitStack()
    stack.enter_context(st.engine.listen(run.id, handler))
    task = st.engine.start(run.thread_id, run.id)
    _watch(task)
    task.add_done_callback(lambda t: queue.put_nowait((_END, t)))
    return StreamingResponse(
        _events(stack, queue, prelude),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", **st.poll_headers},
    )


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + ENCODER.encode(data) + b"\n\n"


def _wire_events(event: str, data: Any) -> list[tuple[str, Any]]:
    """The SSE events for one engine event. A ``tool_calls`` step is announced as the services
    do: ``thread.run.step.created`` with no calls, then one ``thread.run.step.delta`` carrying
    them (SDK stream helpers fire their tool-call callbacks from step deltas)."""
    wire = _event_to_wire(event, data)
    if (
        event == "thread.run.step.created"
        and isinstance(data, RunStep)
        and wire["step_details"]["type"] == "tool_calls"
    ):
        calls = wire["step_details"]["tool_calls"]
        created = {**wire, "step_details": {"type": "tool_calls", "tool_calls": []}}
        delta = {
            "id": data.id,
            "object": "thread.run.step.delta",
            "delta": {
                "step_details": {
                    "type": "tool_calls",
                    "tool_calls": [{"index": i, **c} for i, c in enumerate(calls)],
                }
            },
        }
        return [(event, created), ("thread.run.step.delta", delta)]
    return [(event, wire)]


def _event_to_wire(event: str, data: Any) -> Any:
    if isinstance(data, Run):
        return run_to_wire(data)
    if isinstance(data, RunStep):
        return step_to_wire(data)
    if isinstance(data, MessageDelta):
        return delta_to_wire(data)
    if isinstance(data, Message):
        return message_to_wire(data, "completed" if event.endswith(".completed") else "in_progress")
    return data


async def _events(
    stack: contextlib.ExitStack,
    queue: asyncio.Queue[tuple[str, Any]],
    prelude: Sequence[tuple[str, Any]],
) -> AsyncIterator[bytes]:
    """The SSE body of a streamed run: the prelude, then engine events until the run stops.

    Events already queued are sent together in one chunk (one write), in order.
    """
    try:
        out = [_sse(event, data) for event, data in prelude]
        finished = False
        while not finished:
            if not out or queue.empty():
                if out:
                    yield b"".join(out)
                    out = []
                item = await queue.get()
            else:
                item = queue.get_nowait()
            event, data = item
            if event == _END:
                task: asyncio.Task[Run] = data
                if not task.cancelled() and task.exception() is not None:
                    err = to_api_error(task.exception())  # type: ignore[arg-type]
                    out.append(_sse("error", err.body()["error"]))
                finished = True
                break
            out.extend(_sse(name, wire) for name, wire in _wire_events(event, data))
            finished = isinstance(data, Run) and (
                data.status.is_terminal or data.status is RunStatus.REQUIRES_ACTION
            )
        out.append(b"event: done\ndata: [DONE]\n\n")
        yield b"".join(out)
    finally:
        stack.close()


async def list_runs(request: Request, st: ServerState, fl: Flavour) -> Response:
    thread_id = request.path_params["thread_id"]
    params = page_params(request)
    await st.store.get_thread(thread_id)
    page = await _cursor_page(
        st.store.list_runs(
            thread_id,
            order=params.order,
            limit=params.limit,
            after=params.after,
            before=params.before,
        ),
        params,
    )
    runs = [await st.engine.refresh(r) if r.status.is_active else r for r in page.data]
    return _ok(st, list_body([run_to_wire(r) for r in runs], page.has_more, fl))


async def get_run(request: Request, st: ServerState, fl: Flavour) -> Response:
    p = request.path_params
    return _ok(st, run_to_wire(await st.engine.get_run(p["thread_id"], p["run_id"])))


async def update_run(request: Request, st: ServerState, fl: Flavour) -> Response:
    p = request.path_params
    body = await read_body(request, MetadataBody, st.max_body_bytes)
    metadata = check_metadata(body.metadata) if body.metadata is not None else None
    for _ in range(10):
        run = await st.engine.get_run(p["thread_id"], p["run_id"])
        if metadata is None:
            return _ok(st, run_to_wire(run))
        try:
            run = await st.store.update_run(
                msgspec.structs.replace(run, metadata=metadata), expected_status=run.status.value
            )
        except InvalidRunStateError:
            continue  # the run moved under us: read it again
        return _ok(st, run_to_wire(run))
    raise ApiError(409, f"Run {p['run_id']} kept changing; try again.", code="conflict")


async def cancel_run(request: Request, st: ServerState, fl: Flavour) -> Response:
    p = request.path_params
    return _ok(st, run_to_wire(await st.engine.cancel(p["thread_id"], p["run_id"])))


async def submit_tool_outputs(request: Request, st: ServerState, fl: Flavour) -> Response:
    p = request.path_params
    body = await read_body(request, SubmitToolOutputsBody, st.max_body_bytes)
    outputs = [ToolOutput(tool_call_id=o.tool_call_id, output=o.output) for o in body.tool_outputs]
    run = await st.engine.get_run(p["thread_id"], p["run_id"])
    if not body.stream:
        run = await st.engine.submit_tool_outputs(p["thread_id"], p["run_id"], outputs)
        return _start(st, run, False, [])
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    async def handler(event: str, data: Any) -> None:
        queue.put_nowait((event, data))

    stack = contextlib.ExitStack()
    stack.enter_context(st.engine.listen(run.id, handler))
    try:
        run = await st.engine.submit_tool_outputs(p["thread_id"], p["run_id"], outputs)
    except Exception:
        stack.close()
        raise
    task = st.engine.start(run.thread_id, run.id)
    _watch(task)
    task.add_done_callback(lambda t: queue.put_nowait((_END, t)))
    return StreamingResponse(
        _events(stack, queue, []),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", **st.poll_headers},
    )


# --------------------------------------------------------------------------- run steps


async def list_steps(request: Request, st: ServerState, fl: Flavour) -> Response:
    p = request.path_params
    params = page_params(request)
    await st.store.get_run(p["thread_id"], p["run_id"])
    page = await _cursor_page(
        st.store.list_steps(
            p["thread_id"],
            p["run_id"],
            order=params.order,
            limit=params.limit,
            after=params.after,
            before=params.before,
        ),
        params,
    )
    return _ok(st, list_body([step_to_wire(s) for s in page.data], page.has_more, fl))


async def get_step(request: Request, st: ServerState, fl: Flavour) -> Response:
    p = request.path_params
    step = await st.store.get_step(p["thread_id"], p["run_id"], p["step_id"])
    return _ok(st, step_to_wire(step))


# --------------------------------------------------------------------------- routes


def routes(flavour: Flavour) -> list[Route]:
    """The Assistants routes of one flavour, relative to its prefix (``/v1`` or
    ``/api/projects/{project}``). ``POST /threads/runs`` comes before ``/threads/{thread_id}``.
    """
    table: list[tuple[str, Handler, list[str]]] = [
        ("/assistants", create_assistant, ["POST"]),
        ("/assistants", list_assistants, ["GET"]),
        ("/assistants/{assistant_id}", get_assistant, ["GET"]),
        ("/assistants/{assistant_id}", update_assistant, ["POST"]),
        ("/assistants/{assistant_id}", delete_assistant, ["DELETE"]),
        ("/threads", create_thread, ["POST"]),
        ("/threads/runs", create_thread_and_run, ["POST"]),
        ("/threads/{thread_id}", get_thread, ["GET"]),
        ("/threads/{thread_id}", update_thread, ["POST"]),
        ("/threads/{thread_id}", delete_thread, ["DELETE"]),
        ("/threads/{thread_id}/messages", create_message, ["POST"]),
        ("/threads/{thread_id}/messages", list_messages, ["GET"]),
        ("/threads/{thread_id}/messages/{message_id}", get_message, ["GET"]),
        ("/threads/{thread_id}/messages/{message_id}", update_message, ["POST"]),
        ("/threads/{thread_id}/messages/{message_id}", delete_message, ["DELETE"]),
        ("/threads/{thread_id}/runs", create_run, ["POST"]),
        ("/threads/{thread_id}/runs", list_runs, ["GET"]),
        ("/threads/{thread_id}/runs/{run_id}", get_run, ["GET"]),
        ("/threads/{thread_id}/runs/{run_id}", update_run, ["POST"]),
        ("/threads/{thread_id}/runs/{run_id}/cancel", cancel_run, ["POST"]),
        ("/threads/{thread_id}/runs/{run_id}/submit_tool_outputs", submit_tool_outputs, ["POST"]),
        ("/threads/{thread_id}/runs/{run_id}/steps", list_steps, ["GET"]),
        ("/threads/{thread_id}/runs/{run_id}/steps/{step_id}", get_step, ["GET"]),
    ]
    if flavour == "foundry":
        table.insert(6, ("/threads", list_threads, ["GET"]))
    return [_route(path, handler, methods, flavour) for path, handler, methods in table]
