"""The ``assistants`` backend against ``threadkit serve`` on 127.0.0.1, with the real openai SDK."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import threadkit
from threadkit.errors import (
    ConfigError,
    InvalidRunStateError,
    RunTimeoutError,
    ServiceError,
    ThreadNotFoundError,
)
from threadkit.testing import ScriptedModel, ThreadConformance
from threadkit.testing.faults import Fault, FaultInjector
from threadkit.testing.server import RunningServer, running_server
from threadkit.testing.thread_suite import calculator
from threadkit.types import RunStatus

pytest.importorskip("openai")
pytest.importorskip("uvicorn")

KEY_ENV = "THREADKIT_TEST_ASSISTANTS_KEY"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    db = tmp_path_factory.mktemp("assistants") / "serve.db"
    with running_server({"store": f"sqlite:///{db}", "model": "offline"}) as running:
        yield running


def config_for(base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "assistants",
        "base_url": base_url,
        "allow_insecure_loopback": True,
        "api_key_env": KEY_ENV,
        **extra,
    }


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "test-key-not-secret")


class TestAssistantsConformance(ThreadConformance):
    supports_list_threads = False

    @pytest.fixture
    def config(self, server: RunningServer) -> dict[str, Any]:
        return config_for(server.openai_base_url)


async def test_plain_http_needs_the_loopback_flag(server: RunningServer) -> None:
    cfg = config_for(server.openai_base_url, allow_insecure_loopback=False)
    with pytest.raises(ConfigError) as err:
        await threadkit.open_backend(cfg)
    assert err.value.key == "base_url"
    assert "allow_insecure_loopback" in str(err.value)


async def test_plain_http_to_another_host_is_refused_even_with_the_flag() -> None:
    with pytest.raises(ConfigError) as err:
        await threadkit.open_backend(config_for("http://10.1.2.3:8000/v1"))
    assert err.value.key == "base_url"
    assert "127.0.0.1" in str(err.value)


async def test_missing_api_key_names_the_variable(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError) as err:
        await threadkit.open_backend(config_for(server.openai_base_url))
    assert err.value.key == "api_key_env"
    assert KEY_ENV in str(err.value)


async def test_unknown_thread_raises_thread_not_found(server: RunningServer) -> None:
    async with await threadkit.open_backend(config_for(server.openai_base_url)) as backend:
        with pytest.raises(ThreadNotFoundError):
            await backend.get_thread("thread_doesnotexist0000000000")
        thread = await backend.create_thread()
        blob = await thread.serialize()
        assert await thread.delete() is True
        with pytest.raises(ThreadNotFoundError):
            await threadkit.resume(blob, config_for(server.openai_base_url))


async def test_snapshot_names_no_secret(server: RunningServer) -> None:
    async with await threadkit.open_backend(config_for(server.openai_base_url)) as backend:
        thread = await backend.create_thread()
        blob = await thread.serialize()
    assert b"test-key-not-secret" not in blob
    assert KEY_ENV.encode() in blob  # the variable's NAME is kept, so resume finds the key


async def test_one_service_agent_per_agent_definition(server: RunningServer) -> None:
    async with await threadkit.open_backend(config_for(server.openai_base_url)) as backend:
        thread = await backend.create_thread()
        agent = threadkit.Agent(name="reused", instructions="Be brief.")
        for text in ("hello", "again"):
            await thread.add_message("user", text)
            run = await thread.run(agent, timeout=30)
            assert run.status is RunStatus.COMPLETED
        runs = [r async for r in thread.runs()]
        assert len({r.agent_id for r in runs}) == 1
        assert runs[0].instructions == "Be brief."


async def test_requires_action_expires(tmp_path: Path) -> None:
    with running_server(
        {"store": f"sqlite:///{tmp_path}/x.db"}, requires_action_timeout=1
    ) as short:
        async with await threadkit.open_backend(config_for(short.openai_base_url)) as backend:
            thread = await backend.create_thread()
            await thread.add_message("user", "Please compute 2 + 2")
            run = await thread.create_run(tools=[threadkit.function_tool(calculator)])
            run = await thread.wait_run(run.id, timeout=30)
            assert run.status is RunStatus.REQUIRES_ACTION
            await asyncio.sleep(2.2)
            run = await thread.get_run(run.id)
            assert run.status is RunStatus.EXPIRED
            call = threadkit.ToolOutput(tool_call_id="call_x", output="4")
            with pytest.raises(InvalidRunStateError):
                await thread.submit_tool_outputs(run.id, [call])


async def test_runs_survive_429_and_500(tmp_path: Path) -> None:
    faults = FaultInjector(
        [
            Fault(status=429, times=1, retry_after=0.05, path=r"/runs/run_", method="GET"),
            Fault(status=500, times=1, path=r"/messages$", method="POST"),
            Fault(delay=0.3, times=2, path=r"/runs/run_", method="GET"),
        ]
    )
    with running_server({"store": f"sqlite:///{tmp_path}/f.db"}, wrap=faults.wrap) as srv:
        async with await threadkit.open_backend(config_for(srv.openai_base_url)) as backend:
            thread = await backend.create_thread()
            await thread.add_message("user", "Please compute 6 * 7")
            run = await thread.run(functions=[calculator], timeout=30)
            assert run.status is RunStatus.COMPLETED
            last = [m async for m in thread.messages("desc", limit=1)][0]
            assert "42" in last.text
    assert [f.hits for f in faults.faults] == [1, 1, 2]


async def test_persistent_500_is_a_service_error(tmp_path: Path) -> None:
    faults = FaultInjector([Fault(status=500, times=100, path=r"/messages$", method="POST")])
    with running_server({"store": f"sqlite:///{tmp_path}/g.db"}, wrap=faults.wrap) as srv:
        async with await threadkit.open_backend(config_for(srv.openai_base_url)) as backend:
            thread = await backend.create_thread()
            with pytest.raises(ServiceError) as err:
                await thread.add_message("user", "hello")
            assert err.value.status_code == 500
            assert err.value.__cause__ is not None
    assert faults.hits == 3  # the first try and the SDK's two retries


async def test_slow_run_times_out_then_finishes(tmp_path: Path) -> None:
    import asyncio

    async def slow(request: Any) -> str:
        await asyncio.sleep(1.5)
        return "finally"

    faults = FaultInjector([Fault(delay=0.2, times=100, path=r"/runs/run_", method="GET")])
    with running_server(
        {"store": f"sqlite:///{tmp_path}/s.db"}, model=ScriptedModel(slow), wrap=faults.wrap
    ) as srv:
        async with await threadkit.open_backend(config_for(srv.openai_base_url)) as backend:
            thread = await backend.create_thread()
            await thread.add_message("user", "hello")
            run = await thread.create_run()
            started = time.monotonic()
            with pytest.raises(RunTimeoutError):
                await thread.wait_run(run.id, timeout=0.5)
            assert time.monotonic() - started < 1.4
            run = await thread.wait_run(run.id, timeout=30)
            assert run.status is RunStatus.COMPLETED


def test_snapshot_resumes_in_another_process(server: RunningServer, tmp_path: Path) -> None:
    import asyncio

    async def first() -> bytes:
        async with await threadkit.open_backend(config_for(server.openai_base_url)) as backend:
            thread = await backend.create_thread()
            await thread.add_message("user", "My name is Lovelace.")
            await thread.run(timeout=30)
            return await thread.serialize()

    blob = asyncio.run(first())
    snap = tmp_path / "thread.json"
    snap.write_bytes(blob)
    script = textwrap.dedent(
        f"""
        import asyncio, threadkit
        async def main():
            async with await threadkit.resume(open({str(snap)!r}, "rb").read()) as thread:
                await thread.add_message("user", "What is my name?")
                run = await thread.run(timeout=30)
                last = [m async for m in thread.messages("desc", limit=1)][0]
                print(run.status.value, "|", last.text)
        asyncio.run(main())
        """
    )
    env = {**__import__("os").environ, KEY_ENV: "test-key-not-secret"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "completed | Your name is Lovelace."
