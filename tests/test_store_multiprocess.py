"""Many OS processes on one thread: the SQLite, Redis and PostgreSQL stores keep it whole.

* 4 processes each append 500 two-message turns to the same thread: all 4,000 messages are
  there, ``seq`` runs 1..4000 without gap or repeat, and each turn's two messages are adjacent.
* 2 processes race ``create_run`` on the same thread (over several threads): on each exactly one
  run starts and the other process gets :class:`~threadkit.errors.ActiveRunError`.

Workers reopen the store from its ``locator`` with :func:`threadkit.registry.open_store`, as an
application would. Every wait is bounded, so a hung worker fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import secrets
import time
from collections.abc import AsyncIterator
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.servers import postgres_url, redis_url
from threadkit.errors import ActiveRunError
from threadkit.registry import open_store
from threadkit.testing.store_suite import assistant, make_run, user

PROCESSES = 4
TURNS = 500
RACE_ROUNDS = 10
DEADLINE = 180.0  # seconds for a whole multi-process phase

pytestmark = pytest.mark.slow


# ----------------------------------------------------------------------------- workers
# Module-level functions: the "spawn" start method imports this module in each child.


def _append_worker(url: str, thread_id: str, proc: int, barrier: Barrier) -> None:
    asyncio.run(_append_turns(url, thread_id, proc, barrier))


async def _append_turns(url: str, thread_id: str, proc: int, barrier: Barrier) -> None:
    store = open_store(url)
    await store.setup()
    try:
        barrier.wait(timeout=DEADLINE)  # start together, so the appends really contend
        for i in range(TURNS):
            tag = f"{proc}:{i}"
            await store.append(thread_id, [user(tag), assistant(tag)])
    finally:
        await store.close()


def _race_worker(url: str, thread_ids: list[str], barrier: Barrier, results: Any) -> None:
    asyncio.run(_race(url, thread_ids, barrier, results))


async def _race(url: str, thread_ids: list[str], barrier: Barrier, results: Any) -> None:
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
            except Exception as exc:  # reported to the parent, which fails the test
                results.put((tid, "error", repr(exc)))
    finally:
        await store.close()


def _run_all(procs: list[Any]) -> None:
    """Start the processes and wait for all of them, at most DEADLINE seconds in total."""
    for p in procs:
        p.start()
    deadline = time.monotonic() + DEADLINE
    try:
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        hung = [p.pid for p in procs if p.is_alive()]
        assert not hung, f"worker processes {hung} did not finish within {DEADLINE} s"
        codes = [p.exitcode for p in procs]
        assert codes == [0] * len(procs), f"worker exit codes {codes}"
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(params=["sqlite", "redis", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The locator of a fresh, set-up store (one SQLite file, or on the real server), cleaned
    up afterwards."""
    if request.param == "sqlite":
        store = open_store(f"sqlite:///{tmp_path}/multiprocess.db")
        await store.setup()
        try:
            yield store.locator
        finally:
            await store.close()
    elif request.param == "redis":
        base, why = redis_url()
        if base is None:
            pytest.skip(why)
        store = open_store(f"{base}?prefix=tkmp_{secrets.token_hex(6)}")
        await store.setup()
        try:
            yield store.locator
        finally:
            keys = [k async for k in store.client.scan_iter(match=f"{store.prefix}:*")]
            if keys:
                await store.client.delete(*keys)
            await store.close()
    else:
        base, why = postgres_url()
        if base is None:
            pytest.skip(why)
        schema = f"tkmp_{secrets.token_hex(6)}"
        store = open_store(f"{base}?schema={schema}")
        await store.setup()
        try:
            yield store.locator
        finally:
            await store.close()
            async with await psycopg.AsyncConnection.connect(base, autocommit=True) as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# ----------------------------------------------------------------------------- tests


async def test_four_processes_append_to_one_thread(url: str) -> None:
    store = open_store(url)
    try:
        thread_id = (await store.create_thread()).id
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(PROCESSES)
        procs = [
            ctx.Process(target=_append_worker, args=(url, thread_id, p, barrier))
            for p in range(PROCESSES)
        ]
        await asyncio.to_thread(_run_all, procs)

        msgs = (await store.list_messages(thread_id, limit=None)).data
        total = PROCESSES * TURNS * 2
        assert len(msgs) == total
        assert [m.seq for m in msgs] == list(range(1, total + 1))  # gapless, unique, ordered
        assert await store.count_messages(thread_id) == total
        assert len({m.id for m in msgs}) == total
        seen: dict[int, list[int]] = {p: [] for p in range(PROCESSES)}
        for first, second in zip(msgs[::2], msgs[1::2], strict=True):
            assert (first.role, second.role) == ("user", "assistant")
            assert first.text == second.text  # the turn's two messages are adjacent
            proc, i = map(int, first.text.split(":"))
            seen[proc].append(i)
        # every turn of every process is there once, in the order each process wrote them
        assert seen == {p: list(range(TURNS)) for p in range(PROCESSES)}
    finally:
        await store.close()


async def test_two_processes_race_for_a_run(url: str) -> None:
    store = open_store(url)
    try:
        thread_ids = [(await store.create_thread()).id for _ in range(RACE_ROUNDS)]
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(2)
        results = ctx.Queue()
        procs = [
            ctx.Process(target=_race_worker, args=(url, thread_ids, barrier, results))
            for _ in range(2)
        ]
        await asyncio.to_thread(_run_all, procs)
        outcomes = [results.get(timeout=10) for _ in range(2 * RACE_ROUNDS)]

        for tid in thread_ids:
            mine = [(kind, rid) for t, kind, rid in outcomes if t == tid]
            kinds = sorted(kind for kind, _ in mine)
            assert kinds == ["refused", "started"], (tid, mine)
            started = next(rid for kind, rid in mine if kind == "started")
            refused_by = next(rid for kind, rid in mine if kind == "refused")
            assert refused_by == started  # the error names the run that won
            runs = (await store.list_runs(tid)).data
            assert [r.id for r in runs] == [started]
    finally:
        await store.close()
