"""RFC 3501 §9 atoms: ``[`` is an ATOM-CHAR (only ``]`` is a resp-special).

Brackets group only the section of a FETCH attribute (``BODY[...]``,
``BODY.PEEK[...]``, ``BINARY[...]``); elsewhere ``[`` is an ordinary character.
"""

from __future__ import annotations

import pytest

from tests.protocol.imap.conftest import Raw

pytestmark = pytest.mark.protocol


def test_bracket_in_mailbox_atom(env):
    r = Raw.tls(env)
    r.login()
    assert r.cmd(b"a", b"CREATE foo[bar")[-1] == b"a OK CREATE completed."
    out = r.cmd(b"b", b'LIST "" foo[bar')
    assert out[0] == b'* LIST (\\HasNoChildren) "/" "foo[bar"', out
    assert r.cmd(b"c", b"SELECT foo[bar")[-1].startswith(b"c OK")


def test_bracket_in_keyword(env):
    env.deliver(b"Subject: x\r\n\r\nbody\r\n")
    r = Raw.tls(env)
    r.login()
    r.cmd(b"s", b"SELECT INBOX")
    out = r.cmd(b"a", b"STORE 1 +FLAGS ($tag[1)")
    assert out[-1] == b"a OK STORE completed.", out
    assert any(b"$tag[1" in x and b"FETCH" in x for x in out)
    assert r.cmd(b"b", b"SEARCH KEYWORD $tag[1")[0] == b"* SEARCH 1"


def test_fetch_sections_still_group(env):
    env.deliver(b"Subject: x\r\nFrom: a@b.c\r\n\r\nbody\r\n")
    r = Raw.tls(env)
    r.login()
    r.cmd(b"s", b"SELECT INBOX")
    out = r.cmd(b"a", b"FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]<0.9>)")
    assert out[0] == b"* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT FROM)]<0> {9}\r\nSubject: )"
    assert r.cmd(b"b", b"FETCH 1 (BODY.PEEK[HEADER)")[-1].startswith(b"b BAD")
