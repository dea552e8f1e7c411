"""A command's response leaves in one TLS write (one record, one send()).

The untagged lines of a command, the changes reported after its folder refresh (a thread hop
later) and the tagged reply used to be written turn by turn: over TLS each turn made its own
record.  What the client must see before it sends more (a continuation request: IDLE,
AUTHENTICATE) still goes at once.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.protocol.imap.conftest import PASSWORD, Env, Raw, msg

pytestmark = pytest.mark.protocol


def _count_writes(env: Env, user: str = "alice") -> list[bytes]:
    """Wrap the TCP transport's write (under TLS: one call per flush of records) of ``user``'s session; returns the list it fills."""
    writes: list[bytes] = []

    def wrap() -> None:
        (s,) = [s for f in env.factories for s in f.sessions
                if s.principal is not None and s.principal.login == user]
        tcp: Any = s.transport
        tcp = getattr(tcp, "transport", tcp)  # TLSMemoryBIOProtocol -> tcp.Server
        inner = tcp.write

        def write(data: bytes) -> None:
            writes.append(bytes(data))
            inner(data)

        tcp.write = write

    env.loop.call(wrap)
    return writes


def _settle(env: Env) -> None:
    env.loop.call(lambda: None)


def test_fetch_store_and_changes_leave_in_one_write(env: Env) -> None:
    for i in range(3):
        env.deliver(msg(f"m{i}"))
    c = Raw.tls(env)
    c.login()
    c.cmd(b"S", b"SELECT INBOX")
    writes = _count_writes(env)
    r = c.cmd(b"F", b"FETCH 1:3 (UID FLAGS)")
    assert len([ln for ln in r if b" FETCH (" in ln]) == 3 and r[-1].startswith(b"F OK")
    _settle(env)
    assert len(writes) == 1, writes
    # a delivery meanwhile: STORE's FETCH lines, the EXISTS found by the refresh and the OK
    env.deliver(msg("late"))
    writes.clear()
    r = c.cmd(b"T", b"STORE 1:2 +FLAGS (\\Seen)")
    assert any(ln.endswith(b" EXISTS") for ln in r), r
    assert r[-1].startswith(b"T OK")
    _settle(env)
    assert len(writes) == 1, writes
    c.close()


def test_continuations_are_not_held(env: Env) -> None:
    """IDLE's "+ idling" and AUTHENTICATE's "+ " reach the client while the command runs;
    what IDLE pushes after it too."""
    c = Raw.tls(env)
    c.login()
    c.cmd(b"S", b"SELECT INBOX")
    c.send(b"I IDLE\r\n")
    assert c.line(timeout=5).startswith(b"+ ")
    env.deliver(msg("pushed"))
    assert c.line(timeout=10).endswith(b" EXISTS")
    c.send(b"DONE\r\n")
    assert c.until(b"I")[-1].startswith(b"I OK")
    c.close()

    c = Raw.tls(env)
    c.send(b"A AUTHENTICATE PLAIN\r\n")
    assert c.line(timeout=5).startswith(b"+")
    c.send(base64.b64encode(b"\0alice\0" + PASSWORD.encode()) + b"\r\n")
    assert c.until(b"A")[-1].startswith(b"A OK")
    c.close()


def test_a_command_over_tls_schedules_no_twisted_timer(env: Env) -> None:
    """Neither the end of a command nor the TLS layer's write gathering go through the
    reactor's ``callLater(0)`` (a DelayedCall, its heap and an asyncio timer re-armed, per
    response): ``loop.call_soon`` does the same for less (issue 20)."""
    from twisted.internet import reactor

    for i in range(3):
        env.deliver(msg(f"m{i}"))
    c = Raw.tls(env)
    c.login()
    c.cmd(b"S", b"SELECT INBOX")
    zero_delay: list[Any] = []
    real = reactor.callLater

    def counting(delay: float, f: Any, *a: Any, **kw: Any) -> Any:
        if delay == 0:
            zero_delay.append(f)
        return real(delay, f, *a, **kw)

    env.loop.call(setattr, reactor, "callLater", counting)
    try:
        for tag in (b"F1", b"F2", b"F3"):
            assert c.cmd(tag, b"FETCH 1:3 (UID FLAGS)")[-1].startswith(tag + b" OK")
        c.send(b"P1 NOOP\r\nP2 NOOP\r\n")  # pipelined: the second runs after the first ends
        assert c.until(b"P2")[-1].startswith(b"P2 OK")
        _settle(env)
    finally:
        env.loop.call(delattr, reactor, "callLater")
    assert zero_delay == []
    c.close()
