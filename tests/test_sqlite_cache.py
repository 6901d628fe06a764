"""SQLiteStore's message cache: never stale across processes, bounded, and optional.

* The conformance suite passes with the cache off (``cache_messages=0``) and with a tiny one
  (3 messages), which makes every listing mix cached and freshly read messages.
* Another OS process updates a message's metadata, deletes a message, appends, or deletes the
  thread and creates it again under the same id and internal number (``threads.pos``) with as
  many messages: the next listing, ``tail`` and page here show the new state.
* The same holds for writes made with the SQL of the previous threadkit (schema version 0,
  which knows nothing of ``msg_rev``): the migration's triggers stamp them.
* A database made at schema version 0 migrates, keeps its messages, and lists them.
* A randomized run of appends, updates, deletes, thread re-creation, pages and tails through a
  cached store and an uncached one on the same file gives the same answers.
* Bounds: least recently read threads are dropped first; a thread bigger than the bound keeps
  its newest messages; the byte bound holds too; ``cache_messages=0`` keeps nothing.
* URL parameters and ``locator`` carry the bounds; bad values are refused.
* Message ids made in a forked child do not repeat the parent's random bits.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from threadkit.errors import ConfigError, ThreadNotFoundError
from threadkit.stores import sqlite as sqlite_store
from threadkit.stores.sqlite import MIGRATIONS, SQLiteStore
from threadkit.testing.store_suite import StoreConformance, assistant, user
from threadkit.types import Message, TextContent

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- conformance


class TestSQLiteStoreUncached(StoreConformance):
    reopen_by_locator = True

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLiteStore]:
        s = SQLiteStore.from_url(f"sqlite:///{tmp_path}/t.db", cache_messages=0)
        await s.setup()
        yield s
        await s.close()


class TestSQLiteStoreTinyCache(StoreConformance):
    reopen_by_locator = True

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLiteStore]:
        s = SQLiteStore.from_url(f"sqlite:///{tmp_path}/t.db?cache_messages=3")
        await s.setup()
        yield s
        await s.close()


# ----------------------------------------------------------------------------- helpers

CHILD = r"""
import asyncio, json, sys
from threadkit.registry import open_store
from threadkit.types import Message, TextContent

async def main(url, ops):
    store = open_store(url)
    await store.setup()
    try:
        for op in json.loads(ops):
            kind, tid = op[0], op[1]
            if kind == "update":
                await store.update_message(tid, op[2], metadata=op[3])
            elif kind == "delete_message":
                assert await store.delete_message(tid, op[2])
            elif kind == "delete_thread":
                assert await store.delete_thread(tid)
            elif kind == "create_thread":
                await store.create_thread(thread_id=tid)
            elif kind == "append":
                await store.append(tid, [
                    Message(id="", thread_id=tid, role=role, content=[TextContent(text=text)])
                    for role, text in op[2]
                ])
            else:
                raise ValueError(kind)
    finally:
        await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""

# The statements threadkit issued at schema version 0 (before msg_rev), run by a raw sqlite3
# connection in another process: an older threadkit still running on a migrated file.
OLD_WRITER = r"""
import json, sqlite3, sys, time
path, ops = sys.argv[1], json.loads(sys.argv[2])
conn = sqlite3.connect(path, isolation_level=None)
for op in ops:
    conn.execute("BEGIN IMMEDIATE")
    if op[0] == "update_data":  # _update_message
        _, key, blob_hex = op
        pos = key >> 32
        conn.execute("UPDATE messages SET data = ? WHERE key = ?", (bytes.fromhex(blob_hex), key))
        conn.execute("UPDATE threads SET updated_at = ? WHERE pos = ?", (int(time.time()), pos))
    elif op[0] == "recreate":  # _delete_thread, _create_thread, then _append's inserts
        _, tid, rows = op
        pos = conn.execute("SELECT pos FROM threads WHERE id = ?", (tid,)).fetchone()[0]
        conn.execute("DELETE FROM messages WHERE key BETWEEN ? AND ?", (pos << 32, (pos << 32) | 0xFFFFFFFF))
        conn.execute("DELETE FROM threads WHERE pos = ?", (pos,))
        ts = int(time.time())
        cur = conn.execute(
            "INSERT INTO threads (id, created_at, updated_at, metadata) VALUES (?, ?, ?, ?)",
            (tid, ts, ts, "{}"),
        )
        new = cur.lastrowid
        conn.executemany(
            "INSERT INTO messages (key, tk, id, appended_at, data) VALUES (?, ?, ?, ?, ?)",
            [((new << 32) + seq, new, mid, ts, bytes.fromhex(blob)) for seq, mid, blob in rows],
        )
        print(new)
    conn.execute("COMMIT")
conn.close()
"""


