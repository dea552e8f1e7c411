"""The selected mailbox as one session sees it: a sequence-number snapshot.

RFC 3501 §7.4.1/§5.5: sequence numbers are per session and change only when the
server reports them.  :meth:`SelectedFolder.refresh` runs at command boundaries
(NOOP, IDLE wake-ups, the end of most commands) and turns what changed in the
store (new deliveries, flag changes and expunges by other sessions or processes)
into untagged ``EXISTS``/``RECENT``/``FETCH``/``EXPUNGE`` lines.  While a FETCH,
STORE or SEARCH runs, expunges are held back (the message stays addressable as
a "ghost" until the next boundary that allows EXPUNGE).

Every store access goes through the session's :class:`MailboxView` (the async
mailbox service runs it off the loop); ENVELOPE/BODYSTRUCTURE summaries are cached
by the service (an in-process LRU, then the store's per-folder cache), this module
only says how to build them (:data:`META_CODEC`).

Pure (no Twisted).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import operator
import time
from collections.abc import Callable, Iterable, Sequence, Set
from typing import Any, NamedTuple, TypeVar

from esam_mail.services.mailflow.mailboxes import SYSTEM_FLAGS, MailboxView, MessageInfo, Snapshot

from . import mime
from .parser import ParseError, SeqSet, format_uid_set

log = logging.getLogger(__name__)
_T = TypeVar("_T")

RECENT = "\\Recent"
# a session takes a real look at its folder at least this often (seconds), even when the
# shared change generation says no esam writer changed it (see SelectedFolder._may_skip)
REAL_LOOK_EVERY = 5.0


class _MetaCodec:
    """ENVELOPE/BODYSTRUCTURE summaries for the mailbox service's cache."""

    def build(self, data: bytes) -> mime.MessageMeta:
        return mime.analyse(data)

    def dump(self, value: mime.MessageMeta) -> dict[str, Any]:
        return value.to_json()

    def load(self, raw: dict[str, Any] | None) -> mime.MessageMeta | None:
        return mime.MessageMeta.from_json(raw)


META_CODEC = _MetaCodec()


class _EnvelopeCodec:
    """ENVELOPE alone, for a FETCH that wants no other parsed item.  Its own LRU space
    (``lru_tag``); a full summary already at hand serves it too (``from_wider``), and its
    cache entries never pass for full ones (see :class:`mime.EnvelopeOnly`)."""

    lru_tag = "\0env"
    head_only = True  # build() gets the message through its header's end, maybe no further

    def from_wider(self, value: Any) -> mime.EnvelopeOnly | None:
        return mime.EnvelopeOnly(value.envelope) if isinstance(value, mime.MessageMeta) else None

    def build(self, data: bytes) -> mime.EnvelopeOnly:
        return mime.envelope_of(data)

    def dump(self, value: mime.EnvelopeOnly) -> dict[str, Any]:
        return value.to_json()

    def load(self, raw: dict[str, Any] | None) -> mime.EnvelopeOnly | None:
        return mime.EnvelopeOnly.from_json(raw)


ENVELOPE_CODEC = _EnvelopeCodec()


class UidValidityChanged(Exception):
    """The folder's UIDVALIDITY changed under a selected session (uidlist rebuilt).

    RFC 3501 §2.3.1.1: UIDs must not change within a session, so the session ends.
    """


def format_flags(flags: Iterable[str]) -> bytes:
    order = {f: i for i, f in enumerate((RECENT, *SYSTEM_FLAGS))}
    ordered = sorted(flags, key=lambda f: (order.get(f, 99), f))
    return b"(" + " ".join(ordered).encode("utf-8", "replace") + b")"


