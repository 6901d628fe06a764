"""Write this release's snapshot samples into ``tests/compat/`` (STYLE.md rule 9).

Run once per snapshot format version, then commit the files; never regenerate old ones::

    PYTHONPATH=. python tests/compat/make_samples.py

It writes ``v<VERSION>_chat_memory.json`` and ``.msgpack``: a memory-store thread (carried inline)
with thread metadata, message metadata, a told fact, a two-call tool turn with its results, and
the answers of the offline model. ``test_compat.py`` decodes and resumes every sample forever.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import threadkit
from threadkit.snapshot import VERSION

HERE = Path(__file__).parent


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first.
        b: the second.
    """
    return a + b


def get_time(zone: str = "UTC") -> str:
    """The current time (fixed, so samples are reproducible)."""
    return f"12:00 {zone}"


async def main() -> None:
    async with await threadkit.open_backend({"store": "memory://"}) as backend:
        thread = await backend.create_thread(metadata={"sample": "v1_chat_memory"})
        await thread.add_message("user", "Hi! My name is Ada.", metadata={"lang": "en"})
        await thread.run(threadkit.Agent(instructions="Be brief."))
        await thread.add_message("user", "Please add 21 and 21, and tell me the time.")
        run = await thread.run(functions=[add, get_time])
        assert run.status is threadkit.RunStatus.COMPLETED, run
        for fmt in ("json", "msgpack"):
            path = HERE / f"v{VERSION}_chat_memory.{fmt}"
            path.write_bytes(await thread.serialize(fmt))
            print("wrote", path)


if __name__ == "__main__":
    asyncio.run(main())
