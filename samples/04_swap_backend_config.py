"""The same application under different configurations: only the config changes.

``app(backend)`` is written once against the ``ThreadBackend`` / ``AgentThread`` API. By default
it runs on all five backends: local threads (``chat``) in a memory and a SQLite store, then the
four service-managed backends (``assistants``, ``foundry``, ``responses``, ``foundry-agents``)
against a ``threadkit serve`` this sample starts on 127.0.0.1. The transcripts come out
identical. (Without the ``server``/``openai``/``foundry`` extras it runs the local ones only.)

Run offline: ``python samples/04_swap_backend_config.py``.
Or one configuration of your own, as a threadkit.toml path or JSON:
``python samples/04_swap_backend_config.py '{"store": "redis://127.0.0.1:6379/0"}'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import threadkit


def calculator(expression: str) -> int | float:
    """Evaluate digits with + - * / and parentheses.

    Args:
        expression: e.g. "6 * 7".
    """
    if set(expression) - set("0123456789+-*/(). ") or "**" in expression:
        raise ValueError(f"not arithmetic: {expression!r}")
    value = float(eval(expression, {"__builtins__": {}}))  # only digits and operators remain
    return int(value) if value.is_integer() else value


async def app(backend: threadkit.ThreadBackend) -> list[str]:
    """The application: a short conversation with a tool call. Returns the transcript."""
    agent = threadkit.Agent(name="app", instructions="Be brief; use the calculator.")
    thread = await backend.create_thread(metadata={"app": "sample-04"})
    for text in ("My favourite number is 42.", "What is 6 * 7?", "What is my favourite number?"):
        await thread.add_message("user", text)
        await thread.run(agent, functions=[calculator])
    transcript = [f"{m.role}: {m.text}" async for m in thread.messages() if m.text]
    await thread.delete()
    return transcript


def service_configs(port: int) -> list[dict[str, Any]]:
    """The four service-managed backends, all pointed at the local threadkit serve."""
    openai_v1 = f"http://127.0.0.1:{port}/v1"
    project = f"http://127.0.0.1:{port}/api/projects/sample"
    local = {"allow_insecure_loopback": True, "api_key_env": "SAMPLE_KEY"}
    return [
        {"backend": "assistants", "base_url": openai_v1, "model": "offline", **local},
        {
            "backend": "foundry",
            "endpoint": project,
            "credential": "api_key",
            "model": "offline",
            **local,
        },
        {
            "backend": "responses",
            "base_url": openai_v1,
            "responses_mode": "conversation",
            "model": "offline",
            **local,
        },
        {"backend": "foundry-agents", "endpoint": project, "credential": "api_key", **local},
    ]


@contextlib.contextmanager
def local_service() -> Iterator[int | None]:
    """Start threadkit serve on a free 127.0.0.1 port when its extras are installed."""
    needed = ("uvicorn", "starlette", "openai", "azure.ai.agents", "azure.ai.projects")
    if not all(importlib.util.find_spec(name.split(".")[0]) for name in needed):
        print("(threadkit[server,openai,foundry] not installed: local backends only)")
        yield None
        return
    from threadkit.testing.server import running_server

    os.environ.setdefault("SAMPLE_KEY", "local")  # threadkit serve runs without keys here
    with running_server({"store": "memory://", "model": "offline"}) as server:
        yield server.port


def configs_from_argv(workdir: Path, port: int | None) -> list[dict[str, Any] | str]:
    """Configurations to run: argv[1] (a TOML path or a JSON object), or all five backends."""
    if len(sys.argv) > 1:
        arg = sys.argv[1]
        return [json.loads(arg) if arg.lstrip().startswith("{") else arg]
    local: list[dict[str, Any] | str] = [
        {"store": "memory://"},
        {"store": f"sqlite:///{workdir / 'app.db'}"},
    ]
    return local + (service_configs(port) if port is not None else [])


async def run_all(port: int | None) -> None:
    with tempfile.TemporaryDirectory(prefix="threadkit-sample-") as tmp:
        results: list[list[str]] = []
        for config in configs_from_argv(Path(tmp), port):
            async with await threadkit.open_backend(config) as backend:
                transcript = await app(backend)
                store = backend.settings.get("store")
                kind = backend.kind
            results.append(transcript)
            where = f"store {store}" if store else "on threadkit serve"
            print(f"{kind} backend, config {config!r} ({where}):")
            for line in transcript:
                print(f"  {line}")
    same = all(r == results[0] for r in results)
    print(f"same transcript under all {len(results)} configuration(s): {same}")
    if not same:
        raise SystemExit(1)


def main() -> None:
    with local_service() as port:
        asyncio.run(run_all(port if len(sys.argv) == 1 else None))


if __name__ == "__main__":
    main()
