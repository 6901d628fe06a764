"""Adapter benchmark: one complete run per service backend, threadkit against the raw SDK.

Both sides run against the same ``threadkit serve`` (a subprocess on 127.0.0.1, memory store,
offline model) and do the same work per run: add a user message to a fresh thread, run the agent
until the run completes (polling with the server's ``openai-poll-after-ms`` hint on both sides),
and read the newest message. Thread creation is outside the timing. Runs alternate between the
two sides; the medians of wall time and of client CPU time per run are printed with threadkit's
overhead (target: at most 10%). The client CPU column is what threadkit itself adds; the wall
time also carries the server, which shares the machine and makes it noisier.

Run: ``python benchmarks/bench_adapters.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import threadkit
from threadkit.adapters.foundry import FoundryBackend, StaticTokenCredential, make_agents_client

KEY_ENV = "THREADKIT_BENCH_KEY"
TOKEN = "bench-token"
RunFn = Callable[[], Awaitable[None]]


def start_server() -> tuple[subprocess.Popen[bytes], int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "threadkit",
            "serve",
            "--port",
            str(port),
            "--store",
            "memory://",
            "--model",
            "offline",
            "--log-level",
            "warning",
        ],
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("threadkit serve did not start")


async def assistants_pair(port: int) -> tuple[RunFn, RunFn, Callable[[], Awaitable[None]]]:
    import openai

    base = f"http://127.0.0.1:{port}/v1"
    backend = await threadkit.open_backend(
        {
            "backend": "assistants",
            "base_url": base,
            "allow_insecure_loopback": True,
            "api_key_env": KEY_ENV,
            "model": "offline",
        }
    )
    agent = threadkit.Agent(name="bench", instructions="Be brief.", model="offline")
    await backend.assistant_id(agent)  # type: ignore[attr-defined]  # created once, outside timing
    raw = openai.AsyncOpenAI(base_url=base, api_key="x", max_retries=0)
    assistant = await raw.beta.assistants.create(model="offline", instructions="Be brief.")

    async def ours() -> None:
        thread = await backend.create_thread()
        started, cpu = time.perf_counter(), time.process_time()
        await thread.add_message("user", "hello")
        run = await thread.run(agent)
        last = [m async for m in thread.messages("desc", limit=1)]
        timings["ours"].append((time.perf_counter() - started, time.process_time() - cpu))
        assert run.status is threadkit.RunStatus.COMPLETED and last

    async def sdk() -> None:
        thread = await raw.beta.threads.create()
        started, cpu = time.perf_counter(), time.process_time()
        await raw.beta.threads.messages.create(thread.id, role="user", content="hello")
        run = await raw.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id, instructions="Be brief."
        )
        page = await raw.beta.threads.messages.list(thread.id, order="desc", limit=1)
        timings["raw"].append((time.perf_counter() - started, time.process_time() - cpu))
        assert run.status == "completed" and page.data

    async def close() -> None:
        await backend.close()
        await raw.close()

    return ours, sdk, close


async def foundry_pair(port: int) -> tuple[RunFn, RunFn, Callable[[], Awaitable[None]]]:
    endpoint = f"http://127.0.0.1:{port}/api/projects/bench"
    FoundryBackend.default_credential_factory = lambda: StaticTokenCredential(TOKEN)
    backend = await threadkit.open_backend(
        {
            "backend": "foundry",
            "endpoint": endpoint,
            "allow_insecure_loopback": True,
            "model": "offline",
        }
    )
    agent = threadkit.Agent(name="bench", instructions="Be brief.", model="offline")
    raw = make_agents_client(endpoint, StaticTokenCredential(TOKEN), allow_insecure_loopback=True)
    service_agent = await raw.create_agent(model="offline", name="bench", instructions="Be brief.")
    warm = await backend.create_thread()
    await warm.add_message("user", "warm up")
    await warm.run(agent)

    async def ours() -> None:
        thread = await backend.create_thread()
        started, cpu = time.perf_counter(), time.process_time()
        await thread.add_message("user", "hello")
        run = await thread.run(agent)
        last = [m async for m in thread.messages("desc", limit=1)]
        timings["ours"].append((time.perf_counter() - started, time.process_time() - cpu))
        assert run.status is threadkit.RunStatus.COMPLETED and last

    async def sdk() -> None:
        thread = await raw.threads.create()
        started, cpu = time.perf_counter(), time.process_time()
        await raw.messages.create(thread_id=thread.id, role="user", content="hello")
        run = await raw.runs.create(
            thread_id=thread.id, agent_id=service_agent.id, instructions="Be brief."
        )
        # poll as threadkit does: look at once, then wait the server's poll hint (50 ms)
        run = await raw.runs.get(thread_id=thread.id, run_id=run.id)
        while run.status in ("queued", "in_progress"):
            await asyncio.sleep(0.05)
            run = await raw.runs.get(thread_id=thread.id, run_id=run.id)
        last = []
        async for m in raw.messages.list(thread_id=thread.id, order="desc", limit=1):
            last.append(m)
            break
        timings["raw"].append((time.perf_counter() - started, time.process_time() - cpu))
        assert run.status == "completed" and last

    async def close() -> None:
        await backend.close()
        await raw.close()

    return ours, sdk, close


async def responses_pair(
    port: int, *, foundry: bool = False
) -> tuple[RunFn, RunFn, Callable[[], Awaitable[None]]]:
    import openai

    agent = threadkit.Agent(name="bench", instructions="Be brief.", model="offline")
    if foundry:
        endpoint = f"http://127.0.0.1:{port}/api/projects/bench"
        base = endpoint + "/openai/v1"
        config: dict[str, Any] = {
            "backend": "foundry-agents",
            "endpoint": endpoint,
            "allow_insecure_loopback": True,
            "credential": "api_key",
            "api_key_env": KEY_ENV,
            "agent_id": "bench",
        }
        extra: dict[str, Any] = {"agent_reference": {"type": "agent_reference", "name": "bench"}}
    else:
        base = f"http://127.0.0.1:{port}/v1"
        config = {
            "backend": "responses",
            "base_url": base,
            "allow_insecure_loopback": True,
            "api_key_env": KEY_ENV,
            "responses_mode": "conversation",
            "model": "offline",
        }
        extra = {}
    backend = await threadkit.open_backend(config)
    raw = openai.AsyncOpenAI(base_url=base, api_key=os.environ[KEY_ENV], max_retries=0)
    warm = await backend.create_thread()  # creates the Foundry agent version, outside timing
    await warm.add_message("user", "warm up")
    await warm.run(agent)

    async def ours() -> None:
        thread = await backend.create_thread()
        started, cpu = time.perf_counter(), time.process_time()
        await thread.add_message("user", "hello")
        run = await thread.run(agent)
        last = [m async for m in thread.messages("desc", limit=1)]
        timings["ours"].append((time.perf_counter() - started, time.process_time() - cpu))
        assert run.status is threadkit.RunStatus.COMPLETED and last

    async def sdk() -> None:
        conversation = await raw.conversations.create()
        started, cpu = time.perf_counter(), time.process_time()
        await raw.conversations.items.create(
            conversation.id, items=[{"type": "message", "role": "user", "content": "hello"}]
        )
        kwargs: dict[str, Any] = {"conversation": conversation.id, "input": []}
        if foundry:
            kwargs["extra_body"] = extra
        else:
            kwargs.update(model="offline", instructions="Be brief.")
        response = await raw.responses.create(**kwargs)
        page = await raw.conversations.items.list(conversation.id, order="desc", limit=1)
        timings["raw"].append((time.perf_counter() - started, time.process_time() - cpu))
        assert response.status == "completed" and page.data

    async def close() -> None:
        await backend.close()
        await raw.close()

    return ours, sdk, close


async def foundry_agents_pair(port: int) -> tuple[RunFn, RunFn, Callable[[], Awaitable[None]]]:
    return await responses_pair(port, foundry=True)


timings: dict[str, list[tuple[float, float]]] = {"ours": [], "raw": []}

PAIRS: dict[str, Callable[[int], Awaitable[tuple[RunFn, RunFn, Callable[[], Awaitable[None]]]]]] = {
    "assistants": assistants_pair,
    "foundry": foundry_pair,
    "responses": responses_pair,
    "foundry-agents": foundry_agents_pair,
}


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="runs per side and backend")
    args = parser.parse_args()
    os.environ[KEY_ENV] = "bench-key"
    warnings.simplefilter("ignore", DeprecationWarning)
    proc, port = start_server()
    try:
        print(
            f"  {'backend':<16} {'threadkit run':>14} {'raw SDK run':>14} {'overhead':>10}"
            f" {'client CPU: threadkit':>22} {'raw SDK':>9} {'overhead':>9}"
        )
        for name, make in PAIRS.items():
            ours, sdk, close = await make(port)
            try:
                await ours()
                await sdk()  # warm both paths
                timings["ours"].clear()
                timings["raw"].clear()
                for _ in range(args.runs):
                    await ours()
                    await sdk()
            finally:
                await close()
            a = statistics.median(t for t, _ in timings["ours"])
            b = statistics.median(t for t, _ in timings["raw"])
            ca = statistics.median(c for _, c in timings["ours"])
            cb = statistics.median(c for _, c in timings["raw"])
            print(
                f"  {name:<16} {a * 1e3:>11.1f} ms {b * 1e3:>11.1f} ms {100 * (a / b - 1):>+9.1f}%"
                f" {ca * 1e3:>19.2f} ms {cb * 1e3:>6.2f} ms {100 * (ca / cb - 1):>+8.1f}%"
            )
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
