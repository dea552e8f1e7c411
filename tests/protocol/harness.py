"""In-process servers on 127.0.0.1 port 0 for protocol tests.

One asyncio loop with Twisted's asyncio reactor runs in a background thread for
the whole test session (a reactor can be installed once per process); each test
starts its own :class:`esam_mail.app.Server` on it and talks to it with
blocking stdlib clients (smtplib, imaplib) from the test thread.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self) -> None:
        from esam_mail.app import install_reactor

        self.loop = install_reactor()
        self.thread = threading.Thread(target=self.loop.run_forever, name="esam-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, func: Any, *args: Any) -> Any:
        async def wrap() -> Any:
            return func(*args)

        return self.run(wrap())


_LOOP: LoopThread | None = None


def loop_thread() -> LoopThread:
    global _LOOP
    if _LOOP is None:
        _LOOP = LoopThread()
    return _LOOP


class Running:
    """A started Server plus helpers to create mailboxes."""

    def __init__(self, cfg: Any, **server_kw: Any) -> None:
        from esam_mail import app

        self.cfg = cfg
        self.lt = loop_thread()
        app.init(cfg)
        self.server = app.Server(cfg, **server_kw)
        self.ports = self.lt.run(self.server.start())
        assert self.server.services is not None
        self.services = self.server.services

    def add_mailbox(self, login: str, password: str = "correct horse", **kw: Any) -> Any:
        svc = self.services

        async def go() -> Any:
            hashed = await asyncio.get_running_loop().run_in_executor(None, svc.hasher.hash, password)
            rec = await svc.directory.create_mailbox(login, hashed, **kw)
            svc.store.user(rec.login_norm).create()
            return rec

        return self.lt.run(go())

    def set_state(self, login: str, state: str) -> None:
        self.lt.run(self.services.directory.set_state(login, state, actor=("sysadmin", "test")))

    def stop(self) -> None:
        self.lt.run(self.server.stop())


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
