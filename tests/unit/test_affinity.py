"""esam_mail.affinity: worker i of N on the i-th allowed CPU, only when each gets one."""

from __future__ import annotations

import multiprocessing
import os
import threading

from esam_mail import affinity


def test_a_worker_gets_a_cpu_only_when_each_worker_can_have_one() -> None:
    assert affinity.cpu_for(0, 2, {3, 5}) == 3
    assert affinity.cpu_for(1, 2, {3, 5}) == 5
    assert affinity.cpu_for(0, 1, {0, 1}) is None  # one process: nothing to separate
    assert affinity.cpu_for(2, 3, {0, 1}) is None  # more workers than CPUs
    assert affinity.cpu_for(5, 2, {0, 1}) is None


def _child(q: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    cpu = affinity.pin_worker(1, 2)
    seen: dict[str, set[int]] = {}

    def inherit() -> None:
        seen["pool"] = os.sched_getaffinity(0)

    def free() -> None:
        affinity.unpinned()
        seen["hash"] = os.sched_getaffinity(0)

    for fn in (inherit, free):
        t = threading.Thread(target=fn)
        t.start()
        t.join()
    q.put((cpu, os.sched_getaffinity(0), seen["pool"], seen["hash"]))


def test_a_pinned_worker_s_threads_inherit_its_cpu_and_hash_threads_are_free() -> None:
    allowed = os.sched_getaffinity(0)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    proc = ctx.Process(target=_child, args=(q,))
    proc.start()
    cpu, main, pool, hashing = q.get(timeout=20)
    proc.join(20)
    if len(allowed) < 2:
        assert cpu is None and main == pool == hashing == allowed
        return
    assert cpu == sorted(allowed)[1]
    assert main == pool == {cpu}  # the loop and every thread it starts later
    assert hashing == allowed  # unpinned(): argon2id may use every CPU
