"""Relay + QueueRunner against an in-process aiosmtpd sink on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email
from email import policy as email_policy

import pytest
import trustme
from aiosmtpd.smtp import SMTP

from esam_mail.services.mailflow.inbound_auth import StaticResolver
from esam_mail.services.mailflow.queue import QueueRunner, RetryPolicy
from esam_mail.services.mailflow.relay import Relay, TlsPolicy
from esam_mail.store.spool import Spool
from tests.ports import free_port

pytestmark = pytest.mark.protocol

MSG = b"From: alice@example.com\r\nTo: bob@other.test\r\nSubject: hi\r\n\r\nline one\r\n.leading dot\r\n"


class Sink:
    """aiosmtpd handler that records transactions and can refuse recipients."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes, bool]] = []
        self.rcpt_replies: dict[str, list[str]] = {}  # address -> replies, one per RCPT
        self.sessions = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.sessions += 1
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        replies = self.rcpt_replies.get(address)
        if replies:
            reply = replies.pop(0) if len(replies) > 1 else replies[0]
            if not reply.startswith("250"):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), envelope.content, session.ssl is not None)
        )
        return "250 2.0.0 queued as 1"


@pytest.fixture(scope="module")
def server_tls():
    ca = trustme.CA()
    cert = ca.issue_cert("sink.test")
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


async def start_sink(sink: Sink, *, port: int = 0, tls_context=None):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(sink, hostname="sink.test", tls_context=tls_context),
        "127.0.0.1",
        port,
    )
    return server, server.sockets[0].getsockname()[1]


async def stop(server):
    server.close()
    await server.wait_closed()


def relay_to(port: int, **kw) -> Relay:
    return Relay(
        local_hostname="relay.example.com",
        transport_map={"other.test": f"127.0.0.1:{port}"},
        timeout=10,
        **kw,
    )


def test_delivery_one_transaction_per_domain():
    async def go():
        sink = Sink()
        server, port = await start_sink(sink)
        try:
            res = await relay_to(port).deliver(
                "alice@example.com", ["bob@other.test", "carol@other.test"], MSG
            )
        finally:
            await stop(server)
        return sink, res

    sink, res = asyncio.run(go())
    assert [r.outcome for r in res] == ["delivered", "delivered"]
    assert res[0].reply == "250 2.0.0 queued as 1" and res[0].remote_mta == "127.0.0.1"
    assert len(sink.messages) == 1
    mail_from, rcpts, content, _ = sink.messages[0]
    assert (mail_from, rcpts) == ("alice@example.com", ["bob@other.test", "carol@other.test"])
    assert content.replace(b"\r\n", b"\n") == MSG.replace(b"\r\n", b"\n")  # dot-stuffing undone


def test_null_sender_and_mixed_recipient_outcomes():
    async def go():
        sink = Sink()
        sink.rcpt_replies = {
            "gone@other.test": ["550 5.1.1 no such user"],
            "busy@other.test": ["452 4.2.2 over quota"],
        }
        server, port = await start_sink(sink)
        try:
            return sink, await relay_to(port).deliver(
                "", ["ok@other.test", "gone@other.test", "busy@other.test"], MSG
            )
        finally:
            await stop(server)

    sink, res = asyncio.run(go())
    assert [r.outcome for r in res] == ["delivered", "failed", "retry"]
    assert res[1].enhanced == "5.1.1" and res[2].enhanced == "4.2.2"
    assert sink.messages[0][0] == "<>"  # aiosmtpd spells the null reverse-path "<>"
    assert sink.messages[0][1] == ["ok@other.test"]


def test_starttls_is_used_opportunistically(server_tls):
    async def go():
        sink = Sink()
        server, port = await start_sink(sink, tls_context=server_tls)
        try:
            return sink, await relay_to(port).deliver("a@example.com", ["b@other.test"], MSG)
        finally:
            await stop(server)

    sink, res = asyncio.run(go())
    assert res[0].outcome == "delivered"
    assert sink.messages[0][3] is True  # session.ssl set: the message went over TLS


def test_tls_required_but_not_offered_is_temporary():
    async def go():
        sink = Sink()
        server, port = await start_sink(sink)
        try:
            relay = relay_to(port, tls_policies={"other.test": TlsPolicy(required=True)})
            return sink, await relay.deliver("a@example.com", ["b@other.test"], MSG)
        finally:
            await stop(server)

    sink, res = asyncio.run(go())
    assert res[0].outcome == "retry" and res[0].enhanced == "4.7.4"
    assert sink.messages == []


def test_verified_tls_fails_against_untrusted_cert(server_tls):
    async def go():
        sink = Sink()
        server, port = await start_sink(sink, tls_context=server_tls)
        try:
            relay = relay_to(port, tls_policies={"*": TlsPolicy(verify=True, required=True)})
            return sink, await relay.deliver("a@example.com", ["b@other.test"], MSG)
        finally:
            await stop(server)

    sink, res = asyncio.run(go())
    assert res[0].outcome == "retry" and sink.messages == []


