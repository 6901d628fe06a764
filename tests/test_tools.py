"""Function tools: ``function_tool`` schemas, and tool-call flows through ``thread.run``."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import jsonschema  # type: ignore[import-untyped]
import msgspec
import pytest

import threadkit
from threadkit import Agent, FunctionRegistry, function_tool
from threadkit._local import LocalBackend, LocalThread
from threadkit.errors import ValidationError
from threadkit.models import ChatRequest, ChatResponse
from threadkit.stores.memory import MemoryStore
from threadkit.testing import ScriptedModel
from threadkit.types import (
    FunctionCall,
    FunctionTool,
    RunStatus,
    TextContent,
    ToolCall,
    ToolCallContent,
    ToolCallsDetails,
    ToolOutput,
)

# --------------------------------------------------------------------------- schemas


class Point(msgspec.Struct):
    x: int
    y: int = 0


@dataclasses.dataclass
class Box:
    width: float
    label: str | None = None


class Opaque:
    """A result msgspec cannot encode: the tool output falls back to ``str()``."""

    def __str__(self) -> str:
        return "<opaque thing>"


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


def get_weather(
    city: str,
    units: Literal["celsius", "fahrenheit"] = "celsius",
    days: int = 1,
) -> str:
    """Get the weather forecast for a city.

    Uses the national service.

    Args:
        city: the city name, e.g. "Paris",
            spelled in English.
        units (str): temperature units.

    Returns:
        A short forecast.

    Raises:
        KeyError: unknown city.
    """
    return f"{city}: sunny ({units}, {days} days)"


def draw(point: Point, box: Box, color: Color = Color.RED, tags: list[str] | None = None) -> str:
    """Draw a point in a box."""
    return f"{point.x},{point.y} in {box.width} {color.value} {tags}"


def parameters(fn: Any, **kw: Any) -> dict[str, Any]:
    return function_tool(fn, **kw).function.parameters


def test_required_and_optional_parameters_with_docstring_descriptions() -> None:
    tool = function_tool(get_weather)
    assert isinstance(tool, FunctionTool)
    fd = tool.function
    assert fd.name == "get_weather"
    assert fd.description == "Get the weather forecast for a city.\n\nUses the national service."
    p = fd.parameters
    assert p["type"] == "object"
    assert p["required"] == ["city"]
    assert p["additionalProperties"] is False
    assert set(p["properties"]) == {"city", "units", "days"}
    assert p["properties"]["city"]["type"] == "string"
    assert (
        p["properties"]["city"]["description"] == 'the city name, e.g. "Paris", spelled in English.'
    )
    assert p["properties"]["units"]["enum"] == ["celsius", "fahrenheit"]
    assert p["properties"]["units"]["default"] == "celsius"
    assert p["properties"]["units"]["description"] == "temperature units."
    assert p["properties"]["days"] == {"type": "integer", "default": 1}
    jsonschema.Draft202012Validator.check_schema(p)


def test_nested_struct_dataclass_and_enum_schemas_validate_real_arguments() -> None:
    p = parameters(draw)
    assert p["required"] == ["point", "box"]
    assert set(p["$defs"]) >= {"Point", "Box", "Color"}
    assert p["$defs"]["Point"]["required"] == ["x"]
    assert p["$defs"]["Box"]["properties"]["width"]["type"] == "number"
    assert sorted(p["$defs"]["Color"]["enum"]) == ["blue", "red"]
    validator = jsonschema.Draft202012Validator(p)
    good = {"point": {"x": 1}, "box": {"width": 2.5, "label": "b"}, "color": "blue", "tags": ["t"]}
    assert list(validator.iter_errors(good)) == []
    for bad in (
        {"box": {"width": 1}},  # missing point
        {"point": {"x": "one"}, "box": {"width": 1}},  # wrong nested type
        {"point": {"x": 1}, "box": {"width": 1}, "color": "green"},  # not an enum value
        {"point": {"x": 1}, "box": {"width": 1}, "extra": 1},  # additionalProperties
    ):
        assert list(validator.iter_errors(bad)), bad


def test_no_parameters_gives_an_empty_object_schema() -> None:
    def ping() -> str:
        return "pong"

    p = parameters(ping)
    assert p == {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
    assert function_tool(ping).function.description is None


def test_name_description_and_strict_overrides() -> None:
    tool = function_tool(get_weather, name="weather-v2", description="Weather.", strict=True)
    assert tool.function.name == "weather-v2"
    assert tool.function.description == "Weather."
    assert tool.function.strict is True
    assert function_tool(get_weather).function.strict is None


@pytest.mark.parametrize("name", ["has space", "x" * 65, "dots.are.bad", "ünicode"])
def test_bad_tool_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        function_tool(get_weather, name=name)


def test_lambda_name_is_refused_but_an_explicit_name_works() -> None:
    fn = lambda x: x  # noqa: E731
    with pytest.raises(ValidationError):
        function_tool(fn)
    assert function_tool(fn, name="identity").function.parameters["required"] == ["x"]
    assert function_tool(get_weather, name="x" * 64).function.name == "x" * 64


def test_star_args_kwargs_and_positional_only_are_refused() -> None:
    def star(*args: int) -> None: ...

    def kw(**kwargs: int) -> None: ...

    def posonly(a: int, /) -> None: ...

    for fn in (star, kw, posonly):
        with pytest.raises(ValidationError):
            function_tool(fn)


def test_unresolvable_hints_are_refused() -> None:
    def broken(a: NoSuchType) -> None:  # type: ignore[name-defined]  # noqa: F821
        ...

    with pytest.raises(ValidationError):
        function_tool(broken)


def test_registry_refuses_two_functions_with_one_name() -> None:
    def a() -> None: ...

    with pytest.raises(ValidationError):
        FunctionRegistry([a, a])
    reg = FunctionRegistry({"first": a, "second": a})
    assert [t.function.name for t in reg.tools] == ["first", "second"]
    assert "first" in reg and "a" not in reg and len(reg) == 2


async def test_registry_execute_decodes_arguments_and_encodes_results() -> None:
    def describe(point: Point, color: Color = Color.BLUE) -> dict[str, Any]:
        assert isinstance(point, Point) and isinstance(color, Color)
        return {"x": point.x, "y": point.y, "color": color.value}

    def opaque() -> Opaque:
        return Opaque()

    def struct_out() -> Point:
        return Point(x=3, y=4)

    reg = FunctionRegistry([describe, opaque, struct_out])

    def tc(name: str, args: str, cid: str = "c1") -> ToolCall:
        return ToolCall(id=cid, function=FunctionCall(name=name, arguments=args))

    out = await reg.execute(tc("describe", '{"point": {"x": 1}}'))
    assert out.tool_call_id == "c1"
    assert json.loads(out.output) == {"x": 1, "y": 0, "color": "blue"}
    assert (await reg.execute(tc("opaque", ""))).output == "<opaque thing>"
    assert json.loads((await reg.execute(tc("struct_out", "{}"))).output) == {"x": 3, "y": 4}
    for args, why in (
        ("{not json", "not JSON"),
        ('{"point": {"x": "one"}}', "invalid arguments"),
        ("{}", "invalid arguments"),  # a required argument is missing
        ('{"point": {"x": 1}, "extra": 2}', "invalid arguments"),
        ('{"point": {"x": 1}, "color": "green"}', "invalid arguments"),
    ):
        res = await reg.execute(tc("describe", args))
        assert why in json.loads(res.output)["error"], args
    with pytest.raises(KeyError):
        await reg.execute(tc("nope", "{}"))


# --------------------------------------------------------------------------- flows through run


@pytest.fixture
async def make_thread() -> AsyncIterator[Any]:
    backends: list[LocalBackend] = []

    async def factory(model: ScriptedModel, text: str = "go", **kw: Any) -> LocalThread:
        backend = LocalBackend(MemoryStore(), model, **kw)
        backends.append(backend)
        thread = await backend.create_thread()
        await thread.add_message("user", text)
        return thread

    yield factory
    for b in backends:
        await b.close()


def calls(*specs: tuple[str, str, str]) -> list[Any]:
    return [ToolCallContent(id=cid, name=name, arguments=args) for cid, name, args in specs]


async def history(thread: LocalThread) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    async for m in thread.messages():
        if m.tool_calls:
            out.append((m.role, "calls " + ",".join(c.name for c in m.tool_calls)))
        elif m.tool_results:
            out.append((m.role, ";".join(r.output for r in m.tool_results)))
        else:
            out.append((m.role, m.text))
    return out


async def test_sync_function_is_called_and_the_run_completes(make_thread: Any) -> None:
    seen: list[tuple[int, int]] = []

    def add(a: int, b: int) -> int:
        """Add two integers."""
        seen.append((a, b))
        return a + b

    model = ScriptedModel(replies=[calls(("call_1", "add", '{"a": 2, "b": 40}'))])
    thread = await make_thread(model)
    run = await thread.run(Agent(instructions="Use tools."), functions=[add])
    assert run.status is RunStatus.COMPLETED
    assert seen == [(2, 40)]
    # the model was offered the tool, with its schema
    (tool,) = model.requests[0].tools
    assert tool.function.name == "add" and tool.function.parameters["required"] == ["a", "b"]
    assert await history(thread) == [
        ("user", "go"),
        ("assistant", "calls add"),
        ("tool", "42"),
        ("assistant", "add returned 42."),
    ]
    # the run step records the call with its output
    steps = [s async for s in thread.run_steps(run.id)]
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    assert isinstance(steps[0].step_details, ToolCallsDetails)
    assert steps[0].step_details.tool_calls[0].function.output == "42"


async def test_async_function_and_default_rules_calculator(make_thread: Any) -> None:
    async def calculator(expression: str) -> str:
        """Evaluate an arithmetic expression.

        Args:
            expression: e.g. "12 * 7".
        """
        await asyncio.sleep(0)
        a, op, b = expression.split()
        assert op == "*"
        return str(int(a) * int(b))

    thread = await make_thread(ScriptedModel(), "What is 12 * 7?")
    run = await thread.run(functions=[calculator])
    assert run.status is RunStatus.COMPLETED
    assert (await history(thread))[-2:] == [
        ("tool", "84"),
        ("assistant", "calculator returned 84."),
    ]


async def test_parallel_calls_run_concurrently(make_thread: Any) -> None:
    a_started, b_started = asyncio.Event(), asyncio.Event()

    async def left() -> str:
        a_started.set()
        # only returns if ``right`` runs at the same time
        await asyncio.wait_for(b_started.wait(), 5)
        return "L"

    async def right() -> str:
        b_started.set()
        await asyncio.wait_for(a_started.wait(), 5)
        return "R"

    model = ScriptedModel(replies=[calls(("c_l", "left", "{}"), ("c_r", "right", "{}"))])
    thread = await make_thread(model)
    run = await asyncio.wait_for(thread.run(functions=[left, right]), 20)
    assert run.status is RunStatus.COMPLETED
    h = await history(thread)
    assert h[1:4] == [("assistant", "calls left,right"), ("tool", "L"), ("tool", "R")]


async def test_a_raising_function_becomes_an_error_output(make_thread: Any) -> None:
    def explode(reason: str) -> str:
        raise RuntimeError(f"boom: {reason}")

    model = ScriptedModel(replies=[calls(("c1", "explode", '{"reason": "disk"}'))])
    thread = await make_thread(model)
    run = await thread.run(functions=[explode])
    assert run.status is RunStatus.COMPLETED
    result = (await history(thread))[2]
    assert result[0] == "tool"
    assert json.loads(result[1]) == {"error": "RuntimeError: boom: disk"}
    # the model saw the error output
    assert model.last_context[-1].tool_results[0].output == result[1]


@pytest.mark.parametrize(
    ("args", "why"),
    [("{oops", "not JSON"), ('{"n": "seven"}', "invalid arguments"), ("{}", "invalid arguments")],
)
async def test_bad_arguments_become_error_outputs(make_thread: Any, args: str, why: str) -> None:
    called = []

    def square(n: int) -> int:
        called.append(n)
        return n * n

    thread = await make_thread(ScriptedModel(replies=[calls(("c1", "square", args))]))
    run = await thread.run(functions=[square])
    assert run.status is RunStatus.COMPLETED
    assert called == []
    assert why in json.loads((await history(thread))[2][1])["error"]


async def test_unregistered_function_stops_at_requires_action(make_thread: Any) -> None:
    called = []

    def known() -> str:
        called.append(1)
        return "k"

    model = ScriptedModel(replies=[calls(("c1", "known", "{}"), ("c2", "elsewhere", "{}"))])
    thread = await make_thread(model)
    run = await thread.run(functions=[known])
    assert run.status is RunStatus.REQUIRES_ACTION
    assert run.required_action is not None
    assert [c.function.name for c in run.required_action.submit_tool_outputs.tool_calls] == [
        "known",
        "elsewhere",
    ]
    assert called == []  # nothing is executed when the caller must answer anyway
    await thread.submit_tool_outputs(
        run.id,
        [ToolOutput(tool_call_id="c1", output="k1"), ToolOutput(tool_call_id="c2", output="e2")],
    )
    done = await thread.wait_run(run.id, timeout=10)
    assert done.status is RunStatus.COMPLETED
    assert (await history(thread))[2:4] == [("tool", "k1"), ("tool", "e2")]


async def test_run_without_functions_returns_requires_action(make_thread: Any) -> None:
    model = ScriptedModel(replies=[calls(("c1", "lookup", "{}"))])
    thread = await make_thread(model)
    run = await thread.run()
    assert run.status is RunStatus.REQUIRES_ACTION


async def test_several_tool_rounds_then_answer(make_thread: Any) -> None:
    counter = {"n": 0}

    def bump() -> int:
        counter["n"] += 1
        return counter["n"]

    model = ScriptedModel(
        replies=[
            calls(("c1", "bump", "{}")),
            calls(("c2", "bump", "{}"), ("c3", "bump", "{}")),
            "finished",
        ]
    )
    thread = await make_thread(model)
    run = await thread.run(functions=[bump])
    assert run.status is RunStatus.COMPLETED
    assert counter["n"] == 3
    assert [r for r, _ in await history(thread)] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]
    assert len(model.requests) == 3


async def test_agent_tool_of_the_same_name_is_not_duplicated(make_thread: Any) -> None:
    def lookup(q: str) -> str:
        return q

    mine = FunctionTool(function=function_tool(lookup, description="Agent's own.").function)
    model = ScriptedModel(replies=["no tools needed"])
    thread = await make_thread(model)
    await thread.run(Agent(tools=[mine]), functions=[lookup])
    (tool,) = model.requests[0].tools
    assert tool.function.description == "Agent's own."


async def test_runaway_tool_loop_ends_incomplete(make_thread: Any) -> None:
    n = 0

    def fn(request: ChatRequest) -> list[Any]:
        nonlocal n
        n += 1
        return calls((f"c{n}", "again", "{}"))

    def again() -> str:
        return "more"

    model = ScriptedModel(fn)
    thread = await make_thread(model, max_model_calls=4)
    run = await asyncio.wait_for(thread.run(functions=[again]), 30)
    assert run.status is RunStatus.INCOMPLETE
    assert run.incomplete_details is not None
    assert run.incomplete_details.reason == "max_model_calls"
    assert len(model.requests) == 4


async def test_text_with_tool_calls_is_kept_before_the_calls(make_thread: Any) -> None:
    def noop() -> str:
        return "ok"

    model = ScriptedModel(
        replies=[
            ChatResponse(
                content=[TextContent(text="Checking..."), *calls(("c1", "noop", "{}"))],
                finish_reason="tool_calls",
            ),
            "done",
        ]
    )
    thread = await make_thread(model)
    await thread.run(functions=[noop])
    msgs = [m async for m in thread.messages()]
    assert isinstance(msgs[1].content[0], TextContent)
    assert msgs[1].text == "Checking..." and [c.id for c in msgs[1].tool_calls] == ["c1"]


def test_unresolvable_return_annotation_is_ignored() -> None:
    namespace: dict[str, object] = {}
    exec(
        "def lookup(city: str) -> 'NotImportedHere':\n"
        "    '''Look a city up.\n\n    Args:\n        city: the name.\n    '''\n"
        "    return city\n",
        namespace,
    )
    tool = threadkit.function_tool(namespace["lookup"])  # type: ignore[arg-type]
    assert tool.function.parameters["required"] == ["city"]
    assert tool.function.parameters["properties"]["city"]["description"] == "the name."


def test_unresolvable_parameter_annotation_is_refused() -> None:
    namespace: dict[str, object] = {}
    exec("def lookup(city: 'Missing') -> str:\n    return ''\n", namespace)
    with pytest.raises(threadkit.ValidationError, match="type hints"):
        threadkit.function_tool(namespace["lookup"])  # type: ignore[arg-type]
