"""``ThreadConformance``: one test suite every thread backend passes.

A backend's test module subclasses it and provides two fixtures::

    class TestLocalSQLite(ThreadConformance):
        @pytest.fixture
        def config(self, tmp_path):
            return {"backend": "chat", "store": f"sqlite:///{tmp_path}/t.db"}

The suite opens the backend from ``config`` (``threadkit.open_backend``) and drives it with the
offline model's documented rules (``threadkit.testing.scripted``): a service backend under test
points at ``threadkit serve --model offline``. Class attributes switch off what a backend cannot do;
such cases then assert that the backend raises :class:`~threadkit.errors.UnsupportedOperation`
instead of faking the operation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import threadkit
from threadkit.errors import (
    ActiveRunError,
    BackendMismatchError,
    InvalidRunStateError,
    MessageNotFoundError,
    NotFoundError,
    UnsupportedOperation,
)
from threadkit.thread import AgentThread, ThreadBackend
from threadkit.types import Agent, RunStatus, ToolCallsDetails, ToolOutput

__all__ = ["ThreadConformance"]


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression of numbers, + - * / and parentheses.

    Args:
        expression: the expression, e.g. "12 * (3 + 4)".
    """
    allowed = set("0123456789+-*/(). ")
    if not set(expression) <= allowed:
        raise ValueError("only arithmetic is allowed")
    return str(eval(expression, {"__builtins__": {}}))