def run_child(code: str, *args: str) -> str:
    """Run ``code`` in a new Python process; its stdout. Fails the test if the child fails."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def other_process(store: SQLiteStore, *ops: list[Any]) -> None:
    """Run threadkit store operations (see CHILD) in another process on the same file."""
    run_child(CHILD, store.locator, json.dumps(ops))


def texts(messages: list[Message]) -> list[str]:
    return [m.text for m in messages]


def pos_of(path: str, thread_id: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT pos FROM threads WHERE id = ?", (thread_id,)).fetchone()[0])


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "cache.db")
    await s.setup()
    yield s
    await s.close()


async def filled(store: SQLiteStore, thread_id: str, n: int, tag: str = "m") -> list[Message]:
    await store.create_thread(thread_id=thread_id)
    return await store.append(thread_id, [user(f"{tag}{i}") for i in range(n)])


async def assert_cached(store: SQLiteStore, thread_id: str, n: int) -> None:
    """The store holds ``n`` of the thread's messages in its cache (white-box)."""
    span = store._cache.spans.get(thread_id)
    assert (len(span.keys) if span else 0) == n


# ----------------------------------------------------------------------------- other processes


async def test_other_process_metadata_update_is_seen(store: SQLiteStore) -> None:
    stored = await filled(store, "thread_a", 6)
    first = await store.list_messages("thread_a", limit=None)
    assert texts(first.data) == [f"m{i}" for i in range(6)]
    await assert_cached(store, "thread_a", 6)  # so the next listing would serve from cache
    other_process(store, ["update", "thread_a", stored[3].id, {"k": "from-child"}])
    listed = await store.list_messages("thread_a", limit=None)
    assert [m.metadata for m in listed.data] == [{}, {}, {}, {"k": "from-child"}, {}, {}]
    assert (await store.tail("thread_a", 3))[0].metadata == {"k": "from-child"}
    page = await store.list_messages("thread_a", after=stored[2].id, limit=1)
    assert page.data[0].metadata == {"k": "from-child"}
    assert [m.seq for m in listed.data] == [1, 2, 3, 4, 5, 6]


async def test_other_process_delete_is_seen(store: SQLiteStore) -> None:
    stored = await filled(store, "thread_d", 5)
    assert len(await store.tail("thread_d", 5)) == 5
    other_process(store, ["delete_message", "thread_d", stored[4].id])
    assert texts(await store.tail("thread_d", 5)) == ["m0", "m1", "m2", "m3"]
    other_process(store, ["delete_message", "thread_d", stored[1].id])
    listed = await store.list_messages("thread_d", limit=None)
    assert texts(listed.data) == ["m0", "m2", "m3"]
    assert [m.seq for m in listed.data] == [1, 3, 4]


async def test_other_process_appends_are_read(store: SQLiteStore) -> None:
    await filled(store, "thread_p", 3)
    assert len((await store.list_messages("thread_p", limit=None)).data) == 3
    other_process(store, ["append", "thread_p", [["user", "x0"], ["assistant", "x1"]]])
    listed = await store.list_messages("thread_p", limit=None)
    assert texts(listed.data) == ["m0", "m1", "m2", "x0", "x1"]
    assert [m.seq for m in listed.data] == [1, 2, 3, 4, 5]
    await assert_cached(store, "thread_p", 5)
    # more new messages than the cache catches up with at once: read afresh, still whole
    many = [["user", f"y{i}"] for i in range(sqlite_store._CATCH_UP + 10)]
    other_process(store, ["append", "thread_p", many])
    assert texts(await store.tail("thread_p", 2)) == [f"y{len(many) - 2}", f"y{len(many) - 1}"]
    listed = await store.list_messages("thread_p", limit=None)
    assert texts(listed.data) == ["m0", "m1", "m2", "x0", "x1", *(t for _, t in many)]


