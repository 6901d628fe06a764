"""The ``foundry-agents`` backend (azure-ai-projects 2.x ``get_openai_client()``) against
``threadkit serve`` on 127.0.0.1: conversations as threads, runs with ``agent_reference``."""

from __future__ import annotations

import asyncio
import json
import os
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
    AuthenticationError,
    BackendMismatchError,
    ConfigError,
    NotFoundError,
    ThreadNotFoundError,
    UnsupportedOperation,
)
from threadkit.testing import ThreadConformance
from threadkit.testing.faults import Fault, FaultInjector
from threadkit.testing.server import RunningServer, running_server
from threadkit.testing.thread_suite import calculator
from threadkit.types import Agent, RunStatus

pytest.importorskip("azure.ai.projects.aio")
pytest.importorskip("openai")
pytest.importorskip("uvicorn")

from threadkit.adapters.foundry_agents import FoundryAgentsBackend

KEY_ENV = "THREADKIT_TEST_FOUNDRY_AGENTS_KEY"
KEY = "test-key-not-secret"


class Token:
    """A stand-in AsyncTokenCredential presenting one bearer token (tests only)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls = 0

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.calls += 1
        return AccessToken(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> Token:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    db = tmp_path_factory.mktemp("foundry_agents") / "serve.db"
    with running_server({"store": f"sqlite:///{db}", "model": "offline"}, api_keys=[KEY]) as srv:
        yield srv


def config_for(endpoint: str, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "foundry-agents",
        "endpoint": endpoint,
        "allow_insecure_loopback": True,
        "credential": "api_key",
        "api_key_env": KEY_ENV,
        "agent_id": "helper",
        **extra,
    }


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


class Recorder:
    """ASGI wrapper keeping (method, path, JSON body) of every POST."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []

    def wrap(self, app: Any) -> Any:
        async def recorded(scope: Any, receive: Any, send: Any) -> None:
            if scope.get("type") != "http" or scope.get("method") != "POST":
                await app(scope, receive, send)
                return
            chunks: list[bytes] = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            body = b"".join(chunks)
            self.posts.append((scope["path"], json.loads(body or b"{}")))
            sent = False

            async def replay() -> Any:
                nonlocal sent
                if sent:
                    return await receive()
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            await app(scope, replay, send)

        return recorded


# ---------------------------------------------------------------------------- conformance


class TestFoundryAgentsConformance(ThreadConformance):
    supports_list_threads = False

    @pytest.fixture
    def config(self, server: RunningServer) -> dict[str, Any]:
        return config_for(server.foundry_endpoint())

    async def test_add_and_read_messages(self, thread: Any) -> None:
        # conversation items have no metadata field
        with pytest.raises(UnsupportedOperation):
            await thread.add_message("user", "hello", metadata={"k": "v"})
        first = await thread.add_message("user", "hello")
        second = await thread.add_message("user", "world")
        got = [m async for m in thread.messages()]
        assert [m.id for m in got] == [first.id, second.id]
        assert [m.text for m in got] == ["hello", "world"]
        assert [m.id async for m in thread.messages("desc")] == [second.id, first.id]
        assert (await thread.get_message(first.id)).text == "hello"


class TestFoundryAgentsBackgroundConformance(TestFoundryAgentsConformance):
    @pytest.fixture
    def config(self, server: RunningServer) -> dict[str, Any]:
        return config_for(server.foundry_endpoint(), background=True)


# ---------------------------------------------------------------------------- construction


async def test_plain_http_needs_the_loopback_flag(server: RunningServer) -> None:
    with pytest.raises(ConfigError) as err:
        await threadkit.open_backend(
            config_for(server.foundry_endpoint(), allow_insecure_loopback=False)
        )
    assert err.value.key == "endpoint"
    assert "allow_insecure_loopback" in str(err.value)
    with pytest.raises(ConfigError) as err:
        await FoundryAgentsBackend.from_credential(server.foundry_endpoint(), Token(KEY))
    assert err.value.key == "endpoint"


async def test_plain_http_to_another_host_is_refused_even_with_the_flag() -> None:
    with pytest.raises(ConfigError) as err:
        await threadkit.open_backend(config_for("http://10.1.2.3:8000/api/projects/p"))
    assert err.value.key == "endpoint"
    with pytest.raises(ConfigError):
        await FoundryAgentsBackend.from_credential(
            "http://example.com/api/projects/p", Token(KEY), allow_insecure_loopback=True
        )


async def test_endpoint_and_key_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config_for("http://127.0.0.1:1/api/projects/p")
    del cfg["endpoint"]
    with pytest.raises(ConfigError) as err:
        await threadkit.open_backend(cfg)
    assert err.value.key == "endpoint"
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError) as err:
        await threadkit.open_backend(config_for("http://127.0.0.1:1/api/projects/p"))
    assert err.value.key == "api_key_env"
    assert KEY_ENV in str(err.value)


