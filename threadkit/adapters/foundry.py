"""The ``foundry`` backend: threads of the Azure AI Foundry Agent Service (classic).

Uses the official ``azure-ai-agents`` SDK's async :class:`azure.ai.agents.aio.AgentsClient`
(extra ``foundry``) against a Foundry project endpoint,
``https://<resource>.services.ai.azure.com/api/projects/<project>`` (api-version ``v1``), or
against ``threadkit serve``, which speaks the same protocol under ``/api/projects/<project>``.

What the service keeps: threads, their messages, runs and run steps, and the agents runs use.
What the snapshot keeps: the thread id, the ``endpoint``, the default ``agent_id`` and the model
setting, never a credential or token. Limits of the service model (the Assistants object
model, shared with the ``assistants`` backend): messages hold text and images only (tool calls
live in run steps), truncation strategies ``auto`` and ``last_messages`` only. The service
lists threads but cannot filter them by metadata, so :meth:`FoundryBackend.list_threads`
filters on the client side.

Build it from configuration (``backend = "foundry"``, ``endpoint``, ``credential``,
``allow_insecure_loopback``, ``agent_id``, ``model = "openai:<deployment>"``) or around a client
you already have: ``FoundryBackend(client=AgentsClient(endpoint, credential))``.

Credentials:

* ``credential = "default"``: azure-identity's :class:`~azure.identity.DefaultAzureCredential`
  (environment, workload/managed identity, Azure CLI...), imported when first needed. Its token
  requests run in a worker thread, so the event loop never blocks on them.
* Any ``TokenCredential`` (sync) or ``AsyncTokenCredential`` object:
  ``FoundryBackend(endpoint=..., credential=...)`` or ``FoundryBackend.from_config(cfg,
  credential=...)``. :class:`StaticTokenCredential` is a fixed bearer token, e.g. the key of a
  ``threadkit serve --api-key`` server.
* ``credential = "api_key"``: the key in the environment variable named by ``api_key_env``,
  sent as an ``api-key`` header. The hosted Agent Service authenticates with Microsoft Entra ID
  tokens; keys suit ``threadkit serve`` and gateways that check an ``api-key`` header.

Plain http: Azure SDKs refuse to send bearer tokens over ``http://``. With
``allow_insecure_loopback = true`` this backend lets them through for 127.0.0.1, ::1 and
localhost ONLY, checked per request (a redirect elsewhere is still refused); any other http
host is a :class:`~threadkit.errors.ConfigError`. The default is off.

``azure-ai-projects``: its 1.x ``AIProjectClient.agents`` is an ``AgentsClient`` and is
accepted as ``client=``. In 2.x (``AIProjectClient.agents`` manages the *new* Foundry agents,
which have no threads) it is refused with a ConfigError pointing at the ``foundry-agents``
backend or at ``AgentsClient``.

HTTP transport: the async Azure SDKs default to aiohttp. When aiohttp is not installed, clients
this module builds use azure-core's ``AsyncioRequestsTransport`` (requests, which azure-core
always installs, in worker threads).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import inspect
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal, TypeVar

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
    is_loopback,
    poll_after_seconds,
    raise_for_status_error,
)
from threadkit.config import Config
from threadkit.errors import (
    AuthenticationError,
    ConfigError,
    ServiceError,
    ThreadNotFoundError,
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

__all__ = [
    "FOUNDRY_SCOPE",
    "FoundryBackend",
    "FoundryThread",
    "StaticTokenCredential",
    "make_agents_client",
]

T = TypeVar("T")

_KIND = "foundry"
_EXTRA = "foundry"
_FEATURE = "the foundry backend"

FOUNDRY_SCOPE = "https://ai.azure.com/.default"
"""The Entra ID scope of Foundry project endpoints (the SDK's default ``credential_scopes``)."""

_OPS = ("threads", "messages", "runs", "run_steps")


# --------------------------------------------------------------------------- credentials


class StaticTokenCredential:
    """An ``AsyncTokenCredential`` that always presents one bearer token.

    For endpoints that accept a fixed token, such as ``threadkit serve --api-key KEY``. The token
    is kept in memory only; snapshots never record it.

    Args:
        token: the bearer token.
        expires_in: seconds the token is reported valid for (it is handed out again after).
    """

    def __init__(self, token: str, *, expires_in: int = 3600) -> None:
        if not token:
            raise ValidationError("StaticTokenCredential needs a non-empty token")
        self._token = token
        self._expires_in = expires_in

    def __repr__(self) -> str:
        return "StaticTokenCredential(<hidden>)"

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        """The token as an ``azure.core.credentials.AccessToken`` (any scope)."""
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + self._expires_in)

    async def close(self) -> None:
        """Nothing to release."""

    async def __aenter__(self) -> StaticTokenCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _ThreadedCredential:
    """A sync ``TokenCredential`` as an async one: each token request runs in a worker thread
    (token requests are rare: the bearer policy caches a token until shortly before expiry)."""

    def __init__(self, credential: Any) -> None:
        self.wrapped = credential

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self.wrapped.get_token, *scopes, **kwargs)

    async def close(self) -> None:
        closer = getattr(self.wrapped, "close", None)
        if closer is not None:
            await asyncio.to_thread(closer)

    async def __aenter__(self) -> _ThreadedCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _as_async_credential(credential: Any) -> Any:
    get_token = getattr(credential, "get_token", None)
    if get_token is None:
        raise ConfigError(
            f"{type(credential).__name__} is not a TokenCredential (it has no get_token)",
            key="credential",
        )
    return credential if inspect.iscoroutinefunction(get_token) else _ThreadedCredential(credential)


