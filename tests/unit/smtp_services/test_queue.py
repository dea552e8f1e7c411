"""QueueRunner with a scripted relay and a fake clock; DSN structure."""

from __future__ import annotations

import asyncio
import email
from email import policy as email_policy

import pytest

from esam_mail.services.mailflow.queue import DsnRecipient, QueueRunner, RetryPolicy, build_dsn
from esam_mail.services.mailflow.relay import RecipientResult
from esam_mail.store.spool import Spool

MSG = (
    b"From: Alice <alice@example.com>\r\nTo: bob@other.test\r\nSubject: Report\r\n"
    b"Message-ID: <orig@example.com>\r\n\r\nbody\r\n"
)


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class ScriptedRelay:
    """Replies per recipient from a script: rcpt -> list of codes, one per attempt."""

    def __init__(self, script: dict[str, list[int]]) -> None:
        self.script = script
        self.calls: list[tuple[str, list[str]]] = []

    async def deliver(self, mail_from, rcpts, data):
        self.calls.append((mail_from, list(rcpts)))
        out = []
        for r in rcpts:
            code = self.script[r].pop(0) if len(self.script[r]) > 1 else self.script[r][0]
            text = {2: "2.0.0 ok", 4: "4.2.0 mailbox busy", 5: "5.1.1 no such user"}[code // 100]
            out.append(RecipientResult(r, code, text, "mx.other.test"))
        return out


class Bounces:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes]] = []
        self.fail = False

    async def __call__(self, mail_from, rcpt, data):
        if self.fail:
            raise OSError("local delivery down")
        self.sent.append((mail_from, rcpt, data))


def make(tmp_path, script, **kw):
    clock = Clock()
    relay = ScriptedRelay(script)
    bounces = Bounces()
    runner = QueueRunner(
        Spool(tmp_path, fsync=False),
        relay,
        bounce_deliver=bounces,
        reporting_mta="mx.example.com",
        policy=RetryPolicy(base=60, factor=2, cap=3600, delay_warning=4 * 3600, expiry=5 * 86400),
        clock=clock,
        **kw,
    )
    return runner, relay, bounces, clock


def parse(dsn: bytes):
    return email.message_from_bytes(dsn, policy=email_policy.default)


