"""Core benchmark: snapshots, SQLite appends, listing, tail(50), peak memory.

Every figure is measured in this run, beside its baseline on the same messages (about 200
characters each, user and assistant alternating), and printed with the ratio between them:

* snapshot round trip (serialize, then resume) of a memory-store thread, messages inline, at 1k,
  10k and 100k messages; against agent-framework ``AgentSession.to_dict`` → ``json.dumps`` →
  ``json.loads`` → ``from_dict`` (target: >= 50x faster) and raw msgspec encode/decode of an
  equivalent plain struct list (target: <= 3x slower);
* SQLite append of 2-message turns (WAL, synchronous=NORMAL), against openai-agents
  ``SQLiteSession.add_items`` (target: >= 5x more messages/s) and raw ``sqlite3.executemany`` with
  the same pragmas (target: <= 1.5x slower);
* full listing of a 10k-message thread against openai-agents ``get_items()`` (target: >= 5x);
* ``tail(50)`` at 100k messages against ``tail(50)`` at 1k (target: <= 1.5x);
* peak memory of resuming a 100k-message SQLite thread and running one turn (target: < 50 MB).

Run: ``python benchmarks/bench_core.py`` (add ``--quick`` for a smaller, faster pass).
Peers come from the ``dev`` extra (agent-framework-core, openai-agents).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import threadkit
from threadkit.stores.sqlite import SQLiteStore
from threadkit.types import Message, TextContent

TEXT = ("The quick brown fox jumps over the lazy dog while the model thinks about it. " * 3)[:200]

rows: list[tuple[str, str, str, str]] = []


def report(what: str, ours: str, baseline: str, ratio: str) -> None:
    rows.append((what, ours, baseline, ratio))
    print(f"  {what:<58} {ours:>14} {baseline:>14} {ratio:>12}", flush=True)


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


async def abest_of(fn: Callable[[], Awaitable[Any]], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t)
    return min(times)


async def abest_of_pair(
    a: Callable[[], Awaitable[Any]], b: Callable[[], Awaitable[Any]], repeat: int
) -> tuple[float, float]:
    """Best times of ``a`` and ``b``, run in turns (a, b, a, b...), each after a collection."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for fn, out in ((a, times[0]), (b, times[1])):
            gc.collect()
            t = time.perf_counter()
            await fn()
            out.append(time.perf_counter() - t)
    return min(times[0]), min(times[1])


def messages(n: int, thread_id: str = "") -> list[Message]:
    return [
        Message(
            id="",
            thread_id=thread_id,
            role="user" if i % 2 == 0 else "assistant",
            content=[TextContent(text=TEXT)],
        )
        for i in range(n)
    ]


# --------------------------------------------------------------------------- snapshots


class PlainMessage(msgspec.Struct):
    id: str
    role: str
    text: str
    created_at: int


async def bench_snapshot(n: int, repeat: int) -> None:
    backend = await threadkit.open_backend({"store": "memory://"})
    thread = await backend.create_thread()
    store = backend.store  # type: ignore[attr-defined]
    for i in range(0, n, 1000):
        await store.append(thread.id, messages(min(1000, n - i)))

    async def ours() -> None:
        blob = await thread.serialize()
        resumed = await threadkit.resume(blob)
        await resumed.close()

    plain = [
        PlainMessage(id=f"msg_{i:024x}", role="user", text=TEXT, created_at=1) for i in range(n)
    ]
    enc = msgspec.json.Encoder()
    dec = msgspec.json.Decoder(list[PlainMessage])

    async def raw() -> None:
        dec.decode(enc.encode(plain))

    # taken in turns, so a noisy spell on the machine hits both sides alike
    t_ours, t_raw = await abest_of_pair(ours, raw, repeat)
    await backend.close()

    t_af: float | None = None
    try:
        from agent_framework import AgentSession
        from agent_framework import Message as AFMessage

        af = [
            AFMessage(role="user" if i % 2 == 0 else "assistant", contents=[TEXT]) for i in range(n)
        ]
        session = AgentSession()
        session.state = {"in_memory": {"messages": af}}

        def af_round() -> None:
            AgentSession.from_dict(json.loads(json.dumps(session.to_dict())))

        t_af = best_of(af_round, 2 if n >= 100_000 else 7)
    except ImportError:
        pass
    label = f"snapshot round trip, {n:,} msgs inline"
    if t_af is not None:
        report(
            f"{label} vs agent-framework",
            f"{t_ours * 1e3:.1f} ms",
            f"{t_af * 1e3:.1f} ms",
            f"{t_af / t_ours:.0f}x faster",
        )
    report(
        f"{label} vs raw msgspec",
        f"{t_ours * 1e3:.1f} ms",
        f"{t_raw * 1e3:.1f} ms",
        f"{t_ours / t_raw:.2f}x slower",
    )


