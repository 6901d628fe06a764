"""The synchronous facade: the same flows as the async API, without ``await``."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from threadkit import Agent, TruncationStrategy, function_tool, sync
from threadkit.errors import (
    ActiveRunError,
    InvalidRunStateError,
    SnapshotError,
    ThreadNotFoundError,
    ValidationError,
)
from threadkit.snapshot import decode_snapshot
from threadkit.types import RunStatus, ToolCallsDetails, ToolOutput


@pytest.fixture
def backend() -> Iterator[sync.SyncBackend]:
    with sync.open_backend({"store": "memory://"}) as b:
        yield b


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


async def slow_time(zone: str = "UTC") -> str:
    """The time (async)."""
    await asyncio.sleep(0)
    return f"12:00 {zone}"


def test_a_whole_conversation(backend: sync.SyncBackend) -> None:
    assert backend.kind == "chat"
    assert backend.settings["store"] == "memory://"
    thread = backend.create_thread(metadata={"user": "u1"})
    assert thread.backend == "chat" and thread.id.startswith("thread_")
    assert repr(thread).startswith("<SyncAgentThread")

    first = thread.add_message("user", "Hi, my name is Ada.")
    assert first.seq == 1 and thread.get_message(first.id) == first
    run = thread.run(Agent(instructions="Be brief."))
    assert run.status is RunStatus.COMPLETED

    thread.add_message("user", "Please multiply 6 by 6 and tell me the time.")
    run = thread.run(functions=[multiply, slow_time])
    assert run.status is RunStatus.COMPLETED, run.last_error
    steps = list(thread.run_steps(run.id))
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    assert isinstance(steps[0].step_details, ToolCallsDetails)
    outputs = {c.function.name: c.function.output for c in steps[0].step_details.tool_calls}
    assert outputs == {"multiply": "36", "slow_time": "12:00 UTC"}

    msgs = list(thread.messages())
    assert [m.seq for m in msgs] == list(range(1, len(msgs) + 1))
    assert msgs[-1].text == "multiply returned 36. slow_time returned 12:00 UTC."
    assert [m.seq for m in thread.messages("desc", limit=2)] == [len(msgs), len(msgs) - 1]
    assert [m.seq for m in thread.messages(after=msgs[2].id, limit=1)] == [4]

    runs = list(thread.runs())
    assert len(runs) == 2 and runs[0].id == run.id  # newest first
    assert next(thread.runs(order="asc", limit=1)).id == runs[1].id

    info = thread.info()
    assert info.metadata == {"user": "u1"} and info.message_count == len(msgs)
    exported = thread.export()
    assert exported["format"] == "threadkit.export"
    assert len(exported["messages"]) == len(msgs) and len(exported["runs"]) == 2
    json.dumps(exported)  # JSON-ready

    assert [t.id for t in backend.list_threads(metadata={"user": "u1"})] == [thread.id]
    assert list(backend.list_threads(metadata={"user": "nobody"})) == []
    assert backend.get_thread(thread.id).id == thread.id


def test_serialize_and_resume(backend: sync.SyncBackend, tmp_path: Path) -> None:
    thread = backend.create_thread()
    thread.add_message("user", "My city is Lyon.")
    thread.run()
    for fmt in ("json", "msgpack"):
        blob = thread.serialize(fmt)
        assert decode_snapshot(blob).thread_id == thread.id
        with sync.resume(blob) as resumed:
            assert [m.text for m in resumed.messages()] == [m.text for m in thread.messages()]
            resumed.add_message("user", "What is my city?")
            resumed.run()
            assert next(resumed.messages("desc", limit=1)).text == "Your city is Lyon."
    with pytest.raises(SnapshotError):
        sync.resume(b"not a snapshot")


def test_sqlite_store_and_toml_config(tmp_path: Path) -> None:
    path = tmp_path / "threadkit.toml"
    path.write_text(f'[threadkit]\nstore = "sqlite:///{tmp_path}/s.db"\n', encoding="utf-8")
    with sync.open_backend(path) as b:
        thread = b.create_thread()
        thread.add_message("user", "My colour is red.")
        thread.run()
        blob = thread.serialize()
    # the backend is closed; the snapshot reopens the store by itself
    with sync.resume(blob) as resumed:
        resumed.add_message("user", "What is my colour?")
        resumed.run()
        assert [m.text for m in resumed.messages()][-1] == "Your colour is red."


def test_manual_tool_outputs_cancel_and_errors(backend: sync.SyncBackend) -> None:
    thread = backend.create_thread()
    thread.add_message("user", "Please multiply 3 by 3")
    agent = Agent(tools=[function_tool(multiply)])
    run = thread.run(agent)  # no functions given: the caller answers
    assert run.status is RunStatus.REQUIRES_ACTION
    assert run.required_action is not None
    (tc,) = run.required_action.submit_tool_outputs.tool_calls
    with pytest.raises(ActiveRunError):
        thread.add_message("user", "wait")
    with pytest.raises(ValidationError):
        thread.submit_tool_outputs(run.id, [ToolOutput(tool_call_id="call_other", output="1")])
    thread.submit_tool_outputs(run.id, [ToolOutput(tool_call_id=tc.id, output="9")])
    done = thread.wait_run(run.id, timeout=10)
    assert done.status is RunStatus.COMPLETED
    assert thread.get_run(run.id) == done
    with pytest.raises(InvalidRunStateError):
        thread.cancel_run(run.id)

    thread.add_message("user", "Please multiply 2 by 2")
    waiting = thread.create_run(agent)
    waiting = thread.wait_run(waiting.id, timeout=10)
    assert waiting.status is RunStatus.REQUIRES_ACTION
    assert thread.cancel_run(waiting.id).status is RunStatus.CANCELLED

    with pytest.raises(ValidationError):
        thread.add_message("user", [])
    with pytest.raises(ValidationError):
        thread.run(truncation_strategy=TruncationStrategy(type="last_messages"))
    with pytest.raises(ThreadNotFoundError):
        backend.get_thread("thread_missing")


def test_iterators_fetch_page_by_page(backend: sync.SyncBackend) -> None:
    thread = backend.create_thread()
    for i in range(250):
        thread.add_message("user", f"m{i}")
    it = thread.messages()
    assert next(it).text == "m0"
    rest = list(it)
    assert len(rest) == 249 and rest[-1].text == "m249"
    assert len(list(thread.messages(limit=130))) == 130
    assert [m.text for m in thread.messages("desc", limit=3)] == ["m249", "m248", "m247"]


def test_delete(backend: sync.SyncBackend) -> None:
    thread = backend.create_thread()
    thread.add_message("user", "bye")
    assert thread.delete() is True
    with pytest.raises(ThreadNotFoundError):
        backend.get_thread(thread.id)
    assert thread.delete() is False


def test_calling_the_facade_from_a_tool_it_runs_is_refused(backend: sync.SyncBackend) -> None:
    thread = backend.create_thread()
    thread.add_message("user", "Please use reenter")

    def reenter() -> str:
        thread.add_message("user", "from inside")  # would deadlock the portal
        return "no"

    run = thread.run(functions=[reenter])
    assert run.status is RunStatus.COMPLETED
    results = [r for m in thread.messages() for r in m.tool_results]
    assert len(results) == 1
    assert "RuntimeError" in json.loads(results[0].output)["error"]
    assert all(m.text != "from inside" for m in thread.messages())


def test_facade_works_from_several_threads(backend: sync.SyncBackend) -> None:
    threads = [backend.create_thread() for _ in range(4)]
    errors: list[BaseException] = []

    def work(t: sync.SyncAgentThread) -> None:
        try:
            for i in range(5):
                t.add_message("user", f"my number is {i}")
                t.run()
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in threads]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert errors == []
    for t in threads:
        assert [m.seq for m in t.messages()] == list(range(1, 11))
