"""threadkit serve negative cases: every error in the spec's shape with the right HTTP status."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

from threadkit.errors import ModelError, ModelRateLimitError  # noqa: E402
from threadkit.models import ChatRequest  # noqa: E402
from threadkit.testing import ScriptedModel  # noqa: E402
from threadkit.testing.server import RunningServer, running_server  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

BETA = {"OpenAI-Beta": "assistants=v2"}
KEYS = ["key-one", "key-two"]


async def failing(request: ChatRequest) -> str:
    last = request.messages[-1].text if request.messages else ""
    if "slow" in last:
        await asyncio.sleep(0.4)
    if "rate" in last:
        raise ModelRateLimitError("upstream said 429")
    if "boom" in last:
        raise ModelError("upstream exploded")
    return "fine"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(
        {"store": "memory://"},
        api_keys=KEYS,
        model=ScriptedModel(failing),
        max_body_bytes=4096,
    ) as s:
        yield s


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.base_url, headers={**BETA, "Authorization": f"Bearer {KEYS[0]}"}
    ) as c:
        yield c


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    return err  # type: ignore[no-any-return]


def test_auth_bearer_and_api_key(server: RunningServer) -> None:
    url = f"{server.base_url}/v1/threads"
    assert httpx.post(url, headers=BETA).status_code == 401
    err = error_of(httpx.post(url, headers={**BETA, "Authorization": "Bearer nope"}), 401)
    assert err["code"] == "invalid_api_key"
    error_of(httpx.post(url, headers={**BETA, "Authorization": f"Basic {KEYS[0]}"}), 401)
    error_of(httpx.post(url, headers={**BETA, "api-key": "key-one-and-more"}), 401)
    assert (
        httpx.post(url, headers={**BETA, "Authorization": f"Bearer {KEYS[1]}"}).status_code == 200
    )
    assert httpx.post(url, headers={**BETA, "api-key": KEYS[0]}).status_code == 200
    foundry = f"{server.base_url}/api/projects/p/threads?api-version=v1"
    error_of(httpx.get(foundry), 401)
    assert httpx.get(foundry, headers={"api-key": KEYS[1]}).status_code == 200
    wrong = openai.OpenAI(base_url=server.openai_base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.beta.threads.create()
    right = openai.OpenAI(base_url=server.openai_base_url, api_key=KEYS[0], max_retries=0)
    assert right.beta.threads.create().object == "thread"


def test_beta_header_and_api_version(http: httpx.Client) -> None:
    err = error_of(http.post("/v1/threads", headers={"OpenAI-Beta": ""}), 400)
    assert err["code"] == "invalid_beta"
    error_of(http.post("/v1/threads", headers={"OpenAI-Beta": "assistants=v1"}), 400)
    err = error_of(http.post("/api/projects/p/threads"), 400)
    assert err["param"] == "api-version" and err["code"] == "MissingApiVersionParameter"
    err = error_of(http.post("/api/projects/p/threads", params={"api-version": "2025-05-01"}), 400)
    assert err["code"] == "UnsupportedApiVersionValue"
    assert http.post("/api/projects/p/threads", params={"api-version": "v1"}).status_code == 200
    # chat completions needs no beta header
    r = http.post(
        "/v1/chat/completions",
        headers={"OpenAI-Beta": ""},
        json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
    )
    assert r.status_code == 200


def test_unknown_ids_are_404(http: httpx.Client) -> None:
    assistant = http.post("/v1/assistants", json={"model": "m"}).json()
    thread = http.post("/v1/threads", json={}).json()
    t = thread["id"]
    for path in (
        "/v1/assistants/asst_nope",
        "/v1/threads/thread_nope",
        "/v1/threads/thread_nope/messages",
        f"/v1/threads/{t}/messages/msg_nope",
        f"/v1/threads/{t}/runs/run_nope",
        f"/v1/threads/{t}/runs/run_nope/steps",
        "/v1/no/such/route",
        "/api/projects/p/threads/thread_nope?api-version=v1",
    ):
        error_of(http.get(path), 404)
    error_of(http.delete("/v1/threads/thread_nope"), 404)
    error_of(http.delete("/v1/assistants/asst_nope"), 404)
    err = error_of(http.post(f"/v1/threads/{t}/runs", json={"assistant_id": "asst_nope"}), 404)
    assert err["param"] == "assistant_id"
    error_of(http.post("/v1/threads/thread_nope/runs", json={"assistant_id": assistant["id"]}), 404)
    error_of(http.get("/v1/threads"), 405)  # listing threads is Foundry-only


def test_malformed_and_invalid_bodies_are_400(http: httpx.Client) -> None:
    t = http.post("/v1/threads", json={}).json()["id"]
    err = error_of(http.post(f"/v1/threads/{t}/messages", content=b'{"role": "user",'), 400)
    assert err["code"] == "invalid_json"
    error_of(http.post(f"/v1/threads/{t}/messages", content=b"[1, 2]"), 400)
    err = error_of(http.post(f"/v1/threads/{t}/messages", json={"role": 5, "content": "x"}), 400)
    assert err["param"] == "role"
    err = error_of(http.post(f"/v1/threads/{t}/messages", json={"content": "x"}), 400)
    assert err["param"] == "role"
    error_of(http.post(f"/v1/threads/{t}/messages", json={"role": "system", "content": "x"}), 400)
    error_of(
        http.post(
            f"/v1/threads/{t}/messages",
            json={"role": "user", "content": [{"type": "audio", "audio": "x"}]},
        ),
        400,
    )
    err = error_of(
        http.post("/v1/assistants", json={"model": "m", "tools": [{"type": "code_interpreter"}]}),
        400,
    )
    assert "code_interpreter" in err["message"]
    many = {f"k{i}": "v" for i in range(17)}
    error_of(http.post("/v1/threads", json={"metadata": many}), 400)
    error_of(http.get(f"/v1/threads/{t}/messages", params={"limit": 0}), 400)
    error_of(http.get(f"/v1/threads/{t}/messages", params={"limit": 101}), 400)
    err = error_of(http.get(f"/v1/threads/{t}/messages", params={"order": "sideways"}), 400)
    assert err["param"] == "order"
    err = error_of(http.get(f"/v1/threads/{t}/messages", params={"after": "msg_nope"}), 400)
    assert err["param"] == "after"
    error_of(http.post("/v1/chat/completions", json={"model": "m", "messages": []}), 400)
    error_of(
        http.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "robot", "content": "x"}]},
        ),
        400,
    )


def test_oversized_bodies_are_413(http: httpx.Client) -> None:
    t = http.post("/v1/threads", json={}).json()["id"]
    big = {"role": "user", "content": "x" * 5000}
    err = error_of(http.post(f"/v1/threads/{t}/messages", json=big), 413)
    assert err["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no content-length: counted while read
        yield b'{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    error_of(http.post(f"/v1/threads/{t}/messages", content=chunks()), 413)
    assert http.get(f"/v1/threads/{t}/messages").json()["data"] == []


def test_concurrent_run_and_message_during_run_are_400(http: httpx.Client) -> None:
    a = http.post("/v1/assistants", json={"model": "m"}).json()
    t = http.post("/v1/threads", json={}).json()["id"]
    http.post(f"/v1/threads/{t}/messages", json={"role": "user", "content": "slow please"})
    first = http.post(f"/v1/threads/{t}/runs", json={"assistant_id": a["id"]}).json()
    err = error_of(http.post(f"/v1/threads/{t}/runs", json={"assistant_id": a["id"]}), 400)
    assert err["code"] == "thread_locked" and first["id"] in err["message"]
    err = error_of(
        http.post(f"/v1/threads/{t}/messages", json={"role": "user", "content": "x"}), 400
    )
    assert err["code"] == "thread_locked"
    # the model call is in flight: cancel answers cancelling, then the run ends cancelled
    time.sleep(0.1)
    cancelling = http.post(f"/v1/threads/{t}/runs/{first['id']}/cancel").json()
    assert cancelling["status"] == "cancelling"
    deadline = time.monotonic() + 5
    while (run := http.get(f"/v1/threads/{t}/runs/{first['id']}").json())["status"] != "cancelled":
        assert time.monotonic() < deadline, run
        time.sleep(0.02)
    assert run["cancelled_at"] is not None
    # the answer of the cancelled call was dropped; the thread is free again
    assert [m["role"] for m in http.get(f"/v1/threads/{t}/messages").json()["data"]] == ["user"]
    assert (
        http.post(f"/v1/threads/{t}/messages", json={"role": "user", "content": "x"}).status_code
        == 200
    )


def test_model_failures(http: httpx.Client) -> None:
    err = error_of(
        http.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "rate me"}]},
        ),
        429,
    )
    assert err["code"] == "rate_limit_exceeded"
    err = error_of(
        http.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "boom"}]},
        ),
        500,
    )
    assert err["type"] == "server_error"


def test_failed_run_reports_last_error(server: RunningServer) -> None:
    client = openai.OpenAI(
        base_url=server.openai_base_url,
        api_key=KEYS[0],
        max_retries=0,
        _strict_response_validation=True,
    )
    a = client.beta.assistants.create(model="m")
    run = client.beta.threads.create_and_run_poll(
        assistant_id=a.id,
        thread={"messages": [{"role": "user", "content": "boom"}]},
        poll_interval_ms=20,
    )
    assert run.status == "failed"
    assert run.last_error is not None and run.last_error.code == "server_error"
    assert "exploded" in run.last_error.message
    run = client.beta.threads.create_and_run_poll(
        assistant_id=a.id,
        thread={"messages": [{"role": "user", "content": "rate"}]},
        poll_interval_ms=20,
    )
    assert run.status == "failed" and run.last_error is not None
    assert run.last_error.code == "rate_limit_exceeded"


def test_requires_action_timeout_expires_the_run() -> None:
    tool = {"type": "function", "function": {"name": "lookup"}}
    with (
        running_server({"store": "memory://"}, requires_action_timeout=1) as s,
        httpx.Client(base_url=s.openai_base_url, headers=BETA) as c,
    ):
        a = c.post("/assistants", json={"model": "m", "tools": [tool]}).json()
        run = c.post(
            "/threads/runs",
            json={
                "assistant_id": a["id"],
                "thread": {"messages": [{"role": "user", "content": "lookup x"}]},
            },
        ).json()
        path = f"/threads/{run['thread_id']}/runs/{run['id']}"
        deadline = time.monotonic() + 10
        while (got := c.get(path).json())["status"] != "expired":
            assert got["status"] in ("queued", "in_progress", "requires_action"), got
            assert time.monotonic() < deadline, got
            time.sleep(0.1)
        assert got["required_action"] is None and got["expires_at"] is not None
        steps = c.get(f"{path}/steps").json()["data"]
        assert [st["status"] for st in steps] == ["expired"]
        err = error_of(
            c.post(
                f"{path}/submit_tool_outputs",
                json={"tool_outputs": [{"tool_call_id": "x", "output": "late"}]},
            ),
            400,
        )
        assert "expired" in err["message"]
