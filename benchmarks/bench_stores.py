"""Store benchmark: memory, SQLite, Redis and PostgreSQL side by side, and agent-framework's
``RedisHistoryProvider`` on the same Redis server with the same messages.

Every figure is measured in this run, on messages of about 200 characters, user and assistant
alternating (each text unique, so agent-framework's duplicate filter keeps them all):

* **append c=1**: one task appends 500 two-message turns to one thread, one ``append`` per
  turn; messages per second.
* **append c=8**: 8 asyncio tasks, each appending 125 two-message turns to its *own* thread
  (8 threads, one store object shared by the tasks), all at once; total messages per second.
* **tail(50)**: the median latency of ``tail(thread, 50)`` on a 1k-message and on a
  100k-message thread (200 calls each, alternating), and their ratio (target: about 1, the cost
  does not grow with the thread). The threads are filled with batch appends of 1,000 messages.
* **list 10k**: the best of 5 times of ``list_messages(thread, limit=None)`` over a
  10k-message thread.

agent-framework (the ``agent-framework-redis`` package) keeps a session as one Redis list and has
no tail: its ``save_messages`` reads the whole session before appending, and ``get_messages``
(what an agent loads before every model call) reads all of it. So its "tail" columns are
``get_messages`` of the whole 1k / 100k session and its "list" column ``get_messages`` of 10k;
its sessions of 1k/10k/100k messages are filled with ``RPUSH`` of exactly what
``save_messages`` writes (its own serializer), in batches of 1,000. The last row gives how many
times faster threadkit's ``RedisStore`` is (target: > 1 everywhere).

A store whose server does not answer is skipped with the reason printed. Redis keys use a unique
prefix and PostgreSQL a unique schema, both removed at the end; SQLite lives in a temp
directory (WAL, synchronous=NORMAL, the store's defaults).

Run: ``python benchmarks/bench_stores.py`` (``--quick`` for a smaller pass; ``--stores
memory,sqlite`` to pick stores). About 1-2 minutes on 2 cores. The machine's other load shows
in every figure; compare rows of one run, not runs.

Reading the Redis figures: redis-py parses replies in pure Python unless ``hiredis`` is
installed, and that parsing dominates ``list`` (and most of ``tail``) for both threadkit and
agent-framework.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers import postgres_url, redis_url
from threadkit.registry import open_store
from threadkit.stores.base import MessageStore
from threadkit.types import Message, Role, TextContent

TEXT = ("The quick brown fox jumps over the lazy dog while the model thinks about it. " * 3)[:200]
BATCH = 1000
TAIL = 50
CONCURRENCY = 8


@dataclass
class Sizes:
    turns: int = 500  # append c=1: turns on one thread
    turns_per_task: int = 125  # append c=8: turns per task (8 tasks, 8 threads)
    small: int = 1_000  # tail(50) "short thread"
    large: int = 100_000  # tail(50) "long thread"
    listing: int = 10_000  # full listing
    tail_calls: int = 200  # tail(50) calls timed per thread (median)


@dataclass
class Figures:
    """One row of the table (None: not measured)."""

    name: str
    append1: float | None = None  # messages/s
    append8: float | None = None  # messages/s
    tail_small: float | None = None  # seconds
    tail_large: float | None = None  # seconds
    listing: float | None = None  # seconds


def text(i: int) -> str:
    return f"{i:07d} {TEXT}"[:200]


def role(i: int) -> Role:
    return "user" if i % 2 == 0 else "assistant"


def ours(start: int, n: int) -> list[Message]:
    """``n`` new messages numbered from ``start`` (ids and seq assigned by the store)."""
    return [
        Message(id="", thread_id="", role=role(i), content=[TextContent(text=text(i))])
        for i in range(start, start + n)
    ]


async def median_latency(fn: Callable[[], Awaitable[Any]], calls: int) -> float:
    for _ in range(3):
        await fn()
    times = []
    gc.collect()
    for _ in range(calls):
        t = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


async def paired_latency(
    a: Callable[[], Awaitable[Any]], b: Callable[[], Awaitable[Any]], calls: int
) -> tuple[float, float]:
    """Median latencies of ``a`` and ``b``, called alternately so that load from other
    processes falls on both alike."""
    for _ in range(3):
        await a()
        await b()
    times_a: list[float] = []
    times_b: list[float] = []
    gc.collect()
    for _ in range(calls):
        for fn, out in ((a, times_a), (b, times_b)):
            t = time.perf_counter()
            await fn()
            out.append(time.perf_counter() - t)
    return statistics.median(times_a), statistics.median(times_b)


async def best_time(fn: Callable[[], Awaitable[Any]], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        await fn()
        best = min(best, time.perf_counter() - t)
    return best


# --------------------------------------------------------------------------- threadkit stores


async def fill(store: MessageStore, thread_id: str, n: int) -> None:
    for start in range(0, n, BATCH):
        await store.append(thread_id, ours(start, min(BATCH, n - start)))


async def bench_store(name: str, store: MessageStore, sizes: Sizes) -> Figures:
    fig = Figures(name)
    # append, concurrency 1: one thread, one append per turn
    turns = [ours(2 * i, 2) for i in range(sizes.turns)]
    tid = (await store.create_thread()).id
    gc.collect()
    t = time.perf_counter()
    for pair in turns:
        await store.append(tid, pair)
    fig.append1 = 2 * sizes.turns / (time.perf_counter() - t)
    assert await store.count_messages(tid) == 2 * sizes.turns

    # append, concurrency 8: 8 tasks, each on its own thread
    per_task = sizes.turns_per_task
    tids = [(await store.create_thread()).id for _ in range(CONCURRENCY)]
    work = [[ours(2 * i, 2) for i in range(per_task)] for _ in tids]

    async def task(thread_id: str, pairs: list[list[Message]]) -> None:
        for pair in pairs:
            await store.append(thread_id, pair)

    gc.collect()
    t = time.perf_counter()
    await asyncio.gather(*(task(x, w) for x, w in zip(tids, work, strict=True)))
    fig.append8 = 2 * per_task * CONCURRENCY / (time.perf_counter() - t)

    # tail(50) on a short and a long thread
    short = (await store.create_thread()).id
    await fill(store, short, sizes.small)
    long = (await store.create_thread()).id
    await fill(store, long, sizes.large)
    for thread_id, n in ((short, sizes.small), (long, sizes.large)):
        got = await store.tail(thread_id, TAIL)
        assert [m.seq for m in got] == list(range(n - TAIL + 1, n + 1)), "tail is wrong"
    fig.tail_small, fig.tail_large = await paired_latency(
        lambda: store.tail(short, TAIL), lambda: store.tail(long, TAIL), sizes.tail_calls
    )

    # full listing
    listed = (await store.create_thread()).id
    await fill(store, listed, sizes.listing)

    async def list_all() -> None:
        page = await store.list_messages(listed, limit=None)
        assert len(page.data) == sizes.listing

    fig.listing = await best_time(list_all, 5)
    return fig


# --------------------------------------------------------------------------- agent-framework


async def bench_agent_framework(url: str, prefix: str, sizes: Sizes) -> Figures:
    from agent_framework import Message as AFMessage
    from agent_framework_redis import RedisHistoryProvider

    def af(start: int, n: int) -> list[AFMessage]:
        return [
            AFMessage(role(i), [text(i)], message_id=f"msg_{prefix}_{i}")
            for i in range(start, start + n)
        ]

    provider = RedisHistoryProvider(redis_url=url, key_prefix=prefix, application_id="bench")
    sessions: list[str] = []

    def session() -> str:
        sessions.append(f"s{len(sessions)}")
        return sessions[-1]

    fig = Figures("agent-framework RedisHistoryProvider")
    try:
        one = session()
        turns = [af(2 * i, 2) for i in range(sizes.turns)]
        gc.collect()
        t = time.perf_counter()
        for pair in turns:
            await provider.save_messages(one, pair)
        fig.append1 = 2 * sizes.turns / (time.perf_counter() - t)
        assert len(await provider.get_messages(one)) == 2 * sizes.turns

        per_task = sizes.turns_per_task
        many = [session() for _ in range(CONCURRENCY)]
        work = [[af(2 * i, 2) for i in range(per_task)] for _ in many]

        async def task(sid: str, pairs: list[list[AFMessage]]) -> None:
            for pair in pairs:
                await provider.save_messages(sid, pair)

        gc.collect()
        t = time.perf_counter()
        await asyncio.gather(*(task(s, w) for s, w in zip(many, work, strict=True)))
        fig.append8 = 2 * per_task * CONCURRENCY / (time.perf_counter() - t)

        client: Any = provider._redis_client
        serialize = RedisHistoryProvider._serialize_json

        async def fill_session(n: int) -> str:
            sid = session()
            key = provider._redis_key(sid)
            for start in range(0, n, BATCH):
                await client.rpush(key, *[serialize(m) for m in af(start, min(BATCH, n - start))])
            return sid

        short = await fill_session(sizes.small)
        long = await fill_session(sizes.large)
        listed = await fill_session(sizes.listing)

        async def load(sid: str, n: int) -> None:
            assert len(await provider.get_messages(sid)) == n

        fig.tail_small = await median_latency(lambda: load(short, sizes.small), 10)
        fig.tail_large = await best_time(lambda: load(long, sizes.large), 1)
        fig.listing = await best_time(lambda: load(listed, sizes.listing), 5)
    finally:
        for sid in sessions:
            await provider.clear(sid)
        await provider.aclose()
    return fig


# --------------------------------------------------------------------------- stores and cleanup


async def open_and_bench(kind: str, sizes: Sizes, tmp: Path) -> list[Figures]:
    token = secrets.token_hex(5)
    if kind == "memory":
        store: MessageStore = open_store("memory://")
        cleanup: Callable[[], Awaitable[None]] | None = None
    elif kind == "sqlite":
        store = open_store(f"sqlite:///{tmp}/bench.db")
        cleanup = None
    elif kind == "redis":
        base, why = redis_url()
        if base is None:
            print(f"  skipped redis: {why}", flush=True)
            return []
        store = open_store(f"{base}?prefix=tkbench_{token}")

        async def cleanup() -> None:
            client = store.client  # type: ignore[attr-defined]
            keys = [k async for k in client.scan_iter(match=f"tkbench_{token}:*", count=1000)]
            for i in range(0, len(keys), 1000):
                await client.delete(*keys[i : i + 1000])

    else:
        base, why = postgres_url()
        if base is None:
            print(f"  skipped postgres: {why}", flush=True)
            return []
        schema = f"tkbench_{token}"
        store = open_store(f"{base}?schema={schema}")

        async def cleanup() -> None:
            import psycopg

            async with await psycopg.AsyncConnection.connect(base, autocommit=True) as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    rows: list[Figures] = []
    t = time.perf_counter()
    try:
        await store.setup()
        rows.append(await bench_store(kind, store, sizes))
        if kind == "redis":
            try:
                import agent_framework_redis  # noqa: F401
            except ImportError:
                print("  skipped agent-framework: agent-framework-redis is not installed")
            else:
                assert base is not None
                rows.append(await bench_agent_framework(base, f"tkbench_af_{token}", sizes))
    finally:
        await store.close()
        if cleanup is not None:
            await cleanup()
    print(f"  {kind}: measured in {time.perf_counter() - t:.1f} s", flush=True)
    return rows


# --------------------------------------------------------------------------- the table


def rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def ms(x: float | None) -> str:
    return "-" if x is None else (f"{x * 1e3:.3f}" if x < 0.01 else f"{x * 1e3:.1f}")


def times(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def k(n: int) -> str:
    return f"{n // 1000}k"


def print_table(rows: list[Figures], sizes: Sizes) -> None:
    head = (
        "store",
        "append c=1 msg/s",
        "append c=8 msg/s",
        f"tail(50) {k(sizes.small)} ms",
        f"tail(50) {k(sizes.large)} ms",
        f"{k(sizes.large)}/{k(sizes.small)}",
        f"list {k(sizes.listing)} ms",
    )
    body: list[tuple[str, ...]] = []
    for r in rows:
        ratio = (
            r.tail_large / r.tail_small
            if r.tail_large is not None and r.tail_small is not None
            else None
        )
        body.append(
            (
                r.name,
                rate(r.append1),
                rate(r.append8),
                ms(r.tail_small),
                ms(r.tail_large),
                times(ratio),
                ms(r.listing),
            )
        )
    mine = next((r for r in rows if r.name == "redis"), None)
    peer = next((r for r in rows if r.name.startswith("agent-framework")), None)
    if mine is not None and peer is not None:

        def faster(a: float | None, b: float | None, higher_is_better: bool) -> str:
            if a is None or b is None:
                return "-"
            return times(a / b if higher_is_better else b / a)

        body.append(
            (
                "redis: threadkit vs agent-framework",
                faster(mine.append1, peer.append1, True),
                faster(mine.append8, peer.append8, True),
                faster(mine.tail_small, peer.tail_small, False),
                faster(mine.tail_large, peer.tail_large, False),
                "",
                faster(mine.listing, peer.listing, False),
            )
        )
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    print()
    print(
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(head, widths, strict=True))
        )
    )
    print(line)
    for row in body:
        if row[0].startswith("redis: threadkit vs"):
            print(line)
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    print()
    print(
        f"append: 2-message turns, one append per turn; c=1 is {sizes.turns} turns on one thread, "
        f"c=8 is {CONCURRENCY} asyncio tasks x {sizes.turns_per_task} turns, each task on "
        "its own thread."
    )
    print(
        "tail(50): median of "
        f"{sizes.tail_calls} calls per thread, alternating between the two; {k(sizes.large)}/{k(sizes.small)} is the growth with thread "
        "length (target ~1x). list: best of 5, limit=None."
    )
    if peer is not None:
        print(
            "agent-framework: save_messages per turn (it reads the whole session first); its "
            "tail columns are get_messages of the whole session (it has no tail), its list "
            f"column get_messages of {k(sizes.listing)}. Last row: how many times faster "
            "threadkit is."
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument(
        "--stores",
        default="memory,sqlite,redis,postgres",
        help="comma-separated store kinds (default: all four)",
    )
    args = parser.parse_args()
    sizes = (
        Sizes(turns=200, turns_per_task=25, small=1_000, large=20_000, listing=2_000, tail_calls=20)
        if args.quick
        else Sizes()
    )
    kinds = [k.strip() for k in args.stores.split(",") if k.strip()]
    unknown = set(kinds) - {"memory", "sqlite", "redis", "postgres"}
    if unknown:
        parser.error(f"unknown store kinds {sorted(unknown)}")
    started = time.perf_counter()
    print(f"threadkit store benchmark ({'quick' if args.quick else 'full'} sizes)", flush=True)
    rows: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="threadkit-bench-") as tmp:
        for kind in kinds:
            rows += await open_and_bench(kind, sizes, Path(tmp))
    print_table(rows, sizes)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
