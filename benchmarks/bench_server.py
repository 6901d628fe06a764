"""Server benchmark: threadkit serve against a bare Starlette endpoint served the same way.

Both servers run as separate processes under uvicorn (same loop and HTTP implementation, access
log off) on 127.0.0.1; the client is a minimal keep-alive HTTP/1.1 client on asyncio streams, so
client overhead stays small next to the servers'. Figures, each at concurrency 1 and 16 (one
connection per worker), for a fixed time per cell:

* **message creates/s**: ``POST /v1/threads/{id}/messages`` (decode, validate, store append,
  encode); the bare endpoint decodes the same JSON body with msgspec and answers a message-sized
  JSON object;
* **complete runs/s**: ``POST /v1/threads/runs`` with ``stream: true`` (create a thread with one
  user message, create the run, process it with the offline model, stream every event until
  ``[DONE]``); the bare endpoint streams the same number of SSE events of the same sizes, in
  one chunk (threadkit sends the events queued at each moment as one chunk).

The ratio (bare / threadkit throughput) is threadkit's per-request overhead over the framework
alone; the target is <= 3x. Each cell is measured in interleaved rounds (threadkit, bare,
threadkit, ...) and the best round of each is kept, so load from other processes on the machine
skews the ratio less. Runtime is bounded (about 25 s with the defaults).

Run: ``python benchmarks/bench_server.py [--seconds 0.7] [--rounds 3] [--store memory://]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BETA = "assistants=v2"

# --------------------------------------------------------------------------- the bare server


def bare_app(event_sizes: list[int]) -> Any:
    """A Starlette app with the two bare endpoints (no threadkit code on the request path)."""
    import msgspec
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    encoder = msgspec.json.Encoder()
    decoder = msgspec.json.Decoder()
    message = {
        "id": "msg_" + "0" * 24,
        "object": "thread.message",
        "created_at": 1,
        "thread_id": "thread_" + "0" * 24,
        "status": "completed",
        "incomplete_details": None,
        "completed_at": 1,
        "incomplete_at": None,
        "role": "user",
        "content": [{"type": "text", "text": {"value": "hello", "annotations": []}}],
        "assistant_id": None,
        "run_id": None,
        "attachments": [],
        "metadata": {},
    }
    events = [b"event: thread.x\ndata: " + b"x" * n + b"\n\n" for n in event_sizes]

    async def create_message(request: Request) -> Response:
        body = decoder.decode(await request.body())
        return Response(
            encoder.encode({**message, "role": body["role"]}), 200, None, "application/json"
        )

    async def run(request: Request) -> Response:
        decoder.decode(await request.body())

        async def stream() -> Any:  # one chunk: the cheapest way to send the same bytes
            yield b"".join(events) + b"event: done\ndata: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/v1/threads/{thread_id}/messages", create_message, methods=["POST"]),
            Route("/v1/threads/runs", run, methods=["POST"]),
        ]
    )


def serve_bare(port: int, sizes_file: str) -> None:
    import uvicorn

    sizes = json.loads(Path(sizes_file).read_text())
    uvicorn.run(bare_app(sizes), host="127.0.0.1", port=port, log_level="warning")


# --------------------------------------------------------------------------- the client


class Conn:
    """One keep-alive HTTP/1.1 connection (Content-Length or chunked answers)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (
            f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nopenai-beta: {BETA}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status = int((await self.reader.readline()).split(b" ", 2)[1])
        length = -1
        chunked = False
        while True:
            line = await self.reader.readline()
            if line == b"\r\n":
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await self.reader.readexactly(max(length, 0))
        parts = []
        while True:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            if size == 0:
                await self.reader.readline()
                return status, b"".join(parts)
            chunk = await self.reader.readexactly(size + 2)
            parts.append(chunk[:-2])

    def close(self) -> None:
        self.writer.close()


async def measure(port: int, concurrency: int, seconds: float, make: Any) -> float:
    """Requests completed per second by ``concurrency`` workers over ``seconds``."""
    conns = [await Conn.open(port) for _ in range(concurrency)]
    jobs = [await make(c, i) for i, c in enumerate(conns)]
    for c, job in zip(conns, jobs, strict=True):  # warm up
        await job(c)
    done = 0
    stop = time.perf_counter() + seconds

    async def worker(c: Conn, job: Any) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await job(c)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(c, j) for c, j in zip(conns, jobs, strict=True)))
    elapsed = time.perf_counter() - start
    for c in conns:
        c.close()
    return done / elapsed


