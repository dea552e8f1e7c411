"""The selected-folder snapshot without sockets: what a refresh reports, and that the
walks over a big folder (first snapshot, the diff after each command) leave the
shared loop (issue 14: nothing on the loop may grow with the folder)."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections import Counter
from typing import Any

import pytest

from esam_mail.imap import selected as selmod
from esam_mail.imap.selected import SelectedFolder
from esam_mail.services.mailflow.mailboxes import Snapshot
from esam_mail.store.interfaces import MessageInfo

WHEN = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)


READ_BY: Counter[str] = Counter()  # field reads of message records, by thread


class Spied(MessageInfo):
    """A message record that notes the threads reading its fields."""

    __slots__ = ()

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("__"):
            READ_BY[threading.current_thread().name] += 1
        return super().__getattribute__(name)


class Walked(list[MessageInfo]):
    """The snapshot's list; ``threads``: who read its records since it was made."""

    @property
    def threads(self) -> set[str]:
        return set(READ_BY)

    @property
    def reads(self) -> Counter[str]:
        return Counter(READ_BY)


def info(uid: int, *flags: str) -> MessageInfo:
    return Spied(uid=uid, key=f"k{uid}", flags=frozenset(flags), size=10, internal_date=WHEN)


class FakeView:
    name = "INBOX"

    def __init__(self, infos: list[MessageInfo]) -> None:
        self.set(infos)

    def set(self, infos: list[MessageInfo], modseqs: dict[int, int] | None = None) -> None:
        self.infos = Walked(infos)
        self.modseqs = modseqs or {m.uid: 1 for m in infos}
        READ_BY.clear()

    async def snapshot(self, *, claim: bool) -> Snapshot:
        return Snapshot(7, self.infos, set(), max(self.modseqs.values(), default=0), self.modseqs)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.mark.parametrize("size", [10, 5000])  # inline, and in a worker thread
def test_refresh_reports_flags_new_and_expunged(size: int) -> None:
    async def go() -> tuple[list[bytes], list[bytes], SelectedFolder]:
        view = FakeView([info(u) for u in range(1, size + 1)])
        sel = await SelectedFolder.open(view, readonly=False)  # type: ignore[arg-type]
        assert sel.exists == size and sel.unseen_at_open == 1
        infos = [info(u) for u in range(1, size + 1) if u != 2]
        infos[0] = info(1, "\\Seen", "$Work")
        view.set([*infos, info(size + 1, "$New")])
        held = await sel.refresh(allow_expunge=False)  # during FETCH: 2 stays a ghost
        view.set([*infos, info(size + 1, "$New")])
        later = await sel.refresh(allow_expunge=True)
        return held, later, sel

    held, later, sel = run(go())
    assert held[0].startswith(b"* FLAGS (") and b"$New" in held[0] and b"$Work" in held[0]
    assert held[2:] == [b"* 1 FETCH (UID 1 FLAGS (\\Seen $Work))",
                        b"* %d EXISTS" % (size + 1), b"* 0 RECENT"]
    assert later == [b"* 2 EXPUNGE"]
    assert sel.exists == size and sel.uids[:2] == [1, 3] and sel.uids[-1] == size + 1
    assert sel.flags_of(1) == {"\\Seen", "$Work"} and not sel.gone


def test_condstore_reports_a_modseq_change_alone() -> None:
    async def go() -> list[bytes]:
        view = FakeView([info(u) for u in range(1, 3001)])
        sel = await SelectedFolder.open(view, readonly=False)  # type: ignore[arg-type]
        sel.condstore = True
        view.set(list(view.infos), {**view.modseqs, 5: 9})
        return await sel.refresh(allow_expunge=True)

    assert run(go()) == [b"* 5 FETCH (UID 5 FLAGS () MODSEQ (9))"]


