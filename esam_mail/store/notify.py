"""Change notification for IMAP IDLE (implementations of ``store.interfaces.Notifier``).

``LocalNotifier``: in-process pub/sub (all-in-one mode, tests).

``UnixDatagramNotifier(run_dir)``: works across the processes of one node.  Every
process that subscribes binds a unix datagram socket ``<pid>-<random>.sock`` in
``run_dir`` (0700).  ``publish`` delivers to local subscribers directly and sends one
datagram ``login \\0 folder`` (UTF-8) to every *other* socket in ``run_dir``; sockets
that refuse (``ECONNREFUSED``/``ENOENT``: their process died) are removed.  The
directory listing is cached while the directory's mtime is unchanged (at most 1 s).
Sends are non-blocking: a peer whose queue is full loses the hint (IDLE clients still
see the change at their next command).  Receiving is an ``asyncio`` reader
(``loop.add_reader``) on the loop that was running when ``subscribe`` was called, or a
daemon thread when no loop was running.

Callbacks run on the subscriber's event loop (``call_soon_threadsafe``) when one was
running at subscribe time, else in the publishing/receiving thread.  ``publish`` is
thread-safe and may be called from worker threads (SMTP delivers in one).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

Callback = Callable[[str, str], None]
_MAX_DATAGRAM = 4096
_LISTING_TTL = 1.0
_SUN_PATH_MAX = 107


def _run(callback: Callback, login: str, folder: str) -> None:
    try:
        callback(login, folder)
    except Exception:  # one bad subscriber must not break the others
        log.exception("event=notify_callback_failed")


class LocalNotifier:
    """In-process publish/subscribe."""

    def __init__(self) -> None:
        self._subs: dict[int, tuple[Callback, asyncio.AbstractEventLoop | None]] = {}
        self._lock = threading.Lock()
        self._ids = 0

    def subscribe(
        self, callback: Callback, *, loop: asyncio.AbstractEventLoop | None = None
    ) -> Callable[[], None]:
        """Register ``callback(login, folder)``; returns a function that unsubscribes."""
        if loop is None:
            with contextlib.suppress(RuntimeError):
                loop = asyncio.get_running_loop()
        with self._lock:
            self._ids += 1
            sub_id = self._ids
            self._subs[sub_id] = (callback, loop)

        def unsubscribe() -> None:
            with self._lock:
                self._subs.pop(sub_id, None)

        return unsubscribe

    def __len__(self) -> int:
        with self._lock:
            return len(self._subs)

    def publish(self, login: str, folder: str) -> None:
        with self._lock:
            subs = list(self._subs.values())
        for callback, loop in subs:
            if loop is None:
                _run(callback, login, folder)
            elif not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # loop closed meanwhile
                    loop.call_soon_threadsafe(_run, callback, login, folder)


class UnixDatagramNotifier:
    """Cross-process notifier over unix datagram sockets in ``run_dir``."""

    def __init__(self, run_dir: Path | str) -> None:
        self.run_dir = Path(run_dir)
        with contextlib.suppress(FileExistsError):
            os.makedirs(self.run_dir, 0o700)
        self._local = LocalNotifier()
        self._send_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._send_sock.setblocking(False)
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._recv_sock: socket.socket | None = None
        self._own_path: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._peers: list[str] = []
        self._peers_sig: tuple[int, float] | None = None

    # -- receiving -------------------------------------------------------------

    def subscribe(
        self, callback: Callback, *, loop: asyncio.AbstractEventLoop | None = None
    ) -> Callable[[], None]:
        """Register ``callback(login, folder)`` for changes made by any process."""
        if loop is None:
            with contextlib.suppress(RuntimeError):
                loop = asyncio.get_running_loop()
        unsubscribe = self._local.subscribe(callback, loop=loop)
        self._listen(loop)
        return unsubscribe

    @property
    def socket_path(self) -> str | None:
        return self._own_path

    def _listen(self, loop: asyncio.AbstractEventLoop | None) -> None:
        with self._state_lock:
            if self._recv_sock is not None or self._closed:
                return
            path = str(self.run_dir / f"{os.getpid()}-{secrets.token_hex(4)}.sock")
            if len(path.encode()) > _SUN_PATH_MAX:
                raise ValueError("notifier run_dir path too long for a unix socket")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            old_umask = os.umask(0o177)
            try:
                sock.bind(path)
            finally:
                os.umask(old_umask)
            sock.setblocking(False)
            self._recv_sock, self._own_path = sock, path
            self._peers_sig = None
            if loop is not None:
                self._loop = loop
                try:
                    running = asyncio.get_running_loop()
                except RuntimeError:
                    running = None
                if running is loop:
                    loop.add_reader(sock.fileno(), self._drain)
                else:
                    loop.call_soon_threadsafe(loop.add_reader, sock.fileno(), self._drain)
            else:
                self._thread = threading.Thread(target=self._reader_thread, name="esam-notify", daemon=True)
                self._thread.start()

    def _reader_thread(self) -> None:
        sock = self._recv_sock
        assert sock is not None
        import select

        while not self._closed:
            try:
                ready, _, _ = select.select([sock], [], [], 0.5)
            except (OSError, ValueError):
                return
            if ready:
                self._drain()

    def _drain(self) -> None:
        sock = self._recv_sock
        if sock is None:
            return
        while True:
            try:
                data = sock.recv(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            login_b, sep, folder_b = data.partition(b"\0")
            if not sep:
                continue
            try:
                login, folder = login_b.decode("ascii"), folder_b.decode("utf-8")
            except UnicodeDecodeError:
                continue
            self._local.publish(login, folder)

    # -- publishing --------------------------------------------------------------

    def _peer_paths(self) -> list[str]:
        try:
            mtime = os.stat(self.run_dir).st_mtime_ns
        except FileNotFoundError:
            return []
        now = time.monotonic()
        if self._peers_sig is not None:
            sig_mtime, at = self._peers_sig
            if sig_mtime == mtime and now - at < _LISTING_TTL:
                return self._peers
        try:
            names = os.listdir(self.run_dir)
        except FileNotFoundError:
            names = []
        peers = [str(self.run_dir / n) for n in names if n.endswith(".sock")]
        self._peers = [p for p in peers if p != self._own_path]
        self._peers_sig = (mtime, now)
        return self._peers

    def publish(self, login: str, folder: str) -> None:
        """Tell every subscriber, here and in other processes, that a folder changed."""
        self._local.publish(login, folder)
        payload = login.encode("ascii", "replace") + b"\0" + folder.encode("utf-8")
        if len(payload) > _MAX_DATAGRAM:
            return
        with self._send_lock:
            if self._closed:
                return
            for path in self._peer_paths():
                try:
                    self._send_sock.sendto(payload, path)
                except (ConnectionRefusedError, FileNotFoundError):
                    with contextlib.suppress(OSError):
                        os.unlink(path)  # its process is gone
                    self._peers_sig = None
                except BlockingIOError:
                    log.debug("event=notify_dropped peer=%s", os.path.basename(path))
                except OSError as exc:
                    if exc.errno not in (errno.ENOTSOCK, errno.EPROTOTYPE):
                        log.debug("event=notify_send_failed errno=%s", exc.errno)

    def close(self) -> None:
        """Stop listening, remove our socket."""
        with self._state_lock:
            self._closed = True
            sock, self._recv_sock = self._recv_sock, None
            if sock is not None:
                loop = self._loop
                if loop is not None and not loop.is_closed():
                    try:
                        running = asyncio.get_running_loop()
                    except RuntimeError:
                        running = None
                    if running is loop:
                        loop.remove_reader(sock.fileno())
                    else:
                        with contextlib.suppress(RuntimeError):
                            loop.call_soon_threadsafe(loop.remove_reader, sock.fileno())
                if self._thread is None:
                    sock.close()
                if self._own_path:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self._own_path)
            if self._thread is not None:
                self._thread.join(timeout=2)
                if sock is not None:
                    sock.close()
        with self._send_lock:
            self._send_sock.close()
