"""Function tools: the run stops at requires_action, tool outputs go back, the run finishes.

Shown twice: step by step (create_run, wait_run, submit_tool_outputs) and in one line
(``thread.run(agent, functions=[...])``). Run offline: ``python samples/02_tools.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime

import threadkit


def clock() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def evaluate(expression: str) -> int | float:
    """A restricted calculator over one expression (digits, + - * / and parentheses).

    Args:
        expression: e.g. "12 * (3 + 4)".
    """
    if set(expression) - set("0123456789+-*/(). ") or "**" in expression:
        raise ValueError(f"not arithmetic: {expression!r}")
    value = float(eval(expression, {"__builtins__": {}}))  # only digits and operators remain
    return int(value) if value.is_integer() else value


AGENT = threadkit.Agent(
    name="tool user",
    instructions="Use the calculator tool for arithmetic and the clock tool for the time.",
)


async def main() -> None:
    async with await threadkit.open_backend() as backend:
        thread = await backend.create_thread()

        # 1. Step by step: the caller executes the tool calls.
        await thread.add_message("user", "What is 12 * (3 + 4), and what time is it?")
        tools = [
            threadkit.function_tool(evaluate, name="calculator"),
            threadkit.function_tool(clock),
        ]
        run = await thread.create_run(AGENT, tools=tools)
        run = await thread.wait_run(run.id)
        print(f"run {run.id}: {run.status.value}")
        local: dict[str, Callable[..., object]] = {"calculator": evaluate, "clock": clock}
        while run.status is threadkit.RunStatus.REQUIRES_ACTION and run.required_action:
            outputs = []
            for call in run.required_action.submit_tool_outputs.tool_calls:
                args = json.loads(call.function.arguments)
                result = local[call.function.name](**args)
                print(f"  tool call {call.function.name}({args}) -> {result}")
                outputs.append(threadkit.ToolOutput(tool_call_id=call.id, output=str(result)))
            run = await thread.submit_tool_outputs(run.id, outputs)
            run = await thread.wait_run(run.id)
        print(f"run {run.id}: {run.status.value}")
        async for m in thread.messages("desc", limit=1):
            print(f"assistant: {m.text}")

        # 2. One line: threadkit executes the functions and submits their outputs.
        await thread.add_message("user", "Please compute 1234 * 5678")
        run = await thread.run(AGENT, functions={"calculator": evaluate, "clock": clock})
        async for m in thread.messages("desc", limit=1):
            print(f"assistant: {m.text}")
        print(
            f"run {run.id}: {run.status.value}, {run.usage.total_tokens if run.usage else 0} tokens"
        )

        # The tool calls stay in the thread next to their results, in order.
        print("\nthread:")
        async for m in thread.messages():
            parts = [m.text] + [f"call {c.name}({c.arguments})" for c in m.tool_calls]
            parts += [f"result {r.output}" for r in m.tool_results]
            print(f"  {m.seq:>2} {m.role:<9} {' | '.join(p for p in parts if p)}")


if __name__ == "__main__":
    asyncio.run(main())
