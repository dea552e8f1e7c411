"""check_user (esam store check) and the folder lock."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from esam_mail.store import uidlist
from esam_mail.store.check import check_user
from esam_mail.store.maildir import MaildirStore, MaildirUser
from esam_mail.store.uidlist import HOST, UIDLIST_LOCK, FolderLock, UidList

from .conftest import msg


def test_check_clean_mailbox(store: MaildirStore, alice: MaildirUser) -> None:
    store.deliver_many(["alice"], msg())
    alice.folder("INBOX").sync()
    report = check_user(alice)
    assert report.ok, report.lines()
    assert report.folders[0].messages == 1


def test_check_finds_and_repairs(store: MaildirStore, alice: MaildirUser) -> None:
    keys = [store.deliver_many(["alice"], msg(i))["alice"] for i in range(3)]
    f = alice.folder("INBOX")
    f.sync()
    uv = f.uidvalidity
    # a UID given twice, a listed file that is missing, an unknown file
    (alice.path / "dovecot-uidlist").write_text(
        f"3 V{uv} N2 Gabc\n1 :{keys[0]}\n2 :{keys[1]}\n2 :twice.M1P1Q1R1.h,S=1\n5 :gone.M1P1Q1R1.h,S=1\n"
    )
    (alice.path / "cur" / "1700000000.M1P1Q1R1.stray,S=5:2,S").write_bytes(b"stray")
    os.unlink(alice.path / "maildirsize")
    (alice.path / "maildirsize").write_text("0S\n1 1\n")
    report = check_user(alice)
    assert not report.ok
    text = "\n".join(report.lines())
    assert "duplicate uid" in text and "without a file" in text and "without a UID" in text
    assert "maildirsize" in text
    # check without repair changed nothing
    assert (alice.path / "dovecot-uidlist").read_text().startswith(f"3 V{uv} N2 ")
    fixed = check_user(alice, repair=True)
    assert any("new UIDVALIDITY" in r for fr in fixed.folders for r in fr.repaired)
    again = check_user(alice)
    assert again.ok, again.lines()
    ul = UidList.parse((alice.path / "dovecot-uidlist").read_bytes())
    assert ul.uidvalidity > uv
    assert len(ul.entries) == 4 and ul.uidnext == 5


def test_check_duplicate_key(store: MaildirStore, alice: MaildirUser) -> None:
    key = store.deliver_many(["alice"], msg())["alice"]
    alice.folder("INBOX").sync()
    cur = alice.path / "cur"
    os.link(cur / f"{key}:2,", cur / f"{key}:2,S")
    assert not check_user(alice).ok
    check_user(alice, repair=True)
    assert check_user(alice).ok
    assert len(os.listdir(cur)) == 1


def test_stale_dotlock_of_dead_process_taken_over(tmp_path: Path) -> None:
    (tmp_path / UIDLIST_LOCK).write_text(f"999999999:{HOST}")
    t0 = time.monotonic()
    with FolderLock(tmp_path, fsync=False):
        assert (tmp_path / UIDLIST_LOCK).read_text().startswith(f"{os.getpid()}:")
    assert time.monotonic() - t0 < 1
    assert not (tmp_path / UIDLIST_LOCK).exists()


def test_old_foreign_dotlock_taken_over(tmp_path: Path) -> None:
    lock = tmp_path / UIDLIST_LOCK
    lock.write_text("1:otherhost")
    old = time.time() - 600
    os.utime(lock, (old, old))
    with FolderLock(tmp_path, fsync=False, stale_after=120):
        pass


def test_dotlock_never_exists_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process killed while taking the dotlock must not leave an empty one (no pid to
    prove it dead: every later writer would wait ``stale_after``, 2 minutes).  Writing
    the pid is made to fail; the lock file must not appear at all."""
    real_write = os.write

    def dying_write(fd: int, data: bytes) -> int:
        if data.startswith(f"{os.getpid()}:".encode()):
            raise KeyboardInterrupt  # stands for the SIGKILL between create and write
        return real_write(fd, data)

    monkeypatch.setattr(uidlist.os, "write", dying_write)
    with pytest.raises(KeyboardInterrupt), FolderLock(tmp_path, fsync=False):
        pass
    monkeypatch.undo()
    assert not (tmp_path / UIDLIST_LOCK).exists()
    assert os.listdir(tmp_path) == []
    with FolderLock(tmp_path, fsync=False):  # and the lock is free
        pass


