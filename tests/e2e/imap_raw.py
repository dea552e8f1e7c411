"""A tiny blocking IMAP client over implicit TLS, for IDLE and exact untagged lines.

imaplib (3.11) has no IDLE, and the scale-out tests need to see the ``* N EXISTS``
push with a deadline, so this one speaks the few commands the tests use.
"""

from __future__ import annotations

import re
import socket
import ssl
import time


class RawIMAP:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection((host, port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw)
        self.buf = b""
        self.n = 0
        greeting = self.line()
        assert greeting.startswith(b"* OK"), greeting

    def line(self, timeout: float | None = None) -> bytes:
        """One CRLF line (literals are returned inline as raw bytes after it)."""
        self.sock.settimeout(timeout if timeout is not None else 10.0)
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        out, _, self.buf = self.buf.partition(b"\r\n")
        m = re.search(rb"\{(\d+)\}$", out)
        if m:  # a literal follows: read it and the rest of the line
            need = int(m.group(1))
            while len(self.buf) < need:
                self.buf += self.sock.recv(65536)
            lit, self.buf = self.buf[:need], self.buf[need:]
            out += b"\r\n" + lit + self.line(timeout)
        return out

    def cmd(self, text: str) -> list[bytes]:
        """Send a command; return every line up to and including the tagged reply."""
        self.n += 1
        tag = f"t{self.n}".encode()
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        lines = []
        while True:
            ln = self.line()
            lines.append(ln)
            if ln.startswith(tag + b" "):
                assert ln.split()[1] == b"OK", lines
                return lines

    def login(self, user: str, password: str) -> None:
        self.cmd(f'LOGIN "{user}" "{password}"')

    def idle(self) -> None:
        self.n += 1
        self._idle_tag = f"t{self.n}".encode()
        self.sock.sendall(self._idle_tag + b" IDLE\r\n")
        while True:
            ln = self.line()
            if ln.startswith(b"+"):
                return

    def wait_for(self, pattern: bytes, timeout: float) -> tuple[bytes, float]:
        """Wait for an untagged line matching ``pattern``; (line, seconds waited)."""
        t0 = time.monotonic()
        rx = re.compile(pattern)
        while True:
            left = timeout - (time.monotonic() - t0)
            if left <= 0:
                raise TimeoutError(f"no line matching {pattern!r} within {timeout}s")
            try:
                ln = self.line(left)
            except TimeoutError:
                raise TimeoutError(f"no line matching {pattern!r} within {timeout}s") from None
            if rx.search(ln):
                return ln, time.monotonic() - t0

    def done(self) -> None:
        self.sock.sendall(b"DONE\r\n")
        while True:
            ln = self.line()
            if ln.startswith(self._idle_tag + b" "):
                return

    def close(self) -> None:
        try:
            self.sock.sendall(b"z LOGOUT\r\n")
        except OSError:
            pass
        self.sock.close()
