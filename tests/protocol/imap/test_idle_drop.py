"""A connection dropped during IDLE leaves nothing behind: the IDLE command ends, no
waiter, task or notification subscription of the session lives on, and the session
itself is freed (with its selected-folder snapshot, which grows with the folder)."""

from __future__ import annotations

import asyncio
import gc
import socket
import struct
import time
import weakref
from typing import Any

import pytest

from esam_mail.imap import notify as notifymod
from esam_mail.imap import server as imapserver
from tests.protocol.imap.conftest import Raw, msg

pytestmark = pytest.mark.protocol


def _newest(env: Any) -> Any:
    return env.loop.call(lambda: max(env.factories[1].sessions, key=lambda s: s._opened))


def _leftovers(env: Any) -> list[str]:
    """Whatever of a closed session still runs or waits on the server loop."""

    def look() -> list[str]:
        out = []
        for f in env.factories:
            out += [f"session {s.session}" for s in f.sessions]
        for t in asyncio.all_tasks():
            code = getattr(t.get_coro(), "cr_code", None)
            if code is not None and code.co_name in ("cmd_idle", "_idle_refresh", "_drain"):
                out.append(f"task {code.co_name}")
        out += [f"notify task {t!r}" for t in notifymod._TASKS]
        out += [f"background {t!r}" for t in imapserver._BACKGROUND if not t.done()]
        return out

    result: list[str] = env.loop.call(look)
    return result


def _drop(r: Raw) -> None:
    """Reset the TCP connection (no LOGOUT, no TLS close_notify): a client gone away."""
    raw = r.sock
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()


@pytest.mark.parametrize("with_notify", [False, True])
def test_drop_mid_idle_cleans_up(env: Any, with_notify: bool) -> None:
    env.deliver(msg("one"))
    r = Raw.tls(env)
    r.login()
    r.cmd(b"s", b"SELECT INBOX")
    if with_notify:
        assert r.cmd(b"n", b"NOTIFY SET (selected (MessageNew MessageExpunge)) "
                           b"(personal (MessageNew MessageExpunge))")[-1] == b"n OK NOTIFY completed."
    r.idle()
    gone = weakref.ref(_newest(env))
    assert env.loop.call(lambda: gone()._idle_tag) is not None
    _drop(r)
    env.deliver(msg("two"))  # a change for the dead session's folder, after the drop
    deadline = time.monotonic() + 10
    while _leftovers(env) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _leftovers(env) == []
    deadline = time.monotonic() + 10
    while gone() is not None and time.monotonic() < deadline:
        env.loop.call(gc.collect)
        time.sleep(0.05)
    assert gone() is None, "the dropped IDLE session is still referenced"
    # the listener still serves: another session sees both messages
    r2 = Raw.tls(env)
    r2.login()
    assert b"* 2 EXISTS" in r2.cmd(b"s", b"SELECT INBOX")