def _default_credential() -> Any:
    identity = require("azure.identity", _EXTRA, _FEATURE)
    return _ThreadedCredential(identity.DefaultAzureCredential())


# --------------------------------------------------------------------------- pipeline


def _transport_kwargs() -> dict[str, Any]:
    if importlib.util.find_spec("aiohttp") is not None:
        return {}  # the SDK's default async transport
    transport = require("azure.core.pipeline.transport", _EXTRA, _FEATURE)
    return {"transport": transport.AsyncioRequestsTransport()}


def _plain_http(url: str) -> bool:
    return url.lower().startswith("http://")


@functools.cache
def _loopback_bearer_policy_class() -> Any:
    """azure-core's async bearer-token policy, letting a token travel over plain http to
    loopback hosts only.

    azure-core's policy refuses every non-https URL (``_enforce_https``, switched by the
    request-context key ``enforce_https``). This subclass switches it off for one request at a
    time when that request's URL is ``http://`` to 127.0.0.1, ::1 or localhost, and forces it
    on for every other URL (a caller's ``enforce_https=False`` included), so a redirect to
    another host is still refused.
    """
    policies = require("azure.core.pipeline.policies", _EXTRA, _FEATURE)
    base: Any = policies.AsyncBearerTokenCredentialPolicy

    class LoopbackBearerTokenPolicy(base):  # type: ignore[misc]
        async def on_request(self, request: Any) -> None:
            url = request.http_request.url
            request.context.options.pop("enforce_https", None)
            request.context["enforce_https"] = not (_plain_http(url) and is_loopback(url))
            await super().on_request(request)

    return LoopbackBearerTokenPolicy


@functools.cache
def _api_key_policy_class() -> Any:
    """A policy sending ``api-key: <key>`` over https, or over plain http to loopback hosts
    when allowed (checked per request, like the bearer policy)."""
    policies = require("azure.core.pipeline.policies", _EXTRA, _FEATURE)
    exceptions = require("azure.core.exceptions", _EXTRA, _FEATURE)
    base: Any = policies.SansIOHTTPPolicy

    class ApiKeyPolicy(base):  # type: ignore[misc]
        def __init__(self, key: str, *, allow_insecure_loopback: bool) -> None:
            super().__init__()
            self._key = key
            self._allow = allow_insecure_loopback

        def on_request(self, request: Any) -> None:
            url = request.http_request.url
            if _plain_http(url) and not (self._allow and is_loopback(url)):
                raise exceptions.ServiceRequestError(
                    "API key authentication is not permitted for non-TLS protected "
                    "(non-https) URLs."
                )
            request.http_request.headers["api-key"] = self._key

    return ApiKeyPolicy


