"""Fuzzing over the wire: random bytes and random command lines to the MX (aiosmtpd's
command parser, our handlers) and to IMAP (not authenticated, and authenticated with
a folder selected).

For every example: no reply carries exception text (a Python exception name, a
traceback, a source file or a path of the data folder); the server ends the session
within a deadline once the client stops sending (it never hangs); and a second client,
connected all along, still gets normal answers.  Budget: ESAM_FUZZ_EXAMPLES
(tests/slow/fuzz/budget.py); the MIME and parser properties are in tests/slow/fuzz/.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.protocol.harness import Running, client_tls
from tests.slow.fuzz.budget import EXAMPLES

pytestmark = pytest.mark.protocol

PASSWORD = "fuzz-Passw0rd"
DEADLINE = 5.0
LEAK = re.compile(rb"Traceback|\b[A-Z]\w*(?:Error|Exception)\b|File \"|\.py\b|site-packages|0x[0-9a-f]{6,}")
WIRE = settings(max_examples=max(10, EXAMPLES // 2), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

SMTP_VERBS = ["HELO", "EHLO", "MAIL FROM:", "RCPT TO:", "DATA", "RSET", "NOOP", "VRFY", "EXPN", "HELP",
              "STARTTLS", "AUTH", "BDAT", "XCLIENT", "MAIL FROM:<a@b> SIZE=", "RCPT TO:<x@esam.test> NOTIFY=",
              "MAIL FROM:<a@b> BODY=", "MAIL FROM:<a@b> SMTPUTF8"]  # fmt: skip
IMAP_VERBS = ["CAPABILITY", "NOOP", "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "LIST",
              "LSUB", "STATUS", "APPEND", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH",
              "STORE", "COPY", "MOVE", "UID FETCH", "UID SEARCH", "UID STORE", "UID COPY", "UID MOVE",
              "UID EXPUNGE", "IDLE", "NAMESPACE", "ID", "ENABLE", "GETQUOTA", "GETQUOTAROOT", "STARTTLS",
              "DONE"]  # no LOGIN/AUTHENTICATE: failed logins are slowed down on purpose (test_bruteforce)
ARG_PIECES = ["1", "1:*", "*", "0", "4294967296", "(", ")", "()", "((((((((", "\"", "\"\\\"", "{5}", "{3+}",
              "{99999999999}", "[", "]", "BODY[]", "BODY[1.2.3.HEADER.FIELDS (A)]<0.5>", "INBOX", "\"\"",
              "&AC8-", "&Jjo", "..", "%", "\x00", "\xff", "NIL", "\\Seen", "FLAGS", "+FLAGS.SILENT", "ALL",
              "CHARSET", "UTF-8", "X" * 300, "<a@b>", "<>", "<@x:y@z>", "=", "\t", "a@esam.test", "OR", "NOT"]


def lines(verbs: list[str]) -> st.SearchStrategy[bytes]:
    line = st.tuples(st.sampled_from(verbs), st.lists(st.sampled_from(ARG_PIECES) | st.text(max_size=8),
                                                        max_size=6))
    return st.lists(line.map(lambda t: (t[0] + " " + " ".join(t[1])).encode("utf-8", "surrogateescape")),
                    min_size=1, max_size=6).map(lambda ls: b"\r\n".join(ls) + b"\r\n")


payloads_smtp = st.one_of(st.binary(max_size=400), lines(SMTP_VERBS))
payloads_imap = st.one_of(st.binary(max_size=400),
                          lines(IMAP_VERBS).map(lambda b: b"".join(b"t%d " % i + x + b"\r\n"
                                                                     for i, x in enumerate(b.split(b"\r\n")[:-1]))))


def drain(sock: socket.socket) -> bytes:
    """Everything the server says after the client stopped sending, up to its close."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    out = b""
    deadline = time.monotonic() + DEADLINE
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"the server did not end the session within {DEADLINE}s; it said {out[-300:]!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except (ConnectionResetError, ssl.SSLError, OSError):
            return out
        if not chunk:
            return out
        out += chunk


def check_clean(reply: bytes, r: Running) -> None:
    m = LEAK.search(reply)
    assert m is None, f"exception text in a reply: {reply[max(0, m.start() - 80):m.end() + 80]!r}"
    assert str(r.cfg.data_dir).encode() not in reply


class Probe:
    """The second client: connected all along, must keep getting normal answers."""

    def __init__(self, sock: socket.socket, cmd: bytes, ok: re.Pattern[bytes]) -> None:
        self.sock, self.cmd, self.ok = sock, cmd, ok
        self.buf = b""

    def check(self) -> None:
        self.sock.sendall(self.cmd)
        self.sock.settimeout(DEADLINE)
        while not self.ok.search(self.buf):
            chunk = self.sock.recv(65536)
            assert chunk, "the probe connection was closed"
            self.buf += chunk
        self.buf = b""


@pytest.fixture
def server(make_running: Any) -> Iterator[Running]:
    r: Running = make_running(auth={"max_failures": 100000})
    r.add_mailbox("alice", PASSWORD)
    r.services.store.user("alice").deliver(b"Subject: hi\r\nFrom: a@b\r\n\r\nbody\r\n")
    yield r


def smtp_probe(r: Running) -> Probe:
    s = socket.create_connection(("127.0.0.1", r.ports["smtp"]), timeout=DEADLINE)
    p = Probe(s, b"NOOP\r\n", re.compile(rb"(^|\n)250[ -]"))
    p.buf = b""
    s.recv(4096)  # greeting
    return p


def imap_login(r: Running) -> ssl.SSLSocket:
    s = client_tls().wrap_socket(socket.create_connection(("127.0.0.1", r.ports["imaps"]), timeout=DEADLINE),
                                 server_hostname="127.0.0.1")
    buf = b""
    s.sendall(b'l LOGIN alice "' + PASSWORD.encode() + b'"\r\ns SELECT INBOX\r\n')
    while not re.search(rb"(^|\n)s (OK|NO|BAD)", buf):
        chunk = s.recv(65536)
        assert chunk, buf
        buf += chunk
    assert b"l OK" in buf and b"s OK" in buf, buf
    return s


def test_mx_random_input(server: Running) -> None:
    probe = smtp_probe(server)

    @WIRE
    @given(payloads_smtp)
    def one(payload: bytes) -> None:
        s = socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=DEADLINE)
        with s:
            s.sendall(payload)
            check_clean(drain(s), server)
        probe.check()

    one()


def test_imap_not_authenticated_random_input(server: Running) -> None:
    probe_sock = imap_login(server)
    probe = Probe(probe_sock, b"p NOOP\r\n", re.compile(rb"(^|\n)p OK"))

    @WIRE
    @given(payloads_imap)
    def one(payload: bytes) -> None:
        s = socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=DEADLINE)
        with s:
            s.sendall(payload)
            check_clean(drain(s), server)
        probe.check()

    one()


def test_imap_authenticated_random_input(server: Running) -> None:
    probe = Probe(imap_login(server), b"p NOOP\r\n", re.compile(rb"(^|\n)p OK"))

    @settings(WIRE, max_examples=max(10, EXAMPLES // 4))  # a TLS handshake and a LOGIN each
    @given(payloads_imap)
    def one(payload: bytes) -> None:
        s = imap_login(server)
        with s:
            s.sendall(payload)
            check_clean(drain(s), server)
        probe.check()

    one()
    # the mailbox survived whatever the fuzzer sent
    assert server.services.store.user("alice").folder("INBOX").status().messages >= 0
