"""One attachment of a stored message, decoded as it is read: bounded memory per download.

:func:`locate` (blocking: on the mailbox pool) finds the part the webmail numbers
``index`` (the email package's ``walk()`` order, as the message page lists them), keeps
the message file open, and notes where the part's encoded body lies in it.  The
parse that finds it is transient; what a download then holds is one read block and
its decoded form.  :meth:`PartSource.chunks` reads the file block by block off the loop
and decodes base64 and quoted-printable incrementally.

The result is byte-identical to ``part.get_payload(decode=True)``: a part whose
encoding the incremental decoders cannot reproduce exactly (base64 with stray
characters or bad padding, 8-bit text, uuencode, unknown encodings) is decoded by the
email package as before and served from memory, in pieces as well.
"""

from __future__ import annotations

import asyncio
import binascii
import bisect
import contextlib
import mimetypes
import os
import re
import secrets
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

__all__ = ["BLOCK", "PartSource", "locate"]

BLOCK = 256 * 1024  # octets of the file read (and decoded) at once

_CLEAN_B64 = re.compile(rb"[A-Za-z0-9+/\r\n]*(?:[A-Za-z0-9+/]={1,2})?[\r\n]*")


@dataclass
class PartSource:
    """A leaf part: its type, file name and (when known) decoded size, and its bytes."""

    ctype: str
    filename: str
    size: int | None
    fd: int = -1  # the message file (open: a rename by a flag change does not matter)
    start: int = 0
    end: int = 0
    cte: str = ""
    data: bytes | None = None  # decoded in memory (encodings decoded only by the email package)
    _closed: bool = field(default=False, repr=False)
    _reading: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def close(self) -> None:
        """Release the file now, or when the read in flight on a worker thread ends
        (a download cancelled mid-read must not close a descriptor in use)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._reading:
                return
        self._release()

    def _release(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self) -> None:
        self.close()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The decoded content in pieces of about :data:`BLOCK` octets (closes the file)."""
        try:
            if self.data is not None:
                for i in range(0, len(self.data), BLOCK):
                    yield self.data[i:i + BLOCK]
                return
            decoder = _decoder(self.cte)
            pos = self.start
            while pos < self.end:
                n = min(BLOCK, self.end - pos)
                out = await asyncio.to_thread(self._read_decode, decoder, pos, n)
                pos += n
                if out:
                    yield out
            tail = decoder.flush()
            if tail:
                yield tail
        finally:
            self.close()

    def _read_decode(self, decoder: _Decoder, pos: int, n: int) -> bytes:  # worker thread
        with self._lock:
            if self._closed:
                raise OSError("part source closed")
            self._reading = True
        try:
            raw = os.pread(self.fd, n, pos)
        finally:
            with self._lock:
                self._reading = False
                closed = self._closed
            if closed:
                self._release()
        if len(raw) != n:
            raise OSError(f"message file shrank at {pos}")
        return decoder.feed(raw)