class SelectedFolder:
    """Per-session view of one folder (see module docstring)."""

    def __init__(
        self, view: MailboxView, infos: list[MessageInfo], uidvalidity: int, *,
        readonly: bool, recent: set[int] | None = None, highestmodseq: int = 0,
        modseqs: dict[int, int] | None = None,
    ) -> None:
        self.view = view
        self.readonly = readonly
        self.uidvalidity = uidvalidity
        self.uids: list[int] = [m.uid for m in infos]
        self.info: dict[int, MessageInfo] = {m.uid: m for m in infos}
        # \Recent: claimed for this session alone (EXAMINE only looks, RFC 3501 §6.3.2)
        self.recent: set[int] = (recent or set()) & set(self.uids)
        self.gone: set[int] = set()
        self.announced: set[str] = self.keywords()  # keywords the client has seen in * FLAGS
        self._refresh_lock = asyncio.Lock()
        # RFC 7162: mod-sequences; once the client enabled CONDSTORE, every FETCH
        # reporting a flag change carries UID and MODSEQ
        self.highestmodseq = highestmodseq
        self.modseq: dict[int, int] = dict(modseqs or {})
        self.condstore = False
        self.qresync = False  # RFC 7162 §3.2.10: expunges are reported as VANISHED
        # RFC 9051 (ENABLE IMAP4rev2): no RECENT response, no \Recent flag shown, and
        # nothing claimed as \Recent (a rev1 session may still see it)
        self.rev2 = False
        # RFC 5267 search contexts (see .context): while one watches, the UIDs whose
        # flags changed or that arrived are collected here, and ``on_expunge`` gets the
        # (sequence number, UID) of messages about to be reported expunged; the lines it
        # returns go out before the EXPUNGE lines, while those numbers still hold.
        self.touched: set[int] | None = None
        # the store's last snapshot as compared (identity): an unchanged folder is seen
        # as such in a C-level pass, no walk after every command (see refresh)
        self._last_infos: list[MessageInfo] = list(infos)
        self._last_modseqs: dict[int, int] | None = modseqs
        self.unseen_at_open: int | None = None  # first_unseen() when opened (SELECT's [UNSEEN])
        self.on_expunge: Callable[[list[tuple[int, int]]], list[bytes]] | None = None
        # the view's pool calls also look at the folder, for the refresh at the end of
        # the command that made them (refresh(along=True)); claimed as refresh would
        view.look_along = self._claims
        # the store's change generation as of our last real look (see _may_skip)
        self._gen: int | None = None
        # the store folder's (epoch, version) our state was last compared at (see
        # _journaled): the next refresh compares only the UIDs journaled since
        self._change: tuple[object, int] | None = None
        self._gen_now: Callable[[], int] | None = None
        self._looked = 0.0

    def _remember(self, snap: Snapshot) -> None:
        self._gen, self._gen_now = snap.generation, snap.current_generation
        self._looked = time.monotonic()

    def _may_skip(self) -> bool:
        """No real look needed: no esam writer changed this folder since our last look
        (its slot of the shared generation, read from the mapped page: no syscall), and
        that look is less than :data:`REAL_LOOK_EVERY` seconds old (writers that are not
        esam, and a crash between a change and its bump, are seen then).

        Whether that look was final for the store (no mtime within its freshness margin)
        does not matter here: the generation was read before the look and every esam
        writer bumps it after its change, so a change the look may have missed (same
        mtime tick) moved the generation since.  In a busy folder (a change every few ms)
        most looks are not final, and requiring it made most commands hop for one more
        look (issue 20); the store itself still lists again at that look."""
        gen_now = self._gen_now
        return (gen_now is not None and self._gen is not None and gen_now() == self._gen
                and time.monotonic() - self._looked < REAL_LOOK_EVERY)

    def _claims(self) -> bool:
        return not self.readonly and not self.rev2

    @classmethod
    async def open(cls, view: MailboxView, *, readonly: bool, rev2: bool = False
                   ) -> SelectedFolder:
        """Sync the folder (off the loop) and take the first snapshot."""
        snap = await view.snapshot(claim=not readonly and not rev2)
        return await cls.from_snapshot(view, snap, readonly=readonly, rev2=rev2)

    @classmethod
    async def from_snapshot(cls, view: MailboxView, snap: Snapshot, *, readonly: bool,
                            rev2: bool = False) -> SelectedFolder:
        """The first snapshot taken already (``UserMailboxes.select``: one pool call), with
        ``claim=not readonly and not rev2``.

        Building it walks every message (UID list, flags, keywords, first unseen):
        for a big folder that runs in a worker thread, not on the shared loop."""

        def build() -> SelectedFolder:
            sel = cls(view, snap.infos, snap.uidvalidity, readonly=readonly,
                      recent=set() if rev2 else snap.recent,
                      highestmodseq=snap.highestmodseq, modseqs=snap.modseqs)
            sel.rev2 = rev2
            sel.unseen_at_open = sel.first_unseen()
            sel._remember(snap)
            sel._compared(snap)
            return sel

        return await off_loop(len(snap.infos), build)

    @property
    def name(self) -> str:
        return self.view.name

    # -- lookups ----------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int:
        i = bisect.bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return i + 1
        raise KeyError(uid)

    def flags_of(self, uid: int) -> frozenset[str]:
        flags = self.info[uid].flags
        return flags | {RECENT} if uid in self.recent else flags

    def shown_flags(self, uid: int) -> frozenset[str]:
        """The flags a FETCH response shows: IMAP4rev2 has no \\Recent (RFC 9051 App. E)."""
        return self.info[uid].flags if self.rev2 else self.flags_of(uid)

    def first_unseen(self) -> int | None:
        for i, uid in enumerate(self.uids):
            if "\\Seen" not in self.info[uid].flags:
                return i + 1
        return None

    def keywords(self) -> set[str]:
        return _keywords(m.flags for m in self.info.values())

    def flags_lines(self) -> list[bytes]:
        """``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` for the keywords announced so far."""
        flags = [*SYSTEM_FLAGS, *sorted(self.announced)]
        text = " ".join(flags).encode("utf-8", "replace")
        perm = b"" if self.readonly else text + b" \\*"
        return [b"* FLAGS (" + text + b")",
                b"* OK [PERMANENTFLAGS (" + perm + b")] Flags permitted."]

    def announce(self, flag_sets: Iterable[Iterable[str]]) -> list[bytes]:
        """RFC 3501 §7.2.6: the FLAGS update owed before FETCH responses carrying these
        flags (none when every keyword among them was announced already)."""
        fresh = {f for fs in flag_sets for f in fs if not f.startswith("\\")} - self.announced
        if not fresh:
            return []
        self.announced |= fresh
        return self.flags_lines()

    def resolve(self, seqset: SeqSet, *, uid: bool) -> list[tuple[int, int]]:
        """(seq, uid) pairs addressed by a sequence set, ascending.

        Raises:
            ParseError: a sequence number beyond EXISTS (RFC 3501 §9 seq-number).
        """
        if not self.uids:
            if not uid and not seqset.has_star():
                raise ParseError("no such message")
            return []
        if uid:
            idx = seqset.select(self.uids, self.uids[-1])
        else:
            n = len(self.uids)
            if seqset.max_explicit() > n:
                raise ParseError("no such message")
            # sequence numbers are positions: range k..m is the slice k-1..m-1
            idx = [i for a, b in seqset.ranges_for(n) for i in range(a - 1, b)]
        return [(i + 1, self.uids[i]) for i in idx]

    # -- synchronisation --------------------------------------------------------

    async def refresh(self, *, allow_expunge: bool, with_uid: bool = True,
                      along: bool = False) -> list[bytes]:
        """Re-read the folder (off the loop) and return the untagged lines that
        report the changes.  One refresh at a time (IDLE wake-ups may overlap DONE).
        ``along``: at a command's end, the look its own pool call on this folder took
        (after its work there) serves, if there was one and nothing newer was seen since
        (:meth:`MailboxView.take_along`): one thread hop instead of two.

        An unchanged folder (the store's version is the one we compared at, or it hands
        back the same message records and mod-sequence map) is recognised without a walk.
        When the store's journal names the UIDs changed since our comparison, only those
        are looked at (:func:`_diff_uids`).  Otherwise comparing the new snapshot with
        ours walks the whole folder: for a big folder that runs in a worker thread (on
        copies), and only what changed is applied on the loop.

        Raises:
            UidValidityChanged: the UIDs of this session no longer mean anything.
        """
        async with self._refresh_lock:
            snap = self.view.take_along() if along else None
            if snap is None:
                if self._may_skip():
                    return self._drop(self.gone) if allow_expunge and self.gone else []
                snap = await self.view.snapshot(claim=self._claims())
            self._remember(snap)
            if snap.uidvalidity != self.uidvalidity:
                raise UidValidityChanged(self.view.name)
            changed = self._journaled(snap)
            if not changed if changed is not None else self._unchanged(snap.infos, snap.modseqs):
                self.highestmodseq = max(self.highestmodseq, snap.highestmodseq)
                self._compared(snap)
                return self._drop(self.gone) if allow_expunge and self.gone else []
            self.highestmodseq = max(self.highestmodseq, snap.highestmodseq)
            recent = frozenset() if self.rev2 else snap.recent
            if changed is not None and len(changed) <= JOURNAL_WALK_MAX:
                # only the UIDs the store journaled since our last comparison: work in
                # proportion to the change, not to the folder (issue 20)
                seqs = snap.modseqs
                diff = _diff_uids(changed, self.info, snap.infos,
                                  self.modseq if self.condstore else None, seqs)
                self._compared(snap)
                mine = self.modseq
                for uid in changed:
                    if uid in seqs:
                        mine[uid] = seqs[uid]
                lines = self._apply(diff, allow_expunge=allow_expunge, with_uid=with_uid,
                                    recent=recent)
                for uid in changed:  # ghosts keep theirs until reported
                    if uid not in seqs and uid not in self.info:
                        mine.pop(uid, None)
                return lines
            seen = self.modseq
            self.modseq = dict(snap.modseqs)
            diff = await off_loop(
                len(snap.infos) + len(self.uids), _diff, list(self.uids), self.info.copy(),
                snap.infos, seen if self.condstore else None, self.modseq,
            )
            # ghosts keep theirs until reported: the older ones and those this diff found
            # (which, looked at before it, lost theirs: MODSEQ (0) in a FETCH of a ghost)
            for uid in self.gone.union(diff.gone):
                if uid in seen:
                    self.modseq.setdefault(uid, seen[uid])
            self._compared(snap)
            return self._apply(diff, allow_expunge=allow_expunge, with_uid=with_uid,
                               recent=recent)

    def _compared(self, snap: Snapshot) -> None:
        """Our state now is ``snap``'s: remember what the next refresh compares with."""
        self._last_infos, self._last_modseqs = snap.infos, snap.modseqs
        ch = snap.changes
        self._change = (ch[0], ch[1]) if ch is not None else None

    def _journaled(self, snap: Snapshot) -> set[int] | None:
        """The UIDs whose record or mod-sequence the store journaled between the look our
        state was compared at and ``snap`` (empty: the same version); None when that is not
        known (another folder object, a bump of unknown extent, or one that fell out of
        the journal): then the whole list is compared."""
        ch, mine = snap.changes, self._change
        if ch is None or mine is None or ch[0] is not mine[0] or ch[1] < mine[1]:
            return None
        if ch[1] == mine[1]:
            return set()
        out: set[int] = set()
        last = mine[1]
        first = None
        for version, uids in reversed(ch[2]):
            if version <= last:
                break
            if uids is None:
                return None
            out |= uids
            first = version
        if first != last + 1:
            return None  # the bumps right after ours are no longer in the journal
        return out

    def _unchanged(self, infos: list[MessageInfo], modseqs: dict[int, int]) -> bool:
        """The store's snapshot is the one we compared last: same records (by identity,
        ``map`` and ``any`` in C) and the same mod-sequences."""
        last = self._last_infos
        return (len(infos) == len(last) and not any(map(operator.is_not, infos, last))
                and (modseqs is self._last_modseqs or modseqs == self._last_modseqs))

    def _apply(self, diff: _Diff, *, allow_expunge: bool, with_uid: bool,
               recent: Set[int] = frozenset()) -> list[bytes]:
        """Apply a :func:`_diff` result: work in proportion to what changed."""
        lines: list[bytes] = []
        self.gone.update(diff.gone)
        if allow_expunge and self.gone:
            lines.extend(self._drop(self.gone))
        self.info.update(diff.updates)
        if diff.keywords - self.announced:
            lines.extend(self.announce([diff.keywords]))
        if self.touched is not None:
            self.touched.update(diff.changed)
            self.touched.update(m.uid for m in diff.new)
        for uid in diff.changed:
            if uid in self.gone:
                continue
            lines.append(self.flags_fetch(uid, with_uid=with_uid))
        if diff.new:
            self.uids.extend(m.uid for m in diff.new)
            self.recent |= recent & {m.uid for m in diff.new}
            if self.uids != sorted(self.uids):  # defensive: UIDs only ever grow
                self.uids.sort()
            lines.append(b"* %d EXISTS" % len(self.uids))
            if not self.rev2:
                lines.append(b"* %d RECENT" % len(self.recent))
        return lines

    def _drop(self, uids: Iterable[int]) -> list[bytes]:
        """Remove UIDs from the snapshot; EXPUNGE lines in an order valid as sent.

        Work in proportion to the UIDs removed (binary search in the sorted UID list),
        not to the folder: one expunged message in 10,000 is a few steps on the loop."""
        doomed = set(uids)
        n = len(self.uids)
        positions = sorted((i for i in (bisect.bisect_left(self.uids, u) for u in doomed)
                            if i < n and self.uids[i] in doomed), reverse=True)
        pairs = [(i + 1, self.uids[i]) for i in positions]  # highest sequence number first
        lines = [b"* %d EXPUNGE" % seq for seq, _ in pairs]
        vanished = [uid for _, uid in pairs]
        before = self.on_expunge(pairs) if self.on_expunge is not None and pairs else []
        if len(positions) <= 64:
            for i in positions:  # descending: the positions still to delete stay valid
                del self.uids[i]
        elif positions:
            self.uids[:] = [u for u in self.uids if u not in doomed]
        for uid in vanished:
            self.info.pop(uid, None)
            self.recent.discard(uid)
        self.gone -= doomed
        if self.qresync:
            return before + ([b"* VANISHED " + format_uid_set(sorted(vanished))]
                             if vanished else [])
        return before + lines

    def expunged(self, uids: Sequence[int]) -> list[bytes]:
        """Our own EXPUNGE removed ``uids``; report them (and any pending ghosts)."""
        return self._drop(set(uids) | self.gone)

    def flags_fetch(self, uid: int, *, with_uid: bool = True, silent: bool = False) -> bytes:
        """``* n FETCH (UID u FLAGS (..) MODSEQ (m))`` reporting a flag change; UID and
        MODSEQ always once CONDSTORE is on (RFC 7162 §3.1), FLAGS left out if ``silent``."""
        items: list[bytes] = []
        if with_uid or self.condstore:
            items.append(b"UID %d" % uid)
        if not silent:
            items.append(b"FLAGS " + format_flags(self.shown_flags(uid)))
        if self.condstore:
            items.append(b"MODSEQ (%d)" % self.modseq.get(uid, 0))
        return b"* %d FETCH (%s)" % (self.seq_of(uid), b" ".join(items))

    def set_flags(self, uid: int, flags: frozenset[str]) -> None:
        old = self.info.get(uid)
        if old is not None:
            self.info[uid] = _with_flags(old, flags)
            if self.touched is not None:
                self.touched.add(uid)

    def take_touched(self) -> set[int]:
        """The UIDs collected in :attr:`touched` since the last call (see __init__)."""
        if not self.touched:
            return set()
        out, self.touched = self.touched, set()
        return out

    # -- metadata ----------------------------------------------------------------

    async def metas(
        self, uids: Sequence[int], data: dict[int, bytes] | None = None
    ) -> dict[int, mime.MessageMeta]:
        """Parsed summaries for ``uids`` (cached by the mailbox service).

        Messages expunged meanwhile are absent from the result.
        """
        infos = [m for m in (self.info.get(u) for u in uids) if m is not None]
        return await self.view.summaries(infos, META_CODEC, data)

    async def envelopes(
        self, uids: Sequence[int], data: dict[int, bytes] | None = None
    ) -> dict[int, mime.EnvelopeOnly]:
        """ENVELOPEs for ``uids``: a cached full summary where there is one, else the
        header alone is parsed (and kept as an envelope-only entry)."""
        infos = [m for m in (self.info.get(u) for u in uids) if m is not None]
        return await self.view.summaries(infos, ENVELOPE_CODEC, data)


