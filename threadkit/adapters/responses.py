"""The ``responses`` backend: threads over the OpenAI Responses API, in three modes.

Uses the official ``openai`` SDK's ``client.responses`` and ``client.conversations`` (extra
``openai``), against OpenAI or any compatible endpoint (``threadkit serve`` among them). The
``responses_mode`` config key picks how a thread is kept:

============================ ========================================== ========================
mode                         the thread is                              messages() reads
============================ ========================================== ========================
``previous_response_id``     a thread of the local record (a threadkit  the local record
(default)                    store, the ``store`` key; ``memory://`` by
                             default) plus the id of the newest response
                             of its chain; each run sends only the
                             messages the chain has not seen
``conversation``             a service conversation (``conv_...``)      the conversation's
                                                                        items, one message each
``store``                    a thread of the local record, sent in full the local record
                             (after truncation) with ``store=false``
                             each turn: nothing is kept by the service;
                             reasoning travels as encrypted content
                             (``include=["reasoning.encrypted_content"]``)
============================ ========================================== ========================

**Runs.** A run is ONE threadkit :class:`~threadkit.types.Run` with an id of its own
(``run_...``), kept in the local record (also in conversation mode, on a record thread named
after the conversation), whatever number of responses it takes: a response whose output holds
``function_call`` items puts the run in ``requires_action``; :meth:`submit_tool_outputs`
answers with ``function_call_output`` items in a new response and the same run goes on. The
response ids are in ``run.provider_details["responses"]``; ``get_run``, ``runs`` and
``run_steps`` read the local record (a ``tool_calls`` step per function-call turn, a
``message_creation`` step per answer). Usage is summed over the run's responses.

By default a response is created synchronously: :meth:`create_run` returns the run already
``completed``, ``requires_action``, ``incomplete`` or ``failed``. With ``background = true``
responses are created in background mode and polled (``queued`` → ``in_progress``) with the
:class:`~threadkit.thread.PollPolicy`, honouring ``openai-poll-after-ms``.

**Cancel.** A run in ``requires_action`` is cancelled locally: its unanswered function calls are
taken back (``previous_response_id``: the chain goes back to where the run started, and the
run's input is sent again next time; ``conversation``: the call items are deleted from the
conversation; ``store``: nothing was written). A response being generated can be cancelled only
in background mode (``responses.cancel``); otherwise :class:`~threadkit.errors.UnsupportedOperation`.

**Limits** (each raises :class:`~threadkit.errors.UnsupportedOperation`, never faked):

* no thread listing in ``conversation`` mode (the API has no such endpoint);
* conversation items carry no metadata: message metadata is refused in ``conversation`` mode;
* no message attachments (use ``input_file`` parts); no images or files in assistant messages;
* truncation ``last_messages`` and ``max_prompt_tokens`` only in ``store`` mode (the service
  knows ``truncation = auto | disabled``); ``background`` is refused in ``store`` mode (the API
  requires stored background responses);
* no requires_action expiry: the Responses API has no tool-output deadline.

**Snapshots** keep the mode, ``base_url``, the NAME of the API key's variable, the store
locator and the service ids (conversation id; newest response id of the chain), never the key.
With a ``memory://`` record the messages travel inline (run records stay in the process).

Build it from configuration (``backend = "responses"``, ``base_url``, ``api_key_env``,
``allow_insecure_loopback``, ``model = "openai:<model>"``, ``responses_mode``, ``background``,
``store``) or around a client: ``ResponsesBackend(openai.AsyncOpenAI(...), store=...)``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec

from threadkit._extras import require
from threadkit._ids import new_id, now
from threadkit.adapters._responses_model import (
    RESPONSE_STATUSES,
    Turn,
    incomplete_from_response,
    item_to_message,
    last_error_from_response,
    message_to_items,
    messages_to_items,
    parse_output,
    response_format_to_text,
    tool_choice_to_request,
    tools_to_request,
    usage_from_response,
)
from threadkit.adapters._service import (
    check_endpoint,
    check_snapshot_origin,
    poll_after_seconds,
    raise_for_status_error,
)
from threadkit.config import Config
from threadkit.engine import match_tool_outputs
from threadkit.errors import (
    ActiveRunError,
    BackendMismatchError,
    ConfigError,
    InvalidRunStateError,
    MessageNotFoundError,
    NotFoundError,
    ObjectNotFoundError,
    RateLimitError,
    RunNotFoundError,
    ServiceError,
    SnapshotError,
    ThreadNotFoundError,
    UnsupportedOperation,
    ValidationError,
)
from threadkit.models import estimate_tokens
from threadkit.registry import open_store
from threadkit.snapshot import FORMAT, VERSION, InlineThread, Snapshot, encode_snapshot
from threadkit.stores.base import MessageStore, check_metadata, supports_import
from threadkit.thread import RUN_OPTIONS, BaseAgentThread, Content, Order, PollPolicy, build_message
from threadkit.truncation import DEFAULT_CONTEXT_WINDOW, build_context
from threadkit.types import (
    Agent,
    Attachment,
    FunctionCall,
    LastError,
    Message,
    MessageCreationDetails,
    Page,
    RequiredAction,
    Role,
    Run,
    RunStatus,
    RunStep,
    RunStepStatus,
    SubmitToolOutputs,
    ThreadInfo,
    Tool,
    ToolCall,
    ToolCallsDetails,
    ToolOutput,
    ToolResultContent,
    TruncationStrategy,
)

if TYPE_CHECKING:
    import openai

__all__ = ["ConversationThread", "ResponsesBackend", "ResponsesThread"]

T = TypeVar("T")

_KIND = "responses"
_MODES = ("previous_response_id", "conversation", "store")
Mode = Literal["previous_response_id", "conversation", "store"]

STATE_KIND = "threadkit.responses.thread"
"""Stored-object kind marking a local-record thread of this backend (data: its chain state)."""

ITEMS_KIND = "threadkit.responses.items"
"""Stored-object kind mapping a conversation's output item ids to the runs that wrote them."""

_ENCRYPTED = ["reasoning.encrypted_content"]


class _State(msgspec.Struct, kw_only=True):
    """A local thread's chain: every message up to ``sent_seq`` is in the chain ending at
    ``head`` (``previous_response_id`` mode)."""

    head: str | None = None
    sent_id: str | None = None
    sent_seq: int = 0


_state_encoder = msgspec.json.Encoder()
_state_decoder = msgspec.json.Decoder(_State)
_items_decoder = msgspec.json.Decoder(dict[str, str])


_json_decoder = msgspec.json.Decoder()


def _dump(obj: Any) -> dict[str, Any]:
    """A service object as a plain dict: a raw SDK response's JSON body decoded once by msgspec
    (no pydantic parsing), or a parsed SDK model dumped to JSON-ready values."""
    response = getattr(obj, "http_response", None)
    if response is not None:
        body = _json_decoder.decode(response.content)
        if not isinstance(body, dict):
            raise ServiceError(f"the service answered with a JSON {type(body).__name__}")
        return body
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json", warnings=False)  # type: ignore[no-any-return]
    return dict(obj)


def _step_id(run_id: str, response_id: str, kind: str) -> str:
    """A deterministic step id, so two processes absorbing one response write one step."""
    digest = hashlib.blake2b(f"{run_id}/{response_id}/{kind}".encode(), digest_size=12)
    return f"step_{digest.hexdigest()}"


