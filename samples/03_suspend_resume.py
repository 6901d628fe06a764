"""Suspend a thread to a snapshot file and resume it in another process (async API).

The first process talks, serializes the thread (``thread.serialize()``), closes everything and
starts a second process (this same file with ``--resume FILE``), which rebuilds the thread with
``threadkit.resume(snapshot)``, continues the conversation and exits. The first process then
checks the history: nothing lost, the new turn there.

Run offline: ``python samples/03_suspend_resume.py`` (SQLite in a temporary directory).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import threadkit

AGENT = threadkit.Agent(name="assistant", instructions="Answer in one short sentence.")


async def talk(workdir: Path) -> tuple[bytes, list[str]]:
    """Start a conversation in SQLite; return the thread's snapshot and its messages' text."""
    config = {"store": f"sqlite:///{workdir / 'threads.db'}"}
    async with await threadkit.open_backend(config) as backend:
        thread = await backend.create_thread()
        await thread.add_message("user", "My name is Ada and my favourite colour is teal.")
        await thread.run(AGENT)
        snapshot = await thread.serialize()  # JSON bytes; never credentials
        return snapshot, [m.text async for m in thread.messages()]


async def continue_thread(snapshot: bytes, question: str) -> None:
    """Rebuild the thread from its snapshot (any process), ask one more question."""
    # The snapshot names the backend and store; no configuration is needed.
    thread = await threadkit.resume(snapshot)
    try:
        count = len([m async for m in thread.messages()])
        print(f"[process {os.getpid()}] resumed thread {thread.id} with {count} messages")
        await thread.add_message("user", question)
        await thread.run(AGENT)
        async for m in thread.messages("desc", limit=1):
            print(f"[process {os.getpid()}] assistant: {m.text}")
    finally:
        await thread.close()


async def history(snapshot: bytes) -> list[str]:
    """The thread's messages' text, oldest first."""
    thread = await threadkit.resume(snapshot)
    try:
        return [m.text async for m in thread.messages()]
    finally:
        await thread.close()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="threadkit-sample-") as tmp:
        workdir = Path(tmp)
        snapshot, before = asyncio.run(talk(workdir))
        snapshot_file = workdir / "thread.json"
        snapshot_file.write_bytes(snapshot)
        print(f"[process {os.getpid()}] {len(before)} messages; snapshot: {snapshot_file}")

        # A brand-new interpreter continues the thread; this one holds nothing of it.
        subprocess.run([sys.executable, __file__, "--resume", str(snapshot_file)], check=True)

        after = asyncio.run(history(snapshot))
        assert after[: len(before)] == before, "history changed"
        pid = os.getpid()
        print(f"[process {pid}] history intact: {len(before)} messages before, {len(after)} after")
        print(f"[process {pid}] last answer: {after[-1]}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--resume":
        blob = Path(sys.argv[2]).read_bytes()
        asyncio.run(continue_thread(blob, "What is my favourite colour?"))
    else:
        main()
