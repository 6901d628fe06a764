"""Core data types: messages, content parts, runs, run steps, tool calls, agents.

Field names follow the OpenAI Assistants v2 and Azure AI Foundry Agent Service (classic, api-version
``v1``) specs (``../shared/specs``), with two deliberate differences that hold across every backend:

* ``agent_id`` where the specs say ``assistant_id`` (Foundry's own term; the wire layer maps it);
* messages carry ``tool_call`` / ``tool_result`` content parts, so a local (Chat Completions style)
  thread keeps tool calls next to their results. Service backends expose those as run steps.

All types are ``msgspec.Struct`` s. Tagged unions carry their tag in ``type`` (set once per class).
Schema evolution follows msgspec's rules: new fields get defaults, types never change, unknown fields
are ignored when decoding. Timestamps are integer unix seconds (UTC).
"""

from __future__ import annotations

import enum
from typing import Any, Generic, Literal, TypeAlias, TypeVar

import msgspec

__all__ = [
    "Agent",
    "Attachment",
    "CodeInterpreterTool",
    "ContentPart",
    "FileContent",
    "FileSearchTool",
    "FunctionCall",
    "FunctionDefinition",
    "FunctionTool",
    "ImageFileContent",
    "ImageUrlContent",
    "IncompleteDetails",
    "LastError",
    "Message",
    "MessageCreationDetails",
    "Page",
    "ReasoningContent",
    "RequiredAction",
    "Role",
    "Run",
    "RunStatus",
    "RunStep",
    "RunStepStatus",
    "StepDetails",
    "SubmitToolOutputs",
    "TextContent",
    "ThreadInfo",
    "Tool",
    "ToolCall",
    "ToolCallContent",
    "ToolCallsDetails",
    "ToolOutput",
    "ToolResultContent",
    "TruncationStrategy",
    "Usage",
]

Role: TypeAlias = Literal["user", "assistant", "system", "tool"]
"""Who wrote a message. ``tool`` messages carry :class:`ToolResultContent` parts."""


class _Base(msgspec.Struct, kw_only=True, gc=False):
    """Keyword-only struct base: readable construction, stable under field additions.

    ``gc=False``: these structs hold only strings, numbers and containers of them, so they never
    form reference cycles; untracked by the garbage collector, bulk decodes are ~2x faster
    (msgspec ``docs/perf-tips``).
    """


class _Compact(_Base, omit_defaults=True):
    """Base of the bulk data (messages and their parts): fields left at their default are not
    encoded, which keeps stored rows and snapshots small. Decoding restores the defaults."""


