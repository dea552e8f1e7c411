"""A folder's change log (``esam-changes``): what each esam writer changed in cur/, so
that another process brings its view forward by reading a few records instead of
listing cur/ again (issue 20).

Dovecot keeps every change in an index log that other processes apply; esam's Maildir
has cur/ itself as the truth, and a process that saw the folder's slot of the change
generation move (:mod:`esam_mail.store.generation`) listed cur/ and took the listing's
delta: O(messages) in the kernel and in C at every change another process made, the
largest cost of a busy shared folder left (py-spy: a tenth of the stress's CPU).

Rules:

* A record says which names one writer changed, as ``(key, old name, new name)``
  triples (old None: added; new None: removed), tagged with the generation file's inode
  and the folder slot's value *before* that writer's bump.  It is written under the
  generation file's flock, just before the bump's ``pwrite`` (``Held.bump``), so the
  record for value ``g`` is on disk before any reader can see the slot past ``g``.
* Flag renames hold that flock from before their first rename until their bump
  (``MaildirFolder.store_flags``): two renames of one message are logged in the order
  they were made.  Other writers (APPEND, COPY, MOVE, EXPUNGE) only add or remove keys,
  which no later change can bring back to an earlier name, so their order needs no lock.
* A reader (:meth:`ChangeLog.records`) applies records only as a complete chain from
  the slot value its view was taken at to the value now, with the inode of the file it
  maps; a gap (a writer that logs nothing: a delivery, a repair, another folder sharing
  the slot, a record that failed) means a real listing, as before.  Each triple must
  fit the view: a key's name is its old name (then takes the new one) or already the
  new one (a listing that caught the writer between its change and its bump); anything
  else means a real listing.
* Records are not fsynced: they describe changes to processes that are running now.
  The file is truncated by the writer that finds it past :data:`MAX_SIZE`; a reader
  whose offset no longer starts a record reads it again from the start.

Format: one line per record, ``\\x1e`` then fields separated by ``\\x1f``: inode, slot
value, then three fields per triple (an empty field for None).  A name holding one of
those bytes or a newline is not logged (readers list cur/ instead).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

CHANGES_FILE = "esam-changes"
MAX_SIZE = 64 * 1024  # the writer that finds the file past this truncates it first
READ_MAX = 256 * 1024  # bytes read at once (a file never holds much more than MAX_SIZE)
KEEP = 512  # records a reader keeps parsed (a chain is at most CHAIN_MAX long)
CHAIN_MAX = 64  # records a look applies at most; a view further behind lists cur/
_SEP, _FIELD = b"\x1e", b"\x1f"
_BAD = frozenset(b"\x1e\x1f\n")
_MASK = 0xFFFF_FFFF_FFFF_FFFF

Change = tuple[str, str | None, str | None]  # (key, old name or None, new name or None)


def encode(inode: int, before: int, changes: Iterable[Change]) -> bytes | None:
    """One record, or None when a name cannot be written in the format."""
    fields = [b"%d" % inode, b"%d" % before]
    for key, old, new in changes:
        for s in (key, old or "", new or ""):
            b = s.encode("utf-8", "surrogateescape")
            if not _BAD.isdisjoint(b):
                return None
            fields.append(b)
    return _SEP + _FIELD.join(fields) + b"\n"


def append(path: Path | str, record: bytes) -> None:
    """Add ``record`` to the log at ``path`` (call under the generation file's flock,
    which orders the records; blocking)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.lseek(fd, 0, os.SEEK_END) >= MAX_SIZE:
            os.ftruncate(fd, 0)
        os.write(fd, record)
    finally:
        os.close(fd)


def _decode(line: bytes) -> tuple[int, int, list[Change]] | None:
    fields = line.split(_FIELD)
    if len(fields) < 2 or (len(fields) - 2) % 3 or not fields[0].isdigit() or not fields[1].isdigit():
        return None
    changes: list[Change] = []
    for i in range(2, len(fields), 3):
        key, old, new = (f.decode("utf-8", "surrogateescape") for f in fields[i:i + 3])
        if not key:
            return None
        changes.append((key, old or None, new or None))
    return int(fields[0]), int(fields[1]), changes


class ChangeLog:
    """One process's reader of a folder's log (not thread-safe: the folder's lock)."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._offset = 0  # where the next read starts (the end of the last whole record)
        self._records: dict[tuple[int, int], list[Change]] = {}  # (inode, before) -> changes

    def records(self, inode: int, first: int, count: int) -> list[list[Change]] | None:
        """The changes of the bumps from slot value ``first`` on, ``count`` of them, in
        order; None when one is missing (a real listing then)."""
        if count > CHAIN_MAX:
            return None
        want = [(inode, (first + i) & _MASK) for i in range(count)]
        got = self._records
        if any(w not in got for w in want):
            self._read()
            if any(w not in got for w in want) and self._offset:
                self._offset = 0  # truncated meanwhile, maybe: from the start once
                self._read()
            if any(w not in got for w in want):
                return None
        return [got[w] for w in want]

    def _read(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            data = os.pread(fd, READ_MAX, self._offset)
            if data and not data.startswith(_SEP) and self._offset:
                self._offset = 0  # truncated and written again past our offset
                data = os.pread(fd, READ_MAX, 0)
        finally:
            os.close(fd)
        end = data.rfind(b"\n") + 1  # whole records only: a writer may be mid-line
        if not end:
            return
        self._offset += end
        got = self._records
        for line in data[:end].split(b"\n"):
            if not line.startswith(_SEP):
                continue
            rec = _decode(line[1:])
            if rec is not None:
                inode, before, changes = rec
                got.pop((inode, before), None)  # the latest record for a value wins
                got[(inode, before)] = changes
        while len(got) > KEEP:
            del got[next(iter(got))]


def fold(view: Mapping[str, str], chain: Sequence[Sequence[Change]]) -> dict[str, str | None] | None:
    """Where ``chain`` brings ``view`` (key -> name in cur/): the new name of each key it
    touches (None: removed), or None when a change does not fit the view (the caller
    then lists cur/).  ``view`` is not changed: work in proportion to the chain."""
    out: dict[str, str | None] = {}
    for changes in chain:
        for key, old, new in changes:
            if key in out:  # after the chain touched a key, each change follows the last
                if out[key] != old:
                    return None
            else:
                # the view may hold the change already (listed between its change and its
                # bump), only before the chain touched that key
                now = view.get(key)
                if now != old and now != new:
                    return None
            out[key] = new
    return out