def message_job(port: int) -> Any:
    body = json.dumps({"role": "user", "content": "hello"}).encode()

    async def make(c: Conn, i: int) -> Any:
        status, raw = await c.request("POST", "/v1/threads", b"{}")
        thread_id = json.loads(raw)["id"] if status == 200 else "thread_bare"

        async def job(conn: Conn) -> None:
            status, _ = await conn.request("POST", f"/v1/threads/{thread_id}/messages", body)
            assert status == 200, status

        return job

    return make


def run_job(assistant_id: str) -> Any:
    body = json.dumps(
        {
            "assistant_id": assistant_id,
            "stream": True,
            "thread": {"messages": [{"role": "user", "content": "my name is Ada"}]},
        }
    ).encode()

    async def make(c: Conn, i: int) -> Any:
        async def job(conn: Conn) -> None:
            status, raw = await conn.request("POST", "/v1/threads/runs", body)
            assert status == 200 and raw.endswith(b"data: [DONE]\n\n"), (status, raw[-200:])

        return job

    return make


# --------------------------------------------------------------------------- orchestration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"server did not start: {proc.communicate()[1].decode()}"
                ) from None
            time.sleep(0.05)


async def sample_run(port: int) -> tuple[str, list[int]]:
    """Create an assistant and stream one run; return its id and the run's SSE event sizes."""
    c = await Conn.open(port)
    _, raw = await c.request("POST", "/v1/assistants", json.dumps({"model": "offline"}).encode())
    assistant_id = json.loads(raw)["id"]
    body = json.dumps(
        {
            "assistant_id": assistant_id,
            "stream": True,
            "thread": {"messages": [{"role": "user", "content": "my name is Ada"}]},
        }
    ).encode()
    _, stream = await c.request("POST", "/v1/threads/runs", body)
    c.close()
    sizes = [
        len(block.split(b"\ndata: ", 1)[1])
        for block in stream.strip().split(b"\n\n")
        if not block.startswith(b"event: done")
    ]
    return assistant_id, sizes


async def bench(args: argparse.Namespace) -> None:
    ours_port, bare_port = free_port(), free_port()
    ours = start(
        [
            sys.executable,
            "-m",
            "threadkit.server",
            "--port",
            str(ours_port),
            "--store",
            args.store,
            "--model",
            "offline",
            "--log-level",
            "warning",
        ],
        ours_port,
    )
    sizes_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_server_sizes_{os.getpid()}.json"
    bare: subprocess.Popen[bytes] | None = None
    try:
        assistant_id, sizes = await sample_run(ours_port)
        sizes_file.write_text(json.dumps(sizes))
        bare = start(
            [sys.executable, __file__, "--bare", str(bare_port), str(sizes_file)], bare_port
        )
        print(
            f"threadkit serve (store {args.store}, offline model) vs bare Starlette; "
            f"best of {args.rounds} x {args.seconds:.1f} s per cell, interleaved; "
            f"a streamed run has {len(sizes)} events"
        )
        print(f"  {'workload':<26} {'conc':>4} {'threadkit/s':>12} {'bare/s':>10} {'ratio':>7}")
        for label, ours_make, bare_make in (
            ("message creates", message_job(ours_port), message_job(bare_port)),
            ("complete runs (streamed)", run_job(assistant_id), run_job("asst_bare")),
        ):
            for conc in (1, 16):
                ours_rate = bare_rate = 0.0
                for _ in range(args.rounds):  # interleaved, best of: other load only slows
                    ours_rate = max(
                        ours_rate, await measure(ours_port, conc, args.seconds, ours_make)
                    )
                    bare_rate = max(
                        bare_rate, await measure(bare_port, conc, args.seconds, bare_make)
                    )
                ratio = bare_rate / ours_rate
                flag = "" if ratio <= 3 else "  (over the 3x target)"
                print(
                    f"  {label:<26} {conc:>4} {ours_rate:>12.0f} {bare_rate:>10.0f} "
                    f"{ratio:>6.2f}x{flag}",
                    flush=True,
                )
    finally:
        for proc in (ours, bare):
            if proc is not None:
                proc.terminate()
                proc.wait(10)
        sizes_file.unlink(missing_ok=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--bare":
        serve_bare(int(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=0.7, help="seconds per measurement (default 0.7)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds per cell, best kept (default 3)"
    )
    parser.add_argument("--store", default="memory://", help="threadkit store URL")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
