"""Async mailbox service: the only way the IMAP front-end reaches the store.

The store (``store.maildir``) does blocking file I/O: directory listings, renames,
fsync, whole-message reads.  The front-ends share one asyncio loop with SMTP and
HTTP, so nothing of that may run on it.  Every store call made for a session
goes through :meth:`MailboxService.run`, which

- runs it on a bounded thread pool (``workers`` threads: a burst of sessions queues
  up instead of spawning threads without limit), and
- serializes it per user folder (``(login, folder)``): calls for one folder run one
  after the other in arrival order, calls for different folders run in parallel.
  That keeps a folder's uidlist/keywords work in one thread at a time in this
  process (the store's file locks still guard against other processes).

The service also owns

- change notification (:meth:`MailboxService.subscribe`; it publishes after writes
  when the store does not publish on its own), and
- sharing opened folders between the sessions of this process
  (:meth:`UserMailboxes.open`): a folder object keeps what it learnt about the
  folder (message list, UIDs, open index files), so the next session's SELECT
  only looks at what changed instead of re-reading everything; and
- caching of per-message summaries (:meth:`MailboxView.summaries`): a process-wide
  LRU in front of the store's per-folder cache; what a summary *is* (ENVELOPE and
  BODYSTRUCTURE for IMAP) is the caller's :class:`SummaryCodec`, so no wire
  format lives here.

Big APPEND literals are spooled by :class:`Spool` into the user's ``tmp/``
directory as they arrive (RSS does not grow with the literal) and committed by a
rename, fsync'd only then.

Front-ends import the value types they need (``MessageInfo``, ``SYSTEM_FLAGS`` ...)
from here, never from ``esam_mail.store``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from esam_mail.services.mailflow.pool import WorkerPool
from esam_mail.store.interfaces import (
    SPECIAL_USE,
    SYSTEM_FLAGS,
    Folder,
    FolderInfo,
    FolderStatus,
    MessageInfo,
    Notifier,
    UserStore,
)

__all__ = [
    "LIST_EVENT",
    "SPECIAL_USE",
    "SYSTEM_FLAGS",
    "FolderInfo",
    "FolderStatus",
    "MailboxService",
    "MailboxStore",
    "MailboxView",
    "MessageInfo",
    "Notifier",
    "Spool",
    "SummaryCodec",
    "UserMailboxes",
    "list_event",
    "parse_list_event",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
S = TypeVar("S")

DEFAULT_WORKERS = 2
DEFAULT_SUMMARY_CACHE = 20000
DEFAULT_OPEN_FOLDERS = 512
SPOOL_FLUSH = 256 * 1024  # bytes buffered in RAM before a spool write is queued


#: Notifier ``folder`` strings of mailbox-list events (IMAP NOTIFY, RFC 5465 MailboxName and
#: SubscriptionChange) start with this control character, which no folder name may hold:
#: ``"\x01" kind "\x1f" name ["\x1f" new name]``.  Subscribers that match a folder by
#: name (IDLE) never match one; kinds: create, delete, rename (old, new), subscribe, unsubscribe.
LIST_EVENT = "\x01"
_LIST_KINDS = frozenset({"create", "delete", "rename", "subscribe", "unsubscribe"})


def list_event(kind: str, *names: str) -> str:
    """The notifier ``folder`` string of a mailbox-list event (see :data:`LIST_EVENT`)."""
    assert kind in _LIST_KINDS
    return LIST_EVENT + "\x1f".join((kind, *names))


def parse_list_event(folder: str) -> tuple[str, list[str]] | None:
    """(kind, names) of a mailbox-list event; None for an ordinary folder change."""
    if not folder.startswith(LIST_EVENT):
        return None
    kind, *names = folder[1:].split("\x1f")
    if kind not in _LIST_KINDS or not names or len(names) > 2:
        return None
    return kind, names


class MailboxStore(Protocol):
    """What the service needs of the store: one :class:`UserStore` per login."""

    def user(self, login: str, quota: int | None = None) -> UserStore: ...


class SummaryCodec(Protocol[S]):
    """How a caller's per-message summary is built and kept (see module docstring)."""

    def build(self, data: bytes) -> S:
        """Parse a whole message (runs on the pool)."""

    def dump(self, value: S) -> dict[str, Any]:
        """JSON-serialisable form for the store's cache."""

    def load(self, raw: dict[str, Any] | None) -> S | None:
        """Inverse of :meth:`dump`; ``None`` for a missing or stale entry."""


