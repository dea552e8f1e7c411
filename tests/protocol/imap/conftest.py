"""IMAP protocol tests: a real MaildirStore, real sockets on 127.0.0.1:0, imaplib.

The asyncio reactor is installed once per process (``esam_mail.app.install_reactor``
via the shared protocol harness, else directly) and its loop runs in a background
thread; tests drive imaplib from the test thread.
"""

from __future__ import annotations

import asyncio
import imaplib
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from esam_mail.errors import AuthError
from esam_mail.services.auth import Principal
from tests.rawclient import RawIMAP, open_socket

PASSWORD = "s3cret-Passw0rd"


class _Loop:
    """The process-wide reactor loop, running in a daemon thread."""

    _inst: _Loop | None = None

    def __init__(self) -> None:
        try:
            from tests.protocol.harness import loop_thread

            lt = loop_thread()
            self.loop = lt.loop
        except ImportError:  # pragma: no cover - harness absent
            if "twisted.internet.reactor" in sys.modules:
                from twisted.internet import reactor

                self.loop = reactor._asyncioEventloop  # type: ignore[attr-defined]
            else:
                self.loop = asyncio.new_event_loop()
                from twisted.internet import asyncioreactor

                asyncioreactor.install(self.loop)
                threading.Thread(target=self.loop.run_forever, daemon=True).start()

    @classmethod
    def get(cls) -> _Loop:
        if cls._inst is None:
            cls._inst = cls()
        return cls._inst

    def call(self, func: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        async def wrap() -> Any:
            return func(*args, **kw)

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(30)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)


class FakeAuthenticator:
    """Accepts ``alice``/``bob`` (login or address) with PASSWORD; counts calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.explode = False

    async def authenticate(self, username: str, password: str, *, peer: str,
                           service: str) -> Principal:
        self.calls.append((username, service))
        if self.explode:
            raise RuntimeError("directory on fire: /secret/path")
        login = username.split("@")[0].lower()
        if login not in ("alice", "bob") or password != PASSWORD:
            raise AuthError("bad credentials")
        return Principal(login, f"{login}@esam.test")


@dataclass
class Env:
    loop: _Loop
    store: Any
    notifier: Any
    auth: FakeAuthenticator
    ca: trustme.CA
    plain_port: int
    tls_port: int
    factories: list[Any] = field(default_factory=list)
    clients: list[imaplib.IMAP4] = field(default_factory=list)

    def client_ctx(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx

    def plain(self) -> imaplib.IMAP4:
        c = imaplib.IMAP4("127.0.0.1", self.plain_port, timeout=10)
        self.clients.append(c)
        return c

    def tls(self) -> imaplib.IMAP4_SSL:
        c = imaplib.IMAP4_SSL("127.0.0.1", self.tls_port, ssl_context=self.client_ctx(),
                              timeout=10)
        self.clients.append(c)
        return c

    def login(self, user: str = "alice") -> imaplib.IMAP4_SSL:
        c = self.tls()
        c.login(user, PASSWORD)
        return c

    def deliver(self, data: bytes, user: str = "alice", folder: str = "INBOX") -> str:
        key: str = self.store.user(user).deliver(data, folder)
        return key


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    from esam_mail.imap.server import IMAPFactory, IMAPLimits, start_listener, tls_options
    from esam_mail.store.maildir import MaildirStore
    from esam_mail.store.notify import LocalNotifier

    lp = _Loop.get()
    notifier = LocalNotifier()
    store = MaildirStore(tmp_path / "mail", fsync=False, notifier=notifier,
                         default_quota=10 * 1024 * 1024)
    for u in ("alice", "bob"):
        store.user(u).create()
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for extra in cert.cert_chain_pems[1:]:
        with open(cert_file, "ab") as f:
            f.write(extra.bytes())
    cert.private_key_pem.write_to_path(str(key_file))
    auth = FakeAuthenticator()
    limits = IMAPLimits(max_message_size=1024 * 1024, idle_poll=30.0)

    def start() -> tuple[Any, Any, Any, Any]:
        ctx = tls_options(str(cert_file), str(key_file))
        f1 = IMAPFactory(store, auth, notifier, tls_context_factory=ctx, limits=limits)
        f2 = IMAPFactory(store, auth, notifier, tls_context_factory=ctx, implicit_tls=True,
                         limits=limits)
        return f1, f2, start_listener(f1, "127.0.0.1", 0), start_listener(f2, "127.0.0.1", 0)

    f1, f2, l1, l2 = lp.call(start)
    e = Env(lp, store, notifier, auth, ca, l1.port, l2.port, [f1, f2])
    try:
        yield e
    finally:
        for c in e.clients:
            try:
                c.shutdown()
            except Exception:
                pass
        lp.run(l1.close())
        lp.run(l2.close())


def msg(subject: str = "Hello", body: str = "Body text\r\n", frm: str = "Carol <carol@ex.org>",
        extra: str = "") -> bytes:
    return (
        f"From: {frm}\r\nTo: alice@esam.test\r\nSubject: {subject}\r\n"
        f"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <{abs(hash(subject))}@ex.org>\r\n"
        f"{extra}\r\n{body}"
    ).encode()


class Raw(RawIMAP):
    """The shared IMAP line client (tests/rawclient.py) for what imaplib cannot do (IDLE,
    LITERAL-, SASL-IR)."""

    @classmethod
    def tls(cls, env: Env) -> Raw:
        return cls(open_socket(env.tls_port, tls=env.client_ctx()))

    @classmethod
    def plain(cls, env: Env) -> Raw:
        return cls(open_socket(env.plain_port))

    def cmd(self, tag: bytes, text: bytes) -> list[bytes]:
        return self.tagged(tag, text)

    def login(self, user: str = "alice") -> None:  # type: ignore[override]
        r = self.cmd(b"L", b"LOGIN " + user.encode() + b' "' + PASSWORD.encode() + b'"')
        assert r[-1].startswith(b"L OK"), r


@pytest.fixture
def r(env: Env) -> Raw:
    """A TLS session with INBOX selected: twelve messages m0..m11, only 2, 10 and 11 unseen
    (the ESEARCH and CONTEXT tests' mailbox).  Modules that need another mailbox define their
    own ``r``, which overrides this one."""
    for i in range(12):
        env.deliver(msg(f"m{i}"))
    c = Raw.tls(env)
    c.login()
    c.cmd(b"s", b"SELECT INBOX")
    c.cmd(b"f", b"STORE 1,3:9,12 +FLAGS.SILENT (\\Seen)")  # unseen: 2, 10, 11
    return c

