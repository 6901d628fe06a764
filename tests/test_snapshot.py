"""Snapshots: round trips, resume, every kind of bad input, backend mismatch, and no credentials.

Every error case also checks that the failed resume changed nothing in the store it opened (the
thread list and every thread's message count and newest ``seq``).
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

import threadkit
from threadkit import Agent, TruncationStrategy
from threadkit._ids import new_id
from threadkit._local import LocalBackend, LocalThread
from threadkit.errors import (
    BackendMismatchError,
    IncompatibleVersionError,
    SnapshotError,
    ThreadNotFoundError,
)
from threadkit.registry import BACKENDS, RegistryEntry, open_store
from threadkit.snapshot import (
    FORMAT,
    VERSION,
    Snapshot,
    decode_snapshot,
    encode_snapshot,
    redact_url,
)
from threadkit.stores.base import MessageStore
from threadkit.stores.memory import MemoryStore
from threadkit.testing import ScriptedModel
from threadkit.types import Message, RunStatus

# --------------------------------------------------------------------------- helpers


async def state(store: MessageStore) -> list[tuple[str, int, int]]:
    """Every thread of the store: (id, message count, newest seq), newest thread first."""
    out = []
    page = await store.list_threads(limit=None)
    for info in page.data:
        tail = await store.tail(info.id, 1)
        out.append((info.id, await store.count_messages(info.id), tail[-1].seq if tail else 0))
    return out


def add(calc: str) -> str:
    """Add numbers.

    Args:
        calc: like "2 + 3".
    """
    a, _, b = calc.partition("+")
    return str(int(a) + int(b))


async def fill(thread: Any) -> None:
    """A short conversation with a fact, a tool turn, and a recall."""
    await thread.add_message("user", "Hello, my name is Ada.", metadata={"k": "v"})
    await thread.run()
    await thread.add_message("user", "Please add 2 + 3")
    run = await thread.run(functions=[add])
    assert run.status is RunStatus.COMPLETED


@pytest.fixture
async def mem() -> AsyncIterator[tuple[Any, str]]:
    """A backend on a named memory space (so a second store can watch it) and the URL."""
    name = new_id("snap")
    url = f"memory://{name}"
    backend = await threadkit.open_backend({"store": url})
    yield backend, url
    await backend.close()
    MemoryStore.drop(name)


@pytest.fixture
async def mem_thread(mem: tuple[Any, str]) -> tuple[Any, str]:
    backend, url = mem
    thread = await backend.create_thread(metadata={"user": "ada"})
    await fill(thread)
    return thread, url


@pytest.fixture
async def sqlite_thread(tmp_path: Path) -> AsyncIterator[tuple[Any, str]]:
    url = f"sqlite:///{tmp_path}/snap.db"
    backend = await threadkit.open_backend({"store": url})
    thread = await backend.create_thread()
    await fill(thread)
    yield thread, url
    await backend.close()


async def history(thread: Any) -> list[tuple[int, str, str, list[str]]]:
    return [
        (m.seq, m.role, m.text, [type(p).__name__ for p in m.content])
        async for m in thread.messages()
    ]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_memory_thread_round_trip_and_inline_resume(
    mem_thread: tuple[Any, str], fmt: Any
) -> None:
    thread, url = mem_thread
    blob = await thread.serialize(fmt)
    assert isinstance(blob, bytes)
    assert blob.lstrip()[:1] == b"{" if fmt == "json" else blob[:1] != b"{"
    snap = decode_snapshot(blob)
    assert (snap.format, snap.version, snap.backend) == (FORMAT, VERSION, "chat")
    assert snap.thread_id == thread.id
    assert snap.store == url
    assert snap.message_count == 6 and snap.last_seq == 6
    assert snap.settings["model"] == "offline"
    assert snap.settings["api_key_env"] == "OPENAI_API_KEY"
    assert snap.inline is not None
    assert snap.inline.metadata == {"user": "ada"}
    original = [m async for m in thread.messages()]
    assert snap.inline.messages == original

    # resume into a fresh, private memory store: the thread is rebuilt from the snapshot
    resumed = await threadkit.resume(blob, {"store": "memory://"})
    try:
        assert resumed.id == thread.id
        assert [m async for m in resumed.messages()] == original
        info = await resumed.info()
        assert info.metadata == {"user": "ada"} and info.message_count == 6
        await resumed.add_message("user", "What is my name?")
        run = await resumed.run()
        assert run.status is RunStatus.COMPLETED
        msgs = await history(resumed)
        assert msgs[-1][2] == "Your name is Ada."
        assert [m[0] for m in msgs] == list(range(1, 9))
        # the original thread is untouched by what the resumed copy did
        assert len([m async for m in thread.messages()]) == 6
    finally:
        await resumed.close()


async def test_json_and_msgpack_decode_to_the_same_snapshot(mem_thread: tuple[Any, str]) -> None:
    thread, _ = mem_thread
    a = decode_snapshot(await thread.serialize("json"))
    b = decode_snapshot(await thread.serialize("msgpack"))
    assert msgspec.structs.replace(a, created_at=0) == msgspec.structs.replace(b, created_at=0)
    # str and memoryview input are accepted too
    text = (await thread.serialize("json")).decode()
    assert decode_snapshot(text).thread_id == thread.id
    assert decode_snapshot(memoryview(await thread.serialize("msgpack"))).thread_id == thread.id


async def test_resume_without_config_reopens_the_named_memory_space(
    mem_thread: tuple[Any, str],
) -> None:
    thread, url = mem_thread
    blob = await thread.serialize()
    watcher = MemoryStore.from_url(url)
    before = await state(watcher)
    resumed = await threadkit.resume(blob)
    try:
        assert await state(watcher) == before  # the thread was found, not loaded twice
        assert await history(resumed) == await history(thread)
    finally:
        await resumed.close()


async def test_sqlite_thread_round_trip(sqlite_thread: tuple[Any, str]) -> None:
    thread, _ = sqlite_thread
    for i, fmt in enumerate(("json", "msgpack")):
        blob = await thread.serialize(fmt)
        snap = decode_snapshot(blob)
        assert snap.inline is None  # a persistent store is named, not copied
        assert snap.store is not None and snap.store.startswith("sqlite:///")
        assert snap.message_count == snap.last_seq == 6 + 2 * i
        assert b"Ada" not in blob  # no message content in the envelope
        resumed = await threadkit.resume(blob)
        try:
            assert await history(resumed) == await history(thread)
            await resumed.add_message("user", "What is my name?")
            run = await resumed.run()
            assert run.status is RunStatus.COMPLETED
        finally:
            await resumed.close()
    # both resumed copies wrote to the one shared thread
    assert [m[0] for m in await history(thread)] == list(range(1, 11))
    assert (await history(thread))[-1][2] == "Your name is Ada."


async def test_resume_with_an_explicit_matching_config(sqlite_thread: tuple[Any, str]) -> None:
    thread, url = sqlite_thread
    blob = await thread.serialize()
    resumed = await threadkit.resume(blob, {"store": url, "max_model_calls": 3})
    try:
        assert resumed.id == thread.id
        assert len(await history(resumed)) == 6
    finally:
        await resumed.close()


async def test_empty_thread_round_trip() -> None:
    async with await threadkit.open_backend({"store": "memory://"}) as backend:
        thread = await backend.create_thread()
        blob = await thread.serialize()
        snap = decode_snapshot(blob)
        assert snap.message_count == 0 and snap.last_seq == 0
        resumed = await threadkit.resume(blob)
        try:
            assert await history(resumed) == []
            await resumed.add_message("user", "first")
            assert (await history(resumed))[0][0] == 1
        finally:
            await resumed.close()


# --------------------------------------------------------------------------- bad input


@pytest.fixture
async def small_blobs() -> dict[str, bytes]:
    async with await threadkit.open_backend({"store": "memory://"}) as backend:
        thread = await backend.create_thread()
        await thread.add_message("user", "hi")
        return {
            "json": await thread.serialize("json"),
            "msgpack": await thread.serialize("msgpack"),
        }


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_every_truncation_is_refused(small_blobs: dict[str, bytes], fmt: str) -> None:
    blob = small_blobs[fmt]
    assert decode_snapshot(blob).message_count == 1
    assert len(blob) > 100
    for k in range(len(blob)):
        with pytest.raises(SnapshotError):
            decode_snapshot(blob[:k])


async def test_corrupt_bytes_are_refused(small_blobs: dict[str, bytes]) -> None:
    j, m = small_blobs["json"], small_blobs["msgpack"]
    corrupt = [
        j.replace(b"{", b"[", 1),
        j[:50] + b"\x00" + j[51:],
        j.replace(b'"version":1', b'"version":"1"'),
        j.replace(b'"thread_id":', b'"thread_id":{},"x":', 1),
        j.replace(b'"backend":"chat"', b'"backend":7'),
        j[len(j) // 2 :] + j[: len(j) // 2],
        j + b"}",
        j + b"trailing",
        m[:40] + bytes([m[40] ^ 0xFF]) + m[41:],
        m + b"\x00",
        bytes([0x90]) + m[1:],  # an array header where the map was
    ]
    for bad in corrupt:
        with pytest.raises(SnapshotError):
            decode_snapshot(bad)


@pytest.mark.parametrize(
    "bad",
    [b"", b"   \n\t ", "", b"{}", b"[]", b"null", b'"threadkit.thread"', b"0", b"\x80", b"\xc0"],
)
def test_empty_and_non_snapshot_values_are_refused(bad: bytes | str) -> None:
    with pytest.raises(SnapshotError):
        decode_snapshot(bad)


def test_random_garbage_is_refused() -> None:
    rng = random.Random(1234)
    for _ in range(500):
        n = rng.randint(1, 300)
        blob = bytes(rng.getrandbits(8) for _ in range(n))
        with pytest.raises(SnapshotError):
            decode_snapshot(blob)
    for _ in range(100):  # printable garbage, some of it starting like JSON
        text = "".join(rng.choice('{}[]":,abc 0123\\') for _ in range(rng.randint(1, 80)))
        with pytest.raises(SnapshotError):
            decode_snapshot(text)


async def test_json_of_another_format_is_refused(mem_thread: tuple[Any, str]) -> None:
    thread, _ = mem_thread
    export = json.dumps(await thread.export()).encode()
    with pytest.raises(SnapshotError, match="not a threadkit thread snapshot"):
        decode_snapshot(export)
    snap = json.loads(await thread.serialize())
    for fmt in ("threadkit.export", "langgraph.checkpoint", "", "threadkit.thread.v2"):
        with pytest.raises(SnapshotError, match="not a threadkit thread snapshot"):
            decode_snapshot(json.dumps({**snap, "format": fmt}))
    with pytest.raises(SnapshotError):
        decode_snapshot(json.dumps({"format": FORMAT, "version": 1}))  # fields missing
    with pytest.raises(SnapshotError):
        decode_snapshot(msgspec.msgpack.encode({"format": "other", "version": 1}))


async def test_a_newer_version_is_incompatible(mem_thread: tuple[Any, str]) -> None:
    thread, _ = mem_thread
    snap = json.loads(await thread.serialize())
    newer = [
        {**snap, "version": VERSION + 1},
        {**snap, "version": VERSION + 1, "new_field": {"a": 1}},
        {**snap, "version": 99, "thread_id": {"changed": "type"}},  # a future layout
    ]
    for data in newer:
        for blob in (json.dumps(data).encode(), msgspec.msgpack.encode(data)):
            with pytest.raises(IncompatibleVersionError) as exc:
                decode_snapshot(blob)
            assert exc.value.found == data["version"] and exc.value.supported == VERSION
            assert "upgrade threadkit" in str(exc.value)
    for version in (0, -1):
        with pytest.raises(SnapshotError) as bad:
            decode_snapshot(json.dumps({**snap, "version": version}))
        assert not isinstance(bad.value, IncompatibleVersionError)
    # the same version with an unknown extra field is fine (schema evolution rules)
    assert decode_snapshot(json.dumps({**snap, "added_later": 1})).thread_id == thread.id


async def test_bad_blobs_through_resume_change_nothing(
    mem_thread: tuple[Any, str], small_blobs: dict[str, bytes]
) -> None:
    thread, url = mem_thread
    watcher = MemoryStore.from_url(url)
    before = await state(watcher)
    good = json.loads(await thread.serialize())
    blob = small_blobs["json"]
    bad_inputs: list[tuple[bytes | str, type[Exception]]] = [
        (b"", SnapshotError),
        (blob[: len(blob) // 2], SnapshotError),
        (b"\x93\x01\x02", SnapshotError),
        (json.dumps({**good, "format": "x"}), SnapshotError),
        (json.dumps({**good, "version": 7}), IncompatibleVersionError),
    ]
    for bad, error in bad_inputs:
        with pytest.raises(error):
            await threadkit.resume(bad, {"store": url})
        with pytest.raises(error):
            await threadkit.resume(bad)
    assert await state(watcher) == before


# --------------------------------------------------------------------------- backend mismatch


async def test_config_naming_another_backend_is_a_mismatch(
    mem_thread: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    thread, url = mem_thread
    monkeypatch.setitem(BACKENDS, "elsewhere", RegistryEntry("threadkit._local:LocalBackend"))
    watcher = MemoryStore.from_url(url)
    before = await state(watcher)
    blob = await thread.serialize()
    with pytest.raises(BackendMismatchError) as exc:
        await threadkit.resume(blob, {"backend": "elsewhere", "store": url})
    assert exc.value.expected == "chat" and exc.value.configured == "elsewhere"
    # a snapshot made by another backend, resumed under the chat backend
    foreign = json.dumps({**json.loads(blob), "backend": "elsewhere"})
    with pytest.raises(BackendMismatchError) as exc2:
        await threadkit.resume(foreign, {"store": url})
    assert exc2.value.expected == "elsewhere" and exc2.value.configured == "chat"
    # and directly at the backend
    backend = LocalBackend(MemoryStore(), ScriptedModel())
    with pytest.raises(BackendMismatchError):
        await backend.resume_thread(decode_snapshot(foreign))
    await backend.close()
    assert await state(watcher) == before


async def test_inline_snapshot_under_a_persistent_store_is_a_mismatch(
    mem_thread: tuple[Any, str], tmp_path: Path
) -> None:
    thread, _ = mem_thread
    blob = await thread.serialize()
    url = f"sqlite:///{tmp_path}/other.db"
    with pytest.raises(BackendMismatchError) as exc:
        await threadkit.resume(blob, {"store": url})
    assert exc.value.expected == "memory://"
    store = open_store(url)
    await store.setup()
    assert await state(store) == []  # the sqlite store did not get a half-copied thread
    await store.close()


async def test_snapshot_of_another_store_is_a_mismatch(
    sqlite_thread: tuple[Any, str], tmp_path: Path
) -> None:
    thread, _ = sqlite_thread
    blob = await thread.serialize()
    other_url = f"sqlite:///{tmp_path}/elsewhere.db"
    other = open_store(other_url)
    await other.setup()
    mine = await other.create_thread()
    before_other = await state(other)
    with pytest.raises(BackendMismatchError) as exc:
        await threadkit.resume(blob, {"store": other_url})
    assert exc.value.configured.startswith("sqlite:///") and "elsewhere.db" in exc.value.configured
    assert "snap.db" in exc.value.expected
    with pytest.raises(BackendMismatchError):
        await threadkit.resume(blob, {"store": "memory://"})
    assert await state(other) == before_other and before_other[0][0] == mine.id
    await other.close()
    assert len(await history(thread)) == 6


async def test_store_that_lost_messages_is_refused(sqlite_thread: tuple[Any, str]) -> None:
    thread, url = sqlite_thread
    blob = await thread.serialize()
    store = open_store(url)
    await store.setup()
    newest = (await store.tail(thread.id, 1))[0]
    assert newest.role == "assistant"
    assert await store.delete_message(thread.id, newest.id)
    before = await state(store)
    with pytest.raises(SnapshotError, match="history is missing"):
        await threadkit.resume(blob)
    assert await state(store) == before
    # a thread deleted outright is not found (and not silently recreated empty)
    assert await store.delete_thread(thread.id)
    with pytest.raises(ThreadNotFoundError):
        await threadkit.resume(blob)
    assert await state(store) == []
    await store.close()


async def test_named_memory_space_that_lost_messages_is_refused(
    mem_thread: tuple[Any, str],
) -> None:
    thread, url = mem_thread
    blob = await thread.serialize()
    watcher = MemoryStore.from_url(url)
    newest = (await watcher.tail(thread.id, 1))[0]
    assert await watcher.delete_message(thread.id, newest.id)
    before = await state(watcher)
    with pytest.raises(SnapshotError):
        await threadkit.resume(blob)
    assert await state(watcher) == before


# --------------------------------------------------------------------------- no credentials


async def test_snapshots_never_hold_the_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-" + new_id("SECRET")
    monkeypatch.setenv("THREADKIT_TEST_KEY", secret)
    cfg = {
        "store": "memory://",
        "model": "openai:gpt-4o-mini",
        "base_url": "http://127.0.0.1:9/v1",
        "api_key_env": "THREADKIT_TEST_KEY",
    }
    async with await threadkit.open_backend(cfg) as backend:
        thread = await backend.create_thread()
        await thread.add_message("user", "hello")
        for fmt in ("json", "msgpack"):
            blob = await thread.serialize(fmt)
            assert secret.encode() not in blob
            assert b"SECRET" not in blob
            snap = decode_snapshot(blob)
            assert snap.settings["api_key_env"] == "THREADKIT_TEST_KEY"  # the NAME only
            assert snap.settings["model"] == "openai:gpt-4o-mini"
            assert snap.settings["base_url"] == "http://127.0.0.1:9/v1"
        exported = json.dumps(await thread.export())
        assert secret not in exported


@pytest.mark.parametrize(
    "key",
    ["api_key", "OPENAI_API_KEY", "client_secret", "password", "token", "access_token", "key"],
)
async def test_secret_looking_settings_are_refused(key: str) -> None:
    backend = LocalBackend(MemoryStore(), ScriptedModel(), settings={key: "hunter2"})
    thread = await backend.create_thread()
    with pytest.raises(SnapshotError):
        await thread.serialize()
    with pytest.raises(SnapshotError):
        encode_snapshot(
            Snapshot(
                format=FORMAT,
                version=VERSION,
                backend="chat",
                thread_id="t",
                created_at=0,
                settings={key: "hunter2"},
            )
        )
    await backend.close()


async def test_urls_with_passwords_are_refused() -> None:
    backend = LocalBackend(
        MemoryStore(), ScriptedModel(), settings={"base_url": "https://bob:pw@example.test/v1"}
    )
    thread = await backend.create_thread()
    with pytest.raises(SnapshotError):
        await thread.serialize()
    await backend.close()
    with pytest.raises(SnapshotError):
        encode_snapshot(
            Snapshot(
                format=FORMAT,
                version=VERSION,
                backend="chat",
                thread_id="t",
                created_at=0,
                store="redis://:hunter2@127.0.0.1:6379/0",
            )
        )
    # names of secrets and password-free URLs are fine
    ok = Snapshot(
        format=FORMAT,
        version=VERSION,
        backend="chat",
        thread_id="t",
        created_at=0,
        settings={"api_key_env": "OPENAI_API_KEY", "base_url": "https://bob@example.test/v1"},
        store="redis://127.0.0.1:6379/0",
    )
    assert decode_snapshot(encode_snapshot(ok)) == ok
    with pytest.raises(ValueError):
        encode_snapshot(ok, "yaml")  # type: ignore[arg-type]


def test_redact_url() -> None:
    assert redact_url("redis://:pw@h:6379/0") == "redis://h:6379/0"
    assert redact_url("postgresql://u:pw@h/db?x=1") == "postgresql://u@h/db?x=1"
    assert redact_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert redact_url("memory://") == "memory://"


# --------------------------------------------------------------------------- the thread API surface


async def test_serialize_after_runs_with_truncation_keeps_everything(
    mem_thread: tuple[Any, str],
) -> None:
    """A snapshot holds the whole thread even when runs only ever saw a window of it."""
    thread, _ = mem_thread
    await thread.add_message("user", "more")
    await thread.run(
        Agent(), truncation_strategy=TruncationStrategy(type="last_messages", last_messages=1)
    )
    snap = decode_snapshot(await thread.serialize())
    assert snap.inline is not None and len(snap.inline.messages) == 8
    assert isinstance(snap.inline.messages[0], Message)
    assert isinstance(thread, LocalThread)


async def test_relative_sqlite_url_resolves_to_the_recorded_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with await threadkit.open_backend({"store": "sqlite:///rel.db"}) as backend:
        thread = await backend.create_thread()
        await thread.add_message("user", "kept")
        blob = await thread.serialize()
    snap = decode_snapshot(blob)
    assert snap.store is not None and str(tmp_path) in snap.store  # recorded absolute
    resumed = await threadkit.resume(blob, {"store": "sqlite:///rel.db"})
    try:
        assert [m.text async for m in resumed.messages()] == ["kept"]
    finally:
        await resumed.close()
    monkeypatch.chdir("/")
    resumed = await threadkit.resume(blob)  # from anywhere, by the recorded path
    try:
        assert [m.text async for m in resumed.messages()] == ["kept"]
    finally:
        await resumed.close()


def test_the_credential_kind_may_be_recorded_but_nothing_else_of_it() -> None:
    from threadkit.snapshot import FORMAT, VERSION, Snapshot, encode_snapshot

    def snap(settings: dict[str, object]) -> Snapshot:
        return Snapshot(
            format=FORMAT,
            version=VERSION,
            backend="foundry",
            thread_id="t",
            created_at=1,
            settings=settings,
        )

    assert b'"credential":"api_key"' in encode_snapshot(snap({"credential": "api_key"}))
    with pytest.raises(SnapshotError):
        encode_snapshot(snap({"credential": "eyJhbGciOi.token"}))
