"""Group commit of deliveries (issue 20): several messages share one pass, every message
file is on stable storage before any name points at it, and one job's failure stays its own."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from esam_mail.errors import QuotaExceeded
from esam_mail.services.mailflow.delivery import GroupCommit
from esam_mail.store.maildir import MaildirStore

from .conftest import msg


def test_batch_fsyncs_every_file_before_linking_and_each_directory_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MaildirStore(tmp_path / "m", fsync=True)
    for u in ("alice", "bob", "carol"):
        store.user(u).create()
    calls: list[str] = []
    real_fsync, real_link, real_open = os.fsync, os.link, os.open
    paths: dict[int, str] = {}

    def track_open(path, flags, *a):  # type: ignore[no-untyped-def]
        fd = real_open(path, flags, *a)
        paths[fd] = str(path)
        return fd

    monkeypatch.setattr(os, "open", track_open)
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync " + paths[fd]) or real_fsync(fd))
    monkeypatch.setattr(os, "link", lambda a, b: calls.append(f"link {b}") or real_link(a, b))
    jobs = [(["alice"], msg(1), None), (["bob", "alice"], msg(2), None), (["carol"], msg(3), {"carol": 10})]
    out = store.deliver_batch(jobs)
    monkeypatch.undo()
    assert isinstance(out[0]["alice"], str) and isinstance(out[1]["bob"], str)
    assert isinstance(out[2]["carol"], QuotaExceeded)
    first_link = next(i for i, c in enumerate(calls) if c.startswith("link"))
    root = str(store.root)
    file_syncs = [c for c in calls if c.startswith(f"fsync {root}") and "/tmp/" in c[len(root):]]
    assert len(file_syncs) == 2 and all(calls.index(c) < first_link for c in file_syncs)
    dir_syncs = [c for c in calls if c.endswith("/new")]
    assert sorted(dir_syncs) == sorted({c for c in dir_syncs}) and len(dir_syncs) == 2  # alice's once
    for login, n in (("alice", 2), ("bob", 1), ("carol", 0)):
        assert len(os.listdir(store.root / login / "new")) == n
        assert os.listdir(store.root / login / "tmp") == []


def test_a_failed_job_fails_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = MaildirStore(tmp_path / "m", fsync=True)
    store.user("alice").create()
    store.user("bob").create()
    real_fsync = os.fsync
    count = {"n": 0}

    def flaky(fd: int) -> None:
        count["n"] += 1
        if count["n"] == 1:  # the first message file
            raise OSError(5, "EIO")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", flaky)
    out = store.deliver_batch([(["alice"], msg(1), None), (["bob"], msg(2), None)])
    monkeypatch.undo()
    assert isinstance(out[0], OSError) and isinstance(out[1]["bob"], str)
    assert os.listdir(store.root / "alice" / "new") == [] and os.listdir(store.root / "alice" / "tmp") == []


class SlowStore:
    def __init__(self) -> None:
        self.batches: list[int] = []
        self.release = threading.Event()

    def deliver_batch(self, jobs):  # type: ignore[no-untyped-def]
        self.batches.append(len(jobs))
        if len(self.batches) == 1:
            self.release.wait(5)
        return [{lg: f"key-{data.decode()}" for lg in logins} if data != b"bad" else OSError(5, "EIO")
                for logins, data, _ in jobs]


def test_deliveries_arriving_during_a_write_share_the_next_one() -> None:
    store = SlowStore()
    commits = GroupCommit(store)  # type: ignore[arg-type]

    async def go() -> list[object]:
        first = asyncio.create_task(commits.deliver_each(["a"], b"0", {}))
        await asyncio.sleep(0.05)  # the first batch is being written
        rest = [asyncio.create_task(commits.deliver_each(["a"], str(i).encode() if i != 3 else b"bad", {}))
                for i in range(1, 6)]
        await asyncio.sleep(0.05)
        store.release.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = asyncio.run(go())
    assert store.batches == [1, 5]
    assert results[0] == {"a": "key-0"} and results[1] == {"a": "key-1"}
    assert isinstance(results[3], OSError)  # only the failed one
    assert results[5] == {"a": "key-5"}
