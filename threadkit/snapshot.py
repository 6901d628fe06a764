"""Thread snapshots: a versioned envelope to suspend a thread and resume it in any process.

A snapshot names the backend that made it, so resuming with the wrong one fails loudly with
:class:`~threadkit.errors.BackendMismatchError` instead of silently starting an empty thread (the
agent-framework failure). It records how many messages the thread held, so a store that lost
history is caught too. It never holds credentials: only non-secret settings (the *name* of an API
key's environment variable, never its value; URLs without passwords).

Format (JSON by default, MessagePack on request; both decode with :func:`decode_snapshot`)::

    {"format": "threadkit.thread", "version": 1, "backend": "chat", "thread_id": "thread_...",
     "settings": {...}, "store": "sqlite:////abs/threadkit.db", "service_ids": {...},
     "message_count": 12, "last_seq": 12, "created_at": 1763800000, "inline": null}

``inline`` carries the thread itself (metadata and messages) when its store is process-local
(``memory://``). Versions follow STYLE.md rule 9: a new field gets a default; a reader refuses a
newer ``version`` with :class:`~threadkit.errors.IncompatibleVersionError`; a sample written by
each release is kept under ``tests/compat/`` and decoded in CI.
"""

from __future__ import annotations

import gc
import re
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec

from threadkit.errors import IncompatibleVersionError, SnapshotError
from threadkit.types import Message

__all__ = [
    "FORMAT",
    "VERSION",
    "InlineThread",
    "Snapshot",
    "decode_snapshot",
    "encode_snapshot",
    "redact_url",
]

FORMAT = "threadkit.thread"
"""The ``format`` field of every thread snapshot."""

VERSION = 1
"""The snapshot format version this threadkit writes, and the newest it reads."""


class InlineThread(msgspec.Struct, kw_only=True):
    """A whole thread carried inside a snapshot (memory stores only)."""

    created_at: int
    metadata: dict[str, str] = {}
    messages: list[Message] = []


class Snapshot(msgspec.Struct, kw_only=True):
    """The snapshot envelope (see the module docstring)."""

    format: str
    version: int
    backend: str
    thread_id: str
    created_at: int
    settings: dict[str, Any] = {}
    store: str | None = None
    service_ids: dict[str, str] = {}
    message_count: int = 0
    last_seq: int = 0
    inline: InlineThread | None = None


class _Header(msgspec.Struct):
    format: str
    version: int


_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()
_json_header = msgspec.json.Decoder(_Header)
_msgpack_header = msgspec.msgpack.Decoder(_Header)
_json_decoder = msgspec.json.Decoder(Snapshot)
_msgpack_decoder = msgspec.msgpack.Decoder(Snapshot)

_GC_PAUSE_BYTES = 1 << 16
_CREDENTIAL_KINDS = frozenset({"default", "api_key"})

_SECRET_KEY = re.compile(r"(secret|password|passwd|token|credential|api_key$|apikey|^key$)", re.I)


def redact_url(url: str) -> str:
    """``url`` without a password in its user-info part (``redis://:pw@h/0`` → ``redis://h/0``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    if parts.username:
        host = f"{parts.username}@{host}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _check_no_secrets(settings: dict[str, Any]) -> None:
    for key, value in settings.items():
        if key == "credential" and value in _CREDENTIAL_KINDS:
            continue  # the KIND of credential ("default", "api_key") is no secret
        if _SECRET_KEY.search(key) and value is not None:
            raise SnapshotError(
                f"refusing to write setting {key!r} into a snapshot: snapshots never hold "
                "credentials (keep the secret in an environment variable and record its name)"
            )
        if isinstance(value, str) and "://" in value and redact_url(value) != value:
            raise SnapshotError(f"setting {key!r} holds a URL with a password")


def encode_snapshot(snapshot: Snapshot, format: Literal["json", "msgpack"] = "json") -> bytes:
    """Encode a snapshot as JSON (default) or MessagePack bytes.

    Raises:
        SnapshotError: the settings hold something that looks like a credential.
        ValueError: an unknown ``format``.
    """
    _check_no_secrets(snapshot.settings)
    if snapshot.store is not None and redact_url(snapshot.store) != snapshot.store:
        raise SnapshotError("the store locator holds a password; snapshots never hold credentials")
    if format == "json":
        return _json_encoder.encode(snapshot)
    if format == "msgpack":
        return _msgpack_encoder.encode(snapshot)
    raise ValueError(f"unknown snapshot format {format!r}; use 'json' or 'msgpack'")


def decode_snapshot(blob: bytes | bytearray | memoryview | str) -> Snapshot:
    """Decode and check a snapshot written by :func:`encode_snapshot` (JSON or MessagePack).

    Returns:
        The snapshot.

    Raises:
        SnapshotError: empty, corrupt or truncated input, or not a threadkit thread snapshot.
        IncompatibleVersionError: written in a newer format version than :data:`VERSION`.
    """
    if isinstance(blob, str):
        blob = blob.encode()
    data = bytes(blob)
    if not data.strip():
        raise SnapshotError("the snapshot is empty")
    is_json = data.lstrip()[:1] == b"{"
    # Decode once; only when that fails (or the header is foreign) is the header read alone,
    # so a newer version or another format gets its own error instead of a parse error.
    # A large inline thread decodes into many containers; the decoded structs are acyclic, so
    # the cyclic collector is paused meanwhile instead of running repeated full collections.
    paused = len(data) > _GC_PAUSE_BYTES and gc.isenabled()
    if paused:
        gc.disable()
    try:
        snapshot = _json_decoder.decode(data) if is_json else _msgpack_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        _check_header(data, is_json)
        raise SnapshotError(f"the snapshot is corrupt or truncated: {exc}") from exc
    finally:
        if paused:
            gc.enable()
    _check_header(snapshot, is_json)
    return snapshot


def _check_header(source: bytes | Snapshot, is_json: bool) -> None:
    if isinstance(source, Snapshot):
        header = _Header(source.format, source.version)
    else:
        try:
            header = _json_header.decode(source) if is_json else _msgpack_header.decode(source)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return  # not even a header: the caller reports corruption
    if header.format != FORMAT:
        raise SnapshotError(
            f"not a threadkit thread snapshot (format {header.format!r}, expected {FORMAT!r})"
        )
    if header.version > VERSION:
        raise IncompatibleVersionError(header.version, VERSION)
    if header.version < 1:
        raise SnapshotError(f"invalid snapshot version {header.version}")
