"""Shared wire plumbing of ``threadkit serve``: errors, JSON bodies, list envelopes, pagination.

Every surface (Assistants v2, Foundry classic, Chat Completions, and Responses/Conversations
when they are added) uses these helpers, so errors and lists look the same everywhere:

* errors are ``{"error": {"message", "type", "param", "code"}}`` (``ErrorResponse`` in
  ``openai-openapi.json``; ``ServicePatterns.AgentV1Error`` in ``azure-ai-agents-v1.json``);
* lists are ``{"object": "list", "data", "first_id", "last_id", "has_more"}``, default order
  ``desc``, ``limit`` 1..100 (default 20), ``after`` / ``before`` cursors. The ``foundry``
  flavour sends ``last_id: null`` on the last page, because the Azure SDK pager
  (``azure.ai.agents`` ``extract_data``) continues while ``last_id`` is set and ignores
  ``has_more``;
* bodies are decoded by msgspec into request structs (unknown fields are ignored, as the
  services do); malformed JSON and wrong types are 400 with ``param`` naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from threadkit.errors import (
    ActiveRunError,
    InvalidRunStateError,
    ModelError,
    ModelRateLimitError,
    NotFoundError,
    ThreadkitError,
    UnsupportedOperation,
    ValidationError,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "ENCODER",
    "ApiError",
    "Flavour",
    "PageParams",
    "error_response",
    "json_response",
    "list_body",
    "page_params",
    "read_body",
    "to_api_error",
]

Flavour: TypeAlias = Literal["openai", "foundry"]
"""Which dialect a route speaks: ``openai`` (under ``/v1``) or ``foundry`` (Foundry classic,
under ``/api/projects/{project}``)."""

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
"""The default request body limit: 10 MiB (bytes)."""

ENCODER = msgspec.json.Encoder()
"""The one JSON encoder of the server (msgspec, reused)."""

_T = TypeVar("_T")
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
_AT = re.compile(r"at `\$\.?([^`]*)`")


class ApiError(Exception):
    """An error answered in the spec's error shape.

    Attributes:
        status: the HTTP status (400, 401, 404, 409, 413, 429, 500...).
        message: human-readable text.
        type: ``invalid_request_error``, ``authentication_error``, ``server_error``...
        param: the request field at fault, or None.
        code: a machine-readable code, or None.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """The error as the wire object ``{"error": {...}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def json_response(
    obj: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response encoded by msgspec (``application/json``)."""
    return Response(ENCODER.encode(obj), status, headers, "application/json")


def error_response(exc: ApiError, headers: Mapping[str, str] | None = None) -> Response:
    """The JSON error response of ``exc``."""
    return json_response(exc.body(), exc.status, headers)


def to_api_error(exc: Exception) -> ApiError:
    """Translate a threadkit error to the HTTP error the services answer with.

    * unknown ids (:class:`~threadkit.errors.NotFoundError`) → 404;
    * bad input, an active run on the thread, a run in the wrong status → 400 (never 409 for
      an active run: the OpenAI client retries 409);
    * a model rate limit → 429; unsupported operations → 400;
    * anything else → 500 ``server_error``.
    """
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NotFoundError):
        return ApiError(404, str(exc) or "Not found.", code="not_found")
    if isinstance(exc, ActiveRunError):
        return ApiError(400, str(exc), code="thread_locked")
    if isinstance(exc, InvalidRunStateError):
        return ApiError(400, str(exc), code="invalid_run_state")
    if isinstance(exc, (ValidationError, UnsupportedOperation)):
        return ApiError(400, str(exc))
    if isinstance(exc, ModelRateLimitError):
        return ApiError(429, str(exc), type="rate_limit_error", code="rate_limit_exceeded")
    if isinstance(exc, ModelError):
        return ApiError(500, f"The model failed: {exc}", type="server_error", code="model_error")
    if isinstance(exc, ThreadkitError):
        return ApiError(500, str(exc), type="server_error", code="server_error")
    return ApiError(
        500, "The server had an error while processing your request.", type="server_error"
    )


def _decoder(type_: Any) -> msgspec.json.Decoder[Any]:
    dec = _decoders.get(type_)
    if dec is None:
        dec = _decoders[type_] = msgspec.json.Decoder(type_)
    return dec


def _param_of(message: str) -> str | None:
    match = _AT.search(message)
    if not match or not match.group(1):
        field = re.search(r"missing required field `([^`]+)`", message)
        return field.group(1) if field else None
    return match.group(1).replace("`", "")


async def read_body(request: Request, type_: type[_T], max_bytes: int) -> _T:
    """Read and decode a JSON body into ``type_`` (an empty body decodes as ``{}``).

    Raises:
        ApiError: 413 when the body is over ``max_bytes`` bytes; 400 for malformed JSON or
            a field of the wrong type (``param`` names the field).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    raw = b"".join(chunks).strip() or b"{}"
    try:
        return _decoder(type_).decode(raw)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        text = str(exc)
        raise ApiError(400, f"Invalid request body: {text}", param=_param_of(text)) from exc
    except msgspec.DecodeError as exc:
        raise ApiError(
            400,
            f"We could not parse the JSON body of your request ({exc}). The body must be "
            "a valid JSON object.",
            code="invalid_json",
        ) from exc


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413,
        f"The request body is larger than the {max_bytes}-byte limit of this server.",
        code="request_too_large",
    )


class PageParams(msgspec.Struct, kw_only=True, frozen=True):
    """The pagination query of a list request (``limit`` 1..100, ``order``, cursors)."""

    limit: int = 20
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None
    before: str | None = None


def page_params(request: Request, default_order: Literal["asc", "desc"] = "desc") -> PageParams:
    """Parse ``limit``, ``order``, ``after`` and ``before`` from the query string.

    Raises:
        ApiError: 400 for a ``limit`` outside 1..100 or an ``order`` other than asc/desc.
    """
    q = request.query_params
    raw_limit = q.get("limit")
    limit = 20
    if raw_limit not in (None, ""):
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise ApiError(
                400, f"Invalid 'limit': {raw_limit!r}; expected 1 to 100.", param="limit"
            )
    order = q.get("order") or default_order
    if order not in ("asc", "desc"):
        raise ApiError(400, f"Invalid 'order': {order!r}; expected 'asc' or 'desc'.", param="order")
    return PageParams(
        limit=limit,
        order=order,  # type: ignore[arg-type]
        after=q.get("after") or None,
        before=q.get("before") or None,
    )


def list_body(data: list[dict[str, Any]], has_more: bool, flavour: Flavour) -> dict[str, Any]:
    """The list envelope around ``data`` (wire objects, each with an ``id``).

    ``foundry`` sends ``last_id: null`` when ``has_more`` is false (see the module docstring).
    """
    first_id = data[0]["id"] if data else None
    last_id = data[-1]["id"] if data else None
    if flavour == "foundry" and not has_more:
        last_id = None
    return {
        "object": "list",
        "data": data,
        "first_id": first_id,
        "last_id": last_id,
        "has_more": has_more,
    }
