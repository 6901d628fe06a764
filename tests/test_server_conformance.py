"""Live responses of every implemented operation validated against the official specs.

The specs live in ``../shared/specs`` (next to the repository); without them the module skips.
``openai-openapi.json`` (OpenAPI 3.1) marks nullables the 3.0 way (``nullable: true``) and
``azure-ai-agents-v1.json`` (Swagger 2.0) with ``x-nullable``; both are rewritten to JSON-schema
type unions (``anyOf`` with ``{"type": "null"}`` around a ``$ref``) before validating, as the
specs README says.

One deliberate deviation is declared here rather than hidden: the Foundry flavour ends a list
with ``last_id: null`` (the Azure SDK pager stops only on a falsy ``last_id``), while the Azure
list schemas type ``last_id`` as a plain string; those list schemas get a nullable ``last_id``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")
httpx = pytest.importorskip("httpx")

from referencing.jsonschema import DRAFT4, DRAFT202012  # noqa: E402

from threadkit.testing.server import RunningServer, running_server  # noqa: E402

SPECS = Path(__file__).resolve().parents[1].parent / "shared" / "specs"
if (
    not (SPECS / "openai-openapi.json").is_file()
    or not (SPECS / "azure-ai-agents-v1.json").is_file()
):
    pytest.skip(f"the wire specs are not at {SPECS} (../shared/specs)", allow_module_level=True)

OPENAI_URI = "urn:threadkit:openai-openapi"
AZURE_URI = "urn:threadkit:azure-ai-agents-v1"
BETA = {"OpenAI-Beta": "assistants=v2"}
FOUNDRY = {"api-version": "v1"}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def with_nulls(schema: Any, flag: str) -> Any:
    """Rewrite ``flag: true`` (``nullable`` / ``x-nullable``) into JSON-schema null unions."""
    if isinstance(schema, list):
        return [with_nulls(s, flag) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    wrap = False
    members = out.get("allOf")
    if isinstance(members, list) and any(m == {flag: True} for m in members):
        out["allOf"] = [m for m in members if m != {flag: True}]
        wrap = True
    out = {k: with_nulls(v, flag) for k, v in out.items()}
    if out.get(flag) is True:
        del out[flag]
        if isinstance(out.get("type"), str) and "$ref" not in out:
            out["type"] = [out["type"], "null"]
            if isinstance(out.get("enum"), list) and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            wrap = True
    if wrap:
        return {"anyOf": [out, {"type": "null"}]}
    return out


class Spec:
    """One spec document: rewritten nullables, a registry, and validators by pointer."""

    def __init__(self, path: Path, uri: str, flag: str, draft: Any, cls: Any) -> None:
        self.doc = with_nulls(json.loads(path.read_text()), flag)
        self.uri = uri
        self.cls = cls
        self.registry = referencing.Registry().with_resource(
            uri, referencing.Resource.from_contents(self.doc, default_specification=draft)
        )
        self.checked: set[str] = set()

    def validate(self, instance: Any, pointer: str, label: str) -> None:
        node: Any = self.doc
        for part in pointer.strip("/").split("/"):
            node = node[part.replace("~1", "/")]
        schema = {"$ref": f"{self.uri}#{pointer}"}
        validator = self.cls(schema, registry=self.registry)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        assert not errors, f"{label}: " + "; ".join(
            f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors[:5]
        )
        self.checked.add(label)


@pytest.fixture(scope="module")
def openai_spec() -> Spec:
    return Spec(
        SPECS / "openai-openapi.json",
        OPENAI_URI,
        "nullable",
        DRAFT202012,
        jsonschema.Draft202012Validator,
    )


@pytest.fixture(scope="module")
def azure_spec() -> Spec:
    spec = Spec(
        SPECS / "azure-ai-agents-v1.json",
        AZURE_URI,
        "x-nullable",
        DRAFT4,
        jsonschema.Draft4Validator,
    )
    for methods in spec.doc["paths"].values():  # the declared last_id deviation
        for op in methods.values():
            schema = (
                op.get("responses", {}).get("200", {}).get("schema", {})
                if isinstance(op, dict)
                else {}
            )
            last = schema.get("properties", {}).get("last_id")
            if last is not None and schema["properties"].get("has_more"):
                last["type"] = ["string", "null"]
    spec.registry = referencing.Registry().with_resource(
        AZURE_URI, referencing.Resource.from_contents(spec.doc, default_specification=DRAFT4)
    )
    return spec


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server({"store": "memory://", "model": "offline"}) as s:
        yield s


def _pointer_openai(path: str, method: str) -> str:
    p = path.replace("/", "~1")
    return f"/paths/{p}/{method}/responses/200/content/application~1json/schema"


def _pointer_azure(path: str, method: str) -> str:
    p = path.replace("/", "~1")
    return f"/paths/{p}/{method}/responses/200/schema"


class Driver:
    """Calls the server with raw httpx and validates every JSON answer against the spec."""

    def __init__(self, http: httpx.Client, spec: Spec, flavour: str) -> None:
        self.http = http
        self.spec = spec
        self.flavour = flavour

    def __call__(
        self, method: str, spec_path: str, path: str | None = None, **kw: Any
    ) -> dict[str, Any]:
        if self.flavour == "foundry":
            kw["params"] = {**FOUNDRY, **kw.get("params", {})}
        r = self.http.request(method.upper(), path or spec_path, **kw)
        assert r.status_code == 200, (method, path or spec_path, r.status_code, r.text)
        body = r.json()
        pointer = (
            _pointer_openai(spec_path, method)
            if self.flavour == "openai"
            else _pointer_azure(spec_path, method)
        )
        self.spec.validate(body, pointer, f"{method.upper()} {spec_path}")
        return body


def _exercise(d: Driver, run_and_wait: Any) -> None:
    """Every Assistants operation once, with at least one non-empty list each."""
    a = d("post", "/assistants", json={"model": "m", "name": "n", "tools": [WEATHER_TOOL]})
    d("get", "/assistants", params={"limit": 1})
    d(
        "get",
        "/assistants/{assistant_id}" if d.flavour == "openai" else "/assistants/{assistantId}",
        f"/assistants/{a['id']}",
    )
    upd = "/assistants/{assistant_id}" if d.flavour == "openai" else "/assistants/{assistantId}"
    d("post", upd, f"/assistants/{a['id']}", json={"instructions": "x", "metadata": {"k": "v"}})
    tid_key = "{thread_id}" if d.flavour == "openai" else "{threadId}"
    mid_key = "{message_id}" if d.flavour == "openai" else "{messageId}"
    rid_key = "{run_id}" if d.flavour == "openai" else "{runId}"
    sid_key = "{step_id}" if d.flavour == "openai" else "{stepId}"
    t = d("post", "/threads", json={"messages": [{"role": "user", "content": "get_weather Oslo"}]})
    tp = f"/threads/{t['id']}"
    d("get", f"/threads/{tid_key}", tp)
    d("post", f"/threads/{tid_key}", tp, json={"metadata": {"a": "b"}})
    if d.flavour == "foundry":
        d("get", "/threads", params={"limit": 2})
    m = d(
        "post",
        f"/threads/{tid_key}/messages",
        f"{tp}/messages",
        json={"role": "user", "content": [{"type": "text", "text": "call get_weather"}]},
    )
    d("get", f"/threads/{tid_key}/messages", f"{tp}/messages", params={"limit": 1})
    d("get", f"/threads/{tid_key}/messages/{mid_key}", f"{tp}/messages/{m['id']}")
    d(
        "post",
        f"/threads/{tid_key}/messages/{mid_key}",
        f"{tp}/messages/{m['id']}",
        json={"metadata": {"x": "y"}},
    )
    run = d("post", f"/threads/{tid_key}/runs", f"{tp}/runs", json={"assistant_id": a["id"]})
    run = run_and_wait(tp, run["id"], "requires_action")
    d("get", f"/threads/{tid_key}/runs/{rid_key}", f"{tp}/runs/{run['id']}")
    call = run["required_action"]["submit_tool_outputs"]["tool_calls"][0]
    d(
        "post",
        f"/threads/{tid_key}/runs/{rid_key}/submit_tool_outputs",
        f"{tp}/runs/{run['id']}/submit_tool_outputs",
        json={"tool_outputs": [{"tool_call_id": call["id"], "output": "rain"}]},
    )
    run = run_and_wait(tp, run["id"], "completed")
    d("get", f"/threads/{tid_key}/runs/{rid_key}", f"{tp}/runs/{run['id']}")
    d(
        "post",
        f"/threads/{tid_key}/runs/{rid_key}",
        f"{tp}/runs/{run['id']}",
        json={"metadata": {"r": "1"}},
    )
    d("get", f"/threads/{tid_key}/runs", f"{tp}/runs")
    steps = d("get", f"/threads/{tid_key}/runs/{rid_key}/steps", f"{tp}/runs/{run['id']}/steps")
    for step in steps["data"]:
        d(
            "get",
            f"/threads/{tid_key}/runs/{rid_key}/steps/{sid_key}",
            f"{tp}/runs/{run['id']}/steps/{step['id']}",
        )
    d("get", f"/threads/{tid_key}/messages", f"{tp}/messages", params={"limit": 100})
    # a run to cancel (waiting for tool outputs), then create-thread-and-run
    d(
        "post",
        f"/threads/{tid_key}/messages",
        f"{tp}/messages",
        json={"role": "user", "content": "get_weather again"},
    )
    run2 = d("post", f"/threads/{tid_key}/runs", f"{tp}/runs", json={"assistant_id": a["id"]})
    run_and_wait(tp, run2["id"], "requires_action")
    d("post", f"/threads/{tid_key}/runs/{rid_key}/cancel", f"{tp}/runs/{run2['id']}/cancel")
    tr = d(
        "post",
        "/threads/runs",
        json={"assistant_id": a["id"], "thread": {"messages": [{"role": "user", "content": "hi"}]}},
    )
    run_and_wait(f"/threads/{tr['thread_id']}", tr["id"], "completed")
    if d.flavour == "openai":
        d("delete", f"/threads/{tid_key}/messages/{mid_key}", f"{tp}/messages/{m['id']}")
    d("delete", f"/threads/{tid_key}", tp)
    d("delete", upd, f"/assistants/{a['id']}")


def _waiter(http: httpx.Client, params: dict[str, str]) -> Any:
    import time

    def wait(thread_path: str, run_id: str, status: str) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while True:
            run = http.get(f"{thread_path}/runs/{run_id}", params=params).json()
            if run["status"] == status:
                return run  # type: ignore[no-any-return]
            assert time.monotonic() < deadline, run
            time.sleep(0.01)

    return wait


OPENAI_ASSISTANT_OPS = {
    ("post", "/assistants"), ("get", "/assistants"), ("get", "/assistants/{assistant_id}"),
    ("post", "/assistants/{assistant_id}"), ("delete", "/assistants/{assistant_id}"),
    ("post", "/threads"), ("post", "/threads/runs"), ("get", "/threads/{thread_id}"),
    ("post", "/threads/{thread_id}"), ("delete", "/threads/{thread_id}"),
    ("post", "/threads/{thread_id}/messages"), ("get", "/threads/{thread_id}/messages"),
    ("get", "/threads/{thread_id}/messages/{message_id}"),
    ("post", "/threads/{thread_id}/messages/{message_id}"),
    ("delete", "/threads/{thread_id}/messages/{message_id}"),
    ("post", "/threads/{thread_id}/runs"), ("get", "/threads/{thread_id}/runs"),
    ("get", "/threads/{thread_id}/runs/{run_id}"), ("post", "/threads/{thread_id}/runs/{run_id}"),
    ("post", "/threads/{thread_id}/runs/{run_id}/cancel"),
    ("post", "/threads/{thread_id}/runs/{run_id}/submit_tool_outputs"),
    ("get", "/threads/{thread_id}/runs/{run_id}/steps"),
    ("get", "/threads/{thread_id}/runs/{run_id}/steps/{step_id}"),
}  # fmt: skip


def test_openai_assistants_operations_match_the_spec(
    server: RunningServer, openai_spec: Spec
) -> None:
    with httpx.Client(base_url=server.openai_base_url, headers=BETA) as http:
        _exercise(Driver(http, openai_spec, "openai"), _waiter(http, {}))
    done = {tuple(label.lower().split(" ", 1)) for label in openai_spec.checked}
    assert done >= OPENAI_ASSISTANT_OPS
    assert all(method in openai_spec.doc["paths"][path] for method, path in OPENAI_ASSISTANT_OPS)


def test_foundry_operations_match_the_spec(server: RunningServer, azure_spec: Spec) -> None:
    with httpx.Client(base_url=server.foundry_endpoint("p")) as http:
        _exercise(Driver(http, azure_spec, "foundry"), _waiter(http, FOUNDRY))
    implemented = {
        (m, p)
        for p, methods in azure_spec.doc["paths"].items()
        if p.startswith(("/assistants", "/threads"))
        for m in methods
        if m in ("get", "post", "delete")
    }
    done = {tuple(label.lower().split(" ", 1)) for label in azure_spec.checked}
    assert {(m, p.lower()) for m, p in implemented} <= done


def _sse(text: str) -> list[tuple[str, str]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], lines["data"]))
    return events


def test_stream_events_match_the_spec(server: RunningServer, openai_spec: Spec) -> None:
    with httpx.Client(base_url=server.openai_base_url, headers=BETA) as http:
        a = http.post("/assistants", json={"model": "m", "tools": [WEATHER_TOOL]}).json()
        r = http.post(
            "/threads/runs",
            json={
                "assistant_id": a["id"],
                "stream": True,
                "thread": {"messages": [{"role": "user", "content": "get_weather Rio"}]},
            },
        )
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _sse(r.text)
        assert events[-1] == ("done", "[DONE]")
        run = json.loads(events[-2][1])
        assert events[-2][0] == "thread.run.requires_action"
        call = run["required_action"]["submit_tool_outputs"]["tool_calls"][0]
        r2 = http.post(
            f"/threads/{run['thread_id']}/runs/{run['id']}/submit_tool_outputs",
            json={"stream": True, "tool_outputs": [{"tool_call_id": call["id"], "output": "hot"}]},
        )
        events += _sse(r2.text)
    names = [name for name, _ in events]
    for name in (
        "thread.created",
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.delta",
        "thread.run.requires_action",
        "thread.run.step.completed",
        "thread.message.created",
        "thread.message.in_progress",
        "thread.message.delta",
        "thread.message.completed",
        "thread.run.completed",
    ):
        assert name in names
    for name, data in events:
        if name == "done":
            continue
        openai_spec.validate(
            {"event": name, "data": json.loads(data)},
            "/components/schemas/AssistantStreamEvent",
            f"event {name}",
        )


def test_chat_completions_match_the_spec(server: RunningServer, openai_spec: Spec) -> None:
    with httpx.Client(base_url=server.openai_base_url) as http:
        d = Driver(http, openai_spec, "openai")
        d(
            "post",
            "/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
        d(
            "post",
            "/chat/completions",
            json={
                "model": "m",
                "messages": [{"role": "user", "content": "get_weather"}],
                "tools": [WEATHER_TOOL],
            },
        )
        r = http.post(
            "/chat/completions",
            json={
                "model": "m",
                "stream": True,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": "get_weather now"}],
                "tools": [WEATHER_TOOL],
            },
        )
    lines = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    for line in lines[:-1]:
        openai_spec.validate(
            json.loads(line),
            "/components/schemas/CreateChatCompletionStreamResponse",
            "chat chunk",
        )


def test_error_bodies_match_the_spec(
    server: RunningServer, openai_spec: Spec, azure_spec: Spec
) -> None:
    with httpx.Client(base_url=server.base_url) as http:
        bad = [
            http.get("/v1/threads/thread_nope", headers=BETA),
            http.get("/v1/threads/thread_nope"),
            http.post("/v1/threads", headers=BETA, content=b"{nope"),
            http.post("/v1/chat/completions", json={"model": "m"}),
        ]
        foundry = [
            http.get("/api/projects/p/threads/thread_nope", params=FOUNDRY),
            http.get("/api/projects/p/threads"),
            http.get("/api/projects/p/threads", params={"api-version": "2024-01-01"}),
        ]
    for r in bad:
        assert r.status_code in (400, 404)
        openai_spec.validate(r.json(), "/components/schemas/ErrorResponse", "error")
    for r in foundry:
        assert r.status_code in (400, 404)
        azure_spec.validate(r.json(), "/definitions/ServicePatterns.AgentV1Error", "azure error")
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_nullable_rewrite_is_faithful() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "nullable": True}}}
    out = with_nulls(copy.deepcopy(schema), "nullable")
    assert out["properties"]["a"]["type"] == ["string", "null"]
    ref = with_nulls({"$ref": "#/x", "x-nullable": True}, "x-nullable")
    assert ref == {"anyOf": [{"$ref": "#/x"}, {"type": "null"}]}
    both = with_nulls({"allOf": [{"$ref": "#/x"}, {"nullable": True}]}, "nullable")
    assert both == {"anyOf": [{"allOf": [{"$ref": "#/x"}]}, {"type": "null"}]}
    enum = with_nulls({"type": "string", "enum": ["a"], "nullable": True}, "nullable")
    assert enum["enum"] == ["a", None]
