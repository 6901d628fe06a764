"""The ``foundry`` backend (Foundry Agent Service classic) over the real ``azure-ai-agents`` SDK,
against ``threadkit serve`` on 127.0.0.1.

The server requires a key; the backend presents it as a bearer token (``StaticTokenCredential``)
over plain http, which azure-core refuses unless ``allow_insecure_loopback`` lets it through for
loopback hosts. Every request in these tests therefore proves the narrow http permission and
the token's delivery.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "azure.ai.agents.aio", reason='azure-ai-agents not installed ("threadkit[foundry]")'
)
pytest.importorskip("uvicorn", reason='uvicorn not installed ("threadkit[server]")')

from azure.ai.agents.aio import AgentsClient
from azure.core.credentials import AccessToken
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline.transport import AsyncioRequestsTransport
from azure.core.rest import HttpRequest

import threadkit
from threadkit.adapters.foundry import (
    FoundryBackend,
    StaticTokenCredential,
    _poll_hint,
    make_agents_client,
)
from threadkit.config import load_config
from threadkit.errors import (
    AuthenticationError,
    BackendMismatchError,
    ConfigError,
    InvalidRunStateError,
    RunNotFoundError,
    ServiceError,
    ThreadNotFoundError,
    ValidationError,
)
from threadkit.snapshot import decode_snapshot
from threadkit.testing import ThreadConformance
from threadkit.testing.server import RunningServer, running_server
from threadkit.thread import PollPolicy
from threadkit.types import Agent, RunStatus, ToolOutput

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "tk-foundry-test-token"
AGENT = Agent(name="foundry-tests", instructions="You are a careful assistant.")


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    """threadkit serve over a memory store and the offline model, requiring ``TOKEN``."""
    with running_server({"store": "memory://", "model": "offline"}, api_keys=[TOKEN]) as s:
        yield s


@pytest.fixture
def token_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    """``credential = "default"`` builds a StaticTokenCredential(TOKEN) in this test."""
    monkeypatch.setattr(
        FoundryBackend, "default_credential_factory", lambda: StaticTokenCredential(TOKEN)
    )


def foundry_config(server: RunningServer, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "foundry",
        "endpoint": server.foundry_endpoint(),
        "allow_insecure_loopback": True,
        **extra,
    }


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THREADKIT_", "AZURE_"))}
    env["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), env.get("PYTHONPATH")) if x)
    return env


# ------------------------------------------------------------------ the conformance suite


@pytest.mark.usefixtures("token_credential")
class TestFoundryConformance(ThreadConformance):
    """The shared thread suite, through config (``open_backend``/``resume``) over the SDK."""

    @pytest.fixture
    def config(self, server: RunningServer) -> dict[str, Any]:
        return foundry_config(server)

    @pytest.fixture
    def mismatched_config(self, server: RunningServer) -> dict[str, Any]:
        # A Foundry snapshot resumed under an Assistants configuration.
        return {
            "backend": "assistants",
            "base_url": server.openai_base_url,
            "allow_insecure_loopback": True,
        }


# ------------------------------------------------------------------ endpoints and credentials


async def test_http_to_a_non_loopback_host_is_refused() -> None:
    for host in ("example.com", "10.0.0.8", "127.0.0.1.nip.io"):
        cfg = load_config(
            {
                "backend": "foundry",
                "endpoint": f"http://{host}/api/projects/p",
                "allow_insecure_loopback": True,
            }
        )
        with pytest.raises(ConfigError, match="unencrypted") as err:
            await FoundryBackend.from_config(cfg)
        assert err.value.key == "endpoint"
    with pytest.raises(ConfigError, match="unencrypted"):
        FoundryBackend(
            endpoint="http://example.com/api/projects/p",
            credential=StaticTokenCredential(TOKEN),
            allow_insecure_loopback=True,
        )


async def test_http_loopback_without_the_flag_is_refused(server: RunningServer) -> None:
    cfg = {"backend": "foundry", "endpoint": server.foundry_endpoint()}
    with pytest.raises(ConfigError, match="allow_insecure_loopback") as err:
        await threadkit.open_backend(cfg)
    assert err.value.key == "endpoint"
    for host in ("localhost", "[::1]"):
        with pytest.raises(ConfigError, match="allow_insecure_loopback"):
            make_agents_client(f"http://{host}:1/api/projects/p", StaticTokenCredential(TOKEN))


async def test_the_sdk_alone_refuses_the_token_over_http(server: RunningServer) -> None:
    """A caller's client without threadkit's loopback policy: the SDK refuses, and the refusal
    is translated into a ConfigError naming the setting."""
    client = AgentsClient(
        server.foundry_endpoint(),
        StaticTokenCredential(TOKEN),
        transport=AsyncioRequestsTransport(),
    )
    async with FoundryBackend(client=client, owns_client=True) as backend:
        with pytest.raises(ConfigError, match="allow_insecure_loopback") as err:
            await backend.create_thread()
        assert isinstance(err.value.__cause__, ServiceRequestError)


async def test_loopback_permission_is_checked_per_request(server: RunningServer) -> None:
    """The client allowed to reach 127.0.0.1 over http still refuses any other http host,
    even when the caller asks for ``enforce_https=False``; nothing leaves the machine."""
    client = make_agents_client(
        server.foundry_endpoint(),
        StaticTokenCredential(TOKEN),
        allow_insecure_loopback=True,
        retry_total=0,  # azure-core retries a refused GET like a failed connection
    )
    async with client:
        ok = await client.send_request(
            HttpRequest("GET", f"{server.foundry_endpoint()}/threads?api-version=v1&limit=1")
        )
        assert ok.status_code == 200
        for url in ("http://example.com/x", "http://192.0.2.1/x"):
            with pytest.raises(ServiceRequestError, match="non-TLS"):
                await client.send_request(HttpRequest("GET", url))
            with pytest.raises(ServiceRequestError, match="non-TLS"):
                await client.send_request(HttpRequest("GET", url), enforce_https=False)
    keyed = make_agents_client(
        server.foundry_endpoint(), api_key=TOKEN, allow_insecure_loopback=True, retry_total=0
    )
    async with keyed:
        ok = await keyed.send_request(
            HttpRequest("GET", f"{server.foundry_endpoint()}/threads?api-version=v1&limit=1")
        )
        assert ok.status_code == 200
        with pytest.raises(ServiceRequestError, match="non-TLS"):
            await keyed.send_request(HttpRequest("GET", "http://example.com/x"))


async def test_the_bearer_token_is_what_the_server_checks(server: RunningServer) -> None:
    async with FoundryBackend(
        endpoint=server.foundry_endpoint(),
        credential=StaticTokenCredential("not-the-key"),
        allow_insecure_loopback=True,
    ) as backend:
        with pytest.raises(AuthenticationError) as err:
            await backend.create_thread()
        assert err.value.status_code == 401


class SyncCredential:
    """A synchronous TokenCredential handing out ``TOKEN``; counts token requests."""

    def __init__(self) -> None:
        self.calls = 0
        self.closed = False

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        assert scopes == ("https://ai.azure.com/.default",)
        return AccessToken(TOKEN, int(time.time()) + 3600)

    def close(self) -> None:
        self.closed = True


async def test_a_sync_token_credential_is_accepted(server: RunningServer) -> None:
    cred = SyncCredential()
    cfg = load_config(foundry_config(server))
    backend = await FoundryBackend.from_config(cfg, credential=cred)
    thread = await backend.create_thread(metadata={"who": "sync"})
    assert (await backend.get_thread(thread.id)).id == thread.id
    assert cred.calls == 1  # cached by the bearer policy
    await backend.close()
    assert cred.closed


async def test_credential_default_builds_default_azure_credential() -> None:
    """``credential = "default"`` is azure-identity's DefaultAzureCredential (built, not used:
    no token is requested, so no network)."""
    from azure.identity import DefaultAzureCredential

    cfg = load_config(
        {"backend": "foundry", "endpoint": "https://res.services.ai.azure.com/api/projects/p"}
    )
    assert cfg.credential == "default"
    backend = await FoundryBackend.from_config(cfg)
    try:
        assert isinstance(backend.credential.wrapped, DefaultAzureCredential)
        assert backend.client._config.credential is backend.credential
        assert backend.endpoint == "https://res.services.ai.azure.com/api/projects/p"
    finally:
        await backend.close()


async def test_api_key_credential(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = foundry_config(server, credential="api_key", api_key_env="TK_FOUNDRY_KEY")
    monkeypatch.delenv("TK_FOUNDRY_KEY", raising=False)
    with pytest.raises(ConfigError) as err:
        await threadkit.open_backend(cfg)
    assert err.value.key == "api_key_env"
    monkeypatch.setenv("TK_FOUNDRY_KEY", TOKEN)
    async with await threadkit.open_backend(cfg) as backend:
        thread = await backend.create_thread()
        await thread.add_message("user", "Hello")
        assert (await thread.run(AGENT, timeout=30)).status is RunStatus.COMPLETED
        blob = await thread.serialize()
    assert TOKEN.encode() not in blob
    assert decode_snapshot(blob).settings["api_key_env"] == "TK_FOUNDRY_KEY"
    monkeypatch.setenv("TK_FOUNDRY_KEY", "wrong")
    async with await threadkit.open_backend(cfg) as backend:
        with pytest.raises(AuthenticationError):
            await backend.create_thread()


async def test_clients_the_caller_already_has(server: RunningServer) -> None:
    client = make_agents_client(
        server.foundry_endpoint(), StaticTokenCredential(TOKEN), allow_insecure_loopback=True
    )
    backend = FoundryBackend(client=client, model="offline")
    assert backend.endpoint == server.foundry_endpoint()
    thread = await backend.create_thread()
    await thread.add_message("user", "Hi")
    assert (await thread.run(AGENT, timeout=30)).status is RunStatus.COMPLETED
    await backend.close()  # not ours: left open
    assert (await client.threads.get(thread.id)).id == thread.id
    await client.close()


async def test_project_clients_without_classic_threads_are_refused() -> None:
    from azure.ai.agents import AgentsClient as SyncAgentsClient
    from azure.ai.projects.aio import AIProjectClient

    project = AIProjectClient(
        endpoint="https://res.services.ai.azure.com/api/projects/p",
        credential=StaticTokenCredential("t"),
        transport=AsyncioRequestsTransport(),
    )
    try:
        with pytest.raises(ConfigError, match="foundry-agents"):
            FoundryBackend(client=project)
    finally:
        await project.close()
    sync_client = SyncAgentsClient(
        "https://res.services.ai.azure.com/api/projects/p", SyncCredential()
    )
    with pytest.raises(ConfigError, match=r"aio\.AgentsClient"):
        FoundryBackend(client=sync_client)
    with pytest.raises(ConfigError, match="endpoint"):
        FoundryBackend()


# ------------------------------------------------------------------ snapshots and mismatches


@pytest.mark.usefixtures("token_credential")
async def test_snapshot_holds_ids_and_endpoint_never_credentials(server: RunningServer) -> None:
    cfg = foundry_config(server, agent_id="asst_configured")
    async with await threadkit.open_backend(cfg) as backend:
        thread = await backend.create_thread()
        blob = await thread.serialize()
    snap = decode_snapshot(blob)
    assert snap.backend == "foundry"
    assert snap.thread_id == thread.id
    assert snap.service_ids == {"thread_id": thread.id, "agent_id": "asst_configured"}
    assert snap.settings == {
        "endpoint": server.foundry_endpoint(),
        "allow_insecure_loopback": True,
        "model": "offline",
        "agent_id": "asst_configured",
    }
    assert TOKEN.encode() not in blob


@pytest.mark.usefixtures("token_credential")
async def test_resume_checks_backend_endpoint_and_thread(server: RunningServer) -> None:
    async with await threadkit.open_backend(foundry_config(server)) as backend:
        thread = await backend.create_thread()
        blob = await thread.serialize()
        with pytest.raises(BackendMismatchError):
            await threadkit.resume(blob, {"backend": "chat"})
        with pytest.raises(BackendMismatchError):
            await threadkit.resume(
                blob, {"backend": "assistants", "base_url": server.openai_base_url}
            )
        other = {**foundry_config(server), "endpoint": server.foundry_endpoint("elsewhere")}
        with pytest.raises(BackendMismatchError, match="elsewhere"):
            await threadkit.resume(blob, other)
        with pytest.raises(ThreadNotFoundError):
            await backend.get_thread("thread_doesnotexist0000000000")
        with pytest.raises(RunNotFoundError):
            await thread.get_run("run_doesnotexist0000000000")
        with pytest.raises(RunNotFoundError):
            await thread.list_run_steps("run_doesnotexist0000000000")
        assert await thread.delete() is True
        assert await thread.delete() is False
        with pytest.raises(ThreadNotFoundError):
            await threadkit.resume(blob, foundry_config(server))


@pytest.mark.usefixtures("token_credential")
async def test_snapshot_resume_in_a_subprocess_then_continue(
    server: RunningServer, tmp_path: Path
) -> None:
    async with await threadkit.open_backend(foundry_config(server)) as backend:
        thread = await backend.create_thread()
        await thread.add_message("user", "My name is Grace.")
        assert (await thread.run(AGENT, timeout=30)).status is RunStatus.COMPLETED
        before = [m.id async for m in thread.messages()]
        snap = tmp_path / "thread.json"
        snap.write_bytes(await thread.serialize())
        script = tmp_path / "child.py"
        script.write_text(
            f"""
