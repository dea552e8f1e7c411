"""Several processes on one Maildir at once (spawn): deliveries, flag changes, expunges.

One process delivers SMTP-style (``deliver_many``) while two others sync, change flags
and expunge.  Afterwards: nothing lost, no UID used twice, the uidlist matches the
files, every expunged message is really gone.
"""

from __future__ import annotations

import multiprocessing as mp
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esam_mail.store.check import check_user
from esam_mail.store.maildir import MaildirStore
from esam_mail.store.uidlist import UidList

# three processes racing for the CPU: alone, after the parallel workers (scripts/test.sh)
pytestmark = pytest.mark.solo

N_DELIVERIES = 300


def _deliverer(root: str, out: mp.Queue, start: Any, done: Any) -> None:  # type: ignore[type-arg]
    store = MaildirStore(Path(root), fsync=False)
    start.wait(30)
    keys = []
    for i in range(N_DELIVERIES):
        res = store.deliver_many(["alice", "bob"], f"Subject: {i}\r\n\r\nbody {i}\r\n".encode())
        keys.append(res["alice"])
    done.set()
    out.put(("delivered", keys))


def _rounds(start: Any, done: Any) -> Iterator[int]:
    """Loop until the deliverer is done, then a few more rounds."""
    start.wait(30)
    n = after = 0
    while after < 5:
        if done.is_set():
            after += 1
        n += 1
        yield n


def _flagger(root: str, seed: int, out: mp.Queue, start: Any, done: Any) -> None:  # type: ignore[type-arg]
    rnd = random.Random(seed)
    store = MaildirStore(Path(root), fsync=False)
    f = store.user("alice").folder("INBOX")
    seen: dict[int, str] = {}
    for _ in _rounds(start, done):
        infos = f.sync()
        for i in infos:
            seen.setdefault(i.uid, i.key)
            assert seen[i.uid] == i.key, "UID reused"
        if infos:
            uids = [i.uid for i in rnd.sample(infos, min(5, len(infos)))]
            flag = rnd.choice(["\\Seen", "\\Flagged", "\\Answered", "Work"])
            f.store_flags(uids, [flag], rnd.choice([1, -1]))
    out.put(("seen", seen))


def _expunger(root: str, seed: int, out: mp.Queue, start: Any, done: Any) -> None:  # type: ignore[type-arg]
    rnd = random.Random(seed)
    store = MaildirStore(Path(root), fsync=False)
    f = store.user("alice").folder("INBOX")
    expunged: list[str] = []
    seen: dict[int, str] = {}
    for n in _rounds(start, done):
        infos = f.sync()
        for i in infos:
            seen.setdefault(i.uid, i.key)
            assert seen[i.uid] == i.key, "UID reused"
        if len(infos) > 3 and n % 3 == 0:
            victims = rnd.sample(infos, 2)
            f.store_flags([v.uid for v in victims], ["\\Deleted"], 1)
            gone = set(f.expunge([v.uid for v in victims]))
            expunged += [v.key for v in victims if v.uid in gone]
    out.put(("expunged", expunged))
    out.put(("seen", seen))


def test_concurrent_delivery_flags_expunge(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    store = MaildirStore(root, fsync=False)
    store.user("alice").create()
    store.user("bob").create()
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    start, done = ctx.Barrier(3), ctx.Event()
    procs = [
        ctx.Process(target=_deliverer, args=(str(root), q, start, done)),
        ctx.Process(target=_flagger, args=(str(root), 1, q, start, done)),
        ctx.Process(target=_expunger, args=(str(root), 2, q, start, done)),
    ]
    for p in procs:
        p.start()
    results: list[tuple[str, object]] = [q.get(timeout=60) for _ in range(4)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    delivered: list[str] = next(v for k, v in results if k == "delivered")  # type: ignore[assignment]
    expunged: list[str] = next(v for k, v in results if k == "expunged")  # type: ignore[assignment]
    seen_maps: list[dict[int, str]] = [v for k, v in results if k == "seen"]  # type: ignore[misc]
    assert len(delivered) == N_DELIVERIES
    assert len(expunged) >= 10, "the expunger hardly got to work"

    f = store.user("alice").folder("INBOX")
    infos = f.sync()
    keys = [i.key for i in infos]
    uids = [i.uid for i in infos]
    assert len(set(uids)) == len(uids), "duplicate UID"
    assert len(set(keys)) == len(keys), "same message twice"
    assert set(keys) == set(delivered) - set(expunged), "lost or resurrected message"
    on_disk = {p.name.partition(":2,")[0] for p in (root / "alice" / "cur").iterdir()}
    assert on_disk.isdisjoint(expunged)
    assert not list((root / "alice" / "new").iterdir())

    # UIDs were never reused: every (uid -> key) seen by anyone agrees with the others.
    merged: dict[int, str] = {i.uid: i.key for i in infos}
    for m in seen_maps:
        for uid, key in m.items():
            assert merged.setdefault(uid, key) == key
    ul = UidList.parse((root / "alice" / "dovecot-uidlist").read_bytes())
    assert not ul.problems
    assert ul.uidnext > max(uids)
    # the records of expunged messages may stay until the list is next rewritten
    # (maildir._dead_allowed); every other record names a live message, with its UID
    gone = set(expunged)
    assert {k: u for k, u in ul.entries.items() if k not in gone} == {i.key: i.uid for i in infos}
    report = check_user(store.user("alice"))
    assert report.ok, report.lines()
    bob = store.user("bob").folder("INBOX").sync()
    assert len(bob) == N_DELIVERIES
