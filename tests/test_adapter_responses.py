"""The ``responses`` backend in its three modes, against ``threadkit serve`` on 127.0.0.1, with
the real openai SDK."""

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
from threadkit.adapters._responses_model import (
    item_to_message,
    message_to_items,
    parse_output,
    tool_choice_to_request,
    usage_from_response,
)
from threadkit.errors import (
    ActiveRunError,
    BackendMismatchError,
    ConfigError,
    MessageNotFoundError,
    RunTimeoutError,
    ServiceError,
    ThreadNotFoundError,
    UnsupportedOperation,
)
from threadkit.testing import ScriptedModel, ThreadConformance
from threadkit.testing.faults import Fault, FaultInjector
from threadkit.testing.server import RunningServer, running_server
from threadkit.testing.thread_suite import calculator
from threadkit.types import (
    Message,
    ReasoningContent,
    RunStatus,
    TextContent,
    ToolCallContent,
    ToolResultContent,
    TruncationStrategy,
)

openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")

KEY_ENV = "THREADKIT_TEST_RESPONSES_KEY"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    db = tmp_path_factory.mktemp("responses") / "serve.db"
    with running_server({"store": f"sqlite:///{db}", "model": "offline"}) as running:
        yield running


def config_for(base_url: str, mode: str = "previous_response_id", **extra: Any) -> dict[str, Any]:
    return {
        "backend": "responses",
        "base_url": base_url,
        "allow_insecure_loopback": True,
        "api_key_env": KEY_ENV,
        "responses_mode": mode,
        **extra,
    }


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "test-key-not-secret")


class Recorder:
    """ASGI wrapper keeping the JSON bodies of POST /responses requests."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.app: Any = None

    def wrap(self, app: Any) -> Any:
        self.app = app

        async def recorded(scope: Any, receive: Any, send: Any) -> None:
            if scope.get("type") != "http" or not (
                scope.get("method") == "POST" and scope.get("path", "").endswith("/responses")
            ):
                await app(scope, receive, send)
                return
            chunks: list[bytes] = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            body = b"".join(chunks)
            self.bodies.append(json.loads(body))
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


class _NoItemMetadata:
    """Conversation items have no metadata: the suite's first case, adapted."""

    async def test_add_and_read_messages(self, thread: Any) -> None:
        with pytest.raises(UnsupportedOperation):
            await thread.add_message("user", "hello", metadata={"k": "v"})
        first = await thread.add_message("user", "hello")
        second = await thread.add_message("user", "world")
        got = [m async for m in thread.messages()]
        assert [m.id for m in got] == [first.id, second.id]
        assert [m.text for m in got] == ["hello", "world"]
        assert got[0].role == "user"
        assert got[0].thread_id == thread.id
        assert [m.id async for m in thread.messages("desc")] == [second.id, first.id]
        assert (await thread.get_message(first.id)).text == "hello"


class TestPreviousResponseIdConformance(ThreadConformance):
    @pytest.fixture
    def config(self, server: RunningServer) -> dict[str, Any]:
        return config_for(server.openai_base_url, "previous_response_id")


class TestStoreModeConformance(ThreadConformance):
    @pytest.fixture
    def config(self, server: RunningServer, tmp_path: Path) -> dict[str, Any]:
        return config_for(server.openai_base_url, "store", store=f"sqlite:///{tmp_path}/rec.db")


class TestConversationConformance(_NoItemMetadata, ThreadConformance):
    supports_list_threads = False

    @pytest.fixture
    def config(self, server: RunningServer) -> dict[str, Any]:
        return config_for(server.openai_base_url, "conversation")


class TestBackgroundConversationConformance(_NoItemMetadata, ThreadConformance):
    supports_list_threads = False

    @pytest.fixture
    def config(self, server: RunningServer) -> dict[str, Any]:
        return config_for(server.openai_base_url, "conversation", background=True)


class TestBackgroundChainConformance(ThreadConformance):
    @pytest.fixture
    def config(self, server: RunningServer) -> dict[str, Any]:
        return config_for(server.openai_base_url, "previous_response_id", background=True)


# ---------------------------------------------------------------------------- configuration


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


async def test_background_is_refused_in_store_mode(server: RunningServer) -> None:
    with pytest.raises(ConfigError) as err:
        await threadkit.open_backend(config_for(server.openai_base_url, "store", background=True))
    assert err.value.key == "background"


