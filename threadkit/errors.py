"""The threadkit error tree.

Every exception threadkit raises on purpose derives from :class:`ThreadkitError`, so one
``except ThreadkitError`` catches them all. Driver and SDK exceptions are translated at the
boundary where they occur (``raise ... from exc``), so the original stays on ``__cause__``::

    ThreadkitError
    ├── ConfigError                   bad or incomplete configuration (names the key)
    ├── MissingExtraError             an optional dependency is not installed (also an ImportError)
    ├── SnapshotError                 a snapshot is corrupt, truncated or foreign
    │   ├── IncompatibleVersionError  written by a newer threadkit (format version too high)
    │   └── BackendMismatchError      the configured backend/store cannot serve this snapshot
    ├── NotFoundError                 an object does not exist (also a LookupError)
    │   ├── ThreadNotFoundError
    │   ├── MessageNotFoundError
    │   ├── RunNotFoundError
    │   ├── RunStepNotFoundError
    │   └── ObjectNotFoundError       agents, responses and other stored objects
    ├── ValidationError               input that would corrupt a thread (also a ValueError)
    │   └── OrphanToolResultError     a tool result answers no tool call in the thread
    ├── RunError                      a run cannot do what was asked
    │   ├── ActiveRunError            the thread already has an active run
    │   ├── InvalidRunStateError      e.g. tool outputs for a run not in ``requires_action``
    │   └── RunTimeoutError           polling gave up before the run reached a terminal status
    ├── StoreError                    a message store failed (driver errors translated)
    ├── ModelError                    the chat model failed
    │   └── ModelRateLimitError       the model endpoint answered 429 after all retries
    ├── ServiceError                  a service-managed backend answered with an error
    │   ├── AuthenticationError       401/403 from a service
    │   └── RateLimitError            429 from a service after all retries
    └── UnsupportedOperation          the backend cannot do this; it never fakes it

The shapes follow httpx's ``_exceptions.py`` habit: one tree, drawn here.
"""

from __future__ import annotations

__all__ = [
    "ActiveRunError",
    "AuthenticationError",
    "BackendMismatchError",
    "ConfigError",
    "IncompatibleVersionError",
    "InvalidRunStateError",
    "MessageNotFoundError",
    "MissingExtraError",
    "ModelError",
    "ModelRateLimitError",
    "NotFoundError",
    "ObjectNotFoundError",
    "OrphanToolResultError",
    "RateLimitError",
    "RunError",
    "RunNotFoundError",
    "RunStepNotFoundError",
    "RunTimeoutError",
    "ServiceError",
    "SnapshotError",
    "StoreError",
    "ThreadNotFoundError",
    "ThreadkitError",
    "UnsupportedOperation",
    "ValidationError",
]


class ThreadkitError(Exception):
    """Root of every error threadkit raises on purpose."""