async def test_a_bearer_credential_reaches_loopback_only_through_the_narrow_option(
    server: RunningServer,
) -> None:
    """The project API (agent versions) is an azure-core pipeline that refuses bearer tokens
    over http; the backend passes enforce_https=False for an allowed loopback endpoint only."""
    from azure.ai.projects.aio import AIProjectClient
    from azure.core.exceptions import ServiceRequestError

    token = Token(KEY)
    project = AIProjectClient(endpoint=server.foundry_endpoint(), credential=token)
    async with project:
        with pytest.raises(ServiceRequestError, match="non-TLS"):
            await project.agents.create_version(
                "plain", {"definition": {"kind": "prompt", "model": "offline"}}
            )
        backend = await FoundryAgentsBackend.from_project(
            project, agent_name="tokened", model="offline", allow_insecure_loopback=True
        )
        async with backend:
            thread = await backend.create_thread()
            await thread.add_message("user", "Please compute 6 * 7")
            agent = Agent(name="tokened", instructions="Use the calculator.")
            run = await thread.run(agent, functions=[calculator], timeout=30)
            assert run.status is RunStatus.COMPLETED
            assert run.agent_id == "tokened:1"
            assert "42" in [m async for m in thread.messages("desc", limit=1)][0].text
        assert token.calls >= 1
        # the project client was the caller's: it is still open
        got = await project.agents.get("tokened", enforce_https=False)
        assert got["name"] == "tokened"


async def test_a_wrong_key_is_an_authentication_error(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "wrong")
    async with await threadkit.open_backend(config_for(server.foundry_endpoint())) as backend:
        with pytest.raises(AuthenticationError):
            await backend.create_thread()
    async with await FoundryAgentsBackend.from_credential(
        server.foundry_endpoint(), Token("wrong"), allow_insecure_loopback=True
    ) as backend:
        with pytest.raises(AuthenticationError):
            await backend.create_thread()
        with pytest.raises(AuthenticationError):
            await backend.agent_version("x", {"kind": "prompt", "model": "offline"})


# ---------------------------------------------------------------------------- agents


async def test_requests_carry_the_agent_reference_never_tools() -> None:
    rec = Recorder()
    with running_server({"store": "memory://"}, wrap=rec.wrap) as srv:
        async with await threadkit.open_backend(config_for(srv.foundry_endpoint())) as backend:
            thread = await backend.create_thread()
            await thread.add_message("user", "Please compute 12 * (3 + 4)")
            agent = Agent(name="maths", instructions="Use the calculator.")
            run = await thread.run(agent, functions=[calculator], timeout=30)
            assert run.status is RunStatus.COMPLETED
            await thread.add_message("user", "Please compute 1 + 1")
            again = await thread.run(agent, functions=[calculator], timeout=30)
            assert run.agent_id == again.agent_id == "maths:1"  # one version per definition
            other = await thread.run(Agent(name="maths", instructions="Be terse."), timeout=30)
            assert other.agent_id == "maths:2"
            by_name = await thread.run(Agent(name="maths"), timeout=30)
            assert by_name.agent_id == "maths"  # the latest version, by name
    versions = [b for p, b in rec.posts if p.endswith("/agents/maths/versions")]
    assert len(versions) == 2
    assert versions[0]["definition"]["tools"][0]["name"] == "calculator"
    assert versions[0]["definition"]["instructions"] == "Use the calculator."
    responses = [b for p, b in rec.posts if p.endswith("/openai/v1/responses")]
    assert len(responses) == 6  # run and again: call + answer each; other; by_name
    for body in responses:
        assert "tools" not in body and "instructions" not in body
        assert body["agent_reference"]["type"] == "agent_reference"
        assert body["agent_reference"]["name"] == "maths"
        assert body["conversation"] == thread.id
    assert responses[0]["agent_reference"]["version"] == "1"
    assert "version" not in responses[-1]["agent_reference"]


async def test_agent_resolution_rules(server: RunningServer) -> None:
    async with await threadkit.open_backend(config_for(server.foundry_endpoint())) as backend:
        thread = await backend.create_thread()
        await thread.add_message("user", "hello")
        with pytest.raises(UnsupportedOperation):
            await thread.create_run(
                Agent(id="helper:1"), tools=[threadkit.function_tool(calculator)]
            )
        with pytest.raises(NotFoundError):  # the configured agent_id names no agent yet
            await thread.create_run()
        made = await thread.run(Agent(name="helper", instructions="Be kind."), timeout=30)
        assert made.agent_id == "helper:1" and made.instructions == "Be kind."
        pinned = await thread.run(Agent(id="helper:1"), timeout=30)
        assert pinned.agent_id == "helper:1" and pinned.status is RunStatus.COMPLETED
        configured = await thread.run(timeout=30)  # agent_id from the configuration
        assert configured.agent_id == "helper"
    cfg = config_for(server.foundry_endpoint())
    del cfg["agent_id"]
    async with await threadkit.open_backend(cfg) as backend:
        thread = await backend.create_thread()
        await thread.add_message("user", "hello")
        with pytest.raises(ConfigError) as err:
            await thread.create_run()
        assert err.value.key == "agent_id"