def make_agents_client(
    endpoint: str,
    credential: Any = None,
    *,
    allow_insecure_loopback: bool = False,
    api_key: str | None = None,
    **client_kwargs: Any,
) -> Any:
    """An ``azure.ai.agents.aio.AgentsClient`` for ``endpoint``, with threadkit's endpoint rules.

    Args:
        endpoint: the project endpoint, ``https://<res>.services.ai.azure.com/api/projects/<p>``
            (or ``http://127.0.0.1:<port>/api/projects/<p>`` with ``allow_insecure_loopback``).
        credential: an ``AsyncTokenCredential`` or a sync ``TokenCredential`` (run in a worker
            thread); None with no ``api_key``: azure-identity's ``DefaultAzureCredential``.
        allow_insecure_loopback: let the token (or key) travel over plain http to 127.0.0.1, ::1
            and localhost only, checked per request.
        api_key: send this key as an ``api-key`` header instead of a bearer token.
        **client_kwargs: more ``AgentsClient`` keyword options (``retry_total=``...).

    Returns:
        The async client (close it with ``await client.close()``); its credential is
        ``client._config.credential``.

    Raises:
        ConfigError: (key ``endpoint``) a plain-http endpoint without the flag or to a
            non-loopback host; (key ``credential``) an object that is not a credential.
        MissingExtraError: ``azure-ai-agents`` (or ``azure-identity``) is not installed.
    """
    aio = require("azure.ai.agents.aio", _EXTRA, _FEATURE)
    check_endpoint(endpoint, allow_insecure_loopback=allow_insecure_loopback)
    kwargs: dict[str, Any] = {**_transport_kwargs(), **client_kwargs}
    if api_key is not None:
        # AgentsClient requires a credential object; the api-key policy replaces its use.
        cred: Any = StaticTokenCredential("unused")
        kwargs["authentication_policy"] = _api_key_policy_class()(
            api_key, allow_insecure_loopback=allow_insecure_loopback
        )
    else:
        cred = _default_credential() if credential is None else _as_async_credential(credential)
        if allow_insecure_loopback and "authentication_policy" not in kwargs:
            scopes = kwargs.get("credential_scopes") or [FOUNDRY_SCOPE]
            kwargs["authentication_policy"] = _loopback_bearer_policy_class()(cred, *scopes)
    return aio.AgentsClient(endpoint, cred, **kwargs)


def _agents_operations(client: Any) -> Any:
    """The object holding ``threads``/``messages``/``runs``/``run_steps``: the client itself, or
    ``client.agents`` of an azure-ai-projects 1.x ``AIProjectClient``."""
    if all(hasattr(client, op) for op in _OPS):
        target = client
    else:
        sub = getattr(client, "agents", None)
        if sub is not None and all(hasattr(sub, op) for op in _OPS):
            target = sub
        elif sub is not None:
            raise ConfigError(
                f"{type(client).__module__}.{type(client).__name__}.agents has no threads: in "
                "azure-ai-projects 2.x it manages the new Foundry agents (conversations and "
                "responses). Use backend 'foundry-agents' for those, or pass "
                "client=azure.ai.agents.aio.AgentsClient(endpoint, credential) for classic "
                "Agent Service threads",
                key="backend",
            )
        else:
            raise ConfigError(
                f"{type(client).__name__} is not an azure.ai.agents.aio.AgentsClient",
                key="backend",
            )
    if not inspect.iscoroutinefunction(target.threads.get):
        raise ConfigError(
            "the foundry backend is async: pass azure.ai.agents.aio.AgentsClient, not the "
            "synchronous azure.ai.agents.AgentsClient",
            key="backend",
        )
    return target


def _client_endpoint(client: Any) -> str | None:
    config = getattr(client, "_config", None)
    endpoint = getattr(config, "endpoint", None)
    return str(endpoint) if endpoint else None


def _norm(endpoint: str | None) -> str:
    return (endpoint or "").rstrip("/")


