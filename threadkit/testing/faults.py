"""Fault injection in front of ``threadkit serve``: 429s with retry-after, 500s, slow answers.

:class:`FaultInjector` is an ASGI middleware. Each :class:`Fault` matches requests by method and a
path regex and, for its first ``times`` matches, answers with an error status (in the OpenAI error
shape) or delays the real answer. Tests use it to prove that adapters retry, back off and time
out as documented::

    faults = FaultInjector([Fault(status=429, times=1, retry_after=0.1, path=r"/runs/")])
    with running_server({"store": "memory://"}, wrap=faults.wrap) as server:
        ...
    assert faults.hits == 1
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Fault", "FaultInjector"]

Scope = dict[str, Any]


@dataclass
class Fault:
    """One injected fault.

    Attributes:
        status: the HTTP status to answer with instead of the real answer (None: pass the
            request through, after ``delay``).
        times: how many matching requests get the fault (then it is spent).
        path: a regex searched in the request path.
        method: the HTTP method to match, or None for any.
        retry_after: seconds to send in ``retry-after`` (and ``retry-after-ms``), or None.
        delay: seconds to wait before answering (the fault's or the real answer).
    """

    status: int | None = None
    times: int = 1
    path: str = ""
    method: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    hits: int = field(default=0, init=False)

    def matches(self, scope: Scope) -> bool:
        if self.hits >= self.times:
            return False
        if self.method and scope.get("method") != self.method.upper():
            return False
        return re.search(self.path, scope.get("path", "")) is not None


class FaultInjector:
    """ASGI middleware applying :class:`Fault` rules, first match wins.

    Args:
        faults: the rules (they are consumed as they fire).
    """

    def __init__(self, faults: Sequence[Fault]) -> None:
        self.faults = list(faults)
        self.app: Any = None
        self._lock = threading.Lock()

    def wrap(self, app: Any) -> Any:
        """Return an ASGI app that applies the faults in front of ``app``."""
        self.app = app

        async def app_with_faults(scope: Scope, receive: Any, send: Any) -> None:
            await self.asgi(scope, receive, send)

        return app_with_faults

    @property
    def hits(self) -> int:
        """How many requests got a fault so far."""
        return sum(f.hits for f in self.faults)

    async def asgi(self, scope: Scope, receive: Any, send: Any) -> None:
        fault: Fault | None = None
        if scope.get("type") == "http":
            with self._lock:
                for f in self.faults:
                    if f.matches(scope):
                        f.hits += 1
                        fault = f
                        break
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {
                "error": {
                    "message": f"injected fault: HTTP {fault.status}",
                    "type": "rate_limit_error" if fault.status == 429 else "server_error",
                    "param": None,
                    "code": "rate_limit_exceeded" if fault.status == 429 else "server_error",
                }
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if fault.retry_after is not None:
            headers.append((b"retry-after", f"{fault.retry_after:g}".encode()))
            headers.append((b"retry-after-ms", str(int(fault.retry_after * 1000)).encode()))
        while True:  # drain the request body before answering
            message = await receive()
            if message.get("type") != "http.request" or not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": fault.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
