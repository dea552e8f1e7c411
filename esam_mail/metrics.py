"""Prometheus metrics with fixed, documented label values (text exposition format 0.0.4).

A leaf module: it imports nothing from esam_mail, so every layer may count.  No
external dependency: the exposition format is a few lines of text and the
metric types here need no more than counters, gauges and histograms.

Every label of every metric has a closed set of values declared up front (a
typo or an unbounded value such as a peer address can never create a new time
series); a value outside the set is folded into ``"other"`` when the set has
one, otherwise it is a programming error (``ValueError``).  Every combination
of label values is exported from the start (as 0), so dashboards and alerts
see a series before its first event.

The catalogue at the bottom is the public contract, documented in
``docs/operations.md``; keep the two in step (a unit test compares them).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

__all__ = [
    "CONTENT_TYPE",
    "REGISTRY",
    "Counter",
    "Gauge",
    "Histogram",
    "Registry",
]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class _Metric:
    """Common part: name, help text, label names and their allowed values."""

    kind = "untyped"

    def __init__(self, name: str, doc: str, labels: Mapping[str, Sequence[str]] | None = None) -> None:
        self.name = name
        self.doc = doc
        self.labels: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in (labels or {}).items()}
        for k, values in self.labels.items():
            if not values or len(set(values)) != len(values):
                raise ValueError(f"{name}: label {k} needs distinct values")
        self._lock = threading.Lock()

    def combinations(self) -> list[tuple[str, ...]]:
        """Every tuple of label values, in declaration order."""
        return [tuple(c) for c in itertools.product(*self.labels.values())]

    def key(self, given: Mapping[str, str]) -> tuple[str, ...]:
        """Label values -> series key; unknown values fold into "other" if allowed."""
        if set(given) != set(self.labels):
            raise ValueError(f"{self.name}: labels {sorted(given)} != {sorted(self.labels)}")
        out = []
        for k, allowed in self.labels.items():
            v = str(given[k])
            if v not in allowed:
                if "other" not in allowed:
                    raise ValueError(f"{self.name}: {k}={v!r} is not one of {allowed}")
                v = "other"
            out.append(v)
        return tuple(out)

    def _selector(self, key: tuple[str, ...], extra: str = "") -> str:
        parts = [f'{k}="{_escape_label(v)}"' for k, v in zip(self.labels, key, strict=True)]
        if extra:
            parts.append(extra)
        return "{" + ",".join(parts) + "}" if parts else ""

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.doc)}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError


class Counter(_Metric):
    """A monotonically increasing count (name ends in ``_total``)."""

    kind = "counter"

    def __init__(self, name: str, doc: str, labels: Mapping[str, Sequence[str]] | None = None) -> None:
        super().__init__(name, doc, labels)
        self._values: dict[tuple[str, ...], float] = dict.fromkeys(self.combinations(), 0.0)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` (>= 0) to the series named by ``labels``."""
        if amount < 0:
            raise ValueError("counters only go up")
        k = self.key(labels)
        with self._lock:
            self._values[k] += amount

    def value(self, **labels: str) -> float:
        return self._values[self.key(labels)]

    def render(self) -> list[str]:
        with self._lock:
            items = list(self._values.items())
        return [*self.header(), *(f"{self.name}{self._selector(k)} {_number(v)}" for k, v in items)]


