"""threadkit serve driven by the real ``azure-ai-agents`` SDK (Foundry Agent Service classic).

The SDK authenticates with a bearer token and refuses to send one over plain http. The test
client adds :class:`AllowLoopbackBearer`, a per-call policy that lifts that check for
``127.0.0.1`` only (azure-core reads ``enforce_https`` from the request context); every other
host keeps the SDK's https-only rule.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

pytest.importorskip("starlette")
pytest.importorskip("azure.ai.agents")

from azure.ai.agents import AgentsClient
from azure.ai.agents.models import (
    FunctionTool,
    ListSortOrder,
    MessageRole,
    ToolSet,
)
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy

from threadkit.testing.server import RunningServer, running_server

KEY = "foundry-test-key"


class StaticToken:
    """A TokenCredential stand-in: always the same token (the server's API key)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


class AllowLoopbackBearer(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Let BearerTokenCredentialPolicy send the token over http to 127.0.0.1, nowhere else."""

    def on_request(self, request: PipelineRequest[Any]) -> None:
        if urlsplit(request.http_request.url).hostname == "127.0.0.1":
            request.context["enforce_https"] = False


def get_weather(city: str) -> str:
    """Get the weather for a city.

    :param city: The city name.
    :return: the weather as JSON.
    """
    return json.dumps({"city": city[-5:], "weather": "sunny"})


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server({"store": "memory://", "model": "offline"}, api_keys=[KEY]) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[AgentsClient]:
    c = AgentsClient(
        endpoint=server.foundry_endpoint("proj"),
        credential=StaticToken(KEY),  # type: ignore[arg-type]
        per_call_policies=[AllowLoopbackBearer()],
        retry_total=0,
    )
    yield c
    c.close()


def test_policy_is_needed_and_scoped_to_loopback(server: RunningServer) -> None:
    plain = AgentsClient(
        endpoint=server.foundry_endpoint("proj"),
        credential=StaticToken(KEY),  # type: ignore[arg-type]
        retry_total=0,
    )
    with pytest.raises(Exception, match="non-TLS"):
        plain.threads.create()
    plain.close()


def test_agent_thread_message_create_and_process_with_auto_function_calls(
    client: AgentsClient,
) -> None:
    functions = FunctionTool({get_weather})
    toolset = ToolSet()
    toolset.add(functions)
    client.enable_auto_function_calls(toolset)
    agent = client.create_agent(
        model="gpt-4o-mini", name="weather", instructions="Answer briefly.", toolset=toolset
    )
    assert agent.id.startswith("asst_") and agent.name == "weather"
    assert [t.function.name for t in agent.tools] == ["get_weather"]  # type: ignore[attr-defined]
    thread = client.threads.create()
    message = client.messages.create(
        thread_id=thread.id, role="user", content="What does get_weather say for Paris?"
    )
    assert message.thread_id == thread.id
    run = client.runs.create_and_process(
        thread_id=thread.id, agent_id=agent.id, polling_interval=0.02
    )
    assert run.status == "completed", run.last_error
    messages = list(client.messages.list(thread_id=thread.id, order=ListSortOrder.ASCENDING))
    assert [m.role for m in messages] == ["user", "assistant"]
    answer = messages[1].text_messages[0].text.value
    assert answer.startswith("get_weather returned {") and '"weather": "sunny"' in answer
    last = client.messages.get_last_message_text_by_role(thread.id, MessageRole.AGENT)
    assert last is not None and last.text.value == answer
    steps = list(client.run_steps.list(thread_id=thread.id, run_id=run.id))
    assert sorted(s.type for s in steps) == ["message_creation", "tool_calls"]
    got = client.get_agent(agent.id)
    assert got.instructions == "Answer briefly."
    client.threads.delete(thread.id)
    with pytest.raises(ResourceNotFoundError):
        client.threads.get(thread.id)
    client.delete_agent(agent.id)
    with pytest.raises(ResourceNotFoundError):
        client.get_agent(agent.id)


def test_threads_list_pages_to_the_end(client: AgentsClient) -> None:
    made = [client.threads.create(metadata={"batch": "list"}).id for _ in range(23)]
    listed = [t.id for t in client.threads.list(limit=10)]
    # the pager follows last_id; it must stop (last_id null on the last page) and see all
    assert set(made) <= set(listed)
    assert len(listed) == len(set(listed))
    newest_first = [i for i in listed if i in set(made)]
    assert newest_first == list(reversed(made))
    agents = [client.create_agent(model="m", name=f"a{i}").id for i in range(3)]
    assert set(agents) <= {a.id for a in client.list_agents(limit=2)}
    for a in agents:
        client.delete_agent(a)


def test_stream_run(client: AgentsClient) -> None:
    agent = client.create_agent(model="m", name="streamer")
    thread = client.threads.create()
    client.messages.create(thread_id=thread.id, role="user", content="my pet is a cat")
    seen: list[str] = []
    with client.runs.stream(thread_id=thread.id, agent_id=agent.id) as stream:
        for event_type, _data, _ in stream:
            seen.append(str(event_type))
    assert seen[0] == "thread.run.created"
    assert "thread.message.delta" in seen
    assert "thread.run.completed" in seen
    text = client.messages.get_last_message_text_by_role(thread.id, MessageRole.AGENT)
    assert text is not None and text.text.value == "Noted: your pet is a cat."


def test_errors_come_back_as_azure_errors(client: AgentsClient) -> None:
    with pytest.raises(ResourceNotFoundError):
        client.threads.get("thread_nope")
    thread = client.threads.create()
    with pytest.raises(HttpResponseError) as info:
        client.runs.create(thread_id=thread.id, agent_id="asst_missing")
    assert info.value.status_code == 404
