"""Soak: thousands of mixed SMTP/IMAP sessions against `esam serve`, then every live
counter in /metrics must be back at zero and a new STARTTLS session must be served.

The mix (one asyncio client process, 16 at a time, all from 127.0.0.1, so one leaked
per-IP slot per ~50 sessions would lock the address out long before the end):
plain EHLO/QUIT, plain deliveries (DATA and pipelined BDAT), STARTTLS on 25 and 587, implicit TLS on 465,
connections cut in the middle of the STARTTLS or implicit-TLS handshake (RST), cut in
the middle of DATA (RST), failed AUTH, IMAP STARTTLS/LOGOUT and IMAPS cut mid-handshake;
meanwhile a real Postfix relays messages into the MX (with STARTTLS, as it does when
offered).  Marked e2e.

``ESAM_SOAK_SESSIONS`` sets the number of sessions: 1,500 by default (about 10 s of sessions
on the 2-core CI machine), which is still well past the ~600 sessions after which the code
before the per-IP slot fix (eacebf8) locked the address out with 421; the leak also shows
as a counter left above zero at the end.  Set it to 5200 or more for a longer soak.
"""

from __future__ import annotations

import asyncio
import base64
import os
import smtplib
import socket
import ssl
import struct
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import EsamProcess
from tests.e2e.postfix import PostfixPeer, free_port, wait_for
from tests.e2e.test_smtp_postfix import _need_postfix

pytestmark = pytest.mark.e2e

SESSIONS = int(os.environ.get("ESAM_SOAK_SESSIONS", "1500"))
CONCURRENCY = 16
POSTFIX_MESSAGES = 150
PASSWORD = "s3cret-Passw0rd"
LIVE = ("esam_smtp_sessions", "esam_smtp_connection_slots", "esam_smtp_peer_addresses",
        "esam_smtp_transactions_in_flight", "esam_imap_sessions", "esam_imap_peer_addresses")


def _tls_ctx() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no CA store to load: we verify nothing here
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


_CTX = _tls_ctx()


def tls_ctx() -> ssl.SSLContext:
    return _CTX


def client_hello() -> bytes:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = tls_ctx().wrap_bio(incoming, outgoing)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


HELLO = client_hello()


class Session:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w = reader, writer

    @classmethod
    async def open(cls, port: int, tls: bool = False) -> Session:
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=tls_ctx() if tls else None,
                                             server_hostname="" if tls else None)
        return cls(r, w)

    async def reply(self) -> int:
        while True:
            line = await asyncio.wait_for(self.r.readline(), 30)
            if not line:
                raise EOFError
            if line[3:4] != b"-":
                return int(line[:3])

    async def cmd(self, line: bytes) -> int:
        self.w.write(line + b"\r\n")
        return await self.reply()

    async def starttls(self) -> None:
        assert await self.cmd(b"STARTTLS") == 220
        await self.w.start_tls(tls_ctx(), server_hostname="")

    def reset(self) -> None:
        sock = self.w.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.w.transport.abort()

    async def quit(self) -> None:
        assert await self.cmd(b"QUIT") == 221
        self.w.close()


MSG = b"From: bob@other.test\r\nTo: alice@esam.test\r\nSubject: soak\r\n\r\nsoak body\r\n.\r\n"


async def smtp_plain(p: dict[str, int]) -> None:
    s = await Session.open(p["smtp"])
    await s.reply()
    await s.cmd(b"EHLO soak.other.test")
    await s.cmd(b"NOOP")
    await s.quit()


async def smtp_deliver(p: dict[str, int]) -> None:
    s = await Session.open(p["smtp"])
    await s.reply()
    await s.cmd(b"EHLO soak.other.test")
    assert await s.cmd(b"MAIL FROM:<>") == 250  # a bounce, as peers send them
    assert await s.cmd(b"RCPT TO:<alice@esam.test>") == 250
    assert await s.cmd(b"DATA") == 354
    s.w.write(MSG)
    assert await s.reply() == 250
    await s.quit()


async def smtp_bdat(p: dict[str, int]) -> None:
    s = await Session.open(p["smtp"])
    await s.reply()
    await s.cmd(b"EHLO soak.other.test")
    body = MSG[:-3]  # BDAT carries the octets as they are: no end-of-data dot
    s.w.write(b"MAIL FROM:<bob@other.test>\r\nRCPT TO:<alice@esam.test>\r\nBDAT %d LAST\r\n%s" % (len(body), body))
    assert [await s.reply() for _ in range(3)] == [250, 250, 250]
    await s.quit()


async def smtp_starttls(p: dict[str, int], listener: str = "smtp") -> None:
    s = await Session.open(p[listener])
    await s.reply()
    await s.cmd(b"EHLO soak.other.test")
    await s.starttls()
    assert await s.cmd(b"EHLO soak.other.test") == 250
    await s.quit()


async def submission_starttls(p: dict[str, int]) -> None:
    await smtp_starttls(p, "submission")


async def implicit_tls(p: dict[str, int]) -> None:
    s = await Session.open(p["submissions"], tls=True)
    await s.reply()
    await s.cmd(b"EHLO soak.other.test")
    await s.quit()


async def auth_failure(p: dict[str, int]) -> None:
    s = await Session.open(p["submissions"], tls=True)
    await s.reply()
    await s.cmd(b"EHLO soak.other.test")
    blob = base64.b64encode(b"\0nobody\0wrong").decode()
    assert await s.cmd(f"AUTH PLAIN {blob}".encode()) == 535
    await s.quit()


