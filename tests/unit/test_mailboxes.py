"""services.mailflow.mailboxes: store work off the loop, serialized per user folder, and
APPEND literals spooled to disk (issue 14)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from esam_mail.errors import NoSuchFolder
from esam_mail.services.mailflow.mailboxes import MailboxService
from esam_mail.store.maildir import MaildirStore
from esam_mail.store.notify import LocalNotifier

MSG = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"


@pytest.fixture
def store(tmp_path: Path) -> MaildirStore:
    s = MaildirStore(tmp_path / "mail", fsync=False)
    s.user("alice").create()
    return s


def test_store_calls_run_off_the_loop_thread(store):
    async def go() -> None:
        svc = MailboxService(store, workers=2)
        loop_thread = threading.get_ident()
        seen = await svc.run("alice", "INBOX", threading.get_ident)
        assert seen != loop_thread
        view = await svc.user("alice").open("INBOX")
        uidvalidity, infos = await view.sync()
        assert uidvalidity == view.uidvalidity and infos == []
        await svc.close()

    asyncio.run(go())


def test_calls_for_one_folder_run_in_order_others_in_parallel(store):
    events: list[str] = []
    lock = threading.Lock()

    def work(name: str, pause: float) -> str:
        with lock:
            events.append(f"start {name}")
        time.sleep(pause)
        with lock:
            events.append(f"end {name}")
        return name

    async def go() -> None:
        svc = MailboxService(store, workers=4)
        t0 = time.monotonic()
        results = await asyncio.gather(
            svc.run("alice", "INBOX", work, "a", 0.2),
            svc.run("alice", "INBOX", work, "b", 0.0),
            svc.run("alice", "Sent", work, "c", 0.2),
        )
        assert results == ["a", "b", "c"]
        # b waited for a (same folder); c ran beside a (other folder)
        assert events.index("end a") < events.index("start b")
        assert events.index("start c") < events.index("end a")
        assert time.monotonic() - t0 < 0.39
        assert svc.pending() == 0
        await svc.close()

    asyncio.run(go())


def test_a_cancelled_caller_still_keeps_the_folder_order(store):
    events: list[str] = []

    def work(name: str, pause: float) -> None:
        events.append(f"start {name}")
        time.sleep(pause)
        events.append(f"end {name}")

    async def go() -> None:
        svc = MailboxService(store, workers=4)
        first = asyncio.ensure_future(svc.run("alice", "INBOX", work, "a", 0.2))
        await asyncio.sleep(0.05)
        first.cancel()  # the thread keeps running: the next call must wait for it
        await svc.run("alice", "INBOX", work, "b", 0.0)
        assert events == ["start a", "end a", "start b", "end b"]
        await svc.close()

    asyncio.run(go())


def test_writes_publish_once_for_stores_that_do_not(tmp_path):
    notifier = LocalNotifier()
    got: list[tuple[str, str]] = []
    quiet = MaildirStore(tmp_path / "mail", fsync=False)  # no notifier of its own
    quiet.user("alice").create()

    async def go() -> None:
        svc = MailboxService(quiet, notifier)
        unsubscribe = svc.subscribe(lambda login, folder: got.append((login, folder)))
        user = svc.user("alice")
        _, uid = await user.append("INBOX", MSG, ["\\Seen"])
        assert uid == 1
        view = await user.open("INBOX")
        await view.sync()
        assert await view.store_flags([1], ["\\Deleted"], 1) == {1: frozenset({"\\Seen", "\\Deleted"})}
        assert await view.expunge() == [1]
        unsubscribe()
        await svc.close()

    asyncio.run(go())
    assert got == [("alice", "INBOX")] * 3


def test_spool_commits_by_rename_and_cleans_up(store, tmp_path):
    chunk = b"x" * 100_000
    body = b"Subject: big\r\n\r\n" + chunk * 20

    async def go() -> None:
        svc = MailboxService(store)
        user = svc.user("alice")
        spool = user.spool(len(body))
        for i in range(0, len(body), 65536):
            spool.feed(body[i:i + 65536])
            assert spool.backlog() <= 2 * 1024 * 1024
        await spool.finish()
        assert spool.path.parent == tmp_path / "mail" / "alice" / "tmp"
        assert spool.path.stat().st_size == len(body)
        _, uid = await user.append("Sent", spool, ["\\Seen"])
        assert not spool.path.exists()
        view = await user.open("Sent")
        await view.sync()
        assert await view.read(uid) == body
        # an abandoned spool leaves nothing behind
        other = user.spool(10)
        other.feed(b"0123456789")
        await other.finish()
        await other.discard()
        assert not other.path.exists()
        with pytest.raises(NoSuchFolder):
            bad = user.spool(3)
            bad.feed(b"abc")
            await bad.finish()
            await user.append("Nope", bad)
        assert not bad.path.exists()
        await svc.close()

    asyncio.run(go())


def test_list_events_round_trip_and_never_look_like_a_folder():
    """NOTIFY's mailbox-list events ride the folder-change channel (RFC 5465 MailboxName)."""
    from esam_mail.services.mailflow.mailboxes import list_event, parse_list_event

    assert parse_list_event(list_event("rename", "Old/a", "New b")) == ("rename", ["Old/a", "New b"])
    assert parse_list_event(list_event("subscribe", "Ünï")) == ("subscribe", ["Ünï"])
    assert parse_list_event("INBOX") is None
    assert parse_list_event("\x01bogus\x1fx") is None
    assert not list_event("create", "x").isprintable()  # no folder name holds a control character


