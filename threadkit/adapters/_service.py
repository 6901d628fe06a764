"""What every service-managed adapter shares: endpoint rules, status mapping, error translation.

Provider SDKs are imported lazily, inside the functions that need them, so importing this module
never requires an SDK.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import urlsplit

from threadkit.errors import (
    ActiveRunError,
    AuthenticationError,
    BackendMismatchError,
    ConfigError,
    InvalidRunStateError,
    MessageNotFoundError,
    NotFoundError,
    RateLimitError,
    RunNotFoundError,
    ServiceError,
    ThreadNotFoundError,
    ValidationError,
)
from threadkit.types import RunStatus, RunStepStatus

__all__ = [
    "LOOPBACK_HOSTS",
    "check_endpoint",
    "check_snapshot_origin",
    "is_loopback",
    "map_run_status",
    "map_step_status",
    "poll_after_seconds",
    "raise_for_status_error",
]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
"""The only hosts ``allow_insecure_loopback`` lets plain ``http://`` (and bearer tokens) reach."""


def is_loopback(url: str) -> bool:
    """Whether ``url`` names 127.0.0.1, ::1 or localhost."""
    return (urlsplit(url).hostname or "").lower() in LOOPBACK_HOSTS


def check_endpoint(url: str, *, allow_insecure_loopback: bool, key: str = "endpoint") -> str:
    """Refuse an endpoint that would send credentials unencrypted.

    ``https://`` is always accepted. ``http://`` is accepted only with
    ``allow_insecure_loopback=True`` AND a loopback host (127.0.0.1, ::1, localhost), which is
    what a local ``threadkit serve`` needs; Azure SDKs refuse bearer tokens over http otherwise.

    Returns:
        ``url`` unchanged.

    Raises:
        ConfigError: (key ``key``) any other scheme, or plain http to a non-loopback host, or to
            a loopback host without ``allow_insecure_loopback``.
    """
    parts = urlsplit(url)
    if parts.scheme == "https":
        return url
    if parts.scheme != "http":
        raise ConfigError(f"{url!r} is not an http(s) URL", key=key)
    host = (parts.hostname or "").lower()
    if host not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"plain http to {host or url!r} would send credentials unencrypted; use https "
            "(allow_insecure_loopback permits http only to 127.0.0.1, ::1 and localhost)",
            key=key,
        )
    if not allow_insecure_loopback:
        raise ConfigError(
            f"{url!r} is plain http; set allow_insecure_loopback = true to reach a local "
            "service such as threadkit serve",
            key=key,
        )
    return url


def check_snapshot_origin(
    snapshot: Any,
    *,
    kind: str,
    setting: str,
    configured: str,
    noun: str = "service",
) -> None:
    """Refuse a snapshot made by another backend kind or for another service address.

    Args:
        snapshot: the decoded :class:`~threadkit.snapshot.Snapshot`.
        kind: this backend's kind (``"assistants"``...).
        setting: the snapshot setting naming the service (``"base_url"``, ``"endpoint"``).
        configured: this backend's value of it; compared without trailing slashes.
        noun: what the address is, for the message (``service``, ``endpoint``, ``project``).

    Raises:
        BackendMismatchError: the snapshot's backend kind differs, or both addresses are known
            and differ (resuming there would find no such thread, or another one).
    """
    if snapshot.backend != kind:
        raise BackendMismatchError(
            f"this snapshot was made by the {snapshot.backend!r} backend, not {kind!r}",
            expected=snapshot.backend,
            configured=kind,
        )
    theirs = str(snapshot.settings.get(setting) or "").rstrip("/")
    ours = configured.rstrip("/")
    if theirs and ours and theirs != ours:
        raise BackendMismatchError(
            f"thread {snapshot.thread_id} lives at {theirs}; the configured {noun} is {ours}",
            expected=theirs,
            configured=ours,
        )


_RUN_STATUSES = {s.value: s for s in RunStatus}
_STEP_STATUSES = {s.value: s for s in RunStepStatus}


def map_run_status(value: str) -> RunStatus:
    """A service's run status as a :class:`RunStatus` (the Assistants/Foundry names are ours).

    Raises:
        ServiceError: a status threadkit does not know.
    """
    try:
        return _RUN_STATUSES[str(value)]
    except KeyError:
        raise ServiceError(f"the service reported an unknown run status {value!r}") from None


def map_step_status(value: str) -> RunStepStatus:
    """A service's run-step status as a :class:`RunStepStatus`.

    Raises:
        ServiceError: a status threadkit does not know.
    """
    try:
        return _STEP_STATUSES[str(value)]
    except KeyError:
        raise ServiceError(f"the service reported an unknown run step status {value!r}") from None


def poll_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The service's polling hint (``openai-poll-after-ms``) in seconds, or None."""
    if not headers:
        return None
    raw = headers.get("openai-poll-after-ms")
    try:
        return max(int(raw) / 1000.0, 0.0) if raw is not None else None
    except ValueError:
        return None


def _error_text(body: Any, fallback: str) -> tuple[str, str | None]:
    if isinstance(body, Mapping):
        err = body.get("error", body)
        if isinstance(err, Mapping):
            return str(err.get("message") or fallback), (
                str(err["code"]) if err.get("code") is not None else None
            )
    if isinstance(body, str | bytes):
        try:
            return _error_text(json.loads(body), fallback)
        except (ValueError, TypeError):
            pass
    return fallback, None


def raise_for_status_error(
    status: int | None,
    body: Any,
    exc: BaseException,
    *,
    service: str,
    thread_id: str | None = None,
    run_id: str | None = None,
    resource: str | None = None,
) -> NoReturn:
    """Translate a service's HTTP error into the threadkit error tree (``raise ... from exc``).

    Args:
        status: the HTTP status (None for transport failures).
        body: the parsed error body or its text, when there was one.
        exc: the SDK exception, kept as ``__cause__``.
        service: the backend name, for messages.
        thread_id, run_id: what was being touched, to pick the NotFound subclass and
            the ActiveRunError details.
        resource: ``"thread"``, ``"message"``, ``"run"`` to choose the NotFound subclass.

    Raises:
        AuthenticationError: 401/403.
        ThreadNotFoundError / MessageNotFoundError / RunNotFoundError / NotFoundError: 404.
        ActiveRunError: 400 or 409 saying the thread has an active run.
        InvalidRunStateError: 400 about a run's status.
        RateLimitError: 429 (after the SDK's retries).
        ValidationError: other 400/409/413/422.
        ServiceError: anything else (5xx, transport).
    """
    message, code = _error_text(body, str(exc) or type(exc).__name__)
    text = f"{service}: {message}"
    low = message.lower()
    if status in (401, 403):
        raise AuthenticationError(text, status_code=status, code=code) from exc
    if status == 404:
        kind = resource or ""
        if kind == "thread" or (not kind and "thread" in low and "run" not in low):
            raise ThreadNotFoundError(text) from exc
        if kind == "message":
            raise MessageNotFoundError(text) from exc
        if kind == "run":
            raise RunNotFoundError(text) from exc
        raise NotFoundError(text) from exc
    if status == 429:
        raise RateLimitError(text, status_code=status, code=code) from exc
    if status in (400, 409) and "active run" in low:
        raise ActiveRunError(thread_id or "?", None) from exc
    if status == 400 and run_id and ("status" in low or "expired" in low or "cannot" in low):
        raise InvalidRunStateError(text, run_id=run_id, status="unknown") from exc
    if status in (400, 409, 413, 422):
        raise ValidationError(text) from exc
    raise ServiceError(text, status_code=status, code=code) from exc
