"""The Conversations surface of threadkit serve, driven by the real ``openai`` SDK over HTTP.

Every client validates strictly (``_strict_response_validation=True``). The same routes are
checked under ``/v1`` and under ``/api/projects/{project}/openai/v1`` (the base URL
``azure-ai-projects`` hands out); the spec conformance of these operations is checked in
``tests/test_server_responses.py`` together with the Responses operations.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from openai import BadRequestError, NotFoundError, OpenAI  # noqa: E402

from threadkit.server.conversations import items_to_messages, message_items  # noqa: E402
from threadkit.testing.server import RunningServer, running_server  # noqa: E402
from threadkit.types import ReasoningContent, ToolCallContent  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

WEATHER: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "strict": None,
}


def strict_client(base_url: str, api_key: str = "x") -> OpenAI:
    return OpenAI(
        base_url=base_url, api_key=api_key, _strict_response_validation=True, max_retries=0
    )


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server({"store": "memory://", "model": "offline"}) as s:
        yield s


@pytest.fixture(scope="module", params=["v1", "foundry"])
def client(request: pytest.FixtureRequest, server: RunningServer) -> Iterator[OpenAI]:
    base = (
        server.openai_base_url
        if request.param == "v1"
        else (server.foundry_endpoint("proj-a") + "/openai/v1")
    )
    c = strict_client(base)
    yield c
    c.close()


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": text}


# --------------------------------------------------------------------------- mapping (no HTTP)


def test_items_map_to_messages_and_back_with_stable_ids() -> None:
    items = [
        {"type": "message", "role": "developer", "content": "be terse"},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "hi"},
                {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"},
            ],
        },
        {
            "type": "reasoning",
            "id": "rs_up",
            "summary": [{"type": "summary_text", "text": "t"}],
            "encrypted_content": "opaque",
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "calling", "annotations": []}],
        },
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": '{"a": 1}'},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {
            "type": "function_call_output",
            "call_id": "c2",
            "output": [{"type": "input_text", "text": "two"}],
        },
        {"type": "message", "role": "assistant", "content": "done"},
    ]
    messages = items_to_messages(items)
    # developer, user, ONE assistant turn (reasoning + text + two calls), two tool messages,
    # then the final assistant message
    assert [m.role for m in messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]
    turn = messages[2]
    assert isinstance(turn.content[0], ReasoningContent)
    assert turn.content[0].encrypted_content == "opaque"
    assert [p.id for p in turn.content if isinstance(p, ToolCallContent)] == ["c1", "c2"]
    wire = [it for m in messages for it in message_items(m)]
    assert [it["type"] for it in wire] == [
        "message",
        "message",
        "reasoning",
        "message",
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
        "message",
    ]
    assert wire[0]["role"] == "developer"
    assert wire[1]["content"][1] == {
        "type": "input_image",
        "image_url": "https://x/y.png",
        "file_id": None,
        "detail": "low",
    }
    assert wire[3]["content"][0]["type"] == "output_text"
    assert wire[4]["id"] == f"fc_0_{turn.id}" and wire[5]["id"] == f"fc_1_{turn.id}"
    assert wire[2]["id"] == f"rs_0_{turn.id}" and wire[3]["id"] == turn.id
    assert wire[7]["output"] == "two"
    assert len({it["id"] for it in wire}) == len(wire)


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ({"type": "web_search_call", "id": "x"}, "not supported"),
        ({"type": "message", "role": "critic", "content": "x"}, "role"),
        ({"type": "function_call", "name": "f", "arguments": "{}"}, "call_id"),
        ({"role": "user", "content": [{"type": "input_audio"}]}, "input_audio"),
        ({"role": "user", "content": [{"type": "input_image", "detail": "low"}]}, "image_url"),
    ],
)
def test_bad_items_are_refused(item: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        items_to_messages([item])


# --------------------------------------------------------------------------- CRUD


def test_conversation_crud(client: OpenAI) -> None:
    conv = client.conversations.create(metadata={"topic": "demo"}, items=[user("hello")])
    assert conv.id.startswith("conv_") and conv.object == "conversation"
    assert conv.metadata == {"topic": "demo"}
    got = client.conversations.retrieve(conv.id)
    assert got.id == conv.id and got.created_at == conv.created_at
    updated = client.conversations.update(conv.id, metadata={"topic": "other", "k": "v"})
    assert updated.metadata == {"topic": "other", "k": "v"}
    assert client.conversations.retrieve(conv.id).metadata == {"topic": "other", "k": "v"}
    deleted = client.conversations.delete(conv.id)
    assert deleted.deleted is True and deleted.id == conv.id
    with pytest.raises(NotFoundError):
        client.conversations.retrieve(conv.id)
    with pytest.raises(NotFoundError):
        client.conversations.items.list(conv.id)


def test_unknown_conversation_and_item_are_404(client: OpenAI) -> None:
    with pytest.raises(NotFoundError):
        client.conversations.retrieve("conv_nope")
    with pytest.raises(NotFoundError):
        client.conversations.update("conv_nope", metadata={})
    with pytest.raises(NotFoundError):
        client.conversations.delete("conv_nope")
    conv = client.conversations.create()
    with pytest.raises(NotFoundError):
        client.conversations.items.retrieve("msg_nope", conversation_id=conv.id)
    with pytest.raises(NotFoundError):
        client.conversations.items.delete("fc_0_msg_nope", conversation_id=conv.id)


def test_a_plain_thread_is_not_a_conversation(server: RunningServer) -> None:
    c = strict_client(server.openai_base_url)
    thread = c.beta.threads.create()
    with pytest.raises(NotFoundError):
        c.conversations.retrieve(thread.id)
    # and a conversation IS a thread: the Assistants surface sees its messages
    conv = c.conversations.create(items=[user("shared")])
    msgs = c.beta.threads.messages.list(conv.id)
    assert [m.content[0].text.value for m in msgs if m.content[0].type == "text"] == ["shared"]


def test_items_add_list_get_delete_with_pagination(client: OpenAI) -> None:
    conv = client.conversations.create(items=[user("one"), user("two")])
    added = client.conversations.items.create(
        conv.id,
        items=[
            user("three"),
            {"type": "message", "role": "assistant", "content": "four"},
            user("five"),
        ],
    )
    assert [i.type for i in added.data] == ["message"] * 3
    assert added.first_id == added.data[0].id and added.last_id == added.data[-1].id

    def text(item: Any) -> str:
        return str(item.content[0].text)

    newest_first = [text(i) for i in client.conversations.items.list(conv.id)]
    assert newest_first == ["five", "four", "three", "two", "one"]
    oldest_first = [text(i) for i in client.conversations.items.list(conv.id, order="asc")]
    assert oldest_first == ["one", "two", "three", "four", "five"]
    # page by page, both orders, with the SDK's auto-pagination and by hand
    page = client.conversations.items.list(conv.id, limit=2)
    assert [text(i) for i in page.data] == ["five", "four"] and page.has_more is True
    page2 = client.conversations.items.list(conv.id, limit=2, after=page.data[-1].id)
    assert [text(i) for i in page2.data] == ["three", "two"] and page2.has_more is True
    page3 = client.conversations.items.list(conv.id, limit=2, after=page2.data[-1].id)
    assert [text(i) for i in page3.data] == ["one"] and page3.has_more is False
    auto = [text(i) for i in client.conversations.items.list(conv.id, limit=2, order="asc")]
    assert auto == oldest_first
    # roles and content types
    assistant = next(i for i in page.data if text(i) == "four")
    assert assistant.role == "assistant" and assistant.content[0].type == "output_text"
    got = client.conversations.items.retrieve(assistant.id, conversation_id=conv.id)
    assert got.id == assistant.id and text(got) == "four"
    after_delete = client.conversations.items.delete(assistant.id, conversation_id=conv.id)
    assert after_delete.id == conv.id and after_delete.object == "conversation"
    assert [text(i) for i in client.conversations.items.list(conv.id, order="asc")] == [
        "one",
        "two",
        "three",
        "five",
    ]
    with pytest.raises(NotFoundError):
        client.conversations.items.retrieve(assistant.id, conversation_id=conv.id)
    with pytest.raises(BadRequestError):
        client.conversations.items.list(conv.id, after="msg_not_here")


def test_function_call_items_share_their_turn(client: OpenAI) -> None:
    conv = client.conversations.create(
        items=[
            user("weather?"),
            {
                "type": "function_call",
                "call_id": "call_a",
                "name": "get_weather",
                "arguments": '{"city": "Paris"}',
            },
            {
                "type": "function_call",
                "call_id": "call_b",
                "name": "get_weather",
                "arguments": '{"city": "Rome"}',
            },
            {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
            {"type": "function_call_output", "call_id": "call_b", "output": "rainy"},
        ]
    )
    items = list(client.conversations.items.list(conv.id, order="asc"))
    assert [i.type for i in items] == [
        "message",
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
    ]
    first_call = items[1]
    assert first_call.type == "function_call"
    assert first_call.call_id == "call_a" and first_call.status == "completed"
    got = client.conversations.items.retrieve(first_call.id, conversation_id=conv.id)
    assert got.type == "function_call" and got.arguments == '{"city": "Paris"}'
    # both calls live in one assistant message: one cannot go alone
    with pytest.raises(BadRequestError, match="shares its stored message"):
        client.conversations.items.delete(first_call.id, conversation_id=conv.id)
    # a tool output can go; the listing pages through a multi-item message by item id
    client.conversations.items.delete(items[4].id, conversation_id=conv.id)
    rest = [i.id for i in client.conversations.items.list(conv.id, order="asc")]
    assert rest == [i.id for i in items[:4]]
    page = client.conversations.items.list(conv.id, order="asc", limit=1, after=items[1].id)
    assert [i.id for i in page.data] == [items[2].id] and page.has_more is True
    desc = client.conversations.items.list(conv.id, limit=2, after=items[2].id)
    assert [i.id for i in desc.data] == [items[1].id, items[0].id]
    # an output answering no call is refused whole
    with pytest.raises(BadRequestError, match="call_zzz"):
        client.conversations.items.create(
            conv.id, items=[{"type": "function_call_output", "call_id": "call_zzz", "output": "x"}]
        )


def test_bad_bodies_are_400_in_the_error_shape(server: RunningServer, client: OpenAI) -> None:
    conv = client.conversations.create()
    with pytest.raises(BadRequestError, match="at most 20"):
        client.conversations.items.create(conv.id, items=[user(str(i)) for i in range(21)])
    with pytest.raises(BadRequestError):
        client.conversations.items.create(conv.id, items=[])
    with pytest.raises(BadRequestError, match="metadata"):
        client.conversations.create(metadata={str(i): "v" for i in range(17)})
    with httpx.Client(base_url=server.openai_base_url) as raw:
        r = raw.post(
            "/conversations", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 400
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        r = raw.post(f"/conversations/{conv.id}/items", json={"items": "nope"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "items"
        r = raw.post(f"/conversations/{conv.id}", json={})
        assert r.status_code == 400 and r.json()["error"]["param"] == "metadata"


def test_conversation_remembers_across_responses(client: OpenAI) -> None:
    conv = client.conversations.create()
    first = client.responses.create(
        model="gpt-4o-mini", input="my name is Ada", conversation=conv.id
    )
    assert first.conversation is not None and first.conversation.id == conv.id
    second = client.responses.create(
        model="gpt-4o-mini", input="what is my name?", conversation=conv.id
    )
    assert second.output_text == "Your name is Ada."
    items = list(client.conversations.items.list(conv.id, order="asc"))
    assert [(i.type, i.role) for i in items] == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
        ("message", "assistant"),
    ]
    assert items[-1].id == second.output[0].id
    # a response's items are conversation items with the same ids
    assert client.conversations.items.retrieve(first.output[0].id, conversation_id=conv.id)


def test_restart_keeps_conversations_and_responses(tmp_path: Path) -> None:
    config = {"store": f"sqlite:///{tmp_path / 'tk.db'}", "model": "offline"}
    with running_server(config) as s:
        c = strict_client(s.openai_base_url)
        conv = c.conversations.create(metadata={"k": "v"}, items=[user("my name is Ada")])
        resp = c.responses.create(model="m", input="my city is Paris", conversation=conv.id)
        chained = c.responses.create(model="m", input="my pet is Rex")
        c.close()
    with running_server(config) as s:
        c = strict_client(s.openai_base_url)
        assert c.conversations.retrieve(conv.id).metadata == {"k": "v"}
        assert len(list(c.conversations.items.list(conv.id))) == 3
        again = c.responses.retrieve(resp.id)
        assert again.output_text == resp.output_text and again.status == "completed"
        inputs = list(c.responses.input_items.list(resp.id))
        assert [i.content[0].text for i in inputs if i.type == "message"] == ["my city is Paris"]
        answer = c.responses.create(
            model="m", input="what is my name?", conversation=conv.id
        ).output_text
        assert answer == "Your name is Ada."
        assert (
            c.responses.create(
                model="m", input="what is my pet?", previous_response_id=chained.id
            ).output_text
            == "Your pet is Rex."
        )
        c.close()
