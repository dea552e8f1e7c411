"""Bounded command cost over the wire (issue 14): out-of-range numbers, repeated
ranges, over-long or over-deep SEARCH programs get BAD with a clear text, never
OK, never ``NO [SERVERBUG]`` with a traceback in the log."""

from __future__ import annotations

import imaplib
import logging

import pytest

from tests.protocol.imap.conftest import msg

pytestmark = pytest.mark.protocol


@pytest.fixture
def selected(env):
    for i in range(5):
        env.deliver(msg(f"m{i}"))
    c = env.login()
    c.select("INBOX")
    return c


@pytest.mark.parametrize(("cmd", "args"), [
    ("FETCH", ("4294967296", "(FLAGS)")),
    ("FETCH", ("1:4294967296", "(FLAGS)")),
    ("STORE", ("1:4294967296", "+FLAGS", "(\\Seen)")),
    ("COPY", ("4294967296", "INBOX")),
])
def test_uid_beyond_32_bits_is_bad(selected, cmd, args):
    with pytest.raises(imaplib.IMAP4.error, match="out of range"):
        selected.uid(cmd, *args)
    typ, _ = selected.noop()
    assert typ == "OK"


def test_repeated_ranges_resolve_once(selected):
    typ, data = selected.uid("FETCH", ",".join(["1:*"] * 6000), "(UID)")
    assert typ == "OK"
    assert len([d for d in data if d]) == 5


def test_hostile_search_is_bad_not_serverbug(selected, caplog):
    caplog.set_level(logging.ERROR)
    with pytest.raises(imaplib.IMAP4.error, match=r"\[LIMIT\] SEARCH too complex"):
        selected.search(None, *(["1:*"] * 5000))
    with pytest.raises(imaplib.IMAP4.error, match=r"\[LIMIT\]"):
        selected.search(None, "NOT " * 1000 + "ALL")
    with pytest.raises(imaplib.IMAP4.error, match=r"\[LIMIT\]"):
        selected.search(None, "(" * 1000 + "ALL" + ")" * 1000)
    assert not [r for r in caplog.records if "server_bug" in r.getMessage()]
    typ, data = selected.search(None, "ALL")
    assert typ == "OK" and data[0].split() == [b"1", b"2", b"3", b"4", b"5"]


def test_append_before_login_is_refused_before_the_continuation(env):
    import socket

    with socket.create_connection(("127.0.0.1", env.plain_port), timeout=10) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"* OK")
        s.sendall(b"a APPEND INBOX {100000}\r\n")
        assert f.readline() == b"a BAD Command not valid in this state.\r\n"
        s.sendall(b"b NOOP\r\n")  # nothing was read as literal data
        assert f.readline().startswith(b"b OK")