def _poll_hint(headers: Mapping[str, str] | None) -> float | None:
    """The service's polling hint in seconds: ``openai-poll-after-ms``, ``retry-after-ms`` or
    ``retry-after`` (seconds), whichever comes first; None when it sent none."""
    hint = poll_after_seconds(headers)
    if hint is not None or not headers:
        return hint
    for name, scale in (("retry-after-ms", 1000.0), ("x-ms-retry-after-ms", 1000.0)):
        raw = headers.get(name)
        if raw is not None:
            try:
                return max(float(raw) / scale, 0.0)
            except ValueError:
                pass
    raw = headers.get("retry-after")
    if raw is not None:
        try:
            return max(float(raw), 0.0)
        except ValueError:  # an HTTP date: not a polling hint
            return None
    return None


def _dump(obj: Any) -> dict[str, Any]:
    return obj.as_dict() if hasattr(obj, "as_dict") else dict(obj)


def _error_body(exc: Any) -> Any:
    response = getattr(exc, "response", None)
    if response is None:
        return None
    try:
        return response.text()
    except Exception:  # a streamed or already-closed body: keep the SDK's message
        return None


# --------------------------------------------------------------------------- backend


class FoundryBackend:
    """Threads of the Foundry Agent Service (classic).

    Give ``client`` (an ``azure.ai.agents.aio.AgentsClient``, or an azure-ai-projects 1.x
    ``AIProjectClient``), or ``endpoint`` with ``credential`` to have one built.

    Args:
        client: the SDK client to use (left open by :meth:`close` unless ``owns_client``).
        endpoint: the project endpoint, when no ``client`` is given.
        credential: an ``AsyncTokenCredential`` or ``TokenCredential`` for a built client
            (None: ``DefaultAzureCredential``, or :attr:`default_credential_factory`); a
            caller's ``client`` keeps its own.
        allow_insecure_loopback: allow plain http to 127.0.0.1, ::1, localhost (for a built
            client; a caller's client keeps its own authentication policy, see
            :func:`make_agents_client`).
        agent_id: the agent runs use when the :class:`~threadkit.types.Agent` given has no
            ``id`` and no definition of its own.
        model: the model deployment for agents created from an Agent without one.
        poll: the polling policy (0.5 s, ×1.5, 5 s cap; a service hint wins).
        settings: non-secret settings recorded in snapshots, as configuration keys (default:
            ``endpoint``, ``allow_insecure_loopback`` (also true for a loopback http endpoint
            of a caller's client), ``model`` and ``agent_id``), so that
            :func:`threadkit.resume` without a configuration rebuilds the backend.
        owns_client: close ``client`` in :meth:`close` (default: True for a built client).

    Raises:
        ConfigError: neither ``client`` nor ``endpoint``; a refused endpoint (see
            :func:`make_agents_client`); a client without classic threads.
        MissingExtraError: the ``foundry`` extra is not installed.
    """

    kind = _KIND

    default_credential_factory: ClassVar[Callable[[], Any] | None] = None
    """What ``credential = "default"`` builds, process-wide: None means azure-identity's
    ``DefaultAzureCredential``. Set it (e.g. to a ``ManagedIdentityCredential`` factory, or a
    :class:`StaticTokenCredential` factory for a local ``threadkit serve``) to change the
    credential of every configuration-built backend, :func:`threadkit.resume` included."""

    def __init__(
        self,
        client: Any = None,
        *,
        endpoint: str | None = None,
        credential: Any = None,
        allow_insecure_loopback: bool = False,
        agent_id: str | None = None,
        model: str | None = None,
        poll: PollPolicy | None = None,
        settings: Mapping[str, Any] | None = None,
        owns_client: bool | None = None,
    ) -> None:
        self._credential: Any = None
        if client is None:
            if not endpoint:
                raise ConfigError(
                    "the foundry backend needs an endpoint (the project endpoint "
                    "https://<resource>.services.ai.azure.com/api/projects/<project>) or a client",
                    key="endpoint",
                )
            if credential is None and type(self).default_credential_factory is not None:
                factory = type(self).default_credential_factory
                assert factory is not None
                credential = factory()
            client = make_agents_client(
                endpoint,
                credential,
                allow_insecure_loopback=allow_insecure_loopback,
                retry_total=3,
            )
            self._credential = client._config.credential
            owns_client = True if owns_client is None else owns_client
        self.client = client
        self.ops = _agents_operations(client)
        self.endpoint = _norm(endpoint or _client_endpoint(self.ops) or _client_endpoint(client))
        self.agent_id = agent_id
        self.model = model
        self.poll = poll or PollPolicy()
        if settings is None:
            local = _plain_http(self.endpoint) and is_loopback(self.endpoint)
            settings = {
                "endpoint": self.endpoint,
                "allow_insecure_loopback": allow_insecure_loopback or local,
            }
            if model:
                settings["model"] = model if model == "offline" else f"openai:{model}"
            if agent_id:
                settings["agent_id"] = agent_id
        self._settings = dict(settings)
        self._owns_client = bool(owns_client)
        self._agents: dict[str, str] = {}
        self._agent_lock = asyncio.Lock()

    @classmethod
    async def from_config(cls, cfg: Config, *, credential: Any = None) -> FoundryBackend:
        """Build the backend from configuration.

        Args:
            cfg: the configuration (``endpoint``, ``credential``, ``allow_insecure_loopback``,
                ``agent_id``, ``model``, ``api_key_env``, ``poll_timeout``,
                ``retry_failed_runs``).
            credential: a credential object to use instead of the ``credential`` kind.

        Raises:
            ConfigError: no ``endpoint``; a plain-http endpoint without
                ``allow_insecure_loopback`` or to a non-loopback host; ``credential =
                "api_key"`` with ``api_key_env`` unset.
            MissingExtraError: the ``foundry`` extra is not installed.
        """
        require("azure.ai.agents.aio", _EXTRA, _FEATURE)
        if not cfg.endpoint:
            raise ConfigError(
                "the foundry backend needs endpoint = the project endpoint "
                "(https://<resource>.services.ai.azure.com/api/projects/<project>)",
                key="endpoint",
            )
        check_endpoint(cfg.endpoint, allow_insecure_loopback=cfg.allow_insecure_loopback)
        settings: dict[str, Any] = {
            "endpoint": _norm(cfg.endpoint),
            "allow_insecure_loopback": cfg.allow_insecure_loopback,
            "model": cfg.model,
        }
        if cfg.agent_id:
            settings["agent_id"] = cfg.agent_id
        common: dict[str, Any] = {
            "agent_id": cfg.agent_id,
            "model": cfg.model.removeprefix("openai:"),
            "poll": PollPolicy(timeout=cfg.poll_timeout, retry_failed=cfg.retry_failed_runs),
            "settings": settings,
        }
        if credential is None and cfg.credential == "api_key":
            key = os.environ.get(cfg.api_key_env)
            if not key:
                raise ConfigError(
                    f"credential = 'api_key' needs the key in the environment variable "
                    f"{cfg.api_key_env}, which is unset",
                    key="api_key_env",
                )
            settings["api_key_env"] = cfg.api_key_env
            settings["credential"] = "api_key"
            client = make_agents_client(
                cfg.endpoint,
                api_key=key,
                allow_insecure_loopback=cfg.allow_insecure_loopback,
                retry_total=3,
            )
            return cls(client, endpoint=cfg.endpoint, owns_client=True, **common)
        return cls(
            endpoint=cfg.endpoint,
            credential=credential,
            allow_insecure_loopback=cfg.allow_insecure_loopback,
            **common,
        )

    @property
    def credential(self) -> Any:
        """The async credential of a client this backend built (None for a caller's client)."""
        return self._credential

    @property
    def settings(self) -> dict[str, Any]:
        """Non-secret settings: ``endpoint``, ``allow_insecure_loopback``, ``agent_id``,
        ``model`` (and ``api_key_env``, the variable's NAME, for ``credential = "api_key"``)."""
        return {"backend": self.kind, **self._settings}

    async def call(
        self,
        make: Callable[[], Awaitable[T]],
        *,
        thread_id: str | None = None,
        run_id: str | None = None,
        resource: str | None = None,
    ) -> T:
        """Run one SDK call, translating azure-core's errors into the threadkit tree.

        Raises:
            AuthenticationError: 401/403, or the credential could not get a token.
            ThreadNotFoundError, MessageNotFoundError, RunNotFoundError, NotFoundError: 404.
            ActiveRunError, InvalidRunStateError, ValidationError, RateLimitError: as
                :func:`~threadkit.adapters._service.raise_for_status_error` maps them.
            ConfigError: the SDK refused to send a token over plain http.
            ServiceError: 5xx, connection failures and timeouts.
        """
        exceptions = require("azure.core.exceptions", _EXTRA, _FEATURE)
        try:
            return await make()
        except exceptions.HttpResponseError as exc:
            status = exc.status_code
            if status is None and isinstance(exc, exceptions.ClientAuthenticationError):
                raise AuthenticationError(f"{self.kind}: {exc.message}") from exc
            raise_for_status_error(
                status,
                _error_body(exc),
                exc,
                service=self.kind,
                thread_id=thread_id,
                run_id=run_id,
                resource=resource,
            )
        except exceptions.ServiceRequestError as exc:
            if "non-TLS" in str(exc):
                raise ConfigError(
                    f"{self.kind}: {exc.message} Use https, or allow_insecure_loopback for "
                    "127.0.0.1, ::1 and localhost",
                    key="allow_insecure_loopback",
                ) from exc
            raise ServiceError(f"{self.kind}: {exc.message}") from exc
        except exceptions.AzureError as exc:  # response errors, timeouts, decoding
            raise ServiceError(f"{self.kind}: {exc.message}") from exc

    async def page(
        self,
        pager: Any,
        after: str | None,
        *,
        thread_id: str | None = None,
        run_id: str | None = None,
        resource: str | None = None,
        hook: dict[str, Any] | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """The first page of an SDK ``AsyncItemPaged`` starting after ``after``, as dicts, and
        whether more follow (the body's ``has_more``, else whether the pager has a next cursor).
        """

        async def fetch() -> tuple[list[dict[str, Any]], bool]:
            pages = pager.by_page(continuation_token=after)
            try:
                first = await pages.__anext__()
            except StopAsyncIteration:
                return [], False
            items = [_dump(x) async for x in first]
            body = (hook or {}).get("body")
            if isinstance(body, Mapping) and "has_more" in body:
                return items, bool(body["has_more"])
            return items, pages.continuation_token is not None

        return await self.call(fetch, thread_id=thread_id, run_id=run_id, resource=resource)

    async def create_thread(self, *, metadata: Mapping[str, str] | None = None) -> FoundryThread:
        """Create a thread on the service. Raises ValidationError, ServiceError."""
        meta = check_metadata(metadata)
        threads = self.ops.threads
        created = await self.call(lambda: threads.create(metadata=meta or None))
        return FoundryThread(created.id, self)

    async def get_thread(self, thread_id: str) -> FoundryThread:
        """An existing thread. Raises ThreadNotFoundError."""
        threads = self.ops.threads
        await self.call(lambda: threads.get(thread_id), thread_id=thread_id, resource="thread")
        return FoundryThread(thread_id, self)

    async def list_threads(
        self, *, limit: int | None = None, metadata: Mapping[str, str] | None = None
    ) -> AsyncIterator[ThreadInfo]:
        """The project's threads, newest first (the service's ``GET /threads``).

        Args:
            limit: stop after this many (None: all).
            metadata: only threads whose metadata holds all these pairs (filtered here: the
                service has no metadata filter, so every page is read until ``limit`` match).

        Yields:
            :class:`ThreadInfo` entries (``message_count`` 0: the service does not report it).
        """
        wanted = dict(metadata or {})
        left = limit
        cursor: str | None = None
        threads = self.ops.threads
        while left is None or left > 0:
            hook: dict[str, Any] = {}
            pager = threads.list(limit=100, order="desc", raw_response_hook=_capture(hook))
            items, more = await self.page(pager, cursor, hook=hook)
            for t in items:
                meta = dict(t.get("metadata") or {})
                if any(meta.get(k) != v for k, v in wanted.items()):
                    continue
                created = int(t.get("created_at") or 0)
                yield ThreadInfo(
                    id=str(t["id"]), created_at=created, updated_at=created, metadata=meta
                )
                if left is not None:
                    left -= 1
                    if left <= 0:
                        return
            if not more or not items:
                return
            cursor = str(items[-1]["id"])

    async def resume_thread(self, snapshot: Snapshot) -> FoundryThread:
        """The thread a snapshot names, on this backend's project.

        Raises:
            BackendMismatchError: another backend kind or another endpoint made the snapshot.
            ThreadNotFoundError: the service no longer has the thread.
        """
        check_snapshot_origin(
            snapshot,
            kind=self.kind,
            setting="endpoint",
            configured=self.endpoint,
            noun="endpoint",
        )
        return await self.get_thread(snapshot.thread_id)

    async def service_agent_id(self, agent: Agent | None) -> str:
        """The service agent a run of ``agent`` uses.

        ``agent.id`` when set; else the configured ``agent_id`` when the agent defines nothing;
        else an agent created from the definition (``create_agent``), once per definition and
        backend, tagged with the metadata ``threadkit_fingerprint``.

        Raises:
            ConfigError: no agent id and no model deployment to create an agent with.
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
                "deployment to create one with",
                key="agent_id",
            )
        fp = agent_fingerprint(agent, model)
        async with self._agent_lock:
            if fp not in self._agents:
                body: dict[str, Any] = {
                    "model": model,
                    "name": agent.name,
                    "instructions": agent.instructions,
                    "description": agent.description,
                    "tools": tools_to_service(agent.tools) or None,
                    "temperature": agent.temperature,
                    "top_p": agent.top_p,
                    "response_format": agent.response_format,
                    "metadata": {**agent.metadata, "threadkit_fingerprint": fp},
                }
                ops = self.ops
                created = await self.call(
                    lambda: ops.create_agent(**{k: v for k, v in body.items() if v is not None})
                )
                self._agents[fp] = created.id
            return self._agents[fp]

    async def close(self) -> None:
        """Close the client (and the credential) when this backend created them."""
        if self._owns_client:
            await self.client.close()
            if self._credential is not None:
                await self._credential.close()

    async def __aenter__(self) -> FoundryBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _capture(into: dict[str, Any]) -> Callable[[Any], None]:
    """A ``raw_response_hook`` keeping the JSON body of a list response (for ``has_more``)."""

    def hook(response: Any) -> None:
        http = response.http_response
        if http.status_code == 200:
            try:
                into["body"] = http.json()
            except ValueError:
                into.pop("body", None)

    return hook


# --------------------------------------------------------------------------- thread


class FoundryThread(BaseAgentThread):
    """A thread of the Foundry Agent Service (see :class:`~threadkit.thread.BaseAgentThread`)."""

    backend = _KIND

    def __init__(self, thread_id: str, owner: FoundryBackend) -> None:
        super().__init__(thread_id, poll=owner.poll)
        self.owner = owner
        self._ops = owner.ops

    async def _call(self, make: Callable[[], Awaitable[T]], **kw: Any) -> T:
        kw.setdefault("thread_id", self.id)
        return await self.owner.call(make, **kw)

    @staticmethod
    def _page(items: list[T], more: bool) -> Page[T]:
        return Page(
            data=items,
            has_more=more,
            first_id=getattr(items[0], "id", None) if items else None,
            last_id=getattr(items[-1], "id", None) if items else None,
        )

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
        messages = self._ops.messages
        created = await self._call(lambda: messages.create(self.id, **body), resource="thread")
        return message_from_service(_dump(created))

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
        hook: dict[str, Any] = {}
        pager = self._ops.messages.list(
            self.id, limit=limit, order=order, before=before, raw_response_hook=_capture(hook)
        )
        items, more = await self.owner.page(
            pager,
            after,
            thread_id=self.id,
            resource="message" if (after or before) else "thread",
            hook=hook,
        )
        return self._page([message_from_service(x) for x in items], more)

    async def get_message(self, message_id: str) -> Message:
        messages = self._ops.messages
        got = await self._call(lambda: messages.get(self.id, message_id), resource="message")
        return message_from_service(_dump(got))

    # -- runs --------------------------------------------------------------------------
    async def create_run(self, agent: Agent | None = None, **options: Any) -> Run:
        agent = agent or Agent()
        agent_id = await self.owner.service_agent_id(agent)
        if "tools" not in options and agent.tools and agent.id:
            options["tools"] = agent.tools
        if agent.instructions and "instructions" not in options and agent.id:
            options["instructions"] = agent.instructions
        body = run_options_to_service(self.backend, options)
        runs = self._ops.runs
        created = await self._call(
            lambda: runs.create(self.id, agent_id=agent_id, **body), resource="thread"
        )
        return run_from_service(_dump(created))

    async def _retrieve(self, run_id: str) -> tuple[Run, float | None]:
        runs = self._ops.runs
        got, headers = await self._call(
            lambda: runs.get(
                self.id, run_id, cls=lambda resp, obj, _h: (obj, resp.http_response.headers)
            ),
            run_id=run_id,
            resource="run",
        )
        return run_from_service(_dump(got)), _poll_hint(headers)

    async def get_run(self, run_id: str) -> Run:
        return (await self._retrieve(run_id))[0]

    async def _poll_run(self, run_id: str) -> tuple[Run, float | None]:
        # honours the service's polling hint (openai-poll-after-ms, retry-after)
        return await self._retrieve(run_id)

    async def list_runs(
        self, *, order: Order = "desc", limit: int = 100, after: str | None = None
    ) -> Page[Run]:
        hook: dict[str, Any] = {}
        pager = self._ops.runs.list(
            self.id, limit=limit, order=order, raw_response_hook=_capture(hook)
        )
        items, more = await self.owner.page(
            pager, after, thread_id=self.id, resource="thread", hook=hook
        )
        return self._page([run_from_service(x) for x in items], more)

    async def list_run_steps(
        self, run_id: str, *, order: Order = "asc", limit: int = 100, after: str | None = None
    ) -> Page[RunStep]:
        hook: dict[str, Any] = {}
        pager = self._ops.run_steps.list(
            self.id, run_id, limit=limit, order=order, raw_response_hook=_capture(hook)
        )
        items, more = await self.owner.page(
            pager, after, thread_id=self.id, run_id=run_id, resource="run", hook=hook
        )
        return self._page([step_from_service(x) for x in items], more)

    async def submit_tool_outputs(self, run_id: str, outputs: Sequence[ToolOutput]) -> Run:
        runs = self._ops.runs
        body = [{"tool_call_id": o.tool_call_id, "output": o.output} for o in outputs]
        done = await self._call(
            lambda: runs.submit_tool_outputs(self.id, run_id, tool_outputs=body),
            run_id=run_id,
            resource="run",
        )
        return run_from_service(_dump(done))

    async def cancel_run(self, run_id: str) -> Run:
        runs = self._ops.runs
        done = await self._call(lambda: runs.cancel(self.id, run_id), run_id=run_id, resource="run")
        return run_from_service(_dump(done))

    # -- thread ------------------------------------------------------------------------
    async def delete(self) -> bool:
        threads = self._ops.threads
        try:
            await self._call(lambda: threads.delete(self.id), resource="thread")
        except ThreadNotFoundError:
            return False
        return True

    async def info(self) -> ThreadInfo:
        threads = self._ops.threads
        got = _dump(await self._call(lambda: threads.get(self.id), resource="thread"))
        created = int(got.get("created_at") or 0)
        return ThreadInfo(
            id=str(got["id"]),
            created_at=created,
            updated_at=created,
            metadata=dict(got.get("metadata") or {}),
        )

    async def serialize(self, format: Literal["json", "msgpack"] = "json") -> bytes:
        """A snapshot: backend ``foundry``, the thread id, ``endpoint``, ``agent_id``, never a
        credential. Resume it with :func:`threadkit.resume` (the credential comes from the
        configuration or environment of the resuming process)."""
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
