"""The run engine: runs of an agent on a stored thread, walked through the spec's statuses.

One :class:`RunEngine` serves local threads (``backend = "chat"``) and ``threadkit serve`` alike;
neither has a second implementation of runs. A run:

1. is created ``queued`` (:meth:`RunEngine.create_run`), atomically refused while another run on
   the thread is active (:class:`~threadkit.errors.ActiveRunError`);
2. is processed (:meth:`RunEngine.process`): ``in_progress``, then per model call it builds the
   context from the store (instructions, then the thread window the truncation strategy admits),
   calls the :class:`~threadkit.models.ChatModel`, and records a run step;
3. stops at ``requires_action`` when the model calls tools; :meth:`RunEngine.submit_tool_outputs`
   writes the call and its results to the thread as one atomic append and puts the run back
   ``in_progress``; the caller processes it again;
   under ``tool_call_mode="complete"`` (the Responses API's way, see :meth:`RunEngine.create_run`)
   the run instead writes the assistant's tool-call message to the thread and ends
   ``completed``; the caller answers with tool-result messages in a later run;
4. ends ``completed``, ``incomplete`` (output cap reached or too many model calls), ``failed``
   (the model failed: ``last_error``), ``cancelled`` (via ``cancelling`` when a model call was in
   flight) or ``expired`` (``requires_action`` unanswered past ``requires_action_timeout``, or an
   active run whose holder vanished past its lease).

Status transitions follow the Assistants v2 run lifecycle (``RunObject.status`` in
``openai-openapi.json``; the same in ``azure-ai-agents-v1.json``). Every change is a
compare-and-set in the store, so concurrent processes cannot both move one run. Expiry is applied
lazily, whenever a run is read through the engine.

**Run events (optional).** :meth:`RunEngine.listen` registers an async callback for one run; it is
called with the Assistants v2 stream event name and the object (``AssistantStreamEvent`` in
``openai-openapi.json``) at every step of that run, whichever task moves it:

* ``thread.run.<status>`` with the :class:`~threadkit.types.Run` after each status change
  (``in_progress``, ``requires_action``, ``completed``, ``cancelling``...);
* ``thread.run.step.created`` / ``.in_progress`` / ``.completed`` / ``.cancelled`` /
  ``.failed`` / ``.expired`` with the :class:`~threadkit.types.RunStep`;
* ``thread.message.created`` / ``.in_progress`` (the assistant message, not yet stored),
  ``thread.message.delta`` with a :class:`MessageDelta`, ``thread.message.completed`` with the
  stored :class:`~threadkit.types.Message`.

While a run has a listener and the model supports streaming, the model is streamed and every text
fragment is one ``thread.message.delta``; otherwise the whole text is one delta. With no
listener nothing changes: the model's ``complete`` is called and no event is built. A callback
that raises is logged and ignored; it never breaks the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeAlias

import msgspec

from threadkit._ids import new_id
from threadkit.errors import (
    InvalidRunStateError,
    ModelError,
    ModelRateLimitError,
    ValidationError,
)
from threadkit.models import (
    ChatModel,
    ChatRequest,
    ChatResponse,
    estimate_tokens,
    supports_streaming,
)
from threadkit.stores.base import MessageStore, check_metadata
from threadkit.truncation import DEFAULT_CONTEXT_WINDOW, build_context
from threadkit.types import (
    Agent,
    ContentPart,
    FunctionCall,
    FunctionTool,
    IncompleteDetails,
    LastError,
    Message,
    MessageCreationDetails,
    RequiredAction,
    Run,
    RunStatus,
    RunStep,
    RunStepStatus,
    SubmitToolOutputs,
    TextContent,
    Tool,
    ToolCall,
    ToolCallContent,
    ToolCallsDetails,
    ToolOutput,
    ToolResultContent,
    TruncationStrategy,
    Usage,
)

__all__ = ["ALLOWED_TRANSITIONS", "MessageDelta", "RunEngine", "RunEventHandler"]

_log = logging.getLogger("threadkit.engine")


class MessageDelta(msgspec.Struct, kw_only=True, frozen=True):
    """A text fragment of an assistant message being written (the ``thread.message.delta`` event).

    Attributes:
        id: the message id (the id the message is stored under when it completes).
        text: the fragment, to be appended to the text part at ``index``.
        index: the content part index (0: threadkit streams one text part).
    """

    id: str
    text: str
    index: int = 0


RunEventHandler: TypeAlias = Callable[[str, Any], Awaitable[None]]
"""``async def handler(event: str, data: Run | RunStep | Message | MessageDelta) -> None``."""


class _Draft:
    """The ids an assistant answer will be stored under, fixed before the model is called so
    streamed events and stored objects agree."""

    __slots__ = ("announced", "created_at", "message_id", "step_id")

    def __init__(self, ts: int) -> None:
        self.message_id = new_id("msg")
        self.step_id = new_id("step")
        self.created_at = ts
        self.announced = False


S = RunStatus
ALLOWED_TRANSITIONS: Mapping[RunStatus, frozenset[RunStatus]] = {
    S.QUEUED: frozenset({S.IN_PROGRESS, S.CANCELLING, S.CANCELLED, S.EXPIRED, S.FAILED}),
    S.IN_PROGRESS: frozenset(
        {S.REQUIRES_ACTION, S.COMPLETED, S.INCOMPLETE, S.FAILED, S.CANCELLING, S.EXPIRED}
    ),
    S.REQUIRES_ACTION: frozenset({S.IN_PROGRESS, S.CANCELLING, S.CANCELLED, S.EXPIRED}),
    S.CANCELLING: frozenset({S.CANCELLED, S.EXPIRED}),
    S.CANCELLED: frozenset(),
    S.FAILED: frozenset(),
    S.COMPLETED: frozenset(),
    S.INCOMPLETE: frozenset(),
    S.EXPIRED: frozenset(),
}
"""Run status → the statuses it may move to (the Assistants v2 run lifecycle)."""

_PENDING_TEXT = "threadkit.pending_text"
_TOOL_CALL_MODE = "threadkit.tool_call_mode"


class RunEngine:
    """Creates and processes runs on threads kept in a :class:`MessageStore`.

    Args:
        store: where threads, messages, runs and steps live.
        model: the chat model runs call.
        requires_action_timeout: seconds a run waits in ``requires_action`` for tool outputs
            before it expires (default 600, as the services do).
        run_timeout: seconds an active run holds its thread without progress before it counts
            as expired (a crashed holder's lease; renewed at every model call; default 600).
        max_model_calls: model calls one run may make before it ends ``incomplete``
            (a runaway tool loop guard; default 25).
        clock: returns unix seconds; injectable for tests.
    """

    def __init__(
        self,
        store: MessageStore,
        model: ChatModel,
        *,
        requires_action_timeout: float = 600.0,
        run_timeout: float = 600.0,
        max_model_calls: int = 25,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if requires_action_timeout <= 0 or run_timeout <= 0:
            raise ValidationError("requires_action_timeout and run_timeout must be > 0 seconds")
        self.store = store
        self.model = model
        self.requires_action_timeout = requires_action_timeout
        self.run_timeout = run_timeout
        self.max_model_calls = max_model_calls
        self._clock = clock or time.time
        self._tasks: dict[str, asyncio.Task[Run]] = {}
        self._listeners: dict[str, list[RunEventHandler]] = {}

    # ------------------------------------------------------------------ helpers
    def now(self) -> int:
        """The engine clock, in integer unix seconds."""
        return int(self._clock())

    async def _move(self, run: Run, status: RunStatus, **changes: Any) -> Run:
        """Compare-and-set ``run`` from its current status to ``status`` with ``changes``."""
        if status not in ALLOWED_TRANSITIONS[run.status]:
            raise InvalidRunStateError(
                f"run {run.id} cannot move from {run.status.value} to {status.value}",
                run_id=run.id,
                status=run.status.value,
            )
        new = msgspec.structs.replace(run, status=status, **changes)
        stored = await self.store.update_run(new, expected_status=run.status.value)
        await self._emit(stored.id, f"thread.run.{stored.status.value}", stored)
        return stored

    # ------------------------------------------------------------------ events
    @contextlib.contextmanager
    def listen(self, run_id: str, handler: RunEventHandler) -> Iterator[None]:
        """Call ``handler(event, data)`` for every event of run ``run_id`` while the block runs.

        See the module docstring for the events. Register before creating work for the run
        (processing, submitting tool outputs) so no event is missed. Several handlers may
        listen to one run; each is awaited in turn, so it should only queue the event.
        """
        handlers = self._listeners.setdefault(run_id, [])
        handlers.append(handler)
        try:
            yield
        finally:
            handlers.remove(handler)
            if not handlers:
                self._listeners.pop(run_id, None)

    async def _emit(self, run_id: str, event: str, data: Any) -> None:
        handlers = self._listeners.get(run_id)
        if not handlers:
            return
        for handler in list(handlers):
            try:
                await handler(event, data)
            except Exception:  # a listener never breaks a run
                _log.exception("run event handler failed for %s on run %s", event, run_id)

    # ------------------------------------------------------------------ create
    async def create_run(
        self,
        thread_id: str,
        agent: Agent | None = None,
        *,
        model: str | None = None,
        instructions: str | None = None,
        additional_instructions: str | None = None,
        additional_messages: Sequence[Message] = (),
        tools: Sequence[Tool] | None = None,
        metadata: Mapping[str, str] | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_prompt_tokens: int | None = None,
        max_completion_tokens: int | None = None,
        truncation_strategy: TruncationStrategy | Mapping[str, Any] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        parallel_tool_calls: bool = True,
        response_format: str | dict[str, Any] | None = None,
        run_id: str | None = None,
        tool_call_mode: Literal["requires_action", "complete"] = "requires_action",
    ) -> Run:
        """Create a ``queued`` run (spec ``CreateRunRequest``): nothing is processed yet.

        Settings given here override the agent's. ``additional_messages`` are appended to the
        thread (atomically) once the run is created; ``additional_instructions`` are appended
        to the instructions.

        ``tool_call_mode`` says what a model turn with tool calls does: ``"requires_action"``
        (the default, Assistants v2) stops the run for :meth:`submit_tool_outputs`;
        ``"complete"`` (Responses API) appends the assistant message holding the tool calls
        (with any text) to the thread, records a completed ``tool_calls`` step and ends the run
        ``completed``; the tool results then come as ``tool`` messages before a later run. The
        mode is kept on the run, in ``provider_details["threadkit.tool_call_mode"]``.

        Returns:
            The stored run, ``queued``, with ``expires_at`` = now + ``run_timeout``.

        Raises:
            ThreadNotFoundError: no such thread.
            ActiveRunError: the thread has an active run.
            ValidationError: bad metadata, a bad truncation strategy, an unknown
                ``tool_call_mode`` or bad messages (the run is then stored ``failed`` so the
                thread is not held).
        """
        if tool_call_mode not in ("requires_action", "complete"):
            raise ValidationError(f"unknown tool_call_mode {tool_call_mode!r}")
        agent = agent or Agent()
        ts = self.now()
        text = instructions if instructions is not None else agent.instructions
        if additional_instructions:
            text = f"{text}\n\n{additional_instructions}" if text else additional_instructions
        strategy = _truncation(truncation_strategy)
        if strategy.type == "last_messages" and not (strategy.last_messages or 0) >= 1:
            raise ValidationError("truncation_strategy last_messages needs last_messages >= 1")
        run = Run(
            id=run_id or new_id("run"),
            thread_id=thread_id,
            status=RunStatus.QUEUED,
            created_at=ts,
            agent_id=agent.id,
            model=model or agent.model or self.model.model_name,
            instructions=text,
            tools=list(tools if tools is not None else agent.tools),
            expires_at=ts + int(self.run_timeout),
            metadata=check_metadata(metadata),
            temperature=temperature if temperature is not None else agent.temperature,
            top_p=top_p if top_p is not None else agent.top_p,
            max_prompt_tokens=max_prompt_tokens,
            max_completion_tokens=max_completion_tokens,
            truncation_strategy=strategy,
            tool_choice=tool_choice,
            parallel_tool_calls=parallel_tool_calls,
            response_format=response_format
            if response_format is not None
            else agent.response_format,
            provider_details={_TOOL_CALL_MODE: "complete"}
            if tool_call_mode == "complete"
            else None,
        )
        await self.store.get_thread(thread_id)
        stale = await self.store.get_active_run(thread_id)
        if stale is not None:
            await self.refresh(stale)  # an expired holder is marked so, and stops blocking
        run = await self.store.create_run(run)
        if additional_messages:
            try:
                await self.store.append(
                    thread_id, additional_messages, idempotency_key=f"{run.id}:additional"
                )
            except ValidationError as exc:
                await self._fail(run, "invalid_prompt", str(exc))
                raise
        return run

    # ------------------------------------------------------------------ read
    async def get_run(self, thread_id: str, run_id: str) -> Run:
        """A run, with lazy expiry applied.

        Raises:
            ThreadNotFoundError, RunNotFoundError: unknown ids.
        """
        return await self.refresh(await self.store.get_run(thread_id, run_id))

    async def refresh(self, run: Run) -> Run:
        """Expire ``run`` if it is active and past ``expires_at``; return the current run."""
        if not run.status.is_active or run.expires_at is None or run.expires_at > self.now():
            return run
        try:
            expired = await self._move(run, RunStatus.EXPIRED, required_action=None)
        except InvalidRunStateError:
            return await self.store.get_run(run.thread_id, run.id)
        await self._close_steps(expired, RunStepStatus.EXPIRED)
        return expired

    # ------------------------------------------------------------------ process
    def start(self, thread_id: str, run_id: str) -> asyncio.Task[Run]:
        """Process a run in a background task (one task per run; returns the existing one if
        it is still going). The task's result is the run when it stops; it never raises for
        model failures (those end the run ``failed``)."""
        task = self._tasks.get(run_id)
        if task is not None and not task.done():
            return task
        task = asyncio.get_running_loop().create_task(self.process(thread_id, run_id))
        self._tasks[run_id] = task

        def _forget(t: asyncio.Task[Run]) -> None:
            if self._tasks.get(run_id) is t:
                del self._tasks[run_id]

        task.add_done_callback(_forget)
        return task

    async def aclose(self) -> None:
        """Cancel the background tasks of :meth:`start` and wait for them."""
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()

    async def process(self, thread_id: str, run_id: str) -> Run:
        """Drive a run until it stops: a terminal status or ``requires_action``.

        Returns:
            The run as it stopped.

        Raises:
            ThreadNotFoundError, RunNotFoundError: unknown ids.
            StoreError: the store failed (the run stays as it was stored last).
        """
        # the guard counts the run's model calls across process() calls: each answered call
        # left one run step, and every tool turn ends one process() and starts another
        calls = len(
            (await self.store.list_steps(thread_id, run_id, limit=self.max_model_calls)).data
        )
        while True:
            run = await self.get_run(thread_id, run_id)
            if run.status is RunStatus.QUEUED:
                ts = self.now()
                run = await self._try_move(
                    run, RunStatus.IN_PROGRESS, started_at=ts, expires_at=ts + int(self.run_timeout)
                )
                continue
            if run.status is RunStatus.CANCELLING:
                return await self._cancelled(run)
            if run.status is not RunStatus.IN_PROGRESS:
                return run
            if calls >= self.max_model_calls:
                return await self._finish(
                    run,
                    RunStatus.INCOMPLETE,
                    incomplete_details=IncompleteDetails(reason="max_model_calls"),
                )
            calls += 1
            stopped = await self._model_turn(run)
            if stopped is not None:
                return stopped

    async def _try_move(self, run: Run, status: RunStatus, **changes: Any) -> Run:
        try:
            return await self._move(run, status, **changes)
        except InvalidRunStateError:
            return await self.store.get_run(run.thread_id, run.id)

    async def _model_turn(self, run: Run) -> Run | None:
        """One model call. Returns the run if it stopped, None to call the model again."""
        # renew the lease once half of it is spent (an active run whose process vanished
        # expires run_timeout after its last renewal); a fresh lease costs no write
        ts = self.now()
        if run.expires_at is None or run.expires_at - ts < self.run_timeout / 2:
            run = await self._try_move_same(run, expires_at=ts + int(self.run_timeout))
            if run.status is not RunStatus.IN_PROGRESS:
                return None
        request = await self.build_request(run)
        draft = _Draft(self.now())
        try:
            response = await self._call_model(run, request, draft)
        except ModelRateLimitError as exc:
            return await self._fail_current(run, "rate_limit_exceeded", str(exc))
        except ModelError as exc:
            return await self._fail_current(run, "server_error", str(exc))
        except ValidationError as exc:
            return await self._fail_current(run, "invalid_prompt", str(exc))
        current = await self.store.get_run(run.thread_id, run.id)
        if current.status is RunStatus.CANCELLING:
            return await self._cancelled(current)
        if current.status is not RunStatus.IN_PROGRESS:
            return current  # expired or moved by another process: the answer is dropped
        return await self._apply(current, response, draft)

    async def _call_model(self, run: Run, request: ChatRequest, draft: _Draft) -> ChatResponse:
        """Call the model; streamed (text as ``thread.message.delta`` events) only while the run
        has a listener and the model can stream."""
        if run.id not in self._listeners or not supports_streaming(self.model):
            return await self.model.complete(request)
        response: ChatResponse | None = None
        async for delta in self.model.stream(request):
            if delta.text:
                await self._announce(run, draft)
                await self._emit(
                    run.id,
                    "thread.message.delta",
                    MessageDelta(id=draft.message_id, text=delta.text),
                )
            if delta.response is not None:
                response = delta.response
        if response is None:
            raise ModelError("the model's stream ended without a final response")
        return response

    async def _announce(self, run: Run, draft: _Draft) -> None:
        """Emit the message-creation step and the in-progress message of ``draft`` (once)."""
        if draft.announced or run.id not in self._listeners:
            return
        draft.announced = True
        step = self._message_step(run, draft, RunStepStatus.IN_PROGRESS)
        await self._emit(run.id, "thread.run.step.created", step)
        await self._emit(run.id, "thread.run.step.in_progress", step)
        message = Message(
            id=draft.message_id,
            thread_id=run.thread_id,
            role="assistant",
            content=[TextContent(text="")],
            created_at=draft.created_at,
            run_id=run.id,
            agent_id=run.agent_id,
        )
        await self._emit(run.id, "thread.message.created", message)
        await self._emit(run.id, "thread.message.in_progress", message)

    def _message_step(
        self, run: Run, draft: _Draft, status: RunStepStatus, **changes: Any
    ) -> RunStep:
        return RunStep(
            id=draft.step_id,
            run_id=run.id,
            thread_id=run.thread_id,
            agent_id=run.agent_id,
            type="message_creation",
            status=status,
            step_details=MessageCreationDetails(message_creation={"message_id": draft.message_id}),
            created_at=draft.created_at,
            **changes,
        )

    async def _try_move_same(self, run: Run, **changes: Any) -> Run:
        new = msgspec.structs.replace(run, **changes)
        try:
            return await self.store.update_run(new, expected_status=run.status.value)
        except InvalidRunStateError:
            return await self.store.get_run(run.thread_id, run.id)

    async def build_request(self, run: Run) -> ChatRequest:
        """The model request of the run's next call: instructions, then the context window.

        The ``auto`` budget is ``max_prompt_tokens`` (else the model's context window, else
        128,000 tokens) less the instructions' estimate and ``max_completion_tokens``.
        """
        window = run.max_prompt_tokens or self.model.context_window or DEFAULT_CONTEXT_WINDOW
        budget = window - estimate_tokens((), run.instructions) - (run.max_completion_tokens or 0)
        messages = await build_context(
            self.store, run.thread_id, run.truncation_strategy, token_budget=max(budget, 1)
        )
        return ChatRequest(
            messages=messages,
            instructions=run.instructions,
            tools=[t for t in run.tools if isinstance(t, FunctionTool)],
            model=run.model,
            temperature=run.temperature,
            top_p=run.top_p,
            max_completion_tokens=run.max_completion_tokens,
            tool_choice=run.tool_choice,
            parallel_tool_calls=run.parallel_tool_calls,
            response_format=run.response_format,
        )

    async def _apply(self, run: Run, response: ChatResponse, draft: _Draft) -> Run | None:
        usage = (run.usage or Usage()) + response.usage
        ts = self.now()
        calls = response.tool_calls
        if calls and (run.provider_details or {}).get(_TOOL_CALL_MODE) == "complete":
            return await self._complete_with_calls(run, response, draft, usage, ts)
        if calls:
            tool_calls = [
                ToolCall(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments))
                for c in calls
            ]
            step = RunStep(
                id=new_id("step"),
                run_id=run.id,
                thread_id=run.thread_id,
                agent_id=run.agent_id,
                type="tool_calls",
                status=RunStepStatus.IN_PROGRESS,
                step_details=ToolCallsDetails(tool_calls=tool_calls),
                created_at=ts,
                usage=response.usage,
            )
            await self.store.put_step(step)
            if draft.announced:  # streamed text before the calls: stored with them, same id
                await self._emit(
                    run.id,
                    "thread.message.completed",
                    Message(
                        id=draft.message_id,
                        thread_id=run.thread_id,
                        role="assistant",
                        content=[TextContent(text=response.text)],
                        created_at=draft.created_at,
                        run_id=run.id,
                        agent_id=run.agent_id,
                    ),
                )
            await self._emit(run.id, "thread.run.step.created", step)
            await self._emit(run.id, "thread.run.step.in_progress", step)
            details = dict(run.provider_details or {})
            details[_PENDING_TEXT] = response.text
            details["threadkit.pending_step"] = step.id
            if draft.announced:
                details["threadkit.pending_message"] = draft.message_id
            return await self._move(
                run,
                RunStatus.REQUIRES_ACTION,
                usage=usage,
                required_action=RequiredAction(
                    submit_tool_outputs=SubmitToolOutputs(tool_calls=tool_calls)
                ),
                expires_at=ts + int(self.requires_action_timeout),
                provider_details=details,
            )
        content: list[ContentPart] = list(response.content) or [TextContent(text="")]
        if run.id in self._listeners and not draft.announced:
            await self._announce(run, draft)
            if response.text:
                await self._emit(
                    run.id,
                    "thread.message.delta",
                    MessageDelta(id=draft.message_id, text=response.text),
                )
        message = Message(
            id=draft.message_id,
            thread_id=run.thread_id,
            role="assistant",
            content=content,
            created_at=ts,
            run_id=run.id,
            agent_id=run.agent_id,
        )
        (stored,) = await self.store.append(
            run.thread_id, [message], idempotency_key=f"{run.id}:answer"
        )
        done = await self.store.put_step(
            self._message_step(
                run, draft, RunStepStatus.COMPLETED, completed_at=ts, usage=response.usage
            )
        )
        await self._emit(run.id, "thread.message.completed", stored)
        await self._emit(run.id, "thread.run.step.completed", done)
        if response.finish_reason == "length":
            return await self._finish(
                run,
                RunStatus.INCOMPLETE,
                usage=usage,
                incomplete_details=IncompleteDetails(reason="max_completion_tokens"),
            )
        return await self._finish(run, RunStatus.COMPLETED, usage=usage, completed_at=ts)

    async def _complete_with_calls(
        self, run: Run, response: ChatResponse, draft: _Draft, usage: Usage, ts: int
    ) -> Run:
        """``tool_call_mode="complete"``: store the tool-call turn and end the run completed."""
        message = Message(
            id=draft.message_id,
            thread_id=run.thread_id,
            role="assistant",
            content=list(response.content),
            created_at=ts,
            run_id=run.id,
            agent_id=run.agent_id,
        )
        (stored,) = await self.store.append(
            run.thread_id, [message], idempotency_key=f"{run.id}:answer"
        )
        calls = [
            ToolCall(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments))
            for c in response.tool_calls
        ]
        step = await self.store.put_step(
            RunStep(
                id=draft.step_id,
                run_id=run.id,
                thread_id=run.thread_id,
                agent_id=run.agent_id,
                type="tool_calls",
                status=RunStepStatus.COMPLETED,
                step_details=ToolCallsDetails(tool_calls=calls),
                created_at=ts,
                completed_at=ts,
                usage=response.usage,
            )
        )
        await self._emit(run.id, "thread.message.completed", stored)
        await self._emit(run.id, "thread.run.step.created", step)
        await self._emit(run.id, "thread.run.step.completed", step)
        return await self._finish(run, RunStatus.COMPLETED, usage=usage, completed_at=ts)

    async def _finish(self, run: Run, status: RunStatus, **changes: Any) -> Run:
        changes.setdefault("expires_at", None)
        changes.setdefault("required_action", None)
        return await self._move(run, status, **changes)

    async def _fail(self, run: Run, code: str, message: str) -> Run:
        ts = self.now()
        failed = await self._move(
            run,
            RunStatus.FAILED,
            failed_at=ts,
            expires_at=None,
            last_error=LastError(code=code, message=message),
        )
        await self._close_steps(failed, RunStepStatus.FAILED)
        return failed

    async def _fail_current(self, run: Run, code: str, message: str) -> Run:
        current = await self.store.get_run(run.thread_id, run.id)
        if current.status is RunStatus.CANCELLING:
            return await self._cancelled(current)
        if current.status is not RunStatus.IN_PROGRESS:
            return current
        return await self._fail(current, code, message)

    async def _cancelled(self, run: Run) -> Run:
        done = await self._move(
            run,
            RunStatus.CANCELLED,
            cancelled_at=self.now(),
            expires_at=None,
            required_action=None,
        )
        await self._close_steps(done, RunStepStatus.CANCELLED)
        return done

    async def _close_steps(self, run: Run, status: RunStepStatus) -> None:
        """Move the run's in-progress steps to ``status`` with the matching timestamp."""
        ts = self.now()
        field = {
            RunStepStatus.CANCELLED: "cancelled_at",
            RunStepStatus.FAILED: "failed_at",
            RunStepStatus.EXPIRED: "expired_at",
        }[status]
        after: str | None = None
        while True:
            page = await self.store.list_steps(run.thread_id, run.id, limit=100, after=after)
            for step in page.data:
                if step.status is RunStepStatus.IN_PROGRESS:
                    changes: dict[str, Any] = {field: ts}
                    if status is RunStepStatus.FAILED:
                        changes["last_error"] = run.last_error
                    closed = await self.store.put_step(
                        msgspec.structs.replace(step, status=status, **changes)
                    )
                    await self._emit(run.id, f"thread.run.step.{status.value}", closed)
            if not page.has_more:
                return
            after = page.last_id

    # ------------------------------------------------------------------ tool outputs
    async def submit_tool_outputs(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput]
    ) -> Run:
        """Answer a ``requires_action`` run's tool calls and put it back ``in_progress``.

        The assistant's tool-call message and one ``tool`` message per output are appended to
        the thread in one atomic, idempotent append. The run is NOT processed further here:
        call :meth:`process` (or :meth:`start`) next.

        Args:
            outputs: one output for every tool call in ``run.required_action``, any order.

        Returns:
            The run, ``in_progress``.

        Raises:
            ThreadNotFoundError, RunNotFoundError: unknown ids.
            InvalidRunStateError: the run is not ``requires_action`` (e.g. it expired).
            ValidationError: an output is missing, duplicated or answers an unknown call.
        """
        run = await self.get_run(thread_id, run_id)
        if run.status is not RunStatus.REQUIRES_ACTION or run.required_action is None:
            raise InvalidRunStateError(
                f"Runs in status {run.status.value!r} do not accept tool outputs (run {run.id}).",
                run_id=run.id,
                status=run.status.value,
            )
        calls = run.required_action.submit_tool_outputs.tool_calls
        given = match_tool_outputs(run, outputs)
        details = dict(run.provider_details or {})
        text = str(details.pop(_PENDING_TEXT, "") or "")
        step_id = str(details.pop("threadkit.pending_step", ""))
        message_id = str(details.pop("threadkit.pending_message", "")) or new_id("msg")
        ts = self.now()
        call_parts: list[ContentPart] = [TextContent(text=text)] if text else []
        call_parts += [
            ToolCallContent(id=c.id, name=c.function.name, arguments=c.function.arguments)
            for c in calls
        ]
        turn = [
            Message(
                id=message_id,
                thread_id=thread_id,
                role="assistant",
                content=call_parts,
                created_at=ts,
                run_id=run.id,
                agent_id=run.agent_id,
            )
        ]
        turn += [
            Message(
                id=new_id("msg"),
                thread_id=thread_id,
                role="tool",
                content=[ToolResultContent(tool_call_id=c.id, output=given[c.id])],
                created_at=ts,
                run_id=run.id,
                agent_id=run.agent_id,
            )
            for c in calls
        ]
        await self.store.append(thread_id, turn, idempotency_key=f"{run.id}:tools:{step_id}")
        if step_id:
            with contextlib.suppress(Exception):
                step = await self.store.get_step(thread_id, run.id, step_id)
                if isinstance(step.step_details, ToolCallsDetails):
                    answered = [
                        msgspec.structs.replace(
                            c, function=msgspec.structs.replace(c.function, output=given.get(c.id))
                        )
                        for c in step.step_details.tool_calls
                    ]
                    done = await self.store.put_step(
                        msgspec.structs.replace(
                            step,
                            status=RunStepStatus.COMPLETED,
                            completed_at=ts,
                            step_details=ToolCallsDetails(tool_calls=answered),
                        )
                    )
                    await self._emit(run.id, "thread.run.step.completed", done)
        return await self._move(
            run,
            RunStatus.IN_PROGRESS,
            required_action=None,
            expires_at=ts + int(self.run_timeout),
            provider_details=details or None,
        )

    # ------------------------------------------------------------------ cancel
    async def cancel(self, thread_id: str, run_id: str) -> Run:
        """Cancel a run.

        A ``queued`` or ``requires_action`` run is ``cancelled`` at once; an ``in_progress``
        run becomes ``cancelling`` and is ``cancelled`` when its model call returns (the answer
        is discarded). Cancelling a ``cancelling`` run returns it unchanged.

        Returns:
            The run, ``cancelling`` or ``cancelled``.

        Raises:
            ThreadNotFoundError, RunNotFoundError: unknown ids.
            InvalidRunStateError: the run already ended (as the services answer 400).
        """
        for _ in range(5):
            run = await self.get_run(thread_id, run_id)
            if run.status.is_terminal:
                raise InvalidRunStateError(
                    f"Cannot cancel run with status {run.status.value!r}.",
                    run_id=run.id,
                    status=run.status.value,
                )
            if run.status is RunStatus.CANCELLING:
                return run
            try:
                if run.status is RunStatus.IN_PROGRESS:
                    return await self._move(run, RunStatus.CANCELLING)
                return await self._cancelled(run)
            except InvalidRunStateError:
                continue  # it moved under us: look again
        return await self.get_run(thread_id, run_id)


