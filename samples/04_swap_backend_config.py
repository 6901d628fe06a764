"""The same application under different configurations: only the config changes.

``app(backend)`` is written once against the ``ThreadBackend`` / ``AgentThread`` API. It runs
here under configurations that differ only in ``store`` (memory, SQLite; Redis and PostgreSQL
when given), and the transcripts come out identical.

Run offline: ``python samples/04_swap_backend_config.py``.
Or one configuration of your own, as a threadkit.toml path or JSON:
``python samples/04_swap_backend_config.py '{"store": "redis://127.0.0.1:6379/0"}'``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import threadkit


def calculator(expression: str) -> int | float:
    """Evaluate digits with + - * / and parentheses.

    Args:
        expression: e.g. "6 * 7".
    """
    if set(expression) - set("0123456789+-*/(). ") or "**" in expression:
        raise ValueError(f"not arithmetic: {expression!r}")
    value = float(eval(expression, {"__builtins__": {}}))  # only digits and operators remain
    return int(value) if value.is_integer() else value


async def app(backend: threadkit.ThreadBackend) -> list[str]:
    """The application: a short conversation with a tool call. Returns the transcript."""
    agent = threadkit.Agent(name="app", instructions="Be brief; use the calculator.")
    thread = await backend.create_thread(metadata={"app": "sample-04"})
    for text in ("My favourite number is 42.", "What is 6 * 7?", "What is my favourite number?"):
        await thread.add_message("user", text)
        await thread.run(agent, functions=[calculator])
    transcript = [f"{m.role}: {m.text}" async for m in thread.messages() if m.text]
    await thread.delete()
    return transcript


def configs_from_argv(workdir: Path) -> list[dict[str, Any] | str]:
    """Configurations to run: argv[1] (a TOML path or a JSON object) or memory + SQLite."""
    if len(sys.argv) > 1:
        arg = sys.argv[1]
        return [json.loads(arg) if arg.lstrip().startswith("{") else arg]
    return [
        {"store": "memory://"},
        {"store": f"sqlite:///{workdir / 'app.db'}"},
    ]


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="threadkit-sample-") as tmp:
        results: list[list[str]] = []
        for config in configs_from_argv(Path(tmp)):
            async with await threadkit.open_backend(config) as backend:
                transcript = await app(backend)
                store = backend.settings.get("store")
            results.append(transcript)
            print(f"config {config!r} (store {store}):")
            for line in transcript:
                print(f"  {line}")
    same = all(r == results[0] for r in results)
    print(f"same transcript under all {len(results)} configuration(s): {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
