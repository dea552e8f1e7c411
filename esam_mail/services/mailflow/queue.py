"""The outbound queue: retry schedule, delay notices, expiry and bounces.

``QueueRunner`` takes due entries from ``store.spool.Spool`` (claiming each so
that several runners, in one or more processes, never send the same message
at once), hands the pending recipients to a ``Deliverer`` (``services.mailflow.relay``),
and records each recipient's outcome (RFC 5321 4.2.1 reply classes):

* 2xx: delivered.
* 5xx: failed at once; a failure DSN goes to the sender.
* 4xx: retried with exponential backoff (``RetryPolicy``).  After
  ``delay_warning`` one "delayed" DSN is sent; after ``expiry`` the remaining
  recipients fail with status 5.4.7 (RFC 3463 "delivery time expired") and a
  failure DSN is sent.

DSNs are RFC 3464 ``multipart/report; report-type=delivery-status`` messages
(RFC 6522) with a human part, a ``message/delivery-status`` part and the
original headers as ``text/rfc822-headers``.  They are sent with a null
reverse-path, and a message whose own reverse-path is null never gets one
(RFC 5321 6.1, RFC 3464 2.1 loop prevention).

Time comes from an injectable ``clock`` so tests never sleep: advance the clock
and call ``run_once()`` (or ``kick()`` a running ``run()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import Literal, Protocol

from esam_mail.services.mailflow.relay import RecipientResult
from esam_mail.store.spool import RecipientState, Spool, SpoolClaim, SpoolEntry

__all__ = [
    "QUEUE_KICK",
    "BounceDeliver",
    "Deliverer",
    "DsnRecipient",
    "QueueRunner",
    "RetryPolicy",
    "build_dsn",
]

log = logging.getLogger(__name__)

#: Notifier event ``(login, folder)`` that wakes the runners of every process
#: (``esam queue retry``); no mailbox has an empty login, so IMAP ignores it.
QUEUE_KICK = ("", "esam:queue")

#: ``await bounce_deliver(mail_from_of_bounce, rcpt, data)``; ``mail_from`` is ``""``.
BounceDeliver = Callable[[str, str, bytes], Awaitable[None]]
Clock = Callable[[], float]


class Deliverer(Protocol):
    """What the queue needs from ``services.mailflow.relay.Relay``."""

    async def deliver(self, mail_from: str, rcpts: Sequence[str], data: bytes) -> list[RecipientResult]:
        """One attempt; one result per recipient, in order; never raises for
        delivery problems."""
        ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry schedule (seconds).  The n-th retry waits
    ``min(cap, base * factor ** (n - 1))``.  ``delay_warning=None`` disables
    delay DSNs."""

    base: float = 60.0
    factor: float = 2.0
    cap: float = 3600.0
    delay_warning: float | None = 4 * 3600.0
    expiry: float = 5 * 86400.0

    def delay(self, attempts: int) -> float:
        return float(min(self.cap, self.base * self.factor ** max(0, attempts - 1)))


# ---------------------------------------------------------------------------
# DSN (RFC 3464)
# ---------------------------------------------------------------------------

_ENH_RE = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True, slots=True)
class DsnRecipient:
    """One per-recipient block of a DSN (RFC 3464 2.3)."""

    address: str
    action: Literal["failed", "delayed", "delivered", "relayed", "expanded"]
    status: str  # RFC 3463 x.y.z
    diagnostic: str | None = None  # the SMTP reply, e.g. "550 5.1.1 no such user"
    remote_mta: str | None = None
    last_attempt: float | None = None
    will_retry_until: float | None = None


def _clean(text: str) -> str:
    """One line of printable ASCII (header-safe)."""
    text = " ".join(text.split())
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)


def _original_headers(data: bytes) -> bytes:
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = data.find(sep)
        if i >= 0:
            head = data[:i]
            break
    else:
        head = data
    lines = re.split(rb"\r?\n", head)
    return b"\r\n".join(lines) + b"\r\n"


