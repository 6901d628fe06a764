"""Foundry Agent Service (classic) threads through ``azure-ai-agents``, against a local server.

The sample starts ``threadkit serve`` on 127.0.0.1 (a private in-memory store, the offline model,
one random key), then drives it with the real ``azure.ai.agents.aio.AgentsClient`` through the
``foundry`` backend: a multi-turn conversation, a tool call answered through
``requires_action``, a snapshot resumed with ``threadkit.resume``, thread listing by metadata,
and delete. Run offline: ``python samples/07_foundry_classic.py`` (extras ``foundry``, ``server``).

Against a real Foundry project, only the construction changes; credentials come from
azure-identity's ``DefaultAzureCredential`` (``az login``, a managed identity...)::

    backend = await threadkit.open_backend({
        "backend": "foundry",
        "endpoint": "https://<resource>.services.ai.azure.com/api/projects/<project>",
        "model": "openai:gpt-4o-mini",  # the model deployment agents are created with
    })

Here the server wants a bearer token and speaks plain http, so the sample passes a
``StaticTokenCredential`` and sets ``allow_insecure_loopback`` (honoured for 127.0.0.1, ::1 and
localhost only).
"""

from __future__ import annotations

import asyncio
import json
import secrets

import threadkit
from threadkit.adapters.foundry import FoundryBackend, StaticTokenCredential
from threadkit.testing.server import running_server

AGENT = threadkit.Agent(
    name="foundry sample",
    instructions="Answer briefly. Use the calculator tool for arithmetic.",
)


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression (digits, + - * / and parentheses).

    Args:
        expression: e.g. "12 * (3 + 4)".
    """
    if set(expression) - set("0123456789+-*/(). ") or "**" in expression:
        raise ValueError(f"not arithmetic: {expression!r}")
    value = float(eval(expression, {"__builtins__": {}}))  # only digits and operators remain
    return str(int(value) if value.is_integer() else value)


async def last_answer(thread: threadkit.AgentThread) -> str:
    async for m in thread.messages("desc", limit=1):
        return m.text
    return ""


async def main(endpoint: str, key: str) -> None:
    backend = FoundryBackend(
        endpoint=endpoint,
        credential=StaticTokenCredential(key),  # any (Async)TokenCredential works here
        allow_insecure_loopback=True,
        model="offline",  # the deployment agents are created with (the server's offline model)
    )
    async with backend:
        thread = await backend.create_thread(metadata={"sample": "07"})
        print(f"thread {thread.id} created")

        # 1. Multi-turn: the service keeps the history.
        await thread.add_message("user", "My name is Ada.")
        run = await thread.run(AGENT, timeout=60)
        print(f"assistant: {await last_answer(thread)}")
        tokens = run.usage.total_tokens if run.usage else 0
        print(f"run {run.id}: {run.status.value} ({tokens} tokens)")

        # 2. A tool call through requires_action, answered step by step.
        await thread.add_message("user", "Please compute 12 * (3 + 4)")
        run = await thread.create_run(AGENT, tools=[threadkit.function_tool(calculator)])
        run = await thread.wait_run(run.id, timeout=60)
        outputs = []
        for call in (
            run.required_action.submit_tool_outputs.tool_calls if run.required_action else []
        ):
            args = json.loads(call.function.arguments)
            result = calculator(**args)
            print(f"  tool call {call.function.name}({args}) -> {result}")
            outputs.append(threadkit.ToolOutput(tool_call_id=call.id, output=result))
        run = await thread.submit_tool_outputs(run.id, outputs)
        run = await thread.wait_run(run.id, timeout=60)
        print(f"run {run.id}: {run.status.value}")
        print(f"assistant: {await last_answer(thread)}")
        steps = [s.type async for s in thread.run_steps(run.id)]
        print(f"run steps: {steps}")

        # 3. Snapshot: thread id, endpoint, agent id; never the key.
        snapshot = await thread.serialize()
        assert key.encode() not in snapshot

    # Resuming from configuration: credential "default" would be DefaultAzureCredential; for
    # the local server, this process's default credential is the static token instead.
    FoundryBackend.default_credential_factory = lambda: StaticTokenCredential(key)
    resumed = await threadkit.resume(snapshot)
    async with resumed:
        print(f"resumed thread {resumed.id} from a {len(snapshot)}-byte snapshot")
        await resumed.add_message("user", "What is my name?")
        await resumed.run(AGENT, timeout=60)
        print(f"assistant: {await last_answer(resumed)}")

    async with FoundryBackend(
        endpoint=endpoint, credential=StaticTokenCredential(key), allow_insecure_loopback=True
    ) as backend:
        tagged = [t async for t in backend.list_threads(metadata={"sample": "07"})]
        print(f"threads tagged sample=07: {len(tagged)}")
        thread = await backend.get_thread(tagged[0].id)
        print(f"deleted: {await thread.delete()}")


if __name__ == "__main__":
    key = secrets.token_urlsafe(16)
    with running_server({"store": "memory://", "model": "offline"}, api_keys=[key]) as server:
        endpoint = server.foundry_endpoint("demo")
        print(f"threadkit serve on {endpoint}")
        asyncio.run(main(endpoint, key))
