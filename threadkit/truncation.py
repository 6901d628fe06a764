"""Building a run's model context from the store: the truncation strategies.

The context is the newest part of the thread that the strategy admits, read from the store a page
at a time from the newest message backwards, so a run reads only the window it needs, never the
whole thread (except under strategy ``none``, which asks for the whole thread).

Whatever the strategy, a tool call is never separated from its result: a result whose call fell
outside the window is dropped, and so is a call whose result is not in the window (a model given a
call without its result answers HTTP 400 on every later turn, openai-agents #4827).
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from threadkit.errors import ValidationError
from threadkit.models import message_tokens
from threadkit.stores.base import MessageStore
from threadkit.types import Message, ToolCallContent, ToolResultContent, TruncationStrategy

__all__ = ["DEFAULT_CONTEXT_WINDOW", "build_context", "keep_tool_pairs"]

DEFAULT_CONTEXT_WINDOW = 128_000
"""Tokens assumed for the ``auto`` strategy when neither the run nor the model names a limit."""

_PAGE = 64


async def build_context(
    store: MessageStore,
    thread_id: str,
    strategy: TruncationStrategy,
    *,
    token_budget: int,
    count_tokens: Callable[[Message], int] = message_tokens,
) -> list[Message]:
    """Read the model context of a thread, oldest first.

    Args:
        store: where the thread lives.
        thread_id: the thread.
        strategy: ``auto`` (newest messages whose token estimate fits ``token_budget``),
            ``last_messages`` (the newest ``strategy.last_messages``, reaching back to the
            tool-call message of results at the window's start) or ``none`` (everything).
        token_budget: tokens available to thread messages under ``auto`` (after instructions
            and the completion reserve). At least the newest message is always kept.
        count_tokens: the per-message token estimate.

    Returns:
        Messages in ``seq`` order, with tool calls and results kept together
        (see :func:`keep_tool_pairs`).

    Raises:
        ThreadNotFoundError: no such thread.
        ValidationError: ``last_messages`` without a positive count.
    """
    if strategy.type == "last_messages":
        n = strategy.last_messages
        if n is None or n < 1:
            raise ValidationError("truncation_strategy last_messages needs last_messages >= 1")
        newest = await store.tail(thread_id, n)
        return keep_tool_pairs(await _reach_back_to_calls(store, thread_id, newest))
    if strategy.type == "none":
        window: list[Message] = []
        after: str | None = None
        while True:
            page = await store.list_messages(thread_id, order="asc", limit=500, after=after)
            window.extend(page.data)
            if not page.has_more:
                return keep_tool_pairs(window)
            after = page.last_id
    # auto: walk backwards a page at a time until the budget is spent
    newest_first: list[Message] = []
    used = 0
    cursor: str | None = None
    while True:
        page = await store.list_messages(thread_id, order="desc", limit=_PAGE, after=cursor)
        for m in page.data:
            cost = count_tokens(m)
            if newest_first and used + cost > token_budget:
                newest_first.reverse()
                return keep_tool_pairs(newest_first)
            used += cost
            newest_first.append(m)
        if not page.has_more:
            newest_first.reverse()
            return keep_tool_pairs(newest_first)
        cursor = page.last_id


_REACH_BACK = 64


async def _reach_back_to_calls(
    store: MessageStore, thread_id: str, window: list[Message]
) -> list[Message]:
    """Extend a window that starts inside a tool turn back to that turn's tool-call message.

    A ``last_messages`` window cut right after a turn's results would otherwise lose the results
    together with their call, and the model would not see what its tools answered. At most
    ``_REACH_BACK`` earlier messages are read.
    """
    calls = {p.id for m in window for p in m.content if isinstance(p, ToolCallContent)}
    missing = {
        p.tool_call_id
        for m in window
        for p in m.content
        if isinstance(p, ToolResultContent) and p.tool_call_id not in calls
    }
    if not missing or not window:
        return window
    earlier: list[Message] = []
    cursor = window[0].id
    while missing and len(earlier) < _REACH_BACK:
        page = await store.list_messages(thread_id, order="desc", limit=8, after=cursor)
        for m in page.data:
            earlier.append(m)
            missing -= {p.id for p in m.content if isinstance(p, ToolCallContent)}
            if not missing:
                break
        if not page.has_more or not page.data:
            break
        cursor = page.data[-1].id
    earlier.reverse()
    return earlier + window


def keep_tool_pairs(window: list[Message]) -> list[Message]:
    """Drop tool calls without their results and results without their calls from a window.

    A message left with no content is dropped. Other messages and their order are untouched.

    Args:
        window: messages in ``seq`` order.

    Returns:
        The window, every tool call answered and every result's call present.
    """
    calls: set[str] = set()
    results: set[str] = set()
    for m in window:
        for p in m.content:
            if isinstance(p, ToolCallContent):
                calls.add(p.id)
            elif isinstance(p, ToolResultContent):
                results.add(p.tool_call_id)
    if calls == results:
        return window
    paired = calls & results
    out: list[Message] = []
    for m in window:
        parts = [
            p
            for p in m.content
            if not (
                (isinstance(p, ToolCallContent) and p.id not in paired)
                or (isinstance(p, ToolResultContent) and p.tool_call_id not in paired)
            )
        ]
        if len(parts) == len(m.content):
            out.append(m)
        elif parts:
            out.append(msgspec.structs.replace(m, content=parts))
    return out