def test_empty_dotlock_left_by_a_crash_taken_over(tmp_path: Path) -> None:
    """An empty dotlock (a writer that died between creating it and writing its pid, as
    Dovecot's could) is taken over once it is older than a few seconds, not 2 minutes."""
    lock = tmp_path / UIDLIST_LOCK
    lock.write_bytes(b"")
    old = time.time() - uidlist.EMPTY_DOTLOCK_GRACE - 1
    os.utime(lock, (old, old))
    t0 = time.monotonic()
    with FolderLock(tmp_path, fsync=False, stale_after=120):
        assert lock.read_text().startswith(f"{os.getpid()}:")
    assert time.monotonic() - t0 < 1


def test_fresh_empty_dotlock_is_waited_for(tmp_path: Path) -> None:
    """A fresh empty dotlock may be a Dovecot between its create and its pid write: it is
    respected for the grace period, then taken over."""
    lock = tmp_path / UIDLIST_LOCK
    lock.write_bytes(b"")
    t0 = time.monotonic()
    with FolderLock(tmp_path, fsync=False, stale_after=120):
        pass
    waited = time.monotonic() - t0
    assert uidlist.EMPTY_DOTLOCK_GRACE - 0.5 <= waited < uidlist.EMPTY_DOTLOCK_GRACE + 2


def test_lock_excludes_threads(tmp_path: Path) -> None:
    inside = 0
    overlap = []

    def worker() -> None:
        nonlocal inside
        for _ in range(50):
            with FolderLock(tmp_path, fsync=False):
                inside += 1
                overlap.append(inside)
                inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(overlap) == 1


def test_dotlock_is_a_link_to_the_process_source_not_a_new_file(tmp_path: Path) -> None:
    """With a store root, the dotlock is a hard link to this process's source file (no
    inode made per lock, issue 20): same inode, ``pid:host`` inside, a fresh mtime (an
    old one would look stale to Dovecot and to us), and the name is gone afterwards."""
    root = tmp_path / "mail"
    folder = root / "alice"
    folder.mkdir(parents=True)
    source = uidlist.lock_source(root)
    assert source is not None and source.read_bytes() == f"{os.getpid()}:{HOST}".encode()
    os.utime(source, (1, 1))
    with FolderLock(folder, fsync=False, store_root=root):
        st = os.stat(folder / UIDLIST_LOCK)
        assert st.st_ino == os.stat(source).st_ino and st.st_nlink == 2
        assert time.time() - st.st_mtime < 60
        assert (folder / UIDLIST_LOCK).read_bytes() == f"{os.getpid()}:{HOST}".encode()
    assert not (folder / UIDLIST_LOCK).exists() and os.stat(source).st_nlink == 1


def test_a_dead_process_source_and_its_dotlock_are_cleared(tmp_path: Path) -> None:
    """A process killed while holding a folder lock leaves its dotlock (a link to its
    source): the next writer takes it over (dead pid), and the next process to make its
    source removes the dead one's."""
    root = tmp_path / "mail"
    folder = root / "alice"
    folder.mkdir(parents=True)
    pid = os.fork()
    if pid == 0:  # the child takes the lock and dies holding it
        try:
            lock = FolderLock(folder, fsync=False, store_root=root)
            lock.__enter__()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    dead = root / uidlist.LOCK_SOURCES / f"{HOST}.{pid}"
    assert dead.exists() and (folder / UIDLIST_LOCK).read_bytes() == f"{pid}:{HOST}".encode()
    uidlist._sources.pop((os.getpid(), root), None)  # this process makes its source now
    t0 = time.monotonic()
    with FolderLock(folder, fsync=False, store_root=root):
        assert (folder / UIDLIST_LOCK).read_bytes() == f"{os.getpid()}:{HOST}".encode()
    assert time.monotonic() - t0 < 5
    assert not dead.exists()


def test_dotlock_made_as_a_file_when_the_source_cannot_be_linked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A source on another file system (EXDEV) or removed: the lock is still taken, each
    dotlock made as a file of its own."""
    root = tmp_path / "mail"
    folder = root / "alice"
    folder.mkdir(parents=True)
    source = uidlist.lock_source(root)
    assert source is not None
    source.unlink()
    with FolderLock(folder, fsync=False, store_root=root):
        assert (folder / UIDLIST_LOCK).read_bytes() == f"{os.getpid()}:{HOST}".encode()
    assert not (folder / UIDLIST_LOCK).exists()
    uidlist._sources.pop((os.getpid(), root), None)