class _LRU(Generic[S]):
    """Process-wide LRU of summaries, keyed by (folder cache id, Maildir key)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._d: OrderedDict[tuple[str, str], S] = OrderedDict()
        self._lock = threading.Lock()  # filled from pool threads

    def get(self, key: tuple[str, str]) -> S | None:
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key: tuple[str, str], value: S) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.capacity:
                self._d.popitem(last=False)


class MailboxService:
    """Async facade over the store (see module docstring).

    Args:
        store: ``store.user(login, quota) -> UserStore`` (``MaildirStore``).
        notifier: change notification across sessions and processes; may be None.
        workers: threads of the pool shared by every session of this process.
        summary_cache: entries of the in-process summary LRU.
        open_folders: opened folders kept for the next session (LRU; 0: none).
    """

    def __init__(
        self,
        store: MailboxStore,
        notifier: Notifier | None = None,
        *,
        workers: int = DEFAULT_WORKERS,
        summary_cache: int = DEFAULT_SUMMARY_CACHE,
        open_folders: int = DEFAULT_OPEN_FOLDERS,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.workers = max(1, workers)
        self._executor = WorkerPool(self.workers, "esam-mailbox")
        self._tails: dict[tuple[str, str], asyncio.Future[None]] = {}
        self.summaries: _LRU[Any] = _LRU(summary_cache)
        self.open_folders = max(0, open_folders)
        self._open: OrderedDict[tuple[str, str], Folder] = OrderedDict()
        self._open_lock = threading.Lock()  # used from pool threads
        # MaildirStore publishes its own changes; other stores get ours
        self._store_publishes = getattr(store, "notifier", None) is not None

    # -- running store work ------------------------------------------------------

    async def run(self, login: str, folder: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the pool after every earlier call for ``(login, folder)``.

        ``folder`` is ``""`` for work on the user's folder list (create, rename ...).
        Cancelling the caller does not cancel ``fn`` once started; the queue still
        waits for it, so the next call never overlaps it.
        """
        loop = asyncio.get_running_loop()
        key = (login, folder)
        prev = self._tails.get(key)
        mine: asyncio.Future[None] = loop.create_future()
        self._tails[key] = mine

        def release(_: object = None) -> None:
            if not mine.done():
                mine.set_result(None)
            if self._tails.get(key) is mine:
                del self._tails[key]

        if prev is not None:
            try:
                await asyncio.shield(prev)  # only ever resolved, never failed
            except asyncio.CancelledError:
                prev.add_done_callback(release)  # keep the order for those behind us
                raise
        fut = self._executor.run(loop, functools.partial(fn, *args))
        fut.add_done_callback(release)  # when the thread is done, not when we are
        return await asyncio.shield(fut)

    def pending(self) -> int:
        """Folders with queued or running work (a gauge for tests and metrics)."""
        return len(self._tails)

    async def close(self) -> None:
        """Wait for running work, then stop the pool."""
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)

    # -- opened folders shared by sessions -----------------------------------------------

    def _shared_folder(self, login: str, name: str, user: Callable[[], UserStore]) -> Folder:
        """Pool thread: the folder object of this process for ``(login, name)``.

        A folder is reused only while its store says it still is the same folder
        (``reusable``: not deleted, renamed or recreated meanwhile); stores without
        that check get a new object every time.  Folder objects are thread-safe and
        every call on one runs in folder order (:meth:`run`), whoever the session.
        """
        key = (login, name)
        with self._open_lock:
            folder = self._open.get(key)
            if folder is not None:
                self._open.move_to_end(key)
        if folder is not None:
            if folder.reusable(user()):  # type: ignore[attr-defined]
                return folder
            with self._open_lock:
                if self._open.get(key) is folder:
                    del self._open[key]
        folder = user().folder(name)
        if self.open_folders and callable(getattr(folder, "reusable", None)):
            with self._open_lock:
                self._open[key] = folder
                while len(self._open) > self.open_folders:
                    self._open.popitem(last=False)  # sessions using it keep their reference
        return folder

    def forget_folders(self, login: str, name: str | None = None) -> None:
        """Drop shared folder objects of ``login`` (all of them, or ``name`` and below)."""
        with self._open_lock:
            for key in [k for k in self._open if k[0] == login and (
                    name is None or k[1] == name or k[1].startswith(name + "/"))]:
                del self._open[key]

    # -- change notification --------------------------------------------------------

    def subscribe(self, callback: Callable[[str, str], None]) -> Callable[[], None]:
        """``callback(login, folder)`` on every change (maybe from another thread)."""
        if self.notifier is None:
            return lambda: None
        return self.notifier.subscribe(callback)

    def publish(self, login: str, folder: str) -> None:
        """Tell other sessions that ``folder`` changed (no-op if the store does)."""
        if self.notifier is None or self._store_publishes:
            return
        try:
            self.notifier.publish(login, folder)
        except Exception:  # a lost notification must never fail the command
            log.exception("event=mailbox.notify_failed user=%s", login)

    def publish_list_event(self, login: str, kind: str, *names: str) -> None:
        """Tell every session (every process) that the user's folder list or
        subscriptions changed; the store does not publish these itself."""
        if self.notifier is None:
            return
        try:
            self.notifier.publish(login, list_event(kind, *names))
        except Exception:  # a lost notification must never fail the command
            log.exception("event=mailbox.notify_failed user=%s", login)

    # -- users -------------------------------------------------------------------------

    def user(self, login: str, quota: int | None = None) -> UserMailboxes:
        """The mailboxes of one authenticated user (no I/O until used)."""
        return UserMailboxes(self, login, quota)


