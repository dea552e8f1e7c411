"""Notifiers: in-process pub/sub and unix datagram sockets across processes."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import socket
import threading
import time
from pathlib import Path

from esam_mail.store.maildir import MaildirStore
from esam_mail.store.notify import LocalNotifier, UnixDatagramNotifier


def test_local_notifier_unsubscribe_and_bad_callback() -> None:
    n = LocalNotifier()
    got: list[tuple[str, str]] = []

    def bad(login: str, folder: str) -> None:
        raise RuntimeError("boom")

    n.subscribe(bad)
    unsub = n.subscribe(lambda lg, f: got.append((lg, f)))
    n.publish("alice", "INBOX")
    unsub()
    n.publish("alice", "Sent")
    assert got == [("alice", "INBOX")]


async def _local_notifier_runs_callback_on_loop_from_thread() -> None:
    n = LocalNotifier()
    loop = asyncio.get_running_loop()
    fired = asyncio.Event()
    threads: list[threading.Thread] = []
    n.subscribe(lambda lg, f: (threads.append(threading.current_thread()), fired.set()))
    t = threading.Thread(target=n.publish, args=("alice", "INBOX"))
    t.start()
    t.join()
    await asyncio.wait_for(fired.wait(), 2)
    assert threads == [threading.main_thread()]
    assert loop.is_running()


def _publisher(run_dir: str, root: str) -> None:
    notifier = UnixDatagramNotifier(run_dir)
    store = MaildirStore(Path(root), fsync=False, notifier=notifier)
    store.deliver_many(["alice"], b"Subject: x\r\n\r\nhi\r\n")
    notifier.close()


async def _unix_notifier_across_processes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    notifier = UnixDatagramNotifier(run_dir)
    got: list[tuple[str, str]] = []
    fired = asyncio.Event()

    def cb(login: str, folder: str) -> None:
        got.append((login, folder))
        fired.set()

    notifier.subscribe(cb)
    # A stale socket from a dead process must be removed, not break publishing.
    stale = run_dir / "99999999-dead.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(stale))
    s.close()
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=_publisher, args=(str(run_dir), str(tmp_path / "mail")))
    t0 = time.monotonic()
    p.start()
    await asyncio.wait_for(fired.wait(), 30)
    await asyncio.to_thread(p.join, 30)
    assert p.exitcode == 0
    assert got == [("alice", "INBOX")]
    assert not stale.exists()
    assert time.monotonic() - t0 < 30
    # Local publish is delivered without the socket and never sent to ourselves.
    got.clear()
    fired.clear()
    notifier.publish("bob", "Sent/2026")
    await asyncio.wait_for(fired.wait(), 2)
    await asyncio.sleep(0.05)
    assert got == [("bob", "Sent/2026")]
    own = notifier.socket_path
    assert own is not None and os.path.exists(own)
    notifier.close()
    assert not os.path.exists(own)


async def _unix_notifier_latency(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    receiver = UnixDatagramNotifier(run_dir)
    sender = UnixDatagramNotifier(run_dir)  # separate socket set, as another process
    fired = asyncio.Event()
    receiver.subscribe(lambda lg, f: fired.set())
    t0 = time.perf_counter()
    await asyncio.to_thread(sender.publish, "alice", "INBOX")
    await asyncio.wait_for(fired.wait(), 2)
    assert time.perf_counter() - t0 < 0.5
    receiver.close()
    sender.close()


def test_local_notifier_runs_callback_on_loop_from_thread() -> None:
    asyncio.run(_local_notifier_runs_callback_on_loop_from_thread())


def test_unix_notifier_across_processes(tmp_path: Path) -> None:
    asyncio.run(_unix_notifier_across_processes(tmp_path))


def test_unix_notifier_latency(tmp_path: Path) -> None:
    asyncio.run(_unix_notifier_latency(tmp_path))
