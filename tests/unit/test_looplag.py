"""The event-loop lag metric sees a blocked loop (issue 14)."""

from __future__ import annotations

import asyncio
import time

from esam_mail import metrics


def test_blocking_the_loop_shows_up_as_lag():
    async def go() -> None:
        before = metrics.LOOP_LAG_SECONDS.count()
        task = asyncio.ensure_future(metrics.watch_loop_lag(interval=0.02))
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # what a store call on the loop used to do
        await asyncio.sleep(0.05)
        task.cancel()
        assert metrics.LOOP_LAG_SECONDS.count() > before
        assert metrics.LOOP_LAG_MAX.value() >= 0.25
        text = metrics.REGISTRY.render()
        assert "esam_event_loop_lag_seconds_bucket" in text

    asyncio.run(go())
