"""Load and probe clients for the loop-lag guards, run as subprocesses.

The server under test runs in the pytest process; its clients run here, in other
processes, so that their own CPU work (parsing 10,000 FETCH lines) never competes
with the server for the GIL and the figures are the server's alone.

    python -m tests.protocol.loadclient smtp-probe PORT STOPFILE
        connect to the MX every 20 ms until STOPFILE exists; print the greeting
        latencies (seconds) as JSON.
    python -m tests.protocol.loadclient imap-probe PORT USER PASSWORD STOPFILE
        one logged-in IMAPS session sending NOOP every 20 ms; print round trips.
    python -m tests.protocol.loadclient imap-run PORT USER PASSWORD COMMAND...
        log in and run each raw COMMAND (``SELECT INBOX``...); print each one's
        seconds and last response line as JSON.
    python -m tests.protocol.loadclient imap-append PORT USER PASSWORD SIZE SEND
        announce an APPEND literal of SIZE bytes, send SEND bytes of it (all of it
        when SEND == SIZE, then wait for the tagged reply); print the reply.  With
        SEND < SIZE it keeps the connection open until stdin closes.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import sys
import time


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Session:
    """A tiny raw IMAP client (imaplib would buffer literals in RAM)."""

    def __init__(self, port: int) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.sock = _tls().wrap_socket(raw, server_hostname="127.0.0.1")
        self.buf = b""
        self.n = 0
        self.line()

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("server closed the connection")
            self.buf += chunk
        out, self.buf = self.buf.split(b"\r\n", 1)
        m = re.search(rb"\{(\d+)\}$", out)
        if m:  # skip a literal in a response
            need = int(m.group(1))
            while len(self.buf) < need:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    raise EOFError("server closed the connection")
                self.buf += chunk
            self.buf = self.buf[need:]
            out += b" <literal> " + self.line()
        return out

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, text: bytes) -> bytes:
        self.n += 1
        tag = b"c%d" % self.n
        self.send(tag + b" " + text + b"\r\n")
        while True:
            line = self.line()
            if line.startswith(tag + b" "):
                return line

    def login(self, user: str, password: str) -> None:
        reply = self.cmd(b'LOGIN "%s" "%s"' % (user.encode(), password.encode()))
        if b" OK" not in reply:
            raise SystemExit(f"login failed: {reply!r}")


def smtp_probe(port: int, stopfile: str) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    while not os.path.exists(stopfile):
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            out.append((time.time(), time.monotonic() - t0))
            s.sendall(b"QUIT\r\n")
        time.sleep(0.02)
    return out


def imap_probe(port: int, user: str, password: str, stopfile: str) -> list[float]:
    s = Session(port)
    s.login(user, password)
    out: list[float] = []
    print("ready", file=sys.stderr, flush=True)
    while not os.path.exists(stopfile):
        t0 = time.monotonic()
        s.cmd(b"NOOP")
        out.append(time.monotonic() - t0)
        time.sleep(0.02)
    return out


def imap_run(port: int, user: str, password: str,
             commands: list[str]) -> list[tuple[float, str, float]]:
    s = Session(port)
    s.login(user, password)
    out = []
    for c in commands:
        t0 = time.monotonic()
        start = time.time()
        reply = s.cmd(c.encode())
        out.append((time.monotonic() - t0, reply.decode("utf-8", "replace")[:200], start))
    return out


def imap_append(port: int, user: str, password: str, size: int, send: int) -> str:
    s = Session(port)
    s.login(user, password)
    s.send(b"a1 APPEND INBOX {%d}\r\n" % size)
    go = s.line()
    if not go.startswith(b"+"):
        return go.decode()
    head = b"Subject: big\r\n\r\n"
    block = b"x" * 65534 + b"\r\n"
    sent = 0
    s.send(head[: min(len(head), send)])
    sent += min(len(head), send)
    while sent < send:
        n = min(len(block), send - sent)
        s.send(block[:n])
        sent += n
    if send < size:
        print("sent", file=sys.stderr, flush=True)
        sys.stdin.read()  # hold the half-sent literal until the test says so
        return "held"
    s.send(b"\r\n")
    while True:
        line = s.line()
        if line.startswith(b"a1 "):
            return line.decode()


def main(argv: list[str]) -> None:
    mode, port = argv[0], int(argv[1])
    result: object
    if mode == "smtp-probe":
        result = smtp_probe(port, argv[2])
    elif mode == "imap-probe":
        result = imap_probe(port, argv[2], argv[3], argv[4])
    elif mode == "imap-run":
        result = imap_run(port, argv[2], argv[3], argv[4:])
    elif mode == "imap-append":
        result = imap_append(port, argv[2], argv[3], int(argv[4]), int(argv[5]))
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
