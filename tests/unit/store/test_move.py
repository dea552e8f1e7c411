"""MOVE by rename (``MaildirFolder.move_to``): a message is in exactly one folder at
every instant, so a crash mid-MOVE can never duplicate it (tests/e2e/test_crash.py)."""

from __future__ import annotations

import os

from esam_mail.store.maildir import MaildirStore, MaildirUser
from tests.unit.store.conftest import msg


def test_move_renames_keeps_flags_and_assigns_new_uids(store: MaildirStore, alice: MaildirUser) -> None:
    for i in range(3):
        store.deliver_many(["alice"], msg(i))
    inbox, archive = alice.folder("INBOX"), alice.folder("Archive")
    inbox.sync()
    inbox.store_flags([2], ["\\Seen", "Work"], 1)
    archive.append(msg(99))
    assert inbox.move_to([2, 3, 42], archive) == [(2, 2), (3, 3)]
    assert [i.uid for i in inbox.sync()] == [1]
    infos = archive.sync()
    assert [i.uid for i in infos] == [1, 2, 3]
    assert infos[1].flags == frozenset({"\\Seen", "Work"})
    assert archive.read(2) == msg(1) and archive.read(3) == msg(2)
    # one file per message: nothing left behind in the source, no hard link
    assert os.stat(archive.path_of(2)).st_nlink == 1
    assert len(os.listdir(inbox.path / "cur")) == 1
    # a fresh reader (another process after a restart) agrees
    again = MaildirStore(store.root, fsync=False).user("alice")
    assert len(again.folder("INBOX").sync()) == 1 and len(again.folder("Archive").sync()) == 3


def test_move_back_never_reuses_a_uid(store: MaildirStore, alice: MaildirUser) -> None:
    store.deliver_many(["alice"], msg(1))
    inbox, archive = alice.folder("INBOX"), alice.folder("Archive")
    inbox.sync()
    assert inbox.move_to([1], archive) == [(1, 1)]
    archive.sync()
    assert archive.move_to([1], inbox) == [(1, 2)]
    assert [i.uid for i in inbox.sync()] == [2]


def test_file_renamed_but_uidlist_not_committed_gets_a_fresh_uid(store: MaildirStore,
                                                                  alice: MaildirUser) -> None:
    """The crash window of move_to: the file is in dest/cur without a UID yet."""
    store.deliver_many(["alice"], msg(1))
    inbox, archive = alice.folder("INBOX"), alice.folder("Archive")
    (info,) = inbox.sync()
    name = os.path.basename(inbox.path_of(info.uid))
    os.rename(inbox.path / "cur" / name, archive.path / "cur" / name)  # then "SIGKILL"
    fresh = MaildirStore(store.root, fsync=False).user("alice")
    assert fresh.folder("INBOX").sync() == []
    assert [i.uid for i in fresh.folder("Archive").sync()] == [1]