async def test_thread_recreated_with_reused_number_is_not_stale(store: SQLiteStore) -> None:
    await store.create_thread(thread_id="thread_old")
    await filled(store, "thread_r", 4, tag="old")
    pos = pos_of(store.path, "thread_r")
    assert texts((await store.list_messages("thread_r", limit=None)).data) == [
        f"old{i}" for i in range(4)
    ]
    new_rows = [["user", f"new{i}"] for i in range(4)]
    other_process(
        store,
        ["delete_thread", "thread_r"],
        ["create_thread", "thread_r"],
        ["append", "thread_r", new_rows],
    )
    # the same id, internal number and message keys: only msg_rev tells them apart
    assert pos_of(store.path, "thread_r") == pos
    assert texts((await store.list_messages("thread_r", limit=None)).data) == [
        f"new{i}" for i in range(4)
    ]
    assert texts(await store.tail("thread_r", 2)) == ["new2", "new3"]
    other_process(store, ["delete_thread", "thread_r"])
    with pytest.raises(ThreadNotFoundError):
        await store.list_messages("thread_r")
    assert "thread_r" not in store._cache.spans


# ----------------------------------------------------------------------------- older writers

_encoder = msgspec.msgpack.Encoder()


def old_blob(text: str, thread_id: str, mid: str, **fields: Any) -> str:
    m = Message(
        id=mid, thread_id=thread_id, role="user", content=[TextContent(text=text)], **fields
    )
    return _encoder.encode(m).hex()


async def test_writes_of_an_older_threadkit_are_seen(store: SQLiteStore) -> None:
    stored = await filled(store, "thread_o", 3)
    await store.list_messages("thread_o", limit=None)
    key = (pos_of(store.path, "thread_o") << 32) | 2
    blob = old_blob(
        "m1", "thread_o", stored[1].id, created_at=stored[1].created_at, metadata={"old": "yes"}
    )
    run_child(OLD_WRITER, store.path, json.dumps([["update_data", key, blob]]))
    listed = await store.list_messages("thread_o", limit=None)
    assert [m.metadata for m in listed.data] == [{}, {"old": "yes"}, {}]

    pos = pos_of(store.path, "thread_o")
    rows = [[i + 1, f"msg_old{i}", old_blob(f"re{i}", "thread_o", f"msg_old{i}")] for i in range(3)]
    out = run_child(OLD_WRITER, store.path, json.dumps([["recreate", "thread_o", rows]]))
    assert int(out) == pos  # the internal number was reused, with the same keys
    assert texts((await store.list_messages("thread_o", limit=None)).data) == ["re0", "re1", "re2"]
    # and again: both threads were made by the older writer, which sets no msg_rev
    rows = [
        [i + 1, f"msg_again{i}", old_blob(f"ag{i}", "thread_o", f"msg_again{i}")] for i in range(3)
    ]
    out = run_child(OLD_WRITER, store.path, json.dumps([["recreate", "thread_o", rows]]))
    assert int(out) == pos
    assert texts((await store.list_messages("thread_o", limit=None)).data) == ["ag0", "ag1", "ag2"]


async def test_migrates_a_version_0_database(tmp_path: Path) -> None:
    path = tmp_path / "v0.db"
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "CREATE TABLE threadkit_migrations (v INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
        )
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("INSERT INTO threadkit_migrations VALUES (0, 0)")
        conn.execute(
            "INSERT INTO threads (id, created_at, updated_at, metadata) VALUES ('thread_v0', 1, 1, '{}')"
        )
        conn.executemany(
            "INSERT INTO messages (key, tk, id, appended_at, data) VALUES (?, 1, ?, 1, ?)",
            [
                (
                    (1 << 32) + i + 1,
                    f"msg_{i}",
                    bytes.fromhex(old_blob(f"v{i}", "thread_v0", f"msg_{i}")),
                )
                for i in range(3)
            ],
        )
        conn.execute("COMMIT")
    store = SQLiteStore(path)
    await store.setup()
    try:
        assert texts((await store.list_messages("thread_v0", limit=None)).data) == [
            "v0",
            "v1",
            "v2",
        ]
        updated = await store.update_message("thread_v0", "msg_1", metadata={"a": "b"})
        assert updated.seq == 2
        assert (await store.tail("thread_v0", 2))[0].metadata == {"a": "b"}
        await store.append("thread_v0", [user("v3")])
        assert texts(await store.tail("thread_v0", 2)) == ["v2", "v3"]
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert (
            conn.execute("SELECT max(v) FROM threadkit_migrations").fetchone()[0]
            == len(MIGRATIONS) - 1
        )
        assert conn.execute("SELECT msg_rev FROM threads").fetchone()[0] != 0