class UserMailboxes:
    """One user's folders, every call off the loop (see :class:`MailboxService`)."""

    def __init__(self, service: MailboxService, login: str, quota: int | None) -> None:
        self.service = service
        self.login = login
        self._quota = quota
        self._store: UserStore | None = None

    def _user(self) -> UserStore:  # pool threads only
        if self._store is None:
            self._store = self.service.store.user(self.login, self._quota)
        return self._store

    async def _run(self, folder: str, fn: Callable[..., T], *args: Any) -> T:
        return await self.service.run(self.login, folder, fn, *args)

    async def list_folders(self) -> list[FolderInfo]:
        return await self._run("", lambda: self._user().list_folders())

    async def create_folder(self, name: str) -> None:
        await self._run("", lambda: self._user().create_folder(name))
        self.service.publish_list_event(self.login, "create", name)

    async def delete_folder(self, name: str) -> None:
        await self._run("", lambda: self._user().delete_folder(name))
        self.service.forget_folders(self.login)
        self.service.publish(self.login, name)
        self.service.publish_list_event(self.login, "delete", name)

    async def rename_folder(self, old: str, new: str) -> None:
        await self._run("", lambda: self._user().rename_folder(old, new))
        self.service.forget_folders(self.login)
        self.service.publish_list_event(self.login, "rename", old, new)

    async def subscribe(self, name: str, on: bool = True) -> None:
        await self._run("", lambda: self._user().subscribe(name, on))
        self.service.publish_list_event(self.login, "subscribe" if on else "unsubscribe", name)

    async def subscriptions(self) -> set[str]:
        """Subscribed names, whether or not the folders exist (RFC 3501 §6.3.9)."""

        def read() -> set[str]:
            subs_of = getattr(self._user(), "subscriptions", None)
            return set(subs_of()) if subs_of is not None else set()

        return await self._run("", read)

    async def status(self, name: str) -> FolderStatus:
        """Raises NoSuchFolder / BadFolderName."""
        return await self._run(name, lambda: self.service._shared_folder(self.login, name, self._user).status())

    async def check(self, name: str) -> None:
        """Raises NoSuchFolder / BadFolderName when ``name`` is not a folder."""
        await self._run(name, lambda: self.service._shared_folder(self.login, name, self._user))

    async def quota(self) -> tuple[int, int]:
        """(bytes used, limit in bytes; 0 = unlimited)."""

        def read() -> tuple[int, int]:
            user = self._user()
            q = getattr(user, "quota", None)
            if callable(q):
                q = q()
            return user.usage(), int(q) if isinstance(q, int) and q > 0 else 0

        return await self._run("", read)

    async def open(self, name: str) -> MailboxView:
        """Open a folder for one session (SELECT/EXAMINE, COPY target ...).

        Raises NoSuchFolder / BadFolderName.
        """
        folder = await self._run(name, lambda: self.service._shared_folder(self.login, name, self._user))
        return MailboxView(self, folder)

    async def select(self, name: str, *, claim: bool) -> tuple[MailboxView, Snapshot, int]:
        """SELECT/EXAMINE in one pool call (was three thread hops, issue 20): :meth:`open`,
        then the view's :meth:`MailboxView.snapshot` and :meth:`MailboxView.uidnext`.

        Raises NoSuchFolder / BadFolderName.
        """

        def work() -> tuple[Folder, Snapshot, int]:
            folder = self.service._shared_folder(self.login, name, self._user)
            return folder, _snapshot(folder, claim), folder.uidnext()

        folder, snap, uidnext = await self._run(name, work)
        return MailboxView(self, folder), snap, uidnext

    async def append(
        self,
        name: str,
        message: bytes | Spool,
        flags: Iterable[str] = (),
        internal_date: dt.datetime | None = None,
    ) -> tuple[int, int]:
        """Store a message durably; returns (uidvalidity, uid).

        A :class:`Spool` is committed by a rename (and fsync) instead of a copy.
        Raises NoSuchFolder, QuotaExceeded.
        """
        flags = list(flags)

        def store() -> tuple[int, int]:
            # the process's shared folder object: its uidlist is at hand (a new object read
            # and parsed the whole uidlist per APPEND, and the sessions' object again after)
            folder = self.service._shared_folder(self.login, name, self._user)
            if isinstance(message, Spool):
                message.close_fd()
                adder = getattr(folder, "append_file", None)
                if adder is not None:
                    uid = adder(message.path, message.size, flags, internal_date)
                else:  # a store without file appends: read back (off the loop)
                    uid = folder.append(message.path.read_bytes(), flags, internal_date)
            else:
                uid = folder.append(message, flags, internal_date)
            return folder.uidvalidity, uid

        try:
            result = await self._run(name, store)
        finally:
            if isinstance(message, Spool):
                await message.discard()
        self.service.publish(self.login, name)
        return result

    def spool(self, size: int) -> Spool:
        """A temporary file for an incoming literal of ``size`` bytes."""
        return Spool(self, size)


