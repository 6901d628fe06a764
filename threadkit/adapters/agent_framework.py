"""Microsoft Agent Framework interop: history in threadkit stores, message conversion, sessions.

Three things live here:

* :class:`ThreadkitHistoryProvider`, an ``agent_framework.HistoryProvider`` that keeps an
  agent-framework ``Agent``'s conversation history in any threadkit
  :class:`~threadkit.stores.base.MessageStore` (memory, SQLite, Redis, Postgres...), one threadkit
  thread per agent-framework session id;
* :func:`to_threadkit_message` / :func:`to_af_message` (and the per-part
  :func:`to_threadkit_part` / :func:`to_af_content`): lossless conversion between
  agent-framework ``Message`` and threadkit :class:`~threadkit.types.Message`;
* :func:`import_session` / :func:`export_session`: move a serialized ``AgentSession`` (the dict
  of ``AgentSession.to_dict()``) into a threadkit thread on any backend, and back.

agent-framework is an optional dependency (extra ``agent-framework``): importing this module
imports it and raises :class:`~threadkit.errors.MissingExtraError` naming
``pip install "threadkit[agent-framework]"`` when it is missing. The threadkit core never imports
this module.

**Session id → thread id.** A session's thread id is deterministic:
``"thread_" + sha256(f"{namespace}\\x00{session_id}").hexdigest()[:32]`` (see
:func:`session_thread_id`), where ``namespace`` defaults to the provider's ``source_id``
(``"threadkit"``). Any process that knows the session id and the store finds the thread without
a lookup table. The thread is created on the first save, with metadata
``{"agent_framework.session_id": <session id>}`` (left out when the id is over 512 characters),
so ``store.list_threads(metadata=...)`` finds it too.

**Content mapping** (agent-framework ``Content.type`` ↔ threadkit part):

=====================================  ==========================================================
agent-framework                        threadkit
=====================================  ==========================================================
``text``                               :class:`~threadkit.types.TextContent` (annotations kept)
``text_reasoning``                     :class:`~threadkit.types.ReasoningContent`: ``id``;
                                       ``protected_data`` = ``encrypted_content``; ``text`` =
                                       the ``summary`` items joined by newlines
``data`` / ``uri`` with an ``image/*``  :class:`~threadkit.types.ImageUrlContent` (``data:`` or
media type                             ``https:`` URL; ``detail`` ↔ ``additional_properties
                                       ["openai"]["image_detail"]``, as agent-framework's OpenAI
                                       clients read it)
``data`` / ``uri``, other media        :class:`~threadkit.types.FileContent` with ``url``
``hosted_file`` with an ``image/*``     :class:`~threadkit.types.ImageFileContent` (threadkit
media type                             images by file id become media type ``image/*``)
``hosted_file``, other                 :class:`~threadkit.types.FileContent` with ``file_id``
``function_call``                      :class:`~threadkit.types.ToolCallContent`: ``call_id`` →
                                       ``id``; mapping arguments become JSON text
``function_result``                    :class:`~threadkit.types.ToolResultContent`: ``call_id``
                                       → ``tool_call_id``; ``result`` → ``output``;
                                       ``is_error`` ↔ ``exception`` set
every other type (``error``,           no threadkit part: kept whole in the threadkit message's
``usage``, hosted tool calls, MCP,     ``provider_details["agent_framework"]``
approvals, ...)
=====================================  ==========================================================

Roles map one to one (``user``, ``assistant``, ``system``, ``tool``); a custom agent-framework
role is stored as ``user`` with the real role kept in ``provider_details``.

**Nothing is lost either way.** Whatever an agent-framework message holds that the threadkit
parts cannot (``message_id``, ``author_name``, ``additional_properties``, call occurrence ids,
media types, whole content types threadkit has no part for) goes into
``provider_details["agent_framework"]``, as the difference from what the plain mapping would
rebuild, so ``to_af_message(to_threadkit_message(m)).to_dict() == m.to_dict()``. The other way,
threadkit-only fields (``metadata``, ``run_id``, ``agent_id``, ``attachments``, other
``provider_details``, and parts the plain mapping cannot rebuild exactly) ride in the
agent-framework ``additional_properties["threadkit"]``. Store-assigned fields (``id``, ``seq``,
``created_at``, ``thread_id``) are not carried to agent-framework. Values that are not JSON
data (SDK objects in ``additional_properties``, ``raw_representation``) are stored as their
``to_dict()`` or ``str()``; ``raw_representation`` is dropped, as agent-framework's own
``to_dict()`` drops it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import mimetypes
import os
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, assert_never, cast

import msgspec

from threadkit._api import open_backend
from threadkit._extras import require
from threadkit._ids import new_id, now
from threadkit._local import LocalBackend
from threadkit.config import Config, make_model
from threadkit.errors import StoreError, ThreadNotFoundError, ValidationError
from threadkit.registry import open_store
from threadkit.stores.base import MessageStore, check_metadata, supports_import
from threadkit.thread import AgentThread, ThreadBackend
from threadkit.truncation import keep_tool_pairs
from threadkit.types import (
    Attachment,
    ContentPart,
    FileContent,
    ImageFileContent,
    ImageUrlContent,
    Message,
    ReasoningContent,
    Role,
    TextContent,
    ToolCallContent,
    ToolResultContent,
)

if TYPE_CHECKING:
    import agent_framework as _af
else:
    _af = require("agent_framework", "agent-framework", "threadkit.adapters.agent_framework")

__all__ = [
    "DEFAULT_NAMESPACE",
    "SERVICE_SESSION_ID_KEY",
    "SESSION_ID_KEY",
    "ThreadkitHistoryProvider",
    "export_session",
    "import_session",
    "session_thread_id",
    "to_af_content",
    "to_af_message",
    "to_threadkit_message",
    "to_threadkit_part",
]

DEFAULT_NAMESPACE = "threadkit"
"""The default namespace of :func:`session_thread_id` (= the provider's default ``source_id``)."""

SESSION_ID_KEY = "agent_framework.session_id"
"""Thread metadata key holding the agent-framework session id."""

SERVICE_SESSION_ID_KEY = "agent_framework.service_session_id"
"""Thread metadata key holding a string ``service_session_id`` of an imported session."""

_AF_KEY = "agent_framework"  # threadkit provider_details key
_TK_KEY = "threadkit"  # agent-framework additional_properties key
_ROLES: frozenset[str] = frozenset({"user", "assistant", "system", "tool"})
_ERROR_MARKER = "FunctionInvocationError"  # what agent-framework serializes `exception` as
_MAX_METADATA_VALUE = 512
_PAGE = 500


# --------------------------------------------------------------------------- JSON helpers


def _fallback(obj: Any) -> Any:
    """msgspec ``enc_hook``: objects with ``to_dict()`` become their dict, the rest ``str()``."""
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return str(obj)


def _jsonable(value: Any) -> Any:
    """``value`` as JSON builtins (dict/list/str/int/float/bool/None), storable by every store."""
    return msgspec.to_builtins(value, enc_hook=_fallback, str_keys=True)


def _content_dict(content: _af.Content) -> dict[str, Any]:
    """``content.to_dict()`` made JSON-safe, with SDK ``raw_representation`` s dropped."""
    data = content.to_dict()
    annotations = data.get("annotations")
    if isinstance(annotations, list):
        data["annotations"] = [_clean_annotation(a) for a in annotations]
    return cast(dict[str, Any], _jsonable(data))


def _clean_annotation(annotation: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(annotation).items() if k != "raw_representation"}


def _diff(original: dict[str, Any], rebuilt: dict[str, Any]) -> dict[str, Any] | None:
    """What turns ``rebuilt`` into ``original``: ``{"set": {...}, "unset": [...]}`` or None."""
    changed = {k: v for k, v in original.items() if k not in rebuilt or rebuilt[k] != v}
    removed = [k for k in rebuilt if k not in original]
    if not changed and not removed:
        return None
    out: dict[str, Any] = {}
    if changed:
        out["set"] = changed
    if removed:
        out["unset"] = removed
    return out


def _patch(rebuilt: dict[str, Any], diff: Mapping[str, Any]) -> dict[str, Any]:
    unset = set(diff.get("unset", ()))
    out = {k: v for k, v in rebuilt.items() if k not in unset}
    out.update(diff.get("set", {}))
    return out


# --------------------------------------------------------------------------- parts


def _is_image(media_type: str | None) -> bool:
    return bool(media_type) and cast(str, media_type).split("/", 1)[0].strip().lower() == "image"


def _detail(additional: Mapping[str, Any] | None) -> Literal["auto", "low", "high"] | None:
    """The OpenAI image detail agent-framework keeps in ``additional_properties``."""
    if not additional:
        return None
    spaced = additional.get("openai")
    value = spaced.get("image_detail") if isinstance(spaced, Mapping) else None
    if value is None:
        value = additional.get("detail")
    if value in ("auto", "low", "high"):
        return cast(Literal["auto", "low", "high"], value)
    return None


def _detail_properties(detail: str | None) -> dict[str, Any] | None:
    return {"openai": {"image_detail": detail}} if detail is not None else None


def _guess_media_type(url: str, default: str) -> str:
    if url.startswith("data:"):
        head = url[5:].split(",", 1)[0].split(";", 1)[0]
        return head or "text/plain"
    guessed, _ = mimetypes.guess_type(url.split("?", 1)[0])
    return guessed or default


def _arguments_text(arguments: Any) -> str:
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        return arguments
    return json.dumps(_jsonable(arguments))


def _plain_part(content: _af.Content) -> ContentPart | None:
    """The threadkit part for an agent-framework content, by the table in the module docs;
    None for content types threadkit has no part for."""
    match content.type:
        case "text":
            return TextContent(
                text=content.text or "",
                annotations=[_jsonable(_clean_annotation(a)) for a in content.annotations or ()],
            )
        case "text_reasoning":
            return ReasoningContent(
                id=content.id,
                encrypted_content=content.protected_data,
                summary=[content.text] if content.text else [],
            )
        case "data" | "uri":
            if not content.uri:
                return None
            if _is_image(content.media_type):
                return ImageUrlContent(
                    url=content.uri, detail=_detail(content.additional_properties)
                )
            return FileContent(url=content.uri, filename=content.name)
        case "hosted_file":
            if content.file_id is None:
                return None
            if _is_image(content.media_type):
                return ImageFileContent(
                    file_id=content.file_id, detail=_detail(content.additional_properties)
                )
            return FileContent(file_id=content.file_id, filename=content.name)
        case "function_call":
            if content.call_id is None or content.name is None:
                return None
            return ToolCallContent(
                id=content.call_id, name=content.name, arguments=_arguments_text(content.arguments)
            )
        case "function_result":
            if content.call_id is None:
                return None
            result = content.result
            output = (
                result
                if isinstance(result, str)
                else ("" if result is None else json.dumps(_jsonable(result)))
            )
            return ToolResultContent(
                tool_call_id=content.call_id, output=output, is_error=content.exception is not None
            )
        case _:
            return None


def _plain_content(part: ContentPart) -> _af.Content:
    """The agent-framework content for a threadkit part (exhaustive over threadkit parts)."""
    content_cls = _af.Content
    match part:
        case TextContent(text=text, annotations=annotations):
            return content_cls.from_text(
                text, annotations=cast(Any, [dict(a) for a in annotations]) if annotations else None
            )
        case ImageUrlContent(url=url, detail=detail):
            return content_cls.from_uri(
                url,
                media_type=_guess_media_type(url, "image/*"),
                additional_properties=_detail_properties(detail),
            )
        case ImageFileContent(file_id=file_id, detail=detail):
            return content_cls.from_hosted_file(
                file_id, media_type="image/*", additional_properties=_detail_properties(detail)
            )
        case FileContent(file_id=file_id, filename=filename, url=url):
            if file_id is None and url is not None:
                return content_cls.from_uri(
                    url,
                    media_type=_guess_media_type(url, "application/octet-stream"),
                    name=filename,
                )
            return content_cls("hosted_file", file_id=file_id, name=filename)
        case ToolCallContent(id=call_id, name=name, arguments=arguments):
            return content_cls.from_function_call(call_id, name, arguments=arguments)
        case ToolResultContent(tool_call_id=call_id, output=output, is_error=is_error):
            return content_cls.from_function_result(
                call_id, result=output, exception=_ERROR_MARKER if is_error else None
            )
        case ReasoningContent(id=rid, encrypted_content=encrypted, summary=summary):
            return content_cls.from_text_reasoning(
                id=rid, text="\n".join(summary) or None, protected_data=encrypted
            )
        case _:
            assert_never(part)


def to_threadkit_part(content: _af.Content) -> ContentPart | None:
    """Convert one agent-framework ``Content`` to a threadkit content part.

    A content that :func:`to_af_content` made from a threadkit part the plain mapping cannot
    rebuild exactly carries that part in ``additional_properties["threadkit"]``; it is returned
    as it was.

    Args:
        content: the agent-framework content.

    Returns:
        The part (see the module's mapping table), or None for a content type threadkit has no
        part for (:func:`to_threadkit_message` keeps those in ``provider_details``).
    """
    carried = (content.additional_properties or {}).get(_TK_KEY)
    if isinstance(carried, Mapping) and "type" in carried:
        try:
            return cast(ContentPart, msgspec.convert(dict(carried), ContentPart))
        except msgspec.ValidationError:
            pass
    return _plain_part(content)


def to_af_content(part: ContentPart) -> _af.Content:
    """Convert one threadkit content part to an agent-framework ``Content``.

    When the mapping (module docs) cannot hold the whole part (a ``FileContent`` with both a file
    id and a URL, a reasoning summary of several items...), the part rides along in
    ``additional_properties["threadkit"]`` so :func:`to_threadkit_part` restores it exactly.

    Args:
        part: any threadkit content part.

    Returns:
        A new agent-framework ``Content``.
    """
    content = _plain_content(part)
    if _plain_part(content) != part:
        content.additional_properties[_TK_KEY] = msgspec.to_builtins(part)
    return content


# --------------------------------------------------------------------------- messages


def to_threadkit_message(
    message: _af.Message, *, thread_id: str = "", message_id: str = ""
) -> Message:
    """Convert an agent-framework ``Message`` to a threadkit :class:`~threadkit.types.Message`.

    Args:
        message: the agent-framework message.
        thread_id: the thread it will belong to (``""``: set by the store on append).
        message_id: the threadkit id (``""``: the store assigns one). The agent-framework
            ``message_id`` is kept in ``provider_details``, never used as the threadkit id
            (agent-framework ids need not be unique within a thread).

    Returns:
        The message; ``provider_details["agent_framework"]`` holds whatever the threadkit parts
        cannot (see the module docs), and is absent when there is nothing to keep.

    Raises:
        ValidationError: ``additional_properties["threadkit"]`` holds malformed threadkit fields.
    """
    parts: list[ContentPart] = []
    records: list[dict[str, Any] | None] = []
    for content in message.contents:
        part = to_threadkit_part(content)
        original = _content_dict(content)
        if part is None:
            records.append({"af": original})
            continue
        records.append(_diff(original, _content_dict(to_af_content(part))))
        parts.append(part)
    additional = dict(message.additional_properties or {})
    carried = additional.pop(_TK_KEY, None)
    fields = _tk_fields(carried)
    details: dict[str, Any] = {}
    role = message.role
    if role not in _ROLES:
        details["role"] = role
        role = "user"
    if message.author_name is not None:
        details["author_name"] = message.author_name
    if message.message_id is not None:
        details["message_id"] = message.message_id
    if additional:
        details["additional_properties"] = _jsonable(additional)
    if any(r is not None for r in records):
        details["contents"] = records
    provider_details: dict[str, Any] = dict(fields.pop("provider_details", None) or {})
    if details:
        provider_details[_AF_KEY] = details
    return Message(
        id=message_id,
        thread_id=thread_id,
        role=cast(Role, role),
        content=parts,
        provider_details=provider_details or None,
        **fields,
    )


class _TkFields(msgspec.Struct, kw_only=True, omit_defaults=True):
    """threadkit message fields carried in agent-framework ``additional_properties``."""

    metadata: dict[str, str] = {}
    run_id: str | None = None
    agent_id: str | None = None
    attachments: list[Attachment] = []
    provider_details: dict[str, Any] | None = None


def _tk_fields(carried: Any) -> dict[str, Any]:
    if carried is None:
        return {}
    try:
        fields = msgspec.convert(carried, _TkFields)
    except msgspec.ValidationError as exc:
        raise ValidationError(
            f'agent-framework additional_properties["threadkit"] is malformed: {exc}'
        ) from exc
    return {f: getattr(fields, f) for f in _TkFields.__struct_fields__}


def to_af_message(message: Message) -> _af.Message:
    """Convert a threadkit :class:`~threadkit.types.Message` to an agent-framework ``Message``.

    A message that came from agent-framework (through :func:`to_threadkit_message`) comes back
    exactly as it was (``to_dict()`` equal): contents in their order, content types threadkit
    has no part for, ``message_id``, ``author_name``, ``additional_properties``, custom roles.

    Args:
        message: the threadkit message.

    Returns:
        A new agent-framework message. threadkit-only fields that are set (``metadata``,
        ``run_id``, ``agent_id``, ``attachments``, ``provider_details`` other than
        ``"agent_framework"``) are in ``additional_properties["threadkit"]``.
    """
    content_cls = _af.Content
    provider_details = dict(message.provider_details or {})
    details = provider_details.pop(_AF_KEY, None)
    details = details if isinstance(details, Mapping) else {}
    records = details.get("contents")
    contents: list[_af.Content] = []
    if isinstance(records, list):
        pending = iter(message.content)
        for record in records:
            if isinstance(record, Mapping) and "af" in record:
                contents.append(content_cls.from_dict(record["af"]))
                continue
            part = next(pending, None)
            if part is None:
                continue
            plain = to_af_content(part)
            if isinstance(record, Mapping):
                plain = content_cls.from_dict(_patch(_content_dict(plain), record))
            contents.append(plain)
        contents.extend(to_af_content(p) for p in pending)
    else:
        contents = [to_af_content(p) for p in message.content]
    additional = dict(details.get("additional_properties") or {})
    carried = _TkFields(
        metadata=dict(message.metadata),
        run_id=message.run_id,
        agent_id=message.agent_id,
        attachments=list(message.attachments),
        provider_details=provider_details or None,
    )
    encoded = msgspec.to_builtins(carried)
    if encoded:
        additional[_TK_KEY] = encoded
    return _af.Message(
        details.get("role", message.role),
        contents,
        author_name=details.get("author_name"),
        message_id=details.get("message_id"),
        additional_properties=additional,
    )


# --------------------------------------------------------------------------- sessions → threads


def session_thread_id(session_id: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """The threadkit thread id of an agent-framework session id.

    ``"thread_" + sha256(f"{namespace}\\x00{session_id}").hexdigest()[:32]``: deterministic,
    128 bits, safe in every store's keys whatever characters the session id holds.

    Args:
        session_id: the agent-framework session id.
        namespace: separates providers that share a store (default ``"threadkit"``, the default
            ``source_id`` of :class:`ThreadkitHistoryProvider`).
    """
    digest = hashlib.sha256(f"{namespace}\x00{session_id}".encode()).hexdigest()
    return f"thread_{digest[:32]}"


def _session_metadata(
    session_id: str, extra: Mapping[str, str] | None = None, service: object = None
) -> dict[str, str]:
    meta = dict(extra or {})
    if len(session_id) <= _MAX_METADATA_VALUE:
        meta[SESSION_ID_KEY] = session_id
    if isinstance(service, str) and len(service) <= _MAX_METADATA_VALUE:
        meta[SERVICE_SESSION_ID_KEY] = service
    return meta


class ThreadkitHistoryProvider(_af.HistoryProvider):
    """An agent-framework history provider that keeps history in a threadkit message store.

    Give it to an ``Agent`` (``context_providers=[ThreadkitHistoryProvider(store)]``) and run the
    agent with a session: before each run it loads the session's thread (oldest first), after
    each run it appends what the flags select. Any process with the same store and session id
    continues the conversation. One thread per session id (see :func:`session_thread_id`),
    created on the first save.

    Tool calls keep their call ids: an agent-framework ``function_call`` is stored as a
    :class:`~threadkit.types.ToolCallContent` whose ``id`` is the ``call_id``, its result as a
    :class:`~threadkit.types.ToolResultContent` answering it, and the occurrence ``id``
    agent-framework adds rides in ``provider_details``, so a restored session pairs calls and
    results as before (agent-framework #4672). The store refuses a tool result whose call is
    not in the thread (:class:`~threadkit.errors.OrphanToolResultError`), so with
    ``store_outputs=False`` a run whose inputs answer a call that was never stored fails its
    save.

    Appends are atomic and carry an idempotency key made from the identity of the saved
    ``Message`` objects, so saving the same objects again (a retry after a failed or timed-out
    append, in this process) writes nothing; new objects with equal content are a new turn and
    are stored.

    Reads cost O(window): ``max_messages=None`` pages through the thread (500 per read);
    ``max_messages=N`` reads only the newest N with ``store.tail`` and then drops tool calls
    whose results fell outside the window and results whose calls did
    (:func:`threadkit.truncation.keep_tool_pairs`), so the model never sees half a pair.

    Args:
        store: a :class:`~threadkit.stores.base.MessageStore` (already set up), or a store URL
            (``sqlite:///app.db``, ``redis://127.0.0.1:6379/0?prefix=app``...) that is opened
            and set up on first use and closed by :meth:`aclose`.
        source_id: this provider's agent-framework source id (default ``"threadkit"``).
        namespace: the :func:`session_thread_id` namespace (default: ``source_id``).
        max_messages: load only the newest N messages (None: the whole thread).
        thread_metadata: extra metadata for the threads this provider creates.
        load_messages, store_inputs, store_context_messages, store_context_from,
        store_outputs: the ``HistoryProvider`` flags: whether to load history before a run;
            whether to store the run's input messages, other providers' context messages (all,
            or only those from ``store_context_from``), and the response messages.

    Raises:
        ValidationError: ``max_messages`` below 1, or bad ``thread_metadata``.
        ConfigError, MissingExtraError: a store URL that cannot be opened.
    """

    DEFAULT_SOURCE_ID: ClassVar[str] = DEFAULT_NAMESPACE

    def __init__(
        self,
        store: MessageStore | str,
        source_id: str = DEFAULT_NAMESPACE,
        *,
        namespace: str | None = None,
        max_messages: int | None = None,
        thread_metadata: Mapping[str, str] | None = None,
        load_messages: bool = True,
        store_inputs: bool = True,
        store_context_messages: bool = False,
        store_context_from: set[str] | None = None,
        store_outputs: bool = True,
    ) -> None:
        super().__init__(
            source_id,
            load_messages=load_messages,
            store_inputs=store_inputs,
            store_context_messages=store_context_messages,
            store_context_from=store_context_from,
            store_outputs=store_outputs,
        )
        if max_messages is not None and max_messages < 1:
            raise ValidationError("max_messages must be None (the whole thread) or at least 1")
        self.namespace = source_id if namespace is None else namespace
        self.max_messages = max_messages
        self.thread_metadata = check_metadata(thread_metadata)
        self._owned: MessageStore | None = None  # opened from a URL: set up on first use
        self._store: MessageStore | None = None  # ready to use
        if isinstance(store, str):
            self._owned = open_store(store)
        else:
            self._store = store
        self._ready = asyncio.Lock()
        self._tokens: weakref.WeakKeyDictionary[_af.Message, str] = weakref.WeakKeyDictionary()

    # -- helpers -------------------------------------------------------------------------
    async def store(self) -> MessageStore:
        """The message store (opened and set up on first use when given as a URL).

        Raises:
            StoreError: the store cannot be reached or set up.
        """
        if self._store is not None:
            return self._store
        async with self._ready:
            if self._store is None:
                if self._owned is None:
                    raise StoreError("this ThreadkitHistoryProvider was closed")
                await self._owned.setup()
                self._store = self._owned
        return self._store

    def thread_id(self, session_id: str) -> str:
        """The thread id of a session (:func:`session_thread_id` in this provider's namespace)."""
        return session_thread_id(session_id, self.namespace)

    def _session(self, session_id: str | None) -> str:
        if not session_id:
            raise ValidationError(
                "ThreadkitHistoryProvider needs a session id: run the agent with a session "
                "(agent.create_session() or AgentSession(session_id=...))"
            )
        return session_id

    def _token(self, message: _af.Message) -> str:
        token = self._tokens.get(message)
        if token is None:
            token = new_id("afmsg")
            self._tokens[message] = token
        return token

    def _idempotency_key(self, thread_id: str, messages: Sequence[_af.Message]) -> str:
        tokens = "\x00".join(self._token(m) for m in messages)
        digest = hashlib.sha256(f"{thread_id}\x00{tokens}".encode()).hexdigest()
        return f"af_{digest[:40]}"

    # -- HistoryProvider -----------------------------------------------------------------
    async def get_messages(
        self, session_id: str | None, *, state: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[_af.Message]:
        """The session's history as agent-framework messages, oldest first.

        Args:
            session_id: the agent-framework session id.
            state: this provider's slot of the session state; ``state["thread_id"]`` is set.

        Returns:
            Every message of the session's thread, or the newest ``max_messages`` with tool
            pairs kept whole; ``[]`` when the thread does not exist yet.

        Raises:
            ValidationError: no session id.
            StoreError: the store failed.
        """
        sid = self._session(session_id)
        store = await self.store()
        tid = self.thread_id(sid)
        try:
            if self.max_messages is None:
                window = await _read_all(store, tid)
            else:
                window = await store.tail(tid, self.max_messages)
        except ThreadNotFoundError:
            return []
        if state is not None:
            state["thread_id"] = tid
        if self.max_messages is None:
            return [to_af_message(m) for m in window]
        return _paired_window(window)

    async def save_messages(
        self,
        session_id: str | None,
        messages: Sequence[_af.Message],
        *,
        state: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Append messages to the session's thread in one atomic, idempotent append.

        The thread is created (see :func:`session_thread_id`) when it does not exist.

        Args:
            session_id: the agent-framework session id.
            messages: the messages to store, in order (nothing happens when empty).
            state: this provider's slot of the session state; ``state["thread_id"]`` is set.

        Raises:
            ValidationError: no session id, or the store refused a message (e.g. a tool call id
                the thread already holds).
            OrphanToolResultError: a function result answers no call stored in the thread.
            StoreError: the store failed (retrying with the same messages is safe).
        """
        sid = self._session(session_id)
        if not messages:
            return
        store = await self.store()
        tid = self.thread_id(sid)
        batch = [to_threadkit_message(m, thread_id=tid) for m in messages]
        key = self._idempotency_key(tid, messages)
        try:
            await store.append(tid, batch, idempotency_key=key)
        except ThreadNotFoundError:
            await _ensure_thread(store, tid, _session_metadata(sid, self.thread_metadata))
            await store.append(tid, batch, idempotency_key=key)
        if state is not None:
            state["thread_id"] = tid

    async def clear(self, session_id: str) -> bool:
        """Delete the session's thread with all its messages. False if there was none."""
        store = await self.store()
        return await store.delete_thread(self.thread_id(self._session(session_id)))

    async def aclose(self) -> None:
        """Close the store when this provider opened it from a URL (a given store is left open)."""
        owned, self._owned = self._owned, None
        if owned is not None:
            self._store = None
            await owned.close()


async def _read_all(store: MessageStore, thread_id: str) -> list[Message]:
    out: list[Message] = []
    after: str | None = None
    while True:
        page = await store.list_messages(thread_id, order="asc", limit=_PAGE, after=after)
        out.extend(page.data)
        if not page.has_more or not page.data:
            return out
        after = page.last_id


def _paired_window(window: list[Message]) -> list[_af.Message]:
    """Convert a tail window, dropping the calls and results ``keep_tool_pairs`` drops.

    The conversion reads each message as stored (its ``provider_details`` describe its full
    content), then removes the unpaired function calls and results from the converted message.
    """
    kept = keep_tool_pairs(window)
    by_id = {m.id: m for m in window}
    out: list[_af.Message] = []
    for m in kept:
        original = by_id.get(m.id, m)
        af_message = to_af_message(original)
        if m is not original:
            ids = {p.id for p in m.tool_calls} | {p.tool_call_id for p in m.tool_results}
            af_message.contents = [
                c
                for c in af_message.contents
                if c.type not in ("function_call", "function_result") or c.call_id in ids
            ]
            if not af_message.contents:
                continue
        out.append(af_message)
    return out


async def _ensure_thread(store: MessageStore, thread_id: str, metadata: Mapping[str, str]) -> None:
    """Create ``thread_id``; another process creating it first is fine."""
    try:
        await store.create_thread(thread_id=thread_id, metadata=metadata)
    except ValidationError:
        await store.get_thread(thread_id)  # it exists now (else: the real error surfaces)


# --------------------------------------------------------------------------- import / export


def _session_messages(session: _af.AgentSession, source_id: str) -> list[_af.Message]:
    slot = session.state.get(source_id)
    raw = slot.get("messages", []) if isinstance(slot, Mapping) else []
    out: list[_af.Message] = []
    for item in raw:
        if isinstance(item, _af.Message):
            out.append(item)
        elif isinstance(item, Mapping):
            out.append(_af.Message.from_dict(dict(item)))
        else:
            raise ValidationError(
                f"session state[{source_id!r}]['messages'] holds a {type(item).__name__}, "
                "not an agent-framework Message"
            )
    return out


async def import_session(
    session: Mapping[str, Any],
    *,
    store: MessageStore | None = None,
    backend: ThreadBackend | Mapping[str, Any] | Config | str | os.PathLike[str] | None = None,
    source_id: str = "in_memory",
    namespace: str = DEFAULT_NAMESPACE,
    thread_id: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> AgentThread:
    """Create a threadkit thread holding an agent-framework session's history.

    The history is read from ``session["state"][source_id]["messages"]``, where
    agent-framework's ``InMemoryHistoryProvider`` keeps it (its default ``source_id`` is
    ``"in_memory"``). On a local backend (or a bare ``store``) the messages are written exactly
    as :func:`to_threadkit_message` converts them, in one atomic step, so
    :func:`export_session` gives them back unchanged. Other backends receive them through
    ``add_message`` (roles and parts the service accepts; ``provider_details`` are not kept).

    The thread id defaults to :func:`session_thread_id` of the session id in ``namespace``, so a
    :class:`ThreadkitHistoryProvider` with that namespace on the same store continues the
    session. Thread metadata: ``metadata`` plus the session id (and a string
    ``service_session_id``) under :data:`SESSION_ID_KEY` / :data:`SERVICE_SESSION_ID_KEY`.

    Args:
        session: an ``AgentSession.to_dict()`` dict (JSON-decoded is fine).
        store: a set-up message store to create the thread in (a local thread over it is
            returned; closing the thread leaves the store open).
        backend: a :class:`~threadkit.thread.ThreadBackend`, or a configuration for
            :func:`threadkit.open_backend` (dict, TOML path, Config); a backend opened here is
            owned by the returned thread (``await thread.close()`` closes it).
        source_id: the history provider whose messages to import.
        namespace: see :func:`session_thread_id`.
        thread_id: the thread id to use instead (local backends only).
        metadata: extra thread metadata.

    Returns:
        The new thread.

    Raises:
        ValidationError: not a session dict, a thread with that id exists already, bad
            metadata, both or neither of ``store`` and ``backend``.
        OrphanToolResultError: the history holds a function result without its call.
        ConfigError, MissingExtraError, StoreError: the backend cannot be opened.
    """
    if (store is None) == (backend is None):
        raise ValidationError("import_session needs exactly one of store= and backend=")
    try:
        af_session = _af.AgentSession.from_dict(dict(session))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationError(f"not an agent-framework session dict: {exc!r}") from exc
    messages = _session_messages(af_session, source_id)
    meta = _session_metadata(af_session.session_id, metadata, af_session.service_session_id)
    opened: ThreadBackend | None = None  # opened here: closed again when the import fails
    if store is not None:
        target: ThreadBackend = LocalBackend(store, make_model(Config()), owns_store=False)
        opened = target
    elif isinstance(backend, ThreadBackend):
        target = backend
    else:
        target = opened = await open_backend(cast(Any, backend))
    try:
        local_store = getattr(target, "store", None)
        if not isinstance(local_store, MessageStore):
            if thread_id is not None:
                raise ValidationError("thread_id= needs a local (store-backed) backend")
            return await _import_via_api(target, messages, meta)
        tid = thread_id or session_thread_id(af_session.session_id, namespace)
        await _write_thread(local_store, tid, messages, meta)
        return await target.get_thread(tid)
    except BaseException:
        if opened is not None:
            await opened.close()
        raise


async def _write_thread(
    store: MessageStore, thread_id: str, messages: Sequence[_af.Message], meta: dict[str, str]
) -> None:
    converted = [to_threadkit_message(m, thread_id=thread_id) for m in messages]
    if supports_import(store):
        ts = now()
        numbered = [
            msgspec.structs.replace(m, id=new_id("msg"), seq=i, created_at=ts)
            for i, m in enumerate(converted, start=1)
        ]
        await store.import_thread(thread_id, numbered, metadata=meta, created_at=ts)
        return
    await store.create_thread(thread_id=thread_id, metadata=meta)
    for i in range(0, len(converted), _PAGE):
        await store.append(
            thread_id, converted[i : i + _PAGE], idempotency_key=f"af_import_{i // _PAGE}"
        )


async def _import_via_api(
    backend: ThreadBackend, messages: Sequence[_af.Message], meta: dict[str, str]
) -> AgentThread:
    thread = await backend.create_thread(metadata=meta)
    for m in messages:
        tk = to_threadkit_message(m)
        await thread.add_message(tk.role, tk.content, metadata=tk.metadata)
    return thread


async def export_session(
    thread: AgentThread,
    *,
    source_id: str = "in_memory",
    session_id: str | None = None,
) -> dict[str, Any]:
    """An agent-framework session dict holding a threadkit thread's messages.

    ``agent_framework.AgentSession.from_dict(result)`` restores it; an ``Agent`` whose
    ``InMemoryHistoryProvider`` has this ``source_id`` (its default is ``"in_memory"``) then
    continues the conversation with the whole history.

    Args:
        thread: any threadkit thread (every backend).
        source_id: the history provider slot of the session state to fill.
        session_id: the session id (default: the thread's :data:`SESSION_ID_KEY` metadata, as
            :func:`import_session` and :class:`ThreadkitHistoryProvider` record it, else the
            thread id).

    Returns:
        ``{"type": "session", "session_id", "service_session_id", "state": {source_id:
        {"messages": [...]}}}``, JSON-ready, messages oldest first.

    Raises:
        ThreadNotFoundError: the thread no longer exists.
    """
    info = await thread.info()
    sid = session_id or info.metadata.get(SESSION_ID_KEY) or thread.id
    af_session = _af.AgentSession(
        session_id=sid, service_session_id=info.metadata.get(SERVICE_SESSION_ID_KEY)
    )
    af_session.state[source_id] = {"messages": [to_af_message(m) async for m in thread.messages()]}
    return af_session.to_dict()