import asyncio, json, os, sys
import threadkit
from threadkit.adapters.foundry import FoundryBackend, StaticTokenCredential

FoundryBackend.default_credential_factory = lambda: StaticTokenCredential({TOKEN!r})

async def main():
    thread = await threadkit.resume(open(sys.argv[1], "rb").read())  # no config: the snapshot's
    async with thread:
        seen = [m.id async for m in thread.messages()]
        await thread.add_message("user", "What is my name?")
        run = await thread.run(threadkit.Agent(name="child", instructions="Be brief."), timeout=30)
        last = [m async for m in thread.messages("desc", limit=1)][0]
        print(json.dumps({{"pid": os.getpid(), "id": thread.id, "seen": seen,
                          "status": run.status.value, "answer": last.text}}))

asyncio.run(main())
""",
            encoding="utf-8",
        )
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(script), str(snap)],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["pid"] != os.getpid()
        assert out["id"] == thread.id
        assert out["seen"] == before
        assert out["status"] == "completed"
        assert "Grace" in out["answer"]
        after = [m async for m in thread.messages()]
        assert [m.id for m in after[: len(before)]] == before
        assert [m.text for m in after[len(before) :]][0] == "What is my name?"
        assert "Grace" in after[-1].text


# ------------------------------------------------------------------ runs


@pytest.mark.usefixtures("token_credential")
async def test_requires_action_expires_on_a_short_timeout() -> None:
    with running_server(
        {"store": "memory://", "model": "offline"}, api_keys=[TOKEN], requires_action_timeout=2.0
    ) as short:
        async with await threadkit.open_backend(foundry_config(short)) as backend:
            thread = await backend.create_thread()
            await thread.add_message("user", "Please compute 2 + 2")
            tool = threadkit.function_tool(_calculator)
            run = await thread.create_run(AGENT, tools=[tool])
            run = await thread.wait_run(run.id, timeout=30)
            assert run.status is RunStatus.REQUIRES_ACTION
            assert run.expires_at is not None
            deadline = time.monotonic() + 15
            while run.status is RunStatus.REQUIRES_ACTION and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
                run = await thread.get_run(run.id)
            assert run.status is RunStatus.EXPIRED
            assert (await thread.wait_run(run.id, timeout=5)).status is RunStatus.EXPIRED
            assert run.required_action is None
            (call,) = [s async for s in thread.run_steps(run.id)]
            assert call.type == "tool_calls"
            with pytest.raises(InvalidRunStateError):
                await thread.submit_tool_outputs(run.id, [ToolOutput(tool_call_id="x", output="4")])
            # the thread is free again
            await thread.add_message("user", "Hello again")
            assert (await thread.run(AGENT, timeout=30)).status is RunStatus.COMPLETED


def _calculator(expression: str) -> str:
    """Evaluate an arithmetic expression.

    Args:
        expression: e.g. "2 + 2".
    """
    return str(eval(expression, {"__builtins__": {}}))


@pytest.mark.usefixtures("token_credential")
async def test_pages_of_100_messages(server: RunningServer) -> None:
    async with await threadkit.open_backend(foundry_config(server)) as backend:
        thread = await backend.create_thread()
        ids = [(await thread.add_message("user", f"n{i}")).id for i in range(105)]
        first = await thread.list_messages(limit=100)
        assert [m.id for m in first.data] == ids[:100]
        assert first.has_more is True
        assert (first.first_id, first.last_id) == (ids[0], ids[99])
        second = await thread.list_messages(limit=100, after=first.last_id)
        assert [m.id for m in second.data] == ids[100:]
        assert second.has_more is False
        newest = await thread.list_messages(order="desc", limit=100)
        assert [m.id for m in newest.data] == ids[::-1][:100] and newest.has_more
        with pytest.raises(ValidationError):
            await thread.list_messages(limit=101)


@pytest.mark.usefixtures("token_credential")
async def test_list_threads_filters_metadata_across_pages(server: RunningServer) -> None:
    async with await threadkit.open_backend(foundry_config(server)) as backend:
        marker = f"m{time.monotonic_ns()}"
        wanted = await backend.create_thread(metadata={"batch": marker})
        for _ in range(101):  # the marked thread ends up on the service's second page
            await backend.create_thread(metadata={"batch": "noise"})
        found = [t async for t in backend.list_threads(metadata={"batch": marker})]
        assert [t.id for t in found] == [wanted.id]
        assert found[0].metadata == {"batch": marker}
        newest = [t.created_at async for t in backend.list_threads(limit=110)]
        assert len(newest) == 110  # across the service's pages of 100
        assert newest == sorted(newest, reverse=True)


async def test_transport_failures_are_service_errors() -> None:
    client = make_agents_client(
        "http://127.0.0.1:9/api/projects/p",  # discard port: nothing listens
        StaticTokenCredential(TOKEN),
        allow_insecure_loopback=True,
        retry_total=0,
    )
    async with FoundryBackend(client=client, owns_client=True) as backend:
        with pytest.raises(ServiceError) as err:
            await backend.create_thread()
        assert err.value.__cause__ is not None


def test_poll_hints() -> None:
    assert _poll_hint({"openai-poll-after-ms": "250"}) == 0.25
    assert _poll_hint({"retry-after-ms": "1500"}) == 1.5
    assert _poll_hint({"retry-after": "2"}) == 2.0
    assert _poll_hint({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert _poll_hint({}) is None
    assert _poll_hint(None) is None


@pytest.mark.usefixtures("token_credential")
async def test_tool_outputs_then_completion_with_usage(server: RunningServer) -> None:
    cfg = foundry_config(server)
    async with await threadkit.open_backend(cfg) as backend:
        assert isinstance(backend, FoundryBackend)
        assert backend.poll == PollPolicy()
        thread = await backend.create_thread()
        await thread.add_message("user", "Please compute 3 * 3")
        run = await thread.create_run(AGENT, tools=[threadkit.function_tool(_calculator)])
        run = await thread.wait_run(run.id, timeout=30)
        assert run.status is RunStatus.REQUIRES_ACTION
        call = run.required_action.submit_tool_outputs.tool_calls[0]  # type: ignore[union-attr]
        run = await thread.submit_tool_outputs(
            run.id, [ToolOutput(tool_call_id=call.id, output="9")]
        )
        done = await thread.wait_run(run.id, timeout=30)
        assert done.status is RunStatus.COMPLETED
        assert done.usage is not None and done.usage.total_tokens > 0
        assert done.agent_id and done.agent_id.startswith("asst_")


# ------------------------------------------------------------------ the sample


def test_sample_07_runs_against_its_own_server(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "samples" / "07_foundry_classic.py")],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    pos = 0
    for pattern in (
        r"threadkit serve on http://127\.0\.0\.1:\d+/api/projects/demo",
        r"thread thread_\w+ created",
        r"assistant: Noted: your name is Ada",
        r"run run_\w+: completed \(\d+ tokens\)",
        r"tool call calculator\(.*\) -> 84",
        r"assistant: calculator returned 84\.",
        r"resumed thread thread_\w+ from a \d+-byte snapshot",
        r"assistant: Your name is Ada\.",
        r"threads tagged sample=07: 1",
        r"deleted: True",
    ):
        found = re.compile(pattern).search(proc.stdout, pos)
        assert found, f"{pattern!r} not found after offset {pos} in:\n{proc.stdout}"
        pos = found.end()


async def test_runs_survive_injected_429_500_and_slow_answers(tmp_path: Path) -> None:
    """The Azure SDK's retry policy plus threadkit's polling ride out 429s, 500s and slow polls."""
    from threadkit.testing.faults import Fault, FaultInjector

    faults = FaultInjector(
        [
            Fault(status=429, times=1, retry_after=0.05, path=r"/runs/run_", method="GET"),
            Fault(status=500, times=1, path=r"/messages$", method="POST"),
            Fault(delay=0.3, times=2, path=r"/runs/run_", method="GET"),
        ]
    )
    with running_server(
        {"store": f"sqlite:///{tmp_path}/faults.db", "model": "offline"}, wrap=faults.wrap
    ) as srv:
        config = {
            "backend": "foundry",
            "endpoint": srv.foundry_endpoint("faults"),
            "allow_insecure_loopback": True,
            "credential": "api_key",
            "api_key_env": "THREADKIT_TEST_FOUNDRY_FAULT_KEY",
            "model": "offline",
        }
        os.environ["THREADKIT_TEST_FOUNDRY_FAULT_KEY"] = "k"
        try:
            async with await threadkit.open_backend(config) as backend:
                thread = await backend.create_thread()
                await thread.add_message("user", "Please compute 6 * 7")
                run = await thread.run(functions=[_calculator], timeout=60)
                assert run.status is RunStatus.COMPLETED
                last = [m async for m in thread.messages("desc", limit=1)][0]
                assert "42" in last.text
        finally:
            del os.environ["THREADKIT_TEST_FOUNDRY_FAULT_KEY"]
    assert [f.hits for f in faults.faults] == [1, 1, 2]
