"""``OpenAIChatModel``: threadkit's :class:`~threadkit.models.ChatModel` over Chat Completions.

It calls ``POST {base_url}/chat/completions`` through the official ``openai`` SDK
(``AsyncOpenAI.chat.completions.create``), so it works with api.openai.com and with any
OpenAI-compatible endpoint (Azure OpenAI's ``/openai/v1``, vLLM, Ollama, LiteLLM...). The SDK is
an optional dependency (extra ``openai``) imported when the model is first constructed; importing
this module never imports it.

Message mapping (threadkit → Chat Completions), one exhaustive ``match`` per content part:

==========================  ===================================================================
threadkit                   Chat Completions
==========================  ===================================================================
``instructions``            the first message, ``{"role": "system", "content": ...}``
``system`` message          ``{"role": "system", "content": "<text parts joined by newlines>"}``
``user`` message            ``{"role": "user", "content": ...}``: a plain string for a single
                            text part, else a list of content parts
``TextContent``             ``{"type": "text", "text": ...}``
``ImageUrlContent``         ``{"type": "image_url", "image_url": {"url", "detail"?}}``
``FileContent`` (file_id)   ``{"type": "file", "file": {"file_id", "filename"?}}``
``FileContent`` (data: URL) ``{"type": "file", "file": {"file_data": <the data: URL>,
                            "filename"?}}``
``FileContent`` (http URL)  :class:`~threadkit.errors.UnsupportedOperation`: Chat Completions
                            cannot fetch a document by URL; upload it and pass its file id
``ImageFileContent``        :class:`~threadkit.errors.UnsupportedOperation`: Chat Completions
                            cannot reference an uploaded image by file id
``assistant`` message       one ``{"role": "assistant", "content": text | None,
                            "tool_calls": [...]}``
``ToolCallContent``         ``{"id", "type": "function", "function": {"name", "arguments"}}``
``ToolResultContent``       one ``{"role": "tool", "tool_call_id", "content": output}`` per
                            result, in order, right after the message that holds it
                            (``is_error`` has no wire field: the output text says it)
``ReasoningContent``        dropped (Responses API items mean nothing to Chat Completions)
==========================  ===================================================================

Images and files are only allowed in ``user`` messages (as the Chat Completions spec says);
elsewhere they raise :class:`~threadkit.errors.UnsupportedOperation`. A tool call outside an
``assistant`` message, or text in a ``tool`` message, raises
:class:`~threadkit.errors.ValidationError`.

Errors: the SDK retries 408/409/429/5xx and connection errors itself (``max_retries``, honouring
``retry-after-ms`` / ``retry-after``). What is left is translated with ``raise ... from exc``:
``openai.RateLimitError`` → :class:`~threadkit.errors.ModelRateLimitError`; every other
``openai.OpenAIError`` → :class:`~threadkit.errors.ModelError`. Messages name the HTTP status and
the base URL, never the API key.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, assert_never
from urllib.parse import urlsplit, urlunsplit

from threadkit._extras import require
from threadkit._ids import new_id
from threadkit.errors import (
    ConfigError,
    ModelError,
    ModelRateLimitError,
    UnsupportedOperation,
    ValidationError,
)
from threadkit.models import ChatDelta, ChatRequest, ChatResponse, FinishReason
from threadkit.types import (
    ContentPart,
    FileContent,
    FunctionTool,
    ImageFileContent,
    ImageUrlContent,
    Message,
    ReasoningContent,
    TextContent,
    ToolCallContent,
    ToolResultContent,
    Usage,
)

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types import CompletionUsage
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

__all__ = ["OpenAIChatModel", "to_chat_messages"]

_BACKEND = "chat"
"""The backend kind named in :class:`~threadkit.errors.UnsupportedOperation`."""

_CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-3.5-turbo": 16_385,
    "gpt-4-turbo": 128_000,
    "gpt-4o": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-5": 400_000,
    "gpt-5-chat": 128_000,
    "o1": 200_000,
    "o1-mini": 128_000,
    "o1-preview": 128_000,
    "o3": 200_000,
    "o3-mini": 200_000,
    "o4-mini": 200_000,
}
"""Context windows (tokens, input + output) of OpenAI model families, by model-id prefix."""

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "tool_calls",
}


def _known_context_window(model: str) -> int | None:
    """The context window (tokens) of a known OpenAI model family, else None.

    The longest prefix of :data:`_CONTEXT_WINDOWS` wins, matched on whole name segments
    (``gpt-4o-mini`` → ``gpt-4o``; ``gpt-5.1`` → ``gpt-5``; ``gpt-5-chat-latest`` →
    ``gpt-5-chat``). A routing prefix such as ``openai/`` is ignored.
    """
    name = model.rsplit("/", 1)[-1].lower()
    best: tuple[int, int] | None = None  # (prefix length, window)
    for prefix, window in _CONTEXT_WINDOWS.items():
        matches = name == prefix or (name.startswith(prefix) and name[len(prefix)] in "-.:")
        if matches and (best is None or len(prefix) > best[0]):
            best = (len(prefix), window)
    return best[1] if best else None


def _redacted_url(url: str) -> str:
    """``url`` without any ``user:password@`` part, for messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


