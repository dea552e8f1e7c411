"""The folder change log (esam_mail.store.changelog): another process's view is brought
forward by the records of the writers' changes instead of a listing of cur/ (issue 20),
and only when the records make a complete chain that fits the view."""

from __future__ import annotations

import multiprocessing
import os
import random
from pathlib import Path
from typing import Any

import pytest

from esam_mail.store import changelog, generation
from esam_mail.store import maildir as maildir_mod
from esam_mail.store.changelog import ChangeLog, encode, fold
from esam_mail.store.maildir import MaildirFolder, MaildirStore


def test_a_record_reads_back_as_written(tmp_path: Path) -> None:
    path = tmp_path / changelog.CHANGES_FILE
    changes = [("k1", "k1:2,S", "k1:2,FS"), ("k2", None, "k2:2,"), ("k3", "k3:2,T", None)]
    changelog.append(path, encode(7, 41, changes) or b"")
    changelog.append(path, encode(7, 42, [("k\udcff", "k\udcff:2,", "k\udcff:2,S")]) or b"")
    log = ChangeLog(path)
    assert log.records(7, 41, 2) == [changes, [("k\udcff", "k\udcff:2,", "k\udcff:2,S")]]
    assert log.records(8, 41, 1) is None  # another generation file's (recreated): not ours
    assert log.records(7, 41, 3) is None  # the bump after 42 logged nothing: a gap


@pytest.mark.parametrize("bad", ["a\nb", "a\x1eb", "a\x1fb"])
def test_a_name_the_format_cannot_hold_is_not_logged(bad: str) -> None:
    assert encode(1, 1, [("k", "k:2,", bad)]) is None


def test_the_latest_record_for_a_value_wins(tmp_path: Path) -> None:
    """A writer that wrote its record and died before its bump: the next writer's bump
    has the same value before, and its record is the one that counts."""
    path = tmp_path / changelog.CHANGES_FILE
    changelog.append(path, encode(1, 5, [("a", "a:2,", "a:2,S")]) or b"")
    log = ChangeLog(path)
    assert log.records(1, 5, 1) == [[("a", "a:2,", "a:2,S")]]
    changelog.append(path, encode(1, 5, [("b", "b:2,", "b:2,F")]) or b"")
    changelog.append(path, encode(1, 6, [("c", None, "c:2,")]) or b"")
    assert log.records(1, 5, 2) == [[("b", "b:2,", "b:2,F")], [("c", None, "c:2,")]]


def test_a_truncated_log_is_read_again_from_its_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(changelog, "MAX_SIZE", 100)
    path = tmp_path / changelog.CHANGES_FILE
    log = ChangeLog(path)
    for g in range(6):
        changelog.append(path, encode(1, g, [(f"key{g}", f"key{g}:2,", f"key{g}:2,S")]) or b"")
        assert log.records(1, g, 1) == [[(f"key{g}", f"key{g}:2,", f"key{g}:2,S")]], g
    assert path.stat().st_size < 100  # truncated on the way
    assert log.records(1, 0, 1) is not None  # read before the truncation: kept
    assert ChangeLog(path).records(1, 0, 1) is None  # gone with it for a new reader: a listing
    # a reader whose offset falls inside a record of the new content starts over
    stale = ChangeLog(path)
    stale._offset = 7
    assert stale.records(1, 5, 1) == [[("key5", "key5:2,", "key5:2,S")]]
    # a half-written record (no newline yet) is not read, and read once whole
    with open(path, "ab") as fh:
        rec = encode(1, 6, [("key6", None, "key6:2,")]) or b""
        fh.write(rec[:-5])
        fh.flush()
        assert log.records(1, 6, 1) is None
        fh.write(rec[-5:])
    assert log.records(1, 6, 1) == [[("key6", None, "key6:2,")]]