class ConfigError(ThreadkitError):
    """A configuration value is missing, unknown or malformed.

    Attributes:
        key: the configuration key at fault (``"store"``, ``"backend"``...), or ``None``
            when the error is about the configuration as a whole.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(f"config key {key!r}: {message}" if key else message)


class MissingExtraError(ThreadkitError, ImportError):
    """An optional dependency is not installed.

    The message names the exact command to run, e.g. ``pip install "threadkit[redis]"``.

    Attributes:
        extra: the name of the threadkit extra that provides the missing package.
        package: the import name that failed.
    """

    def __init__(self, extra: str, package: str, feature: str | None = None) -> None:
        self.extra = extra
        self.package = package
        what = feature or f"this feature needs {package!r}"
        super().__init__(
            f'{what}, which is not installed. Install it with: pip install "threadkit[{extra}]"',
            name=package,
        )


class SnapshotError(ThreadkitError):
    """A snapshot is corrupt, truncated, not a threadkit snapshot, or inconsistent with its store."""


class IncompatibleVersionError(SnapshotError):
    """The snapshot was written in a newer format version than this threadkit can read.

    Attributes:
        found: the snapshot's format version.
        supported: the highest version this threadkit reads.
    """

    def __init__(self, found: int, supported: int) -> None:
        self.found = found
        self.supported = supported
        super().__init__(
            f"snapshot format version {found} is newer than this threadkit supports "
            f"(up to {supported}); upgrade threadkit to resume it"
        )


class BackendMismatchError(SnapshotError):
    """The configured backend or store cannot serve this snapshot.

    Raised instead of silently starting an empty thread, which would lose its history.

    Attributes:
        expected: what the snapshot needs (e.g. ``"foundry"`` or a store locator).
        configured: what the configuration offers.
    """

    def __init__(self, message: str, *, expected: str, configured: str) -> None:
        self.expected = expected
        self.configured = configured
        super().__init__(message)


class NotFoundError(ThreadkitError, LookupError):
    """An object does not exist (or no longer exists)."""


class ThreadNotFoundError(NotFoundError):
    """No thread with this id exists in the store or service."""


class MessageNotFoundError(NotFoundError):
    """No message with this id exists in the thread."""


class RunNotFoundError(NotFoundError):
    """No run with this id exists on the thread."""


class RunStepNotFoundError(NotFoundError):
    """No run step with this id exists on the run."""


class ObjectNotFoundError(NotFoundError):
    """No stored object (agent, response, ...) of this kind and id exists."""


class ValidationError(ThreadkitError, ValueError):
    """Input was rejected before anything was written, because it would corrupt a thread."""


class OrphanToolResultError(ValidationError):
    """A tool result answers no tool call in the thread (or answers one twice).

    Written anyway, such a result makes every later model call fail with HTTP 400
    (openai-agents #4827), so the append is refused whole.

    Attributes:
        tool_call_id: the call id the result claimed to answer.
    """

    def __init__(self, message: str, *, tool_call_id: str) -> None:
        self.tool_call_id = tool_call_id
        super().__init__(message)


class RunError(ThreadkitError):
    """A run cannot do what was asked."""


class ActiveRunError(RunError):
    """The thread already has an active run (queued, in_progress, requires_action or cancelling).

    Only one run may be active on a thread at a time, as in the Assistants and Foundry services.

    Attributes:
        thread_id: the thread.
        run_id: the id of the run that is active, when known.
    """

    def __init__(self, thread_id: str, run_id: str | None) -> None:
        self.thread_id = thread_id
        self.run_id = run_id
        active = f" {run_id}" if run_id else ""
        super().__init__(
            f"Thread {thread_id} already has an active run{active}; wait for it to finish "
            "or cancel it before starting another."
        )


class InvalidRunStateError(RunError):
    """The run's status does not allow this operation (e.g. tool outputs when not requires_action).

    Attributes:
        run_id: the run.
        status: the run's status when the operation was refused.
    """

    def __init__(self, message: str, *, run_id: str, status: str) -> None:
        self.run_id = run_id
        self.status = status
        super().__init__(message)


class RunTimeoutError(RunError):
    """Polling gave up before the run reached a terminal status (the run itself goes on)."""


class StoreError(ThreadkitError):
    """A message store failed; the driver's exception is on ``__cause__``."""


class ModelError(ThreadkitError):
    """The chat model failed (after its own retries); the SDK exception is on ``__cause__``."""


class ModelRateLimitError(ModelError):
    """The chat model's endpoint kept answering 429 (rate limited) after all retries."""


class ServiceError(ThreadkitError):
    """A service-managed backend answered with an error.

    Attributes:
        status_code: the HTTP status, when there was one.
        code: the service's error code, when it gave one.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, code: str | None = None
    ) -> None:
        self.status_code = status_code
        self.code = code
        super().__init__(message)


class AuthenticationError(ServiceError):
    """The service refused the credentials (HTTP 401 or 403)."""


class RateLimitError(ServiceError):
    """The service kept answering 429 (rate limited) after all retries."""


class UnsupportedOperation(ThreadkitError):
    """The backend cannot perform this operation; threadkit never fakes it.

    Attributes:
        backend: the backend kind (``"responses"``, ``"foundry"``...).
        operation: the operation's name.
    """

    def __init__(self, backend: str, operation: str, reason: str = "") -> None:
        self.backend = backend
        self.operation = operation
        tail = f": {reason}" if reason else ""
        super().__init__(f"the {backend!r} backend does not support {operation}{tail}")
