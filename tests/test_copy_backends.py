"""copy_thread across backends, against threadkit serve, compared message by message.

The three copies issue 4 names: Assistants → SQLite local, SQLite → Foundry conversation
(foundry-agents), Foundry classic → Responses. Each copy must keep every message in order with its
role and text (and, where both sides hold them, tool calls paired with their results), and map
old ids to new ones.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import threadkit
from threadkit.adapters.foundry import FoundryBackend, StaticTokenCredential
from threadkit.testing.server import RunningServer, running_server
from threadkit.testing.thread_suite import calculator
from threadkit.thread import AgentThread
from threadkit.types import Message, ToolCallContent, ToolResultContent

pytest.importorskip("openai")
pytest.importorskip("azure.ai.agents")
pytest.importorskip("uvicorn")

KEY_ENV = "THREADKIT_TEST_COPY_KEY"
AGENT = threadkit.Agent(name="copier", instructions="Be brief.", model="offline")
TOKEN = "copy-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    db = tmp_path_factory.mktemp("copy") / "serve.db"
    with running_server({"store": f"sqlite:///{db}", "model": "offline"}) as running:
        yield running


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "copy-key")
    monkeypatch.setattr(
        FoundryBackend, "default_credential_factory", lambda: StaticTokenCredential(TOKEN)
    )
    warnings.simplefilter("ignore", DeprecationWarning)


def assistants(server: RunningServer) -> dict[str, Any]:
    return {
        "backend": "assistants",
        "base_url": server.openai_base_url,
        "allow_insecure_loopback": True,
        "api_key_env": KEY_ENV,
        "model": "offline",
    }


def foundry(server: RunningServer) -> dict[str, Any]:
    return {
        "backend": "foundry",
        "endpoint": server.foundry_endpoint("copy"),
        "allow_insecure_loopback": True,
        "model": "offline",
    }


def foundry_agents(server: RunningServer) -> dict[str, Any]:
    return {
        "backend": "foundry-agents",
        "endpoint": server.foundry_endpoint("copy"),
        "allow_insecure_loopback": True,
        "credential": "api_key",
        "api_key_env": KEY_ENV,
        "agent_id": "copier",
    }


def responses(server: RunningServer) -> dict[str, Any]:
    return {
        "backend": "responses",
        "base_url": server.openai_base_url,
        "allow_insecure_loopback": True,
        "api_key_env": KEY_ENV,
        "responses_mode": "conversation",
        "model": "offline",
    }


def shape(m: Message) -> tuple[str, str, list[tuple[str, str]]]:
    """What a copy must keep: role, text, and the tool calls/results (name or output)."""
    tools = [
        ("call", p.name) if isinstance(p, ToolCallContent) else ("result", p.output)
        for p in m.content
        if isinstance(p, ToolCallContent | ToolResultContent)
    ]
    return m.role, m.text, tools


async def converse(thread: AgentThread, *, tools: bool) -> None:
    await thread.add_message("user", "My name is Ada and my favourite colour is teal.")
    await thread.run(AGENT, timeout=30)
    await thread.add_message("user", "What is my favourite colour?")
    await thread.run(AGENT, timeout=30)
    if tools:
        await thread.add_message("user", "Please compute 6 * 7")
        run = await thread.run(AGENT, functions=[calculator], timeout=30)
        assert run.status is threadkit.RunStatus.COMPLETED


async def check_copy(source: AgentThread, result: threadkit.CopyResult) -> list[Message]:
    src = [m async for m in source.messages()]
    dst = [m async for m in result.thread.messages()]
    assert [shape(m) for m in dst] == [shape(m) for m in src]
    assert [result.message_ids[m.id] for m in src] == [m.id for m in dst]
    # the copy is a working thread on its backend: it continues with the history intact
    await result.thread.add_message("user", "What is my name?")
    run = await result.thread.run(AGENT, timeout=30)
    assert run.status is threadkit.RunStatus.COMPLETED
    last = [m async for m in result.thread.messages("desc", limit=1)][0]
    assert "Ada" in last.text
    return dst


async def test_assistants_to_sqlite_local(server: RunningServer, tmp_path: Path) -> None:
    async with (
        await threadkit.open_backend(assistants(server)) as src_backend,
        await threadkit.open_backend({"store": f"sqlite:///{tmp_path}/local.db"}) as dst_backend,
    ):
        source = await src_backend.create_thread()
        await converse(source, tools=True)  # tool calls stay in run steps on Assistants
        result = await threadkit.copy_thread(source, dst_backend)
        dst = await check_copy(source, result)
        assert [m.role for m in dst][:4] == ["user", "assistant", "user", "assistant"]
        assert "teal" in dst[3].text


async def test_sqlite_local_to_foundry_conversation(server: RunningServer, tmp_path: Path) -> None:
    async with (
        await threadkit.open_backend({"store": f"sqlite:///{tmp_path}/local.db"}) as src_backend,
        await threadkit.open_backend(foundry_agents(server)) as dst_backend,
    ):
        source = await src_backend.create_thread()
        await converse(source, tools=True)  # the local thread holds the tool call and result
        result = await threadkit.copy_thread(source, dst_backend)
        dst = await check_copy(source, result)
        calls = [p for m in dst for p in m.content if isinstance(p, ToolCallContent)]
        results = [p for m in dst for p in m.content if isinstance(p, ToolResultContent)]
        assert [c.name for c in calls] == ["calculator"]
        assert [r.tool_call_id for r in results] == [c.id for c in calls]  # kept paired


async def test_foundry_classic_to_responses(server: RunningServer) -> None:
    async with (
        await threadkit.open_backend(foundry(server)) as src_backend,
        await threadkit.open_backend(responses(server)) as dst_backend,
    ):
        source = await src_backend.create_thread()
        await converse(source, tools=True)
        result = await threadkit.copy_thread(source, dst_backend)
        await check_copy(source, result)


async def test_copy_into_foundry_classic_refuses_tool_results_and_leaves_nothing(
    server: RunningServer, tmp_path: Path
) -> None:
    async with (
        await threadkit.open_backend({"store": f"sqlite:///{tmp_path}/local.db"}) as src_backend,
        await threadkit.open_backend(foundry(server)) as dst_backend,
    ):
        source = await src_backend.create_thread()
        await converse(source, tools=True)
        before = [t.id async for t in dst_backend.list_threads()]
        with pytest.raises(threadkit.UnsupportedOperation):
            await threadkit.copy_thread(source, dst_backend)
        assert [t.id async for t in dst_backend.list_threads()] == before
