"""Micro-benchmark: one hop from the event loop to a worker thread and back, as every IMAP
command makes: ``loop.run_in_executor`` on a ``ThreadPoolExecutor`` against the mailbox
service's ``WorkerPool.run`` (8 concurrent chains, 4 threads, GIL switch interval 1 ms as
``esam serve`` sets it).

Usage: .venv/bin/python bench/hop.py
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from esam_mail.services.mailflow.pool import WorkerPool

N = 20000


async def bench(label: str, hop: Callable[[], Awaitable[object]]) -> None:
    async def chain(n: int) -> None:
        for _ in range(n):
            await hop()

    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(chain(N // 8) for _ in range(8)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{label}: {wall / N * 1e6:.1f} us wall, {cpu / N * 1e6:.1f} us CPU per hop")


async def main() -> None:
    sys.setswitchinterval(0.001)
    loop = asyncio.get_running_loop()
    tpe, pool = ThreadPoolExecutor(4), WorkerPool(4, "bench-hop")
    work = functools.partial(len, "abc")
    for _ in range(2):  # alternating
        await bench("run_in_executor(ThreadPoolExecutor)", lambda: asyncio.shield(loop.run_in_executor(tpe, work)))
        await bench("WorkerPool.run", lambda: asyncio.shield(pool.run(loop, work)))
    tpe.shutdown()
    pool.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
