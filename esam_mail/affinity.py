"""One CPU per worker process (``server.cpu_affinity``, issue 20).

A worker's event loop and its mailbox threads share the GIL: each command hands it from
the loop to a pool thread and back, and a pool thread's every system call hands it over
again.  On different CPUs each handover is a cross-CPU wake-up (an inter-processor
interrupt, a VM exit on a virtual machine): py-spy showed 9 % of the GIL time in the
queue ``put`` that wakes a pool thread, perf 9 % of the CPU in ``futex``.  On one CPU
the same handover is a local context switch.  With ``serve --workers N`` and at least N
CPUs, worker ``i`` runs on the ``i``-th allowed CPU: the random-command stress ran 18-29 %
more commands per second against the same build unpinned, at the same time.

Only what shares the GIL with the loop is pinned; the password-hash threads (argon2id,
which runs without the GIL for tens of milliseconds) run anywhere, so a burst of logins
does not take the CPU from that worker's sessions (:func:`unpinned`, their initializer).
One process (the default ``--workers 1``), more workers than CPUs, or a platform
without ``sched_setaffinity``: nothing is pinned.
"""

from __future__ import annotations

import logging
import os

from esam_mail.log import event

log = logging.getLogger(__name__)

_all_cpus: set[int] | None = None  # the process's CPUs before pinning (None: not pinned)


def cpu_for(index: int, slots: int, allowed: set[int]) -> int | None:
    """The CPU of worker ``index`` of ``slots``, or None (one process, or more workers
    than CPUs)."""
    cpus = sorted(allowed)
    if slots < 2 or slots > len(cpus) or not 0 <= index < slots:
        return None
    return cpus[index]


def pin_worker(index: int, slots: int) -> int | None:
    """In a worker process, before it starts threads: run it on its CPU (threads created
    from now on inherit it).  The CPU, or None when nothing was pinned."""
    global _all_cpus
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        allowed = os.sched_getaffinity(0)
        cpu = cpu_for(index, slots, allowed)
        if cpu is None:
            return None
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:  # a container that forbids it: run unpinned
        log.warning("event=cpu_affinity_failed error=%s", exc.strerror)
        return None
    _all_cpus = allowed
    event(log, "worker.cpu", index=index, cpu=cpu)
    return cpu


def unpinned() -> None:
    """Thread initializer: this thread may run on any of the process's CPUs again (work
    that holds no GIL, such as password hashing)."""
    if _all_cpus is not None:
        try:
            os.sched_setaffinity(0, _all_cpus)
        except OSError:
            pass
