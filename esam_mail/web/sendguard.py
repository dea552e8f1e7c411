"""A write-stall timeout for uvicorn: a client that stops reading a response is dropped.

uvicorn has flow control but no write timeout (0.55: ``H11Protocol`` pauses the ASGI
``send`` while the transport's buffer is above 64 KiB, for ever; ``timeout_keep_alive``
only runs after the response, and its ``transport.close()`` waits for the buffer to be
flushed -- again for ever).  So a client that requests a download and never reads holds
the connection, its buffers and whatever the endpoint keeps alive, indefinitely.

:func:`guarded_h11` returns uvicorn's own h11 protocol class (passed as
``uvicorn.Config(http=...)``, its documented hook) whose transport is watched: while
the transport holds unsent bytes, a timer checks every ``stall_timeout`` seconds that
the kernel took some of them since the last check; if it took none, the connection is
aborted (``transport.abort()``: the buffer is discarded, ``connection_lost`` runs,
the ASGI ``send`` returns and the endpoint's stream is cancelled).  A slow client that
keeps reading is not dropped; what it can pin is one send buffer.

Only the transport's ``write``/``close`` are seen (every byte uvicorn sends goes through
them), so every response is covered: pages, streamed attachments, ``FileResponse``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["WatchedTransport", "guarded_h11"]

log = logging.getLogger(__name__)


class WatchedTransport:
    """The connection's asyncio transport, with a timer while bytes wait to be sent."""

    def __init__(self, inner: asyncio.Transport, loop: asyncio.AbstractEventLoop, timeout: float,
                 on_stall: Callable[[WatchedTransport], None]) -> None:
        self.inner = inner
        self._loop = loop
        self._timeout = timeout
        self._on_stall = on_stall
        self._written = 0  # every byte handed to the transport
        self._mark = 0  # bytes the kernel had taken at the last check
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's
        return getattr(self.inner, name)

    def pending(self) -> int:
        """Bytes held in the process for this connection (the transport's buffer)."""
        return self.inner.get_write_buffer_size()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.inner.write(data)
        self._written += len(data)
        self._arm()

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def close(self) -> None:
        self.inner.close()  # waits for the buffer to flush: the timer still runs
        self._arm()

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _flushed(self) -> int:
        return self._written - self.pending()

    def _arm(self) -> None:
        if self._timer is None and not self._stopped and self.pending() > 0:
            self._mark = self._flushed()
            self._timer = self._loop.call_later(self._timeout, self._check)

    def _check(self) -> None:
        self._timer = None
        if self.pending() == 0:
            return
        flushed = self._flushed()
        if flushed > self._mark:  # the client read something: give it another period
            self._mark = flushed
            self._timer = self._loop.call_later(self._timeout, self._check)
            return
        self._on_stall(self)
        self.inner.abort()


def guarded_h11(stall_timeout: float, on_stall: Callable[[WatchedTransport], None] | None = None) -> type[Any]:
    """uvicorn's h11 protocol whose connections are dropped after ``stall_timeout``
    seconds in which the client took none of the bytes waiting for it."""

    def stalled(transport: WatchedTransport) -> None:
        peer = transport.get_extra_info("peername") or ("?",)
        log.warning("event=http.slow_reader peer=%s pending=%d", peer[0], transport.pending())
        if on_stall is not None:
            on_stall(transport)

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            watched = WatchedTransport(transport, self.loop, stall_timeout, stalled)
            super().connection_made(watched)  # type: ignore[arg-type]

        def connection_lost(self, exc: Exception | None) -> None:
            if isinstance(self.transport, WatchedTransport):
                self.transport.stop()
            super().connection_lost(exc)
            self._unset_keepalive_if_required()  # also after a reset (uvicorn only does it on a clean close)

    return GuardedH11Protocol
