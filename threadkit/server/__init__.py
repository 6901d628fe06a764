"""``threadkit serve``: a local service that speaks the Assistants v2, Foundry Agent Service
(classic) and Chat Completions wire protocols, backed by any threadkit store and chat model.

Real SDKs run against it unchanged::

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="x")

    from azure.ai.agents import AgentsClient
    agents = AgentsClient(endpoint="http://127.0.0.1:8000/api/projects/p", credential=...)

Start it with ``threadkit serve`` (or ``python -m threadkit.server``), with :func:`serve`, or
build the ASGI app with :func:`create_app`. Starlette and uvicorn are the ``server`` extra
(``pip install "threadkit[server]"``): importing this package without them raises
:class:`~threadkit.errors.MissingExtraError` naming that command. ``import threadkit`` never
imports this package; the app modules load on first use of :func:`create_app` / :func:`serve`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from threadkit._extras import require

if TYPE_CHECKING:
    from threadkit.server.app import create_app
    from threadkit.server.cli import serve

__all__ = ["create_app", "serve"]

require("starlette", "server", "threadkit serve")

_LAZY = {
    "create_app": "threadkit.server.app",
    "serve": "threadkit.server.cli",
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'threadkit.server' has no attribute {name!r}")
    return getattr(importlib.import_module(target), name)
