"""RFC 3501 §7.2.6: a keyword is announced in ``* FLAGS`` (and PERMANENTFLAGS)
before any FETCH response of the session carries it.

Stress clients (imaptest) flag a FETCH with an unannounced keyword as a state error.
"""

from __future__ import annotations

import re

import pytest

from tests.protocol.imap.conftest import Raw, msg

pytestmark = pytest.mark.protocol


def _selected(env) -> Raw:
    r = Raw.tls(env)
    r.login()
    r.cmd(b"s", b"SELECT INBOX")
    return r


def _check_announced_before_use(lines: list[bytes], keyword: bytes) -> None:
    flags_at = next(i for i, x in enumerate(lines) if x.startswith(b"* FLAGS ("))
    perm_at = next(i for i, x in enumerate(lines) if x.startswith(b"* OK [PERMANENTFLAGS ("))
    fetch_at = next(i for i, x in enumerate(lines) if b" FETCH (" in x and keyword in x)
    assert keyword in lines[flags_at] and keyword in lines[perm_at]
    assert flags_at < fetch_at and perm_at < fetch_at, lines
    assert re.search(rb"\\\*\)\]", lines[perm_at])


def test_own_store_announces_new_keyword_first(env):
    env.deliver(msg("one"))
    r = _selected(env)
    out = r.cmd(b"a", b"STORE 1 +FLAGS ($Label1)")
    _check_announced_before_use(out, b"$Label1")
    out = r.cmd(b"b", b"STORE 1 +FLAGS ($Label1 \\Seen)")  # known now: no second announcement
    assert not any(x.startswith(b"* FLAGS") for x in out), out


def test_keyword_set_by_another_session_is_announced_at_noop(env):
    env.deliver(msg("one"))
    a, b = _selected(env), _selected(env)
    b.cmd(b"x", b"STORE 1 +FLAGS.SILENT (Project-X)")
    out = a.cmd(b"n", b"NOOP")
    _check_announced_before_use(out, b"Project-X")


def test_new_message_with_keyword_is_announced(env):
    a = _selected(env)
    b = Raw.tls(env)
    b.login()
    data = msg("tagged")
    b.send(b"p APPEND INBOX (Urgent) {%d}\r\n" % len(data))
    assert b.line().startswith(b"+")
    b.send(data + b"\r\n")
    b.until(b"p")
    out = a.cmd(b"n", b"NOOP")
    assert any(x.startswith(b"* FLAGS (") and b"Urgent" in x for x in out), out
    out = a.cmd(b"f", b"FETCH 1 FLAGS")
    assert b"Urgent" in out[0]
