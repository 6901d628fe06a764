"""copy_thread between local backends, and cleanup when a destination refuses a message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import threadkit
from threadkit.testing.thread_suite import calculator
from threadkit.thread import AgentThread
from threadkit.types import ImageUrlContent, Message, TextContent


async def _source(backend: Any) -> AgentThread:
    thread = await backend.create_thread(metadata={"tenant": "acme"})
    await thread.add_message(
        "user",
        [TextContent(text="look"), ImageUrlContent(url="https://example.com/a.png", detail="low")],
        metadata={"k": "v"},
    )
    await thread.add_message("user", "Please compute 6 * 7")
    assert (await thread.run(functions=[calculator])).status is threadkit.RunStatus.COMPLETED
    return thread


async def test_copy_memory_to_sqlite_message_by_message(tmp_path: Path) -> None:
    async with (
        await threadkit.open_backend({"store": "memory://"}) as src_backend,
        await threadkit.open_backend({"store": f"sqlite:///{tmp_path}/c.db"}) as dst_backend,
    ):
        source = await _source(src_backend)
        result = await threadkit.copy_thread(source, dst_backend)
        src = [m async for m in source.messages()]
        dst = [m async for m in result.thread.messages()]
        assert len(src) == len(dst) == 5
        for a, b in zip(src, dst, strict=True):
            assert (a.role, a.content, a.metadata) == (b.role, b.content, b.metadata)
            assert result.message_ids[a.id] == b.id
            assert b.thread_id == result.thread.id
        assert [m.seq for m in dst] == [1, 2, 3, 4, 5]
        info = await result.thread.info()
        assert info.metadata == {"tenant": "acme", "threadkit.copied_from": source.id}
        # the copy is a working thread: tool pairs are intact, so another run succeeds
        await result.thread.add_message("user", "Please compute 2 * 3")
        run = await result.thread.run(functions=[calculator])
        assert run.status is threadkit.RunStatus.COMPLETED


async def test_copy_batches_never_split_a_tool_turn() -> None:
    from threadkit.copy import _turns
    from threadkit.types import ToolCallContent, ToolResultContent

    def msg(role: str, *parts: Any) -> Message:
        return Message(id=f"m{len(parts)}{role}", thread_id="", role=role, content=list(parts))  # type: ignore[arg-type]

    turn = [
        msg("assistant", ToolCallContent(id="c1", name="f"), ToolCallContent(id="c2", name="f")),
        msg("tool", ToolResultContent(tool_call_id="c1", output="1")),
        msg("tool", ToolResultContent(tool_call_id="c2", output="2")),
    ]
    chunks = _turns(
        [msg("user", TextContent(text="a")), *turn, msg("user", TextContent(text="b"))], 1
    )
    assert [len(c) for c in chunks] == [1, 3, 1]


async def test_failed_copy_deletes_the_partial_destination() -> None:
    async with (
        await threadkit.open_backend({"store": "memory://"}) as src_backend,
        await threadkit.open_backend({"store": "memory://copy-dst"}) as dst_backend,
    ):
        source = await _source(src_backend)

        calls = 0
        original = type(await dst_backend.create_thread()).append_messages

        async def refuse_tools(self: Any, messages: Any) -> Any:
            nonlocal calls
            calls += 1
            if any(m.role == "tool" for m in messages):
                raise threadkit.UnsupportedOperation("test", "tool results")
            return await original(self, messages)

        before = [t.id async for t in dst_backend.list_threads()]
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(type(await dst_backend.create_thread()), "append_messages", refuse_tools)
            before = [t.id async for t in dst_backend.list_threads()]
            with pytest.raises(threadkit.UnsupportedOperation):
                await threadkit.copy_thread(source, dst_backend, batch=1)
        assert calls >= 2  # something was written before the refusal
        assert [t.id async for t in dst_backend.list_threads()] == before
        assert len([m async for m in source.messages()]) == 5


def test_cli_threads_copy_between_sqlite_files(tmp_path: Path) -> None:
    import asyncio
    import json

    from typer.testing import CliRunner

    from threadkit.cli import build_app

    src_url = f"sqlite:///{tmp_path}/src.db"
    dst_url = f"sqlite:///{tmp_path}/dst.db"

    async def seed() -> tuple[str, list[str]]:
        async with await threadkit.open_backend({"store": src_url}) as backend:
            thread = await _source(backend)
            return thread.id, [m.text async for m in thread.messages()]

    thread_id, texts = asyncio.run(seed())
    dst_toml = tmp_path / "dst.toml"
    dst_toml.write_text(f'store = "{dst_url}"\n')
    result = CliRunner().invoke(
        build_app(),
        [
            "threads",
            "copy",
            thread_id,
            "--from",
            json.dumps({"store": src_url}),
            "--to",
            str(dst_toml),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["source_thread_id"] == thread_id and len(out["message_ids"]) == 5

    async def read_copy() -> list[str]:
        async with await threadkit.open_backend({"store": dst_url}) as backend:
            copy = await backend.get_thread(out["thread_id"])
            return [m.text async for m in copy.messages()]

    assert asyncio.run(read_copy()) == texts

    bad = CliRunner().invoke(
        build_app(), ["threads", "copy", thread_id, "--from", "{nope", "--to", str(dst_toml)]
    )
    assert bad.exit_code == 2
    assert "not valid JSON" in bad.output