# --------------------------------------------------------------------------- sqlite appends


async def bench_sqlite_append(turns: int, tmp: Path) -> None:
    store = SQLiteStore.from_url(f"sqlite:///{tmp}/append.db")
    await store.setup()
    info = await store.create_thread()
    batch = [messages(2, info.id) for _ in range(turns)]
    t = time.perf_counter()
    for turn in batch:
        await store.append(info.id, turn)
    ours = 2 * turns / (time.perf_counter() - t)
    await store.close()

    # raw sqlite3 executemany with the same pragmas, one transaction per turn
    con = sqlite3.connect(tmp / "raw.db", isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute(
        "CREATE TABLE m (thread_id TEXT, seq INTEGER, id TEXT, role TEXT, data BLOB, "
        "PRIMARY KEY (thread_id, seq))"
    )
    enc = msgspec.msgpack.Encoder()
    t = time.perf_counter()
    seq = 0
    for turn in batch:
        params = []
        for m in turn:
            seq += 1
            params.append(("t", seq, f"msg_{seq}", m.role, enc.encode(m)))
        con.execute("BEGIN IMMEDIATE")
        con.executemany("INSERT INTO m VALUES (?, ?, ?, ?, ?)", params)
        con.execute("COMMIT")
    raw = 2 * turns / (time.perf_counter() - t)
    con.close()

    peer: float | None = None
    try:
        from agents.memory import SQLiteSession

        session = SQLiteSession("bench", tmp / "agents.db")
        items = [
            [{"role": "user", "content": TEXT}, {"role": "assistant", "content": TEXT}]
            for _ in range(turns)
        ]
        t = time.perf_counter()
        for pair in items:
            await session.add_items(pair)  # type: ignore[arg-type]
        peer = 2 * turns / (time.perf_counter() - t)
        session.close()
    except ImportError:
        pass
    label = f"SQLite append, 2-msg turns ({turns:,} turns; WAL, sync=NORMAL)"
    if peer is not None:
        report(
            f"{label} vs openai-agents",
            f"{ours:,.0f} msg/s",
            f"{peer:,.0f} msg/s",
            f"{ours / peer:.1f}x faster",
        )
    report(
        f"{label} vs raw executemany",
        f"{ours:,.0f} msg/s",
        f"{raw:,.0f} msg/s",
        f"{raw / ours:.2f}x slower",
    )


# --------------------------------------------------------------------------- listing and tail


async def filled_sqlite(path: Path, n: int) -> tuple[SQLiteStore, str]:
    store = SQLiteStore.from_url(f"sqlite:///{path}")
    await store.setup()
    info = await store.create_thread()
    for i in range(0, n, 1000):
        await store.append(info.id, messages(min(1000, n - i), info.id))
    return store, info.id


async def bench_listing(n: int, tmp: Path, repeat: int) -> None:
    """Full listing: warm (the store listed the thread before; its decoded-message cache is
    checked against the thread's revision stamp) and cold (a store just opened on the file, as
    a new process would list it)."""
    path = tmp / "list.db"
    store, tid = await filled_sqlite(path, n)
    await store.list_messages(tid, limit=None)
    t_warm = await abest_of(lambda: store.list_messages(tid, limit=None), repeat)
    got = await store.list_messages(tid, limit=None)
    assert len(got.data) == n
    await store.close()

    async def cold() -> None:
        fresh = SQLiteStore.from_url(f"sqlite:///{path}")
        await fresh.setup()
        try:
            assert len((await fresh.list_messages(tid, limit=None)).data) == n
        finally:
            await fresh.close()

    t_cold = await abest_of(cold, repeat)
    try:
        from agents.memory import SQLiteSession

        session = SQLiteSession("bench", tmp / "agents_list.db")
        for _ in range(n // 2):
            await session.add_items(
                [{"role": "user", "content": TEXT}, {"role": "assistant", "content": TEXT}]  # type: ignore[list-item]
            )
        t_peer = await abest_of(session.get_items, repeat)
        session.close()
        for label, t_ours in (("repeat listing", t_warm), ("first listing, fresh store", t_cold)):
            report(
                f"full listing, {n:,} msgs (SQLite, {label}) vs openai-agents get_items",
                f"{t_ours * 1e3:.1f} ms",
                f"{t_peer * 1e3:.1f} ms",
                f"{t_peer / t_ours:.1f}x faster",
            )
    except ImportError:
        report(f"full listing, {n:,} msgs (SQLite)", f"{t_warm * 1e3:.1f} ms", "-", "-")


async def bench_tail(small: int, large: int, tmp: Path) -> None:
    async def per_call(n: int) -> float:
        store, tid = await filled_sqlite(tmp / f"tail{n}.db", n)
        for _ in range(50):
            await store.tail(tid, 50)
        samples = []
        for _ in range(7):
            t = time.perf_counter()
            for _ in range(200):
                await store.tail(tid, 50)
            samples.append((time.perf_counter() - t) / 200)
        await store.close()
        return statistics.median(samples)

    t_small = await per_call(small)
    t_large = await per_call(large)
    report(
        f"tail(50) at {large:,} vs at {small:,} msgs (SQLite)",
        f"{t_large * 1e6:.0f} us",
        f"{t_small * 1e6:.0f} us",
        f"{t_large / t_small:.2f}x",
    )


# --------------------------------------------------------------------------- peak memory


async def bench_memory(n: int, tmp: Path) -> None:
    path = tmp / "big.db"
    store, tid = await filled_sqlite(path, n)
    await store.close()
    backend = await threadkit.open_backend({"store": f"sqlite:///{path}"})
    blob = await (await backend.get_thread(tid)).serialize()
    await backend.close()
    gc.collect()
    tracemalloc.start()
    thread = await threadkit.resume(blob)
    await thread.add_message("user", "What is my favourite colour?")
    run = await thread.run(
        threadkit.Agent(),
        truncation_strategy=threadkit.TruncationStrategy(type="last_messages", last_messages=20),
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    await thread.close()
    assert run.status is threadkit.RunStatus.COMPLETED
    tracemalloc.start()
    thread = await threadkit.resume(blob)
    await thread.add_message("user", "And my name?")
    run = await thread.run(threadkit.Agent())  # auto truncation: 128k-token budget
    _, peak_auto = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    await thread.close()
    report(
        f"peak memory: resume {n:,}-msg thread + 1 turn (last_messages 20)",
        f"{peak / 2**20:.1f} MB",
        "50 MB budget",
        f"{peak / (50 * 2**20):.2f}x",
    )
    report(
        f"peak memory: resume {n:,}-msg thread + 1 turn (auto, 128k tokens)",
        f"{peak_auto / 2**20:.1f} MB",
        "50 MB budget",
        f"{peak_auto / (50 * 2**20):.2f}x",
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--only", choices=["snapshot"], help="run only this part")
    args = parser.parse_args()
    big = 20_000 if args.quick else 100_000
    print(f"  {'what':<58} {'threadkit':>14} {'baseline':>14} {'ratio':>12}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for n in (1_000, 10_000, big):
            await bench_snapshot(n, {1_000: 30, 10_000: 20}.get(n, 5))
        if args.only == "snapshot":
            return
        await bench_sqlite_append(2_000 if args.quick else 5_000, tmp)
        await bench_listing(10_000, tmp, 5)
        await bench_tail(1_000, big, tmp)
        await bench_memory(big, tmp)


if __name__ == "__main__":
    asyncio.run(main())