async def test_snapshot_names_no_secret(server: RunningServer) -> None:
    for mode in ("previous_response_id", "conversation"):
        async with await threadkit.open_backend(config_for(server.openai_base_url, mode)) as b:
            thread = await b.create_thread()
            await thread.add_message("user", "hello")
            blob = await thread.serialize()
        assert b"test-key-not-secret" not in blob
        assert KEY_ENV.encode() in blob
        assert f'"responses_mode":"{mode}"'.encode() in blob


# ---------------------------------------------------------------------------- modes


async def test_chain_sends_only_what_the_chain_has_not_seen(tmp_path: Path) -> None:
    rec = Recorder()
    with running_server({"store": "memory://"}, wrap=rec.wrap) as srv:
        async with await threadkit.open_backend(config_for(srv.openai_base_url)) as backend:
            thread = await backend.create_thread()
            await thread.add_message("user", "My name is Ada.")
            first = await thread.run(timeout=30)
            await thread.add_message("user", "What is my name?")
            second = await thread.run(timeout=30)
            assert second.status is RunStatus.COMPLETED
            last = [m async for m in thread.messages("desc", limit=1)][0]
            assert "Ada" in last.text
    one, two = rec.bodies
    assert "previous_response_id" not in one
    assert [i["content"][0]["text"] for i in one["input"]] == ["My name is Ada."]
    assert two["previous_response_id"] == first.provider_details["responses"][0]
    assert [i["content"][0]["text"] for i in two["input"]] == ["What is my name?"]
    assert "store" not in two  # stored by the service (its default)


async def test_store_mode_sends_the_truncated_history_unstored(tmp_path: Path) -> None:
    rec = Recorder()
    with running_server({"store": "memory://"}, wrap=rec.wrap) as srv:
        cfg = config_for(srv.openai_base_url, "store")
        async with await threadkit.open_backend(cfg) as backend:
            thread = await backend.create_thread()
            await thread.add_message("user", "My name is Grace.")
            run = await thread.run(timeout=30)
            await thread.add_message("user", "What is my name?")
            await thread.run(timeout=30)
            assert "Grace" in [m async for m in thread.messages("desc", limit=1)][0].text
            # only the newest message: the model no longer knows the name
            await thread.add_message("user", "What is my name?")
            await thread.run(
                timeout=30,
                truncation_strategy=TruncationStrategy(type="last_messages", last_messages=1),
            )
            assert "Grace" not in [m async for m in thread.messages("desc", limit=1)][0].text
            # the service kept nothing
            with pytest.raises(openai.NotFoundError):
                await backend.client.responses.retrieve(run.provider_details["responses"][0])
    assert all(b["store"] is False for b in rec.bodies)
    assert all(b["include"] == ["reasoning.encrypted_content"] for b in rec.bodies)
    assert [len(b["input"]) for b in rec.bodies] == [1, 3, 1]
    assert "previous_response_id" not in rec.bodies[1]


async def test_store_mode_carries_encrypted_reasoning(tmp_path: Path) -> None:
    rec = Recorder()
    with running_server({"store": "memory://"}, wrap=rec.wrap) as srv:
        cfg = config_for(srv.openai_base_url, "store")
        async with await threadkit.open_backend(cfg) as backend:
            thread = await backend.create_thread()
            await thread.append_messages(
                [
                    Message(id="", thread_id="", role="user", content=[TextContent(text="Hi")]),
                    Message(
                        id="",
                        thread_id="",
                        role="assistant",
                        content=[
                            ReasoningContent(id="rs_1", encrypted_content="ENC", summary=["s"]),
                            ReasoningContent(summary=["no id, no content: not sendable"]),
                            TextContent(text="Hello!"),
                        ],
                    ),
                    Message(id="", thread_id="", role="user", content=[TextContent(text="Bye")]),
                ]
            )
            assert (await thread.run(timeout=30)).status is RunStatus.COMPLETED
    (body,) = rec.bodies
    kinds = [i["type"] for i in body["input"]]
    assert kinds == ["message", "reasoning", "message", "message"]
    reasoning = body["input"][1]
    assert reasoning["encrypted_content"] == "ENC"
    assert reasoning["summary"] == [{"type": "summary_text", "text": "s"}]
    assert body["input"][2]["content"][0]["type"] == "output_text"


