"""What every handler of ``threadkit serve`` reaches through ``request.app.state.threadkit``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from threadkit.engine import RunEngine
from threadkit.stores.base import MessageStore

__all__ = ["ServerState"]


@dataclass
class ServerState:
    """The running server's store, model and engine, plus its HTTP settings.

    Attributes:
        store: where every object lives (threads, messages, runs, steps, assistants...).
        engine: the run engine over ``store`` and ``model``.
        model: the :class:`~threadkit.models.ChatModel` runs and chat completions call.
        max_body_bytes: the request body limit, in bytes.
        poll_after_ms: the ``openai-poll-after-ms`` value sent with responses, milliseconds.
        extras: room for surfaces added later (Responses, Conversations) to keep their state.
    """

    store: MessageStore
    engine: RunEngine
    model: Any
    max_body_bytes: int
    poll_after_ms: int
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.poll_headers = {"openai-poll-after-ms": str(self.poll_after_ms)}

    @property
    def model_name(self) -> str:
        """The configured model's default id (``"offline"``, ``"gpt-4o-mini"``...)."""
        return str(getattr(self.model, "model_name", "") or "offline")