def test_a_chain_applies_only_when_it_fits_the_view() -> None:
    view = {"a": "a:2,", "b": "b:2,S", "c": "c:2,"}
    chain = [[("a", "a:2,", "a:2,F")], [("d", None, "d:2,")], [("c", "c:2,", None), ("a", "a:2,F", "a:2,FS")]]
    assert fold(view, chain) == {"a": "a:2,FS", "d": "d:2,", "c": None}
    assert view == {"a": "a:2,", "b": "b:2,S", "c": "c:2,"}  # not changed
    # a view listed between a writer's change and its bump already holds that change
    assert fold({"a": "a:2,F", "b": "b:2,S", "c": "c:2,"}, chain) == {"a": "a:2,FS", "d": "d:2,", "c": None}
    # a name that is neither: a change nobody logged (a listing decides)
    assert fold({"a": "a:2,R", "b": "b:2,S", "c": "c:2,"}, chain) is None
    # a message removed twice, or added where one is: something is out of order
    assert fold({"a": "a:2,"}, [[("a", "a:2,", None)], [("a", "a:2,", None)]]) is None
    assert fold({"a": "a:2,S"}, [[("a", None, "a:2,")]]) is None
    # flags that went a -> b -> a: the view at b (the first writer's change listed before
    # its bump) ends at a, where cur/ is
    assert fold({"a": "a:2,S"}, [[("a", "a:2,", "a:2,S")], [("a", "a:2,S", "a:2,")]]) == {"a": "a:2,"}
    # after the chain touched a key, each change must follow the last one
    assert fold({"a": "a:2,"}, [[("a", "a:2,", "a:2,S")], [("a", "a:2,F", "a:2,S")]]) is None
    assert fold({"a": "a:2,S"}, [[("a", "a:2,", "a:2,S")], [("a", "a:2,F", "a:2,S")]]) is None


def _flag_worker(root: str, seed: int, steps: int) -> None:
    folder = MaildirStore(Path(root), fsync=False).user("alice").folder("INBOX")
    rnd = random.Random(seed)
    for _ in range(steps):
        uids = [m.uid for m in folder.sync()]
        folder.store_flags(rnd.sample(uids, rnd.randint(1, 2)), [rnd.choice(["\\Seen", "\\Flagged"])],
                           rnd.choice([1, -1]))
    os._exit(0)


def test_two_processes_changing_the_same_flags_are_seen_in_their_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes toggle the flags of the same three messages as fast as they can; a
    third view follows them from the change records alone (listings made final never, and
    trusted forever, so only the records bring it forward).  When both are done it shows
    what cur/ holds: the generation lock that a flag change holds from its first rename
    to its bump logs two renames of one message in the order they were made (without it,
    a -> b logged after b -> a leaves the view at b while cur/ holds a)."""
    monkeypatch.setattr(maildir_mod, "_MTIME_MARGIN_LOCAL_NS", 3600 * 10**9)
    monkeypatch.setattr(maildir_mod, "_MTIME_MARGIN_NS", 3600 * 10**9)
    monkeypatch.setattr(maildir_mod, "_GEN_TRUST_NS", 3600 * 10**9)
    monkeypatch.setattr(changelog, "CHAIN_MAX", 10**6)
    root = tmp_path / "mail"
    user = MaildirStore(root, fsync=False).user("alice")
    user.create()
    for i in range(3):
        user.deliver(b"Subject: %d\r\n\r\nx\r\n" % i)
    view = MaildirStore(root, fsync=False).user("alice").folder("INBOX")
    view.sync()  # numbers the deliveries (new/ changes: the next look lists once more)
    view.sync()
    logged: list[bool] = []
    real = MaildirFolder._logged_look

    def spy(self: MaildirFolder, *a: Any) -> Any:
        out = real(self, *a)
        if self is view:
            logged.append(out is not None)
        return out

    monkeypatch.setattr(MaildirFolder, "_logged_look", spy)
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_flag_worker, args=(str(root), seed, 300)) for seed in (1, 2)]
    for w in workers:
        w.start()
    while any(w.is_alive() for w in workers):
        view.sync()
    for w in workers:
        w.join()
        assert w.exitcode == 0
    got = [(m.uid, m.flags) for m in view.sync()]
    # brought forward by records, and listed where cur/ changed before a writer's bump (how
    # many of each depends on the scheduling: the lock's order has its own test below)
    assert sum(logged) >= 5, (sum(logged), len(logged))
    fresh = MaildirStore(root, fsync=False).user("alice").folder("INBOX")
    assert got == [(m.uid, m.flags) for m in fresh.sync()]
    assert generation.of(user.path).value(generation.slot_of("INBOX")) > 200  # changes made


def test_a_flag_change_holds_the_generation_lock_from_its_renames_to_its_bump(tmp_path: Path) -> None:
    """The order the change log needs: while one process's flag change is between its
    renames and its bump, another's waits for it (flock: threads exclude each other too),
    so a message's flags that go a -> b -> a are logged a -> b, then b -> a."""
    import threading

    root = tmp_path / "mail"
    user = MaildirStore(root, fsync=False).user("alice")
    user.create()
    user.deliver(b"Subject: 1\r\n\r\nx\r\n")
    first = MaildirStore(root, fsync=False).user("alice").folder("INBOX")
    second = MaildirStore(root, fsync=False).user("alice").folder("INBOX")
    uid = first.sync()[0].uid
    second.sync()
    renamed, resume = threading.Event(), threading.Event()
    real = first.user.bump_generation

    def paused(*folders: str, **kw: Any) -> Any:
        renamed.set()
        assert resume.wait(10)
        return real(*folders, **kw)

    first.user.bump_generation = paused  # type: ignore[method-assign]
    t1 = threading.Thread(target=first.store_flags, args=([uid], ["\\Seen"], 1))
    t1.start()
    assert renamed.wait(10)
    done = threading.Event()

    def undo() -> None:
        assert second.sync()[0].flags == {"\\Seen"}  # the first one's rename, listed
        second.store_flags([uid], ["\\Seen"], -1)
        done.set()

    t2 = threading.Thread(target=undo)
    t2.start()
    assert not done.wait(0.3)  # waits for the first one's bump
    resume.set()
    t1.join(10)
    t2.join(10)
    assert done.is_set()
    view = MaildirStore(root, fsync=False).user("alice").folder("INBOX")
    log = ChangeLog(first.path / changelog.CHANGES_FILE)
    slot = generation.slot_of("INBOX")
    now = generation.of(user.path).value(slot)
    chain = log.records(generation.of(user.path).inode, now - 2, 2)
    assert chain is not None
    assert [(old, new) for changes in chain for _key, old, new in changes] == [
        (chain[0][0][1], chain[0][0][1] + "S"), (chain[0][0][1] + "S", chain[0][0][1])]
    assert view.sync()[0].flags == frozenset()


