"""The mailbox service's worker pool (esam_mail/services/mailflow/pool.py): results and
exceptions reach the loop, work runs off the loop's thread, an executor for
run_in_executor, threads made after a fork in the child, shutdown after queued work."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from esam_mail.services.mailflow.pool import WorkerPool


def test_results_and_exceptions_reach_the_loop_from_worker_threads() -> None:
    pool = WorkerPool(3, "t-pool")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        me = threading.get_ident()
        got = await asyncio.gather(*(pool.run(loop, lambda i=i: (i, threading.get_ident()))
                                     for i in range(50)))
        assert [i for i, _ in got] == list(range(50))
        assert all(t != me for _, t in got)
        assert len({t for _, t in got}) <= 3
        with pytest.raises(KeyError):
            await pool.run(loop, lambda: {}["missing"])
        # the executor interface, as the spool's writes use it
        assert await loop.run_in_executor(pool, lambda a, b: a + b, 2, 3) == 5

    asyncio.run(main())
    pool.shutdown()
    assert not any(t.name.startswith("t-pool_") for t in threading.enumerate())
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)


def test_shutdown_runs_the_work_already_queued() -> None:
    pool = WorkerPool(1, "t-drain")
    done: list[int] = []
    futs = [pool.submit(lambda i=i: (time.sleep(0.01), done.append(i))) for i in range(5)]
    pool.shutdown(wait=True)
    assert done == [0, 1, 2, 3, 4] and all(f.done() for f in futs)


def test_a_closed_loop_does_not_break_the_worker() -> None:
    pool = WorkerPool(1, "t-closed")
    loop = asyncio.new_event_loop()
    gate = threading.Event()
    fut = pool.run(loop, gate.wait)
    loop.close()
    gate.set()
    assert pool.submit(lambda: 42).result(timeout=5) == 42  # the thread lives on
    assert not fut.done()
    pool.shutdown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_gets_threads_of_its_own() -> None:
    pool = WorkerPool(2, "t-fork")
    assert pool.submit(os.getpid).result(timeout=5) == os.getpid()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            ok = pool.submit(os.getpid).result(timeout=5) == os.getpid()
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.waitpid(pid, 0)
    pool.shutdown()