def status_for(state: RecipientState) -> str:
    """RFC 3463 status for a recipient from its last reply."""
    m = _ENH_RE.match((state.reply or "")[3:]) if state.reply else None
    code = (state.reply or "")[:1]
    if state.status == "failed" and code == "4":
        return "5.4.7"  # expired while still temporary
    if m and m.group(1) == code:
        return f"{m.group(1)}.{m.group(2)}.{m.group(3)}"
    if state.status == "delivered":
        return "2.0.0"
    return "4.0.0" if state.status == "pending" else "5.0.0"


def build_dsn(
    *,
    reporting_mta: str,
    original_sender: str,
    recipients: Sequence[DsnRecipient],
    original: bytes,
    arrival_date: float,
    now: float,
    envelope_id: str | None = None,
) -> bytes:
    """Build a delivery status notification (RFC 3464, RFC 6522).

    Args:
        reporting_mta: our host name (``Reporting-MTA: dns; ...``).
        original_sender: the bounced message's reverse-path (the DSN's To).
        recipients: per-recipient blocks.
        original: the original message; only its header is included.
        arrival_date: when we accepted the original.
        now: DSN date.
        envelope_id: the RFC 3461 ENVID, if any.

    Returns:
        The DSN as bytes with CRLF line endings.
    """
    delayed = all(r.action == "delayed" for r in recipients)
    boundary = f"=_dsn_{secrets.token_hex(12)}"
    subject = (
        "Delivery delayed: message not yet delivered" if delayed else "Undelivered Mail Returned to Sender"
    )
    human = [
        f"This is the mail system at {reporting_mta}.",
        "",
        (
            "Your message has not been delivered yet to the recipients below. "
            "Delivery will be retried; no action is needed."
            if delayed
            else "Your message could not be delivered to the recipients below."
        ),
        "",
    ]
    for r in recipients:
        human.append(f"<{_clean(r.address)}>: {_clean(r.diagnostic or r.status)}")
    per_msg = [f"Reporting-MTA: dns; {_clean(reporting_mta)}"]
    if envelope_id:
        per_msg.append(f"Original-Envelope-Id: {_clean(envelope_id)}")
    per_msg.append(f"Arrival-Date: {formatdate(arrival_date)}")
    blocks = ["\r\n".join(per_msg)]
    for r in recipients:
        f = [
            f"Final-Recipient: rfc822; {_clean(r.address)}",
            f"Action: {r.action}",
            f"Status: {r.status}",
        ]
        if r.remote_mta:
            f.append(f"Remote-MTA: dns; {_clean(r.remote_mta)}")
        if r.diagnostic:
            f.append(f"Diagnostic-Code: smtp; {_clean(r.diagnostic)}")
        if r.last_attempt is not None:
            f.append(f"Last-Attempt-Date: {formatdate(r.last_attempt)}")
        if r.will_retry_until is not None:
            f.append(f"Will-Retry-Until: {formatdate(r.will_retry_until)}")
        blocks.append("\r\n".join(f))
    headers = _original_headers(original)
    cte = "7bit" if headers.isascii() else "8bit"
    out = [
        f"From: Mail Delivery System <MAILER-DAEMON@{_clean(reporting_mta)}>",
        f"To: <{_clean(original_sender)}>",
        f"Subject: {subject}",
        f"Date: {formatdate(now)}",
        f"Message-ID: <{secrets.token_hex(10)}@{_clean(reporting_mta)}>",
        "Auto-Submitted: auto-replied",  # RFC 3834 5
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Description: Notification",
        "",
        *human,
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "Content-Description: Delivery report",
        "",
        "\r\n\r\n".join(blocks),
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        f"Content-Transfer-Encoding: {cte}",
        "Content-Description: Undelivered Message Headers",
        "",
    ]
    return "\r\n".join(out).encode() + b"\r\n" + headers + f"\r\n--{boundary}--\r\n".encode()


# ---------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------


