"""The ASGI application of ``threadkit serve`` (Starlette).

Layout (every surface shares the store, the model and the run engine of one
:class:`~threadkit.server.state.ServerState`):

================================ ==========================================================
prefix                           surface
================================ ==========================================================
``/v1``                          Assistants v2 (:mod:`threadkit.server.assistants`, flavour
                                 ``openai``), Chat Completions (:mod:`threadkit.server.chat`),
                                 Responses and Conversations (:mod:`threadkit.server.responses`,
                                 :mod:`threadkit.server.conversations`)
``/api/projects/{project}/       Responses and Conversations again (the ``azure-ai-projects``
openai/v1``                      ``get_openai_client()`` base URL)
``/api/projects/{project}/       Foundry agent versions (``agent_reference`` targets)
agents``
``/api/projects/{project}``      Foundry Agent Service classic (flavour ``foundry``)
================================ ==========================================================

Surfaces plug in through :func:`mounts`: a Mount with a longer prefix must come before
``/api/projects/{project}``, which matches every path under it.

Middleware, outermost first: Starlette's server-error handler (500 in the error shape), the
:class:`Guard` (API keys → 401, a declared body over the limit → 413), then the exception
handlers that turn :class:`~threadkit.server.common.ApiError`, threadkit errors and routing
errors (404/405) into ``{"error": {...}}``.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from threadkit.config import Config, load_config, make_model
from threadkit.engine import RunEngine
from threadkit.errors import ThreadkitError
from threadkit.registry import open_store
from threadkit.server import assistants, chat, conversations, responses
from threadkit.server.common import (
    DEFAULT_MAX_BODY_BYTES,
    ApiError,
    error_response,
    to_api_error,
)
from threadkit.server.state import ServerState
from threadkit.stores.base import MessageStore

__all__ = ["DEFAULT_POLL_AFTER_MS", "Guard", "create_app", "mounts"]

_log = logging.getLogger("threadkit.server")

DEFAULT_POLL_AFTER_MS = 50
"""The ``openai-poll-after-ms`` value sent by default (milliseconds)."""


class Guard:
    """Pure ASGI middleware: API-key check and the declared-body-size limit.

    Args:
        app: the wrapped application.
        api_keys: accepted keys; empty accepts every request. A request passes with
            ``Authorization: Bearer <key>`` or ``api-key: <key>``; else 401 in the error shape.
        max_body_bytes: a ``content-length`` over this many bytes is answered 413 at once
            (bodies without a length are counted as they are read, see ``read_body``).
    """

    def __init__(self, app: ASGIApp, api_keys: Sequence[str], max_body_bytes: int) -> None:
        self.app = app
        self.keys = [k.encode() for k in api_keys if k]
        self.max_body_bytes = max_body_bytes

    def _authorized(self, scope: Scope) -> bool:
        offered: list[bytes] = []
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    offered.append(token.strip())
            elif name == b"api-key":
                offered.append(value.strip())
        ok = False
        for token in offered:
            for key in self.keys:
                ok |= hmac.compare_digest(token, key)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.keys and not self._authorized(scope):
            err = ApiError(
                401,
                "Incorrect API key provided. Send it as 'Authorization: Bearer <key>' or "
                "'api-key: <key>'.",
                code="invalid_api_key",
            )
            await error_response(err, {"www-authenticate": "Bearer"})(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_body_bytes:
                    err = ApiError(
                        413,
                        f"The request body is larger than the {self.max_body_bytes}-byte "
                        "limit of this server.",
                        code="request_too_large",
                    )
                    await error_response(err)(scope, receive, send)
                    return
                break
        await self.app(scope, receive, send)


def mounts() -> list[BaseRoute]:
    """Every surface, each under its prefix (longer Foundry prefixes first)."""
    openai_v1 = [*responses.routes(), *conversations.routes()]
    return [
        Mount("/v1", routes=[*chat.routes(), *assistants.routes("openai"), *openai_v1]),
        Mount("/api/projects/{project}/openai/v1", routes=openai_v1),
        *responses.agent_routes(),
        Mount("/api/projects/{project}", routes=assistants.routes("foundry")),
    ]


async def _on_api_error(request: Request, exc: Exception) -> Response:
    return error_response(to_api_error(exc))


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        err = ApiError(
            404,
            f"Unknown request URL: {request.method} {request.url.path}.",
            code="unknown_url",
        )
    elif exc.status_code == 405:
        err = ApiError(405, f"Method {request.method} is not allowed on {request.url.path}.")
    else:
        err = ApiError(exc.status_code, str(exc.detail))
    return error_response(err, exc.headers)


async def _on_error(request: Request, exc: Exception) -> Response:
    _log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(to_api_error(exc))


def create_app(
    config: Config | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    store: MessageStore | None = None,
    model: Any = None,
    api_keys: Sequence[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    poll_after_ms: int = DEFAULT_POLL_AFTER_MS,
    requires_action_timeout: float | None = None,
) -> Starlette:
    """Build the ``threadkit serve`` ASGI app.

    The store and model come from ``config`` (see :mod:`threadkit.config`: ``store`` URL,
    ``model`` ``offline`` or ``openai:<model>``, timeouts) unless given directly. A store
    opened here is set up when the app starts and closed when it stops; a store passed in is
    set up but left open. Runs still being processed at shutdown are left as stored (they
    expire after ``run_timeout``).

    Args:
        config: a :class:`~threadkit.config.Config`, a dict of keys, a TOML path, or None for
            the ``THREADKIT_*`` environment.
        store: a :class:`~threadkit.stores.base.MessageStore` to use instead of ``config.store``.
        model: a :class:`~threadkit.models.ChatModel` to use instead of ``config.model``.
        api_keys: keys a request must present (``Authorization: Bearer`` or ``api-key``);
            empty: no authentication.
        max_body_bytes: the request body limit in bytes (413 above it; default 10 MiB).
        poll_after_ms: the ``openai-poll-after-ms`` header value, in milliseconds.
        requires_action_timeout: seconds a run waits for tool outputs (overrides the config).

    Returns:
        A Starlette application; serve it with uvicorn (see :func:`threadkit.server.serve`).

    Raises:
        ConfigError: the configuration is invalid (raised here, before serving).
        ValueError: ``max_body_bytes`` < 1 or ``poll_after_ms`` < 0.
    """
    cfg = load_config(config)
    if requires_action_timeout is not None:
        cfg = load_config({**cfg.to_dict(), "requires_action_timeout": requires_action_timeout})
    if max_body_bytes < 1 or poll_after_ms < 0:
        raise ValueError("max_body_bytes must be >= 1 and poll_after_ms >= 0")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        the_store: MessageStore = store if store is not None else open_store(cfg.store)
        await the_store.setup()
        the_model = model if model is not None else make_model(cfg)
        engine = RunEngine(
            the_store,
            the_model,
            requires_action_timeout=cfg.requires_action_timeout,
            run_timeout=cfg.run_timeout,
            max_model_calls=cfg.max_model_calls,
        )
        app.state.threadkit = ServerState(
            store=the_store,
            engine=engine,
            model=the_model,
            max_body_bytes=max_body_bytes,
            poll_after_ms=poll_after_ms,
        )
        try:
            yield
        finally:
            await engine.aclose()
            if model is None and hasattr(the_model, "aclose"):
                with contextlib.suppress(Exception):
                    await the_model.aclose()
            if store is None:
                await the_store.close()

    return Starlette(
        routes=mounts(),
        middleware=[Middleware(Guard, api_keys=list(api_keys), max_body_bytes=max_body_bytes)],
        exception_handlers={
            ApiError: _on_api_error,
            ThreadkitError: _on_api_error,
            HTTPException: _on_http_exception,
            Exception: _on_error,
        },
        lifespan=lifespan,
    )