def test_mx_routing_null_mx_and_bad_addresses():
    async def go():
        sink = Sink()
        server, port = await start_sink(sink)
        resolver = StaticResolver(
            mx={"mx.test": [(20, "backup.mx.test"), (10, "primary.mx.test")], "nomail.test": [(0, ".")]},
            a={"primary.mx.test": ["127.0.0.1"], "backup.mx.test": ["127.0.0.1"]},
        )
        relay = Relay(local_hostname="relay.example.com", resolver=resolver, port=port, timeout=10)
        try:
            return sink, await relay.deliver(
                "a@example.com",
                ["x@mx.test", "y@nomail.test", "z@nxdomain.test", "bad\r\nRSET@mx.test"],
                MSG,
            )
        finally:
            await stop(server)

    sink, res = asyncio.run(go())
    assert res[0].outcome == "delivered" and res[0].remote_mta == "primary.mx.test"
    assert (res[1].code, res[1].enhanced) == (556, "5.1.10")
    assert (res[2].outcome, res[2].enhanced) == ("failed", "5.1.2")
    assert (res[3].outcome, res[3].code) == ("failed", 553)
    assert [m[1] for m in sink.messages] == [["x@mx.test"]]


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def runner(spool_dir, relay, clock, bounces):
    async def bounce(mail_from, rcpt, data):
        bounces.append((mail_from, rcpt, data))

    return QueueRunner(
        Spool(spool_dir, fsync=False),
        relay,
        bounce_deliver=bounce,
        reporting_mta="relay.example.com",
        clock=clock,
        policy=RetryPolicy(base=60, factor=2, cap=3600),
    )


def test_4xx_then_retry_succeeds(tmp_path):
    async def go():
        sink = Sink()
        sink.rcpt_replies = {"b@other.test": ["451 4.3.0 greylisted", "250 ok"]}
        server, port = await start_sink(sink)
        clock, bounces = Clock(), []
        q = runner(tmp_path, relay_to(port), clock, bounces)
        try:
            qid = await q.enqueue("a@example.com", ["b@other.test"], MSG)
            await q.run_once()
            assert sink.messages == []
            assert q.spool.get(qid).rcpts[0].reply == "451 4.3.0 greylisted"
            clock.t += 60
            await q.run_once()
        finally:
            await stop(server)
        return sink, q, bounces

    sink, q, bounces = asyncio.run(go())
    assert [m[1] for m in sink.messages] == [["b@other.test"]]
    assert q.spool.ids() == [] and bounces == []


def test_5xx_produces_a_bounce(tmp_path):
    async def go():
        sink = Sink()
        sink.rcpt_replies = {"gone@other.test": ["550 5.1.1 user unknown"]}
        server, port = await start_sink(sink)
        bounces: list = []
        q = runner(tmp_path, relay_to(port), Clock(), bounces)
        try:
            await q.enqueue("a@example.com", ["gone@other.test"], MSG)
            await q.run_once()
        finally:
            await stop(server)
        return q, bounces

    q, bounces = asyncio.run(go())
    assert q.spool.ids() == []
    ((mail_from, rcpt, dsn),) = bounces
    assert (mail_from, rcpt) == ("", "a@example.com")
    report = email.message_from_bytes(dsn, policy=email_policy.default)
    r = report.get_payload()[1].get_payload()[1]
    assert r["Action"] == "failed" and r["Status"] == "5.1.1"
    assert r["Diagnostic-Code"] == "smtp; 550 5.1.1 user unknown"
    assert r["Remote-MTA"] == "dns; 127.0.0.1"


def test_peer_down_then_up_and_queue_survives_restart(tmp_path):
    port = free_port()

    async def first_life():
        clock, bounces = Clock(), []
        q = runner(tmp_path, relay_to(port), clock, bounces)
        qid = await q.enqueue("a@example.com", ["b@other.test"], MSG)
        await q.run_once()  # nobody listening
        e = q.spool.get(qid)
        assert e.rcpts[0].status == "pending" and e.rcpts[0].reply.startswith("451 4.4.")
        return qid, clock.t, e.next_attempt

    _qid, t0, next_attempt = asyncio.run(first_life())
    assert next_attempt == t0 + 60

    async def second_life():  # a new process: new runner over the same spool
        sink = Sink()
        server, _ = await start_sink(sink, port=port)
        clock, bounces = Clock(), []
        clock.t = next_attempt
        q = runner(tmp_path, relay_to(port), clock, bounces)
        try:
            assert await q.run_once() == 1
        finally:
            await stop(server)
        return sink, q, bounces

    sink, q, bounces = asyncio.run(second_life())
    assert [m[1] for m in sink.messages] == [["b@other.test"]]
    assert q.spool.ids() == [] and bounces == []


def test_per_domain_connection_limit():
    async def go():
        sink = Sink()
        active = 0
        peak = 0
        release = asyncio.Event()
        orig = sink.handle_DATA

        async def slow_data(server, session, envelope):
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await release.wait()
            active -= 1
            return await orig(server, session, envelope)

        sink.handle_DATA = slow_data
        server, port = await start_sink(sink)
        relay = relay_to(port, per_domain_limit=1)
        try:
            tasks = [
                asyncio.create_task(relay.deliver("a@example.com", [f"r{i}@other.test"], MSG))
                for i in range(3)
            ]
            for _ in range(100):
                await asyncio.sleep(0.01)
                if active:
                    break
            release.set()
            results = await asyncio.gather(*tasks)
        finally:
            await stop(server)
        return peak, results, sink

    peak, results, sink = asyncio.run(go())
    assert peak == 1
    assert all(r[0].outcome == "delivered" for r in results) and len(sink.messages) == 3
