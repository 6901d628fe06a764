"""The ``assistants`` backend: threads managed by an OpenAI Assistants v2 compatible service.

Uses the official ``openai`` SDK's ``client.beta.threads`` family (extra ``openai``). It works
against any Assistants-v2-compatible endpoint: OpenAI itself (the Assistants API was sunset in
2026) or ``threadkit serve``, which speaks the same protocol over any threadkit store.

What the service keeps: the thread, its messages, runs and run steps. What the snapshot keeps:
the thread id, the ``base_url``, the NAME of the API key's environment variable and the default
agent id, never the key. Limits of the service model: no thread listing (OpenAI has no such
endpoint: :class:`~threadkit.errors.UnsupportedOperation`), messages hold text and images only
(tool calls live in run steps), truncation strategies ``auto`` and ``last_messages`` only.

Build it from configuration (``backend = "assistants"``, ``base_url``, ``api_key_env``,
``allow_insecure_loopback``, ``agent_id``, ``model = "openai:<model>"``) or around a client you
already have: ``AssistantsBackend(client=openai.AsyncOpenAI(...))``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec

from threadkit._extras import require
from threadkit._ids import now
from threadkit.adapters._assistants_model import (
    agent_fingerprint,
    check_writable,
    message_body,
    message_from_service,
    run_from_service,
    run_options_to_service,
    step_from_service,
    tools_to_service,
)
from threadkit.adapters._service import (
    check_endpoint,
    check_snapshot_origin,
    poll_after_seconds,
    raise_for_status_error,
)
from threadkit.config import Config
from threadkit.errors import (
    ConfigError,
    ServiceError,
    UnsupportedOperation,
    ValidationError,
)
from threadkit.snapshot import FORMAT, VERSION, Snapshot, encode_snapshot
from threadkit.stores.base import check_metadata
from threadkit.thread import BaseAgentThread, Content, Order, PollPolicy
from threadkit.types import (
    Agent,
    Attachment,
    Message,
    Page,
    Role,
    Run,
    RunStep,
    ThreadInfo,
    ToolOutput,
)

if TYPE_CHECKING:
    import openai

__all__ = ["AssistantsBackend", "AssistantsThread"]

T = TypeVar("T")

_KIND = "assistants"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the SDK's DeprecationWarning for the Assistants API: choosing this backend is a
    deliberate choice (and it also serves compatible endpoints such as threadkit serve). The
    warning can also fire inside awaited calls, so a narrow message filter is installed once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _install_warning_filter() -> None:
    # filterwarnings replaces an identical filter instead of adding a second one
    warnings.filterwarnings(
        "ignore", message="The Assistants API is deprecated", category=DeprecationWarning
    )


_json_decoder = msgspec.json.Decoder()


def _json(raw: Any) -> dict[str, Any]:
    """The JSON body of a raw SDK response, decoded once by msgspec (no pydantic parsing:
    threadkit maps the spec objects itself)."""
    body = _json_decoder.decode(raw.http_response.content)
    if not isinstance(body, dict):
        raise ServiceError(f"the service answered with a JSON {type(body).__name__}, not an object")
    return body


class AssistantsBackend:
    """Threads of an Assistants v2 service.

    Args:
        client: an ``openai.AsyncOpenAI`` (e.g. pointed at ``threadkit serve``).
        agent_id: the assistant id runs use when the :class:`~threadkit.types.Agent` given has
            no ``id`` and no definition of its own.
        model: the model for assistants created from an Agent without one.
        poll: the polling policy (0.5 s, ×1.5, 5 s cap; the service's ``openai-poll-after-ms``
            hint wins).
        settings: non-secret settings recorded in snapshots.
        owns_client: close ``client`` in :meth:`close`.
    """

    kind = _KIND

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        agent_id: str | None = None,
        model: str | None = None,
        poll: PollPolicy | None = None,
        settings: Mapping[str, Any] | None = None,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.agent_id = agent_id
        self.model = model
        self.poll = poll or PollPolicy()
        self._settings = dict(settings or {"base_url": str(client.base_url)})
        self._owns_client = owns_client
        self._agents: dict[str, str] = {}
        self._agent_lock = asyncio.Lock()
        _install_warning_filter()

    @classmethod
    async def from_config(cls, cfg: Config) -> AssistantsBackend:
        """Build the backend from configuration.

        Raises:
            MissingExtraError: the ``openai`` extra is not installed.
            ConfigError: a plain-http ``base_url`` without ``allow_insecure_loopback`` (or to a
                non-loopback host), or the API key variable ``api_key_env`` is unset.
        """
        openai_mod = require("openai", "openai", "the assistants backend")
        if cfg.base_url:
            check_endpoint(
                cfg.base_url, allow_insecure_loopback=cfg.allow_insecure_loopback, key="base_url"
            )
        key = os.environ.get(cfg.api_key_env)
        if not key:
            raise ConfigError(
                f"the assistants backend needs an API key in the environment variable "
                f"{cfg.api_key_env}, which is unset",
                key="api_key_env",
            )
        client = openai_mod.AsyncOpenAI(base_url=cfg.base_url, api_key=key, max_retries=2)
        settings: dict[str, Any] = {
            "base_url": str(client.base_url).rstrip("/"),
            "api_key_env": cfg.api_key_env,
            "allow_insecure_loopback": cfg.allow_insecure_loopback,
            "model": cfg.model,
        }
        if cfg.agent_id:
            settings["agent_id"] = cfg.agent_id
        return cls(
            client,
            agent_id=cfg.agent_id,
            model=cfg.model.removeprefix("openai:"),
            poll=PollPolicy(timeout=cfg.poll_timeout, retry_failed=cfg.retry_failed_runs),
            settings=settings,
            owns_client=True,
        )

    @property
    def settings(self) -> dict[str, Any]:
        """Non-secret settings: ``base_url``, ``api_key_env``, ``agent_id``, ``model``."""
        return {"backend": self.kind, **self._settings}

    async def call(
        self,
        make: Callable[[], Awaitable[T]],
        *,
        thread_id: str | None = None,
        run_id: str | None = None,
        resource: str | None = None,
    ) -> T:
        """Run one SDK call, translating its errors into the threadkit tree."""
        openai_mod = require("openai", "openai", "the assistants backend")
        try:
            with _quiet():
                pending = make()
            return await pending
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

    async def create_thread(self, *, metadata: Mapping[str, str] | None = None) -> AssistantsThread:
        """Create a thread on the service. Raises ValidationError, ServiceError."""
        meta = check_metadata(metadata)
        t = self.client.beta.threads
        created = await self.call(lambda: t.create(metadata=meta or None))
        return AssistantsThread(created.id, self)

    async def get_thread(self, thread_id: str) -> AssistantsThread:
        """An existing thread. Raises ThreadNotFoundError."""
        t = self.client.beta.threads
        await self.call(lambda: t.retrieve(thread_id), thread_id=thread_id, resource="thread")
        return AssistantsThread(thread_id, self)

    async def list_threads(
        self, *, limit: int | None = None, metadata: Mapping[str, str] | None = None
    ) -> AsyncIterator[ThreadInfo]:
        """Not offered: the Assistants API has no endpoint that lists threads.

        Raises:
            UnsupportedOperation: always.
        """
        raise UnsupportedOperation(
            self.kind, "list_threads", "the Assistants API cannot list threads"
        )
        yield  # type: ignore[unreachable]  # makes this an async generator

    async def resume_thread(self, snapshot: Snapshot) -> AssistantsThread:
        """The thread a snapshot names, on this backend's service.

        Raises:
            BackendMismatchError: another backend kind or another service made the snapshot.
            ThreadNotFoundError: the service no longer has the thread.
        """
        check_snapshot_origin(
            snapshot,
            kind=self.kind,
            setting="base_url",
            configured=str(self._settings.get("base_url", "")),
        )
        return await self.get_thread(snapshot.thread_id)

    async def assistant_id(self, agent: Agent | None) -> str:
        """The service assistant a run of ``agent`` uses.

        ``agent.id`` when set; else the configured ``agent_id`` when the agent defines nothing;
        else an assistant created from the agent's definition, once per definition and backend.

        Raises:
            ConfigError: no agent id and no model to create an assistant with.
        """
        agent = agent or Agent()
        if agent.id:
            return agent.id
        defined = agent.instructions or agent.tools or agent.name or agent.model
        if self.agent_id and not defined:
            return self.agent_id
        model = agent.model or self.model
        if not model:
            raise ConfigError(
                "a run needs an agent: give Agent(id=...), configure agent_id, or give a model "
                "to create one with",
                key="agent_id",
            )
        fp = agent_fingerprint(agent, model)
        async with self._agent_lock:
            if fp not in self._agents:
                a = self.client.beta.assistants
                body: dict[str, Any] = {
                    "model": model,
                    "name": agent.name,
                    "instructions": agent.instructions,
                    "description": agent.description,
                    "tools": tools_to_service(agent.tools) or None,
                    "temperature": agent.temperature,
                    "top_p": agent.top_p,
                    "metadata": {**agent.metadata, "threadkit_fingerprint": fp},
                }
                created = await self.call(
                    lambda: a.create(**{k: v for k, v in body.items() if v is not None})
                )
                self._agents[fp] = created.id
            return self._agents[fp]

    async def close(self) -> None:
        """Close the HTTP client when this backend created it."""
        if self._owns_client:
            await self.client.close()

    async def __aenter__(self) -> AssistantsBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AssistantsThread(BaseAgentThread):
    """A thread of an Assistants v2 service (see :class:`~threadkit.thread.BaseAgentThread`)."""

    backend = _KIND

    def __init__(self, thread_id: str, owner: AssistantsBackend) -> None:
        super().__init__(thread_id, poll=owner.poll)
        self.owner = owner
        # raw responses: threadkit decodes the JSON itself (faster than the SDK's parsing)
        self._threads = owner.client.beta.threads.with_raw_response

    async def _call(self, make: Callable[[], Awaitable[T]], **kw: Any) -> T:
        kw.setdefault("thread_id", self.id)
        return await self.owner.call(make, **kw)

    # -- messages ----------------------------------------------------------------------
    async def add_message(
        self,
        role: Role,
        content: Content,
        *,
        attachments: Sequence[Attachment] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Message:
        body = message_body(self.backend, role, content, attachments=attachments, metadata=metadata)
        m = self._threads.messages
        created = await self._call(lambda: m.create(self.id, **body), resource="thread")
        return message_from_service(_json(created))

    async def append_messages(self, messages: Sequence[Message]) -> list[Message]:
        """Write messages in order (text and images only; see the module limits).

        Raises:
            UnsupportedOperation: a tool call, tool result, reasoning or file part, or a role
                other than user/assistant; checked before anything is written.
        """
        check_writable(self.backend, messages)  # nothing is written on refusal
        return [
            await self.add_message(
                m.role, m.content, attachments=m.attachments, metadata=m.metadata
            )
            for m in messages
        ]

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
        kw: dict[str, Any] = {"order": order, "limit": limit}
        if after:
            kw["after"] = after
        if before:
            kw["before"] = before
        m = self._threads.messages
        page = await self._call(
            lambda: m.list(self.id, **kw), resource="message" if (after or before) else "thread"
        )
        body = _json(page)
        data = [message_from_service(x) for x in body.get("data") or []]
        return Page(
            data=data,
            has_more=bool(body.get("has_more")),
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
        )

    async def get_message(self, message_id: str) -> Message:
        m = self._threads.messages
        got = await self._call(
            lambda: m.retrieve(message_id, thread_id=self.id), resource="message"
        )
        return message_from_service(_json(got))

    # -- runs --------------------------------------------------------------------------
    async def create_run(self, agent: Agent | None = None, **options: Any) -> Run:
        agent = agent or Agent()
        assistant = await self.owner.assistant_id(agent)
        if "tools" not in options and agent.tools and agent.id:
            options["tools"] = agent.tools
        if agent.instructions and "instructions" not in options and agent.id:
            options["instructions"] = agent.instructions
        body = run_options_to_service(self.backend, options)
        r = self._threads.runs
        created = await self._call(
            lambda: r.create(self.id, assistant_id=assistant, **body), resource="thread"
        )
        return run_from_service(_json(created))

    async def _retrieve(self, run_id: str) -> tuple[Run, float | None]:
        raw_api = self._threads.runs
        raw = await self._call(
            lambda: raw_api.retrieve(run_id, thread_id=self.id), run_id=run_id, resource="run"
        )
        return run_from_service(_json(raw)), poll_after_seconds(raw.headers)

    async def get_run(self, run_id: str) -> Run:
        return (await self._retrieve(run_id))[0]

    async def _poll_run(self, run_id: str) -> tuple[Run, float | None]:
        return await self._retrieve(run_id)  # honours the service's openai-poll-after-ms

    async def list_runs(
        self, *, order: Order = "desc", limit: int = 100, after: str | None = None
    ) -> Page[Run]:
        kw: dict[str, Any] = {"order": order, "limit": limit}
        if after:
            kw["after"] = after
        r = self._threads.runs
        page = await self._call(lambda: r.list(self.id, **kw), resource="thread")
        body = _json(page)
        data = [run_from_service(x) for x in body.get("data") or []]
        return Page(
            data=data,
            has_more=bool(body.get("has_more")),
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
        )

    async def list_run_steps(
        self, run_id: str, *, order: Order = "asc", limit: int = 100, after: str | None = None
    ) -> Page[RunStep]:
        kw: dict[str, Any] = {"order": order, "limit": limit}
        if after:
            kw["after"] = after
        s = self._threads.runs.steps
        page = await self._call(
            lambda: s.list(run_id, thread_id=self.id, **kw), run_id=run_id, resource="run"
        )
        body = _json(page)
        data = [step_from_service(x) for x in body.get("data") or []]
        return Page(
            data=data,
            has_more=bool(body.get("has_more")),
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
        )

    async def submit_tool_outputs(self, run_id: str, outputs: Sequence[ToolOutput]) -> Run:
        r = self._threads.runs
        body = [{"tool_call_id": o.tool_call_id, "output": o.output} for o in outputs]
        done = await self._call(
            lambda: r.submit_tool_outputs(run_id, thread_id=self.id, tool_outputs=body),  # type: ignore[arg-type]
            run_id=run_id,
            resource="run",
        )
        return run_from_service(_json(done))

    async def cancel_run(self, run_id: str) -> Run:
        r = self._threads.runs
        done = await self._call(
            lambda: r.cancel(run_id, thread_id=self.id), run_id=run_id, resource="run"
        )
        return run_from_service(_json(done))

    # -- thread ------------------------------------------------------------------------
    async def delete(self) -> bool:
        from threadkit.errors import ThreadNotFoundError

        t = self._threads
        try:
            deleted = await self._call(lambda: t.delete(self.id), resource="thread")
        except ThreadNotFoundError:
            return False
        return bool(_json(deleted).get("deleted", True))

    async def info(self) -> ThreadInfo:
        t = self._threads
        got = await self._call(lambda: t.retrieve(self.id), resource="thread")
        body = _json(got)
        return ThreadInfo(
            id=str(body["id"]),
            created_at=int(body.get("created_at") or 0),
            updated_at=int(body.get("created_at") or 0),
            metadata=dict(body.get("metadata") or {}),
        )

    async def serialize(self, format: Literal["json", "msgpack"] = "json") -> bytes:
        settings = {k: v for k, v in self.owner.settings.items() if k != "backend"}
        snapshot = Snapshot(
            format=FORMAT,
            version=VERSION,
            backend=self.backend,
            thread_id=self.id,
            created_at=now(),
            settings=settings,
            service_ids={
                "thread_id": self.id,
                **({"agent_id": self.owner.agent_id} if self.owner.agent_id else {}),
            },
        )
        return encode_snapshot(snapshot, format)

    async def close(self) -> None:
        """Close the backend this thread came from (threads from :func:`threadkit.resume`)."""
        await self.owner.close()
