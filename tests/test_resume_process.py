"""Cross-process resume: a thread suspended here is resumed by a real Python subprocess, which
adds to it and suspends it again; back here, the whole history is intact and continuous."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import threadkit
from threadkit.snapshot import decode_snapshot
from threadkit.types import RunStatus

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import asyncio, json, os, sys
import threadkit

def add(a: int, b: int) -> int:
    '''Add two integers.'''
    return a + b

async def main(src: str, dst: str, fmt: str) -> None:
    with open(src, "rb") as f:
        blob = f.read()
    thread = await threadkit.resume(blob)
    async with thread:
        await thread.add_message("user", "What is my favourite colour?")
        recall = await thread.run()
        await thread.add_message("user", "Please add 20 and 20.")
        tools = await thread.run(functions=[add])
        with open(dst, "wb") as f:
            f.write(await thread.serialize(fmt))
        print(json.dumps({
            "pid": os.getpid(),
            "thread_id": thread.id,
            "statuses": [recall.status.value, tools.status.value],
        }))

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
"""


async def run_child(src: Path, dst: Path, fmt: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(src),
        str(dst),
        fmt,
        cwd=str(src.parent),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def check_resumed_history(
    blob: bytes, thread_id: str, before: list[Any], *, shared_store: bool
) -> None:
    thread = await threadkit.resume(blob)
    try:
        assert thread.id == thread_id
        msgs = [m async for m in thread.messages()]
        # everything from before the suspension is there, unchanged, first
        assert msgs[: len(before)] == before
        # seq is continuous across the processes
        assert [m.seq for m in msgs] == list(range(1, len(msgs) + 1))
        texts = [(m.role, m.text) for m in msgs[len(before) :]]
        assert texts[0] == ("user", "What is my favourite colour?")
        # the fact told before the suspension was recalled after it, in the other process
        assert texts[1] == ("assistant", "Your favourite colour is teal.")
        assert texts[2] == ("user", "Please add 20 and 20.")
        roles = [m.role for m in msgs[len(before) + 3 :]]
        assert roles == ["assistant", "tool", "assistant"]
        call = msgs[len(before) + 3].tool_calls[0]
        result = msgs[len(before) + 4].tool_results[0]
        assert call.name == "add" and result.tool_call_id == call.id and result.output == "40"
        assert msgs[-1].text == "add returned 40."
        runs = [r async for r in thread.runs(order="asc")]
        if shared_store:  # the runs the child made are recorded in the shared store
            assert [r.status for r in runs] == [RunStatus.COMPLETED] * 3
        else:  # an inline snapshot carries the messages only
            assert runs == []
        # and the thread goes on here
        await thread.add_message("user", "What is my favourite colour?")
        await thread.run()
        last = await anext(thread.messages(order="desc", limit=1))
        assert last.text == "Your favourite colour is teal."
        assert last.seq == len(msgs) + 2
    finally:
        await thread.close()


async def test_sqlite_thread_resumed_in_a_subprocess(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/threads.db"
    async with await threadkit.open_backend({"store": url}) as backend:
        thread = await backend.create_thread(metadata={"who": "parent"})
        await thread.add_message("user", "Hello. My favourite colour is teal.")
        run = await thread.run()
        assert run.status is RunStatus.COMPLETED
        before = [m async for m in thread.messages()]
        assert len(before) == 2
        src, dst = tmp_path / "parent.snapshot", tmp_path / "child.snapshot"
        src.write_bytes(await thread.serialize())

        # the parent keeps its store open while the child works on the same file
        child = await run_child(src, dst, "json")
        assert child["pid"] != os.getpid()
        assert child["thread_id"] == thread.id
        assert child["statuses"] == ["completed", "completed"]

        snap = decode_snapshot(dst.read_bytes())
        assert snap.thread_id == thread.id and snap.inline is None
        assert snap.message_count == snap.last_seq == 8
        # the parent's own thread object sees the child's messages in the shared store
        assert len([m async for m in thread.messages()]) == 8
        assert (await thread.info()).metadata == {"who": "parent"}

    await check_resumed_history(dst.read_bytes(), snap.thread_id, before, shared_store=True)


async def test_memory_thread_travels_inline_to_a_subprocess_and_back(tmp_path: Path) -> None:
    async with await threadkit.open_backend({"store": "memory://"}) as backend:
        thread = await backend.create_thread()
        await thread.add_message("user", "My favourite colour is teal.")
        await thread.run()
        before = [m async for m in thread.messages()]
        src, dst = tmp_path / "parent.snapshot", tmp_path / "child.snapshot"
        src.write_bytes(await thread.serialize("msgpack"))

    child = await run_child(src, dst, "msgpack")
    assert child["statuses"] == ["completed", "completed"]
    snap = decode_snapshot(dst.read_bytes())
    assert snap.inline is not None and len(snap.inline.messages) == 8
    await check_resumed_history(dst.read_bytes(), snap.thread_id, before, shared_store=False)
