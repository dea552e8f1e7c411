"""Durable outbound spool: one message file plus one envelope JSON per queue entry.

The spool is what ``services.mailflow.queue`` schedules and ``services.mailflow.relay`` sends; it
knows nothing about SMTP beyond storing the envelope (RFC 5321 3.3 MAIL/RCPT)
and the last reply per recipient so that DSNs (RFC 3464) can be written later.

On-disk layout (directories 0700, files 0600)::

    <root>/tmp/            half-written files; never read, swept by cleanup()
    <root>/msg/<id>        message bytes exactly as received (CRLF)
    <root>/env/<id>.json   envelope + per-recipient state; written LAST
    <root>/lock/<id>       flock(2) target used by claim()

Atomicity: every file is written to ``tmp/``, fsynced, then renamed into place
and the directory fsynced.  ``enqueue`` writes the message before the envelope,
so an entry is only visible (``list``/``due``) once it is complete; a crash
in between leaves an orphan ``msg/<id>`` that ``cleanup`` removes.  ``update``
replaces the envelope by rename, so readers see the old or the new state, never
a mix.

Multi-process safety: ``claim(id)`` takes a non-blocking exclusive ``flock`` on
``lock/<id>``.  flock locks belong to the open file description, so two
runners (in one process or in several) can never hold the same entry, and the
kernel drops the lock when a runner dies, so a crash never leaves a stale
claim.  Mutations (``update``/``delete``) should be done while holding the
claim.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Literal

from esam_mail import fsio

__all__ = ["RecipientState", "Spool", "SpoolClaim", "SpoolEntry"]

RcptStatus = Literal["pending", "delivered", "failed"]

_ID_RE = re.compile(r"^[0-9a-z]{8,40}$")
_FORMAT = 1


@dataclass(slots=True)
class RecipientState:
    """Delivery state of one envelope recipient.

    ``reply`` is the last SMTP reply line (``"450 4.2.0 busy"``) or a
    synthetic one for local failures; ``remote_mta`` the host that gave it.
    ``notified`` records that a DSN (failure or delay) was sent for it.
    """

    address: str
    status: RcptStatus = "pending"
    reply: str | None = None
    remote_mta: str | None = None
    attempts: int = 0
    last_attempt: float | None = None
    notified: bool = False


@dataclass(slots=True)
class SpoolEntry:
    """Envelope of one queued message (the JSON in ``env/<id>.json``)."""

    id: str
    mail_from: str
    rcpts: list[RecipientState]
    created: float
    next_attempt: float
    attempts: int = 0
    last_attempt: float | None = None
    dsn_envelope_id: str | None = None
    delay_notified: bool = False
    size: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    def pending(self) -> list[RecipientState]:
        """Recipients still to be delivered."""
        return [r for r in self.rcpts if r.status == "pending"]

    def to_json(self) -> bytes:
        d = asdict(self)
        d["format"] = _FORMAT
        return json.dumps(d, sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> SpoolEntry:
        d = json.loads(raw)
        d.pop("format", None)
        d["rcpts"] = [RecipientState(**r) for r in d["rcpts"]]
        return cls(**d)


class SpoolClaim:
    """An exclusive claim on one entry; release with ``release()`` or ``with``.

    ``entry`` is the envelope as read *after* the lock was taken.
    """

    def __init__(self, spool: Spool, entry: SpoolEntry, fd: int) -> None:
        self.spool = spool
        self.entry = entry
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> SpoolClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # pragma: no cover - safety net only
        self.release()


class Spool:
    """A spool directory (see the module docstring for layout and guarantees).

    Args:
        root: directory; created 0700 if missing.
        fsync: fsync files and directories (turn off only in tests/benchmarks).

    All methods are synchronous file I/O; async callers use ``asyncio.to_thread``
    for ``enqueue``/``update`` (they fsync).
    """

    def __init__(self, root: str | os.PathLike[str], fsync: bool = True) -> None:
        self.root = os.fspath(root)
        self.fsync = fsync
        for sub in ("", "tmp", "msg", "env", "lock"):
            os.makedirs(os.path.join(self.root, sub), mode=0o700, exist_ok=True)

    # -- paths -------------------------------------------------------------

    def _check_id(self, queue_id: str) -> str:
        if not _ID_RE.match(queue_id):
            raise KeyError(queue_id)
        return queue_id

    def _msg_path(self, queue_id: str) -> str:
        return os.path.join(self.root, "msg", self._check_id(queue_id))

    def _env_path(self, queue_id: str) -> str:
        return os.path.join(self.root, "env", self._check_id(queue_id) + ".json")

    def _lock_path(self, queue_id: str) -> str:
        return os.path.join(self.root, "lock", self._check_id(queue_id))

    # -- low level ---------------------------------------------------------

    def _fsync_dir(self, path: str) -> None:
        if self.fsync:
            fsio.fsync_dir(path)

    def _write_atomic(self, dest: str, data: bytes) -> None:
        fsio.atomic_write(dest, data, fsync=self.fsync, tmp_dir=os.path.join(self.root, "tmp"))

    @staticmethod
    def new_id(now: float | None = None) -> str:
        """A sortable, unguessable queue id: hex µs timestamp + 48 random bits."""
        t = int((time.time() if now is None else now) * 1_000_000)
        return f"{t:014x}{secrets.token_hex(6)}"

    # -- public API --------------------------------------------------------

    def enqueue(
        self,
        mail_from: str,
        rcpts: list[str],
        data: bytes,
        *,
        dsn_envelope_id: str | None = None,
        now: float | None = None,
    ) -> str:
        """Durably queue a message for every recipient; return the queue id.

        Args:
            mail_from: reverse-path without brackets; ``""`` for the null sender.
            rcpts: forward-paths; duplicates are dropped (order kept).
            data: the message (RFC 5322), CRLF line endings.
            dsn_envelope_id: RFC 3461 ENVID, echoed in DSNs.
            now: creation time (injectable clock); defaults to ``time.time()``.

        Raises:
            ValueError: no recipients.
        """
        if not rcpts:
            raise ValueError("no recipients")
        now = time.time() if now is None else now
        queue_id = self.new_id(now)
        seen: dict[str, None] = dict.fromkeys(rcpts)
        entry = SpoolEntry(
            id=queue_id,
            mail_from=mail_from,
            rcpts=[RecipientState(address=r) for r in seen],
            created=now,
            next_attempt=now,
            dsn_envelope_id=dsn_envelope_id,
            size=len(data),
        )
        # Message first, envelope last: the envelope makes the entry visible.
        self._write_atomic(self._msg_path(queue_id), data)
        self._write_atomic(self._env_path(queue_id), entry.to_json())
        return queue_id

    def get(self, queue_id: str) -> SpoolEntry:
        """Read one envelope.  Raises ``KeyError`` if it does not exist."""
        try:
            with open(self._env_path(queue_id), "rb") as f:
                return SpoolEntry.from_json(f.read())
        except FileNotFoundError:
            raise KeyError(queue_id) from None

    def read_message(self, queue_id: str) -> bytes:
        """The message bytes.  Raises ``KeyError`` if missing."""
        try:
            with open(self._msg_path(queue_id), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise KeyError(queue_id) from None

    def ids(self) -> list[str]:
        """Ids of complete entries, oldest first."""
        out = []
        for name in os.listdir(os.path.join(self.root, "env")):
            if name.endswith(".json") and _ID_RE.match(name[:-5]):
                out.append(name[:-5])
        return sorted(out)

    def due(self, now: float) -> list[SpoolEntry]:
        """Entries with ``next_attempt <= now``, earliest first."""
        return sorted(
            (e for e in self.list() if e.next_attempt <= now),
            key=lambda e: (e.next_attempt, e.id),
        )

    def update(self, entry: SpoolEntry) -> None:
        """Atomically replace the envelope of an existing entry.

        Raises ``KeyError`` if the entry was deleted (so a stale writer cannot
        resurrect it).
        """
        if not os.path.exists(self._env_path(entry.id)):
            raise KeyError(entry.id)
        self._write_atomic(self._env_path(entry.id), entry.to_json())

    def delete(self, queue_id: str) -> None:
        """Remove an entry (envelope first, so it disappears atomically). Idempotent."""
        for path in (self._env_path(queue_id), self._msg_path(queue_id)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._fsync_dir(os.path.join(self.root, "env"))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._lock_path(queue_id))

    def claim(self, queue_id: str) -> SpoolClaim | None:
        """Try to take the exclusive claim on an entry without blocking.

        Returns ``None`` when another holder has it or the entry is gone.
        """
        fd = os.open(self._lock_path(queue_id), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            entry = self.get(queue_id)  # re-read under the lock
        except (KeyError, ValueError):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            # A delete() raced us; don't leave the lock file behind.
            if not os.path.exists(self._env_path(queue_id)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._lock_path(queue_id))
            return None
        return SpoolClaim(self, entry, fd)

    def claim_due(self, now: float) -> Iterator[SpoolClaim]:
        """Yield claims on due entries that nobody else holds (re-checked under lock)."""
        for e in self.due(now):
            c = self.claim(e.id)
            if c is None:
                continue
            if c.entry.next_attempt > now:
                c.release()
                continue
            yield c

    def cleanup(self, *, max_age: float = 3600.0, now: float | None = None) -> int:
        """Remove leftovers of crashed writers older than ``max_age`` seconds:
        ``tmp/`` files and messages without an envelope.  Returns the count."""
        now = time.time() if now is None else now
        removed = 0
        env_ids = set(self.ids())
        for sub in ("tmp", "msg"):
            d = os.path.join(self.root, sub)
            for name in os.listdir(d):
                if sub == "msg" and name in env_ids:
                    continue
                p = os.path.join(d, name)
                try:
                    if now - os.stat(p).st_mtime >= max_age:
                        os.unlink(p)
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed

    # Defined last: inside the class body the name shadows the builtin.
    def list(self) -> list[SpoolEntry]:
        """Every complete entry, oldest first (entries deleted meanwhile are skipped)."""
        out = []
        for queue_id in self.ids():
            with contextlib.suppress(KeyError, ValueError):
                out.append(self.get(queue_id))
        return out
