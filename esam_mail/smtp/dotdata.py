"""Reading a DATA body (RFC 5321 4.1.1.4, 4.5.2) in bulk instead of line by line.

aiosmtpd reads DATA one line at a time (an ``await readuntil`` plus list and join work per
line, ~130 lines for a 10 KiB message) from a stream whose limit is one line (1001 bytes), so
the transport is also paused and resumed every 2 KiB.  Here the body is found with
``readuntil(b"\\r\\n.\\r\\n")`` over large pieces: a :class:`asyncio.LimitOverrunError` is not
an error but tells how many bytes certainly hold no terminator (``consumed``), which are taken
with ``readexactly`` and checked; bytes after the terminator (a pipelined next command) stay
in the stream.  Dot-stuffing is undone once, on the whole body.

The outcome is the same as aiosmtpd's: the body as the client meant it, or, after the
terminator has been read (the client sends everything before it listens, RFC 5321 4.2.5),
``TOO_MUCH`` when the stuffed body exceeds ``max_size`` or ``TOO_LONG`` when a line with its
CRLF exceeds ``max_line`` octets.  Nothing refused is kept in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

TOO_MUCH = "too_much"
TOO_LONG = "too_long"

_END = b"\r\n.\r\n"
#: what may already have been read of a terminator that starts at a line start
_PARTIAL = (b"\r\n.\r", b"\r\n.", b"\r\n", b"\r")
#: stream limit while a body is read: pieces this big, pause only past twice this
PIECE = 256 * 1024


@contextlib.contextmanager
def _stream_limit(reader: asyncio.StreamReader, limit: int) -> Iterator[None]:
    """Raise the stream's limit (the piece size and the flow-control mark) for a while.
    CPython's StreamReader keeps it in ``_limit``; without that attribute nothing changes
    and the body is simply read in smaller pieces."""
    old = getattr(reader, "_limit", None)
    if not isinstance(old, int) or old >= limit:
        yield
        return
    reader._limit = limit  # type: ignore[attr-defined]
    try:
        yield
    finally:
        reader._limit = old  # type: ignore[attr-defined]


class _Body:
    """The stuffed body as it arrives: size and line-length checks, then kept or dropped."""

    def __init__(self, max_size: int | None, max_line: int) -> None:
        self.max_size = max_size or 0
        self.max_line = max_line
        self.parts: list[bytes] = []
        self.size = 0
        self.line = 0  # length of the unfinished last line so far
        self.error: str | None = None

    def add(self, piece: bytes) -> None:
        if not piece:
            return
        self.size += len(piece)
        if self.error is None:
            first = piece.find(b"\n")
            if first < 0:
                self.line += len(piece)
                longest = self.line
            else:
                last = piece.rfind(b"\n")
                longest = self.line + first + 1
                if last > first:
                    longest = max(longest, 1 + max(map(len, piece[first + 1 : last].split(b"\n"))))
                self.line = len(piece) - last - 1
                longest = max(longest, self.line)
            if longest > self.max_line:
                self.error = TOO_LONG
            elif self.max_size and self.size > self.max_size:
                self.error = TOO_MUCH
        if self.error is None:
            self.parts.append(piece)
        else:
            self.parts.clear()

    def content(self) -> bytes:
        """The body without the terminator's ``.CRLF`` and with dot-stuffing undone."""
        data = b"".join(self.parts)
        self.parts.clear()
        if data.startswith(b"."):
            data = data[1:]
        return data.replace(b"\r\n.", b"\r\n")


async def read_dot_data(
    reader: asyncio.StreamReader, *, max_size: int | None, max_line: int
) -> tuple[bytes | None, str | None]:
    """Read a DATA body up to and including its ``CRLF.CRLF``; return ``(body, None)`` or
    ``(None, TOO_MUCH | TOO_LONG)``.  Raises :class:`asyncio.IncompleteReadError` when the
    stream ends first."""
    body = _Body(max_size, max_line)
    # The stream is at a line start, so the terminator may be a bare ".CRLF" whose CRLF was
    # the end of DATA's own line.  Step byte by byte while what was read could be the
    # beginning of a terminator; after that any terminator is whole in the stream.
    # Only a body that begins with empty lines steps for long; what is read is passed on in
    # blocks, keeping the last 4 bytes (a terminator's start) back.
    prev, head = b"\r\n", b""
    while (prev + head).endswith(_PARTIAL):
        head += await reader.readexactly(1)
        if (prev + head).endswith(_END):
            body.add(head[:-3])
            if body.error is not None:
                return None, body.error
            return body.content(), None
        if len(head) > 64:
            body.add(head[:-4])
            prev, head = head[-6:-4], head[-4:]
    body.add(head)
    with _stream_limit(reader, PIECE):
        while True:
            try:
                piece = await reader.readuntil(_END)
            except asyncio.LimitOverrunError as e:
                body.add(await reader.readexactly(e.consumed))
                continue
            body.add(piece[:-3])  # keep the CRLF that ends the last line
            break
    if body.error is not None:
        return None, body.error
    return body.content(), None
