"""threadkit: one ``AgentThread`` API over every agent-conversation backend.

Local threads (Chat Completions style) live in pluggable message stores (memory, SQLite, Redis,
Postgres) and run on threadkit's run engine; service-managed threads (Foundry Agent Service,
OpenAI Assistants, Responses/Conversations) run on the service. A thread serializes to a snapshot
and resumes in another process; the configuration picks the backend, so application code is the
same everywhere::

    import threadkit

    async with await threadkit.open_backend({"store": "sqlite:///app.db"}) as backend:
        thread = await backend.create_thread()
        await thread.add_message("user", "What is 12 * 7?")
        run = await thread.run(threadkit.Agent(instructions="Be brief."), functions=[calculator])
        async for message in thread.messages():
            print(message.role, message.text)

``threadkit.sync`` offers the same names without ``await``.
"""

from __future__ import annotations

from threadkit._api import open_backend, resume
from threadkit.config import Config, load_config
from threadkit.copy import CopyResult, copy_thread
from threadkit.errors import (
    ActiveRunError,
    AuthenticationError,
    BackendMismatchError,
    ConfigError,
    IncompatibleVersionError,
    InvalidRunStateError,
    MessageNotFoundError,
    MissingExtraError,
    ModelError,
    ModelRateLimitError,
    NotFoundError,
    ObjectNotFoundError,
    OrphanToolResultError,
    RateLimitError,
    RunError,
    RunNotFoundError,
    RunStepNotFoundError,
    RunTimeoutError,
    ServiceError,
    SnapshotError,
    StoreError,
    ThreadkitError,
    ThreadNotFoundError,
    UnsupportedOperation,
    ValidationError,
)
from threadkit.models import ChatDelta, ChatModel, ChatRequest, ChatResponse, StreamingChatModel
from threadkit.registry import open_store, register_backend, register_store
from threadkit.stores.base import MessageStore
from threadkit.thread import AgentThread, PollPolicy, ThreadBackend
from threadkit.tools import FunctionRegistry, function_tool
from threadkit.types import (
    Agent,
    Attachment,
    CodeInterpreterTool,
    FileContent,
    FileSearchTool,
    FunctionCall,
    FunctionDefinition,
    FunctionTool,
    ImageFileContent,
    ImageUrlContent,
    IncompleteDetails,
    LastError,
    Message,
    MessageCreationDetails,
    Page,
    ReasoningContent,
    RequiredAction,
    Run,
    RunStatus,
    RunStep,
    RunStepStatus,
    SubmitToolOutputs,
    TextContent,
    ThreadInfo,
    ToolCall,
    ToolCallContent,
    ToolCallsDetails,
    ToolOutput,
    ToolResultContent,
    TruncationStrategy,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
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