# ---------------------------------------------------------------------------- snapshots


async def test_snapshot_keeps_endpoint_conversation_and_agent_never_the_key(
    server: RunningServer,
) -> None:
    async with await threadkit.open_backend(config_for(server.foundry_endpoint())) as backend:
        thread = await backend.create_thread()
        snap = json.loads(await thread.serialize())
    assert snap["backend"] == "foundry-agents"
    assert snap["settings"]["endpoint"] == server.foundry_endpoint()
    assert snap["service_ids"] == {"conversation_id": thread.id, "agent_name": "helper"}
    assert KEY not in json.dumps(snap)
    assert snap["settings"]["api_key_env"] == KEY_ENV


async def test_mismatched_snapshots_are_refused(server: RunningServer) -> None:
    from threadkit.adapters.responses import ResponsesBackend
    from threadkit.snapshot import decode_snapshot

    async with await threadkit.open_backend(config_for(server.foundry_endpoint())) as backend:
        thread = await backend.create_thread()
        await thread.add_message("user", "keep me")
        blob = await thread.serialize()
    responses_cfg = {
        "backend": "responses",
        "base_url": server.openai_base_url,
        "allow_insecure_loopback": True,
        "api_key_env": KEY_ENV,
        "responses_mode": "conversation",
    }
    with pytest.raises(BackendMismatchError):
        await threadkit.resume(blob, responses_cfg)
    async with await threadkit.open_backend(responses_cfg) as plain:
        assert isinstance(plain, ResponsesBackend)
        with pytest.raises(BackendMismatchError):
            await plain.resume_thread(decode_snapshot(blob))
    with pytest.raises(BackendMismatchError):
        await threadkit.resume(blob, config_for(server.foundry_endpoint("other")))
    resumed = await threadkit.resume(blob, config_for(server.foundry_endpoint()))
    try:
        assert [m.text async for m in resumed.messages()] == ["keep me"]
    finally:
        await resumed.close()


async def test_unknown_conversation_raises_thread_not_found(server: RunningServer) -> None:
    async with await threadkit.open_backend(config_for(server.foundry_endpoint())) as backend:
        with pytest.raises(ThreadNotFoundError):
            await backend.get_thread("conv_doesnotexist0000000000")
        thread = await backend.create_thread()
        blob = await thread.serialize()
        assert await thread.delete() is True
        with pytest.raises(ThreadNotFoundError):
            await threadkit.resume(blob, config_for(server.foundry_endpoint()))


def test_snapshot_resumes_in_another_process(server: RunningServer, tmp_path: Path) -> None:
    async def first() -> bytes:
        async with await threadkit.open_backend(config_for(server.foundry_endpoint())) as b:
            thread = await b.create_thread()
            await thread.add_message("user", "My name is Lovelace.")
            await thread.run(Agent(name="helper", instructions="Remember names."), timeout=30)
            snapshot: bytes = await thread.serialize()
            return snapshot

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
                print(run.status.value, "|", run.agent_id, "|", last.text)
        asyncio.run(main())
        """
    )
    env = {**os.environ, KEY_ENV: KEY}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "completed | helper | Your name is Lovelace."


# ---------------------------------------------------------------------------- faults


async def test_runs_survive_429_and_500() -> None:
    faults = FaultInjector(
        [
            Fault(status=429, times=1, retry_after=0.05, path=r"/openai/v1/responses$"),
            Fault(status=500, times=1, path=r"/agents/[\w-]+/versions$", method="POST"),
            Fault(delay=0.3, times=2, path=r"/openai/v1/responses$", method="POST"),
        ]
    )
    with running_server({"store": "memory://"}, wrap=faults.wrap) as srv:
        async with await threadkit.open_backend(config_for(srv.foundry_endpoint())) as backend:
            thread = await backend.create_thread()
            await thread.add_message("user", "Please compute 6 * 7")
            agent = Agent(name="faulty", instructions="Use the calculator.")
            run = await thread.run(agent, functions=[calculator], timeout=30)
            assert run.status is RunStatus.COMPLETED
            assert "42" in [m async for m in thread.messages("desc", limit=1)][0].text
    assert [f.hits for f in faults.faults] == [1, 1, 2]


async def test_default_credential_is_built_lazily_and_closed() -> None:
    pytest.importorskip("azure.identity.aio")
    cfg = config_for("https://example.services.ai.azure.com/api/projects/p", credential="default")
    backend = await threadkit.open_backend(cfg)
    try:
        assert isinstance(backend, FoundryAgentsBackend)
        assert str(backend.client.base_url).startswith(
            "https://example.services.ai.azure.com/api/projects/p/openai/v1"
        )
        assert "api_key_env" not in backend.settings
    finally:
        await backend.close()  # nothing was sent: no token was ever asked for