def test_backoff_schedule():
    p = RetryPolicy(base=60, factor=2, cap=3600)
    assert [p.delay(n) for n in range(1, 9)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_delivered_entry_is_deleted(tmp_path):
    runner, relay, bounces, _ = make(tmp_path, {"bob@other.test": [250]})

    async def go():
        await runner.enqueue("alice@example.com", ["bob@other.test"], MSG)
        return await runner.run_once()

    assert asyncio.run(go()) == 1
    assert relay.calls == [("alice@example.com", ["bob@other.test"])]
    assert runner.spool.ids() == [] and bounces.sent == []


def test_4xx_retries_with_backoff_then_succeeds(tmp_path):
    runner, relay, bounces, clock = make(tmp_path, {"bob@other.test": [451, 451, 250]})

    async def go():
        qid = await runner.enqueue("alice@example.com", ["bob@other.test"], MSG)
        await runner.run_once()
        e = runner.spool.get(qid)
        assert (e.attempts, e.next_attempt - clock.t) == (1, 60)
        assert e.rcpts[0].reply == "451 4.2.0 mailbox busy"
        assert await runner.run_once() == 0  # not due yet
        clock.t += 60
        await runner.run_once()
        assert runner.spool.get(qid).next_attempt - clock.t == 120
        clock.t += 120
        await runner.run_once()
        return qid

    qid = asyncio.run(go())
    assert len(relay.calls) == 3 and runner.spool.ids() == [] and bounces.sent == []
    with pytest.raises(KeyError):
        runner.spool.get(qid)


def test_5xx_bounces_immediately_only_failed_recipient(tmp_path):
    runner, _relay, bounces, _ = make(tmp_path, {"bob@other.test": [550], "carol@other.test": [451]})

    async def go():
        qid = await runner.enqueue(
            "alice@example.com", ["bob@other.test", "carol@other.test"], MSG, dsn_envelope_id="ENV-1"
        )
        await runner.run_once()
        return qid

    qid = asyncio.run(go())
    assert len(bounces.sent) == 1
    mail_from, rcpt, dsn = bounces.sent[0]
    assert (mail_from, rcpt) == ("", "alice@example.com")
    msg = parse(dsn)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    text, status, headers = msg.get_payload()
    assert text.get_content_type() == "text/plain"
    assert status.get_content_type() == "message/delivery-status"
    assert headers.get_content_type() == "text/rfc822-headers"
    per_msg, *per_rcpt = status.get_payload()
    assert per_msg["Reporting-MTA"] == "dns; mx.example.com"
    assert per_msg["Original-Envelope-Id"] == "ENV-1"
    assert len(per_rcpt) == 1
    r = per_rcpt[0]
    assert r["Final-Recipient"] == "rfc822; bob@other.test"
    assert r["Action"] == "failed"
    assert r["Status"] == "5.1.1"
    assert r["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user"
    assert r["Remote-MTA"] == "dns; mx.other.test"
    assert b"Subject: Report" in headers.get_payload(decode=True)
    assert b"body" not in headers.get_payload(decode=True)
    e = runner.spool.get(qid)  # carol still pending
    assert [x.status for x in e.rcpts] == ["failed", "pending"]
    assert e.rcpts[0].notified


def test_null_sender_never_bounced(tmp_path):
    runner, _, bounces, _ = make(tmp_path, {"bob@other.test": [550]})

    async def go():
        await runner.enqueue("", ["bob@other.test"], MSG)
        await runner.run_once()

    asyncio.run(go())
    assert bounces.sent == [] and runner.spool.ids() == []


def test_delay_warning_then_expiry_bounce(tmp_path):
    runner, relay, bounces, clock = make(tmp_path, {"bob@other.test": [451]})

    async def go():
        qid = await runner.enqueue("alice@example.com", ["bob@other.test"], MSG)
        start = clock.t
        while clock.t - start < 4 * 3600:
            await runner.run_once()
            clock.t = runner.spool.get(qid).next_attempt
        await runner.run_once()
        assert len(bounces.sent) == 1
        delayed = parse(bounces.sent[0][2])
        r = delayed.get_payload()[1].get_payload()[1]
        assert (r["Action"], r["Status"]) == ("delayed", "4.2.0")
        assert r["Will-Retry-Until"]
        assert "delayed" in delayed["Subject"].lower()
        # No second delay notice.
        clock.t = runner.spool.get(qid).next_attempt
        await runner.run_once()
        assert len(bounces.sent) == 1
        clock.t = start + 5 * 86400
        await runner.run_once()
        return qid

    asyncio.run(go())
    assert len(bounces.sent) == 2
    r = parse(bounces.sent[1][2]).get_payload()[1].get_payload()[1]
    assert (r["Action"], r["Status"]) == ("failed", "5.4.7")
    assert r["Diagnostic-Code"] == "smtp; 451 4.2.0 mailbox busy"
    assert runner.spool.ids() == []
    assert all(c == ("alice@example.com", ["bob@other.test"]) for c in relay.calls)


def test_bounce_handover_failure_is_retried(tmp_path):
    runner, relay, bounces, clock = make(tmp_path, {"bob@other.test": [550]})
    bounces.fail = True

    async def go():
        qid = await runner.enqueue("alice@example.com", ["bob@other.test"], MSG)
        await runner.run_once()
        assert runner.spool.ids() == [qid]
        bounces.fail = False
        clock.t += 60
        await runner.run_once()

    asyncio.run(go())
    assert len(relay.calls) == 1  # the recipient is not retried, only the DSN
    assert len(bounces.sent) == 1 and runner.spool.ids() == []


async def _until(cond, timeout=10.0):
    """Wait (polling) for ``cond()``: a deadline in loop time, not a count of naps, so a
    loaded machine only makes it slower."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def test_retry_now_and_run_loop_wakes_on_kick_and_stops(tmp_path):
    runner, relay, _, _clock = make(tmp_path, {"bob@other.test": [451, 250]}, max_sleep=30)

    async def go():
        task = asyncio.create_task(runner.run())
        qid = await runner.enqueue("alice@example.com", ["bob@other.test"], MSG)
        await _until(lambda: relay.calls)
        # The relay answered 451, but the attempt is over only when the deferral is written
        # and the entry released: until then retry_now refuses it (it is being delivered).
        # The race CI hit under load was calling retry_now inside that window.
        await _until(lambda: [e.attempts for e in runner.spool.list()] == [1])
        retried = False
        for _ in range(1000):
            retried = await runner.retry_now(qid)
            if retried:
                break
            await asyncio.sleep(0.01)  # still claimed by the finishing attempt
        assert retried
        await _until(lambda: not runner.spool.ids())
        assert len(relay.calls) == 2
        assert not await runner.retry_now(qid)  # gone
        await asyncio.wait_for(runner.stop(), 5)
        assert task.done()

    asyncio.run(go())
    assert len(relay.calls) == 2


def test_build_dsn_roundtrip_8bit_headers():
    dsn = build_dsn(
        reporting_mta="mx.example.com",
        original_sender="a@example.com",
        recipients=[DsnRecipient("b@x.test", "failed", "5.0.0", "554 no\r\nway")],
        original="Subject: Grüße\r\n\r\nx".encode(),
        arrival_date=0,
        now=60,
    )
    msg = parse(dsn)
    r = msg.get_payload()[1].get_payload()[1]
    assert r["Diagnostic-Code"] == "smtp; 554 no way"
    assert msg.get_payload()[2]["Content-Transfer-Encoding"] == "8bit"
    assert msg["Auto-Submitted"] == "auto-replied"
