"""IMAP connection counts and command latency -> ``esam_mail.metrics``.

``imap.server`` calls :func:`start` when it dispatches a command, :func:`finished`
when the tagged reply is out (its ``_finish``), and :func:`connected` for every
accepted connection.  Command names map onto the fixed label set
``metrics.IMAP_COMMANDS`` (``UID FETCH`` -> ``uid_fetch``, unknown -> ``other``).
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from esam_mail import metrics


def connected(implicit_tls: bool) -> None:
    metrics.IMAP_CONNECTIONS.inc(listener="imaps" if implicit_tls else "imap")


def start(verb: bytes) -> tuple[str, float]:
    """A timer for one command; store it on the session as ``_cmd_timer``."""
    return metrics.imap_command_label(verb.decode("ascii", "replace")), time.monotonic()


def finished(session: Any) -> None:
    """Observe the session's running command timer, if any (idempotent)."""
    timer = getattr(session, "_cmd_timer", None)
    if timer is not None:
        session._cmd_timer = None
        metrics.IMAP_COMMAND_SECONDS.observe(time.monotonic() - timer[1], command=timer[0])


#: Every live IMAP listener factory of this process (``factory.sessions`` is its book).
_FACTORIES: weakref.WeakSet[Any] = weakref.WeakSet()


def watch_factory(factory: Any) -> None:
    """Publish ``factory``'s open sessions in /metrics."""
    _FACTORIES.add(factory)


@metrics.REGISTRY.collector
def _collect() -> None:
    counts = {"imap": 0, "imaps": 0}
    peers: set[str] = set()
    for factory in list(_FACTORIES):
        sessions = list(factory.sessions)
        counts["imaps" if factory.implicit_tls else "imap"] += len(sessions)
        peers.update(s.peer for s in sessions)
    for listener, n in counts.items():
        metrics.IMAP_SESSIONS.set(n, listener=listener)
    metrics.IMAP_PEER_ADDRESSES.set(len(peers))