def _truncation(value: TruncationStrategy | Mapping[str, Any] | None) -> TruncationStrategy:
    """A truncation strategy from a struct or a spec-style dict (``{"type": "last_messages",
    "last_messages": 10}``). Raises ValidationError for anything else."""
    if value is None:
        return TruncationStrategy()
    if isinstance(value, TruncationStrategy):
        return value
    try:
        return msgspec.convert(dict(value), TruncationStrategy)
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        raise ValidationError(f"invalid truncation_strategy {value!r}: {exc}") from exc


def match_tool_outputs(run: Run, outputs: Sequence[ToolOutput]) -> dict[str, str]:
    """Check tool outputs against the calls a ``requires_action`` run waits on.

    Shared by every backend that answers tool calls itself (the run engine, the Responses
    adapter), so they refuse the same inputs with the same messages.

    Args:
        run: a run whose ``required_action`` lists the tool calls.
        outputs: the outputs given, any order.

    Returns:
        tool call id → output, for every call of the run.

    Raises:
        ValidationError: an output for a call the run did not make, two outputs for one call,
            or a call without an output (all outputs go in one request, as in the specs).
    """
    calls = run.required_action.submit_tool_outputs.tool_calls if run.required_action else []
    wanted = {c.id for c in calls}
    given: dict[str, str] = {}
    for out in outputs:
        if out.tool_call_id not in wanted:
            raise ValidationError(
                f"tool output for {out.tool_call_id}, which run {run.id} did not call"
            )
        if out.tool_call_id in given:
            raise ValidationError(f"two tool outputs for {out.tool_call_id}")
        given[out.tool_call_id] = out.output
    missing = sorted(wanted - given.keys())
    if missing:
        raise ValidationError(
            f"tool outputs are missing for {', '.join(missing)}; submit all in one request"
        )
    return given
