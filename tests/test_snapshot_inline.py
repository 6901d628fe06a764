"""Inline (memory-store) snapshots: what the fast path must keep.

A snapshot that carries its thread inline is rebuilt with ``import_thread``; these tests hold
its checks to the documented errors on hostile input (nothing is created), check that what
``check_import`` hands back is what the store keeps, and that ``serialize`` records a count and
newest ``seq`` that agree with the messages it carries.
"""

from __future__ import annotations

import gc
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

import threadkit
from threadkit._ids import new_id
from threadkit.errors import OrphanToolResultError, ValidationError
from threadkit.snapshot import (
    FORMAT,
    VERSION,
    InlineThread,
    Snapshot,
    decode_snapshot,
    encode_snapshot,
)
from threadkit.stores.base import check_import, check_tool_results, tool_ids
from threadkit.stores.memory import MemoryStore
from threadkit.testing.store_suite import tool_call, tool_result, user
from threadkit.types import Message, TextContent, ToolCallContent, ToolResultContent

TID = "thread_inline"


def numbered(*messages: Message, thread_id: str = TID) -> list[Message]:
    """The messages with ids ``msg_1``... and seq 1, 2, 3... in this thread."""
    return [
        msgspec.structs.replace(m, id=f"msg_{i}", seq=i, thread_id=thread_id, created_at=1)
        for i, m in enumerate(messages, 1)
    ]


def blob_of(messages: list[Message], fmt: Any = "json", thread_id: str = TID) -> bytes:
    last = messages[-1].seq if messages else 0
    snap = Snapshot(
        format=FORMAT,
        version=VERSION,
        backend="chat",
        thread_id=thread_id,
        created_at=1,
        settings={"model": "offline"},
        store="memory://",
        message_count=len(messages),
        last_seq=last,
        inline=InlineThread(created_at=1, metadata={"k": "v"}, messages=messages),
    )
    return encode_snapshot(snap, fmt)


@pytest.fixture
async def space() -> AsyncIterator[str]:
    """The URL of a fresh named memory space (dropped afterwards)."""
    name = new_id("inline")
    yield f"memory://{name}"
    MemoryStore.drop(name)


async def threads_in(url: str) -> list[str]:
    watcher = MemoryStore.from_url(url)
    return [t.id for t in (await watcher.list_threads(limit=None)).data]


def hostile() -> list[tuple[str, list[Message], type[Exception]]]:
    good = numbered(user("a"), tool_call("call_1"), tool_result("call_1"), user("b"))
    swapped = [*good]
    swapped[1], swapped[2] = swapped[2], swapped[1]
    return [
        (
            "repeated id",
            [good[0], msgspec.structs.replace(good[1], id="msg_1"), *good[2:]],
            ValidationError,
        ),
        ("empty id", [msgspec.structs.replace(good[0], id=""), *good[1:]], ValidationError),
        ("unordered seq", [good[0], good[2], good[1], good[3]], ValidationError),
        ("repeated seq", [good[0], msgspec.structs.replace(good[1], seq=1)], ValidationError),
        ("seq zero", [msgspec.structs.replace(good[0], seq=0), *good[1:]], ValidationError),
        (
            "foreign thread id",
            [*good[:3], msgspec.structs.replace(good[3], thread_id="thread_other")],
            ValidationError,
        ),
        (
            "result before its call",
            [msgspec.structs.replace(m, seq=i) for i, m in enumerate(swapped, 1)],
            OrphanToolResultError,
        ),
        (
            "result of no call",
            numbered(user("a"), tool_result("call_x")),
            OrphanToolResultError,
        ),
        (
            "answered twice",
            numbered(tool_call("call_1"), tool_result("call_1"), tool_result("call_1")),
            OrphanToolResultError,
        ),
        (
            "repeated tool call id",
            numbered(tool_call("call_1"), tool_result("call_1"), tool_call("call_1")),
            ValidationError,
        ),
    ]


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
@pytest.mark.parametrize(("why", "messages", "error"), hostile(), ids=[h[0] for h in hostile()])
async def test_hostile_inline_threads_are_refused_and_create_nothing(
    space: str, fmt: str, why: str, messages: list[Message], error: type[Exception]
) -> None:
    blob = blob_of(messages, fmt)
    before = await threads_in(space)
    with pytest.raises(error):
        await threadkit.resume(blob, {"store": space})
    with pytest.raises(error):
        await threadkit.resume(blob)  # a private memory store
    assert await threads_in(space) == before
    # and the same messages, in order, resume fine once the fault is gone
    fine = numbered(user("a"), tool_call("call_1"), tool_result("call_1"), user("b"))
    thread = await threadkit.resume(blob_of(fine, fmt), {"store": space})
    assert [m.id async for m in thread.messages()] == ["msg_1", "msg_2", "msg_3", "msg_4"]
    await thread.close()


async def test_messages_without_thread_id_take_the_snapshot_thread(space: str) -> None:
    # an older or hand-made writer may leave thread_id empty; the envelope names the thread
    messages = numbered(user("a"), user("b"), user("c"))
    messages[1] = msgspec.structs.replace(messages[1], thread_id="")
    raw = json.loads(blob_of(messages))
    assert raw["inline"]["messages"][1]["thread_id"] == ""
    thread = await threadkit.resume(json.dumps(raw), {"store": space})
    got = [m async for m in thread.messages()]
    assert [m.thread_id for m in got] == [TID] * 3
    assert [m.text for m in got] == ["a", "b", "c"]
    await thread.close()


