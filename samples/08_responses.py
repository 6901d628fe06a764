"""Threads over the OpenAI Responses API in its three modes, and Foundry's new agents.

The sample starts ``threadkit serve`` on 127.0.0.1 (a private in-memory store, the offline model,
one random key) and drives it with the real ``openai`` SDK through the ``responses`` backend:

1. ``responses_mode = "previous_response_id"``: the service chains responses; threadkit keeps a
   local record of the messages and sends only what the chain has not seen. A tool call goes
   through ``requires_action`` and ONE run spans both responses;
2. ``responses_mode = "conversation"``: a service conversation is the thread, its items are the
   messages; a snapshot resumes it;
3. ``responses_mode = "store"``: the service keeps nothing (``store=false``); the history lives in
   a threadkit store and is sent, after truncation, every turn;

then through the ``foundry-agents`` backend (``azure-ai-projects`` ``get_openai_client()``): a
conversation run by a Foundry prompt agent through ``agent_reference``.

Run offline: ``python samples/08_responses.py`` (extras ``openai``, ``foundry``, ``server``).
Against OpenAI, only the configuration changes (the key stays in the environment)::

    {"backend": "responses", "model": "openai:gpt-4.1-mini", "responses_mode": "conversation"}
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets

import threadkit
from threadkit.testing.server import running_server

KEY_ENV = "THREADKIT_SAMPLE_08_KEY"


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


async def chain(base_url: str) -> None:
    cfg = {
        "backend": "responses",
        "base_url": base_url,
        "api_key_env": KEY_ENV,
        "allow_insecure_loopback": True,  # plain http, honoured for 127.0.0.1/::1/localhost only
        "responses_mode": "previous_response_id",
    }
    async with await threadkit.open_backend(cfg) as backend:
        thread = await backend.create_thread()
        await thread.add_message("user", "My name is Ada.")
        await thread.run(timeout=60)
        print(f"[chain] assistant: {await last_answer(thread)}")

        await thread.add_message("user", "Please compute 12 * (3 + 4)")
        run = await thread.create_run(tools=[threadkit.function_tool(calculator)])
        print(f"[chain] run {run.id}: {run.status.value}")
        calls = run.required_action.submit_tool_outputs.tool_calls if run.required_action else []
        outputs = []
        for call in calls:
            args = json.loads(call.function.arguments)
            result = calculator(**args)
            print(f"[chain]   tool call {call.function.name}({args}) -> {result}")
            outputs.append(threadkit.ToolOutput(tool_call_id=call.id, output=result))
        run = await thread.submit_tool_outputs(run.id, outputs)
        responses = (run.provider_details or {}).get("responses", [])
        print(f"[chain] run {run.id}: {run.status.value} over {len(responses)} responses")
        print(f"[chain] assistant: {await last_answer(thread)}")
        print(f"[chain] run steps: {[s.type async for s in thread.run_steps(run.id)]}")


async def conversation(base_url: str) -> None:
    cfg = {
        "backend": "responses",
        "base_url": base_url,
        "api_key_env": KEY_ENV,
        "allow_insecure_loopback": True,
        "responses_mode": "conversation",
    }
    async with await threadkit.open_backend(cfg) as backend:
        thread = await backend.create_thread(metadata={"sample": "08"})
        print(f"[conversation] thread {thread.id}")
        await thread.add_message("user", "My favourite colour is teal.")
        await thread.run(timeout=60)
        snapshot = await thread.serialize()
    assert os.environ[KEY_ENV].encode() not in snapshot  # the variable's NAME only
    async with await threadkit.resume(snapshot) as resumed:
        await resumed.add_message("user", "What is my favourite colour?")
        await resumed.run(timeout=60)
        print(f"[conversation] resumed; assistant: {await last_answer(resumed)}")
        items = [m.role async for m in resumed.messages()]
        print(f"[conversation] {len(items)} items: {' '.join(items)}")


async def stateless(base_url: str) -> None:
    cfg = {
        "backend": "responses",
        "base_url": base_url,
        "api_key_env": KEY_ENV,
        "allow_insecure_loopback": True,
        "responses_mode": "store",
        "store": "memory://",  # where the history lives: any threadkit store URL
    }
    async with await threadkit.open_backend(cfg) as backend:
        thread = await backend.create_thread()
        await thread.add_message("user", "My name is Grace.")
        await thread.run(timeout=60)
        await thread.add_message("user", "What is my name?")
        await thread.run(timeout=60)
        print(f"[store] assistant: {await last_answer(thread)}")
        count = len([m async for m in thread.messages()])
        print(f"[store] {count} messages kept by threadkit, none by the service")


async def foundry(endpoint: str) -> None:
    cfg = {
        "backend": "foundry-agents",
        "endpoint": endpoint,
        "credential": "api_key",  # "default" = DefaultAzureCredential against Azure
        "api_key_env": KEY_ENV,
        "allow_insecure_loopback": True,
        "model": "openai:offline",  # the deployment agent versions are made with
    }
    agent = threadkit.Agent(name="sample-08", instructions="Use the calculator for arithmetic.")
    async with await threadkit.open_backend(cfg) as backend:
        thread = await backend.create_thread()
        await thread.add_message("user", "Please compute 6 * 7")
        run = await thread.run(agent, functions=[calculator], timeout=60)
        print(f"[foundry-agents] agent {run.agent_id}: {run.status.value}")
        print(f"[foundry-agents] assistant: {await last_answer(thread)}")
        print(f"[foundry-agents] deleted: {await thread.delete()}")


if __name__ == "__main__":
    key = secrets.token_urlsafe(16)
    os.environ[KEY_ENV] = key
    with running_server({"store": "memory://", "model": "offline"}, api_keys=[key]) as server:
        print(f"threadkit serve on {server.base_url}")
        asyncio.run(chain(server.openai_base_url))
        asyncio.run(conversation(server.openai_base_url))
        asyncio.run(stateless(server.openai_base_url))
        asyncio.run(foundry(server.foundry_endpoint("demo")))
