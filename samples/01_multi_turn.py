"""Multi-turn conversation: later answers depend on earlier turns (async API).

Run offline: ``python samples/01_multi_turn.py``. Set THREADKIT_MODEL=openai:gpt-4o-mini and
OPENAI_API_KEY to use a real model; THREADKIT_STORE to keep the thread (e.g. sqlite:///a.db).
"""

from __future__ import annotations

import asyncio

import threadkit

AGENT = threadkit.Agent(name="assistant", instructions="Answer in one short sentence.")


async def ask(thread: threadkit.AgentThread, text: str) -> str:
    """Add a user message, run the agent, return its answer."""
    await thread.add_message("user", text)
    run = await thread.run(AGENT)
    assert run.status is threadkit.RunStatus.COMPLETED, run.last_error
    async for message in thread.messages("desc", limit=1):
        return message.text
    return ""


async def main() -> None:
    # No argument: THREADKIT_* environment variables, else memory:// and the offline model.
    async with await threadkit.open_backend() as backend:
        thread = await backend.create_thread(metadata={"sample": "01_multi_turn"})
        for text in (
            "Hi! My name is Ada and my favourite colour is teal.",
            "What is my favourite colour?",
            "What is my name?",
        ):
            print(f"user:      {text}")
            print(f"assistant: {await ask(thread, text)}")

        # The whole thread, oldest first, in the order the store assigned (seq).
        print(f"\nthread {thread.id}:")
        async for m in thread.messages():
            print(f"  {m.seq:>2} {m.role:<9} {m.text}")


if __name__ == "__main__":
    asyncio.run(main())
