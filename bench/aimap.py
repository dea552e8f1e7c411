"""A minimal asyncio IMAP client for the benchmark (implicit TLS, literals, IDLE).

Only what the loads need: a greeting, tagged commands whose untagged lines
(with ``{n}`` literals inline) are returned, and IDLE with a reader that
timestamps ``* N EXISTS`` pushes.  No parsing beyond that, so the client costs
little CPU next to the servers it drives.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time

_LITERAL = re.compile(rb"\{(\d+)\}\r\n$")


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class IMAPError(Exception):
    pass


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r = reader
        self.w = writer
        self.n = 0
        self.idle_tag = b""
        self.exists_at: list[tuple[float, int]] = []
        self.exists_event = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, port: int, ctx: ssl.SSLContext, host: str = "127.0.0.1") -> Client:
        r, w = await asyncio.open_connection(host, port, ssl=ctx, limit=1 << 22)
        c = cls(r, w)
        greeting = await c.line()
        if not greeting.startswith(b"* OK"):
            raise IMAPError(greeting[:200])
        return c

    async def line(self) -> bytes:
        """One response line; literals are read and appended inline."""
        out = await self.r.readuntil(b"\r\n")
        while True:
            m = _LITERAL.search(out)
            if not m:
                return out
            out += await self.r.readexactly(int(m.group(1)))
            out += await self.r.readuntil(b"\r\n")

    async def cmd(self, text: str) -> list[bytes]:
        self.n += 1
        tag = b"a%d" % self.n
        self.w.write(tag + b" " + text.encode() + b"\r\n")
        lines = []
        while True:
            ln = await self.line()
            if ln.startswith(tag + b" "):
                if ln[len(tag) + 1:len(tag) + 3] != b"OK":
                    raise IMAPError(ln[:200])
                return lines
            lines.append(ln)

    async def login(self, user: str, password: str) -> None:
        await self.cmd(f'LOGIN "{user}" "{password}"')

    async def idle(self) -> None:
        """Enter IDLE; a background reader then records every EXISTS push."""
        self.n += 1
        self.idle_tag = b"a%d" % self.n
        self.w.write(self.idle_tag + b" IDLE\r\n")
        while True:
            ln = await self.line()
            if ln.startswith(b"+"):
                break
        self._reader = asyncio.ensure_future(self._idle_reader())

    async def _idle_reader(self) -> None:
        try:
            while True:
                ln = await self.line()
                if ln.endswith(b" EXISTS\r\n"):
                    self.exists_at.append((time.perf_counter(), int(ln.split()[1])))
                    self.exists_event.set()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError, OSError):
            return

    async def logout(self) -> None:
        try:
            await self.cmd("LOGOUT")
        except (IMAPError, asyncio.IncompleteReadError, ConnectionError):
            pass
        self.close()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        try:
            self.w.close()
        except (RuntimeError, OSError):
            pass