def _page(data: list[T], has_more: bool, ids: list[str]) -> Page[T]:
    return Page(
        data=data,
        has_more=has_more,
        first_id=ids[0] if ids else None,
        last_id=ids[-1] if ids else None,
    )


# =========================================================================== backend


class ResponsesBackend:
    """Threads over the Responses API (see the module docstring for the modes).

    Args:
        client: an ``openai.AsyncOpenAI`` (e.g. pointed at ``threadkit serve``).
        store: the local record (messages in the local modes; runs and steps in every mode),
            already set up.
        mode: ``previous_response_id``, ``conversation`` or ``store``.
        background: create responses in background mode and poll them.
        model: the model runs use when neither the Agent nor the run names one.
        agent_id: recorded as the runs' ``agent_id`` when the Agent has no id or name.
        poll: the polling policy (0.5 s, ×1.5, 5 s cap; the service's hint wins).
        settings: non-secret settings recorded in snapshots.
        owns_client: close ``client`` in :meth:`close`.
        owns_store: close ``store`` in :meth:`close`.
        request_lease: seconds after which a run whose synchronous request never came back
            (its process died) stops holding its thread and reads ``expired``.

    Raises:
        ConfigError: an unknown mode, or ``background`` in ``store`` mode.
    """

    kind = _KIND

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        store: MessageStore,
        mode: str = "previous_response_id",
        background: bool = False,
        model: str | None = None,
        agent_id: str | None = None,
        poll: PollPolicy | None = None,
        settings: Mapping[str, Any] | None = None,
        owns_client: bool = False,
        owns_store: bool = False,
        request_lease: float = 1800.0,
    ) -> None:
        if mode not in _MODES:
            raise ConfigError(
                f"{mode!r} is not a Responses mode; use one of {', '.join(_MODES)}",
                key="responses_mode",
            )
        if background and mode == "store":
            raise ConfigError(
                "background responses must be stored by the service, but responses_mode "
                "'store' sends store=false; use another mode or background = false",
                key="background",
            )
        self.client = client
        self.store = store
        self.mode: Mode = mode  # type: ignore[assignment]
        self.background = background
        self.model = model
        self.agent_id = agent_id
        self.poll = poll or PollPolicy()
        self.request_lease = request_lease
        self._settings = dict(
            settings or {"base_url": str(client.base_url).rstrip("/"), "responses_mode": mode}
        )
        self._settings.setdefault("responses_mode", mode)
        self._owns_client = owns_client
        self._owns_store = owns_store
        self._closed = False

    @classmethod
    async def from_config(cls, cfg: Config) -> ResponsesBackend:
        """Build the backend from configuration.

        Raises:
            MissingExtraError: the ``openai`` extra is not installed.
            ConfigError: a plain-http ``base_url`` without ``allow_insecure_loopback`` (or to a
                non-loopback host), the API key variable ``api_key_env`` is unset, or
                ``background`` with ``responses_mode = "store"``.
            StoreError: the local record cannot be opened.
        """
        openai_mod = require("openai", "openai", "the responses backend")
        if cfg.base_url:
            check_endpoint(
                cfg.base_url, allow_insecure_loopback=cfg.allow_insecure_loopback, key="base_url"
            )
        key = os.environ.get(cfg.api_key_env)
        if not key:
            raise ConfigError(
                f"the responses backend needs an API key in the environment variable "
                f"{cfg.api_key_env}, which is unset",
                key="api_key_env",
            )
        if cfg.background and cfg.responses_mode == "store":
            raise ConfigError(
                "background responses must be stored by the service, but responses_mode "
                "'store' sends store=false",
                key="background",
            )
        client = openai_mod.AsyncOpenAI(base_url=cfg.base_url, api_key=key, max_retries=2)
        store = open_store(cfg.store)
        try:
            await store.setup()
        except BaseException:
            await client.close()
            raise
        settings: dict[str, Any] = {
            "base_url": str(client.base_url).rstrip("/"),
            "api_key_env": cfg.api_key_env,
            "allow_insecure_loopback": cfg.allow_insecure_loopback,
            "model": cfg.model,
            "responses_mode": cfg.responses_mode,
            "background": cfg.background,
        }
        if cfg.agent_id:
            settings["agent_id"] = cfg.agent_id
        return cls(
            client,
            store=store,
            mode=cfg.responses_mode,
            background=cfg.background,
            model=cfg.model.removeprefix("openai:"),
            agent_id=cfg.agent_id,
            poll=PollPolicy(timeout=cfg.poll_timeout, retry_failed=cfg.retry_failed_runs),
            settings=settings,
            owns_client=True,
            owns_store=True,
        )

    @property
    def settings(self) -> dict[str, Any]:
        """Non-secret settings: ``base_url``, ``api_key_env``, ``model``, ``responses_mode``..."""
        return {"backend": self.kind, **self._settings}

    @property
    def conversational(self) -> bool:
        """Whether threads are service conversations (else threads of the local record)."""
        return self.mode == "conversation"

    async def call(
        self,
        make: Callable[[], Awaitable[T]],
        *,
        thread_id: str | None = None,
        run_id: str | None = None,
        resource: str | None = None,
    ) -> T:
        """Run one SDK call, translating its errors into the threadkit tree
        (:func:`~threadkit.adapters._service.raise_for_status_error`)."""
        openai_mod = require("openai", "openai", f"the {self.kind} backend")
        try:
            return await make()
        except openai_mod.APIStatusError as exc:
            raise_for_status_error(
                exc.status_code,
                exc.body,
                exc,
                service=self.kind,
                thread_id=thread_id,
                run_id=run_id,
                resource=resource,
            )
        except openai_mod.APIError as exc:  # connection errors, timeouts
            raise ServiceError(f"{self.kind}: {exc}") from exc

    # -- threads ---------------------------------------------------------------------------
    def _thread(self, thread_id: str) -> ResponsesThread | ConversationThread:
        if self.conversational:
            return ConversationThread(thread_id, self)
        return ResponsesThread(thread_id, self)

    async def create_thread(
        self, *, metadata: Mapping[str, str] | None = None
    ) -> ResponsesThread | ConversationThread:
        """Create a thread: a conversation on the service, or a thread of the local record.

        Raises:
            ValidationError: bad metadata.
            ServiceError: the service failed.
        """
        meta = check_metadata(metadata)
        if self.conversational:
            conv = self.client.conversations
            created = await self.call(lambda: conv.create(metadata=meta or None))
            return self._thread(created.id)
        info = await self.store.create_thread(metadata=meta)
        await self.store.put_object(STATE_KIND, info.id, _state_encoder.encode(_State()))
        return self._thread(info.id)

    async def get_thread(self, thread_id: str) -> ResponsesThread | ConversationThread:
        """An existing thread.

        Raises:
            ThreadNotFoundError: the service has no such conversation, or the local record no
                such thread of this backend.
        """
        if self.conversational:
            conv = self.client.conversations
            await self.call(
                lambda: conv.retrieve(thread_id), thread_id=thread_id, resource="thread"
            )
            return self._thread(thread_id)
        await self.store.get_thread(thread_id)
        try:
            await self.store.get_object(STATE_KIND, thread_id)
        except ObjectNotFoundError as exc:
            raise ThreadNotFoundError(
                f"thread {thread_id} of {self.store.locator} is not a responses thread"
            ) from exc
        return self._thread(thread_id)

    async def list_threads(
        self, *, limit: int | None = None, metadata: Mapping[str, str] | None = None
    ) -> AsyncIterator[ThreadInfo]:
        """Iterate this backend's threads of the local record, newest first.

        Raises:
            UnsupportedOperation: in ``conversation`` mode (the API cannot list conversations).
        """
        if self.conversational:
            raise UnsupportedOperation(
                self.kind, "list_threads", "the Conversations API cannot list conversations"
            )
        left = limit
        after: str | None = None
        while left is None or left > 0:
            page = await self.store.list_threads(limit=100, after=after, metadata=metadata)
            for info in page.data:
                try:
                    await self.store.get_object(STATE_KIND, info.id)
                except ObjectNotFoundError:
                    continue
                yield info
                if left is not None:
                    left -= 1
                    if left <= 0:
                        return
            if not page.has_more or not page.data:
                return
            after = page.last_id

    async def resume_thread(self, snapshot: Snapshot) -> ResponsesThread | ConversationThread:
        """The thread a snapshot names.

        A local-record snapshot with the thread inline (``memory://`` record) is loaded into
        this backend's record when that is a memory store too; any other must name this very
        record. The local modes (``previous_response_id``, ``store``) can resume each other's
        threads (the record holds every message); conversation threads only in conversation
        mode.

        Raises:
            BackendMismatchError: another backend kind, another service, a conversation
                snapshot under a local mode or the reverse, or another record store.
            ThreadNotFoundError: the service or the record no longer has the thread.
            SnapshotError: the record holds fewer messages than the snapshot recorded.
        """
        self._check_snapshot(snapshot)
        if self.conversational:
            return await self.get_thread(snapshot.thread_id)
        locator = self.store.locator
        if snapshot.inline is not None:
            if not locator.startswith("memory://"):
                raise BackendMismatchError(
                    f"this snapshot carries a memory-record thread inline; the configured store "
                    f"is {locator}. Resume it with a memory:// store, then copy the thread.",
                    expected="memory://",
                    configured=locator,
                )
            await self._load_inline(snapshot, snapshot.inline)
        elif (snapshot.store or "").rstrip("/") != locator.rstrip("/"):
            raise BackendMismatchError(
                f"thread {snapshot.thread_id} lives in {snapshot.store}; the configured store is "
                f"{locator}",
                expected=snapshot.store or "",
                configured=locator,
            )
        thread = await self.get_thread(snapshot.thread_id)
        if snapshot.last_seq:
            tail = await self.store.tail(snapshot.thread_id, 1)
            have = tail[-1].seq if tail else 0
            if have < snapshot.last_seq:
                raise SnapshotError(
                    f"store {locator} holds thread {snapshot.thread_id} only up to message "
                    f"{have}, but the snapshot recorded {snapshot.last_seq}: history is missing"
                )
        return thread

    def _check_snapshot(self, snapshot: Snapshot) -> None:
        check_snapshot_origin(
            snapshot,
            kind=self.kind,
            setting="base_url",
            configured=str(self._settings.get("base_url", "")),
        )
        mode = str(snapshot.settings.get("responses_mode", "previous_response_id"))
        if (mode == "conversation") != self.conversational:
            raise BackendMismatchError(
                f"thread {snapshot.thread_id} was made in responses_mode {mode!r}; the "
                f"configuration uses {self.mode!r}, which keeps threads "
                f"{'as conversations' if self.conversational else 'in the local record'}",
                expected=mode,
                configured=self.mode,
            )

    async def _load_inline(self, snapshot: Snapshot, inline: InlineThread) -> None:
        tid = snapshot.thread_id
        try:
            await self.store.get_thread(tid)
        except ThreadNotFoundError:
            if supports_import(self.store):
                await self.store.import_thread(
                    tid, inline.messages, metadata=inline.metadata, created_at=inline.created_at
                )
            else:
                await self.store.create_thread(thread_id=tid, metadata=inline.metadata)
                for i in range(0, len(inline.messages), 500):
                    chunk = [
                        msgspec.structs.replace(m, seq=0) for m in inline.messages[i : i + 500]
                    ]
                    await self.store.append(tid, chunk)
        try:
            await self.store.get_object(STATE_KIND, tid)
        except ObjectNotFoundError:
            ids = snapshot.service_ids
            state = _State(
                head=ids.get("previous_response_id") or None,
                sent_id=ids.get("sent_message_id") or None,
                sent_seq=int(ids.get("sent_seq") or 0),
            )
            await self.store.put_object(STATE_KIND, tid, _state_encoder.encode(state))

    async def close(self) -> None:
        """Close the HTTP client and the local record when this backend opened them."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._owns_client:
                await self.client.close()
        finally:
            if self._owns_store:
                await self.store.close()

    async def __aenter__(self) -> ResponsesBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# =========================================================================== runs (shared)


class _RunsThread(BaseAgentThread):
    """Runs over the Responses API, kept in the local record; subclasses say what a thread
    is (its messages) and what each request carries."""

    backend = _KIND

    def __init__(self, thread_id: str, owner: Any) -> None:
        super().__init__(thread_id, poll=owner.poll)
        self.owner = owner
        self.backend = owner.kind
        self._store: MessageStore = owner.store
        # raw responses: threadkit decodes the JSON itself (faster than the SDK's parsing)
        self._responses = owner.client.responses.with_raw_response

    async def _call(self, make: Callable[[], Awaitable[T]], **kw: Any) -> T:
        kw.setdefault("thread_id", self.id)
        return await self.owner.call(make, **kw)  # type: ignore[no-any-return]

    # -- hooks -----------------------------------------------------------------------------
    async def _ensure_record(self) -> None:
        """Make sure the local record has a thread for this thread's runs."""

    def _truncation(self, strategy: TruncationStrategy | None) -> dict[str, Any]:
        """The request fields a truncation strategy becomes (``truncation``)."""
        if strategy is None:
            return {}
        if strategy.type == "auto":
            return {"truncation": "auto"}
        if strategy.type == "none":
            return {"truncation": "disabled"}
        raise UnsupportedOperation(
            self.backend,
            "truncation_strategy 'last_messages'",
            "the service truncates with 'auto' or not at all; use responses_mode 'store'",
        )

    async def _begin(self, run: Run) -> tuple[Run, dict[str, Any]]:
        """The request fields that start a run (input and thread reference), and the run as
        stored after noting where it starts."""
        raise NotImplementedError

    async def _continue(
        self, run: Run, outputs: list[dict[str, Any]], turn: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The request fields that answer a function-call turn."""
        raise NotImplementedError

    async def _write_answer(self, run: Run, response_id: str, turn: Turn) -> str | None:
        """Record the assistant turn of a finished response; the message id it has, if any."""
        raise NotImplementedError

    async def _write_tool_turn(
        self, run: Run, turn: Mapping[str, Any], calls: list[ToolCall], given: Mapping[str, str]
    ) -> None:
        """Record a function-call turn and its outputs (when outputs are submitted)."""

    async def _chain_moved(self, run: Run, response_id: str) -> None:
        """A response of ``run`` is now the end of the thread's chain."""

    async def _chain_reset(self, run: Run) -> None:
        """``run`` ended without an answer: the chain goes back to where the run started."""

    async def _discard_turn(self, run: Run, turn: Mapping[str, Any]) -> None:
        """Take back an unanswered function-call turn (the run was cancelled)."""

    async def _agent_request(
        self, agent: Agent, options: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The Run fields and the request fields an agent and run options make."""
        model = options.get("model") or agent.model or self.owner.model
        if not model:
            raise ConfigError(
                "a Responses run needs a model: give Agent(model=...), model=..., or configure "
                "model = 'openai:<model>'",
                key="model",
            )
        instructions = options.get("instructions", agent.instructions)
        extra = options.get("additional_instructions")
        if extra:
            instructions = f"{instructions}\n\n{extra}" if instructions else extra
        raw_tools = options.get("tools")
        tools: list[Tool] = list(agent.tools if raw_tools is None else raw_tools)
        temperature = options.get("temperature", agent.temperature)
        top_p = options.get("top_p", agent.top_p)
        fmt = options.get("response_format", agent.response_format)
        fields: dict[str, Any] = {
            "agent_id": agent.id or agent.name or self.owner.agent_id,
            "model": model,
            "instructions": instructions,
            "tools": tools,
            "temperature": temperature,
            "top_p": top_p,
            "response_format": fmt,
        }
        request: dict[str, Any] = {"model": model}
        if instructions:
            request["instructions"] = instructions
        if tools:
            request["tools"] = tools_to_request(self.backend, tools)
        if temperature is not None:
            request["temperature"] = temperature
        if top_p is not None:
            request["top_p"] = top_p
        if fmt is not None:
            text = response_format_to_text(fmt)
            if text is not None:
                request["text"] = text
        return fields, request

    # -- creating runs ---------------------------------------------------------------------
    async def _add_additional(self, extra: Sequence[Any]) -> None:
        messages = [
            m if isinstance(m, Message) else build_message(self.id, m["role"], m["content"])
            for m in extra
        ]
        await self.append_messages(messages)

    async def _check_idle(self) -> None:
        """Refuse while a run is active (the services refuse it too)."""
        try:
            active = await self._store.get_active_run(self.id)
        except ThreadNotFoundError:
            return
        if active is not None:
            active = await self._refresh(active)
            if active.status.is_active:
                raise ActiveRunError(self.id, active.id)

    async def create_run(self, agent: Agent | None = None, **options: Any) -> Run:
        """Start a run: one response (more after tool outputs), recorded as one Run.

        Without background mode the response is awaited here, so the run comes back
        ``completed``, ``requires_action``, ``incomplete`` or ``failed``.

        Raises:
            ActiveRunError: another run is active on the thread.
            ValidationError: an unknown option or bad values.
            UnsupportedOperation: an option the mode cannot honour (see the module limits).
            ConfigError: no model to run with.
            ServiceError, RateLimitError, AuthenticationError: the service failed; the run is
                recorded ``failed`` with the error in ``last_error``.
        """
        agent = agent or Agent()
        unknown = sorted(set(options) - RUN_OPTIONS)
        if unknown:
            raise ValidationError(
                f"unknown run option {unknown[0]!r} (known: {', '.join(sorted(RUN_OPTIONS))})"
            )
        fields, request = await self._agent_request(agent, options)
        strategy: TruncationStrategy | None = options.get("truncation_strategy")
        request.update(self._truncation(strategy))
        if options.get("max_prompt_tokens") is not None and self.owner.mode != "store":
            raise UnsupportedOperation(
                self.backend,
                "max_prompt_tokens",
                "the service has no prompt-token cap; use responses_mode 'store'",
            )
        if options.get("max_completion_tokens") is not None:
            request["max_output_tokens"] = options["max_completion_tokens"]
        if options.get("tool_choice") is not None:
            request["tool_choice"] = tool_choice_to_request(options["tool_choice"])
        if options.get("parallel_tool_calls") is not None:
            request["parallel_tool_calls"] = bool(options["parallel_tool_calls"])
        meta = check_metadata(options.get("metadata"))
        if meta:
            request["metadata"] = meta
        if self.owner.background:
            request["background"] = True
        extra = options.get("additional_messages")
        if extra:
            await self._add_additional(extra)
        await self._ensure_record()
        ts = now()
        run = Run(
            id=new_id("run"),
            thread_id=self.id,
            status=RunStatus.QUEUED,
            created_at=ts,
            agent_id=fields["agent_id"],
            model=fields["model"],
            instructions=fields["instructions"],
            tools=fields["tools"],
            metadata=meta,
            temperature=fields["temperature"],
            top_p=fields["top_p"],
            max_prompt_tokens=options.get("max_prompt_tokens"),
            max_completion_tokens=options.get("max_completion_tokens"),
            truncation_strategy=strategy or TruncationStrategy(),
            tool_choice=options.get("tool_choice"),
            parallel_tool_calls=options.get("parallel_tool_calls", True) is not False,
            response_format=fields["response_format"],
            expires_at=ts + int(self.owner.request_lease),
            provider_details={"request": request, "responses": [], "pending": None},
        )
        run = await self._store.create_run(run)
        try:
            run, begin = await self._begin(run)
            resp = await self._send(run, {**request, **begin})
        except BaseException as exc:
            await self._abandon(run, exc)
            raise
        return await self._absorb(run, resp)

    async def _send(self, run: Run, body: dict[str, Any]) -> dict[str, Any]:
        r = self._responses
        created = await self._call(lambda: r.create(**body), run_id=run.id)
        return _dump(created)

    async def _abandon(self, run: Run, exc: BaseException) -> None:
        """A request of ``run`` failed: record the run ``failed`` and give the thread back."""
        code = "rate_limit_exceeded" if isinstance(exc, RateLimitError) else "server_error"
        if isinstance(exc, ValidationError | UnsupportedOperation | ConfigError):
            code = "invalid_prompt"
        message = str(exc) or type(exc).__name__
        with contextlib.suppress(Exception):
            current = await self._store.get_run(self.id, run.id)
            if current.status.is_terminal:
                return
            await self._chain_reset(current)
            await self._save(
                current,
                msgspec.structs.replace(
                    current,
                    status=RunStatus.FAILED,
                    failed_at=now(),
                    expires_at=None,
                    required_action=None,
                    last_error=LastError(code=code, message=message[:1000]),
                    provider_details={**(current.provider_details or {}), "pending": None},
                ),
            )

    async def _save(self, old: Run, new: Run) -> Run:
        """Store ``new`` if the stored run is still in ``old``'s status; else the stored one."""
        try:
            return await self._store.update_run(new, expected_status=old.status.value)
        except InvalidRunStateError:
            return await self._store.get_run(self.id, old.id)

    async def _absorb(self, run: Run, resp: Mapping[str, Any]) -> Run:
        """Fold a response into its run: status, usage, output messages and steps."""
        rid = str(resp["id"])
        stored = await self._store.get_run(self.id, run.id)
        if stored.status.is_terminal:
            return stored  # ended meanwhile (cancelled, expired): a late answer is ignored
        try:
            status = RESPONSE_STATUSES[str(resp.get("status"))]
        except KeyError:
            raise ServiceError(
                f"{self.backend}: the service reported an unknown response status "
                f"{resp.get('status')!r}"
            ) from None
        details = dict(run.provider_details or {})
        details["responses"] = [*details.get("responses", []), rid]
        details["responses"] = list(dict.fromkeys(details["responses"]))
        model = str(resp.get("model") or run.model or "") or None
        ts = now()
        if not status.is_terminal:
            details["pending"] = rid
            new = msgspec.structs.replace(
                run,
                status=status,
                model=model,
                started_at=run.started_at or (ts if status is RunStatus.IN_PROGRESS else None),
                expires_at=None,
                provider_details=details,
            )
            return await self._save(run, new)
        details["pending"] = None
        counted = list(details.get("counted", []))
        usage = run.usage
        got = usage_from_response(resp)
        if got is not None and rid not in counted:
            usage = got if usage is None else usage + got
            counted.append(rid)
        details["counted"] = counted
        common: dict[str, Any] = {
            "model": model,
            "usage": usage,
            "started_at": run.started_at or ts,
            "expires_at": None,
        }
        turn = parse_output(resp.get("output") or [])
        if status is RunStatus.COMPLETED and turn.calls:
            step = RunStep(
                id=_step_id(run.id, rid, "tool_calls"),
                run_id=run.id,
                thread_id=self.id,
                type="tool_calls",
                status=RunStepStatus.IN_PROGRESS,
                step_details=ToolCallsDetails(
                    tool_calls=[
                        ToolCall(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments))
                        for c in turn.calls
                    ]
                ),
                created_at=ts,
                agent_id=run.agent_id,
                usage=got,
            )
            await self._store.put_step(step)
            details["turn"] = {
                "response_id": rid,
                "step_id": step.id,
                "output": [dict(i) for i in resp.get("output") or []],
            }
            await self._chain_moved(run, rid)
            new = msgspec.structs.replace(
                run,
                status=RunStatus.REQUIRES_ACTION,
                required_action=RequiredAction(
                    submit_tool_outputs=SubmitToolOutputs(
                        tool_calls=list(step.step_details.tool_calls)  # type: ignore[union-attr]
                    )
                ),
                provider_details=details,
                **common,
            )
            return await self._save(run, new)
        if status in (RunStatus.COMPLETED, RunStatus.INCOMPLETE):
            message_id = await self._write_answer(run, rid, turn)
            if message_id is not None:
                await self._store.put_step(
                    RunStep(
                        id=_step_id(run.id, rid, "message_creation"),
                        run_id=run.id,
                        thread_id=self.id,
                        type="message_creation",
                        status=RunStepStatus.COMPLETED,
                        step_details=MessageCreationDetails(
                            message_creation={"message_id": message_id}
                        ),
                        created_at=ts,
                        completed_at=ts,
                        agent_id=run.agent_id,
                        usage=got,
                    )
                )
            await self._chain_moved(run, rid)
            if turn.other:
                details["other_items"] = turn.other
            if status is RunStatus.COMPLETED:
                new = msgspec.structs.replace(
                    run,
                    status=status,
                    completed_at=ts,
                    required_action=None,
                    provider_details=details,
                    **common,
                )
            else:
                new = msgspec.structs.replace(
                    run,
                    status=status,
                    incomplete_details=incomplete_from_response(resp),
                    required_action=None,
                    provider_details=details,
                    **common,
                )
            return await self._save(run, new)
        await self._chain_reset(run)
        if status is RunStatus.CANCELLED:
            new = msgspec.structs.replace(
                run,
                status=status,
                cancelled_at=ts,
                required_action=None,
                provider_details=details,
                **common,
            )
        else:
            new = msgspec.structs.replace(
                run,
                status=RunStatus.FAILED,
                failed_at=ts,
                last_error=last_error_from_response(resp),
                required_action=None,
                provider_details=details,
                **common,
            )
        return await self._save(run, new)

    # -- reading runs ----------------------------------------------------------------------
    async def _stored_run(self, run_id: str) -> Run:
        try:
            return await self._store.get_run(self.id, run_id)
        except ThreadNotFoundError as exc:
            raise RunNotFoundError(f"no run {run_id} on thread {self.id}") from exc

    async def _retrieve(self, run: Run) -> tuple[Run, float | None]:
        """Bring an active run up to date with the service (background responses)."""
        if not run.status.is_active:
            return run, None
        pending = (run.provider_details or {}).get("pending")
        if pending:
            raw_api = self._responses
            raw = await self._call(lambda: raw_api.retrieve(pending), run_id=run.id, resource="run")
            fresh = await self._absorb(run, _dump(raw))
            return fresh, poll_after_seconds(raw.headers)
        if (
            run.status in (RunStatus.QUEUED, RunStatus.IN_PROGRESS)
            and run.expires_at is not None
            and now() > run.expires_at
        ):
            await self._chain_reset(run)
            expired = msgspec.structs.replace(
                run,
                status=RunStatus.EXPIRED,
                expires_at=None,
                last_error=LastError(
                    code="server_error",
                    message="the request of this run never came back (its process stopped)",
                ),
            )
            return await self._save(run, expired), None
        return run, None

    async def _refresh(self, run: Run) -> Run:
        return (await self._retrieve(run))[0]

    async def get_run(self, run_id: str) -> Run:
        """The run as it is now (a background response is checked with the service).

        Raises:
            RunNotFoundError: no such run in the local record.
        """
        return await self._refresh(await self._stored_run(run_id))

    async def _poll_run(self, run_id: str) -> tuple[Run, float | None]:
        # a background response is checked with the service, honouring openai-poll-after-ms
        return await self._retrieve(await self._stored_run(run_id))

    async def list_runs(
        self, *, order: Order = "desc", limit: int = 100, after: str | None = None
    ) -> Page[Run]:
        try:
            return await self._store.list_runs(self.id, order=order, limit=limit, after=after)
        except ThreadNotFoundError:
            if self.owner.conversational:
                return Page(data=[])
            raise

    async def list_run_steps(
        self, run_id: str, *, order: Order = "asc", limit: int = 100, after: str | None = None
    ) -> Page[RunStep]:
        try:
            return await self._store.list_steps(
                self.id, run_id, order=order, limit=limit, after=after
            )
        except ThreadNotFoundError as exc:
            raise RunNotFoundError(f"no run {run_id} on thread {self.id}") from exc

    # -- tool outputs and cancel -----------------------------------------------------------
    async def submit_tool_outputs(self, run_id: str, outputs: Sequence[ToolOutput]) -> Run:
        """Answer a ``requires_action`` run with ``function_call_output`` items in a new
        response; the same run goes on.

        Raises:
            InvalidRunStateError: the run is not ``requires_action``.
            ValidationError: an output is missing, duplicated or answers no call of the run.
            ServiceError: the service failed (the run is then recorded ``failed``).
        """
        run = await self.get_run(run_id)
        if run.status is not RunStatus.REQUIRES_ACTION or run.required_action is None:
            raise InvalidRunStateError(
                f"Runs in status {run.status.value!r} do not accept tool outputs (run {run.id}).",
                run_id=run.id,
                status=run.status.value,
            )
        calls = run.required_action.submit_tool_outputs.tool_calls
        given = match_tool_outputs(run, outputs)
        details = dict(run.provider_details or {})
        turn = details.pop("turn", None) or {}
        ts = now()
        claimed = msgspec.structs.replace(
            run,
            status=RunStatus.IN_PROGRESS,
            required_action=None,
            expires_at=ts + int(self.owner.request_lease),
            provider_details=details,
        )
        try:
            claimed = await self._store.update_run(claimed, expected_status=run.status.value)
        except InvalidRunStateError as exc:
            raise InvalidRunStateError(
                f"run {run.id} was answered or cancelled meanwhile",
                run_id=run.id,
                status=exc.status,
            ) from exc
        try:
            await self._write_tool_turn(claimed, turn, list(calls), given)
            step_id = turn.get("step_id")
            if step_id:
                with contextlib.suppress(NotFoundError):
                    step = await self._store.get_step(self.id, run.id, str(step_id))
                    answered = [
                        msgspec.structs.replace(
                            c, function=msgspec.structs.replace(c.function, output=given.get(c.id))
                        )
                        for c in calls
                    ]
                    await self._store.put_step(
                        msgspec.structs.replace(
                            step,
                            status=RunStepStatus.COMPLETED,
                            completed_at=ts,
                            step_details=ToolCallsDetails(tool_calls=answered),
                        )
                    )
            items = [
                {"type": "function_call_output", "call_id": c.id, "output": given[c.id]}
                for c in calls
            ]
            request = dict(details.get("request") or {})
            body = {**request, **await self._continue(claimed, items, turn)}
            resp = await self._send(claimed, body)
        except BaseException as exc:
            await self._abandon(claimed, exc)
            raise
        return await self._absorb(claimed, resp)

    async def cancel_run(self, run_id: str) -> Run:
        """Cancel a run.

        A run in ``requires_action`` is cancelled at once, its unanswered calls taken back (see
        the module docstring). A background response being generated is cancelled on the
        service.

        Raises:
            InvalidRunStateError: the run already ended.
            UnsupportedOperation: the run's response is being generated outside background
                mode (the service cancels only background responses).
        """
        run = await self.get_run(run_id)
        if run.status.is_terminal:
            raise InvalidRunStateError(
                f"Cannot cancel run {run.id} with status {run.status.value!r}.",
                run_id=run.id,
                status=run.status.value,
            )
        details = dict(run.provider_details or {})
        if run.status is RunStatus.REQUIRES_ACTION:
            turn = details.pop("turn", None) or {}
            ts = now()
            cancelled = msgspec.structs.replace(
                run,
                status=RunStatus.CANCELLED,
                cancelled_at=ts,
                required_action=None,
                provider_details=details,
            )
            try:
                cancelled = await self._store.update_run(
                    cancelled, expected_status=run.status.value
                )
            except InvalidRunStateError as exc:
                raise InvalidRunStateError(
                    f"run {run.id} was answered or cancelled meanwhile",
                    run_id=run.id,
                    status=exc.status,
                ) from exc
            await self._discard_turn(cancelled, turn)
            await self._chain_reset(cancelled)
            step_id = turn.get("step_id")
            if step_id:
                with contextlib.suppress(NotFoundError):
                    step = await self._store.get_step(self.id, run.id, str(step_id))
                    await self._store.put_step(
                        msgspec.structs.replace(
                            step, status=RunStepStatus.CANCELLED, cancelled_at=ts
                        )
                    )
            return cancelled
        pending = details.get("pending")
        if not pending:
            raise UnsupportedOperation(
                self.backend,
                "cancelling a response being generated",
                "the service cancels only background responses; set background = true",
            )
        r = self._responses
        resp = await self._call(lambda: r.cancel(pending), run_id=run.id, resource="run")
        return await self._absorb(run, _dump(resp))

    # -- shared helpers --------------------------------------------------------------------
    def _snapshot_settings(self) -> dict[str, Any]:
        return {k: v for k, v in self.owner.settings.items() if k != "backend"}

    async def close(self) -> None:
        """Close the backend this thread came from (threads from :func:`threadkit.resume`)."""
        await self.owner.close()


# =========================================================================== local record


class ResponsesThread(_RunsThread):
    """A thread kept in the local record (``previous_response_id`` and ``store`` modes)."""

    def __init__(self, thread_id: str, owner: ResponsesBackend) -> None:
        super().__init__(thread_id, owner)

    # -- chain state -----------------------------------------------------------------------
    async def _state(self) -> _State:
        try:
            return _state_decoder.decode((await self._store.get_object(STATE_KIND, self.id)).data)
        except ObjectNotFoundError:
            return _State()

    async def _put_state(self, state: _State) -> None:
        await self._store.put_object(STATE_KIND, self.id, _state_encoder.encode(state))

    async def _latest(self) -> tuple[str | None, int]:
        tail = await self._store.tail(self.id, 1)
        return (tail[-1].id, tail[-1].seq) if tail else (None, 0)

    async def _chain_moved(self, run: Run, response_id: str) -> None:
        if self.owner.mode != "previous_response_id":
            return
        sent_id, sent_seq = await self._latest()
        await self._put_state(_State(head=response_id, sent_id=sent_id, sent_seq=sent_seq))

    async def _chain_reset(self, run: Run) -> None:
        start = (run.provider_details or {}).get("start")
        if self.owner.mode != "previous_response_id" or not isinstance(start, Mapping):
            return
        await self._put_state(
            _State(
                head=start.get("head"),
                sent_id=start.get("sent_id"),
                sent_seq=int(start.get("sent_seq") or 0),
            )
        )

    async def _unsent(self, state: _State) -> list[Message]:
        """The messages after ``state.sent_seq``, oldest first."""
        out: list[Message] = []
        after = state.sent_id
        try:
            while True:
                page = await self._store.list_messages(self.id, order="asc", limit=500, after=after)
                out.extend(page.data)
                if not page.has_more or not page.data:
                    break
                after = page.last_id
        except MessageNotFoundError:  # the cursor message was deleted: filter by seq
            out = []
            after = None
            while True:
                page = await self._store.list_messages(self.id, order="asc", limit=500, after=after)
                out.extend(m for m in page.data if m.seq > state.sent_seq)
                if not page.has_more or not page.data:
                    break
                after = page.last_id
        return out

    # -- requests --------------------------------------------------------------------------
    def _truncation(self, strategy: TruncationStrategy | None) -> dict[str, Any]:
        if self.owner.mode == "store":
            return {}  # applied locally, see _context
        return super()._truncation(strategy)

    async def _context(self, run: Run) -> list[dict[str, Any]]:
        """``store`` mode: the thread after truncation, as input items.

        The ``auto`` budget is ``max_prompt_tokens`` (else 128,000 tokens) less the
        instructions' estimate and ``max_completion_tokens``, as the run engine counts it.
        """
        window_size = run.max_prompt_tokens or DEFAULT_CONTEXT_WINDOW
        budget = (
            window_size - estimate_tokens((), run.instructions) - (run.max_completion_tokens or 0)
        )
        window = await build_context(
            self._store, self.id, run.truncation_strategy, token_budget=max(budget, 1)
        )
        return messages_to_items(self.backend, window)

    async def _begin(self, run: Run) -> tuple[Run, dict[str, Any]]:
        if self.owner.mode == "store":
            items = await self._context(run)
            return run, {"input": items, "store": False, "include": _ENCRYPTED}
        state = await self._state()
        unsent = await self._unsent(state)
        start = {"head": state.head, "sent_id": state.sent_id, "sent_seq": state.sent_seq}
        noted = msgspec.structs.replace(
            run, provider_details={**(run.provider_details or {}), "start": start}
        )
        run = await self._save(run, noted)
        body: dict[str, Any] = {"input": messages_to_items(self.backend, unsent)}
        if state.head:
            body["previous_response_id"] = state.head
        return run, body

    async def _continue(
        self, run: Run, outputs: list[dict[str, Any]], turn: Mapping[str, Any]
    ) -> dict[str, Any]:
        if self.owner.mode == "store":
            return {"input": await self._context(run), "store": False, "include": _ENCRYPTED}
        return {"input": outputs, "previous_response_id": turn.get("response_id")}

    async def _write_answer(self, run: Run, response_id: str, turn: Turn) -> str | None:
        parts = [p for p in turn.content]
        if not parts:
            return None
        details: dict[str, Any] = {"response_id": response_id}
        if turn.message_item_ids:
            details["item_ids"] = turn.message_item_ids
        message = Message(
            id="",
            thread_id=self.id,
            role="assistant",
            content=parts,
            run_id=run.id,
            agent_id=run.agent_id,
            provider_details=details,
        )
        (stored,) = await self._store.append(
            self.id, [message], idempotency_key=f"{run.id}:{response_id}"
        )
        return stored.id

    async def _write_tool_turn(
        self, run: Run, turn: Mapping[str, Any], calls: list[ToolCall], given: Mapping[str, str]
    ) -> None:
        parsed = parse_output(turn.get("output") or [])
        rid = str(turn.get("response_id") or "")
        call_message = Message(
            id="",
            thread_id=self.id,
            role="assistant",
            content=list(parsed.content),
            run_id=run.id,
            agent_id=run.agent_id,
            provider_details={"response_id": rid},
        )
        results = [
            Message(
                id="",
                thread_id=self.id,
                role="tool",
                content=[ToolResultContent(tool_call_id=c.id, output=given[c.id])],
                run_id=run.id,
                agent_id=run.agent_id,
            )
            for c in calls
        ]
        await self._store.append(
            self.id, [call_message, *results], idempotency_key=f"{run.id}:{rid}:tools"
        )

    # -- messages --------------------------------------------------------------------------
    async def add_message(
        self,
        role: Role,
        content: Content,
        *,
        attachments: Sequence[Attachment] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Message:
        """Append a message to the local record; the next run sends it.

        Raises:
            ActiveRunError: a run is active on the thread.
            UnsupportedOperation: attachments, or images/files in an assistant message.
            ValidationError: bad content or metadata.
            ThreadNotFoundError: the thread was deleted.
        """
        message = build_message(self.id, role, content, attachments=attachments, metadata=metadata)
        message_to_items(self.backend, message)  # refuse what cannot be sent, before writing
        await self._check_idle()
        (stored,) = await self._store.append(self.id, [message])
        return stored

    async def append_messages(self, messages: Sequence[Message]) -> list[Message]:
        """Write messages in order to the local record (tool calls, results, reasoning and
        images included); the next run sends them.

        Raises:
            UnsupportedOperation: attachments, or images/files in an assistant message;
                checked before anything is written.
            OrphanToolResultError: a tool result answers no tool call of the thread.
            ActiveRunError: a run is active on the thread.
        """
        fresh = [build_message(self.id, m.role, m.content, metadata=m.metadata) for m in messages]
        fresh = [
            msgspec.structs.replace(
                f, run_id=m.run_id, agent_id=m.agent_id, provider_details=m.provider_details
            )
            for f, m in zip(fresh, messages, strict=True)
        ]
        for m in messages:
            if m.attachments:
                raise UnsupportedOperation(self.backend, "message attachments")
        for f in fresh:
            message_to_items(self.backend, f)
        if not fresh:
            return []
        await self._check_idle()
        return await self._store.append(self.id, fresh)

    async def list_messages(
        self,
        *,
        order: Order = "asc",
        limit: int = 100,
        after: str | None = None,
        before: str | None = None,
    ) -> Page[Message]:
        if not 1 <= limit <= 100:
            raise ValidationError("limit must be between 1 and 100")
        return await self._store.list_messages(
            self.id, order=order, limit=limit, after=after, before=before
        )

    async def get_message(self, message_id: str) -> Message:
        return await self._store.get_message(self.id, message_id)

    # -- thread ----------------------------------------------------------------------------
    async def delete(self) -> bool:
        """Delete the thread from the local record, and its stored responses from the service
        (``previous_response_id`` mode). False if it was already gone."""
        try:
            await self._store.get_thread(self.id)
        except ThreadNotFoundError:
            return False
        if self.owner.mode == "previous_response_id":
            r = self._responses
            async for run in self.runs():
                for rid in (run.provider_details or {}).get("responses", []):
                    with contextlib.suppress(NotFoundError):
                        await self._call(functools.partial(r.delete, rid), resource="run")
        await self._store.delete_object(STATE_KIND, self.id)
        return await self._store.delete_thread(self.id)

    async def info(self) -> ThreadInfo:
        return await self._store.get_thread(self.id)

    async def serialize(self, format: Literal["json", "msgpack"] = "json") -> bytes:
        info = await self._store.get_thread(self.id)
        tail = await self._store.tail(self.id, 1)
        locator = self._store.locator
        inline: InlineThread | None = None
        if locator.startswith("memory://"):
            messages = (await self._store.list_messages(self.id, limit=None)).data
            inline = InlineThread(
                created_at=info.created_at, metadata=info.metadata, messages=messages
            )
        state = await self._state()
        ids: dict[str, str] = {}
        if state.head:
            ids["previous_response_id"] = state.head
            ids["sent_seq"] = str(state.sent_seq)
            if state.sent_id:
                ids["sent_message_id"] = state.sent_id
        snapshot = Snapshot(
            format=FORMAT,
            version=VERSION,
            backend=self.backend,
            thread_id=self.id,
            created_at=now(),
            settings=self._snapshot_settings(),
            store=locator,
            service_ids=ids,
            message_count=info.message_count,
            last_seq=tail[-1].seq if tail else 0,
            inline=inline,
        )
        return encode_snapshot(snapshot, format)


# =========================================================================== conversations


class ConversationThread(_RunsThread):
    """A service conversation as a thread (``conversation`` mode; also ``foundry-agents``).

    Each conversation item is one message, its id the item id. Runs and steps are kept in the
    local record under a record thread with the conversation's id.
    """

    max_items_per_request = 20

    def __init__(self, thread_id: str, owner: Any) -> None:
        super().__init__(thread_id, owner)
        self._conversations = owner.client.conversations.with_raw_response

    # -- record ----------------------------------------------------------------------------
    async def _ensure_record(self) -> None:
        try:
            await self._store.get_thread(self.id)
        except ThreadNotFoundError:
            with contextlib.suppress(ValidationError):  # another process made it meanwhile
                await self._store.create_thread(thread_id=self.id)

    async def _item_runs(self) -> dict[str, str]:
        try:
            return _items_decoder.decode((await self._store.get_object(ITEMS_KIND, self.id)).data)
        except ObjectNotFoundError:
            return {}

    async def _remember_items(self, run: Run, item_ids: Sequence[str]) -> None:
        if not item_ids:
            return
        known = await self._item_runs()
        known.update({i: run.id for i in item_ids if i})
        await self._store.put_object(ITEMS_KIND, self.id, msgspec.json.encode(known))

    # -- requests --------------------------------------------------------------------------
    async def _begin(self, run: Run) -> tuple[Run, dict[str, Any]]:
        return run, {"conversation": self.id}

    async def _continue(
        self, run: Run, outputs: list[dict[str, Any]], turn: Mapping[str, Any]
    ) -> dict[str, Any]:
        return {"conversation": self.id, "input": outputs}

    async def _write_answer(self, run: Run, response_id: str, turn: Turn) -> str | None:
        await self._remember_items(
            run, [*turn.reasoning_item_ids, *turn.message_item_ids, *turn.call_item_ids]
        )
        return turn.message_item_ids[-1] if turn.message_item_ids else None

    async def _absorb(self, run: Run, resp: Mapping[str, Any]) -> Run:
        if resp.get("status") == "completed":
            turn = parse_output(resp.get("output") or [])
            if turn.calls:
                await self._remember_items(
                    run, [*turn.reasoning_item_ids, *turn.message_item_ids, *turn.call_item_ids]
                )
        return await super()._absorb(run, resp)

    async def _discard_turn(self, run: Run, turn: Mapping[str, Any]) -> None:
        """Delete the unanswered ``function_call`` items (then their reasoning items) from the
        conversation, so the next response does not fail on calls without outputs."""
        parsed = parse_output(turn.get("output") or [])
        items = self._conversations.items
        for iid in [*parsed.call_item_ids, *parsed.reasoning_item_ids]:
            if not iid:
                continue
            with contextlib.suppress(MessageNotFoundError):
                await self._call(
                    functools.partial(items.delete, iid, conversation_id=self.id),
                    resource="message",
                )

    # -- messages --------------------------------------------------------------------------
    def _refuse(self, m: Message) -> list[dict[str, Any]]:
        if m.metadata:
            raise UnsupportedOperation(
                self.backend,
                "message metadata",
                "conversation items have no metadata field",
            )
        items = message_to_items(self.backend, m)
        if not items:
            raise UnsupportedOperation(
                self.backend, "this message", "none of its parts can be a conversation item"
            )
        if len(items) > self.max_items_per_request:
            raise UnsupportedOperation(
                self.backend,
                f"a message of more than {self.max_items_per_request} items",
            )
        return items

    def _combine(self, made: list[dict[str, Any]], role: Role) -> Message:
        """The items one message became, as one Message (id: the first item's)."""
        parts = [p for raw in made for p in item_to_message(raw, self.id).content]
        first = item_to_message(made[0], self.id)
        details = dict(first.provider_details or {})
        if len(made) > 1:
            details["item_ids"] = [str(raw.get("id")) for raw in made]
        return msgspec.structs.replace(
            first, role=role, content=parts, provider_details=details or None
        )

    async def add_message(
        self,
        role: Role,
        content: Content,
        *,
        attachments: Sequence[Attachment] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Message:
        """Add an item to the conversation (``tool`` messages become ``function_call_output``
        items).

        Raises:
            UnsupportedOperation: metadata or attachments (conversation items have neither),
                images/files in an assistant message.
            ActiveRunError: a run is active on the thread.
            ThreadNotFoundError: no such conversation.
        """
        message = build_message(self.id, role, content, attachments=attachments, metadata=metadata)
        if message.attachments:
            raise UnsupportedOperation(self.backend, "message attachments")
        items = self._refuse(message)
        await self._check_idle()
        made = await self._create_items(items)
        return self._combine(made, role)

    async def _create_items(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ci = self._conversations.items
        created = await self._call(
            lambda: ci.create(self.id, items=items),
            resource="thread",
        )
        return list(_dump(created).get("data") or [])

    async def append_messages(self, messages: Sequence[Message]) -> list[Message]:
        """Add messages as conversation items, in order, up to 20 items per request.

        Returns:
            One message per message given (the first item's id; ``provider_details
            ["item_ids"]`` lists every item when a message became several).

        Raises:
            UnsupportedOperation: metadata, attachments, or parts no item can hold; checked
                before anything is written.
            ActiveRunError: a run is active on the thread.
        """
        planned: list[list[dict[str, Any]]] = []
        for m in messages:
            if m.attachments:
                raise UnsupportedOperation(self.backend, "message attachments")
            planned.append(self._refuse(m))
        if not planned:
            return []
        await self._check_idle()
        out: list[Message] = []
        batch: list[int] = []

        async def flush() -> None:
            items = [it for i in batch for it in planned[i]]
            made = await self._create_items(items)
            if len(made) != len(items):
                raise ServiceError(
                    f"{self.backend}: the service made {len(made)} items of {len(items)}"
                )
            k = 0
            for i in batch:
                n = len(planned[i])
                out.append(self._combine(made[k : k + n], messages[i].role))
                k += n
            batch.clear()

        for i, items in enumerate(planned):
            if batch and sum(len(planned[j]) for j in batch) + len(items) > (
                self.max_items_per_request
            ):
                await flush()
            batch.append(i)
        await flush()
        return out

    async def list_messages(
        self,
        *,
        order: Order = "asc",
        limit: int = 100,
        after: str | None = None,
        before: str | None = None,
    ) -> Page[Message]:
        """One page of conversation items as messages.

        The Conversations API pages with ``after`` only; ``before`` alone is served by reading
        the other way from ``before`` and reversing, ``after`` with ``before`` by stopping at
        ``before``.

        Raises:
            ValidationError: ``limit`` outside 1..100.
            MessageNotFoundError: ``after`` or ``before`` names no item of the conversation.
            ThreadNotFoundError: no such conversation.
        """
        if not 1 <= limit <= 100:
            raise ValidationError("limit must be between 1 and 100")
        if before and not after:
            back: Order = "desc" if order == "asc" else "asc"
            items, more = await self._items(back, limit, before)
            items.reverse()
        else:
            items, more = await self._items(order, limit, after)
            if before:
                ids = [str(i.get("id")) for i in items]
                if before in ids:
                    items, more = items[: ids.index(before)], False
        runs = await self._item_runs()
        data = []
        for raw in items:
            m = item_to_message(raw, self.id)
            rid = runs.get(m.id)
            if rid is not None:
                m = msgspec.structs.replace(m, run_id=rid)
            data.append(m)
        return _page(data, more, [m.id for m in data])

    async def _items(
        self, order: Order, limit: int, after: str | None
    ) -> tuple[list[dict[str, Any]], bool]:
        ci = self._conversations.items
        kw: dict[str, Any] = {"order": order, "limit": limit}
        if after:
            kw["after"] = after
        try:
            page = await self._call(lambda: ci.list(self.id, **kw), resource="thread")
        except ValidationError as exc:
            if after:
                raise MessageNotFoundError(
                    f"{self.backend}: no item {after} in conversation {self.id}"
                ) from exc
            raise
        body = _dump(page)
        return list(body.get("data") or []), bool(body.get("has_more"))

    async def get_message(self, message_id: str) -> Message:
        ci = self._conversations.items
        got = await self._call(
            lambda: ci.retrieve(message_id, conversation_id=self.id), resource="message"
        )
        m = item_to_message(_dump(got), self.id)
        rid = (await self._item_runs()).get(m.id)
        return msgspec.structs.replace(m, run_id=rid) if rid else m

    # -- thread ----------------------------------------------------------------------------
    async def delete(self) -> bool:
        """Delete the conversation and this thread's run records. False if it was gone."""
        conv = self._conversations
        try:
            await self._call(lambda: conv.delete(self.id), resource="thread")
        except ThreadNotFoundError:
            return False
        finally:
            await self._store.delete_object(ITEMS_KIND, self.id)
            with contextlib.suppress(ThreadNotFoundError):
                await self._store.delete_thread(self.id)
        return True

    async def info(self) -> ThreadInfo:
        conv = self._conversations
        got = _dump(await self._call(lambda: conv.retrieve(self.id), resource="thread"))
        created = int(got.get("created_at") or 0)
        return ThreadInfo(
            id=str(got["id"]),
            created_at=created,
            updated_at=created,
            metadata={str(k): str(v) for k, v in dict(got.get("metadata") or {}).items()},
        )

    def _service_ids(self) -> dict[str, str]:
        return {"conversation_id": self.id}

    async def serialize(self, format: Literal["json", "msgpack"] = "json") -> bytes:
        snapshot = Snapshot(
            format=FORMAT,
            version=VERSION,
            backend=self.backend,
            thread_id=self.id,
            created_at=now(),
            settings=self._snapshot_settings(),
            store=self._store.locator,
            service_ids=self._service_ids(),
        )
        return encode_snapshot(snapshot, format)
