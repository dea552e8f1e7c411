"""RFC 3501 §6.4.4 SEARCH FROM/TO/CC/BCC: the key matches the address as parsed.

Comments and folding whitespace inside an address are not part of it, so
``FROM user-from@domain.org`` finds ``<user-from (comment)@ (comment) domain.org>``
(Dovecot matches the same way); the display name still matches too.
"""

from __future__ import annotations

import pytest

from tests.protocol.imap.conftest import Raw

pytestmark = pytest.mark.protocol


def _msg(frm: bytes, to: bytes = b"alice@esam.test", cc: bytes = b"") -> bytes:
    head = b"From: " + frm + b"\r\nTo: " + to + b"\r\n"
    if cc:
        head += b"Cc: " + cc + b"\r\n"
    return head + b"Subject: s\r\n\r\nbody\r\n"


@pytest.fixture
def r(env):
    env.deliver(_msg(b"Real Name <user-from (comment)@ (comment) domain.org>"))
    env.deliver(_msg(b"other@domain.org", to=b"\"Group Person\" <user-to@ (c) dom.example>",
                     cc=b"<cc-user\r\n @domain.net>"))
    env.deliver(_msg(b"=?utf-8?q?J=C3=BCrgen?= <juergen@ex.org>"))
    c = Raw.tls(env)
    c.login()
    c.cmd(b"s", b"SELECT INBOX")
    return c


def test_from_matches_address_without_comments(r):
    assert r.cmd(b"a", b"SEARCH FROM user-from@domain.org")[0] == b"* SEARCH 1"
    assert r.cmd(b"b", b'SEARCH FROM "Real Name"')[0] == b"* SEARCH 1"
    assert r.cmd(b"c", b"SEARCH FROM domain.org")[0] == b"* SEARCH 1 2"


def test_to_and_cc_match_parsed_addresses(r):
    assert r.cmd(b"a", b"SEARCH TO user-to@dom.example")[0] == b"* SEARCH 2"
    assert r.cmd(b"b", b"SEARCH CC cc-user@domain.net")[0] == b"* SEARCH 2"


def test_decoded_display_name_matches(r):
    r.send(b"d SEARCH CHARSET UTF-8 FROM {7}\r\n")
    assert r.line().startswith(b"+")
    r.send("Jürgen".encode() + b"\r\n")
    assert r.until(b"d")[0] == b"* SEARCH 3"


def test_comments_are_not_part_of_the_address(env):
    # RFC 3501 §6.4.4: FROM matches "the envelope structure's FROM field"; a comment (RFC 5322
    # CFWS) is in neither the address nor, after an angle-addr, the display name.  The legacy
    # "addr-spec (Full Name)" form keeps its comment as the name.  (imaptest search-addresses)
    env.deliver(_msg(b"<user-from (comment)@ (comment) domain.org> (UserFrom)"))
    env.deliver(_msg(b"user-from@domain.org (UserFrom)"))
    env.deliver(_msg(b"UserFrom <user-from@domain.org>"))
    c = Raw.tls(env)
    c.login()
    c.cmd(b"s", b"SELECT INBOX")
    assert c.cmd(b"a", b"SEARCH FROM userfrom")[0] == b"* SEARCH 2 3"
    assert c.cmd(b"b", b"SEARCH FROM comment")[0] == b"* SEARCH"
    assert c.cmd(b"c", b"SEARCH FROM user-from@domain.org")[0] == b"* SEARCH 1 2 3"
    env1 = c.cmd(b"e", b"FETCH 1 ENVELOPE")[0]
    assert b'((NIL NIL "user-from" "domain.org"))' in env1, env1
    assert b'(("UserFrom" NIL "user-from" "domain.org"))' in c.cmd(b"f", b"FETCH 2 ENVELOPE")[0]


def test_group_names_match(env):
    env.deliver(_msg(b"a@b.org", to=b"groupname: groupuser1@domain.org, groupuser2@domain.org;"))
    c = Raw.tls(env)
    c.login()
    c.cmd(b"s", b"SELECT INBOX")
    assert c.cmd(b"a", b"SEARCH TO groupname")[0] == b"* SEARCH 1"
    assert c.cmd(b"b", b"SEARCH TO groupuser2")[0] == b"* SEARCH 1"
