"""The ``AgentThread`` and ``ThreadBackend`` seams, and the logic every backend shares.

An :class:`AgentThread` is one conversation on one backend: its messages, and the runs of agents
on it. A :class:`ThreadBackend` creates, finds, lists and resumes threads. Application code written
against these two Protocols runs unchanged whichever backend the configuration names.

:class:`BaseAgentThread` holds what is the same everywhere, written once: :meth:`~BaseAgentThread.run`
(create a run, wait for it, execute registered tool functions through ``requires_action``, repeat),
the polling policy, the audit :meth:`~BaseAgentThread.export`, and content normalisation. Backends
implement only the primitive operations.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

from threadkit.errors import RunTimeoutError, UnsupportedOperation, ValidationError
from threadkit.tools import FunctionRegistry, ToolFunction
from threadkit.types import (
    Agent,
    Attachment,
    ContentPart,
    FileContent,
    FunctionTool,
    ImageFileContent,
    ImageUrlContent,
    Message,
    Page,
    ReasoningContent,
    Role,
    Run,
    RunStatus,
    RunStep,
    TextContent,
    ThreadInfo,
    Tool,
    ToolCallContent,
    ToolOutput,
    ToolResultContent,
)

__all__ = [
    "RUN_OPTIONS",
    "AgentThread",
    "BaseAgentThread",
    "Content",
    "PollPolicy",
    "ThreadBackend",
    "build_message",
    "merge_tools",
    "normalize_content",
]

Content = str | ContentPart | Sequence[ContentPart]
"""Message content as callers give it: a string (one text part), one part, or a list of parts."""

Order = Literal["asc", "desc"]

RUN_OPTIONS = frozenset(
    {
        "model",
        "instructions",
        "additional_instructions",
        "additional_messages",
        "tools",
        "metadata",
        "temperature",
        "top_p",
        "max_prompt_tokens",
        "max_completion_tokens",
        "truncation_strategy",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
    }
)
"""The options :meth:`AgentThread.create_run` takes (the spec's create-run request fields)."""


class PollPolicy(msgspec.Struct, kw_only=True, frozen=True):
    """How a run is polled until it stops (the same policy for every backend).

    Attributes:
        initial_delay: seconds before the first poll (0.5).
        multiplier: each wait is the previous times this (1.5).
        max_delay: the longest wait between polls, in seconds (5.0).
        timeout: seconds after which polling gives up with RunTimeoutError (None: never).
        retry_failed: how many times a ``failed`` run is retried as a new run, with exponential
            backoff (0: never), as the Foundry best-practice guidance recommends for transient
            service errors.
        retry_backoff: seconds before the first retry; doubled for each further one.
    """

    initial_delay: float = 0.5
    multiplier: float = 1.5
    max_delay: float = 5.0
    timeout: float | None = None
    retry_failed: int = 0
    retry_backoff: float = 1.0

    def delays(self, hint: float | None = None) -> Iterable[float]:
        """The waits between polls, in seconds; ``hint`` (a service's poll-after) wins when given."""
        delay = self.initial_delay
        while True:
            yield min(hint, self.max_delay) if hint is not None else delay
            delay = min(delay * self.multiplier, self.max_delay)


@runtime_checkable
class AgentThread(Protocol):
    """One conversation on one backend (async); :class:`BaseAgentThread` documents each method
    at length, and ``threadkit.sync`` offers the same names without ``await``."""

    @property
    def id(self) -> str:
        """The thread id (the service's own id on service backends)."""
        ...

    @property
    def backend(self) -> str:
        """The backend kind (``chat``, ``assistants``, ``foundry``, ``responses``...)."""
        ...

    async def add_message(
        self,
        role: Role,
        content: Content,
        *,
        attachments: Sequence[Attachment] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Message:
        """Append one message; returns it as stored. Raises ActiveRunError (a run is active),
        ValidationError (bad content or metadata), UnsupportedOperation (the service cannot hold
        a part), ThreadNotFoundError."""
        ...

    def messages(
        self,
        order: Order = "asc",
        *,
        limit: int | None = None,
        after: str | None = None,
        before: str | None = None,
    ) -> AsyncIterator[Message]:
        """Iterate messages (``asc`` = oldest first), fetching pages of up to 100.
        Raises MessageNotFoundError for a cursor naming no message."""
        ...

    async def list_messages(
        self,
        *,
        order: Order = "asc",
        limit: int = 100,
        after: str | None = None,
        before: str | None = None,
    ) -> Page[Message]:
        """One page of messages (``asc`` = oldest first; ``limit`` 1..100). Raises
        MessageNotFoundError for a bad cursor, ThreadNotFoundError."""
        ...

    async def get_message(self, message_id: str) -> Message:
        """One message. Raises MessageNotFoundError, ThreadNotFoundError."""
        ...

    async def run(
        self,
        agent: Agent | None = None,
        *,
        functions: Iterable[ToolFunction] | Mapping[str, ToolFunction] | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> Run:
        """Run ``agent`` to the end (terminal or ``requires_action``), executing ``functions``
        through ``requires_action`` along the way; ``timeout`` in seconds. Raises ActiveRunError,
        RunTimeoutError, ValidationError."""
        ...

    async def create_run(self, agent: Agent | None = None, **options: Any) -> Run:
        """Start a run and return at once (usually ``queued``); ``options`` are the spec's
        create-run fields (:data:`RUN_OPTIONS`). Raises ActiveRunError, ValidationError,
        UnsupportedOperation."""
        ...

    async def get_run(self, run_id: str) -> Run:
        """The run as it is now. Raises RunNotFoundError, ThreadNotFoundError."""
        ...

    async def wait_run(self, run_id: str, *, timeout: float | None = None) -> Run:
        """Poll until the run is terminal or ``requires_action`` (0.5 s, ×1.5, 5 s cap, or the
        service's hint); ``timeout`` in seconds. Raises RunTimeoutError, RunNotFoundError."""
        ...

    def runs(self, order: Order = "desc", *, limit: int | None = None) -> AsyncIterator[Run]:
        """Iterate the thread's runs (``desc`` = newest first)."""
        ...

    async def list_runs(
        self, *, order: Order = "desc", limit: int = 100, after: str | None = None
    ) -> Page[Run]:
        """One page of runs (``desc`` = newest first)."""
        ...

    async def list_run_steps(
        self, run_id: str, *, order: Order = "asc", limit: int = 100, after: str | None = None
    ) -> Page[RunStep]:
        """One page of a run's steps (``asc`` = oldest first). Raises RunNotFoundError."""
        ...

    def run_steps(self, run_id: str, order: Order = "asc") -> AsyncIterator[RunStep]:
        """Iterate a run's steps (``asc`` = oldest first): message creations and tool calls
        with their arguments and outputs. Raises RunNotFoundError."""
        ...

    async def submit_tool_outputs(self, run_id: str, outputs: Sequence[ToolOutput]) -> Run:
        """Answer every tool call of a ``requires_action`` run; it goes on. Raises
        InvalidRunStateError (not waiting, e.g. expired), ValidationError (missing/unknown
        outputs)."""
        ...

    async def cancel_run(self, run_id: str) -> Run:
        """Cancel a run; returns it ``cancelling`` or ``cancelled``. Raises InvalidRunStateError
        (already ended), UnsupportedOperation."""
        ...

    async def delete(self) -> bool:
        """Delete the thread with everything in it; False if it was already gone."""
        ...

    async def append_messages(self, messages: Sequence[Message]) -> list[Message]:
        """Write messages verbatim, in order (what :func:`threadkit.copy_thread` uses).
        Raises UnsupportedOperation (nothing written), OrphanToolResultError, ActiveRunError."""
        ...

    async def serialize(self, format: Literal["json", "msgpack"] = "json") -> bytes:
        """A versioned snapshot (never credentials) that :func:`threadkit.resume` rebuilds
        this thread from in any process."""
        ...

    async def export(self) -> dict[str, Any]:
        """An audit record, JSON-ready: the thread, every message oldest first, every run
        oldest first with its steps, tool calls, usage and errors."""
        ...

    async def info(self) -> ThreadInfo:
        """The thread's registry entry: times (unix seconds), metadata, message count."""
        ...

    async def close(self) -> None:
        """Release what the thread owns (the backend :func:`threadkit.resume` opened)."""
        ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: object) -> None: ...


@runtime_checkable
class ThreadBackend(Protocol):
    """Creates, finds, lists and resumes threads of one backend kind.

    Attributes:
        kind: the backend name of the ``backend`` config key (``"chat"``, ``"assistants"``...).
    """

    kind: str

    @property
    def settings(self) -> dict[str, Any]:
        """The backend's non-secret settings, as recorded in snapshots."""
        ...

    async def create_thread(self, *, metadata: Mapping[str, str] | None = None) -> AgentThread:
        """Create an empty thread (metadata: up to 16 string pairs). Raises ValidationError,
        ServiceError."""
        ...

    async def get_thread(self, thread_id: str) -> AgentThread:
        """An existing thread. Raises ThreadNotFoundError."""
        ...

    def list_threads(
        self, *, limit: int | None = None, metadata: Mapping[str, str] | None = None
    ) -> AsyncIterator[ThreadInfo]:
        """Iterate threads newest first, only those whose metadata holds every given pair.
        Raises UnsupportedOperation where the service cannot list threads."""
        ...

    async def resume_thread(self, snapshot: Any) -> AgentThread:
        """The thread a decoded snapshot names. Raises BackendMismatchError (another backend,
        store or service made it), ThreadNotFoundError, SnapshotError (history missing)."""
        ...

    async def close(self) -> None:
        """Release connections (and background runs of local threads)."""
        ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: object) -> None: ...


def normalize_content(role: Role, content: Content) -> list[ContentPart]:
    """Turn caller content into a list of parts and check it suits the role.

    Raises:
        ValidationError: empty content, an unknown part type, ``tool`` messages without only
            tool results, or tool results in a non-``tool`` message.
    """
    if isinstance(content, str):
        parts: list[ContentPart] = [TextContent(text=content)]
    elif isinstance(
        content,
        TextContent
        | ImageUrlContent
        | ImageFileContent
        | FileContent
        | ToolCallContent
        | ToolResultContent
        | ReasoningContent,
    ):
        parts = [content]
    else:
        parts = list(content)
    if not parts:
        raise ValidationError("a message needs at least one content part")
    for p in parts:
        if not isinstance(
            p,
            TextContent
            | ImageUrlContent
            | ImageFileContent
            | FileContent
            | ToolCallContent
            | ToolResultContent
            | ReasoningContent,
        ):
            raise ValidationError(f"{type(p).__name__} is not a threadkit content part")
        if isinstance(p, ToolResultContent) and role != "tool":
            raise ValidationError("tool results belong in messages with role 'tool'")
    if role == "tool" and not all(isinstance(p, ToolResultContent) for p in parts):
        raise ValidationError("a 'tool' message holds only tool_result parts")
    if isinstance(parts[0], ToolCallContent) and role != "assistant":
        raise ValidationError("tool calls belong in messages with role 'assistant'")
    return parts


def merge_tools(agent_tools: Sequence[Tool], registry: FunctionRegistry) -> list[Tool]:
    """The agent's tools plus the registry's function tools the agent does not already define."""
    names = {t.function.name for t in agent_tools if isinstance(t, FunctionTool)}
    return list(agent_tools) + [t for t in registry.tools if t.function.name not in names]


class BaseAgentThread(abc.ABC):
    """Shared behaviour of every :class:`AgentThread`; backends implement the primitives.

    Args:
        poll: the polling policy of :meth:`wait_run` for backends that poll.
    """

    backend: str = ""

    def __init__(self, thread_id: str, *, poll: PollPolicy | None = None) -> None:
        self._id = thread_id
        self.poll = poll or PollPolicy()

    @property
    def id(self) -> str:
        """The thread id (the service's id for service-managed backends)."""
        return self._id

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.backend} {self._id}>"

    # -- primitives every backend implements ---------------------------------------------
    @abc.abstractmethod
    async def add_message(
        self,
        role: Role,
        content: Content,
        *,
        attachments: Sequence[Attachment] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Message:
        """Append one message to the thread.

        Args:
            role: ``user`` or ``assistant`` (local threads also take ``system`` and ``tool``).
            content: a string, a content part or a list of parts.
            attachments: files attached for tools.
            metadata: up to 16 string pairs (keys <= 64, values <= 512 characters).

        Returns:
            The stored message (``seq`` set on local threads).

        Raises:
            ActiveRunError: a run is active on the thread (as the services refuse it).
            ValidationError: bad content or metadata.
            ThreadNotFoundError: the thread was deleted.
        """

    @abc.abstractmethod
    async def list_messages(
        self,
        *,
        order: Order = "asc",
        limit: int = 100,
        after: str | None = None,
        before: str | None = None,
    ) -> Page[Message]:
        """One page of messages (``asc`` = oldest first). Raises MessageNotFoundError for a
        bad cursor, ThreadNotFoundError."""

    @abc.abstractmethod
    async def get_message(self, message_id: str) -> Message:
        """One message. Raises MessageNotFoundError, ThreadNotFoundError."""

    @abc.abstractmethod
    async def create_run(self, agent: Agent | None = None, **options: Any) -> Run:
        """Start a run of ``agent`` on the thread and return it at once (usually ``queued``).

        Args:
            agent: model, instructions and tools (None: the backend's defaults).
            **options: run settings of the spec's create-run request: ``instructions``,
                ``additional_instructions``, ``tools``, ``metadata``, ``temperature``,
                ``top_p``, ``max_prompt_tokens``, ``max_completion_tokens``,
                ``truncation_strategy``, ``tool_choice``, ``parallel_tool_calls``,
                ``response_format``, ``model``.

        Raises:
            ActiveRunError: another run is active on the thread.
            ValidationError: bad options.
            UnsupportedOperation: the backend cannot honour an option.
        """

    @abc.abstractmethod
    async def get_run(self, run_id: str) -> Run:
        """The run as it is now. Raises RunNotFoundError, ThreadNotFoundError."""

    @abc.abstractmethod
    async def list_runs(
        self, *, order: Order = "desc", limit: int = 100, after: str | None = None
    ) -> Page[Run]:
        """One page of runs (``desc`` = newest first)."""

    @abc.abstractmethod
    async def list_run_steps(
        self, run_id: str, *, order: Order = "asc", limit: int = 100, after: str | None = None
    ) -> Page[RunStep]:
        """One page of a run's steps (``asc`` = oldest first). Raises RunNotFoundError."""

    @abc.abstractmethod
    async def submit_tool_outputs(self, run_id: str, outputs: Sequence[ToolOutput]) -> Run:
        """Answer every tool call of a ``requires_action`` run; the run goes on.

        Raises:
            InvalidRunStateError: the run is not ``requires_action`` (e.g. it expired).
            ValidationError: an output is missing or answers no call of the run.
        """

    @abc.abstractmethod
    async def cancel_run(self, run_id: str) -> Run:
        """Cancel a run; returns it ``cancelling`` or ``cancelled``.

        Raises:
            InvalidRunStateError: the run already ended.
        """

    @abc.abstractmethod
    async def delete(self) -> bool:
        """Delete the thread with its messages and runs. False if it was already gone."""

    @abc.abstractmethod
    async def serialize(self, format: Literal["json", "msgpack"] = "json") -> bytes:
        """A snapshot from which :func:`threadkit.resume` rebuilds this thread in any process.

        It holds the backend kind and non-secret settings, the thread id, service ids, the store
        locator (or, for a memory store, the messages inline) and the message count at the time.
        Never credentials.
        """

    @abc.abstractmethod
    async def info(self) -> ThreadInfo:
        """The thread's registry entry (times, metadata, message count)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what this thread owns (the backend :func:`threadkit.resume` opened for it).
        The default does nothing."""

    async def __aenter__(self) -> BaseAgentThread:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def append_messages(self, messages: Sequence[Message]) -> list[Message]:
        """Write messages verbatim (roles, content parts incl. tool calls and results,
        attachments, metadata), in order, as one turn where the backend allows it.

        This is how :func:`threadkit.copy_thread` writes. Ids, ``seq`` and timestamps are the
        destination's own.

        Returns:
            The written messages, in order.

        Raises:
            UnsupportedOperation: the backend cannot hold some part (e.g. tool results in an
                Assistants thread); nothing is written.
            OrphanToolResultError: a tool result answers no tool call in the thread.
            ActiveRunError: a run is active on the thread.
        """
        raise UnsupportedOperation(self.backend, "append_messages")

    # -- shared behaviour ----------------------------------------------------------------
    async def messages(
        self,
        order: Order = "asc",
        *,
        limit: int | None = None,
        after: str | None = None,
        before: str | None = None,
    ) -> AsyncIterator[Message]:
        """Iterate the thread's messages, fetching pages of up to 100 as it goes.

        Args:
            order: ``asc`` (oldest first, the default) or ``desc`` (newest first).
            limit: stop after this many messages (None: all).
            after: start after this message id (in the order asked for).
            before: stop before this message id.

        Yields:
            Messages in the order asked for.

        Raises:
            MessageNotFoundError: ``after`` or ``before`` names no message of the thread.
        """
        left = limit
        cursor = after
        while left is None or left > 0:
            size = 100 if left is None else min(left, 100)
            page = await self.list_messages(order=order, limit=size, after=cursor, before=before)
            for m in page.data:
                yield m
            if left is not None:
                left -= len(page.data)
            if not page.has_more or not page.data:
                return
            cursor = page.last_id

    async def runs(self, order: Order = "desc", *, limit: int | None = None) -> AsyncIterator[Run]:
        """Iterate the thread's runs (``desc`` = newest first), fetching pages as it goes."""
        cursor: str | None = None
        left = limit
        while left is None or left > 0:
            page = await self.list_runs(order=order, limit=100, after=cursor)
            for r in page.data:
                if left is not None:
                    if left <= 0:
                        return
                    left -= 1
                yield r
            if not page.has_more or not page.data:
                return
            cursor = page.last_id

    async def run_steps(self, run_id: str, order: Order = "asc") -> AsyncIterator[RunStep]:
        """Iterate a run's steps (``asc`` = oldest first). Raises RunNotFoundError."""
        cursor: str | None = None
        while True:
            page = await self.list_run_steps(run_id, order=order, limit=100, after=cursor)
            for s in page.data:
                yield s
            if not page.has_more or not page.data:
                return
            cursor = page.last_id

    async def _poll_run(self, run_id: str) -> tuple[Run, float | None]:
        """One poll of :meth:`wait_run`: the run, and the service's polling hint in seconds
        (``openai-poll-after-ms`` and the like) when it sent one. Service backends override it;
        the default reads :meth:`get_run` and has no hint."""
        return await self.get_run(run_id), None

    async def wait_run(self, run_id: str, *, timeout: float | None = None) -> Run:
        """Poll a run until it is terminal or ``requires_action``.

        The first look is immediate; then the waits follow :attr:`poll` (0.5 s, then ×1.5 up to
        5 s per wait), except that a service's own polling hint wins (capped at ``max_delay``).

        Args:
            timeout: seconds before giving up (default: the policy's ``timeout``).

        Raises:
            RunTimeoutError: the run did not stop in time (it goes on; cancel it if needed).
            RunNotFoundError: no such run.
        """
        limit = timeout if timeout is not None else self.poll.timeout
        deadline = None if limit is None else time.monotonic() + limit
        delays = iter(self.poll.delays())
        while True:
            run, hint = await self._poll_run(run_id)
            if run.status.is_terminal or run.status is RunStatus.REQUIRES_ACTION:
                return run
            delay = next(delays) if hint is None else min(hint, self.poll.max_delay)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RunTimeoutError(
                        f"run {run_id} still {run.status.value} after {limit} seconds"
                    )
                delay = min(delay, left)
            await asyncio.sleep(delay)

    async def run(
        self,
        agent: Agent | None = None,
        *,
        functions: Iterable[ToolFunction] | Mapping[str, ToolFunction] | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> Run:
        """Run ``agent`` on the thread to the end, executing tool functions along the way.

        The run is created (:meth:`create_run`) and waited for (:meth:`wait_run`). When it stops
        at ``requires_action`` and every call names one of ``functions``, they are executed
        (concurrently; errors become ``{"error": ...}`` outputs) and the outputs submitted; this
        repeats until the run ends. Otherwise the run is returned at ``requires_action`` for the
        caller to answer with :meth:`submit_tool_outputs`.

        Args:
            agent: the agent (None: backend defaults).
            functions: Python callables the run may call; their tool definitions are added to
                the agent's tools unless the agent already defines a tool of that name.
            timeout: overall seconds for the whole run (None: the poll policy's timeout).
            **options: passed to :meth:`create_run`.

        Returns:
            The run, terminal or ``requires_action``.

        Raises:
            ActiveRunError: another run is active on the thread.
            RunTimeoutError: the run did not finish in ``timeout`` seconds.
            ValidationError: bad options or functions.
        """
        registry = FunctionRegistry(functions or ())
        agent = agent or Agent()
        if registry:
            options["tools"] = merge_tools(options.get("tools", agent.tools), registry)
        deadline = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        while True:
            run = await self.create_run(agent, **options)
            run = await self._drive(run, registry, deadline)
            if run.status is not RunStatus.FAILED or attempt >= self.poll.retry_failed:
                return run
            await asyncio.sleep(self.poll.retry_backoff * 2**attempt)
            attempt += 1

    async def _drive(self, run: Run, registry: FunctionRegistry, deadline: float | None) -> Run:
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            run = await self.wait_run(run.id, timeout=left)
            action = run.required_action
            if run.status is not RunStatus.REQUIRES_ACTION or action is None:
                return run
            calls = action.submit_tool_outputs.tool_calls
            if not registry or not registry.handles(calls):
                return run
            outputs = await asyncio.gather(*(registry.execute(c) for c in calls))
            run = await self.submit_tool_outputs(run.id, outputs)

    async def export(self) -> dict[str, Any]:
        """An audit record of the thread, JSON-ready.

        Returns:
            ``{"format": "threadkit.export", "version": 1, "backend", "thread", "messages",
            "runs"}``: the thread's registry entry; every message oldest first; every run
            oldest first, each with ``steps`` (oldest first) holding tool calls with arguments
            and outputs, plus usage, timestamps, status and ``last_error``.
        """
        info = await self.info()
        messages = [m async for m in self.messages()]
        runs: list[dict[str, Any]] = []
        async for r in self.runs(order="asc"):
            steps = [s async for s in self.run_steps(r.id)]
            record = msgspec.to_builtins(r)
            record["steps"] = msgspec.to_builtins(steps)
            runs.append(record)
        return {
            "format": "threadkit.export",
            "version": 1,
            "backend": self.backend,
            "thread": msgspec.to_builtins(info),
            "messages": msgspec.to_builtins(messages),
            "runs": runs,
        }


def build_message(
    thread_id: str,
    role: Role,
    content: Content,
    *,
    attachments: Sequence[Attachment] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Message:
    """A new, unstored message (empty id: the store assigns one)."""
    return Message(
        id="",
        thread_id=thread_id,
        role=role,
        content=normalize_content(role, content),
        attachments=list(attachments or ()),
        metadata=dict(metadata or {}),
    )