# ----------------------------------------------------------------------------- randomized


async def test_cached_and_uncached_stores_agree(tmp_path: Path) -> None:
    """Random writes through either of two stores on one file; every read of the cached ones
    (a tiny and a default cache) equals the uncached one's."""
    url = f"sqlite:///{tmp_path}/agree.db"
    plain = SQLiteStore.from_url(url, cache_messages=0)
    tiny = SQLiteStore.from_url(url, cache_messages=5)
    roomy = SQLiteStore.from_url(url)
    await plain.setup()
    await tiny.setup()
    await roomy.setup()
    rnd = random.Random(20240611)
    threads = ["thread_x", "thread_y"]
    for tid in threads:
        await plain.create_thread(thread_id=tid)
    stores = [plain, tiny, roomy]
    counter = 0
    try:
        for _ in range(400):
            tid = rnd.choice(threads)
            writer = rnd.choice(stores)
            live = (await plain.list_messages(tid, limit=None)).data
            op = rnd.random()
            if op < 0.35 or not live:
                counter += 1
                batch = [user(f"u{counter}.{i}") for i in range(rnd.randint(1, 3))]
                await writer.append(tid, batch)
            elif op < 0.45:
                m = rnd.choice(live)
                await writer.update_message(tid, m.id, metadata={"n": str(rnd.randint(0, 9))})
            elif op < 0.55:
                await writer.delete_message(tid, rnd.choice(live).id)
            elif op < 0.57:
                await writer.delete_thread(tid)
                await writer.create_thread(thread_id=tid)
                counter += 1
                await writer.append(tid, [user(f"r{counter}.{i}") for i in range(len(live))])
            for reader in (tiny, roomy):
                want = await plain.list_messages(tid, limit=None)
                got = await reader.list_messages(tid, limit=None)
                assert got == want
                n = rnd.randint(0, 8)
                assert await reader.tail(tid, n) == await plain.tail(tid, n)
                ids = [m.id for m in want.data]
                kwargs: dict[str, Any] = {
                    "order": rnd.choice(["asc", "desc"]),
                    "limit": rnd.choice([None, 0, 1, 2, 3, 7]),
                }
                if ids and rnd.random() < 0.5:
                    kwargs["after"] = rnd.choice(ids)
                if ids and rnd.random() < 0.4:
                    kwargs["before"] = rnd.choice(ids)
                assert await reader.list_messages(tid, **kwargs) == await plain.list_messages(
                    tid, **kwargs
                ), kwargs
        assert tiny._cache.messages <= 5
    finally:
        for s in stores:
            await s.close()


# ----------------------------------------------------------------------------- own writes


async def test_own_update_and_delete_patch_the_cache(store: SQLiteStore) -> None:
    stored = await filled(store, "thread_w", 4)
    await store.list_messages("thread_w", limit=None)
    updated = await store.update_message("thread_w", stored[2].id, metadata={"x": "1"})
    await assert_cached(store, "thread_w", 4)  # patched, not dropped
    listed = await store.list_messages("thread_w", limit=None)
    assert listed.data[2] is updated and updated.seq == 3 and updated.metadata == {"x": "1"}
    assert await store.delete_message("thread_w", stored[3].id)
    await assert_cached(store, "thread_w", 3)
    await store.update_thread("thread_w", metadata={"t": "2"})
    await assert_cached(store, "thread_w", 3)
    await store.append("thread_w", [assistant("after")])
    listed = await store.list_messages("thread_w", limit=None)
    assert texts(listed.data) == ["m0", "m1", "m2", "after"]
    assert [m.seq for m in listed.data] == [1, 2, 3, 5]


async def test_listings_return_new_lists(store: SQLiteStore) -> None:
    await filled(store, "thread_l", 3)
    first = await store.list_messages("thread_l", limit=None)
    first.data.clear()
    tail = await store.tail("thread_l", 3)
    tail.reverse()
    assert texts((await store.list_messages("thread_l", limit=None)).data) == ["m0", "m1", "m2"]
    assert texts(await store.tail("thread_l", 3)) == ["m0", "m1", "m2"]


