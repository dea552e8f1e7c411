"""When may ``MaildirFolder.sync`` trust an unchanged directory signature?

A change made in the same timestamp tick as the one a listing saw leaves the folder's
(inode, mtime) signatures as they were.  ``sync`` must list again until its listing was
taken later than one timestamp tick after the newest mtime; how long a tick can be
depends on the filesystem (1 s, or coarser, on filesystems without sub-second times;
a kernel clock tick on local filesystems with nanosecond times).  These tests stage
such a change with a fake clock and mtimes set back by hand (the other folder object
stands for another process, which the first one learns about only from the disk).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from esam_mail.store import maildir as maildir_mod
from esam_mail.store.maildir import MaildirStore, MaildirUser

from .conftest import msg

SECOND = 1_000_000_000
MS = 1_000_000


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    c = Clock(0)
    monkeypatch.setattr(maildir_mod, "_now_ns", c)
    yield c


def stamp(user: MaildirUser, mtime_ns: int) -> None:
    """Set the folder's directory and uidlist mtimes, as a same-tick write leaves them."""
    for p in (user.path / "new", user.path / "cur", user.path / "dovecot-uidlist"):
        os.utime(p, ns=(mtime_ns, mtime_ns))


def listings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = os.listdir

    def spy(p: str | Path) -> list[str]:
        calls.append(str(p))
        return real(p)

    monkeypatch.setattr(os, "listdir", spy)
    return calls


def two_views(store: MaildirStore, alice: MaildirUser) -> tuple[maildir_mod.MaildirFolder, maildir_mod.MaildirFolder]:
    for i in range(3):
        store.deliver_many(["alice"], msg(i))
    a, b = alice.folder("INBOX"), alice.folder("INBOX")
    b.sync()
    return a, b


@pytest.mark.parametrize(("mtime", "later"), [
    # local filesystem with nanosecond times: a write 1 ms later can share the tick
    (1_700_000_000 * SECOND + 123_456_789, 1 * MS),
    # a filesystem with whole-second times (ext4 with small inodes, FAT, some NFS
    # servers): a write 600 ms later still shows the same mtime
    (1_700_000_000 * SECOND, 600 * MS),
])
def test_foreign_change_in_the_same_tick_is_seen(
    store: MaildirStore, alice: MaildirUser, clock: Clock, mtime: int, later: int
) -> None:
    a, b = two_views(store, alice)
    stamp(alice, mtime)
    clock.now = mtime + later // 2
    assert all(i.flags == frozenset() for i in a.sync())
    b.store_flags([2], ["\\Seen"], 1)  # another process, same tick: mtime unchanged
    stamp(alice, mtime)
    clock.now = mtime + later
    assert [i.flags for i in a.sync()] == [frozenset(), frozenset({"\\Seen"}), frozenset()]


def test_foreign_expunge_and_delivery_in_the_same_tick_are_seen(
    store: MaildirStore, alice: MaildirUser, clock: Clock
) -> None:
    a, b = two_views(store, alice)
    mtime = 1_700_000_000 * SECOND + 987_654_321
    stamp(alice, mtime)
    clock.now = mtime + MS
    assert [i.uid for i in a.sync()] == [1, 2, 3]
    b.store_flags([1], ["\\Deleted"], 1)
    b.expunge()
    store.deliver_many(["alice"], msg(9))
    b.sync()
    stamp(alice, mtime)
    clock.now = mtime + 2 * MS
    assert [i.uid for i in a.sync()] == [2, 3, 4]


def test_listing_taken_a_tick_after_the_mtime_is_trusted(
    store: MaildirStore, alice: MaildirUser, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a local filesystem with nanosecond times, a listing taken 100 ms after the
    last change is final: the next syncs only stat (was: re-listed for a whole second
    after every change, which a busy folder never leaves)."""
    a, _b = two_views(store, alice)
    mtime = 1_700_000_000 * SECOND + 555_555_555
    stamp(alice, mtime)
    clock.now = mtime + 100 * MS
    a.sync()
    calls = listings(monkeypatch)
    for _ in range(3):
        assert len(a.sync()) == 3
    assert calls == []


def test_clock_of_another_machine_keeps_the_long_margin(
    store: MaildirStore, alice: MaildirUser, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shared filesystem (NFS, CephFS) stamps with another machine's clock: 100 ms
    after such an mtime proves nothing, the listing is repeated."""
    monkeypatch.setattr(maildir_mod, "_local_fs", lambda path: False)
    a, b = two_views(store, alice)
    mtime = 1_700_000_000 * SECOND + 555_555_555
    stamp(alice, mtime)
    clock.now = mtime + 100 * MS
    a.sync()
    b.store_flags([3], ["\\Flagged"], 1)
    stamp(alice, mtime)
    clock.now = mtime + 200 * MS
    assert a.sync()[2].flags == frozenset({"\\Flagged"})


def test_local_fs_detection() -> None:
    assert maildir_mod._local_fs(Path("/proc")) is False  # proc: not a mail filesystem
    assert maildir_mod._fs_type(Path("/proc")) == "proc"
