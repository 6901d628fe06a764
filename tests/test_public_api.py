"""The pinned public API (httpx ``tests/test_exported_members.py`` style) and the error tree.

Changing what ``threadkit`` exports must change this file too: that is the point.
"""

from __future__ import annotations

import inspect
import re
import types

import pytest

import threadkit
import threadkit.errors
import threadkit.sync
import threadkit.testing

EXPORTED = [
    "ActiveRunError",
    "Agent",
    "AgentThread",
    "Attachment",
    "AuthenticationError",
    "BackendMismatchError",
    "ChatDelta",
    "ChatModel",
    "ChatRequest",
    "ChatResponse",
    "CodeInterpreterTool",
    "Config",
    "ConfigError",
    "CopyResult",
    "FileContent",
    "FileSearchTool",
    "FunctionCall",
    "FunctionDefinition",
    "FunctionRegistry",
    "FunctionTool",
    "ImageFileContent",
    "ImageUrlContent",
    "IncompatibleVersionError",
    "IncompleteDetails",
    "InvalidRunStateError",
    "LastError",
    "Message",
    "MessageCreationDetails",
    "MessageNotFoundError",
    "MessageStore",
    "MissingExtraError",
    "ModelError",
    "ModelRateLimitError",
    "NotFoundError",
    "ObjectNotFoundError",
    "OrphanToolResultError",
    "Page",
    "PollPolicy",
    "RateLimitError",
    "ReasoningContent",
    "RequiredAction",
    "Run",
    "RunError",
    "RunNotFoundError",
    "RunStatus",
    "RunStep",
    "RunStepNotFoundError",
    "RunStepStatus",
    "RunTimeoutError",
    "ServiceError",
    "SnapshotError",
    "StoreError",
    "StreamingChatModel",
    "SubmitToolOutputs",
    "TextContent",
    "ThreadBackend",
    "ThreadInfo",
    "ThreadNotFoundError",
    "ThreadkitError",
    "ToolCall",
    "ToolCallContent",
    "ToolCallsDetails",
    "ToolOutput",
    "ToolResultContent",
    "TruncationStrategy",
    "UnsupportedOperation",
    "Usage",
    "ValidationError",
    "__version__",
    "copy_thread",
    "function_tool",
    "load_config",
    "open_backend",
    "open_store",
    "register_backend",
    "register_store",
    "resume",
]


def test_exported_names_are_pinned() -> None:
    assert threadkit.__all__ == EXPORTED
    assert sorted(threadkit.__all__) == threadkit.__all__


def test_every_exported_name_resolves() -> None:
    for name in threadkit.__all__:
        assert getattr(threadkit, name) is not None, name
    assert re.fullmatch(r"\d+\.\d+\.\d+", threadkit.__version__)


def test_no_public_name_is_left_out_of_all() -> None:
    public = {
        name
        for name, value in vars(threadkit).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # from __future__
    }
    assert public <= set(threadkit.__all__), public - set(threadkit.__all__)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from threadkit import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(threadkit.__all__)


def test_sync_and_testing_exports() -> None:
    assert threadkit.sync.__all__ == ["SyncAgentThread", "SyncBackend", "open_backend", "resume"]
    assert threadkit.testing.__all__ == [
        "ScriptedModel",
        "StoreConformance",
        "ThreadConformance",
        "default_reply",
    ]
    for module in (threadkit.sync, threadkit.testing):
        for name in module.__all__:
            assert getattr(module, name) is not None


# --------------------------------------------------------------------------- the error tree


def error_classes() -> dict[str, type[BaseException]]:
    return {
        name: obj
        for name, obj in vars(threadkit.errors).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == "threadkit.errors"
    }


def test_every_error_derives_from_threadkit_error() -> None:
    classes = error_classes()
    assert len(classes) >= 25
    for name, cls in classes.items():
        assert issubclass(cls, threadkit.ThreadkitError), name
    assert set(classes) == set(threadkit.errors.__all__)
    # and every error is exported at the top level
    for name in classes:
        assert getattr(threadkit, name) is classes[name]


def drawn_tree() -> dict[str, str]:
    """Child → parent, as drawn in the errors module docstring."""
    doc = threadkit.errors.__doc__ or ""
    parents: dict[str, str] = {}
    stack = ["ThreadkitError"]
    for line in doc.splitlines():
        m = re.match(r"^(\s*[│ ]*)[├└]── (\w+)", line)
        if not m:
            continue
        depth = len(m.group(1)) // 4  # 4 columns of indent before the root's children
        del stack[depth:]
        parents[m.group(2)] = stack[-1]
        stack.append(m.group(2))
    return parents


def test_the_docstring_draws_the_real_tree() -> None:
    parents = drawn_tree()
    classes = error_classes()
    assert set(parents) | {"ThreadkitError"} == set(classes)
    for name, parent in parents.items():
        assert classes[name].__bases__[0] is classes[parent], f"{name} should derive from {parent}"


@pytest.mark.parametrize(
    ("name", "also"),
    [
        ("MissingExtraError", ImportError),
        ("NotFoundError", LookupError),
        ("ThreadNotFoundError", LookupError),
        ("ValidationError", ValueError),
        ("OrphanToolResultError", ValueError),
    ],
)
def test_errors_that_are_also_builtin_errors(name: str, also: type[BaseException]) -> None:
    assert issubclass(getattr(threadkit, name), also)


def test_error_attributes() -> None:
    e = threadkit.ConfigError("bad", key="store")
    assert e.key == "store" and "'store'" in str(e)
    assert threadkit.ConfigError("whole").key is None
    a = threadkit.ActiveRunError("thread_1", "run_1")
    assert (a.thread_id, a.run_id) == ("thread_1", "run_1") and "run_1" in str(a)
    i = threadkit.InvalidRunStateError("no", run_id="run_1", status="completed")
    assert (i.run_id, i.status) == ("run_1", "completed")
    v = threadkit.IncompatibleVersionError(3, 1)
    assert (v.found, v.supported) == (3, 1)
    b = threadkit.BackendMismatchError("m", expected="chat", configured="foundry")
    assert (b.expected, b.configured) == ("chat", "foundry")
    o = threadkit.OrphanToolResultError("o", tool_call_id="call_1")
    assert o.tool_call_id == "call_1"
    s = threadkit.ServiceError("s", status_code=500, code="server_error")
    assert (s.status_code, s.code) == (500, "server_error")
    u = threadkit.UnsupportedOperation("responses", "cancel_run", "not possible")
    assert (u.backend, u.operation) == ("responses", "cancel_run")
    assert "responses" in str(u) and "not possible" in str(u)
    m = threadkit.MissingExtraError("redis", "redis")
    assert (m.extra, m.package, m.name) == ("redis", "redis", "redis")