def test_an_append_not_bumped_yet_keeps_a_later_one_from_showing_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An APPEND numbered (UID n) whose bump comes after a later APPEND's (UID n+1): the
    records alone would show n+1 now and n later, after a higher UID (the IMAP stress
    test's 'UID out of order'); the look lists instead and shows both."""
    root = tmp_path / "mail"
    user = MaildirStore(root, fsync=False).user("alice")
    user.create()
    user.deliver(b"Subject: 0\r\n\r\nx\r\n")
    mine, slow, fast = (MaildirStore(root, fsync=False).user("alice").folder("INBOX") for _ in range(3))
    for f in (mine, slow, fast, mine):
        f.sync()  # (mine twice: its first look emptied new/, which the next one sees)
    listed: list[bool] = []
    real = MaildirFolder._logged_look

    def spy(self: MaildirFolder, *a: Any) -> Any:
        out = real(self, *a)
        if self is mine:
            listed.append(out is None)
        return out

    monkeypatch.setattr(MaildirFolder, "_logged_look", spy)
    late: list[Any] = []
    monkeypatch.setattr(slow.user, "notify", lambda folder, **kw: late.append((folder, kw)))
    first = slow.append(b"Subject: 1\r\n\r\nx\r\n")  # numbered and in cur/, not bumped
    second = fast.append(b"Subject: 2\r\n\r\nx\r\n")
    assert second == first + 1
    assert [m.uid for m in mine.sync()][-2:] == [first, second]
    assert listed == [True]
    monkeypatch.undo()
    folder, kw = late[0]
    slow.user.notify(folder, **kw)  # its bump, with its record, at last
    fast.append(b"Subject: 3\r\n\r\nx\r\n")
    listed.clear()
    monkeypatch.setattr(MaildirFolder, "_logged_look", spy)
    assert [m.uid for m in mine.sync()][-3:] == [first, second, second + 1]
    assert listed == [False]  # from the records again