def test_sessions_share_an_opened_folder_until_it_is_recreated(store):
    """A second SELECT of the same folder reuses what the first one learnt (issue 20);
    a folder deleted and made again (new UIDVALIDITY) is never served from the old object,
    nor is one recreated by another process behind this one's back."""

    async def go() -> None:
        svc = MailboxService(store, workers=2)
        user = svc.user("alice")
        await user.create_folder("Work")
        a = await user.open("Work")
        b = await svc.user("alice").open("Work")
        assert a.folder is b.folder
        uv = a.uidvalidity
        await user.delete_folder("Work")
        await user.create_folder("Work")
        c = await user.open("Work")
        uv2 = c.uidvalidity
        assert c.folder is not a.folder and uv2 != uv
        # another process deletes and recreates it: this process's service never heard of it
        other = store.user("alice")
        other.delete_folder("Work")
        other.create_folder("Work")
        d = await user.open("Work")
        assert d.folder is not c.folder and d.uidvalidity not in (uv, uv2)
        await svc.close()

    asyncio.run(go())


def test_moves_in_both_directions_at_once_do_not_deadlock(store):
    """Shared folder objects: MOVE A -> B beside MOVE B -> A takes both folder locks in
    one order."""
    store.user("alice").create_folder("B")

    async def go() -> None:
        svc = MailboxService(store, workers=4)
        user = svc.user("alice")
        for _ in range(20):
            await user.append("INBOX", MSG)
            await user.append("B", MSG)
        a, b = await user.open("INBOX"), await user.open("B")
        _, ia = await a.sync()
        _, ib = await b.sync()
        moves = []
        for x, y in zip(ia, ib, strict=True):
            moves.append(a.copy_to([x.uid], b, move=True))
            moves.append(b.copy_to([y.uid], a, move=True))
        await asyncio.wait_for(asyncio.gather(*moves), 30)
        _, ia = await a.sync()
        _, ib = await b.sync()
        assert len(ia) + len(ib) == 40
        await svc.close()

    asyncio.run(go())


def test_append_uses_the_shared_folder_and_never_parses_the_whole_uidlist(store, monkeypatch):
    """An APPEND goes through the process's shared folder object: its uidlist is at hand,
    the new record is appended, and the sessions' next look reads nothing whole (a fresh
    folder object per APPEND parsed the uidlist, then the shared one parsed it again)."""
    from esam_mail.store.uidlist import UidList

    async def go() -> None:
        svc = MailboxService(store, workers=2)
        alice = svc.user("alice")
        view, _snap, _ = await alice.select("INBOX", claim=False)
        for _ in range(3):
            await alice.append("INBOX", MSG)
        await view.sync()
        parsed: list[int] = []
        real = UidList.parse.__func__
        monkeypatch.setattr(UidList, "parse", classmethod(lambda cls, data: parsed.append(1) or real(cls, data)))
        _, uid = await alice.append("INBOX", MSG, ["\\Seen"])
        _, infos = await view.sync()
        assert [i.uid for i in infos] == [1, 2, 3, 4] and uid == 4
        assert "\\Seen" in infos[-1].flags
        assert parsed == []
        await svc.close()

    asyncio.run(go())
