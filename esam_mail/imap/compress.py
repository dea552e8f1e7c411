"""COMPRESS=DEFLATE (RFC 4978): raw deflate between the IMAP framing and the transport.

After ``a OK DEFLATE active`` both directions are raw deflate streams (RFC 1951, zlib
``wbits=-15``).  The session keeps its framing (:meth:`EsamIMAP4Server._pump`) and only

- swaps its transport for a :class:`DeflateTransport`, which compresses every write and
  ends each burst of responses with ``Z_SYNC_FLUSH`` (once per reactor turn, so a FETCH
  of many messages is not cut into thousands of tiny blocks, yet nothing waits longer
  than the current turn), and
- feeds what it reads through an :class:`Inflater`, which expands *at most* what the
  framing has room for (``decompress(data, max_length)`` and ``unconsumed_tail``): a
  deflate bomb (a few KiB expanding to gigabytes) costs no more memory than the same
  bytes sent uncompressed; the line and literal limits and the read flow control see
  the expanded octets and the compressed backlog together.

Compression sits above TLS: on port 993 and after STARTTLS the transport underneath is
the TLS one, so the deflate stream is what gets encrypted (RFC 4978 §4).

Level: :data:`LEVEL` = 1, by measurement (performance issue #20: CPU per session).
Synthetic IMAP output, a Z_SYNC_FLUSH every few responses, one core of the dev machine:

    =========================  =====================  =====================
    traffic                    level 1                level 6 (zlib default)
    =========================  =====================  =====================
    FETCH header fields, 1.7MB ratio 0.32, 107 MB/s   ratio 0.29, 53 MB/s
    FETCH BODY[] text, 4 MB    ratio 0.46, 77 MB/s    ratio 0.39, 17 MB/s
    =========================  =====================  =====================

Level 1 sends 10-17 % more octets than level 6 for a half to a quarter of its CPU.
Each compressed session holds ~270 KiB of zlib state (compressor and inflater).
"""

from __future__ import annotations

import zlib
from typing import Any

#: zlib compression level of the server's deflate stream (see the module docstring).
LEVEL = 1
#: the server's window: 2**15, the largest every RFC 1951 inflater accepts.
WBITS = -15
#: internal memory of the compressor (zlib's memLevel; 8 is the default, ~256 KiB a session).
MEM_LEVEL = 8
#: bytes expanded per step: the framing takes them before more are expanded.
INFLATE_STEP = 16 * 1024


class Inflater:
    """The client's deflate stream, expanded on demand and never beyond what is asked."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(WBITS)
        self._pending = b""  # compressed octets not expanded yet
        self.failed = False

    @property
    def backlog(self) -> int:
        """Compressed octets received but not yet expanded (counted by flow control)."""
        return len(self._pending)

    def feed(self, data: bytes) -> None:
        self._pending += data

    def take(self, room: int) -> bytes:
        """Up to ``room`` expanded octets.  Raises ``zlib.error`` on a corrupt stream."""
        if not self._pending or room <= 0 or self.failed:
            return b""
        try:
            out = self._z.decompress(self._pending, min(room, INFLATE_STEP))
        except zlib.error:
            self.failed = True
            self._pending = b""
            raise
        self._pending = self._z.unconsumed_tail
        if self._z.eof:  # the client ended its stream: nothing after it is IMAP
            self._pending = b""
        return out


class DeflateTransport:
    """Wraps the session's transport: writes are deflated, everything else is passed on."""

    def __init__(self, inner: Any, call_later: Any, level: int = LEVEL) -> None:
        self.inner = inner
        self._z = zlib.compressobj(level, zlib.DEFLATED, WBITS, MEM_LEVEL)
        self._call_later = call_later
        self._flush_call: Any = None
        self.raw_bytes = 0  # before compression
        self.wire_bytes = 0  # after

    # -- writing ---------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self.raw_bytes += len(data)
        out = self._z.compress(data)
        if out:
            self._send(out)
        if self._flush_call is None:
            self._flush_call = self._call_later(0, self.flush)

    def writeSequence(self, seq: Any) -> None:
        for data in seq:
            self.write(data)

    def flush(self) -> None:
        """End the current burst: everything written so far reaches the client."""
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_call = None
        out = self._z.flush(zlib.Z_SYNC_FLUSH)
        if out:
            self._send(out)

    def _send(self, out: bytes) -> None:
        self.wire_bytes += len(out)
        self.inner.write(out)

    # -- closing -----------------------------------------------------------------
    def loseConnection(self) -> None:
        self.flush()
        self.inner.loseConnection()

    def abortConnection(self) -> None:
        self.stop()
        self.inner.abortConnection()

    def stop(self) -> None:
        """The connection is gone: drop the pending flush."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None

    # -- the rest: producers, peer, TLS state ... -------------------------------------
    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
