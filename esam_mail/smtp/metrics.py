"""SMTP counters -> Prometheus metrics (see ``esam_mail.metrics`` and docs/operations.md).

``Tracker.count(key)`` in ``smtp.server`` calls :func:`record` with its event key; this
module maps those keys onto the fixed label values of the metric catalogue, so the
server itself only needs one line per event.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from esam_mail import metrics

log = logging.getLogger(__name__)

_REJECT_PREFIXES = (
    ("connections_refused_", "connect"),
    ("mail_rejected_", "mail"),
    ("rcpt_rejected_", "rcpt"),
    ("messages_rejected_", "data"),
)


def record(key: str, n: int = 1) -> None:
    """Count one tracker event; unknown keys are ignored (never fail a session)."""
    try:
        for prefix, stage in _REJECT_PREFIXES:
            if key.startswith(prefix):
                metrics.SMTP_REJECTIONS.inc(n, stage=stage, code=key[len(prefix):])
                return
        if key.startswith("connections_"):
            metrics.SMTP_CONNECTIONS.inc(n, listener=key[len("connections_"):])
        elif key == "messages_accepted":
            metrics.SMTP_MESSAGES_ACCEPTED.inc(n)
    except ValueError:
        log.debug("no metric for SMTP event %s", key)


#: Every live ``smtp.server.Tracker`` of this process (one per set of listeners).
_TRACKERS: weakref.WeakSet[Any] = weakref.WeakSet()


def watch_tracker(tracker: Any) -> None:
    """Publish ``tracker``'s live books (sessions, per-IP slots, in-flight) in /metrics."""
    _TRACKERS.add(tracker)


@metrics.REGISTRY.collector
def _collect() -> None:
    sessions = dict.fromkeys(metrics.SMTP_LISTENERS, 0)
    slots = in_flight = 0
    peers: set[str] = set()
    for tracker in list(_TRACKERS):
        for sess in list(tracker.sessions):
            if sess.listener in sessions:
                sessions[sess.listener] += 1
        slots += sum(tracker.per_ip.values())
        peers.update(tracker.per_ip)
        in_flight += tracker.in_flight
    for listener, n in sessions.items():
        metrics.SMTP_SESSIONS.set(n, listener=listener)
    metrics.SMTP_CONNECTION_SLOTS.set(slots)
    metrics.SMTP_PEER_ADDRESSES.set(len(peers))
    metrics.SMTP_IN_FLIGHT.set(in_flight)
