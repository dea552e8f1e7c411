"""The mailbox service's worker threads: a hop from the event loop and back that costs
less than ``loop.run_in_executor`` on a ``ThreadPoolExecutor`` (issue 20).

Every IMAP command hops to a worker thread at least once (folder work is blocking file
I/O).  With ``run_in_executor`` each hop made a ``concurrent.futures.Future``, took two
locks and a ``threading.Semaphore`` (a ``Condition`` in Python) in ``submit``, and chained
the result into an asyncio future through three callbacks; under the random-command
stress ``ThreadPoolExecutor.submit`` alone was 10-15 % of the event loop's GIL time
(py-spy).  :meth:`WorkerPool.run` puts ``(loop, future, fn)`` on a ``SimpleQueue`` and
the worker sets the asyncio future through one ``call_soon_threadsafe``.

It is also a :class:`concurrent.futures.Executor` (``submit``), for the callers that use
``run_in_executor`` with it.  Threads start at the first use in a process (never before a
fork) and are stopped at interpreter exit after the work already queued, as
``ThreadPoolExecutor``'s are.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from esam_mail import procid

T = TypeVar("T")

_Item = Callable[[], None]


def _resolve(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():  # cancelled meanwhile (callers shield it; defensive)
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class WorkerPool(concurrent.futures.Executor):
    """``workers`` threads named ``<name>_<i>`` taking work from one queue, in order."""

    def __init__(self, workers: int, name: str) -> None:
        self.workers = max(1, workers)
        self.name = name
        self._lock = threading.Lock()
        self._pid = 0
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._at_exit = False

    def _started(self) -> queue.SimpleQueue[_Item | None]:
        if self._pid == procid.pid() and not self._closed:
            return self._queue
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new work after shutdown")
            if self._pid != procid.pid():  # first use, or a forked child: threads of its own
                self._queue = queue.SimpleQueue()
                self._threads = []
                for i in range(self.workers):
                    t = threading.Thread(target=_work, args=(self._queue,), name=f"{self.name}_{i}",
                                         daemon=True)
                    t.start()
                    self._threads.append(t)
                self._pid = procid.pid()
                if not self._at_exit:
                    atexit.register(self.shutdown)
                    self._at_exit = True
            return self._queue

    def run(self, loop: asyncio.AbstractEventLoop, fn: Callable[[], T]) -> asyncio.Future[T]:
        """``fn()`` on a worker thread; the returned future (of ``loop``) gets its result or
        exception.  Call from the loop's thread."""
        fut: asyncio.Future[T] = loop.create_future()

        def item() -> None:
            try:
                result = fn()
            except BaseException as exc:  # noqa: BLE001 - as ThreadPoolExecutor: the caller gets it
                _post(loop, fut, False, exc)
            else:
                _post(loop, fut, True, result)

        self._started().put(item)
        return fut

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        f: concurrent.futures.Future[T] = concurrent.futures.Future()

        def item() -> None:
            if not f.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - the caller gets it
                f.set_exception(exc)
            else:
                f.set_result(result)

        self._started().put(item)
        return f

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the threads after the work already queued (``cancel_futures`` is not
        supported: queued work always runs)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = self._threads if self._pid == procid.pid() else []
            for _ in threads:
                self._queue.put(None)
        if wait:
            for t in threads:
                t.join()


def _post(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    try:
        loop.call_soon_threadsafe(_resolve, fut, ok, value)
    except RuntimeError:  # the loop was closed meanwhile: nobody waits any more
        pass


def _work(q: queue.SimpleQueue[_Item | None]) -> None:
    while True:
        item = q.get()
        if item is None:
            return
        item()
        del item