# --------------------------------------------------------------------------- request mapping


def to_chat_messages(
    messages: Sequence[Message], instructions: str | None = None
) -> list[dict[str, Any]]:
    """Convert threadkit messages to Chat Completions ``messages`` (see the module table).

    Args:
        messages: the model context, oldest first.
        instructions: the system prompt; when given it becomes the first ``system`` message.

    Returns:
        Chat Completions message dicts, oldest first: one per message, except that each tool
        result becomes its own ``tool`` message and an assistant message with neither text nor
        tool calls (e.g. reasoning only) is left out.

    Raises:
        UnsupportedOperation: an ``image_file`` part, a file given only by an http(s) URL, or
            an image/file outside a ``user`` message.
        ValidationError: a tool call outside an ``assistant`` message, text in a ``tool``
            message, or a file part with neither ``file_id`` nor ``url``.
    """
    out: list[dict[str, Any]] = []
    if instructions:
        out.append({"role": "system", "content": instructions})
    for message in messages:
        out.extend(_message_params(message))
    return out


def _message_params(message: Message) -> list[dict[str, Any]]:
    """The Chat Completions messages for one threadkit message (tool results last)."""
    content: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    tool_results: list[dict[str, Any]] = []
    for part in message.content:
        match part:
            case TextContent():
                content.append({"type": "text", "text": part.text})
            case ImageUrlContent():
                image: dict[str, Any] = {"url": part.url}
                if part.detail is not None:
                    image["detail"] = part.detail
                content.append({"type": "image_url", "image_url": image})
            case ImageFileContent():
                raise UnsupportedOperation(
                    _BACKEND,
                    "image_file content",
                    f"Chat Completions cannot reference the uploaded image {part.file_id!r} by "
                    "file id; pass the image as an image_url (https: or data: URL) instead",
                )
            case FileContent():
                content.append(_file_param(part))
            case ToolCallContent():
                tool_calls.append(
                    {
                        "id": part.id,
                        "type": "function",
                        "function": {"name": part.name, "arguments": part.arguments},
                    }
                )
            case ToolResultContent():
                tool_results.append(
                    {"role": "tool", "tool_call_id": part.tool_call_id, "content": part.output}
                )
            case ReasoningContent():
                pass  # Responses API reasoning items have no Chat Completions form.
            case _:
                assert_never(part)

    if tool_calls and message.role != "assistant":
        raise ValidationError(
            f"message {message.id} has role {message.role!r} but holds tool calls; "
            "only assistant messages may"
        )
    out: list[dict[str, Any]] = []
    match message.role:
        case "system":
            out.append({"role": "system", "content": _text_only(message, content)})
        case "user":
            if content or not tool_results:
                out.append({"role": "user", "content": _user_content(content)})
        case "assistant":
            text = _text_only(message, content)
            if text or tool_calls:
                assistant: dict[str, Any] = {"role": "assistant", "content": text or None}
                if tool_calls:
                    assistant["tool_calls"] = tool_calls
                out.append(assistant)
        case "tool":
            if content:
                raise ValidationError(
                    f"tool message {message.id} holds content other than tool results; a "
                    "Chat Completions tool message answers exactly one tool call"
                )
        case _:
            assert_never(message.role)
    out.extend(tool_results)
    return out


def _file_param(part: FileContent) -> dict[str, Any]:
    """A ``file`` content part: by file id, or inline from a ``data:`` URL."""
    file: dict[str, Any]
    if part.file_id:
        file = {"file_id": part.file_id}
    elif part.url and part.url.startswith("data:"):
        file = {"file_data": part.url}
    elif part.url:
        raise UnsupportedOperation(
            _BACKEND,
            "file content by URL",
            "Chat Completions takes a document by file id or inline as a data: URL, not by "
            "http(s) URL; upload the file and pass its file_id",
        )
    else:
        raise ValidationError("a file content part needs a file_id or a url")
    if part.filename:
        file["filename"] = part.filename
    return {"type": "file", "file": file}