def test_big_folder_walks_run_off_the_loop() -> None:
    """SELECT's first snapshot and the diff after a command walk all 10,000 messages:
    in a worker thread; the loop only reads the records that changed."""
    size = 10_000

    async def go() -> tuple[str, set[str], Counter[str], list[bytes]]:
        loop_thread = threading.current_thread().name
        view = FakeView([info(u) for u in range(1, size + 1)])
        sel = await SelectedFolder.open(view, readonly=False)  # type: ignore[arg-type]
        at_open = view.infos.threads
        infos = list(view.infos)
        for u in (10, 5000, 9999):
            infos[u - 1] = info(u, "\\Seen")
        view.set(infos)
        lines = await sel.refresh(allow_expunge=True)
        return loop_thread, at_open, view.infos.reads, lines

    loop_thread, at_open, at_refresh, lines = run(go())
    assert lines == [b"* %d FETCH (UID %d FLAGS (\\Seen))" % (u, u) for u in (10, 5000, 9999)]
    assert at_open and loop_thread not in at_open
    assert sum(at_refresh.values()) >= size and at_refresh[loop_thread] <= 3 * 4


def test_unchanged_folder_is_not_walked() -> None:
    """The store hands back the same records: no walk at all, on no thread."""

    async def go() -> tuple[list[bytes], set[str]]:
        view = FakeView([info(u) for u in range(1, 10_001)])
        sel = await SelectedFolder.open(view, readonly=False)  # type: ignore[arg-type]
        sel.condstore = True
        view.set(list(view.infos), view.modseqs)  # a new list of the same records
        return await sel.refresh(allow_expunge=True), view.infos.threads

    lines, walked = run(go())
    assert lines == [] and walked == set()


def test_small_folder_stays_inline() -> None:
    async def go() -> tuple[str, set[str]]:
        view = FakeView([info(u) for u in range(1, selmod.INLINE_MAX + 1)])
        await SelectedFolder.open(view, readonly=False)  # type: ignore[arg-type]
        return threading.current_thread().name, view.infos.threads

    loop_thread, walked = run(go())
    assert walked == {loop_thread}


@pytest.mark.parametrize("doomed", [[3, 7, 8], list(range(2, 200, 2))])  # one by one, and rebuilt
def test_expunge_lines_are_valid_as_sent(doomed: list[int]) -> None:
    """RFC 3501 §7.4.1: each EXPUNGE renumbers the ones after it, so the lines go out
    highest sequence number first; the snapshot keeps the rest in order."""
    uids = list(range(1, 301))

    async def go() -> tuple[list[bytes], SelectedFolder]:
        view = FakeView([info(u) for u in uids])
        sel = await SelectedFolder.open(view, readonly=False)  # type: ignore[arg-type]
        return sel.expunged(doomed), sel

    lines, sel = run(go())
    client = list(uids)
    for line in lines:
        seq = int(line.split()[1])
        del client[seq - 1]
    assert lines == [b"* %d EXPUNGE" % u for u in sorted(doomed, reverse=True)]
    assert client == sel.uids == [u for u in uids if u not in doomed]
    assert all(u not in sel.info for u in doomed) and sel.exists == 300 - len(doomed)


def _diff_walk(uids: list[int], info_: dict[int, MessageInfo], infos: list[MessageInfo],
               seen: dict[int, int] | None, modseq: dict[int, int]) -> tuple[Any, ...]:
    """The diff as a walk over every message (before issue 20): the model."""
    current = {m.uid: m for m in infos}
    gone = [u for u in uids if u not in current]
    changed, new, updates = [], [], {}
    for m in infos:
        old = info_.get(m.uid)
        if old is None:
            new.append(m)
            updates[m.uid] = m
        elif old is not m and old.flags != m.flags:
            changed.append(m.uid)
            updates[m.uid] = m
        elif seen is not None and seen.get(m.uid) != modseq.get(m.uid):
            changed.append(m.uid)
    return gone, changed, new, {u: m.flags for u, m in updates.items()}, selmod._keywords(
        m.flags for m in updates.values())