# ----------------------------------------------------------------------------- bounds


async def test_least_recently_read_threads_go_first(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "lru.db", cache_messages=10)
    await store.setup()
    try:
        for tid in ("thread_1", "thread_2", "thread_3"):
            await filled(store, tid, 4, tag=tid[-1])
        await store.list_messages("thread_1", limit=None)
        await store.list_messages("thread_2", limit=None)
        await store.tail("thread_1", 1)  # thread_1 is now the most recently read
        await store.list_messages("thread_3", limit=None)
        assert list(store._cache.spans) == ["thread_1", "thread_3"]
        assert store._cache.messages == 8
        # a thread bigger than the bound keeps its newest messages, and still lists whole
        await filled(store, "thread_big", 25, tag="b")
        listed = await store.list_messages("thread_big", limit=None)
        assert texts(listed.data) == [f"b{i}" for i in range(25)]
        assert list(store._cache.spans) == ["thread_big"]
        span = store._cache.spans["thread_big"]
        assert [k & 0xFFFFFFFF for k in span.keys] == list(range(16, 26))
        assert store._cache.messages == 10
        assert texts((await store.list_messages("thread_big", limit=None)).data) == texts(
            listed.data
        )
    finally:
        await store.close()


async def test_byte_bound(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "bytes.db", cache_bytes=4000)
    await store.setup()
    try:
        await store.create_thread(thread_id="thread_b")
        await store.append("thread_b", [user("x" * 900 + str(i)) for i in range(10)])
        listed = await store.list_messages("thread_b", limit=None)
        assert len(listed.data) == 10
        assert 0 < store._cache.nbytes <= 4000
        assert store._cache.messages == len(store._cache.spans["thread_b"].keys) < 10
        assert store._cache.nbytes == sum(store._cache.spans["thread_b"].sizes)
    finally:
        await store.close()


async def test_cache_off_keeps_nothing(tmp_path: Path) -> None:
    store = SQLiteStore.from_url(f"sqlite:///{tmp_path}/off.db?cache_messages=0")
    await store.setup()
    try:
        stored = await filled(store, "thread_z", 5)
        assert texts((await store.list_messages("thread_z", limit=None)).data) == [
            f"m{i}" for i in range(5)
        ]
        assert texts(await store.tail("thread_z", 2)) == ["m3", "m4"]
        await store.update_message("thread_z", stored[0].id, metadata={"a": "1"})
        assert (await store.list_messages("thread_z", limit=1)).data[0].metadata == {"a": "1"}
        assert not store._cache.spans and store._cache.messages == 0
    finally:
        await store.close()


async def test_close_empties_the_cache(store: SQLiteStore) -> None:
    await filled(store, "thread_c", 3)
    await store.list_messages("thread_c")
    assert store._cache.messages == 3
    await store.close()
    assert store._cache.messages == 0 and not store._cache.spans


# ----------------------------------------------------------------------------- configuration


def test_url_parameters_and_locator(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/u.db?cache_messages=7&cache_bytes=9000"
    store = SQLiteStore.from_url(url)
    assert store._cache.max_messages == 7 and store._cache.max_bytes == 9000
    again = SQLiteStore.from_url(store.locator)
    assert (again._cache.max_messages, again._cache.max_bytes) == (7, 9000)
    assert "cache" not in SQLiteStore.from_url(f"sqlite:///{tmp_path}/d.db").locator
    assert SQLiteStore.from_url(url, cache_messages=0)._cache.enabled is False
    for bad in ("cache_messages=many", "cache_bytes=1.5", "cache_messages=-1"):
        with pytest.raises(ConfigError):
            SQLiteStore.from_url(f"sqlite:///{tmp_path}/b.db?{bad}")
    with pytest.raises(ConfigError):
        SQLiteStore(tmp_path / "b.db", cache_bytes=-5)
    with pytest.raises(ConfigError):
        SQLiteStore(tmp_path / "b.db", cache_messages=True)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_makes_other_message_ids() -> None:
    sqlite_store._new_message_id()  # the pool is filled in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write, sqlite_store._new_message_id().encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    parent = sqlite_store._new_message_id()
    assert child[-12:] != parent[-12:]