def test_check_import_hands_back_what_it_worked_out() -> None:
    messages = numbered(user("a"), tool_call("call_1", "call_2"), tool_result("call_1"))
    messages[2] = msgspec.structs.replace(messages[2], seq=7, thread_id="")  # a gap, unowned
    plan = check_import(TID, messages)
    assert plan.seqs == [1, 2, 7]
    assert plan.seq_of == {"msg_1": 1, "msg_2": 2, "msg_3": 7}
    assert plan.calls == ["call_1", "call_2"] and plan.results == ["call_1"]
    assert plan.unowned
    assert not check_import(TID, messages[:2]).unowned
    empty = check_import(TID, [])
    assert empty.seqs == [] and empty.seq_of == {} and not empty.unowned


def test_check_import_reports_bad_order_before_repeated_ids() -> None:
    a, b = numbered(user("a"), user("b"))
    with pytest.raises(ValidationError, match="seq"):
        check_import(TID, [b, msgspec.structs.replace(a, id=b.id)])
    with pytest.raises(ValidationError, match="ids"):
        check_import(TID, [a, msgspec.structs.replace(b, id=a.id)])


async def test_import_keeps_the_checked_index_and_goes_on(space: str) -> None:
    store = MemoryStore.from_url(space)
    messages = numbered(user("a"), tool_call("call_1", "call_2"), tool_result("call_1"))
    messages[2] = msgspec.structs.replace(messages[2], seq=5)
    info = await store.import_thread(TID, messages, metadata={"k": "v"}, created_at=3)
    assert info.message_count == 3 and info.created_at == 3
    assert (await store.get_message(TID, "msg_3")).seq == 5
    (nxt,) = await store.append(TID, [tool_result("call_2")])
    assert nxt.seq == 6
    with pytest.raises(OrphanToolResultError):
        await store.append(TID, [tool_result("call_1")])
    with pytest.raises(ValidationError):
        await store.append(TID, [msgspec.structs.replace(user(), id="msg_1")])


async def test_serialize_records_count_and_newest_seq_of_what_it_carries(space: str) -> None:
    backend = await threadkit.open_backend({"store": space})
    thread = await backend.create_thread()
    for text in "abcde":
        await thread.add_message("user", text)
    doomed = (await thread.list_messages(limit=5)).data[4]
    assert await backend.store.delete_message(thread.id, doomed.id)  # type: ignore[attr-defined]
    snap = decode_snapshot(await thread.serialize())
    assert snap.inline is not None
    assert [m.text for m in snap.inline.messages] == ["a", "b", "c", "d"]
    assert snap.message_count == 4 and snap.last_seq == 4
    await thread.add_message("user", "f")  # a gap: seq 6 after 4
    snap = decode_snapshot(await thread.serialize("msgpack"))
    assert snap.inline is not None
    assert snap.message_count == 5 and snap.last_seq == 6
    assert [m.seq for m in snap.inline.messages] == [1, 2, 3, 4, 6]
    await backend.close()


async def test_a_large_snapshot_leaves_the_collector_as_it_found_it() -> None:
    backend = await threadkit.open_backend({"store": "memory://"})
    thread = await backend.create_thread()
    for _ in range(4):
        await thread.append_messages([user("x" * 200) for _ in range(100)])
    blob = await thread.serialize()
    assert len(blob) > 64 * 1024  # over the size where decoding pauses the collector
    assert gc.isenabled()
    assert len(decode_snapshot(blob).inline.messages) == 400  # type: ignore[union-attr]
    assert gc.isenabled()
    gc.disable()
    try:
        decode_snapshot(blob)
        assert not gc.isenabled()  # a caller's own pause is kept
    finally:
        gc.enable()
    await backend.close()


def verdict(fn: Any, *args: Any) -> tuple[str, str] | None:
    try:
        fn(*args)
    except ValidationError as exc:  # OrphanToolResultError included
        return type(exc).__name__, str(exc)
    return None


def test_check_import_judges_tool_parts_as_check_tool_results_does() -> None:
    # the import walks tool parts once; the append path's checker is the reference
    rng = random.Random(20_260_522)
    pool = ["call_a", "call_b", "call_c", "call_d"]
    outcomes = set()
    for _ in range(3_000):
        parts: list[list[Any]] = []
        for _ in range(rng.randint(1, 6)):
            message: list[Any] = []
            for _ in range(rng.randint(0, 3)):
                kind = rng.random()
                if kind < 0.4:
                    message.append(ToolCallContent(id=rng.choice(pool), name="f"))
                elif kind < 0.8:
                    message.append(ToolResultContent(tool_call_id=rng.choice(pool), output="1"))
                else:
                    message.append(TextContent(text="t"))
            parts.append(message)
        messages = [
            Message(id=f"msg_{i}", thread_id=TID, role="assistant", content=c, seq=i)
            for i, c in enumerate(parts, 1)
        ]
        expected = verdict(check_tool_results, messages, {})
        assert verdict(check_import, TID, messages) == expected
        if expected is None:
            plan = check_import(TID, messages)
            assert (plan.calls, plan.results) == tool_ids(messages)
        outcomes.add(expected[0] if expected else "ok")
    assert outcomes == {"ok", "ValidationError", "OrphanToolResultError"}
