"""Retention: delete threads that have not been updated for a while.

:func:`prune_threads` works on any :class:`~threadkit.stores.base.MessageStore`; it lists the
threads last updated before a cutoff (``list_threads(updated_before=...)``, page by page) and
deletes each with ``delete_thread``, which removes its messages, runs, run steps and idempotency
keys with it. :func:`parse_duration` reads the ``30d`` / ``12h`` durations of
``threadkit threads prune --older-than``. The command line is a thin layer over these two.
"""

from __future__ import annotations

import re

from threadkit import _ids
from threadkit.errors import ThreadNotFoundError, ValidationError
from threadkit.stores.base import MessageStore
from threadkit.types import ThreadInfo

__all__ = ["DURATION_UNITS", "parse_duration", "prune_threads"]

DURATION_UNITS: dict[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
"""Duration suffix → seconds: ``s`` seconds, ``m`` minutes, ``h`` hours, ``d`` days, ``w`` weeks."""

_DURATION = re.compile(r"\s*(\d+)\s*([smhdw])\s*")


def parse_duration(text: str) -> int:
    """Read a duration such as ``30d``, ``12h``, ``90m``, ``45s`` or ``2w`` as seconds.

    The form is a positive whole number followed by one unit of :data:`DURATION_UNITS`
    (lower case; ``m`` is minutes, there are no months).

    Args:
        text: the duration.

    Returns:
        The duration in seconds (``"30d"`` → ``2592000``).

    Raises:
        ValidationError: anything else (``"30"``, ``"1.5h"``, ``"3mo"``, ``"0d"``, ``"-1d"``);
            the message shows the accepted form.
    """
    match = _DURATION.fullmatch(text)
    if match is None or int(match.group(1)) == 0:
        raise ValidationError(
            f"{text!r} is not a duration: use a positive whole number and a unit, s (seconds), "
            "m (minutes), h (hours), d (days) or w (weeks), e.g. 30d, 12h, 90m, 45s, 2w"
        )
    return int(match.group(1)) * DURATION_UNITS[match.group(2)]


async def prune_threads(
    store: MessageStore,
    older_than_seconds: int,
    *,
    dry_run: bool = False,
    now: int | None = None,
    page_size: int = 100,
) -> list[ThreadInfo]:
    """Delete every thread last updated more than ``older_than_seconds`` ago.

    A thread goes when its ``updated_at`` is strictly before ``now - older_than_seconds``; it
    goes whole (``delete_thread``: messages, runs, run steps and idempotency keys). The threads
    are listed with ``list_threads(updated_before=cutoff, order="asc")`` one page at a time; a
    page is deleted only after the next one has been fetched (its last thread is that fetch's
    cursor), so memory stays at two pages whatever the store holds. Just before deleting a
    thread its entry is read again, and a thread that was updated since the listing (or that
    another process deleted) is left alone.

    Args:
        store: any message store, already set up.
        older_than_seconds: the age in seconds (``>= 0``); see :func:`parse_duration`.
        dry_run: only list what would be deleted; nothing is deleted.
        now: the current time in unix seconds (default: the clock).
        page_size: threads listed per store call (``>= 1``).

    Returns:
        The threads deleted (with ``dry_run``: that would be deleted), as listed, oldest-created
        first.

    Raises:
        ValidationError: a negative ``older_than_seconds`` or a ``page_size`` below 1.
        StoreError: the store failed; threads deleted before the failure stay deleted.
    """
    if older_than_seconds < 0:
        raise ValidationError(f"older_than_seconds must be >= 0, got {older_than_seconds}")
    if page_size < 1:
        raise ValidationError(f"page_size must be >= 1, got {page_size}")
    cutoff = (_ids.now() if now is None else now) - older_than_seconds
    done: list[ThreadInfo] = []
    seen: set[str] = set()
    pending: list[ThreadInfo] = []
    cursor: str | None = None
    while True:
        try:
            page = await store.list_threads(
                limit=page_size, after=cursor, order="asc", updated_before=cutoff
            )
        except ThreadNotFoundError:
            if cursor is None:
                raise
            # Another process deleted our cursor thread: start over; ``seen`` skips repeats.
            cursor = None
            continue
        await _settle(store, pending, cutoff, dry_run, done)
        pending = [t for t in page.data if t.id not in seen]
        seen.update(t.id for t in pending)
        if not page.has_more or not page.data:
            break
        cursor = page.last_id
    await _settle(store, pending, cutoff, dry_run, done)
    return done


async def _settle(
    store: MessageStore,
    infos: list[ThreadInfo],
    cutoff: int,
    dry_run: bool,
    done: list[ThreadInfo],
) -> None:
    """Delete (or, dry, just record) the listed threads still last updated before ``cutoff``."""
    for info in infos:
        if dry_run:
            done.append(info)
            continue
        try:
            current = await store.get_thread(info.id)
        except ThreadNotFoundError:
            continue
        if current.updated_at < cutoff and await store.delete_thread(info.id):
            done.append(info)