def test_diff_of_changed_records_only_agrees_with_a_walk() -> None:
    """The diff looks one by one only at records it does not hold (issue 20); over random
    flag changes (some as new records of the same flags), arrivals, expunges and
    mod-sequence moves, it reports what a walk over every message reports."""
    import random

    rnd = random.Random(5)
    for trial in range(300):
        n = rnd.randint(0, 40)
        ours = [info(u, *rnd.sample(["\\Seen", "\\Flagged", "$x"], rnd.randint(0, 2))) for u in range(1, n + 1)]
        held = {m.uid: m for m in ours}
        theirs: list[MessageInfo] = []
        for m in ours:
            r = rnd.random()
            if r < 0.1:
                continue  # expunged
            if r < 0.25:
                theirs.append(info(m.uid, *rnd.sample(["\\Seen", "\\Flagged", "$x", "$y"], rnd.randint(0, 2))))
            elif r < 0.3:
                theirs.append(info(m.uid, *m.flags))  # a new record, the same flags
            else:
                theirs.append(m)
        theirs += [info(u) for u in range(n + 1, n + 1 + rnd.randint(0, 3))]
        seen = {m.uid: 5 for m in ours} if trial % 2 else None
        modseq = {m.uid: rnd.choice([5, 5, 5, 6]) for m in theirs}
        d = selmod._diff([m.uid for m in ours], dict(held), theirs, seen, modseq)
        gone, changed, new, updates, keywords = _diff_walk([m.uid for m in ours], held, theirs, seen, modseq)
        assert (d.gone, d.changed, [m.uid for m in d.new], d.keywords) == (
            gone, changed, [m.uid for m in new], keywords), trial
        assert {u: m.flags for u, m in d.updates.items() if u in updates} == updates
        assert all(held[u].flags == m.flags for u, m in d.updates.items() if u not in updates)
        # the same over the UIDs a journal names (those that differ, and some that do not)
        differ = {m.uid for m in ours} ^ {m.uid for m in theirs}
        differ |= {m.uid for m in theirs if held.get(m.uid) is not m
                   or (seen is not None and seen.get(m.uid) != modseq.get(m.uid))}
        extra = set(rnd.sample(range(1, n + 5), min(3, n + 4)))
        j = selmod._diff_uids(differ | extra, dict(held), theirs, seen, modseq)
        assert (j.gone, j.changed, [m.uid for m in j.new], j.keywords) == (
            gone, changed, [m.uid for m in new], keywords), trial
        assert {u: m.flags for u, m in j.updates.items() if u in updates} == updates
        assert all(held[u].flags == m.flags for u, m in j.updates.items() if u not in updates)


class JournalView(FakeView):
    """A view whose snapshots carry the store's journal (``MaildirFolder.changes``)."""

    epoch = object()

    def __init__(self, infos: list[MessageInfo]) -> None:
        self.version = 0
        self.journal: list[tuple[int, frozenset[int] | None]] = []
        super().__init__(infos)

    def change(self, infos: list[MessageInfo], changed: set[int] | None,
               modseqs: dict[int, int] | None = None) -> None:
        self.set(infos, modseqs)
        self.version += 1
        self.journal.append((self.version, None if changed is None else frozenset(changed)))

    async def snapshot(self, *, claim: bool) -> Snapshot:
        return Snapshot(7, self.infos, set(), max(self.modseqs.values(), default=0), self.modseqs,
                        changes=(self.epoch, self.version, tuple(self.journal[-selmod.JOURNAL_WALK_MAX:])))


def test_a_journaled_change_reads_only_its_records() -> None:
    """With the store's journal, a refresh after 3 changes in 10,000 messages looks at
    those 3 UIDs (a bisection each) and at no other record, on the loop, with no thread
    hop (issue 20: every refresh after any change compared the whole list); a modseq
    moved alone (CONDSTORE) and an expunge are reported as by the walk."""
    size = 10_000

    async def go() -> tuple[str, Counter[str], list[bytes], list[bytes]]:
        loop_thread = threading.current_thread().name
        view = JournalView([info(u) for u in range(1, size + 1)])
        sel = await SelectedFolder.open(view, readonly=False)  # type: ignore[arg-type]
        sel.condstore = True
        infos = list(view.infos)
        infos[9] = info(10, "\\Seen")
        del infos[4999]  # UID 5000 expunged
        view.change([*infos, info(size + 1)], {10, 5000, size + 1},
                    {**view.modseqs, 10: 2, size + 1: 2})
        first = await sel.refresh(allow_expunge=True)
        reads = view.infos.reads
        view.change(list(view.infos), {77}, {**view.modseqs, 77: 3})
        second = await sel.refresh(allow_expunge=True)
        return loop_thread, reads, first, second

    loop_thread, reads, first, second = run(go())
    assert first == [b"* 5000 EXPUNGE", b"* 10 FETCH (UID 10 FLAGS (\\Seen) MODSEQ (2))",
                     b"* 10000 EXISTS", b"* 0 RECENT"]
    assert second == [b"* 77 FETCH (UID 77 FLAGS () MODSEQ (3))"]
    assert set(reads) == {loop_thread} and sum(reads.values()) < 200  # 3 bisections


