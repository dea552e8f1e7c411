"""The one raw line client of the test suite: byte-exact SMTP and IMAP over a plain socket,
STARTTLS or implicit TLS, for what smtplib/imaplib cannot do (pipelining, bad syntax, IDLE,
LITERAL-, half-open connections, exact untagged lines).

The socket, buffering, CRLF lines, IMAP literals and end-of-connection logic live here once;
a test module that wants its own call style (a default login, a fixed TLS context) subclasses
:class:`RawSMTP` or :class:`RawIMAP` in a few lines instead of writing another client.
"""

from __future__ import annotations

import re
import socket
import ssl
import time

_LITERAL = re.compile(rb"\{(\d+)\+?\}$")


def open_socket(
    port: int, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None, timeout: float = 10.0,
    server_hostname: str = "127.0.0.1",
) -> socket.socket:
    """A connected socket, wrapped in TLS (implicit TLS ports) when ``tls`` is given."""
    sock = socket.create_connection((host, port), timeout=timeout)
    return tls.wrap_socket(sock, server_hostname=server_hostname) if tls is not None else sock


def unverified_tls() -> ssl.SSLContext:
    """A client context that accepts any certificate (e2e servers use a self-signed one)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class RawConn:
    """CRLF lines over a socket, with deadlines."""

    def __init__(self, sock: socket.socket, *, timeout: float = 10.0) -> None:
        self.sock = sock
        self.buf = b""
        self.timeout = timeout

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def line(self, timeout: float | None = None) -> bytes:
        """One line without its CRLF; ``EOFError`` (with what was unread) when the peer closes."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed; unread {self.buf!r}")
        out, _, self.buf = self.buf.partition(b"\r\n")
        return out

    def exact(self, n: int) -> bytes:
        """Exactly ``n`` bytes (an IMAP literal)."""
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed; {len(self.buf)} of {n} literal bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def at_eof(self, timeout: float = 10.0) -> bool:
        """True once the server closes the connection within ``timeout`` (data is discarded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self._fill():
                    return True
            except TimeoutError:
                return False
            except (ConnectionResetError, ssl.SSLError):
                return True
        return False

    def starttls(self, ctx: ssl.SSLContext, server_hostname: str | None = None) -> None:
        """Upgrade after the server said yes; nothing may be left unread in plaintext."""
        assert self.buf == b"", f"plaintext left over before the TLS handshake: {self.buf!r}"
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class RawSMTP(RawConn):
    """SMTP replies (RFC 5321 4.2): ``reply()`` reads one, multi-line included."""

    def reply(self) -> tuple[int, list[bytes]]:
        """(code, [text of each line])."""
        lines = []
        while True:
            line = self.line()
            lines.append(line[4:])
            if line[3:4] != b"-":
                return int(line[:3]), lines

    def text(self) -> str:
        """The reply as ``"<code> <last line>"``, the form the reply constants have."""
        code, lines = self.reply()
        return f"{code} {lines[-1].decode()}"

    def cmd(self, line: bytes) -> tuple[int, list[bytes]]:
        self.send(line + b"\r\n")
        return self.reply()


class RawIMAP(RawConn):
    """IMAP responses with literals inlined (``{n}``/``{n+}``, RFC 3501 4.3, RFC 7888)."""

    def __init__(self, sock: socket.socket, *, timeout: float = 10.0) -> None:
        super().__init__(sock, timeout=timeout)
        self.n = 0
        self.greeting = self.line()

    def response(self, timeout: float | None = None) -> bytes:
        """One response line; every literal in it is read and inlined after a CRLF."""
        out = self.line(timeout)
        m = _LITERAL.search(out)
        while m:
            rest_of = self.exact(int(m.group(1)))
            tail = self.line(timeout)
            out += b"\r\n" + rest_of + tail
            m = _LITERAL.search(tail)
        return out

    def until(self, tag: bytes, timeout: float | None = None) -> list[bytes]:
        """Responses up to and including the tagged completion of ``tag``."""
        out = []
        while True:
            line = self.response(timeout)
            out.append(line)
            if line.startswith(tag + b" "):
                return out

    def tagged(self, tag: bytes, text: bytes, timeout: float | None = None) -> list[bytes]:
        """Send ``tag text`` and read up to its completion."""
        self.send(tag + b" " + text + b"\r\n")
        return self.until(tag, timeout)

    def next_tag(self) -> bytes:
        self.n += 1
        return b"t%d" % self.n

    def command(self, text: bytes, timeout: float | None = None) -> list[bytes]:
        """Like :meth:`tagged` with the next ``t<n>`` tag."""
        return self.tagged(self.next_tag(), text, timeout)

    def ok(self, text: bytes, timeout: float | None = None) -> list[bytes]:
        """:meth:`command`, asserting a tagged OK."""
        lines = self.command(text, timeout)
        assert lines[-1].split(b" ", 2)[1] == b"OK", lines
        return lines

    @staticmethod
    def status_of(reply: list[bytes]) -> bytes:
        """OK, NO or BAD of a reply from :meth:`tagged`/:meth:`command`."""
        return reply[-1].split(b" ", 2)[1]

    def login(self, user: str, password: str) -> None:
        self.ok(b'LOGIN "' + user.encode() + b'" "' + password.encode() + b'"')

    # -- IDLE (RFC 2177) ---------------------------------------------------------------------
    def idle(self) -> None:
        self._idle_tag = self.next_tag()
        self.send(self._idle_tag + b" IDLE\r\n")
        while not self.response().startswith(b"+"):
            pass

    def wait_for(self, pattern: bytes, timeout: float) -> tuple[bytes, float]:
        """The first response matching ``pattern`` within ``timeout``: (line, seconds waited)."""
        t0 = time.monotonic()
        rx = re.compile(pattern)
        while True:
            left = timeout - (time.monotonic() - t0)
            if left <= 0:
                raise TimeoutError(f"no line matching {pattern!r} within {timeout}s")
            try:
                line = self.response(left)
            except TimeoutError:
                raise TimeoutError(f"no line matching {pattern!r} within {timeout}s") from None
            if rx.search(line):
                return line, time.monotonic() - t0

    def done(self) -> list[bytes]:
        self.send(b"DONE\r\n")
        return self.until(self._idle_tag)

    def logout(self) -> None:
        """LOGOUT without waiting, then close."""
        try:
            self.send(b"z LOGOUT\r\n")
        except OSError:
            pass
        RawConn.close(self)