async def test_conversation_mode_items_are_the_messages(server: RunningServer) -> None:
    cfg = config_for(server.openai_base_url, "conversation")
    async with await threadkit.open_backend(cfg) as backend:
        thread = await backend.create_thread(metadata={"topic": "maths"})
        await thread.add_message("user", "Please compute 6 * 7")
        run = await thread.run(functions=[calculator], timeout=30)
        assert run.status is RunStatus.COMPLETED
        conv = backend.client.conversations
        items = (await conv.items.list(thread.id, order="asc")).data
        messages = [m async for m in thread.messages()]
        assert [m.id for m in messages] == [i.id for i in items]
        assert [type(p) for m in messages for p in m.content] == [
            TextContent,
            ToolCallContent,
            ToolResultContent,
            TextContent,
        ]
        assert messages[-1].run_id == run.id and messages[1].run_id == run.id
        assert (await thread.info()).metadata == {"topic": "maths"}
        with pytest.raises(MessageNotFoundError):
            [m async for m in thread.messages(after="msg_nope")]
        with pytest.raises(UnsupportedOperation):
            await thread.run(
                timeout=30,
                truncation_strategy=TruncationStrategy(type="last_messages", last_messages=2),
            )


async def test_list_threads_lists_only_this_backends_threads(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/shared.db"
    with running_server({"store": "memory://"}) as srv:
        async with await threadkit.open_backend({"backend": "chat", "store": db}) as chat:
            local = await chat.create_thread(metadata={"tenant": "a"})
        cfg = config_for(srv.openai_base_url, store=db)
        async with await threadkit.open_backend(cfg) as backend:
            mine = await backend.create_thread(metadata={"tenant": "a"})
            listed = [t.id async for t in backend.list_threads(metadata={"tenant": "a"})]
            assert listed == [mine.id]
            with pytest.raises(ThreadNotFoundError):
                await backend.get_thread(local.id)


# ---------------------------------------------------------------------------- runs


async def test_requires_action_cancel_takes_the_calls_back(server: RunningServer) -> None:
    for mode in ("previous_response_id", "conversation", "store"):
        async with await threadkit.open_backend(config_for(server.openai_base_url, mode)) as b:
            thread = await b.create_thread()
            await thread.add_message("user", "Please compute 2 + 2")
            run = await thread.create_run(tools=[threadkit.function_tool(calculator)])
            assert run.status is RunStatus.REQUIRES_ACTION, mode
            with pytest.raises(ActiveRunError):
                await thread.add_message("user", "wait")
            cancelled = await thread.cancel_run(run.id)
            assert cancelled.status is RunStatus.CANCELLED
            steps = [s async for s in thread.run_steps(run.id)]
            assert [s.status.value for s in steps] == ["cancelled"]
            # no unanswered call is left anywhere: the next run works
            assert [m async for m in thread.messages() if m.tool_calls] == []
            await thread.add_message("user", "Please compute 3 + 3")
            done = await thread.run(functions=[calculator], timeout=30)
            assert done.status is RunStatus.COMPLETED, mode
            assert "6" in [m async for m in thread.messages("desc", limit=1)][0].text


async def test_background_run_is_polled_and_cancelled(tmp_path: Path) -> None:
    async def slow(request: Any) -> str:
        await asyncio.sleep(3)
        return "too late"

    with running_server({"store": "memory://"}, model=ScriptedModel(slow)) as srv:
        for mode in ("previous_response_id", "conversation"):
            cfg = config_for(srv.openai_base_url, mode, background=True)
            async with await threadkit.open_backend(cfg) as backend:
                thread = await backend.create_thread()
                await thread.add_message("user", "hello")
                run = await thread.create_run()
                assert run.status in (RunStatus.QUEUED, RunStatus.IN_PROGRESS)
                with pytest.raises(RunTimeoutError):
                    await thread.wait_run(run.id, timeout=0.3)
                cancelled = await thread.cancel_run(run.id)
                assert cancelled.status is RunStatus.CANCELLED
                assert (await thread.get_run(run.id)).status is RunStatus.CANCELLED
                assert [m.text async for m in thread.messages()] == ["hello"]


async def test_a_response_in_flight_cannot_be_cancelled_without_background(
    tmp_path: Path,
) -> None:
    async def slow(request: Any) -> str:
        await asyncio.sleep(1.5)
        return "done"

    with running_server({"store": "memory://"}, model=ScriptedModel(slow)) as srv:
        async with await threadkit.open_backend(config_for(srv.openai_base_url)) as backend:
            thread = await backend.create_thread()
            await thread.add_message("user", "hello")
            task = asyncio.create_task(thread.create_run())
            runs: list[Any] = []
            for _ in range(100):
                runs = [r async for r in thread.runs()]
                if runs:
                    break
                await asyncio.sleep(0.02)
            with pytest.raises(UnsupportedOperation):
                await thread.cancel_run(runs[0].id)
            with pytest.raises(ActiveRunError):
                await thread.create_run()
            assert (await task).status is RunStatus.COMPLETED


async def test_a_run_whose_request_never_returns_expires(tmp_path: Path) -> None:
    async def slow(request: Any) -> str:
        await asyncio.sleep(2.5)
        return "late"

    db = f"sqlite:///{tmp_path}/record.db"
    with running_server({"store": "memory://"}, model=ScriptedModel(slow)) as srv:
        cfg = config_for(srv.openai_base_url, "store", store=db)
        async with await threadkit.open_backend(cfg) as backend:
            backend.request_lease = 1
            thread = await backend.create_thread()
            await thread.add_message("user", "hello")
            task = asyncio.create_task(thread.create_run())
            await asyncio.sleep(2.0)
            # another process reading the record sees the holder's lease gone
            async with await threadkit.open_backend(cfg) as other:
                again = await other.get_thread(thread.id)
                (run,) = [r async for r in again.runs()]
                run = await again.get_run(run.id)
                assert run.status is RunStatus.EXPIRED
                assert run.last_error is not None
            # the late answer does not bring the expired run back
            assert (await task).status is RunStatus.EXPIRED


async def test_delete_removes_the_chains_responses(server: RunningServer) -> None:
    async with await threadkit.open_backend(config_for(server.openai_base_url)) as backend:
        thread = await backend.create_thread()
        await thread.add_message("user", "hello")
        run = await thread.run(timeout=30)
        (rid,) = run.provider_details["responses"]
        await backend.client.responses.retrieve(rid)
        assert await thread.delete() is True
        assert await thread.delete() is False
        with pytest.raises(openai.NotFoundError):
            await backend.client.responses.retrieve(rid)
        with pytest.raises(ThreadNotFoundError):
            await backend.get_thread(thread.id)


# ---------------------------------------------------------------------------- snapshots


async def test_unknown_conversation_raises_thread_not_found(server: RunningServer) -> None:
    cfg = config_for(server.openai_base_url, "conversation")
    async with await threadkit.open_backend(cfg) as backend:
        with pytest.raises(ThreadNotFoundError):
            await backend.get_thread("conv_doesnotexist0000000000")
        thread = await backend.create_thread()
        blob = await thread.serialize()
        assert await thread.delete() is True
        with pytest.raises(ThreadNotFoundError):
            await threadkit.resume(blob, cfg)
        with pytest.raises(ThreadNotFoundError):
            await thread.add_message("user", "anyone?")


async def test_snapshots_are_refused_by_other_modes_services_and_stores(
    server: RunningServer, tmp_path: Path
) -> None:
    url = server.openai_base_url
    async with await threadkit.open_backend(config_for(url, "conversation")) as backend:
        conv_blob = await (await backend.create_thread()).serialize()
    async with await threadkit.open_backend(config_for(url)) as backend:
        chain = await backend.create_thread()
        await chain.add_message("user", "hello")
        chain_blob = await chain.serialize()
    with pytest.raises(BackendMismatchError):
        await threadkit.resume(conv_blob, config_for(url, "previous_response_id"))
    with pytest.raises(BackendMismatchError):
        await threadkit.resume(chain_blob, config_for(url, "conversation"))
    with pytest.raises(BackendMismatchError):
        await threadkit.resume(chain_blob, config_for("http://localhost:1/v1"))
    with pytest.raises(BackendMismatchError):
        await threadkit.resume(chain_blob, config_for(url, store=f"sqlite:///{tmp_path}/x.db"))
    with pytest.raises(BackendMismatchError):
        await threadkit.resume(chain_blob, {"backend": "assistants"})
    # the local modes share the local record, so a chain thread resumes in store mode
    resumed = await threadkit.resume(chain_blob, config_for(url, "store"))
    try:
        assert [m.text async for m in resumed.messages()] == ["hello"]
    finally:
        await resumed.close()


@pytest.mark.parametrize("mode", ["previous_response_id", "conversation", "store"])
def test_snapshot_resumes_in_another_process(
    server: RunningServer, tmp_path: Path, mode: str
) -> None:
    store = f"sqlite:///{tmp_path}/record.db" if mode == "store" else "memory://"

    async def first() -> bytes:
        cfg = config_for(server.openai_base_url, mode, store=store)
        async with await threadkit.open_backend(cfg) as backend:
            thread = await backend.create_thread()
            await thread.add_message("user", "My name is Lovelace.")
            await thread.run(timeout=30)
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
                texts = [m.text async for m in thread.messages()]
                print(run.status.value, "|", len(texts), "|", texts[-1])
        asyncio.run(main())
        """
    )
    env = {**os.environ, KEY_ENV: "test-key-not-secret"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "completed | 4 | Your name is Lovelace."


# ---------------------------------------------------------------------------- faults


async def test_runs_survive_429_and_500(tmp_path: Path) -> None:
    faults = FaultInjector(
        [
            Fault(status=429, times=1, retry_after=0.05, path=r"/responses$", method="POST"),
            Fault(status=500, times=1, path=r"/items$", method="POST"),
            Fault(delay=0.3, times=2, path=r"/responses$", method="POST"),
        ]
    )
    with running_server({"store": "memory://"}, wrap=faults.wrap) as srv:
        cfg = config_for(srv.openai_base_url, "conversation")
        async with await threadkit.open_backend(cfg) as backend:
            thread = await backend.create_thread()
            await thread.add_message("user", "Please compute 6 * 7")
            run = await thread.run(functions=[calculator], timeout=30)
            assert run.status is RunStatus.COMPLETED
            assert "42" in [m async for m in thread.messages("desc", limit=1)][0].text
            assert len(run.provider_details["responses"]) == 2
    assert [f.hits for f in faults.faults] == [1, 1, 2]


async def test_persistent_500_fails_the_run_and_frees_the_thread(tmp_path: Path) -> None:
    faults = FaultInjector([Fault(status=500, times=3, path=r"/responses$", method="POST")])
    with running_server({"store": "memory://"}, wrap=faults.wrap) as srv:
        async with await threadkit.open_backend(config_for(srv.openai_base_url)) as backend:
            thread = await backend.create_thread()
            await thread.add_message("user", "hello")
            with pytest.raises(ServiceError) as err:
                await thread.create_run()
            assert err.value.status_code == 500
            assert err.value.__cause__ is not None
            (failed,) = [r async for r in thread.runs()]
            assert failed.status is RunStatus.FAILED
            assert failed.last_error is not None and failed.last_error.code == "server_error"
            # the chain was not moved: the same message is sent again and answered
            run = await thread.run(timeout=30)
            assert run.status is RunStatus.COMPLETED
            assert [m.role async for m in thread.messages()] == ["user", "assistant"]
    assert faults.hits == 3  # the first try and the SDK's two retries


async def test_slow_background_run_times_out_then_finishes(tmp_path: Path) -> None:
    async def slow(request: Any) -> str:
        await asyncio.sleep(1.5)
        return "finally"

    faults = FaultInjector([Fault(delay=0.2, times=100, path=r"/responses/resp_", method="GET")])
    with running_server({"store": "memory://"}, model=ScriptedModel(slow), wrap=faults.wrap) as srv:
        cfg = config_for(srv.openai_base_url, background=True)
        async with await threadkit.open_backend(cfg) as backend:
            thread = await backend.create_thread()
            await thread.add_message("user", "hello")
            run = await thread.create_run()
            started = time.monotonic()
            with pytest.raises(RunTimeoutError):
                await thread.wait_run(run.id, timeout=0.5)
            assert time.monotonic() - started < 1.4
            run = await thread.wait_run(run.id, timeout=30)
            assert run.status is RunStatus.COMPLETED
            assert [m.text async for m in thread.messages()] == ["hello", "finally"]


async def test_a_request_slower_than_the_client_timeout_is_a_service_error(
    tmp_path: Path,
) -> None:
    from threadkit.adapters.responses import ResponsesBackend
    from threadkit.registry import open_store

    faults = FaultInjector([Fault(delay=1.0, times=1, path=r"/responses$", method="POST")])
    with running_server({"store": "memory://"}, wrap=faults.wrap) as srv:
        client = openai.AsyncOpenAI(
            base_url=srv.openai_base_url, api_key="k", timeout=0.3, max_retries=0
        )
        store = open_store("memory://")
        await store.setup()
        async with ResponsesBackend(client, store=store, model="offline", owns_client=True) as b:
            thread = await b.create_thread()
            await thread.add_message("user", "hello")
            with pytest.raises(ServiceError):
                await thread.create_run()
            (failed,) = [r async for r in thread.runs()]
            assert failed.status is RunStatus.FAILED
            assert (await thread.run(timeout=30)).status is RunStatus.COMPLETED


# ---------------------------------------------------------------------------- mapping


def test_output_items_map_to_one_assistant_turn() -> None:
    turn = parse_output(
        [
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "c1",
                "name": "f",
                "arguments": "{}",
            },
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "thinking aloud", "annotations": []}],
            },
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"text": "why"}],
                "encrypted_content": "E",
            },
            {"type": "web_search_call", "id": "ws_1", "status": "completed"},
        ]
    )
    assert [type(p) for p in turn.content] == [ReasoningContent, TextContent, ToolCallContent]
    assert turn.content[0] == ReasoningContent(id="rs_1", encrypted_content="E", summary=["why"])
    assert turn.call_item_ids == ["fc_1"] and turn.message_item_ids == ["msg_1"]
    assert turn.other == [{"type": "web_search_call", "id": "ws_1", "status": "completed"}]
    message = Message(id="m", thread_id="t", role="assistant", content=turn.content)
    items = message_to_items("responses", message)
    assert [i["type"] for i in items] == ["reasoning", "message", "function_call"]
    assert items[0]["encrypted_content"] == "E"


def test_items_map_to_messages_and_back() -> None:
    dev = item_to_message(
        {
            "type": "message",
            "id": "i1",
            "role": "developer",
            "content": [
                {"type": "input_text", "text": "rules"},
                {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"},
            ],
        },
        "conv_1",
    )
    assert dev.role == "system" and dev.text == "rules"
    assert message_to_items("responses", dev)[0]["role"] == "developer"
    out = item_to_message(
        {"type": "function_call_output", "id": "i2", "call_id": "c", "output": "84"}, "conv_1"
    )
    assert out.role == "tool" and out.tool_results[0].output == "84"
    with pytest.raises(UnsupportedOperation):
        message_to_items(
            "responses",
            Message(
                id="m",
                thread_id="t",
                role="assistant",
                content=[threadkit.ImageUrlContent(url="https://x/y.png")],
            ),
        )
    assert tool_choice_to_request({"type": "function", "function": {"name": "f"}}) == {
        "type": "function",
        "name": "f",
    }
    usage = usage_from_response(
        {"usage": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}}
    )
    assert usage is not None and usage.total_tokens == 7


async def test_copy_thread_into_and_out_of_every_mode(server: RunningServer) -> None:
    async with await threadkit.open_backend({"backend": "chat"}) as chat:
        source = await chat.create_thread()
        await source.add_message("user", "My name is Ada.")
        await source.run(timeout=30)
        await source.add_message("user", "Please compute 6 * 7")
        await source.run(functions=[calculator], timeout=30)
        original = [(m.role, m.text, [type(p) for p in m.content]) async for m in source.messages()]
        assert len(original) == 6
        for mode in ("previous_response_id", "conversation", "store"):
            cfg = config_for(server.openai_base_url, mode)
            async with await threadkit.open_backend(cfg) as backend:
                copied = await threadkit.copy_thread(source, backend)
                thread = copied.thread
                got = [
                    (m.role, m.text, [type(p) for p in m.content]) async for m in thread.messages()
                ]
                assert got == original, mode
                assert list(copied.message_ids) == [m.id async for m in source.messages()]
                await thread.add_message("user", "What is my name?")
                assert (await thread.run(timeout=30)).status is RunStatus.COMPLETED
                assert [m async for m in thread.messages("desc", limit=1)][0].text == (
                    "Your name is Ada."
                )
                back = await threadkit.copy_thread(thread, chat)
                assert len(back.message_ids) == 8, mode