# Walks over a folder of more messages than this run in a worker thread (off_loop);
# below it the thread hop would cost more than the walk (a few hundred microseconds).
INLINE_MAX = 2000


async def off_loop(size: int, fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)``: inline for a small folder, in a worker thread for a big one."""
    if size <= INLINE_MAX:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


# a journaled change of more UIDs than this is compared by the whole-list walk (set
# operations in C), cheaper then than one lookup per UID in Python
JOURNAL_WALK_MAX = 256


class _Diff(NamedTuple):
    gone: list[int]  # our UIDs absent from the new snapshot
    changed: list[int]  # flags (or, with CONDSTORE, the mod-sequence) changed, ascending
    new: list[MessageInfo]  # not in our snapshot yet, ascending UID
    updates: dict[int, MessageInfo]  # the new records of new messages and changed ones
    keywords: set[str]  # the keywords among ``updates``' flags


_UID = operator.attrgetter("uid")


def _diff(uids: list[int], info: dict[int, MessageInfo], infos: list[MessageInfo],
          seen: dict[int, int] | None, modseq: dict[int, int]) -> _Diff:
    """What changed between our snapshot (``uids``/``info``, copies) and ``infos``.

    Pure, so it may run in a worker thread; ``seen`` (the old mod-sequences) only
    when CONDSTORE is on (a mod-sequence change alone is then reported too).

    The store hands out the same record object for a message that did not change, so
    only the records we do not hold are looked at one by one; finding them, the
    expunged UIDs and the mod-sequences that moved are set operations in C (a walk
    over every message in Python after every change by any session, issue 20)."""
    by_id = dict(zip(map(id, infos), infos, strict=True))
    fresh = [by_id[i] for i in by_id.keys() - set(map(id, info.values()))]
    now = set(map(_UID, infos))
    gone_set = set(uids) - now
    gone = [u for u in uids if u in gone_set] if gone_set else []
    changed: list[int] = []
    new: list[MessageInfo] = []
    updates: dict[int, MessageInfo] = {}
    same: dict[int, MessageInfo] = {}  # a new record of the same flags: held from now on
    for m in fresh:
        old = info.get(m.uid)
        if old is None:
            new.append(m)
            updates[m.uid] = m
        elif old.flags != m.flags:
            changed.append(m.uid)
            updates[m.uid] = m
        else:
            same[m.uid] = m
    if seen is not None and seen != modseq:
        moved = {u for u, _ in seen.items() ^ modseq.items()}
        changed.extend(u for u in moved if u in now and u in info and u not in updates)
    changed.sort()
    new.sort(key=_UID)
    keywords = _keywords(m.flags for m in updates.values())
    updates.update(same)
    return _Diff(gone, changed, new, updates, keywords)


def _diff_uids(uids: Iterable[int], info: dict[int, MessageInfo], infos: list[MessageInfo],
               seen: dict[int, int] | None, modseq: dict[int, int]) -> _Diff:
    """:func:`_diff` limited to ``uids`` (the only ones that may have changed: the store's
    journal since our last comparison), found in ``infos`` (sorted by UID) by bisection."""
    gone: list[int] = []
    changed: list[int] = []
    new: list[MessageInfo] = []
    updates: dict[int, MessageInfo] = {}
    same: dict[int, MessageInfo] = {}
    n = len(infos)
    for uid in sorted(uids):
        i = bisect.bisect_left(infos, uid, key=_UID)
        m = infos[i] if i < n and infos[i].uid == uid else None
        old = info.get(uid)
        if m is None:
            if old is not None:
                gone.append(uid)
        elif old is None:
            new.append(m)
            updates[uid] = m
        elif old.flags != m.flags:
            changed.append(uid)
            updates[uid] = m
        else:
            if old is not m:
                same[uid] = m
            if seen is not None and seen.get(uid) != modseq.get(uid):
                changed.append(uid)
    keywords = _keywords(m.flags for m in updates.values())
    updates.update(same)
    return _Diff(gone, changed, new, updates, keywords)


def _keywords(flag_sets: Iterable[frozenset[str]]) -> set[str]:
    return {f for f in frozenset().union(*flag_sets) if not f.startswith("\\")}


def _with_flags(m: MessageInfo, flags: frozenset[str]) -> MessageInfo:
    return MessageInfo(
        uid=m.uid, key=m.key, flags=frozenset(flags), size=m.size,
        internal_date=m.internal_date,
    )
