"""agent-framework interop: an agent-framework ``Agent`` keeps its history in a threadkit store.

1. An ``Agent`` with a :class:`ThreadkitHistoryProvider` talks for a turn; its history goes into a
   threadkit store (SQLite by default), one thread per session id.
2. A brand-new agent and provider (as another process would make them) continue the same session
   from the store alone.
3. The thread is exported as an agent-framework session dict, imported into another threadkit
   backend, and continued by an agent on agent-framework's own in-memory history.

Run offline: ``python samples/06_agent_framework.py``. The agent uses agent-framework's own
``OpenAIChatCompletionClient``; offline it talks to ``threadkit serve``'s
``/v1/chat/completions`` on 127.0.0.1 with the offline model. Set OPENAI_API_KEY (and
OPENAI_MODEL, default gpt-4o-mini) to use OpenAI instead, THREADKIT_STORE to pick the store.
Needs ``pip install "threadkit[agent-framework,server]" agent-framework-openai``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from agent_framework import Agent, AgentSession
from agent_framework.openai import OpenAIChatCompletionClient

import threadkit
from threadkit.adapters.agent_framework import (
    ThreadkitHistoryProvider,
    export_session,
    import_session,
)

INSTRUCTIONS = "Answer in one short sentence."


@contextlib.contextmanager
def endpoint() -> Iterator[tuple[str | None, str, str]]:
    """``(base_url, model, api_key)``: OpenAI when OPENAI_API_KEY is set, else a local
    ``threadkit serve`` with the offline model."""
    if os.environ.get("OPENAI_API_KEY"):
        yield None, os.environ.get("OPENAI_MODEL", "gpt-4o-mini"), os.environ["OPENAI_API_KEY"]
        return
    from threadkit.testing.server import running_server

    with running_server({"store": "memory://", "model": "offline"}) as server:
        yield server.openai_base_url, "offline", "offline"


async def ask(agent: Agent, session: AgentSession, text: str, label: str = "") -> str:
    """Run one turn and print it."""
    response = await agent.run(text, session=session)
    print(f"{label}user:      {text}")
    print(f"{label}assistant: {response.text}")
    return response.text


async def main(store_url: str) -> None:
    session_id = f"sample-{uuid.uuid4().hex[:8]}"
    with endpoint() as (base_url, model, api_key):
        client = OpenAIChatCompletionClient(model=model, api_key=api_key, base_url=base_url)

        # 1. history in a threadkit store, keyed by the session id
        provider = ThreadkitHistoryProvider(store_url)
        agent = Agent(client=client, instructions=INSTRUCTIONS, context_providers=[provider])
        await ask(
            agent,
            AgentSession(session_id=session_id),
            "Hi! My name is Ada and my favourite colour is teal.",
        )
        await provider.aclose()

        # 2. a new agent and provider, nothing shared but the store URL and the session id
        provider = ThreadkitHistoryProvider(store_url)
        agent = Agent(client=client, instructions=INSTRUCTIONS, context_providers=[provider])
        await ask(
            agent,
            AgentSession(session_id=session_id),
            "What is my favourite colour?",
            "[new agent, same session] ",
        )
        thread_id = provider.thread_id(session_id)
        await provider.aclose()

        # the conversation is an ordinary threadkit thread
        async with await threadkit.open_backend({"store": store_url}) as backend:
            thread = await backend.get_thread(thread_id)
            messages = [m async for m in thread.messages()]
            print(f"\nthread {thread.id}: {len(messages)} messages")
            for m in messages:
                print(f"  {m.seq:>2} {m.role:<9} {m.text}")
            # 3. out as an agent-framework session dict...
            exported = await export_session(thread)
        count = len(exported["state"]["in_memory"]["messages"])
        print(f"\nexported session {exported['session_id']}: {count} messages")
        print(f"  ({len(json.dumps(exported))} bytes of JSON)")

        # ...into another threadkit backend...
        moved = await import_session(exported, backend={"store": "memory://"})
        async with moved:
            n = len([m async for m in moved.messages()])
            print(f"imported into memory://: thread {moved.id} with {n} messages")

        # ...and on with agent-framework's own in-memory history
        agent = Agent(client=client, instructions=INSTRUCTIONS)
        await ask(
            agent,
            AgentSession.from_dict(exported),
            "What is my name?",
            "[agent-framework in-memory session] ",
        )
        await client.client.close()


if __name__ == "__main__":
    url = os.environ.get("THREADKIT_STORE")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(url or f"sqlite:///{Path(tmp) / 'agent_framework.db'}"))
