"""``GET /metrics``: the Prometheus text exposition (format 0.0.4) of ``esam_mail.metrics``.

Queue gauges are read from the spool at scrape time (one directory listing and one
envelope read), so they are right in every process and after restarts.  Every
metric and label value is documented in docs/operations.md.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from esam_mail import metrics
from esam_mail.web.server import Request, Response, Router


def queue_stats(spool: Any, now: float | None = None) -> tuple[int, float]:
    """``(messages, age of the oldest in seconds)`` of an outbound spool (0, 0 when empty)."""
    ids = spool.ids()
    if not ids:
        return 0, 0.0
    now = time.time() if now is None else now
    for queue_id in ids:  # oldest first; skip an entry deleted meanwhile
        try:
            return len(ids), max(0.0, now - spool.get(queue_id).created)
        except (KeyError, ValueError):
            continue
    return len(ids), 0.0


def register(router: Router, services: Any) -> None:
    async def scrape(request: Request) -> Response:
        if services.spool is not None:
            size, oldest = await asyncio.to_thread(queue_stats, services.spool)
            metrics.QUEUE_MESSAGES.set(size)
            metrics.QUEUE_OLDEST_AGE.set(oldest)
        return Response(metrics.REGISTRY.render().encode(), 200, media_type=metrics.CONTENT_TYPE)

    router.add("GET", "/metrics", scrape)
