"""Many OS processes on one SQLite file: the thread stays whole, and durability settings hold.

* 4 processes open the same new file and call ``setup()`` at once: the schema is made once.
* 4 processes each append 200 two-message turns to the same thread at once: all 1,600 messages
  are there, ``seq`` runs 1..1600 without gap or repeat, each turn's two messages are adjacent,
  and no process saw "database is locked".
* 2 processes race ``create_run`` on the same thread (over several threads): on each exactly one
  run starts and the other process gets :class:`~threadkit.errors.ActiveRunError`.
* ``synchronous=full`` really sets ``PRAGMA synchronous`` (and the journal is WAL).
* URLs: relative and absolute paths, ``:memory:``, refusals; sqlite errors become StoreError.

Workers reopen the store from its ``locator`` with :func:`threadkit.registry.open_store`, as an
application would; every wait is bounded, so a hung worker fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import sqlite3
from collections.abc import AsyncIterator
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from threadkit.errors import ActiveRunError, ConfigError, StoreError
from threadkit.registry import open_store
from threadkit.stores.sqlite import MIGRATIONS, SQLiteStore
from threadkit.testing.store_suite import assistant, make_run, user

PROCESSES = 4
TURNS = 200
RACE_ROUNDS = 10
DEADLINE = 120.0  # seconds for a whole multi-process phase

pytestmark = pytest.mark.slow


# ----------------------------------------------------------------------------- workers
# Module-level functions: the "spawn" start method imports this module in each child.


def _setup_worker(url: str, barrier: Barrier, results: Any) -> None:
    async def main() -> None:
        store = open_store(url)
        barrier.wait(timeout=DEADLINE)
        try:
            await store.setup()
            results.put("ok")
        except Exception as exc:  # reported to the parent, which fails the test
            results.put(repr(exc))
        finally:
            await store.close()

    asyncio.run(main())


def _append_worker(url: str, thread_id: str, proc: int, barrier: Barrier, results: Any) -> None:
    async def main() -> None:
        store = open_store(url)
        await store.setup()
        try:
            barrier.wait(timeout=DEADLINE)  # start together, so the appends really contend
            for i in range(TURNS):
                tag = f"{proc}:{i}"
                await store.append(thread_id, [user(tag), assistant(f"re {tag}")])
            results.put("ok")
        except Exception as exc:
            results.put(repr(exc))
        finally:
            await store.close()

    asyncio.run(main())


def _race_worker(url: str, thread_ids: list[str], barrier: Barrier, results: Any) -> None:
    async def main() -> None:
        store = open_store(url)
        await store.setup()
        try:
            for tid in thread_ids:
                barrier.wait(timeout=DEADLINE)
                try:
                    run = await store.create_run(make_run(tid))
                    results.put((tid, "started", run.id))
                except ActiveRunError as exc:
                    results.put((tid, "refused", exc.run_id))
                except Exception as exc:
                    results.put((tid, "error", repr(exc)))
        finally:
            await store.close()

    asyncio.run(main())


def _run_all(procs: list[Any]) -> None:
    for p in procs:
        p.start()
    for p in procs:
        p.join(DEADLINE)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    assert [p.exitcode for p in procs] == [0] * len(procs)


def _drain(results: Any, n: int) -> list[Any]:
    return [results.get(timeout=DEADLINE) for _ in range(n)]


# ----------------------------------------------------------------------------- tests


@pytest.fixture
def ctx() -> Any:
    return mp.get_context("spawn")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore.from_url(f"sqlite:///{tmp_path}/shared.db")
    await s.setup()
    yield s
    await s.close()


def test_concurrent_setup_makes_the_schema_once(tmp_path: Path, ctx: Any) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    _run_all([ctx.Process(target=_setup_worker, args=(url, barrier, results)) for _ in range(4)])
    assert _drain(results, PROCESSES) == ["ok"] * PROCESSES
    with sqlite3.connect(tmp_path / "fresh.db") as conn:
        versions = [v for (v,) in conn.execute("SELECT v FROM threadkit_migrations ORDER BY v")]
    assert versions == list(range(len(MIGRATIONS)))


async def test_processes_append_to_one_thread(store: SQLiteStore, ctx: Any) -> None:
    thread = await store.create_thread()
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [
        ctx.Process(target=_append_worker, args=(store.locator, thread.id, n, barrier, results))
        for n in range(PROCESSES)
    ]
    await asyncio.to_thread(_run_all, procs)
    assert _drain(results, PROCESSES) == ["ok"] * PROCESSES  # no "database is locked"

    total = PROCESSES * TURNS * 2
    msgs = (await store.list_messages(thread.id, limit=None)).data
    assert len(msgs) == total == await store.count_messages(thread.id)
    assert [m.seq for m in msgs] == list(range(1, total + 1))
    for first, second in zip(msgs[::2], msgs[1::2], strict=True):
        assert first.role == "user" and second.role == "assistant"
        assert second.text == f"re {first.text}"
    tags = sorted(m.text for m in msgs[::2])
    assert tags == sorted(f"{n}:{i}" for n in range(PROCESSES) for i in range(TURNS))
    for n in range(PROCESSES):  # each process's own turns stay in its order
        mine = [int(m.text.split(":")[1]) for m in msgs[::2] if m.text.startswith(f"{n}:")]
        assert mine == list(range(TURNS))


async def test_processes_race_for_a_run(store: SQLiteStore, ctx: Any) -> None:
    thread_ids = [(await store.create_thread()).id for _ in range(RACE_ROUNDS)]
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_race_worker, args=(store.locator, thread_ids, barrier, results))
        for _ in range(2)
    ]
    await asyncio.to_thread(_run_all, procs)
    outcomes = _drain(results, 2 * RACE_ROUNDS)
    assert not [o for o in outcomes if o[1] == "error"], outcomes
    for tid in thread_ids:
        mine = sorted((o[1], o[2]) for o in outcomes if o[0] == tid)
        assert [kind for kind, _ in mine] == ["refused", "started"], mine
        (_, refused_by), (_, started) = mine
        assert refused_by == started  # the loser names the winner's run
        runs = (await store.list_runs(tid)).data
        assert [r.id for r in runs] == [started]


async def _pragma(store: SQLiteStore, name: str) -> Any:
    def query(conn: sqlite3.Connection) -> Any:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]

    return await store._call(query)


@pytest.mark.parametrize(
    ("url_tail", "kwargs", "expected"),
    [
        ("", {}, 1),  # NORMAL
        ("?synchronous=full", {}, 2),  # FULL
        ("", {"synchronous": "full"}, 2),
        ("?synchronous=full", {"synchronous": "normal"}, 1),  # keywords win
    ],
)
async def test_synchronous_setting(
    tmp_path: Path, url_tail: str, kwargs: dict[str, Any], expected: int
) -> None:
    store = SQLiteStore.from_url(f"sqlite:///{tmp_path}/d.db{url_tail}", **kwargs)
    await store.setup()
    try:
        assert await _pragma(store, "synchronous") == expected
        assert await _pragma(store, "journal_mode") == "wal"
        assert ("synchronous=full" in store.locator) == (expected == 2)
        reopened = open_store(store.locator)
        await reopened.setup()
        try:
            assert await _pragma(reopened, "synchronous") == expected
        finally:
            await reopened.close()
        t = await store.create_thread()  # "full" writes go through the worker thread
        await store.append(t.id, [user("durable")])
        assert (await store.tail(t.id, 1))[0].text == "durable"
    finally:
        await store.close()


# ----------------------------------------------------------------------------- URLs, errors


async def test_relative_absolute_and_memory_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rel = SQLiteStore.from_url("sqlite:///rel.db")
    assert rel.path == str(tmp_path / "rel.db")
    assert rel.locator == f"sqlite:///{tmp_path}/rel.db"  # absolute: sqlite:////tmp/...
    assert rel.locator.startswith("sqlite:////")
    absolute = SQLiteStore.from_url(f"sqlite:///{tmp_path}/rel.db")
    assert absolute.path == rel.path
    async with rel, absolute:
        t = await rel.create_thread()
        await rel.append(t.id, [user("shared")])
        assert texts_of(await absolute.tail(t.id, 1)) == ["shared"]
    mem = SQLiteStore.from_url("sqlite:///:memory:")
    assert mem.locator == "sqlite:///:memory:"
    async with mem:
        t = await mem.create_thread()
        await mem.append(t.id, [user("in memory")])
        assert texts_of(await mem.tail(t.id, 1)) == ["in memory"]


def texts_of(messages: list[Any]) -> list[str]:
    return [m.text for m in messages]


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://host/x.db",
        "sqlite:///x.db?journal=delete",
        "sqlite:///x.db?synchronous=off",
        "sqlite:///x.db?busy_timeout=soon",
        "postgresql:///x.db",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        SQLiteStore.from_url(url)
    assert info.value.key == "store"


async def test_errors_are_store_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 1000)
    broken = SQLiteStore.from_url(f"sqlite:///{garbage}")
    with pytest.raises(StoreError) as info:
        await broken.setup()
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
    await broken.close()

    store = SQLiteStore.from_url(f"sqlite:///{tmp_path}/newer.db")
    await store.setup()
    await store.close()
    with pytest.raises(StoreError):
        await store.get_thread("thread_x")
    with sqlite3.connect(tmp_path / "newer.db") as conn:
        conn.execute("INSERT INTO threadkit_migrations VALUES (99, 0)")
    newer = SQLiteStore.from_url(f"sqlite:///{tmp_path}/newer.db")
    with pytest.raises(StoreError, match="newer than this threadkit"):
        await newer.setup()
    await newer.close()


async def test_without_fast_path(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "slow.db", fast_path=False)
    async with store:
        t = await store.create_thread()
        stored = await store.append(t.id, [user("a"), assistant("b")])
        assert await store.tail(t.id, 5) == stored
        assert await store.count_messages(t.id) == 2
