"""IDLE change notification across machines: PostgreSQL ``LISTEN``/``NOTIFY``.

``PgNotifier`` implements ``store.interfaces.Notifier`` for deployments whose
directory is PostgreSQL (selected by ``app.build``).  Unix datagrams
(``store.notify.UnixDatagramNotifier``) only reach the processes of one machine;
every esam process that talks to the same PostgreSQL database reaches every other
one here, whatever machine it runs on.

* One dedicated asyncpg connection per process ``LISTEN``\\s on ``channel`` and also
  sends the notifications (``SELECT pg_notify(...)``), batched: changes published
  while a send is in flight go out together in the next statement.
* The payload is JSON ``[origin, login, folder]``; ``origin`` is a random id of this
  process, so a process ignores the echo of its own notifications (its local
  subscribers were already told directly by ``publish``).
* ``publish`` is thread-safe (SMTP delivers in worker threads): it tells local
  subscribers at once and hands the rest to the event loop.
* The connection is re-established with a growing delay after a failure.
  Notifications published while it is down are lost (at most 1,000 are kept for the
  reconnect); IDLE sessions still see every change at their next poll or command.
* NOTIFY is transactional and delivered to listeners on the primary only: point the
  notifier at the primary (``directory.url``), never at a read replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import threading
from collections.abc import Callable
from typing import Any

from esam_mail.store.notify import Callback, LocalNotifier

log = logging.getLogger(__name__)

_MAX_PAYLOAD = 7900  # PostgreSQL's limit is 8000 bytes
_MAX_PENDING = 1000


def asyncpg_dsn(url: str) -> str:
    """``postgresql+asyncpg://u@h/db`` (SQLAlchemy) -> ``postgresql://u@h/db`` (libpq/asyncpg)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith("postgresql"):
        raise ValueError("not a PostgreSQL URL")
    return "postgresql://" + rest


class PgNotifier:
    """Cross-node notifier over PostgreSQL LISTEN/NOTIFY (see the module docstring)."""

    def __init__(self, dsn: str, *, channel: str = "esam_mail_changes", connect_timeout: float = 10.0) -> None:
        self.dsn = dsn
        self.channel = channel
        self.connect_timeout = connect_timeout
        self.origin = secrets.token_hex(8)
        self._local = LocalNotifier()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: Any = None
        self._connected: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._send_lock: asyncio.Lock | None = None
        self._pending: list[str] = []
        self._pending_lock = threading.Lock()
        self._flush_scheduled = False
        self._flushes: set[asyncio.Future[None]] = set()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self, wait: float = 5.0) -> None:
        """Connect and LISTEN (on the running loop); waits up to ``wait`` s for the
        first connection, then keeps retrying in the background."""
        self._loop = asyncio.get_running_loop()
        self._connected = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._task = asyncio.ensure_future(self._run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), wait)
        if not self._connected.is_set():
            log.warning("event=notify.pg_unavailable (retrying in the background)")

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def _run(self) -> None:
        import asyncpg

        delay = 0.5
        while not self._closed:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("event=notify.pg_connect_failed error=%s", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            try:
                conn.add_termination_listener(lambda _c, ev=lost: ev.set())
                await conn.add_listener(self.channel, self._on_notify)
                self._conn = conn
                delay = 0.5
                assert self._connected is not None
                self._connected.set()
                self._schedule_flush()  # anything published while we were away
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event=notify.pg_failed")
            finally:
                self._conn = None
                if self._connected is not None:
                    self._connected.clear()
                with contextlib.suppress(Exception):
                    conn.terminate()
            if not self._closed:
                await asyncio.sleep(delay)

    def close(self) -> None:
        """Stop listening and drop the connection (synchronous, idempotent)."""
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()

    # -- receiving ---------------------------------------------------------------------
    def subscribe(
        self, callback: Callback, *, loop: asyncio.AbstractEventLoop | None = None
    ) -> Callable[[], None]:
        """Call ``callback(login, folder)`` on every change, from any process or node."""
        return self._local.subscribe(callback, loop=loop)

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        try:
            origin, login, folder = json.loads(payload)
        except (ValueError, TypeError):
            return
        if origin == self.origin or not isinstance(login, str) or not isinstance(folder, str):
            return
        self._local.publish(login, folder)

    # -- publishing --------------------------------------------------------------------
    def publish(self, login: str, folder: str) -> None:
        """Tell local subscribers now and every other process through PostgreSQL."""
        self._local.publish(login, folder)
        payload = json.dumps([self.origin, login, folder])
        if len(payload.encode()) > _MAX_PAYLOAD or self._closed:
            return
        with self._pending_lock:
            if len(self._pending) >= _MAX_PENDING:
                return
            self._pending.append(payload)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._pending_lock:
            if self._flush_scheduled or not self._pending:
                return
            self._flush_scheduled = True
        with contextlib.suppress(RuntimeError):  # loop closed meanwhile
            loop.call_soon_threadsafe(self._start_flush)

    def _start_flush(self) -> None:
        task = asyncio.ensure_future(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        assert self._send_lock is not None
        async with self._send_lock:
            with self._pending_lock:
                self._flush_scheduled = False
                conn = self._conn
                if conn is None:
                    return  # kept for the reconnect
                batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                await conn.execute(
                    "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", self.channel, batch
                )
            except Exception as exc:  # noqa: BLE001 - the connection died: the run loop reconnects
                log.warning("event=notify.pg_send_failed lost=%d error=%s", len(batch), type(exc).__name__)