class _Value(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """Immutable small value (safe as a field default)."""


# --------------------------------------------------------------------------- content parts


class _Part(_Compact, tag_field="type"):
    """Base of the content-part tagged union."""


class TextContent(_Part, tag="text"):
    """Plain text. ``annotations`` passes through service annotations (citations) unchanged."""

    text: str
    annotations: list[dict[str, Any]] = []


class ImageUrlContent(_Part, tag="image_url"):
    """An image by URL (``https:`` or ``data:``). ``detail`` is ``auto``, ``low`` or ``high``."""

    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImageFileContent(_Part, tag="image_file"):
    """An image uploaded to the service's file store, by file id."""

    file_id: str
    detail: Literal["auto", "low", "high"] | None = None


class FileContent(_Part, tag="file"):
    """A file reference (a document attached to the message), by file id and/or URL."""

    file_id: str | None = None
    filename: str | None = None
    url: str | None = None


class ToolCallContent(_Part, tag="tool_call"):
    """A function call the model made. ``arguments`` is the JSON text the model produced."""

    id: str
    name: str
    arguments: str = "{}"


class ToolResultContent(_Part, tag="tool_result"):
    """The output of a tool call, answering the :class:`ToolCallContent` with ``id == tool_call_id``."""

    tool_call_id: str
    output: str
    is_error: bool = False


class ReasoningContent(_Part, tag="reasoning"):
    """A reasoning item (Responses API), carried as opaque encrypted content where given."""

    id: str | None = None
    encrypted_content: str | None = None
    summary: list[str] = []


ContentPart: TypeAlias = (
    TextContent
    | ImageUrlContent
    | ImageFileContent
    | FileContent
    | ToolCallContent
    | ToolResultContent
    | ReasoningContent
)
"""Any message content part; the ``type`` field tells which."""


class Attachment(_Compact):
    """A file attached to a message for tools (Assistants ``attachments``): id plus tool specs."""

    file_id: str
    tools: list[dict[str, Any]] = []


class Message(_Compact):
    """One message of a thread.

    Attributes:
        id: unique message id (``msg_...``).
        thread_id: the thread it belongs to.
        role: ``user``, ``assistant``, ``system`` or ``tool``.
        content: content parts, in order.
        created_at: unix seconds.
        seq: the per-thread sequence number the store assigned (1, 2, 3...; 0 before it is
            stored). Threads are always ordered by ``seq``, never by timestamp.
        run_id: the run that produced it, for assistant and tool messages.
        agent_id: the agent that produced it.
        attachments: files attached for tools.
        metadata: up to 16 string pairs, as in the specs.
        provider_details: backend-only data kept verbatim (service ids, raw fields).
    """

    id: str
    thread_id: str
    role: Role
    content: list[ContentPart] = []
    created_at: int = 0
    seq: int = 0
    run_id: str | None = None
    agent_id: str | None = None
    attachments: list[Attachment] = []
    metadata: dict[str, str] = {}
    provider_details: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        """All text parts joined with newlines (``""`` when there are none)."""
        return "\n".join(p.text for p in self.content if isinstance(p, TextContent))

    @property
    def tool_calls(self) -> list[ToolCallContent]:
        """The tool-call parts of this message, in order."""
        return [p for p in self.content if isinstance(p, ToolCallContent)]

    @property
    def tool_results(self) -> list[ToolResultContent]:
        """The tool-result parts of this message, in order."""
        return [p for p in self.content if isinstance(p, ToolResultContent)]


# --------------------------------------------------------------------------- tools


class FunctionDefinition(_Base):
    """A function the model may call: name, description and a JSON schema of its parameters."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] = msgspec.field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    strict: bool | None = None


class _Tool(_Base, tag_field="type"):
    """Base of the tool tagged union."""


class FunctionTool(_Tool, tag="function"):
    """A function tool (spec ``AssistantToolsFunction``)."""

    function: FunctionDefinition


class CodeInterpreterTool(_Tool, tag="code_interpreter"):
    """The hosted code interpreter (service backends only)."""


class FileSearchTool(_Tool, tag="file_search"):
    """The hosted file search (service backends only)."""

    file_search: dict[str, Any] | None = None


Tool: TypeAlias = FunctionTool | CodeInterpreterTool | FileSearchTool
"""Any tool definition; the ``type`` field tells which."""


class FunctionCall(_Base):
    """The function part of a :class:`ToolCall`. ``output`` is set once a tool output is known."""

    name: str
    arguments: str = "{}"
    output: str | None = None


class ToolCall(_Base):
    """A tool call of a run (spec ``RunToolCallObject`` / ``RunStepDetailsToolCallsFunctionObject``)."""

    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class ToolOutput(_Base):
    """The answer to one tool call, submitted with ``submit_tool_outputs``."""

    tool_call_id: str
    output: str


class SubmitToolOutputs(_Base):
    """The tool calls a ``requires_action`` run waits on."""

    tool_calls: list[ToolCall]


class RequiredAction(_Base):
    """What a run in ``requires_action`` needs: tool outputs for every listed call."""

    submit_tool_outputs: SubmitToolOutputs
    type: Literal["submit_tool_outputs"] = "submit_tool_outputs"


# --------------------------------------------------------------------------- runs


class RunStatus(enum.StrEnum):
    """Run lifecycle statuses, as in the Assistants v2 and Foundry specs.

    ``queued`` → ``in_progress`` → ``completed`` | ``requires_action`` | ``incomplete`` |
    ``failed``; ``requires_action`` → ``in_progress`` (outputs submitted) | ``expired``;
    any active status → ``cancelling`` → ``cancelled``.
    """

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    REQUIRES_ACTION = "requires_action"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    FAILED = "failed"
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        """True for statuses a run never leaves: cancelled, failed, completed, incomplete, expired."""
        return self in _TERMINAL

    @property
    def is_active(self) -> bool:
        """True for statuses that hold the thread: queued, in_progress, requires_action, cancelling."""
        return self not in _TERMINAL


_TERMINAL = frozenset(
    {
        RunStatus.CANCELLED,
        RunStatus.FAILED,
        RunStatus.COMPLETED,
        RunStatus.INCOMPLETE,
        RunStatus.EXPIRED,
    }
)


class RunStepStatus(enum.StrEnum):
    """Run step statuses, as in the specs."""

    IN_PROGRESS = "in_progress"
    CANCELLED = "cancelled"
    FAILED = "failed"
    COMPLETED = "completed"
    EXPIRED = "expired"


class Usage(_Value, frozen=True):
    """Token usage (tokens, not characters)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class LastError(_Value, frozen=True):
    """Why a run or step failed. ``code`` is ``server_error``, ``rate_limit_exceeded`` or
    ``invalid_prompt`` as in the specs (threadkit adds ``tool_error`` for local tools)."""

    code: str
    message: str


class IncompleteDetails(_Value, frozen=True):
    """Why a run ended ``incomplete``: ``max_completion_tokens`` or ``max_prompt_tokens``."""

    reason: str


class TruncationStrategy(_Value, frozen=True):
    """How the model context is cut from the thread (spec ``TruncationObject``, plus ``none``).

    * ``auto``: the newest messages that fit the token budget (``max_prompt_tokens`` of the
      run, else the model's context window);
    * ``last_messages``: the newest ``last_messages`` messages;
    * ``none``: the whole thread.

    Every strategy keeps a tool call and its results together: a result whose call falls
    outside the window is dropped with it.
    """

    type: Literal["auto", "last_messages", "none"] = "auto"
    last_messages: int | None = None


class Run(_Base):
    """One run of an agent on a thread (spec ``RunObject``; ``agent_id`` = ``assistant_id``).

    Timestamps are unix seconds; ``expires_at`` is when an active run expires.
    """

    id: str
    thread_id: str
    status: RunStatus
    created_at: int
    agent_id: str | None = None
    model: str | None = None
    instructions: str | None = None
    tools: list[Tool] = []
    started_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    cancelled_at: int | None = None
    expires_at: int | None = None
    required_action: RequiredAction | None = None
    last_error: LastError | None = None
    usage: Usage | None = None
    incomplete_details: IncompleteDetails | None = None
    metadata: dict[str, str] = {}
    temperature: float | None = None
    top_p: float | None = None
    max_prompt_tokens: int | None = None
    max_completion_tokens: int | None = None
    truncation_strategy: TruncationStrategy = TruncationStrategy()
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    response_format: str | dict[str, Any] | None = None
    provider_details: dict[str, Any] | None = None


class _StepDetails(_Base, tag_field="type"):
    """Base of the step-details tagged union."""


class MessageCreationDetails(_StepDetails, tag="message_creation"):
    """A step that wrote a message: ``message_creation = {"message_id": ...}``."""

    message_creation: dict[str, str]


class ToolCallsDetails(_StepDetails, tag="tool_calls"):
    """A step that made tool calls; each call's ``function.output`` fills in when answered."""

    tool_calls: list[ToolCall]


StepDetails: TypeAlias = MessageCreationDetails | ToolCallsDetails


class RunStep(_Base):
    """One step of a run (spec ``RunStepObject``): a message creation or a set of tool calls."""

    id: str
    run_id: str
    thread_id: str
    type: Literal["message_creation", "tool_calls"]
    status: RunStepStatus
    step_details: StepDetails
    created_at: int
    agent_id: str | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    cancelled_at: int | None = None
    expired_at: int | None = None
    last_error: LastError | None = None
    usage: Usage | None = None
    metadata: dict[str, str] = {}


# --------------------------------------------------------------------------- agents, registry


class Agent(_Base):
    """An agent: model, instructions and tools (spec ``AssistantObject``).

    ``model`` may be ``None`` to use the backend's configured model.
    """

    name: str | None = None
    model: str | None = None
    instructions: str | None = None
    tools: list[Tool] = []
    description: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    response_format: str | dict[str, Any] | None = None
    metadata: dict[str, str] = {}
    id: str | None = None
    created_at: int | None = None


class ThreadInfo(_Base):
    """A thread's registry entry: ids, times (unix seconds), metadata and message count."""

    id: str
    created_at: int
    updated_at: int
    metadata: dict[str, str] = {}
    message_count: int = 0


T = TypeVar("T")


class Page(_Base, Generic[T]):
    """One page of a cursor-paginated listing.

    Attributes:
        data: the items, in the order that was asked for.
        has_more: whether another page follows in that order.
        first_id: id of ``data[0]`` (``None`` when empty).
        last_id: id of ``data[-1]`` (``None`` when empty); pass it as ``after`` for the next page.
    """

    data: list[T]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None