@pytest.mark.parametrize("gap", ["unknown", "fell-out", "other-epoch"])
def test_a_journal_that_does_not_cover_the_change_means_the_whole_list(gap: str) -> None:
    """A bump of unknown extent, bumps that fell out of the journal, or another folder
    object: the refresh compares every record (and still reports right)."""

    async def go() -> tuple[list[bytes], int]:
        view = JournalView([info(u) for u in range(1, 301)])
        sel = await SelectedFolder.open(view, readonly=False)  # type: ignore[arg-type]
        infos = list(view.infos)
        infos[2] = info(3, "\\Flagged")
        infos[4] = info(5, "\\Seen")
        if gap == "unknown":
            view.change(infos, None)
        elif gap == "fell-out":
            view.change(infos, {3, 5})
            view.journal = view.journal[1:]
        else:
            view.change(infos, {3})  # says 3 only; a new epoch: not to be trusted for us
            view.epoch = object()
        lines = await sel.refresh(allow_expunge=True)
        return lines, sum(view.infos.reads.values())

    lines, reads = run(go())
    assert lines == [b"* 3 FETCH (UID 3 FLAGS (\\Flagged))", b"* 5 FETCH (UID 5 FLAGS (\\Seen))"]
    assert reads >= 300


def test_refreshes_by_the_journal_report_what_refreshes_by_the_walk_report() -> None:
    """Over random flag changes, arrivals, expunges (held back during some refreshes),
    mod-sequence moves and unknown bumps, a session refreshing by the journal sends, line
    for line, what a session comparing the whole list sends, with CONDSTORE on and off."""
    import random

    rnd = random.Random(8)

    async def go(condstore: bool) -> int:
        start = [info(u) for u in range(1, 41)]
        walk, journal = FakeView(list(start)), JournalView(list(start))
        a = await SelectedFolder.open(walk, readonly=False)  # type: ignore[arg-type]
        b = await SelectedFolder.open(journal, readonly=False)  # type: ignore[arg-type]
        a.condstore = b.condstore = condstore
        infos, seqs, top, nxt = list(start), dict(walk.modseqs), 1, 41
        compared = 0
        for step in range(400):
            changed: set[int] = set()
            for _ in range(rnd.randint(0, 3)):
                r = rnd.random()
                if r < 0.5 and infos:
                    i = rnd.randrange(len(infos))
                    m = infos[i]
                    infos[i] = info(m.uid, *rnd.sample(["\\Seen", "\\Flagged", "$x", "$y"], rnd.randint(0, 2)))
                elif r < 0.7:
                    infos.append(info(nxt))
                    m, nxt = infos[-1], nxt + 1
                elif r < 0.85 and infos:
                    m = infos.pop(rnd.randrange(len(infos)))
                    seqs.pop(m.uid, None)
                    changed.add(m.uid)
                    continue
                elif infos:
                    m = rnd.choice(infos)  # a modseq moved alone
                else:
                    continue
                top += 1
                seqs[m.uid] = top
                changed.add(m.uid)
            walk.set(list(infos), dict(seqs))
            journal.change(list(infos), None if rnd.random() < 0.05 else changed | {rnd.randint(1, nxt)},
                           dict(seqs))
            expunge = rnd.random() < 0.7
            got_a = await a.refresh(allow_expunge=expunge)
            got_b = await b.refresh(allow_expunge=expunge)
            assert got_a == got_b, step
            assert a.uids == b.uids and a.gone == b.gone, step
            assert {u: m.flags for u, m in a.info.items()} == {u: m.flags for u, m in b.info.items()}, step
            assert {u: a.modseq.get(u) for u in a.uids} == {u: b.modseq.get(u) for u in b.uids}, step
            compared += bool(got_a)
        return compared

    assert run(go(False)) > 100 and run(go(True)) > 100