class QueueRunner:
    """Drive the spool: deliver due entries, reschedule, notify, expire.

    Args:
        spool: the outbound spool.
        relay: a ``Deliverer`` (``services.mailflow.relay.Relay``).
        bounce_deliver: async callable ``(mail_from_of_bounce, rcpt, data)``
            that delivers a DSN locally or re-enqueues it; if it raises, the
            notice is retried on the next pass.
        reporting_mta: our host name for DSNs.
        policy: retry schedule, delay warning and expiry.
        clock: returns the current time in seconds (``time.time``).
        concurrency: entries delivered at once by this runner.
        max_sleep: longest idle wait in ``run()``, a guard against clock jumps.
    """

    def __init__(
        self,
        spool: Spool,
        relay: Deliverer,
        *,
        bounce_deliver: BounceDeliver,
        reporting_mta: str = "localhost",
        policy: RetryPolicy | None = None,
        clock: Clock = time.time,
        concurrency: int = 10,
        max_sleep: float = 60.0,
    ) -> None:
        self.spool = spool
        self.relay = relay
        self.bounce_deliver = bounce_deliver
        self.reporting_mta = reporting_mta
        self.policy = policy or RetryPolicy()
        self.clock = clock
        self.max_sleep = max_sleep
        self._sem = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._stopping = False
        self._running: asyncio.Task[None] | None = None

    def reconfigure(
        self, *, retry_base: float, retry_max: float, delay_warning: float, expire: float,
        transport: Mapping[str, str],
    ) -> None:
        """New retry schedule and transport map for the next attempts (SIGHUP)."""
        self.policy = dataclasses.replace(
            self.policy, base=retry_base, cap=retry_max, delay_warning=delay_warning, expiry=expire,
        )
        set_map = getattr(self.relay, "set_transport_map", None)  # a static test relay has none
        if set_map is not None:
            set_map(transport)

    # -- API for the front-end and CLI ---------------------------------------

    async def enqueue(
        self,
        mail_from: str,
        rcpts: list[str],
        data: bytes,
        *,
        dsn_envelope_id: str | None = None,
    ) -> str:
        """Durably queue a message (fsync in a thread), wake the runner, return the id."""
        queue_id = await asyncio.to_thread(
            self.spool.enqueue,
            mail_from,
            rcpts,
            data,
            dsn_envelope_id=dsn_envelope_id,
            now=self.clock(),
        )
        log.info("queue enqueued id=%s rcpts=%d size=%d", queue_id, len(rcpts), len(data))
        self.kick()
        return queue_id

    def kick(self) -> None:
        """Wake ``run()`` now (new mail, or the clock moved in tests)."""
        self._wake.set()

    async def retry_now(self, queue_id: str) -> bool:
        """Make an entry due immediately.  Returns False if it is unknown or
        being delivered right now (it will be retried anyway)."""
        try:
            claim = self.spool.claim(queue_id)
        except KeyError:
            return False
        if claim is None:
            return False
        with claim:
            claim.entry.next_attempt = self.clock()
            await asyncio.to_thread(self.spool.update, claim.entry)
        self.kick()
        return True

    def next_wakeup(self) -> float | None:
        """Earliest ``next_attempt`` in the spool, or None when it is empty."""
        entries = self.spool.list()
        return min((e.next_attempt for e in entries), default=None)

    # -- the loop ------------------------------------------------------------

    async def run(self) -> None:
        """Process due entries until ``stop()``; wakes on ``kick()`` and timers."""
        self._running = asyncio.current_task()
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self.spool.cleanup, now=self.clock())
        while not self._stopping:
            self._wake.clear()
            try:
                await self.run_once()
            except Exception:  # background loop: log and keep going
                log.exception("queue pass failed")
            if self._stopping:
                break
            nxt = await asyncio.to_thread(self.next_wakeup)
            timeout = self.max_sleep if nxt is None else nxt - self.clock()
            timeout = max(0.0, min(self.max_sleep, timeout))
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)

    async def stop(self) -> None:
        """Stop ``run()`` after in-flight deliveries finish (graceful)."""
        self._stopping = True
        self._wake.set()
        task = self._running
        if task is not None and task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self) -> int:
        """Deliver every entry due now that no other runner holds; return how many."""
        now = self.clock()
        due = await asyncio.to_thread(self.spool.due, now)
        tasks: list[asyncio.Task[None]] = []
        for entry in due:
            if self._stopping:
                break
            await self._sem.acquire()
            claim = self.spool.claim(entry.id)
            if claim is None or claim.entry.next_attempt > now:
                if claim is not None:
                    claim.release()
                self._sem.release()
                continue
            tasks.append(asyncio.create_task(self._run_claim(claim)))
        if tasks:
            await asyncio.gather(*tasks)
        return len(tasks)

    async def _run_claim(self, claim: SpoolClaim) -> None:
        try:
            await self.process(claim)
        except Exception:  # one broken entry must not stop the queue
            log.exception("queue id=%s processing failed", claim.entry.id)
            with contextlib.suppress(Exception):
                claim.entry.next_attempt = self.clock() + self.policy.base
                await asyncio.to_thread(self.spool.update, claim.entry)
        finally:
            claim.release()
            self._sem.release()

    async def process(self, claim: SpoolClaim) -> None:
        """One delivery attempt for a claimed entry, then reschedule/notify/delete."""
        e = claim.entry
        pending = e.pending()
        if pending:
            data = await asyncio.to_thread(self.spool.read_message, e.id)
            results = await self.relay.deliver(e.mail_from, [r.address for r in pending], data)
            by_rcpt = {r.rcpt: r for r in results}
            now = self.clock()
            e.attempts += 1
            e.last_attempt = now
            for rs in pending:
                res = by_rcpt.get(rs.address) or RecipientResult(
                    rs.address, 451, "4.3.0 no result from relay"
                )
                rs.attempts += 1
                rs.last_attempt = now
                rs.reply = res.reply
                rs.remote_mta = res.remote_mta
                if res.outcome == "delivered":
                    rs.status = "delivered"
                elif res.outcome == "failed":
                    rs.status = "failed"
                log.info(
                    "queue id=%s rcpt=%s code=%d remote=%s",
                    e.id,
                    rs.address,
                    res.code,
                    res.remote_mta or "-",
                )
        else:
            data = b""
        now = self.clock()
        still = e.pending()
        if still and now - e.created >= self.policy.expiry:
            for rs in still:
                rs.status = "failed"  # status_for() reports 5.4.7
            still = []
        await self._notify(e, data, now, still)
        if still:
            e.next_attempt = now + self.policy.delay(e.attempts)
        elif all(r.status == "delivered" or r.notified for r in e.rcpts):
            await asyncio.to_thread(self.spool.delete, e.id)
            log.info("queue id=%s done", e.id)
            return
        else:  # a bounce could not be handed over yet
            e.next_attempt = now + self.policy.base
        await asyncio.to_thread(self.spool.update, e)

    async def _notify(self, e: SpoolEntry, data: bytes, now: float, still: list[RecipientState]) -> None:
        failed = [r for r in e.rcpts if r.status == "failed" and not r.notified]
        if e.mail_from == "":
            for r in failed:  # never bounce a bounce
                r.notified = True
            return
        if failed and await self._send_dsn(e, data, now, failed, "failed"):
            for r in failed:
                r.notified = True
        warn = self.policy.delay_warning
        due_warning = warn is not None and not e.delay_notified and now - e.created >= warn
        if still and due_warning and await self._send_dsn(e, data, now, still, "delayed"):
            e.delay_notified = True

    async def _send_dsn(
        self,
        e: SpoolEntry,
        data: bytes,
        now: float,
        rcpts: list[RecipientState],
        action: Literal["failed", "delayed"],
    ) -> bool:
        if not data:
            data = await asyncio.to_thread(self.spool.read_message, e.id)
        until = e.created + self.policy.expiry if action == "delayed" else None
        dsn = build_dsn(
            reporting_mta=self.reporting_mta,
            original_sender=e.mail_from,
            recipients=[
                DsnRecipient(
                    address=r.address,
                    action=action,
                    status=status_for(r),
                    diagnostic=r.reply,
                    remote_mta=r.remote_mta,
                    last_attempt=r.last_attempt,
                    will_retry_until=until,
                )
                for r in rcpts
            ],
            original=data,
            arrival_date=e.created,
            now=now,
            envelope_id=e.dsn_envelope_id,
        )
        try:
            await self.bounce_deliver("", e.mail_from, dsn)
        except Exception:  # retried on the next pass
            log.exception("queue id=%s %s DSN to %s not delivered", e.id, action, e.mail_from)
            return False
        log.info("queue id=%s %s DSN sent to %s", e.id, action, e.mail_from)
        return True
