"""A minimal OpenAI-compatible ``/v1/chat/completions`` server for tests (starlette + uvicorn).

It answers from a queue of scripted :class:`Reply` objects, records every request body and its
headers, streams (SSE ``data: {chunk}`` lines ending ``data: [DONE]``, plus a usage chunk when
``stream_options.include_usage`` is set) and sends error statuses with ``retry-after`` headers.
With the queue empty it answers HTTP 500 with ``x-should-retry: false`` so a test that forgot a
reply fails at once instead of retrying.

Usage::

    with running_chat_server() as server:
        server.push(Reply(content="hi"))
        client = AsyncOpenAI(base_url=server.base_url, api_key="test")
        ...
        assert server.requests[0]["messages"] == [...]
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["ChatServer", "Reply", "running_chat_server"]


@dataclass
class Reply:
    """One scripted answer.

    Attributes:
        content: the assistant text (None for none).
        tool_calls: function calls, each ``{"id", "name", "arguments"}``.
        finish_reason: default ``tool_calls`` when there are tool calls, else ``stop``.
        usage: the ``usage`` object; None sends none.
        model: the ``model`` field; None echoes the requested model.
        status: the HTTP status; not 200 sends ``{"error": error}``.
        error: the error object for a non-200 status.
        headers: extra response headers (``retry-after``, ``retry-after-ms``...).
        delay: seconds to wait before answering.
        text_fragments: how a streamed answer splits ``content`` (default: 3 pieces).
        argument_fragments: how many pieces each streamed ``arguments`` string splits into.
    """

    content: str | None = None
    tool_calls: list[dict[str, str]] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, int] | None = field(
        default_factory=lambda: {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    )
    model: str | None = None
    status: int = 200
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    text_fragments: list[str] | None = None
    argument_fragments: int = 3

    @classmethod
    def failure(cls, status: int, message: str = "scripted failure", **headers: str) -> Reply:
        """An error reply; ``headers`` use underscores (``retry_after_ms="1"``)."""
        code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status, "server_error")
        return cls(
            status=status,
            error={"message": message, "type": code, "code": code, "param": None},
            headers={k.replace("_", "-"): v for k, v in headers.items()},
        )


def _split(text: str, pieces: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, pieces)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class ChatServer:
    """The scripted server's state, shared between the test and the server thread."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.base_url = ""
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._handle, methods=["POST"])])

    def push(self, *replies: Reply) -> None:
        """Queue replies, answered in order, one per request."""
        self.replies.extend(replies)

    def reset(self) -> None:
        """Forget queued replies and recorded requests."""
        self.replies.clear()
        self.requests.clear()
        self.headers.clear()

    async def _handle(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if not self.replies:
            return JSONResponse(
                {"error": {"message": "no scripted reply", "type": "server_error"}},
                status_code=500,
                headers={"x-should-retry": "false"},
            )
        reply = self.replies.popleft()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            return JSONResponse(
                {"error": reply.error}, status_code=reply.status, headers=reply.headers
            )
        model = reply.model or body["model"]
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._sse(reply, model, include_usage),
                media_type="text/event-stream",
                headers=reply.headers,
            )
        return JSONResponse(self._completion(reply, model), headers=reply.headers)

    @staticmethod
    def _finish(reply: Reply) -> str:
        return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")

    def _completion(self, reply: Reply, model: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in reply.tool_calls
            ]
        out: dict[str, Any] = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": self._finish(reply),
                    "logprobs": None,
                }
            ],
        }
        if reply.usage is not None:
            out["usage"] = reply.usage
        return out

    async def _sse(self, reply: Reply, model: str, include_usage: bool) -> AsyncIterator[str]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            data: dict[str, Any] = {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if include_usage:
                data["usage"] = None
            return f"data: {json.dumps(data)}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        if reply.content:
            for piece in reply.text_fragments or _split(reply.content, 3):
                yield chunk({"content": piece})
        for index, call in enumerate(reply.tool_calls):
            yield chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["name"], "arguments": ""},
                        }
                    ]
                }
            )
            for piece in _split(call["arguments"], reply.argument_fragments):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, self._finish(reply))
        if include_usage:
            final = {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [],
                "usage": reply.usage,
            }
            yield f"data: {json.dumps(final)}\n\n"
        yield "data: [DONE]\n\n"


@contextmanager
def running_chat_server() -> Iterator[ChatServer]:
    """Run a :class:`ChatServer` on a free 127.0.0.1 port in a background thread.

    Yields:
        The server, with ``base_url`` = ``http://127.0.0.1:<port>/v1``.
    """
    state = ChatServer()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(state.app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test chat server did not start")
        time.sleep(0.01)
    state.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield state
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