class Spool:
    """An incoming literal written to ``<user>/tmp/`` as it arrives.

    The front-end calls :meth:`feed` with each chunk (cheap: it buffers up to
    ``SPOOL_FLUSH`` bytes, then queues one write on the pool) and awaits
    :meth:`finish` once the literal is complete.  Nothing is fsync'd here: the
    store fsyncs the file when the APPEND commits.  :meth:`discard` removes it.
    """

    def __init__(self, owner: UserMailboxes, size: int) -> None:
        self.owner = owner
        self.size = size
        self.path = Path()
        self.received = 0
        self._buf = bytearray()
        self._fd = -1
        self._writes: asyncio.Future[None] | None = None
        self._backlog = 0  # bytes handed to the pool, not yet written
        self._error: BaseException | None = None
        self.finished = False

    def _open(self) -> None:  # pool thread
        user = self.owner._user()
        base = getattr(user, "spool_dir", None)
        directory = Path(base()) if callable(base) else Path(getattr(user, "path", ".")) / "tmp"
        name = f"esam-append.{os.getpid()}.{threading.get_ident()}.{id(self):x}"
        self.path = directory / name
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)

    def _write(self, data: bytes) -> None:  # pool thread, one at a time
        if self._error is not None:
            return
        try:
            if self._fd < 0:
                self._open()
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            self._error = exc

    def backlog(self) -> int:
        """Bytes received but not yet on disk (RAM held for this literal)."""
        return self._backlog + len(self._buf)

    def buffered(self) -> int:
        """Bytes held in RAM (the front-end pauses its transport above a bound)."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        """Take the next chunk of the literal (on the loop; never blocks)."""
        self._buf += data
        self.received += len(data)
        if len(self._buf) >= SPOOL_FLUSH:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        chunk, self._buf = bytes(self._buf), bytearray()
        self._backlog += len(chunk)
        prev = self._writes
        loop = asyncio.get_running_loop()

        async def write() -> None:
            try:
                if prev is not None:
                    await prev
                await loop.run_in_executor(self.owner.service._executor, self._write, chunk)
            finally:
                self._backlog -= len(chunk)

        self._writes = asyncio.ensure_future(write())

    def idle(self) -> asyncio.Future[None] | None:
        """The queued writes (await it before feeding more when ``buffered`` is high)."""
        return self._writes

    def feed_from(self, other: Spool) -> None:
        """Take the bytes of another, finished, spool (an APPEND built from parts, RFC
        4469): copied file to file on the pool, in order with :meth:`feed`."""
        self._flush()
        self.received += other.size
        if other.size == 0:
            return
        src, prev = other.path, self._writes
        loop = asyncio.get_running_loop()

        def copy() -> None:  # pool thread
            try:
                with open(src, "rb") as fh:
                    while chunk := fh.read(SPOOL_FLUSH):
                        self._write(chunk)
            except OSError as exc:
                self._error = self._error or exc

        async def write() -> None:
            if prev is not None:
                await prev
            await loop.run_in_executor(self.owner.service._executor, copy)

        self._writes = asyncio.ensure_future(write())

    async def finish(self) -> None:
        """Write what is buffered; raises the first write error (disk full ...)."""
        self._flush()
        if self._writes is not None:
            await self._writes
        if self._fd < 0 and self._error is None:
            await asyncio.get_running_loop().run_in_executor(
                self.owner.service._executor, self._write, b"")
        self.finished = True
        if self._error is not None:
            raise self._error

    async def discard(self) -> None:
        """Close and remove the file (idempotent; after commit it is already gone)."""
        self._buf = bytearray()
        writes = self._writes
        if writes is not None:
            with contextlib.suppress(BaseException):
                await writes

        def drop() -> None:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            if self.path != Path():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)

        await asyncio.get_running_loop().run_in_executor(self.owner.service._executor, drop)

    def close_fd(self) -> None:
        """Pool thread: close the descriptor before the store renames the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One look at a folder (see :meth:`MailboxView.snapshot`)."""

    uidvalidity: int
    infos: list[MessageInfo]
    recent: set[int]
    highestmodseq: int
    modseqs: dict[int, int]
    # the folder's change generation (esam_mail.store.generation) as read *before* this
    # look, and the reader of its current value (a memory read, safe on the loop)
    generation: int | None = None
    current_generation: Callable[[], int] | None = None
    # the store folder's (epoch, version, journal) as of this look (MaildirFolder.changes):
    # which UIDs changed between two looks, so a session compares only those
    changes: tuple[object, int, tuple[tuple[int, frozenset[int] | None], ...]] | None = None


def _snapshot(folder: Folder, claim: bool) -> Snapshot:
    """Pool thread: :meth:`MailboxView.snapshot`.  Under the folder's look lock, when it
    has one: the list, the mod-sequences and the journal's version are of the same moment
    (another session's look in between would bump the version past this list)."""
    lock = getattr(folder, "look_lock", None)
    with lock if lock is not None else contextlib.nullcontext():
        reader_of = getattr(folder, "change_generation", None)
        read = reader_of() if reader_of is not None else None
        gen = read() if read is not None else None  # before the look, not after
        sync_claim = getattr(folder, "sync_claim", None) if claim else None
        if sync_claim is not None:  # numbering and claim in one folder write
            infos, recent = sync_claim()
        else:
            infos = folder.sync()
            recent = folder.recent(claim=claim, upto=infos[-1].uid if infos else 0)
        highest, modseqs = folder.modseqs()
        changes_of = getattr(folder, "changes", None)
        changes = changes_of() if changes_of is not None else None
    return Snapshot(folder.uidvalidity, infos, recent, highest, modseqs, gen, read, changes)


class MailboxView:
    """One session's handle on one folder; every call off the loop, in folder order."""

    def __init__(self, owner: UserMailboxes, folder: Folder) -> None:
        self.owner = owner
        self.folder = folder
        self.name: str = folder.name
        self.login = owner.login
        # See look_along: with it set, every call() also takes a snapshot (claiming
        # \Recent as the callable says) in the same pool call, kept in _along until
        # take_along() or forget_along().
        self.look_along: Callable[[], bool] | None = None
        self._along: tuple[int, Snapshot] | None = None
        # looks at the folder are numbered as they are queued (the folder's pool calls run
        # in that order): a look older than one already handed out is never handed out
        self._looks = 0
        self._handed = 0

    @property
    def uidvalidity(self) -> int:
        return self.folder.uidvalidity

    @property
    def cache_id(self) -> str:
        return f"{self.login}\0{self.name}\0{self.folder.uidvalidity}"

    async def call(self, fn: Callable[[Folder], T]) -> T:
        """Run ``fn(folder)`` on the pool, serialized with this folder's other work.

        For CPU- or I/O-heavy loops of a front-end (SEARCH over bodies): ``fn`` gets
        the blocking store folder and must not touch the event loop.
        """
        claim_of = self.look_along
        if claim_of is None:
            return await self.owner._run(self.name, fn, self.folder)
        claim = claim_of()

        def both(folder: Folder) -> tuple[T, Snapshot]:
            out = fn(folder)
            return out, _snapshot(folder, claim)

        self._along = None
        self._looks += 1
        seq = self._looks
        out, snap = await self.owner._run(self.name, both, self.folder)
        self._along = (seq, snap)
        return out

    def take_along(self) -> Snapshot | None:
        """The snapshot taken with the last :meth:`call` (see :attr:`look_along`), once,
        unless a newer look was handed out meanwhile.

        For the changes a command reports at its end: the look at the folder its own
        pool call took, after its work there, instead of one more hop.  The caller
        forgets it (:meth:`forget_along`) when the command ends, so a later command
        never reports from an older look."""
        along, self._along = self._along, None
        if along is None or along[0] <= self._handed:
            return None
        self._handed = along[0]
        return along[1]

    def forget_along(self) -> None:
        self._along = None

    async def sync(self) -> tuple[int, list[MessageInfo]]:
        """(uidvalidity, every message sorted by UID); picks up new deliveries."""

        def sync(folder: Folder) -> tuple[int, list[MessageInfo]]:
            infos = folder.sync()
            return folder.uidvalidity, infos

        return await self.owner._run(self.name, sync, self.folder)

    async def snapshot(self, *, claim: bool) -> Snapshot:
        """:meth:`sync` plus what a selected session needs with it, in one pool call:
        the UIDs no session has seen as \\Recent yet (with ``claim`` they become this
        caller's alone, RFC 3501 §2.3.2, up to the highest UID returned) and the
        mod-sequences (RFC 7162)."""
        self._looks += 1
        seq = self._looks
        snap = await self.owner._run(self.name, _snapshot, self.folder, claim)
        self._handed = max(self._handed, seq)
        return snap

    async def uidnext(self) -> int:
        return await self.call(lambda f: f.uidnext())

    async def expunged_since(self, modseq: int) -> list[int]:
        """UIDs expunged after mod-sequence ``modseq`` (RFC 7162 QRESYNC)."""
        return await self.call(lambda f: f.expunged_since(modseq))

    async def read(self, uid: int) -> bytes | None:
        """Whole message, or None when it was expunged meanwhile."""

        def read(folder: Folder) -> bytes | None:
            try:
                return folder.read(uid)
            except (KeyError, FileNotFoundError):
                return None

        return await self.call(read)

    async def read_many(self, uids: Sequence[int]) -> dict[int, bytes]:
        """Messages by UID (expunged ones are absent); one pool hop for the batch."""

        def read(folder: Folder) -> dict[int, bytes]:
            out: dict[int, bytes] = {}
            for uid in uids:
                try:
                    out[uid] = folder.read(uid)
                except (KeyError, FileNotFoundError):
                    continue
            return out

        return await self.call(read)

    async def store_flags(
        self, uids: Sequence[int], flags: Iterable[str], mode: int
    ) -> dict[int, frozenset[str]]:
        """mode +1 add, -1 remove, 0 replace; uid -> new flags of those still there."""
        flags = list(flags)
        result = await self.call(lambda f: f.store_flags(uids, flags, mode))
        if result:
            self.owner.service.publish(self.login, self.name)
        return result

    async def store_flags_cond(
        self, uids: Sequence[int], flags: Iterable[str], mode: int,
        unchanged_since: int | None = None,
    ) -> tuple[dict[int, frozenset[str]], list[int], dict[int, int]]:
        """:meth:`store_flags` with RFC 7162 UNCHANGEDSINCE: messages whose
        mod-sequence is above ``unchanged_since`` are left alone and returned as
        *modified*.  Returns (uid -> new flags, modified UIDs, uid -> mod-sequence of
        the stored ones); check and store run in one call, in folder order."""
        flags = list(flags)

        def store(folder: Folder) -> tuple[dict[int, frozenset[str]], list[int], dict[int, int]]:
            todo, modified = list(uids), []
            if unchanged_since is not None:
                folder.sync()
                _, seqs = folder.modseqs()
                modified = [u for u in todo if seqs.get(u, 0) > unchanged_since]
                todo = [u for u in todo if seqs.get(u, 0) <= unchanged_since]
            result = folder.store_flags(todo, flags, mode) if todo else {}
            _, seqs = folder.modseqs()
            return result, modified, {u: seqs[u] for u in result if u in seqs}

        result, modified, seqs = await self.call(store)
        if result:
            self.owner.service.publish(self.login, self.name)
        return result, modified, seqs

    async def expunge(self, uids: Sequence[int] | None = None) -> list[int]:
        removed = await self.call(lambda f: f.expunge(uids))
        if removed:
            self.owner.service.publish(self.login, self.name)
        return removed

    async def copy_to(self, uids: Sequence[int], dest: MailboxView, *,
                      move: bool = False) -> tuple[list[tuple[int, int]], list[int]]:
        """Copy or move into ``dest``; returns ((src_uid, dest_uid) pairs, removed here).

        MOVE renames when the store can (crash-safe: never in both folders),
        otherwise it copies, flags \\Deleted and expunges.
        """

        def work(folder: Folder) -> tuple[list[tuple[int, int]], list[int]]:
            mover = getattr(folder, "move_to", None) if move else None
            if mover is not None:
                pairs: list[tuple[int, int]] = mover(uids, dest.folder)
                return pairs, [p[0] for p in pairs]
            pairs = folder.copy_to(uids, dest.folder)
            if not move or not pairs:
                return pairs, []
            moved = [p[0] for p in pairs]
            folder.store_flags(moved, ["\\Deleted"], 1)
            return pairs, folder.expunge(moved)

        pairs, removed = await self.call(work)
        if pairs:
            self.owner.service.publish(self.login, dest.name)
        if removed:
            self.owner.service.publish(self.login, self.name)
        return pairs, removed

    async def summaries(
        self, infos: Sequence[MessageInfo], codec: SummaryCodec[S],
        data: dict[int, bytes] | None = None,
    ) -> dict[int, S]:
        """Summaries by UID: LRU, then the store's cache, then parsing (on the pool)."""
        lru = self.owner.service.summaries
        cache_id = self.cache_id
        # a codec with an ``lru_tag`` keeps its summaries apart; with ``from_wider`` it
        # takes what it needs from the untagged (full) summary of a message, if at hand
        tag = getattr(codec, "lru_tag", "")
        from_wider = getattr(codec, "from_wider", None) if tag else None
        out: dict[int, S] = {}
        want: dict[str, int] = {}
        for m in infos:
            hit = lru.get((cache_id + tag, m.key))
            if hit is None and from_wider is not None:
                wider = lru.get((cache_id, m.key))
                hit = from_wider(wider) if wider is not None else None
            if hit is not None:
                out[m.uid] = hit
            else:
                want[m.key] = m.uid
        if want:
            out.update(await self.call(
                lambda f: summaries_blocking(f, want, codec, lru, cache_id, data)))
        return out


def summaries_blocking(
    folder: Folder, want: dict[str, int], codec: SummaryCodec[S], lru: _LRU[Any],
    cache_id: str, data: dict[int, bytes] | None = None,
) -> dict[int, S]:
    """Pool side of :meth:`MailboxView.summaries` (also for :meth:`MailboxView.call`)."""
    out: dict[int, S] = {}
    stored: dict[str, Any] = {}
    get_many = getattr(folder, "cache_get_many", None)
    if get_many is not None:
        try:
            stored = get_many(list(want))
        except Exception:  # the cache is an optimisation only
            log.exception("event=mailbox.cache_read_failed folder=%s", folder.name)
    fresh: dict[str, dict[str, Any]] = {}
    # a codec that needs only the header (``head_only``) reads no further than its end
    read = getattr(folder, "read_head", None) if getattr(codec, "head_only", False) else None
    if read is None:
        read = folder.read
    for key, uid in want.items():
        value = codec.load(stored.get(key))
        if value is None:
            raw = data.get(uid) if data else None
            if raw is None:
                try:
                    raw = read(uid)
                except (KeyError, FileNotFoundError):
                    continue
            value = codec.build(raw)
            fresh[key] = codec.dump(value)
        lru.put((cache_id + getattr(codec, "lru_tag", ""), key), value)
        out[uid] = value
    put_many = getattr(folder, "cache_put_many", None)
    if fresh and put_many is not None:
        try:
            put_many(fresh)
        except Exception:
            log.exception("event=mailbox.cache_write_failed folder=%s", folder.name)
    return out