class ThreadConformance:
    """Test mixin: subclass it and provide a ``config`` fixture (a config dict)."""

    #: the backend lists threads (``list_threads``).
    supports_list_threads: bool = True
    #: the backend can cancel a run that waits in ``requires_action``.
    supports_cancel: bool = True
    #: messages per page the pagination case writes (> 100 crosses a service page).
    pagination_messages: int = 120

    agent = Agent(name="conformance", instructions="You are a careful assistant.")

    @pytest.fixture
    def config(self) -> dict[str, Any]:  # pragma: no cover - subclasses override
        raise NotImplementedError("subclasses provide a `config` fixture")

    @pytest.fixture
    async def backend(self, config: dict[str, Any]) -> AsyncIterator[ThreadBackend]:
        backend = await threadkit.open_backend(config)
        try:
            yield backend
        finally:
            await backend.close()

    @pytest.fixture
    async def thread(self, backend: ThreadBackend) -> AgentThread:
        return await backend.create_thread(metadata={"suite": "conformance"})

    # ---------------------------------------------------------------- messages
    async def test_add_and_read_messages(self, thread: AgentThread) -> None:
        first = await thread.add_message("user", "hello", metadata={"k": "v"})
        second = await thread.add_message("user", "world")
        got = [m async for m in thread.messages()]
        assert [m.id for m in got] == [first.id, second.id]
        assert [m.text for m in got] == ["hello", "world"]
        assert got[0].metadata == {"k": "v"}
        assert got[0].role == "user"
        assert got[0].thread_id == thread.id
        newest_first = [m.id async for m in thread.messages("desc")]
        assert newest_first == [second.id, first.id]
        assert (await thread.get_message(first.id)).text == "hello"

    async def test_unknown_message_raises(self, thread: AgentThread) -> None:
        with pytest.raises(MessageNotFoundError):
            await thread.get_message("msg_doesnotexist000000000000")

    async def test_pagination_both_ways(self, thread: AgentThread) -> None:
        n = self.pagination_messages
        ids = [(await thread.add_message("user", f"m{i}")).id for i in range(n)]
        assert [m.id async for m in thread.messages()] == ids
        assert [m.id async for m in thread.messages("desc")] == ids[::-1]
        assert [m.id async for m in thread.messages(limit=7)] == ids[:7]
        assert [m.id async for m in thread.messages(after=ids[9], limit=5)] == ids[10:15]
        assert [m.id async for m in thread.messages("desc", after=ids[9])] == ids[:9][::-1]
        page = await thread.list_messages(order="asc", limit=10, before=ids[20])
        assert [m.id for m in page.data] == ids[10:20]

    # ---------------------------------------------------------------- runs
    async def test_multi_turn_keeps_context(self, thread: AgentThread) -> None:
        await thread.add_message("user", "My name is Ada and my favourite colour is teal.")
        run = await thread.run(self.agent, timeout=60)
        assert run.status is RunStatus.COMPLETED
        await thread.add_message("user", "What is my favourite colour?")
        run = await thread.run(self.agent, timeout=60)
        assert run.status is RunStatus.COMPLETED
        last = [m async for m in thread.messages("desc", limit=1)][0]
        assert last.role == "assistant"
        assert "teal" in last.text
        assert last.run_id == run.id

    async def test_run_evidence(self, thread: AgentThread) -> None:
        await thread.add_message("user", "Hello there")
        run = await thread.run(self.agent, timeout=60, metadata={"trace": "t1"})
        assert run.status is RunStatus.COMPLETED
        assert run.thread_id == thread.id
        assert run.created_at > 0 and run.completed_at is not None
        assert run.completed_at >= run.created_at
        assert run.usage is not None and run.usage.total_tokens > 0
        assert run.model
        assert run.metadata == {"trace": "t1"}
        again = await thread.get_run(run.id)
        assert again.status is RunStatus.COMPLETED
        assert [r.id async for r in thread.runs()][0] == run.id
        steps = [s async for s in thread.run_steps(run.id)]
        assert [s.type for s in steps] == ["message_creation"]

    async def test_tools_through_requires_action(self, thread: AgentThread) -> None:
        await thread.add_message("user", "Please compute 12 * (3 + 4)")
        tool = threadkit.function_tool(calculator)
        run = await thread.create_run(self.agent, tools=[tool])
        run = await thread.wait_run(run.id, timeout=60)
        assert run.status is RunStatus.REQUIRES_ACTION
        assert run.required_action is not None
        (call,) = run.required_action.submit_tool_outputs.tool_calls
        assert call.function.name == "calculator"
        assert "12" in call.function.arguments
        with pytest.raises(ActiveRunError):
            await thread.create_run(self.agent)
        run = await thread.submit_tool_outputs(run.id, [ToolOutput(tool_call_id=call.id, output="84")])
        run = await thread.wait_run(run.id, timeout=60)
        assert run.status is RunStatus.COMPLETED
        last = [m async for m in thread.messages("desc", limit=1)][0]
        assert "84" in last.text
        kinds = [s.type async for s in thread.run_steps(run.id)]
        assert kinds == ["tool_calls", "message_creation"]
        step = [s async for s in thread.run_steps(run.id)][0]
        assert isinstance(step.step_details, ToolCallsDetails)
        assert step.step_details.tool_calls[0].function.output == "84"

    async def test_run_executes_functions(self, thread: AgentThread) -> None:
        await thread.add_message("user", "Please compute 6 * 7")
        run = await thread.run(self.agent, functions=[calculator], timeout=60)
        assert run.status is RunStatus.COMPLETED
        last = [m async for m in thread.messages("desc", limit=1)][0]
        assert "42" in last.text

    async def test_submit_to_finished_run_is_refused(self, thread: AgentThread) -> None:
        await thread.add_message("user", "Hi")
        run = await thread.run(self.agent, timeout=60)
        with pytest.raises(InvalidRunStateError):
            await thread.submit_tool_outputs(run.id, [ToolOutput(tool_call_id="call_x", output="1")])
        with pytest.raises(InvalidRunStateError):
            await thread.cancel_run(run.id)

    async def test_cancel_waiting_run(self, thread: AgentThread) -> None:
        await thread.add_message("user", "Please compute 1 + 1")
        run = await thread.create_run(self.agent, tools=[threadkit.function_tool(calculator)])
        run = await thread.wait_run(run.id, timeout=60)
        assert run.status is RunStatus.REQUIRES_ACTION
        if not self.supports_cancel:
            with pytest.raises(UnsupportedOperation):
                await thread.cancel_run(run.id)
            return
        cancelled = await thread.cancel_run(run.id)
        assert cancelled.status in (RunStatus.CANCELLING, RunStatus.CANCELLED)
        for _ in range(100):
            if (await thread.get_run(run.id)).status is RunStatus.CANCELLED:
                break
            await asyncio.sleep(0.05)
        assert (await thread.get_run(run.id)).status is RunStatus.CANCELLED
        # the thread is free again
        await thread.add_message("user", "still here?")
        assert (await thread.run(self.agent, timeout=60)).status is RunStatus.COMPLETED

    # ---------------------------------------------------------------- threads
    async def test_list_threads(self, backend: ThreadBackend) -> None:
        if not self.supports_list_threads:
            with pytest.raises(UnsupportedOperation):
                [t async for t in backend.list_threads(limit=1)]
            return
        a = await backend.create_thread(metadata={"tenant": "a"})
        b = await backend.create_thread(metadata={"tenant": "b"})
        listed = [t.id async for t in backend.list_threads(metadata={"tenant": "b"})]
        assert b.id in listed and a.id not in listed
        newest = [t.id async for t in backend.list_threads(limit=2)]
        assert newest[0] == b.id

    async def test_get_and_delete_thread(self, backend: ThreadBackend) -> None:
        thread = await backend.create_thread()
        await thread.add_message("user", "bye")
        again = await backend.get_thread(thread.id)
        assert [m.text async for m in again.messages()] == ["bye"]
        assert await thread.delete() is True
        with pytest.raises(NotFoundError):
            await backend.get_thread(thread.id)

    # ---------------------------------------------------------------- snapshots
    async def test_snapshot_resume_continue(
        self, thread: AgentThread, config: dict[str, Any]
    ) -> None:
        await thread.add_message("user", "My name is Grace.")
        await thread.run(self.agent, timeout=60)
        before = [m.id async for m in thread.messages()]
        for fmt in ("json", "msgpack"):
            blob = await thread.serialize(fmt)
            resumed = await threadkit.resume(blob, config)
            try:
                assert resumed.id == thread.id
                assert resumed.backend == thread.backend
                assert [m.id async for m in resumed.messages()][: len(before)] == before
            finally:
                await resumed.close()
        resumed = await threadkit.resume(await thread.serialize(), config)
        try:
            await resumed.add_message("user", "What is my name?")
            run = await resumed.run(self.agent, timeout=60)
            assert run.status is RunStatus.COMPLETED
            last = [m async for m in resumed.messages("desc", limit=1)][0]
            assert "Grace" in last.text
        finally:
            await resumed.close()

    @pytest.fixture
    def mismatched_config(self, config: dict[str, Any], tmp_path: Any) -> dict[str, Any]:
        """A configuration that cannot serve this backend's snapshots (override per backend)."""
        if config.get("backend", "chat") != "chat":
            return {"backend": "chat", "store": "memory://"}
        if str(config.get("store", "memory://")).startswith("memory://"):
            return {"backend": "chat", "store": f"sqlite:///{tmp_path}/elsewhere.db"}
        return {"backend": "chat", "store": "memory://elsewhere"}

    async def test_snapshot_under_wrong_backend_is_refused(
        self, thread: AgentThread, mismatched_config: dict[str, Any]
    ) -> None:
        await thread.add_message("user", "keep me")
        blob = await thread.serialize()
        with pytest.raises(BackendMismatchError):
            await threadkit.resume(blob, mismatched_config)
        assert [m.text async for m in thread.messages()] == ["keep me"]

    async def test_export_is_an_audit_record(self, thread: AgentThread) -> None:
        await thread.add_message("user", "Please compute 2 * 21")
        await thread.run(self.agent, functions=[calculator], timeout=60)
        record = await thread.export()
        assert record["format"] == "threadkit.export"
        assert record["thread"]["id"] == thread.id
        assert record["messages"][0]["content"][0]["text"] == "Please compute 2 * 21"
        (run,) = record["runs"]
        assert run["status"] == "completed"
        assert run["usage"]["total_tokens"] > 0
        tool_steps = [s for s in run["steps"] if s["type"] == "tool_calls"]
        assert tool_steps[0]["step_details"]["tool_calls"][0]["function"]["output"] == "42"
