"""``esam stats``: mailboxes by kind and state, messages and storage, the outbound queue.

Storage comes from each mailbox's cached Maildir++ usage (``maildirsize``, one small
read per mailbox; the store walks a mailbox only when that file is missing), never
from walking every message, so it is cheap on large stores.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any


def queue_stats(spool: Any, now: float | None = None) -> dict[str, Any]:
    """``{"messages": n, "oldest_age_seconds": s, "recipients_pending": r}`` of a spool."""
    now = time.time() if now is None else now
    entries = spool.list()
    oldest = min((e.created for e in entries), default=None)
    return {
        "messages": len(entries),
        "oldest_age_seconds": round(max(0.0, now - oldest), 1) if oldest is not None else 0.0,
        "recipients_pending": sum(len(e.pending()) for e in entries),
    }


def store_stats(store: Any, logins: list[str]) -> dict[str, int]:
    """Messages and bytes over ``logins`` (mailboxes without a Maildir count as empty)."""
    messages = used = 0
    for login in logins:
        user = store.user(login)
        if not user.exists():
            continue
        used += user.usage()
        messages += user.message_count()
    return {"messages": messages, "bytes": used}


async def gather(directory: Any, store: Any, spool: Any) -> dict[str, Any]:
    """Everything ``esam stats`` shows, as one JSON-ready dict."""
    counts = await directory.count_by()
    by_kind: dict[str, dict[str, int]] = {}
    for (kind, state), n in sorted(counts.items()):
        by_kind.setdefault(kind, {})[state] = n
    logins: list[str] = []
    offset = 0
    while True:
        page = await directory.list(limit=1000, offset=offset)
        logins += [r.login_norm for r in page if r.state != "closed"]
        if len(page) < 1000:
            break
        offset += 1000
    storage = await asyncio.to_thread(store_stats, store, logins)
    queue = await asyncio.to_thread(queue_stats, spool)
    return {
        "mailboxes": {"total": sum(counts.values()), "by_kind": by_kind},
        "storage": storage,
        "queue": queue,
    }


