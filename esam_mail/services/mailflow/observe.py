"""Delivery outcome counting around the outbound relay (``esam_deliveries_total``).

The queue runner hands every attempt to a ``Deliverer``; :class:`CountingDeliverer`
wraps the real one (``services.mailflow.relay.Relay``) in the composition root and counts
each recipient's result as delivered, deferred (4xx: retried) or failed (5xx), so
neither the queue nor the relay needs to know about metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from esam_mail import metrics
from esam_mail.services.mailflow.relay import RecipientResult

_OUTCOME = {"delivered": "delivered", "retry": "deferred", "failed": "failed"}


class CountingDeliverer:
    """A ``services.mailflow.queue.Deliverer`` that counts outcomes, then returns them unchanged.

    Attributes:
        inner: the wrapped deliverer (its ``transport_map`` is reloadable on SIGHUP).
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def deliver(self, mail_from: str, rcpts: Sequence[str], data: bytes) -> list[RecipientResult]:
        results: list[RecipientResult] = await self.inner.deliver(mail_from, rcpts, data)
        for r in results:
            metrics.DELIVERIES.inc(outcome=_OUTCOME.get(r.outcome, "failed"))
        return results

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
