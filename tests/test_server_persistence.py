"""Restart persistence: stop threadkit serve, start it on the same SQLite file, lose nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
openai = pytest.importorskip("openai")

from threadkit.testing.server import running_server  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TOOL: dict[str, Any] = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}


def client_for(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=base_url, api_key="x", max_retries=0, _strict_response_validation=True
    )


def snapshot(c: openai.OpenAI, thread_ids: list[str], assistant_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {"assistant": c.beta.assistants.retrieve(assistant_id).model_dump()}
    for tid in thread_ids:
        runs = [r.model_dump() for r in c.beta.threads.runs.list(tid, order="asc")]
        out[tid] = {
            "thread": c.beta.threads.retrieve(tid).model_dump(),
            "messages": [m.model_dump() for m in c.beta.threads.messages.list(tid, order="asc")],
            "runs": runs,
            "steps": {
                r["id"]: [
                    s.model_dump()
                    for s in c.beta.threads.runs.steps.list(r["id"], thread_id=tid, order="asc")
                ]
                for r in runs
            },
        }
    return out


def test_restart_on_the_same_sqlite_file_keeps_everything(tmp_path: Path) -> None:
    config = {"store": f"sqlite:///{tmp_path / 'serve.db'}", "model": "offline"}
    with running_server(config) as server:
        c = client_for(server.openai_base_url)
        a = c.beta.assistants.create(model="m", name="keeper", tools=[TOOL], metadata={"v": "1"})  # type: ignore[list-item]
        t1 = c.beta.threads.create(
            messages=[{"role": "user", "content": "my dog is Rex"}], metadata={"t": "1"}
        )
        done = c.beta.threads.runs.create_and_poll(
            thread_id=t1.id, assistant_id=a.id, poll_interval_ms=20
        )
        assert done.status == "completed"
        c.beta.threads.messages.create(t1.id, role="user", content="please lookup things")
        waiting = c.beta.threads.runs.create_and_poll(
            thread_id=t1.id, assistant_id=a.id, poll_interval_ms=20
        )
        assert waiting.status == "requires_action"
        t2 = c.beta.threads.create(messages=[{"role": "user", "content": "second"}])
        before = snapshot(c, [t1.id, t2.id], a.id)
        c.close()
    with running_server(config) as server:
        c = client_for(server.openai_base_url)
        after = snapshot(c, [t1.id, t2.id], a.id)
        assert after == before
        assert [m["role"] for m in after[t1.id]["messages"]] == ["user", "assistant", "user"]
        # the run waiting for tool outputs survives the restart and finishes
        call = waiting.required_action.submit_tool_outputs.tool_calls[0]  # type: ignore[union-attr]
        finished = c.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=waiting.id,
            thread_id=t1.id,
            tool_outputs=[{"tool_call_id": call.id, "output": "found"}],
            poll_interval_ms=20,
        )
        assert finished.status == "completed"
        newest = c.beta.threads.messages.list(t1.id, limit=1).data[0]
        assert newest.content[0].text.value == "lookup returned found."  # type: ignore[union-attr]
        # and the fact told before the restart is still in the model's context
        answer = c.beta.threads.create_and_run_poll(
            assistant_id=a.id,
            thread={"messages": [{"role": "user", "content": "what is my dog?"}]},
            poll_interval_ms=20,
        )
        assert answer.status == "completed"
        c.beta.threads.messages.create(t1.id, role="user", content="what is my dog?")
        run = c.beta.threads.runs.create_and_poll(
            thread_id=t1.id, assistant_id=a.id, tools=[], poll_interval_ms=20
        )
        assert run.status == "completed"
        reply = c.beta.threads.messages.list(t1.id, limit=1).data[0]
        assert reply.content[0].text.value == "Your dog is Rex."  # type: ignore[union-attr]
        c.close()