class Gauge(_Metric):
    """A value that goes up and down; optionally computed at scrape time by ``collect``."""

    kind = "gauge"

    def __init__(self, name: str, doc: str, labels: Mapping[str, Sequence[str]] | None = None) -> None:
        super().__init__(name, doc, labels)
        self._values: dict[tuple[str, ...], float] = dict.fromkeys(self.combinations(), 0.0)

    def set(self, value: float, **labels: str) -> None:
        k = self.key(labels)
        with self._lock:
            self._values[k] = float(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        k = self.key(labels)
        with self._lock:
            self._values[k] += amount

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.inc(-amount, **labels)

    def value(self, **labels: str) -> float:
        return self._values[self.key(labels)]

    def render(self) -> list[str]:
        with self._lock:
            items = list(self._values.items())
        return [*self.header(), *(f"{self.name}{self._selector(k)} {_number(v)}" for k, v in items)]


#: Seconds; from a cached FETCH (1 ms) to a large APPEND or SEARCH over a big folder.
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram(_Metric):
    """Observations counted in cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        doc: str,
        labels: Mapping[str, Sequence[str]] | None = None,
        buckets: Iterable[float] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(name, doc, labels)
        self.buckets = tuple(sorted(float(b) for b in buckets))
        if not self.buckets or "le" in self.labels:
            raise ValueError(f"{name}: needs buckets and no 'le' label")
        n = len(self.buckets)
        self._counts: dict[tuple[str, ...], list[int]] = {k: [0] * (n + 1) for k in self.combinations()}
        self._sums: dict[tuple[str, ...], float] = dict.fromkeys(self.combinations(), 0.0)

    def observe(self, value: float, **labels: str) -> None:
        k = self.key(labels)
        i = 0
        while i < len(self.buckets) and value > self.buckets[i]:
            i += 1
        with self._lock:
            self._counts[k][i] += 1  # non-cumulative here; render() accumulates
            self._sums[k] += value

    def count(self, **labels: str) -> int:
        return sum(self._counts[self.key(labels)])

    def count_above(self, bound: float, **labels: str) -> int:
        """Observations greater than ``bound``, one of the bucket bounds."""
        i = self.buckets.index(float(bound))
        return sum(self._counts[self.key(labels)][i + 1:])

    def render(self) -> list[str]:
        out = self.header()
        with self._lock:
            snapshot = [(k, list(c), self._sums[k]) for k, c in self._counts.items()]
        for k, counts, total in snapshot:
            running = 0
            for bound, c in zip((*self.buckets, math.inf), counts, strict=True):
                running += c
                sel = self._selector(k, f'le="{_number(bound)}"')
                out.append(f"{self.name}_bucket{sel} {running}")
            out.append(f"{self.name}_sum{self._selector(k)} {_number(total)}")
            out.append(f"{self.name}_count{self._selector(k)} {running}")
        return out


class Registry:
    """An ordered set of metrics plus collectors that refresh gauges at scrape time."""

    def __init__(self) -> None:
        self.metrics: dict[str, _Metric] = {}
        self.collectors: list[Callable[[], None]] = []

    def add(self, metric: _Metric) -> _Metric:
        if metric.name in self.metrics:
            raise ValueError(f"duplicate metric {metric.name}")
        self.metrics[metric.name] = metric
        return metric

    def counter(self, name: str, doc: str, labels: Mapping[str, Sequence[str]] | None = None) -> Counter:
        m = Counter(name, doc, labels)
        self.add(m)
        return m

    def gauge(self, name: str, doc: str, labels: Mapping[str, Sequence[str]] | None = None) -> Gauge:
        m = Gauge(name, doc, labels)
        self.add(m)
        return m

    def histogram(
        self,
        name: str,
        doc: str,
        labels: Mapping[str, Sequence[str]] | None = None,
        buckets: Iterable[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        m = Histogram(name, doc, labels, buckets)
        self.add(m)
        return m

    def collector(self, func: Callable[[], None]) -> Callable[[], None]:
        """Register ``func`` to refresh gauges before every scrape (usable as a decorator)."""
        self.collectors.append(func)
        return func

    def collect(self) -> None:
        """Run every collector; one that fails leaves its gauges as they were."""
        for func in list(self.collectors):
            try:
                func()
            except Exception:  # a scrape must never fail because of one collector
                logging.getLogger(__name__).exception("metrics collector %s failed", getattr(func, "__name__", func))

    def render(self) -> str:
        """The whole registry in the text exposition format (ends with a newline)."""
        self.collect()
        lines: list[str] = []
        for m in self.metrics.values():
            lines.extend(m.render())
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# The catalogue.  Label values are closed sets; docs/operations.md lists them all.

REGISTRY = Registry()

SMTP_LISTENERS = ("mx", "submission", "submissions")
#: Reply codes counted individually; anything else is "other".
SMTP_REJECT_CODES = ("421", "450", "451", "452", "501", "550", "551", "552", "553", "554", "other")
SMTP_REJECT_STAGES = ("connect", "mail", "rcpt", "data")
DELIVERY_OUTCOMES = ("delivered", "deferred", "failed")
AUTH_SERVICES = ("smtp", "imap", "other")
IMAP_LISTENERS = ("imap", "imaps")
#: IMAP commands with their own latency series (``UID x`` is ``uid_x``); the rest is "other".
IMAP_COMMANDS = (
    "capability", "noop", "logout", "id", "starttls", "login", "authenticate",
    "select", "examine", "create", "delete", "rename", "subscribe", "unsubscribe",
    "list", "lsub", "status", "append", "namespace", "enable", "getquotaroot", "getquota",
    "idle", "check", "close", "unselect", "expunge", "search", "fetch", "store", "copy", "move",
    "uid_fetch", "uid_search", "uid_store", "uid_copy", "uid_move", "uid_expunge",
    "other",
)

SMTP_CONNECTIONS = REGISTRY.counter(
    "esam_smtp_connections_total", "SMTP connections accepted, by listener.", {"listener": SMTP_LISTENERS}
)
SMTP_MESSAGES_ACCEPTED = REGISTRY.counter(
    "esam_smtp_messages_accepted_total", "Messages accepted with 250 after DATA (all listeners)."
)
SMTP_REJECTIONS = REGISTRY.counter(
    "esam_smtp_rejections_total",
    "SMTP replies refusing a connection, sender, recipient or message, by stage and reply code.",
    {"stage": SMTP_REJECT_STAGES, "code": SMTP_REJECT_CODES},
)
DELIVERIES = REGISTRY.counter(
    "esam_deliveries_total",
    "Outbound delivery attempts per recipient, by outcome (deferred = temporary failure, retried).",
    {"outcome": DELIVERY_OUTCOMES},
)
QUEUE_MESSAGES = REGISTRY.gauge("esam_queue_messages", "Messages in the outbound queue (read at scrape time).")
QUEUE_OLDEST_AGE = REGISTRY.gauge(
    "esam_queue_oldest_age_seconds", "Age of the oldest queued message; 0 when the queue is empty."
)
AUTH_FAILURES = REGISTRY.counter(
    "esam_auth_failures_total", "Failed password logins, by service.", {"service": AUTH_SERVICES}
)
IMAP_CONNECTIONS = REGISTRY.counter(
    "esam_imap_connections_total", "IMAP connections accepted, by listener.", {"listener": IMAP_LISTENERS}
)
IMAP_COMMAND_SECONDS = REGISTRY.histogram(
    "esam_imap_command_duration_seconds",
    "Time from dispatch to tagged reply of IMAP commands (IDLE: the whole idle period).",
    {"command": IMAP_COMMANDS},
)
# Live values of the per-connection books (read at scrape time).  After the last client
# has gone each of them must be 0: anything else is a leaked slot (see
# tests/protocol/test_session_counters.py and tests/e2e/test_soak.py).
SMTP_SESSIONS = REGISTRY.gauge(
    "esam_smtp_sessions", "Open SMTP sessions, by listener.", {"listener": SMTP_LISTENERS}
)
SMTP_CONNECTION_SLOTS = REGISTRY.gauge(
    "esam_smtp_connection_slots",
    "Per-address connection slots held (smtp.max_connections_per_ip counts these); equals the open sessions.",
)
SMTP_PEER_ADDRESSES = REGISTRY.gauge(
    "esam_smtp_peer_addresses", "Client addresses with at least one open SMTP session."
)
SMTP_IN_FLIGHT = REGISTRY.gauge(
    "esam_smtp_transactions_in_flight", "SMTP messages being delivered right now (after DATA/BDAT LAST, before the reply)."
)
IMAP_SESSIONS = REGISTRY.gauge(
    "esam_imap_sessions", "Open IMAP sessions, by listener.", {"listener": IMAP_LISTENERS}
)
IMAP_PEER_ADDRESSES = REGISTRY.gauge(
    "esam_imap_peer_addresses", "Client addresses with at least one open IMAP session."
)
PROCESS_START = REGISTRY.gauge("esam_process_start_time_seconds", "Unix time the process started.")
PROCESS_START.set(time.time())
LOOP_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LOOP_LAG_SECONDS = REGISTRY.histogram(
    "esam_event_loop_lag_seconds",
    "How late the shared event loop ran a timer (sampled every 0.25 s): time the loop was blocked.",
    buckets=LOOP_LAG_BUCKETS,
)
LOOP_LAG_MAX = REGISTRY.gauge(
    "esam_event_loop_lag_max_seconds",
    "Largest event-loop lag in the current 60 s window (a new window starts with its first sample).",
)


async def watch_loop_lag(interval: float = 0.25) -> None:
    """Measure how late the running loop wakes a timer, forever (cancel to stop).

    A blocked loop (file I/O, a long parse) delays every listener of the process;
    this is the number the issue-14 guards keep small.  Started by the composition
    root next to the listeners.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    window_start, window_max = loop.time(), 0.0
    while True:
        start = loop.time()
        await asyncio.sleep(interval)
        now = loop.time()
        lag = max(0.0, now - start - interval)
        LOOP_LAG_SECONDS.observe(lag)
        if now - window_start >= 60.0:
            window_start, window_max = now, lag
        else:
            window_max = max(window_max, lag)
        LOOP_LAG_MAX.set(window_max)


def count_auth_failure(service: str) -> None:
    """Hook for ``DirectoryAuthenticator.on_failure``."""
    AUTH_FAILURES.inc(service=service)


def count_smtp_rejection(stage: str, code: int | str) -> None:
    """One refused connection/command; ``code`` outside the fixed set counts as "other"."""
    SMTP_REJECTIONS.inc(stage=stage, code=str(code))


def imap_command_label(verb: str) -> str:
    """``"UID FETCH"`` -> ``"uid_fetch"``; unknown commands -> ``"other"``."""
    label = verb.strip().lower().replace(" ", "_")
    return label if label in IMAP_COMMANDS else "other"