async def cut_mid_starttls(p: dict[str, int]) -> None:
    s = await Session.open(p["smtp"])
    await s.reply()
    await s.cmd(b"EHLO soak.other.test")
    assert await s.cmd(b"STARTTLS") == 220
    s.w.write(HELLO[: len(HELLO) // 2])
    await s.w.drain()
    s.reset()


async def cut_mid_data(p: dict[str, int]) -> None:
    s = await Session.open(p["smtp"])
    await s.reply()
    await s.cmd(b"EHLO soak.other.test")
    assert await s.cmd(b"MAIL FROM:<bob@other.test>") == 250
    assert await s.cmd(b"RCPT TO:<alice@esam.test>") == 250
    assert await s.cmd(b"DATA") == 354
    s.w.write(b"Subject: cut\r\n\r\n" + b"x" * 5000)
    await s.w.drain()
    s.reset()


async def cut_mid_implicit_handshake(p: dict[str, int]) -> None:
    s = await Session.open(p["submissions"])
    s.w.write(HELLO[:60])
    await s.w.drain()
    s.reset()


async def imap_starttls(p: dict[str, int]) -> None:
    s = await Session.open(p["imap"])
    await s.r.readline()
    s.w.write(b"a STARTTLS\r\n")
    assert (await s.r.readline()).startswith(b"a OK")
    await s.w.start_tls(tls_ctx(), server_hostname="")
    s.w.write(b"b LOGOUT\r\n")
    while not (await s.r.readline()).startswith(b"b OK"):
        pass
    s.w.close()


async def imaps_cut(p: dict[str, int]) -> None:
    s = await Session.open(p["imaps"])
    s.w.write(HELLO[: len(HELLO) // 2])
    await s.w.drain()
    s.reset()


_ROUND = [smtp_plain, smtp_bdat, smtp_deliver, smtp_starttls, submission_starttls, implicit_tls,
          cut_mid_starttls, cut_mid_data, cut_mid_implicit_handshake, imap_starttls, imaps_cut]
#: failed logins are slowed down on purpose (growing delay): one per two rounds
MIX = [*_ROUND, *_ROUND, auth_failure]


async def drive(ports: dict[str, int], n: int) -> Counter[str]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    done: Counter[str] = Counter()

    async def worker() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            kind = MIX[i % len(MIX)]
            try:
                await kind(ports)
                done[kind.__name__] += 1
            except Exception as e:  # counted, and the test asserts there are none
                done[f"error:{kind.__name__}:{type(e).__name__}"] += 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done


def live_values(http: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    out = dict.fromkeys(LIVE, 0.0)
    seen = set()
    for line in text.splitlines():
        name = line.split("{")[0].split(" ")[0]
        if name in out:
            out[name] += float(line.rsplit(" ", 1)[1])
            seen.add(name)
    assert seen == set(LIVE), f"missing from /metrics: {set(LIVE) - seen}"
    return out


@pytest.fixture
def soak(make_esam: Any) -> Iterator[tuple[EsamProcess, PostfixPeer]]:
    _need_postfix()
    mx_port = free_port()
    postfix = PostfixPeer(["carol"], esam_mx_port=mx_port)
    esam: EsamProcess = make_esam(
        listen={"smtp": f"127.0.0.1:{mx_port}"},
        smtp={"timeout": 30},
        store={"fsync": False},  # this soaks sessions, not the disk
    )
    esam.esam("init")
    esam.add_mailbox("alice", PASSWORD)
    try:
        postfix.start()
        esam.start()
        yield esam, postfix
    finally:
        postfix.cleanup()


def test_soak_mixed_sessions_leave_every_counter_at_zero(soak: tuple[EsamProcess, PostfixPeer]) -> None:
    esam, postfix = soak
    ports = esam.ports
    relayed: list[int] = []

    def through_postfix() -> None:
        msg = b"From: carol@other.test\r\nTo: alice@esam.test\r\nSubject: via postfix\r\n\r\nhi\r\n"
        with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as s:
            for _ in range(POSTFIX_MESSAGES):
                s.sendmail("carol@other.test", ["alice@esam.test"], msg)
                relayed.append(1)

    feeder = threading.Thread(target=through_postfix)
    started = time.monotonic()
    feeder.start()
    done = asyncio.run(drive(ports, SESSIONS))
    feeder.join(120)
    elapsed = time.monotonic() - started
    errors = {k: v for k, v in done.items() if k.startswith("error:")}
    assert not errors, (errors, esam.log.read_text()[-3000:])
    assert sum(done.values()) == SESSIONS
    assert len(relayed) == POSTFIX_MESSAGES
    # Postfix hands every message to our MX (its own STARTTLS sessions count too)
    assert wait_for(lambda: postfix.log().count("status=sent") >= POSTFIX_MESSAGES, 120), postfix.log()[-3000:]
    assert "TLS connection established to 127.0.0.1" in postfix.log()

    zero = dict.fromkeys(LIVE, 0.0)
    got = wait_for(lambda: (v := live_values(ports["http"])) == zero and v, 30) or live_values(ports["http"])
    assert got == zero, got

    # and a new STARTTLS session from the same address is served, on MX and submission
    for listener in ("smtp", "submission"):
        with smtplib.SMTP("127.0.0.1", ports[listener], timeout=30) as s:
            s.starttls(context=tls_ctx())
            assert s.ehlo("after.soak")[0] == 250
    print(f"soak: {SESSIONS} sessions + {POSTFIX_MESSAGES} via Postfix in {elapsed:.1f} s: {dict(done)}")
