"""The ``assistants`` backend: OpenAI Assistants v2 threads, here served by ``threadkit serve``.

The Assistants API was sunset by OpenAI in 2026; code written for it keeps working against
``threadkit serve`` (or any other Assistants-v2 endpoint). This sample starts the server on
127.0.0.1 with a SQLite store and the offline model, then uses threadkit's ``assistants`` backend:
a conversation, a tool call through ``requires_action``, a snapshot resumed later, and the run
evidence the service recorded.

Run offline: ``python samples/09_assistants.py`` (needs ``threadkit[server,openai]``).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import threadkit
from threadkit.testing.server import running_server


def calculator(expression: str) -> str:
    """Evaluate digits with + - * / and parentheses.

    Args:
        expression: e.g. "12 * (3 + 4)".
    """
    if set(expression) - set("0123456789+-*/(). "):
        raise ValueError(f"not arithmetic: {expression!r}")
    return str(eval(expression, {"__builtins__": {}}))  # only digits and operators remain


async def conversation(config: dict[str, object]) -> bytes:
    agent = threadkit.Agent(name="helper", instructions="Be brief.", model="offline")
    async with await threadkit.open_backend(config) as backend:
        thread = await backend.create_thread(metadata={"sample": "09"})
        print(f"thread {thread.id} created on the Assistants endpoint")
        await thread.add_message("user", "My name is Ada.")
        run = await thread.run(agent)
        print(f"run {run.id}: {run.status.value}, agent {run.agent_id}")
        await thread.add_message("user", "Please compute 12 * (3 + 4)")
        run = await thread.run(agent, functions=[calculator])
        steps = [s async for s in thread.run_steps(run.id)]
        print(f"run {run.id}: {run.status.value}, steps {[s.type for s in steps]}")
        last = [m async for m in thread.messages("desc", limit=1)][0]
        print(f"assistant: {last.text}")
        return await thread.serialize()


async def resumed(snapshot: bytes) -> None:
    async with await threadkit.resume(snapshot) as thread:
        await thread.add_message("user", "What is my name?")
        await thread.run(threadkit.Agent(name="helper", instructions="Be brief.", model="offline"))
        texts = [f"{m.role}: {m.text}" async for m in thread.messages()]
        print(f"resumed thread {thread.id}: {len(texts)} messages")
        print(texts[-1])


def main() -> None:
    os.environ.setdefault("SAMPLE_KEY", "local")  # threadkit serve runs without keys here
    with tempfile.TemporaryDirectory(prefix="threadkit-09-") as tmp:
        store = f"sqlite:///{Path(tmp) / 'serve.db'}"
        with running_server({"store": store, "model": "offline"}) as server:
            print(f"threadkit serve on {server.openai_base_url}")
            config: dict[str, object] = {
                "backend": "assistants",
                "base_url": server.openai_base_url,
                "allow_insecure_loopback": True,  # plain http, to 127.0.0.1 only
                "api_key_env": "SAMPLE_KEY",  # the NAME of the variable, never the key
            }
            snapshot = asyncio.run(conversation(config))
            print(f"snapshot: {len(snapshot)} bytes, no credentials")
            asyncio.run(resumed(snapshot))


if __name__ == "__main__":
    main()
