"""Function tools from plain Python callables.

:func:`function_tool` turns a function into a spec ``FunctionTool`` (name, description from the
docstring, a JSON schema of the parameters from the type hints, via ``msgspec.json.schema``), and
:class:`FunctionRegistry` executes tool calls against those functions, validating the model's JSON
arguments with the same types before the call.

Docstrings are read Google-style: the text before the first section is the description, and an
``Args:`` section gives each parameter's description.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import msgspec

from threadkit.errors import ValidationError
from threadkit.types import FunctionDefinition, FunctionTool, ToolCall, ToolOutput

__all__ = ["FunctionRegistry", "ToolFunction", "function_tool"]

ToolFunction = Callable[..., Any] | Callable[..., Awaitable[Any]]
"""A sync or async callable usable as a function tool."""

_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?):\s*$"
)
_ARG = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _parse_docstring(doc: str | None) -> tuple[str | None, dict[str, str]]:
    if not doc:
        return None, {}
    lines = inspect.cleandoc(doc).splitlines()
    desc: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in lines:
        m = _SECTION.match(line)
        if m:
            section, current = m.group(1), None
            continue
        if section is None:
            desc.append(line)
        elif section in ("Args", "Arguments", "Parameters"):
            am = _ARG.match(line)
            if am and (len(line) - len(line.lstrip())) <= 4:
                current = am.group(1).lstrip("*")
                args[current] = am.group(2).strip()
            elif current and line.strip():
                args[current] = f"{args[current]} {line.strip()}".strip()
    text = "\n".join(desc).strip()
    return (text or None), args


class _Prepared:
    __slots__ = ("args_type", "definition", "fn", "is_async", "param_names")

    def __init__(
        self, fn: ToolFunction, definition: FunctionDefinition, args_type: type[msgspec.Struct]
    ) -> None:
        self.fn = fn
        self.definition = definition
        self.args_type = args_type
        self.is_async = inspect.iscoroutinefunction(fn)
        self.param_names = tuple(args_type.__struct_fields__)


def _parameter_hints(fn: ToolFunction, tool_name: str) -> dict[str, Any]:
    """The resolved type hints of ``fn``'s parameters; the return annotation is not needed, so
    one that cannot be resolved (e.g. imported only under TYPE_CHECKING) is ignored."""
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:
        pass
    raw = dict(getattr(fn, "__annotations__", {}))
    raw.pop("return", None)
    probe = type(
        "_Params", (), {"__annotations__": raw, "__module__": getattr(fn, "__module__", None)}
    )
    try:
        globalns = getattr(fn, "__globals__", None)
        return typing.get_type_hints(probe, globalns=globalns, include_extras=True)
    except Exception as exc:  # unresolvable forward references among the parameters
        raise ValidationError(f"cannot read the type hints of tool {tool_name!r}: {exc}") from exc


def _prepare(
    fn: ToolFunction,
    *,
    name: str | None = None,
    description: str | None = None,
    strict: bool | None = None,
) -> _Prepared:
    tool_name = name or getattr(fn, "__name__", None)
    if not tool_name or not _NAME.match(tool_name):
        raise ValidationError(
            f"tool name {tool_name!r} must be 1-64 characters of letters, digits, _ or -"
        )
    sig = inspect.signature(fn)
    hints = _parameter_hints(fn, tool_name)
    doc_desc, arg_docs = _parse_docstring(inspect.getdoc(fn))
    fields: list[tuple[str, Any, Any] | tuple[str, Any]] = []
    for pname, param in sig.parameters.items():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise ValidationError(f"tool {tool_name!r}: *args/**kwargs cannot be described")
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise ValidationError(f"tool {tool_name!r}: positional-only parameter {pname!r}")
        hint = hints.get(pname, Any)
        meta = msgspec.Meta(description=arg_docs[pname]) if pname in arg_docs else None
        annotated = typing.Annotated[hint, meta] if meta is not None else hint
        if param.default is inspect.Parameter.empty:
            fields.append((pname, annotated))
        else:
            fields.append((pname, annotated, param.default))
    args_type = msgspec.defstruct(
        f"{tool_name}_args", fields, kw_only=True, forbid_unknown_fields=True
    )
    schema = msgspec.json.schema(args_type)
    defs = schema.pop("$defs", {})
    ref = schema.get("$ref", "")
    body = defs.pop(ref.rsplit("/", 1)[-1], schema) if ref else schema
    body.pop("title", None)
    body.setdefault("properties", {})
    body.setdefault("required", [])
    body["additionalProperties"] = False
    if defs:
        body["$defs"] = defs
    definition = FunctionDefinition(
        name=tool_name,
        description=description if description is not None else doc_desc,
        parameters=body,
        strict=strict,
    )
    return _Prepared(fn, definition, args_type)


def function_tool(
    fn: ToolFunction,
    *,
    name: str | None = None,
    description: str | None = None,
    strict: bool | None = None,
) -> FunctionTool:
    """Describe a Python callable as a function tool.

    Args:
        fn: a sync or async function whose parameters all have type hints msgspec understands
            (str, int, float, bool, None, Literal, Enum, list, dict, Struct, dataclass,
            TypedDict...). Parameters with defaults are optional in the schema.
        name: the tool name (default ``fn.__name__``); 1-64 of ``[A-Za-z0-9_-]``.
        description: overrides the docstring's description.
        strict: the spec's ``strict`` flag, passed through.

    Returns:
        A :class:`~threadkit.types.FunctionTool` whose ``parameters`` is a JSON schema object
        (``additionalProperties: false``; argument descriptions from the ``Args:`` section).

    Raises:
        ValidationError: a bad name, ``*args``/``**kwargs``/positional-only parameters, or hints
            that cannot be resolved.
    """
    return FunctionTool(
        function=_prepare(fn, name=name, description=description, strict=strict).definition
    )


_json = msgspec.json.Encoder()


def _to_output(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return _json.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        return str(value)


class FunctionRegistry:
    """The functions a run may execute locally, by tool name.

    Args:
        functions: callables (named by ``__name__``) or a mapping of tool name → callable.

    Raises:
        ValidationError: two functions share a name, or a function cannot be described.
    """

    def __init__(self, functions: Iterable[ToolFunction] | Mapping[str, ToolFunction] = ()) -> None:
        self._tools: dict[str, _Prepared] = {}
        items: Iterable[tuple[str | None, ToolFunction]]
        if isinstance(functions, Mapping):
            items = functions.items()
        else:
            items = ((None, f) for f in functions)
        for tool_name, fn in items:
            prepared = _prepare(fn, name=tool_name)
            if prepared.definition.name in self._tools:
                raise ValidationError(f"two functions are named {prepared.definition.name!r}")
            self._tools[prepared.definition.name] = prepared

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    @property
    def tools(self) -> list[FunctionTool]:
        """The function tools, in registration order."""
        return [FunctionTool(function=p.definition) for p in self._tools.values()]

    def handles(self, calls: Iterable[ToolCall]) -> bool:
        """Whether every call names a registered function."""
        return all(c.function.name in self._tools for c in calls)

    async def execute(self, call: ToolCall) -> ToolOutput:
        """Run one tool call and return its output.

        The arguments are decoded and validated against the function's parameter types. A bad
        argument JSON or an exception raised by the function does not propagate: it becomes an
        output ``{"error": "..."}`` the model can read, as agent frameworks do.

        Raises:
            KeyError: no function of that name is registered (check :meth:`handles` first).
        """
        prepared = self._tools[call.function.name]
        try:
            args = msgspec.json.decode(call.function.arguments or "{}", type=prepared.args_type)
        except msgspec.ValidationError as exc:
            return ToolOutput(tool_call_id=call.id, output=_error(f"invalid arguments: {exc}"))
        except msgspec.DecodeError as exc:
            return ToolOutput(tool_call_id=call.id, output=_error(f"arguments are not JSON: {exc}"))
        kwargs = {n: getattr(args, n) for n in prepared.param_names}
        try:
            result = prepared.fn(**kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            return ToolOutput(tool_call_id=call.id, output=_error(f"{type(exc).__name__}: {exc}"))
        return ToolOutput(tool_call_id=call.id, output=_to_output(result))


def _error(message: str) -> str:
    return _json.encode({"error": message}).decode()
