"""Every snapshot sample a threadkit release wrote still decodes and resumes (STYLE.md rule 9).

The samples are committed files written by ``make_samples.py`` of their release; they are never
regenerated. Add the new release's samples next to the old ones when the format version changes.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

import threadkit
from threadkit.snapshot import FORMAT, VERSION, decode_snapshot
from threadkit.truncation import keep_tool_pairs
from threadkit.types import RunStatus, ToolCallContent, ToolResultContent

HERE = Path(__file__).parent
SAMPLES = sorted(p for p in HERE.iterdir() if p.suffix in (".json", ".msgpack"))
BLOBS = {p.name: p.read_bytes() for p in SAMPLES}


def test_the_v1_samples_are_kept() -> None:
    names = {p.name for p in SAMPLES}
    assert {"v1_chat_memory.json", "v1_chat_memory.msgpack"} <= names


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
async def test_sample_decodes_and_resumes(path: Path) -> None:
    blob = BLOBS[path.name]
    snap = decode_snapshot(blob)
    assert snap.format == FORMAT
    assert 1 <= snap.version <= VERSION
    assert path.name.startswith(f"v{snap.version}_")
    assert snap.backend == "chat"
    assert snap.inline is not None
    messages = snap.inline.messages
    assert snap.message_count == len(messages) == snap.last_seq
    assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
    assert all(m.thread_id == snap.thread_id for m in messages)
    assert keep_tool_pairs(messages) == messages  # every call has its result

    thread = await threadkit.resume(blob)
    try:
        assert thread.id == snap.thread_id
        assert [m async for m in thread.messages()] == messages
        await thread.add_message("user", "What is my name?")
        run = await thread.run()
        assert run.status is RunStatus.COMPLETED
        last = await anext(thread.messages(order="desc", limit=1))
        assert last.seq == len(messages) + 2
    finally:
        await thread.close()


@pytest.mark.parametrize("suffix", ["json", "msgpack"])
async def test_v1_chat_memory_content(suffix: str) -> None:
    snap = decode_snapshot(BLOBS[f"v1_chat_memory.{suffix}"])
    assert snap.version == 1
    assert snap.store == "memory://"
    assert snap.settings == {"model": "offline", "api_key_env": "OPENAI_API_KEY"}
    assert snap.inline is not None
    assert snap.inline.metadata == {"sample": "v1_chat_memory"}
    msgs = snap.inline.messages
    assert [m.role for m in msgs] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]
    assert msgs[0].text == "Hi! My name is Ada." and msgs[0].metadata == {"lang": "en"}
    assert msgs[1].text == "Noted: your name is Ada."
    calls = msgs[3].tool_calls
    assert [c.name for c in calls] == ["add", "get_time"]
    assert json.loads(calls[0].arguments) == {"a": 21, "b": 21}
    results = [p for m in msgs[4:6] for p in m.content]
    assert all(isinstance(p, ToolResultContent) for p in results)
    assert [(r.tool_call_id, r.output) for r in results] == [  # type: ignore[union-attr]
        (calls[0].id, "42"),
        (calls[1].id, "12:00 UTC"),
    ]
    assert all(isinstance(p, ToolCallContent) for p in msgs[3].content)
    assert msgs[6].text == "add returned 42. get_time returned 12:00 UTC."
    assert msgs[3].run_id == msgs[6].run_id != msgs[1].run_id

    thread = await threadkit.resume(BLOBS[f"v1_chat_memory.{suffix}"])
    try:
        await thread.add_message("user", "What is my name?")
        await thread.run()
        last = await anext(thread.messages(order="desc", limit=1))
        assert last.text == "Your name is Ada."
    finally:
        await thread.close()


def test_json_and_msgpack_samples_agree() -> None:
    a = decode_snapshot((HERE / "v1_chat_memory.json").read_bytes())
    b = decode_snapshot((HERE / "v1_chat_memory.msgpack").read_bytes())
    assert msgspec.structs.replace(a, created_at=0) == msgspec.structs.replace(b, created_at=0)
