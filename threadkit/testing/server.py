"""Run ``threadkit serve`` inside a test: on a free ``127.0.0.1`` port, in a background thread.

::

    from threadkit.testing.server import running_server

    with running_server({"store": "memory://"}) as server:
        client = OpenAI(base_url=server.openai_base_url, api_key="x")
        ...

or, with pytest, import the ``threadkit_server`` fixture into a ``conftest.py``
(``from threadkit.testing.server import threadkit_server``): it yields a :class:`RunningServer`
over a private in-memory store and the offline model.

The server runs its own event loop in its own thread, so synchronous SDK clients can call it
from the test thread. It opens its store itself (from the config's URL), in that loop.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from threadkit._extras import require
from threadkit.config import Config

__all__ = ["RunningServer", "running_server", "threadkit_server"]


class RunningServer:
    """A server started by :func:`running_server`.

    Attributes:
        base_url: ``http://127.0.0.1:<port>`` (no trailing slash).
        port: the TCP port it listens on.
        app: the Starlette application.
    """

    def __init__(self, app: Any, server: Any, thread: threading.Thread, port: int) -> None:
        self.app = app
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self._server = server
        self._thread = thread

    @property
    def openai_base_url(self) -> str:
        """The ``base_url`` for the ``openai`` SDK: ``<base_url>/v1``."""
        return f"{self.base_url}/v1"

    def foundry_endpoint(self, project: str = "p") -> str:
        """The ``endpoint`` for ``azure-ai-agents``: ``<base_url>/api/projects/<project>``."""
        return f"{self.base_url}/api/projects/{project}"

    @property
    def state(self) -> Any:
        """The app's :class:`~threadkit.server.state.ServerState` (store, engine, model)."""
        return self.app.state.threadkit

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down (the lifespan closes the store) and wait up to ``timeout`` s."""
        self._server.should_exit = True
        self._thread.join(timeout)


@contextmanager
def running_server(
    config: Config | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    api_keys: Sequence[str] = (),
    startup_timeout: float = 20.0,
    wrap: Callable[[Any], Any] | None = None,
    **app_options: Any,
) -> Iterator[RunningServer]:
    """Serve :func:`threadkit.server.create_app` on a free loopback port while the block runs.

    Args:
        config: the threadkit configuration (store URL, model...); a dict is usual in tests,
            e.g. ``{"store": "sqlite:///tmp/x.db"}``. None reads the environment.
        api_keys: keys the server requires (none: no authentication).
        startup_timeout: seconds to wait for the server to accept connections.
        wrap: wraps the ASGI app before serving, e.g.
            :meth:`threadkit.testing.faults.FaultInjector.wrap` to inject faults.
        **app_options: more keyword arguments of ``create_app`` (``model=``,
            ``max_body_bytes=``, ``poll_after_ms=``, ``requires_action_timeout=``).

    Yields:
        The :class:`RunningServer`; it is stopped when the block exits.

    Raises:
        RuntimeError: the server did not start (its startup error is logged by uvicorn).
        MissingExtraError: starlette or uvicorn is not installed.
    """
    uvicorn = require("uvicorn", "server", "threadkit.testing.server")
    from threadkit.server.app import create_app

    app = create_app(config, api_keys=api_keys, **app_options)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it; without it Nagle + delayed ACK add ~40 ms per request
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    served = wrap(app) if wrap is not None else app
    server = uvicorn.Server(
        uvicorn.Config(served, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"threadkit-serve-{port}", daemon=True
    )
    thread.start()
    running = RunningServer(app, server, thread, port)
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            running.stop()
            sock.close()
            raise RuntimeError(f"threadkit serve did not start on 127.0.0.1:{port}")
        time.sleep(0.005)
    try:
        yield running
    finally:
        running.stop()
        sock.close()


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed for the fixture
    pass
else:

    @pytest.fixture
    def threadkit_server() -> Iterator[RunningServer]:
        """A :class:`RunningServer` over a private in-memory store and the offline model."""
        with running_server({"store": "memory://", "model": "offline"}) as server:
            yield server