class _Decoder:
    def feed(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _Base64(_Decoder):
    """Clean base64 only (checked by :func:`locate`): alphabet, line breaks, final padding."""

    def __init__(self) -> None:
        self.carry = b""

    def feed(self, data: bytes) -> bytes:
        data = self.carry + data.translate(None, b"\r\n")
        cut = len(data) - len(data) % 4
        self.carry = data[cut:]
        return binascii.a2b_base64(data[:cut])

    def flush(self) -> bytes:
        if self.carry:  # cannot happen after locate's check
            raise ValueError("base64 ends in a partial quantum")
        return b""


class _QuotedPrintable(_Decoder):
    """``binascii.a2b_qp`` (what ``quopri.decodestring`` uses) on whole lines: a line
    break never falls inside an escape or a soft break, so the pieces decode alike.
    :func:`locate` streams only parts whose lines are shorter than a block."""

    def __init__(self) -> None:
        self.carry = b""

    def feed(self, data: bytes) -> bytes:
        data = self.carry + data
        cut = data.rfind(b"\n") + 1
        self.carry = data[cut:]
        return binascii.a2b_qp(data[:cut])

    def flush(self) -> bytes:
        out, self.carry = binascii.a2b_qp(self.carry), b""
        return out


def _decoder(cte: str) -> _Decoder:
    if cte == "base64":
        return _Base64()
    if cte == "quoted-printable":
        return _QuotedPrintable()
    return _Decoder()


_LONG_LINE = re.compile(rb"[^\n]{%d}" % (BLOCK // 2))
_UUENCODE = ("x-uuencode", "uuencode", "uue", "x-uue")


def _streamable(cte: str, body: bytes) -> tuple[bool, int | None]:
    """(the incremental decoder gives exactly what the email package gives, decoded size).

    ``cte`` is spelled as ``Message.get_payload`` sees it: anything it does not decode
    is served as is."""
    if cte == "quoted-printable":
        return _LONG_LINE.search(body) is None, None
    if cte == "base64":
        if _CLEAN_B64.fullmatch(body) is None:
            return False, None
        n = len(body) - body.count(b"\r") - body.count(b"\n")
        if n % 4:
            return False, None
        pads = body.rstrip(b"\r\n")[-2:].count(b"=")
        return True, n // 4 * 3 - pads
    if cte in _UUENCODE:
        return False, None
    return True, len(body)


def _find(msg: Message, index: int) -> Message | None:
    for i, part in enumerate(msg.walk()):
        if i == index:
            return None if part.is_multipart() else part
        if i > index:
            break
    return None


_B64_RUN = re.compile(rb"(?m)^[A-Za-z0-9+/=]{40,}(?:\r?\n[A-Za-z0-9+/=]{40,})*(?=\r?\n|\Z)")


class _Skeleton:
    """The message with every run of long base64-alphabet lines replaced by one short
    unique token line, and the way back to the original offsets.

    Such a line can be no boundary (no ``-``), no header field (no ``:``), no
    continuation (no leading blank) and no separator (not empty), and neither can the
    token, so the email package finds the same structure in both, at a fraction of the
    cost (it keeps every line of a body as a string: ~8 times the message in RAM)."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.runs: list[tuple[int, int, int, int]] = []  # skeleton start, end, raw start, end
        prefix = secrets.token_hex(8).encode()
        out: list[bytes] = []
        pos = shift = 0
        for n, m in enumerate(_B64_RUN.finditer(raw)):
            token = prefix + str(n).encode()
            out.append(raw[pos:m.start()])
            sstart = m.start() - shift
            self.runs.append((sstart, sstart + len(token), m.start(), m.end()))
            out.append(token)
            shift += (m.end() - m.start()) - len(token)
            pos = m.end()
        out.append(raw[pos:])
        self.data = b"".join(out)
        self._starts = [r[0] for r in self.runs]

    def to_raw(self, p: int) -> int:
        i = bisect.bisect_right(self._starts, p) - 1
        if i < 0:
            return p
        sstart, send, rstart, rend = self.runs[i]
        return rstart if p == sstart else rend + (p - send)


def locate(path: str, index: int, *, parse: Any, too_complex: Any, safe_filename: Any,
           parse_errors: tuple[type[BaseException], ...]) -> PartSource | None:
    """The part at ``index`` of the message file at ``path`` (blocking), or None.

    ``parse``/``too_complex``/``safe_filename``/``parse_errors``: the webmail's own, so
    a part is found and named exactly as the message page lists it."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        raw = b"".join(iter(lambda: os.read(fd, 1 << 20), b""))
        if index < 0 or too_complex(raw):
            return None
        skeleton = _Skeleton(raw)
        try:
            part = _find(parse(skeleton.data), index)
            if part is None:
                return None
            ctype = part.get_content_type()
            name = part.get_filename() or f"part-{index}{mimetypes.guess_extension(ctype) or '.bin'}"
            cte = str(part.get("content-transfer-encoding", "")).lower()
            src = PartSource(ctype, safe_filename(name), None, cte=cte)
            if cte in ("base64", "quoted-printable", *_UUENCODE):
                text = part.get_payload()
                sbody = text.encode("ascii") if isinstance(text, str) and text.isascii() else None
            else:  # served as stored: the decoded payload is the stored bytes
                stored = part.get_payload(decode=True)
                sbody = stored if isinstance(stored, bytes) else None
        except parse_errors:
            return None
        at = skeleton.data.find(sbody) if sbody else -1
        if at < 0:  # 8-bit bytes in an encoded part, an empty part: the whole parse, as before
            try:
                whole = _find(parse(raw), index)
                data = whole.get_payload(decode=True) if whole is not None else b""
            except parse_errors:
                return None
            src.data = data if isinstance(data, bytes) else b""
            src.size = len(src.data)
            return src
        start, end = skeleton.to_raw(at), skeleton.to_raw(at + len(sbody or b""))
        body = raw[start:end]
        ok, size = _streamable(cte, body) if body.isascii() else (False, None)
        if not ok or not body:  # kept in memory: the email package decodes it
            one = Message()
            one["Content-Transfer-Encoding"] = cte
            one.set_payload(body.decode("ascii", "surrogateescape"))
            data = one.get_payload(decode=True)
            src.data = data if isinstance(data, bytes) else b""
            src.size = len(src.data)
            return src
        src.fd, src.start, src.end, src.size = fd, start, end, size
        fd = -1  # the source owns it now
        return src
    finally:
        if fd >= 0:
            os.close(fd)
