"""The ``foundry-agents`` backend: threads as conversations of the new Foundry agents.

Uses ``azure-ai-projects`` 2.x (extra ``foundry``): ``AIProjectClient(endpoint, credential)``,
whose ``get_openai_client()`` hands out an ``openai.AsyncOpenAI`` for the project's
``<endpoint>/openai/v1``. There:

* a **conversation is the thread** (``conversations.create`` / ``items`` ...);
* a **run is** ``responses.create(conversation=..., extra_body={"agent_reference": {"type":
  "agent_reference", "name": <agent>, "version": ...}})``; ``function_call`` output items put the
  run in ``requires_action`` and ``function_call_output`` items answer them, in a new response of
  the same threadkit run (everything else as in the ``responses`` backend's ``conversation``
  mode: one Run per logical run, kept with its steps in the local record; see
  :mod:`threadkit.adapters.responses`).

**Agents.** Foundry agents carry their own model, instructions and tools, and the service refuses
``tools`` next to an ``agent_reference``, so requests never carry them. Which agent a run uses:

* ``Agent(id="name")`` or ``Agent(id="name:version")``: that existing agent (run options that
  would change its definition raise :class:`~threadkit.errors.UnsupportedOperation`);
* an Agent that defines something (instructions, tools, model...), or run options that do
  (``tools``, ``instructions``...): a **prompt agent version** made with
  ``project.agents.create_version(name, definition={"kind": "prompt", ...})`` once per
  definition and backend, named ``Agent.name`` (else the ``agent_id`` config key);
* otherwise the agent named by ``Agent.name`` or the ``agent_id`` config key (its latest version).

**Credentials.** ``credential = "default"`` uses ``azure.identity.aio.DefaultAzureCredential``;
``credential = "api_key"`` sends the key in the variable ``api_key_env`` (``api-key`` header to
the project API, the key as the OpenAI client's API key). Or pass your own AsyncTokenCredential
(:meth:`FoundryAgentsBackend.from_credential`) or ``AIProjectClient``
(:meth:`FoundryAgentsBackend.from_project`). Azure SDKs refuse bearer tokens over plain http;
``allow_insecure_loopback = true`` lets them through ONLY to 127.0.0.1, ::1 and localhost (the
per-call ``enforce_https=False`` option, nowhere else), so the backend works against
``threadkit serve``.

**Snapshots** keep the endpoint, the conversation id and the agent name, never credentials.
Limits are those of conversation mode (no thread listing, no message metadata or attachments).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from threadkit._extras import require
from threadkit.adapters._responses_model import (
    definition_fingerprint,
    response_format_to_text,
    tools_to_request,
)
from threadkit.adapters._service import (
    check_endpoint,
    check_snapshot_origin,
    is_loopback,
    raise_for_status_error,
)
from threadkit.adapters.responses import ConversationThread, ResponsesBackend
from threadkit.config import Config
from threadkit.errors import (
    ConfigError,
    ServiceError,
    UnsupportedOperation,
)
from threadkit.registry import open_store
from threadkit.snapshot import Snapshot
from threadkit.stores.base import MessageStore
from threadkit.thread import PollPolicy
from threadkit.types import Agent, Tool

if TYPE_CHECKING:
    import openai

__all__ = ["FoundryAgentsBackend", "FoundryAgentsThread"]

T = TypeVar("T")

_KIND = "foundry-agents"
_DEFINING_OPTIONS = (
    "tools",
    "instructions",
    "additional_instructions",
    "temperature",
    "top_p",
    "response_format",
)


class _KeyAsToken:
    """An AsyncTokenCredential that hands out a fixed API key (``credential = "api_key"``):
    ``get_openai_client`` needs a credential even when the key goes as the API key."""

    def __init__(self, key: str) -> None:
        self._key = key

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self._key, int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> _KeyAsToken:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class FoundryAgentsBackend(ResponsesBackend):
    """Conversations of Foundry's new agents (see the module docstring).

    Prefer :meth:`from_config`, :meth:`from_project` or :meth:`from_credential`.

    Args:
        client: the ``openai.AsyncOpenAI`` of ``project.get_openai_client()``.
        project: the ``azure.ai.projects.aio.AIProjectClient`` (agent versions are made
            through it; None: only existing agents can run).
        store: the local record of runs and steps, already set up.
        endpoint: the project endpoint (recorded in snapshots).
        agent_name: the agent runs use when the Agent names none (the ``agent_id`` key).
        model: the model of agent versions made from Agent definitions without one.
        background: create responses in background mode and poll them.
        insecure_loopback: the endpoint is plain http to a loopback host and the caller
            allowed it: project API calls then pass ``enforce_https=False``.
        poll, settings: as for :class:`~threadkit.adapters.responses.ResponsesBackend`.
        closers: async callables run by :meth:`close` (clients and credentials made here).
    """

    kind = _KIND

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        project: Any = None,
        store: MessageStore,
        endpoint: str | None = None,
        agent_name: str | None = None,
        model: str | None = None,
        background: bool = False,
        insecure_loopback: bool = False,
        poll: PollPolicy | None = None,
        settings: Mapping[str, Any] | None = None,
        closers: list[Callable[[], Awaitable[Any]]] | None = None,
    ) -> None:
        endpoint = endpoint or _endpoint_of(project) or str(client.base_url)
        super().__init__(
            client,
            store=store,
            mode="conversation",
            background=background,
            model=model,
            agent_id=agent_name,
            poll=poll,
            settings=settings or {"endpoint": endpoint.rstrip("/")},
        )
        self.project = project
        self.endpoint = endpoint.rstrip("/")
        self._insecure = insecure_loopback and is_loopback(self.endpoint)
        self._closers = list(closers or [])
        self._versions: dict[str, str] = {}

    # -- construction ----------------------------------------------------------------------
    @classmethod
    async def from_config(cls, cfg: Config) -> FoundryAgentsBackend:
        """Build the backend from configuration (``endpoint``, ``credential``,
        ``api_key_env``, ``allow_insecure_loopback``, ``agent_id``, ``model``, ``store``,
        ``background``).

        Raises:
            MissingExtraError: the ``foundry`` extra is not installed.
            ConfigError: no ``endpoint``; a plain-http endpoint without
                ``allow_insecure_loopback`` or to a non-loopback host; ``credential =
                "api_key"`` with ``api_key_env`` unset.
            StoreError: the local record cannot be opened.
        """
        projects = require("azure.ai.projects.aio", "foundry", "the foundry-agents backend")
        if not cfg.endpoint:
            raise ConfigError(
                "the foundry-agents backend needs the project endpoint "
                "(https://<resource>.services.ai.azure.com/api/projects/<project>)",
                key="endpoint",
            )
        check_endpoint(cfg.endpoint, allow_insecure_loopback=cfg.allow_insecure_loopback)
        settings: dict[str, Any] = {
            "endpoint": cfg.endpoint.rstrip("/"),
            "credential": cfg.credential,
            "allow_insecure_loopback": cfg.allow_insecure_loopback,
            "model": cfg.model,
            "background": cfg.background,
        }
        if cfg.agent_id:
            settings["agent_id"] = cfg.agent_id
        closers: list[Callable[[], Awaitable[Any]]] = []
        project_kw: dict[str, Any] = {}
        openai_kw: dict[str, Any] = {"max_retries": 2}
        if cfg.credential == "api_key":
            key = os.environ.get(cfg.api_key_env)
            if not key:
                raise ConfigError(
                    f"credential 'api_key' needs the key in the environment variable "
                    f"{cfg.api_key_env}, which is unset",
                    key="api_key_env",
                )
            from azure.core.credentials import AzureKeyCredential
            from azure.core.pipeline.policies import AzureKeyCredentialPolicy

            credential: Any = _KeyAsToken(key)
            project_kw["authentication_policy"] = AzureKeyCredentialPolicy(
                AzureKeyCredential(key), "api-key"
            )
            openai_kw["api_key"] = key
            settings["api_key_env"] = cfg.api_key_env
        else:
            identity = require("azure.identity.aio", "foundry", "credential = 'default'")
            credential = identity.DefaultAzureCredential()
            closers.append(credential.close)
        project = projects.AIProjectClient(
            endpoint=cfg.endpoint, credential=credential, **project_kw
        )
        closers.insert(0, project.close)
        try:
            client = project.get_openai_client(**openai_kw)
            closers.insert(0, client.close)
            store = open_store(cfg.store)
            await store.setup()
            closers.append(store.close)
        except BaseException:
            for close in closers:
                await close()
            raise
        return cls(
            client,
            project=project,
            store=store,
            endpoint=cfg.endpoint,
            agent_name=cfg.agent_id,
            model=cfg.model.removeprefix("openai:"),
            background=cfg.background,
            insecure_loopback=cfg.allow_insecure_loopback,
            poll=PollPolicy(timeout=cfg.poll_timeout, retry_failed=cfg.retry_failed_runs),
            settings=settings,
            closers=closers,
        )

    @classmethod
    async def from_project(
        cls,
        project: Any,
        *,
        store: MessageStore | None = None,
        agent_name: str | None = None,
        model: str | None = None,
        background: bool = False,
        allow_insecure_loopback: bool = False,
        poll: PollPolicy | None = None,
    ) -> FoundryAgentsBackend:
        """Wrap an ``azure.ai.projects.aio.AIProjectClient`` you already have (it stays
        yours: :meth:`close` leaves it open).

        Args:
            project: the async project client.
            store: the local record of runs (default: a fresh ``memory://`` store).
            allow_insecure_loopback: the project endpoint may be plain http to 127.0.0.1,
                ::1 or localhost.

        Raises:
            ConfigError: the project's endpoint is plain http and not allowed (see
                :func:`~threadkit.adapters._service.check_endpoint`).
        """
        endpoint = _endpoint_of(project)
        if endpoint is None:
            raise ConfigError("the project client has no endpoint", key="endpoint")
        check_endpoint(endpoint, allow_insecure_loopback=allow_insecure_loopback)
        client = project.get_openai_client(max_retries=2)
        closers: list[Callable[[], Awaitable[Any]]] = [client.close]
        if store is None:
            store = open_store("memory://")
            await store.setup()
            closers.append(store.close)
        settings: dict[str, Any] = {
            "endpoint": endpoint.rstrip("/"),
            "allow_insecure_loopback": allow_insecure_loopback,
            "background": background,
        }
        if agent_name:
            settings["agent_id"] = agent_name
        if model:
            settings["model"] = f"openai:{model}"
        return cls(
            client,
            project=project,
            store=store,
            endpoint=endpoint,
            agent_name=agent_name,
            model=model,
            background=background,
            insecure_loopback=allow_insecure_loopback,
            poll=poll,
            settings=settings,
            closers=closers,
        )

    @classmethod
    async def from_credential(
        cls,
        endpoint: str,
        credential: Any,
        *,
        store: MessageStore | None = None,
        agent_name: str | None = None,
        model: str | None = None,
        background: bool = False,
        allow_insecure_loopback: bool = False,
        poll: PollPolicy | None = None,
    ) -> FoundryAgentsBackend:
        """Build the project client from an endpoint and any AsyncTokenCredential (a sync
        TokenCredential is wrapped); the credential stays yours.

        Raises:
            ConfigError: a plain-http endpoint not allowed (see :meth:`from_project`).
            MissingExtraError: the ``foundry`` extra is not installed.
        """
        projects = require("azure.ai.projects.aio", "foundry", "the foundry-agents backend")
        check_endpoint(endpoint, allow_insecure_loopback=allow_insecure_loopback)
        if not _is_async_credential(credential):
            credential = _AsyncCredential(credential)
        project = projects.AIProjectClient(endpoint=endpoint, credential=credential)
        backend = await cls.from_project(
            project,
            store=store,
            agent_name=agent_name,
            model=model,
            background=background,
            allow_insecure_loopback=allow_insecure_loopback,
            poll=poll,
        )
        backend._closers.insert(1, project.close)
        return backend

    # -- threads ---------------------------------------------------------------------------
    def _thread(self, thread_id: str) -> FoundryAgentsThread:
        return FoundryAgentsThread(thread_id, self)

    def _check_snapshot(self, snapshot: Snapshot) -> None:
        check_snapshot_origin(
            snapshot, kind=self.kind, setting="endpoint", configured=self.endpoint, noun="project"
        )

    # -- agents ----------------------------------------------------------------------------
    async def project_call(self, make: Callable[[dict[str, Any]], Awaitable[T]]) -> T:
        """Run one project-client call, translating azure-core errors into the threadkit
        tree. ``make`` gets the per-call options (``enforce_https=False`` only for an allowed
        loopback endpoint)."""
        exceptions = require("azure.core.exceptions", "foundry", "the foundry-agents backend")
        options: dict[str, Any] = (
            {"enforce_https": False} if self._insecure and _bearer(self.project) else {}
        )
        try:
            return await make(options)
        except exceptions.HttpResponseError as exc:
            body: Any = None
            if exc.response is not None:
                try:
                    body = exc.response.text()
                except Exception:  # pragma: no cover - a body that cannot be read
                    body = None
            raise_for_status_error(exc.status_code, body, exc, service=self.kind)
        except exceptions.AzureError as exc:  # transport failures, https refusals
            raise ServiceError(f"{self.kind}: {exc}") from exc

    async def resolve_agent(
        self, agent: Agent, options: Mapping[str, Any]
    ) -> tuple[str, str | None, dict[str, Any] | None]:
        """The agent a run uses: ``(name, version or None, definition or None)``.

        Raises:
            ConfigError: no agent name anywhere, or a definition without a model.
            UnsupportedOperation: run options that change an existing agent
                (``Agent(id=...)``), or a definition without a project client.
        """
        defining = [k for k in _DEFINING_OPTIONS if options.get(k) is not None]
        if agent.id:
            if defining:
                raise UnsupportedOperation(
                    self.kind,
                    f"run-time {defining[0]} for an existing Foundry agent",
                    "Foundry agents take them from their definition; give an Agent(name=..., "
                    "instructions=..., tools=...) to make a version",
                )
            ref_name, _, ref_version = agent.id.partition(":")
            return ref_name, ref_version or None, None
        name = agent.name or self.agent_id
        if not name:
            raise ConfigError(
                "a foundry-agents run needs an agent: give Agent(name=...) or Agent(id=...), "
                "or configure agent_id",
                key="agent_id",
            )
        defined = (
            agent.instructions
            or agent.tools
            or agent.model
            or agent.temperature is not None
            or agent.top_p is not None
            or agent.response_format is not None
            or defining
            or options.get("model")
        )
        if not defined:
            return name, None, None
        model = options.get("model") or agent.model or self.model
        if not model:
            raise ConfigError(
                "an agent version needs a model: give Agent(model=...) or configure "
                "model = 'openai:<deployment>'",
                key="model",
            )
        instructions = options.get("instructions", agent.instructions)
        extra = options.get("additional_instructions")
        if extra:
            instructions = f"{instructions}\n\n{extra}" if instructions else extra
        raw_tools = options.get("tools")
        tools: list[Tool] = list(agent.tools if raw_tools is None else raw_tools)
        definition: dict[str, Any] = {"kind": "prompt", "model": model}
        if instructions:
            definition["instructions"] = instructions
        if tools:
            definition["tools"] = tools_to_request(self.kind, tools)
        temperature = options.get("temperature", agent.temperature)
        top_p = options.get("top_p", agent.top_p)
        if temperature is not None:
            definition["temperature"] = temperature
        if top_p is not None:
            definition["top_p"] = top_p
        fmt = options.get("response_format", agent.response_format)
        text = response_format_to_text(fmt) if fmt is not None else None
        if text is not None:
            definition["text"] = text
        version = await self.agent_version(name, definition, description=agent.description)
        return name, version, definition

    async def agent_version(
        self, name: str, definition: Mapping[str, Any], *, description: str | None = None
    ) -> str:
        """The version of agent ``name`` with ``definition``, made once per definition.

        Raises:
            UnsupportedOperation: no project client to make versions with.
            ServiceError, ValidationError: the service refused the version.
        """
        fp = f"{name}/{definition_fingerprint(definition)}"
        if fp in self._versions:
            return self._versions[fp]
        project = self.project
        if project is None:
            raise UnsupportedOperation(
                self.kind,
                "agent definitions",
                "making agent versions needs the AIProjectClient (build the backend with "
                "from_project or from_config)",
            )
        body: dict[str, Any] = {
            "definition": dict(definition),
            "metadata": {"threadkit_fingerprint": fp.rsplit("/", 1)[1]},
        }
        if description:
            body["description"] = description
        made = await self.project_call(
            lambda opts: project.agents.create_version(name, body, **opts)
        )
        version = str(made["version"] if isinstance(made, Mapping) else made.version)
        self._versions[fp] = version
        return version

    async def __aenter__(self) -> FoundryAgentsBackend:
        return self

    async def close(self) -> None:
        """Close what this backend made: the OpenAI client, the project client, a credential
        and the local record. Clients and credentials passed in stay open."""
        if self._closed:
            return
        self._closed = True
        for close in self._closers:
            await close()


class FoundryAgentsThread(ConversationThread):
    """A conversation of a Foundry project, run by Foundry agents (``agent_reference``)."""

    owner: FoundryAgentsBackend

    async def _agent_request(
        self, agent: Agent, options: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        name, version, definition = await self.owner.resolve_agent(agent, options)
        reference: dict[str, Any] = {"type": "agent_reference", "name": name}
        if version:
            reference["version"] = version
        definition = definition or {}
        tools = list(options.get("tools") or agent.tools) if definition else []
        fields: dict[str, Any] = {
            "agent_id": f"{name}:{version}" if version else name,
            "model": definition.get("model") or options.get("model"),
            "instructions": definition.get("instructions"),
            "tools": tools,
            "temperature": definition.get("temperature"),
            "top_p": definition.get("top_p"),
            "response_format": options.get("response_format", agent.response_format),
        }
        request: dict[str, Any] = {"extra_body": {"agent_reference": reference}}
        if options.get("model") and not definition:
            request["model"] = options["model"]
        return fields, request

    def _service_ids(self) -> dict[str, str]:
        ids = {"conversation_id": self.id}
        if self.owner.agent_id:
            ids["agent_name"] = self.owner.agent_id
        return ids


def _endpoint_of(project: Any) -> str | None:
    config = getattr(project, "_config", None)
    endpoint = getattr(config, "endpoint", None)
    return str(endpoint) if endpoint else None


def _bearer(project: Any) -> bool:
    """Whether the project client authenticates with a bearer-token policy (the one that
    takes the ``enforce_https`` option; an API-key policy would pass it to the transport)."""
    from azure.core.pipeline.policies import (
        AsyncBearerTokenCredentialPolicy,
        BearerTokenCredentialPolicy,
    )

    policy = getattr(getattr(project, "_config", None), "authentication_policy", None)
    return isinstance(policy, AsyncBearerTokenCredentialPolicy | BearerTokenCredentialPolicy)


def _is_async_credential(credential: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(getattr(credential, "get_token", None))


class _AsyncCredential:
    """A sync TokenCredential offered as an AsyncTokenCredential (get_token in a thread)."""

    def __init__(self, credential: Any) -> None:
        self._credential = credential

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        import asyncio

        return await asyncio.to_thread(self._credential.get_token, *scopes, **kwargs)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> _AsyncCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None
