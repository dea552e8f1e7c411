"""RFC 3501 §6.1.3 LOGOUT: after BYE and the tagged OK the server closes the connection.

Over TLS, closing sends close_notify; a client that neither answers it nor closes
its socket must not keep the session (and its per-IP slot) alive: the server drops
the transport after a short grace.  The same holds for every other server close.
"""

from __future__ import annotations

import time

import pytest

from tests.protocol.imap.conftest import PASSWORD, Raw

pytestmark = pytest.mark.protocol


def _sessions(env, index: int) -> int:
    return int(env.loop.call(lambda: len(env.factories[index].sessions)))


def _wait_closed(env, index: int, timeout: float = 8.0) -> float:
    start = time.monotonic()
    while _sessions(env, index):
        if time.monotonic() - start > timeout:
            pytest.fail("session still open after LOGOUT while the client stays connected")
        time.sleep(0.05)
    return time.monotonic() - start


def test_logout_over_implicit_tls_closes_though_client_stays(env):
    r = Raw.tls(env)
    r.login()
    assert _sessions(env, 1) == 1
    out = r.cmd(b"z", b"LOGOUT")
    assert out == [b"* BYE Logging out.", b"z OK LOGOUT completed."]
    _wait_closed(env, 1)
    # and the TCP connection really ends: TLS reads report EOF (close_notify, then FIN)
    r.sock.settimeout(8)
    try:
        assert r.sock.recv(100) == b""
    except (ConnectionResetError, OSError):
        pass
    # the client never closed its side; we are not keeping its slot
    assert _sessions(env, 1) == 0


def test_logout_after_starttls_closes_though_client_stays(env):
    r = Raw.plain(env)
    assert r.cmd(b"t", b"STARTTLS")[-1].startswith(b"t OK")
    r.sock = env.client_ctx().wrap_socket(r.sock, server_hostname="127.0.0.1")
    r.cmd(b"l", b'LOGIN alice "' + PASSWORD.encode() + b'"')
    assert r.cmd(b"z", b"LOGOUT")[-1] == b"z OK LOGOUT completed."
    _wait_closed(env, 0)


def test_plain_logout_closes_at_once(env):
    r = Raw.plain(env)
    r.cmd(b"z", b"LOGOUT")
    assert _wait_closed(env, 0) < 2.0
    r.sock.settimeout(5)
    assert r.sock.recv(100) == b""