def _text_only(message: Message, content: list[dict[str, Any]]) -> str:
    """The text of a system/assistant message, whose Chat Completions form takes text only."""
    for param in content:
        if param["type"] != "text":
            raise UnsupportedOperation(
                _BACKEND,
                f"{param['type']} content in a {message.role} message",
                "Chat Completions takes images and files in user messages only",
            )
    return "\n".join(param["text"] for param in content)


def _user_content(content: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A single text part as a plain string (what every compatible server accepts), else parts."""
    if not content:
        return ""
    if len(content) == 1 and content[0]["type"] == "text":
        return str(content[0]["text"])
    return content


def _tool_param(tool: FunctionTool) -> dict[str, Any]:
    fn = tool.function
    function: dict[str, Any] = {"name": fn.name, "parameters": fn.parameters}
    if fn.description is not None:
        function["description"] = fn.description
    if fn.strict is not None:
        function["strict"] = fn.strict
    return {"type": "function", "function": function}


def _response_format(value: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """``"auto"``/None → omitted; another string ``s`` → ``{"type": s}``; a dict as is."""
    if value is None or value == "auto":
        return None
    if isinstance(value, str):
        return {"type": value}
    return value


# --------------------------------------------------------------------------- response mapping


def _usage(usage: CompletionUsage | None) -> Usage:
    if usage is None:
        return Usage()
    return Usage(
        prompt_tokens=usage.prompt_tokens or 0,
        completion_tokens=usage.completion_tokens or 0,
        total_tokens=usage.total_tokens or 0,
    )


def _finish_reason(raw: str | None, has_tool_calls: bool) -> FinishReason:
    """Map a Chat Completions finish reason.

    ``function_call`` (the legacy functions API) becomes ``tool_calls``. A missing or unknown
    reason, or ``stop`` on an answer that holds tool calls (some compatible servers send it),
    becomes ``tool_calls`` when there are tool calls and ``stop`` otherwise.
    """
    mapped = _FINISH_REASONS.get(raw or "")
    if mapped is None or mapped == "stop":
        return "tool_calls" if has_tool_calls else "stop"
    return mapped


# --------------------------------------------------------------------------- the model


class OpenAIChatModel:
    """A :class:`~threadkit.models.StreamingChatModel` over Chat Completions (``openai`` SDK).

    Args:
        model: the default model id (``"gpt-4o-mini"``); a request's ``model`` overrides it.
        client: a ready ``openai.AsyncOpenAI`` to use as is (its own base URL, key, retries
            and timeout apply). It is not closed by :meth:`aclose`.
        base_url: the endpoint, e.g. ``"http://127.0.0.1:8000/v1"``; when None the SDK uses
            ``OPENAI_BASE_URL``, else ``https://api.openai.com/v1``.
        api_key: the API key; when None it is read from the environment variable named by
            ``api_key_env``. The key is never logged, repr'd or put in an error message.
        api_key_env: the name of the environment variable holding the key.
        max_retries: how many times the SDK retries 408/409/429/5xx and connection errors,
            waiting as ``retry-after-ms`` / ``retry-after`` says (else exponential backoff).
        timeout: the per-request timeout, in seconds.
        context_window: the model's context size in tokens. When None, it is looked up in a
            small table of OpenAI families (gpt-3.5-turbo, gpt-4-turbo, gpt-4o, gpt-4.1,
            gpt-5, o1, o3, o4-mini) by model-id prefix, and stays None for other models.

    Attributes:
        model_name: the default model id.
        context_window: the context size in tokens, or None when unknown.

    Raises:
        MissingExtraError: the ``openai`` SDK is not installed
            (``pip install "threadkit[openai]"``).
        ConfigError: (key ``api_key_env``) no ``client``, no ``api_key`` and the variable
            named by ``api_key_env`` is unset or empty; (key ``client``) ``client`` given
            together with ``base_url`` or ``api_key``.
    """

    model_name: str
    context_window: int | None

    def __init__(
        self,
        model: str,
        *,
        client: AsyncOpenAI | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_retries: int = 2,
        timeout: float = 60.0,
        context_window: int | None = None,
    ) -> None:
        self._openai: ModuleType = require("openai", "openai", "OpenAIChatModel")
        self.model_name = model
        self.context_window = (
            context_window if context_window is not None else _known_context_window(model)
        )
        if client is not None:
            if base_url is not None or api_key is not None:
                raise ConfigError(
                    "pass either a ready client or base_url/api_key, not both", key="client"
                )
            self._client: AsyncOpenAI = client
            self._owns_client = False
            return
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        if not key:
            raise ConfigError(
                f"OpenAIChatModel found no API key: set the {api_key_env} environment "
                "variable or pass api_key=",
                key="api_key_env",
            )
        self._client = self._openai.AsyncOpenAI(
            api_key=key, base_url=base_url, max_retries=max_retries, timeout=timeout
        )
        self._owns_client = True

    @classmethod
    def from_config(
        cls,
        spec: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
    ) -> OpenAIChatModel:
        """Build a model from a config spec ``"openai:<model>"`` (e.g. ``"openai:gpt-4o"``).

        Raises:
            ConfigError: (key ``model``) the spec is not ``openai:<model>``; (key
                ``api_key_env``) no API key in that variable.
            MissingExtraError: the ``openai`` SDK is not installed.
        """
        provider, sep, model = spec.partition(":")
        if not sep or provider.strip().lower() != "openai" or not model.strip():
            raise ConfigError(
                f"{spec!r} is not a chat model spec; expected 'openai:<model>', "
                "e.g. 'openai:gpt-4o-mini'",
                key="model",
            )
        return cls(model.strip(), base_url=base_url, api_key_env=api_key_env)

    @property
    def base_url(self) -> str:
        """The endpoint's base URL (credentials in it, if any, removed)."""
        return _redacted_url(str(self._client.base_url))

    def __repr__(self) -> str:
        return f"OpenAIChatModel(model={self.model_name!r}, base_url={self.base_url!r})"

    async def aclose(self) -> None:
        """Close the HTTP client, if this model created it (a passed-in client stays open)."""
        if self._owns_client:
            await self._client.close()

    async def __aenter__(self) -> OpenAIChatModel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ requests

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        """The ``chat.completions.create`` keyword arguments; unset settings are left out.

        ``tools``, ``tool_choice`` and ``parallel_tool_calls`` go only with at least one tool
        (the API rejects the latter two without tools).
        """
        params: dict[str, Any] = {
            "model": request.model or self.model_name,
            "messages": to_chat_messages(request.messages, request.instructions),
        }
        if request.tools:
            params["tools"] = [_tool_param(t) for t in request.tools]
            params["parallel_tool_calls"] = request.parallel_tool_calls
            if request.tool_choice is not None:
                params["tool_choice"] = request.tool_choice
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.top_p is not None:
            params["top_p"] = request.top_p
        if request.max_completion_tokens is not None:
            params["max_completion_tokens"] = request.max_completion_tokens
        response_format = _response_format(request.response_format)
        if response_format is not None:
            params["response_format"] = response_format
        return params

    def _translate(self, exc: Exception) -> ModelError:
        """The threadkit error for an SDK exception (the caller raises it ``from exc``)."""
        openai = self._openai
        where = self.base_url
        retries = self._client.max_retries
        if isinstance(exc, openai.RateLimitError):
            return ModelRateLimitError(
                f"the chat model endpoint {where} answered HTTP 429 (rate limited) after "
                f"{retries} retries: {exc.message}"
            )
        if isinstance(exc, openai.APIStatusError):
            return ModelError(
                f"the chat model endpoint {where} answered HTTP {exc.status_code}: {exc.message}"
            )
        if isinstance(exc, openai.APITimeoutError):
            return ModelError(
                f"the chat model endpoint {where} timed out (after {retries} retries)"
            )
        if isinstance(exc, openai.APIConnectionError):
            return ModelError(
                f"could not connect to the chat model endpoint {where} "
                f"(after {retries} retries): {exc.message}"
            )
        return ModelError(f"the chat model call to {where} failed: {exc}")

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Answer one request with ``chat.completions.create`` (not streamed).

        Returns:
            The answer: a text part when the message has text (its refusal text when it has
            only a refusal), then one :class:`~threadkit.types.ToolCallContent` per function
            tool call, in order; usage in tokens (zeros when the server sends none); the
            mapped finish reason; the model id that answered.

        Raises:
            UnsupportedOperation, ValidationError: a message cannot be sent (module table).
            ModelRateLimitError: still HTTP 429 after the SDK's retries.
            ModelError: any other failure, or an answer without choices (the SDK exception,
                if any, on ``__cause__``).
        """
        params = self._params(request)
        try:
            completion: ChatCompletion = await self._client.chat.completions.create(**params)
        except self._openai.OpenAIError as exc:
            raise self._translate(exc) from exc
        if not completion.choices:
            raise ModelError(f"the chat model endpoint {self.base_url} answered with no choices")
        choice = completion.choices[0]
        message = choice.message
        content: list[ContentPart] = []
        text = message.content or message.refusal
        if text:
            content.append(TextContent(text=text))
        for call in message.tool_calls or ():
            if call.type != "function":
                raise ModelError(
                    f"the chat model endpoint {self.base_url} answered with a {call.type!r} "
                    "tool call; only function tools are sent"
                )
            content.append(
                ToolCallContent(
                    id=call.id, name=call.function.name, arguments=call.function.arguments
                )
            )
        if message.function_call is not None and not message.tool_calls:
            content.append(
                ToolCallContent(
                    id=new_id("call"),
                    name=message.function_call.name,
                    arguments=message.function_call.arguments,
                )
            )
        has_calls = any(isinstance(p, ToolCallContent) for p in content)
        return ChatResponse(
            content=content,
            usage=_usage(completion.usage),
            finish_reason=_finish_reason(choice.finish_reason, has_calls),
            model=completion.model or params["model"],
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatDelta]:
        """Stream one answer (``stream=True``, ``stream_options={"include_usage": True}``).

        Yields:
            ``ChatDelta(text=...)`` per text fragment as it comes; ``ChatDelta(tool_call=...)``
            per tool call once complete (fragments are assembled by ``index``: the first
            non-empty ``id`` and ``name`` win, ``arguments`` fragments are concatenated; a call
            is complete when a later index starts or the choice finishes); last,
            ``ChatDelta(response=...)`` with the whole answer as :meth:`complete` returns it
            (usage from the final usage chunk, zeros when the server sends none).

        Raises:
            UnsupportedOperation, ValidationError: a message cannot be sent (module table).
            ModelRateLimitError: still HTTP 429 after the SDK's retries.
            ModelError: any other failure, before or during the stream.
        """
        params = self._params(request)
        texts: list[str] = []
        calls: dict[int, _PendingCall] = {}
        done: list[ToolCallContent] = []
        usage = Usage()
        finish: str | None = None
        model: str = params["model"]
        try:
            chunks = await self._client.chat.completions.create(
                **params, stream=True, stream_options={"include_usage": True}
            )
            async with chunks:
                async for chunk in chunks:
                    chunk_: ChatCompletionChunk = chunk
                    model = chunk_.model or model
                    if chunk_.usage is not None:
                        usage = _usage(chunk_.usage)
                    if not chunk_.choices:
                        continue
                    choice = chunk_.choices[0]
                    delta = choice.delta
                    fragment = delta.content or delta.refusal
                    if fragment:
                        texts.append(fragment)
                        yield ChatDelta(text=fragment)
                    for call in delta.tool_calls or ():
                        if call.index not in calls:
                            for index in sorted(calls):
                                if index < call.index and not calls[index].emitted:
                                    yield ChatDelta(tool_call=calls[index].finish(done))
                            calls[call.index] = _PendingCall()
                        calls[call.index].add(call.id, call.function)
                    if choice.finish_reason is not None:
                        finish = choice.finish_reason
                        for index in sorted(calls):
                            if not calls[index].emitted:
                                yield ChatDelta(tool_call=calls[index].finish(done))
        except self._openai.OpenAIError as exc:
            raise self._translate(exc) from exc
        for index in sorted(calls):
            if not calls[index].emitted:
                yield ChatDelta(tool_call=calls[index].finish(done))
        content: list[ContentPart] = []
        text = "".join(texts)
        if text:
            content.append(TextContent(text=text))
        content.extend(done)
        yield ChatDelta(
            response=ChatResponse(
                content=content,
                usage=usage,
                finish_reason=_finish_reason(finish, bool(done)),
                model=model,
            )
        )


class _PendingCall:
    """A streamed tool call being assembled from its fragments."""

    __slots__ = ("arguments", "emitted", "id", "name")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []
        self.emitted = False

    def add(self, call_id: str | None, function: Any) -> None:
        """Take one fragment (``function`` is the SDK's ``ChoiceDeltaToolCallFunction``)."""
        if call_id and not self.id:
            self.id = call_id
        if function is not None:
            if function.name and not self.name:
                self.name = function.name
            if function.arguments:
                self.arguments.append(function.arguments)

    def finish(self, done: list[ToolCallContent]) -> ToolCallContent:
        """The completed call (appended to ``done``); a missing id gets a fresh ``call_`` id."""
        self.emitted = True
        part = ToolCallContent(
            id=self.id or new_id("call"),
            name=self.name,
            arguments="".join(self.arguments) or "{}",
        )
        done.append(part)
        return part
