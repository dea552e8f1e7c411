"""Every esam writer of the store bumps the user's shared change generation
(esam_mail.store.generation) after its change: a selected session skips its
end-of-command look while the generation is unchanged, so a writer that forgets would
leave sessions blind to its change until their next periodic real look.

The public methods of the store classes are enumerated: a new one fails here until it
is classified as a writer (and shown to bump) or as changing nothing a session sees."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from esam_mail.store import generation
from esam_mail.store.check import check_user
from esam_mail.store.maildir import MaildirFolder, MaildirStore, MaildirUser
from esam_mail.store.uidlist import UIDLIST
from tests.unit.store.conftest import msg

# writes that change nothing a selected session shows (derived caches, the claimer's
# own \Recent, subscriptions, tmp/ cleanup, quota bookkeeping), and reads
NOT_SEEN = {
    MaildirFolder: {"cache_get_many", "cache_prune", "cache_put_many", "change_generation",
                    "changes", "close", "expunged_since", "messages", "modseqs", "path_of", "read", "read_head",
                    "recent", "reusable", "status", "sync", "sync_claim", "uidnext"},
    # (changing: the lock a writer's bump is made under; publish: the IDLE notice after a bump)
    MaildirUser: {"changing", "check_quota", "cleanup_tmp", "create", "exists", "folder", "folder_path",
                  "list_folders", "message_count", "next_uidvalidity", "publish", "quota_state",
                  "spool_dir", "subscribe", "subscriptions", "usage", "usage_add"},
    MaildirStore: {"check_login", "cleanup_tmp", "quota_state", "user", "users"},
}


def _write_tmp(user: MaildirUser) -> tuple[str, int]:
    data = msg(9)
    p = user.folder_path("INBOX") / "tmp" / "up"
    p.write_bytes(data)
    return str(p), len(data)


def _flagged(f: MaildirFolder, flag: str = "\\Deleted") -> list[int]:
    uids = [m.uid for m in f.sync()]
    f.store_flags(uids[:1], [flag], 1)
    return uids[:1]


WRITERS: dict[type, dict[str, Callable[[MaildirStore, MaildirUser, MaildirFolder], Any]]] = {
    MaildirFolder: {
        "append": lambda s, u, f: f.append(msg(5), ["\\Seen"]),
        "append_file": lambda s, u, f: f.append_file(*_write_tmp(u)),
        "store_flags": lambda s, u, f: f.store_flags([f.sync()[0].uid], ["\\Flagged"], 1),
        "copy_to": lambda s, u, f: f.copy_to([f.sync()[0].uid], u.folder("Keep")),
        "move_to": lambda s, u, f: f.move_to([f.sync()[0].uid], u.folder("Keep")),
        "expunge": lambda s, u, f: f.expunge(),
    },
    MaildirUser: {
        "create_folder": lambda s, u, f: u.create_folder("New"),
        "delete_folder": lambda s, u, f: u.delete_folder("Keep"),
        "rename_folder": lambda s, u, f: u.rename_folder("Keep", "Old"),
        "deliver": lambda s, u, f: u.deliver(msg(6)),
        "notify": lambda s, u, f: u.notify("INBOX"),
        "bump_generation": lambda s, u, f: u.bump_generation(),
    },
    MaildirStore: {
        "deliver_each": lambda s, u, f: s.deliver_each(["alice"], msg(7)),
        "deliver_many": lambda s, u, f: s.deliver_many(["alice"], msg(7)),
        "deliver_batch": lambda s, u, f: s.deliver_batch([(["alice"], msg(8), None)]),
    },
}


def _public(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))}


@pytest.mark.parametrize("cls", [MaildirFolder, MaildirUser, MaildirStore])
def test_every_public_method_is_classified(cls: type) -> None:
    assert _public(cls) == NOT_SEEN[cls] | set(WRITERS[cls]), (
        _public(cls) ^ (NOT_SEEN[cls] | set(WRITERS[cls])))


@pytest.mark.parametrize(("cls", "name"), [(c, n) for c, ws in WRITERS.items() for n in ws])
def test_writer_bumps(store: MaildirStore, alice: MaildirUser, cls: type, name: str) -> None:
    alice.create_folder("Keep")
    alice.deliver(msg(1))
    alice.deliver(msg(2))
    inbox = alice.folder("INBOX")
    _flagged(inbox)
    before = generation.of(alice.path).value()
    WRITERS[cls][name](store, alice, inbox)
    assert generation.of(alice.path).value() > before


def test_repair_bumps(store: MaildirStore, alice: MaildirUser) -> None:
    alice.deliver(msg(1))
    alice.folder("INBOX").sync()
    (alice.folder_path("INBOX") / UIDLIST).write_bytes(b"garbage\n")
    before = generation.of(alice.path).value()
    check_user(alice, repair=True)
    assert generation.of(alice.path).value() > before


# the folders whose slot each writer must bump (the test folder is INBOX, the other Keep)
WRITER_FOLDERS = {
    "append": {"INBOX"}, "append_file": {"INBOX"}, "store_flags": {"INBOX"},
    "copy_to": {"Keep"}, "move_to": {"INBOX", "Keep"}, "expunge": {"INBOX"},
    "delete_folder": {"Keep"}, "rename_folder": {"Keep", "Old"}, "deliver": {"INBOX"},
    "notify": {"INBOX"}, "deliver_each": {"INBOX"}, "deliver_many": {"INBOX"},
    "deliver_batch": {"INBOX"},
}


@pytest.mark.parametrize(("cls", "name"), [(c, n) for c, ws in WRITERS.items() for n in ws
                                           if n in WRITER_FOLDERS])
def test_writer_bumps_the_slots_of_the_folders_it_changed(
        store: MaildirStore, alice: MaildirUser, cls: type, name: str) -> None:
    """A session skips its look while its folder's slot holds: a writer that bumped the
    user's slot alone would leave it blind; one that bumped every slot would cost every
    session of the user a look (issue 20)."""
    alice.create_folder("Keep")
    alice.deliver(msg(1))
    alice.deliver(msg(2))
    inbox = alice.folder("INBOX")
    _flagged(inbox)
    assert len({generation.slot_of(n) for n in ("INBOX", "Keep", "Old")}) == 3
    g = generation.of(alice.path)
    before = [g.value(i) for i in range(generation.SLOTS)]
    WRITERS[cls][name](store, alice, inbox)
    bumped = {i for i in range(generation.SLOTS) if g.value(i) != before[i]}
    assert bumped == {0} | {generation.slot_of(n) for n in WRITER_FOLDERS[name]}


def test_slots_are_stable_and_a_first_layout_file_is_extended(tmp_path: Path) -> None:
    """The slot of a name is the same in every process (not ``hash()``, which is salted
    per process); a file of the first layout (8 bytes, the user's counter alone) keeps
    its value and gains folder slots at 0."""
    assert generation.slot_of("INBOX") == 63 and generation.slot_of("Archive") == 18
    assert all(1 <= generation.slot_of(f"f{i}") < generation.SLOTS for i in range(500))
    (tmp_path / generation.FILENAME).write_bytes((41).to_bytes(8, "little"))
    generation.bump(tmp_path, ["Archive"])
    assert (tmp_path / generation.FILENAME).stat().st_size == generation.SIZE
    g = generation.of(tmp_path)
    assert g.value() == 42 and g.value(18) == 1 and g.reader("Archive")() == 1
    assert g.reader("INBOX")() == 0


def _bump_many(path: str, n: int) -> None:
    for i in range(n):
        generation.bump(Path(path), ["INBOX"] if i % 2 else [])


def test_bumps_from_processes_and_threads_are_not_lost(tmp_path: Path) -> None:
    """Each bump is a read-modify-write under flock: none may be lost, or a reader that
    remembered the value in between would miss a change.  The mapping of this process
    sees them all."""
    mapped = generation.of(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_bump_many, args=(str(tmp_path), 200)) for _ in range(2)]
    for p in procs:
        p.start()
    threads = [threading.Thread(target=_bump_many, args=(str(tmp_path), 200))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert mapped.value() == 800 and mapped.reader("INBOX")() == 400


def test_replaced_file_is_remapped(tmp_path: Path) -> None:
    g = generation.of(tmp_path)
    generation.bump(tmp_path)
    assert g.value() == 1
    os.unlink(tmp_path / generation.FILENAME)
    g2 = generation.of(tmp_path, check=True)
    assert g2 is not g and g2.value() == 0
    generation.bump(tmp_path)
    assert generation.of(tmp_path).value() == 1 and g.value() == 1


def test_a_folder_checks_its_mapping_every_few_seconds_not_at_every_look(
        alice: MaildirUser, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether the store is local and the mapped file still the one on disk took two
    stats at every look (issue 20); a folder object checks again after _GEN_RECHECK_S,
    and then maps a replaced file anew."""
    from esam_mail.store import maildir as maildir_mod
    alice.deliver(msg(1))
    f = alice.folder("INBOX")
    f.sync()  # its first look also learns whether the mtimes are fine (one _local_fs)
    read = f.change_generation()
    assert read is not None
    checks: list[str] = []
    real_of, real_local = generation.of, maildir_mod._local_fs

    def of(path: Any, **kw: Any) -> Any:
        checks.append("of")
        return real_of(path, **kw)

    def local(path: Any) -> bool:
        checks.append("local")
        return real_local(path)

    monkeypatch.setattr(generation, "of", of)
    monkeypatch.setattr(maildir_mod, "_local_fs", local)
    assert f.change_generation() is read and f.sync() is not None and f.sync() is not None
    assert checks == []
    os.unlink(alice.path / generation.FILENAME)
    generation.bump(alice.path, ["INBOX"])  # a new file: its slot is 1
    assert f.change_generation() is read  # not checked yet
    monkeypatch.setattr(maildir_mod, "_GEN_RECHECK_S", 0.0)
    again = f.change_generation()
    assert again is not read and again is not None and again() == 1
    assert checks == ["local", "of"]
