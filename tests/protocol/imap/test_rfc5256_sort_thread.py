"""RFC 5256 SORT and THREAD over the wire (forms of the RFC's examples)."""

from __future__ import annotations

import pytest

from tests.protocol.imap.conftest import Raw

pytestmark = pytest.mark.protocol


def _m(subject: str, date: str, frm: str, mid: str, refs: str = "", size_pad: int = 0) -> bytes:
    head = (f"From: {frm}\r\nTo: alice@esam.test\r\nSubject: {subject}\r\n"
            f"Date: {date}\r\nMessage-ID: {mid}\r\n")
    if refs:
        head += f"References: {refs}\r\n"
    return (head + "\r\n" + "x" * size_pad + "body\r\n").encode()


@pytest.fixture
def r(env) -> Raw:
    env.deliver(_m("Hello", "Mon, 7 Feb 1994 21:52:25 -0800", "Zed <zed@ex.org>", "<1@x>",
                   size_pad=500))
    env.deliver(_m("Re: Hello", "Tue, 8 Feb 1994 10:00:00 -0800", "amy@ex.org", "<2@x>",
                   "<1@x>"))
    env.deliver(_m("[list] Another", "Sun, 6 Feb 1994 09:00:00 -0800", "Bob <bob@ex.org>",
                   "<3@x>", size_pad=100))
    env.deliver(_m("Re: Re: Hello", "Wed, 9 Feb 1994 10:00:00 -0800", "carl@ex.org", "<4@x>",
                   "<1@x> <2@x>"))
    c = Raw.tls(env)
    c.login()
    c.cmd(b"s", b"SELECT INBOX")
    return c


def test_capabilities(r):
    caps = r.cmd(b"c", b"CAPABILITY")[0].split()
    assert {b"SORT", b"THREAD=ORDEREDSUBJECT", b"THREAD=REFERENCES"} <= set(caps)


def test_sort(r):
    # RFC 5256 §4: C: A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994   S: * SORT 2 84 882
    assert r.cmd(b"A282", b"SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994")[0] == b"* SORT 3 1 2 4"
    assert r.cmd(b"a", b"SORT (DATE) UTF-8 ALL")[0] == b"* SORT 3 1 2 4"
    assert r.cmd(b"b", b"SORT (REVERSE DATE) UTF-8 ALL")[0] == b"* SORT 4 2 1 3"
    assert r.cmd(b"c", b"SORT (FROM) UTF-8 ALL")[0] == b"* SORT 2 3 4 1"
    assert r.cmd(b"d", b"SORT (REVERSE SIZE) US-ASCII NOT FROM amy")[0] == b"* SORT 1 3 4"
    assert r.cmd(b"e", b"UID SORT (ARRIVAL) UTF-8 2:4")[0] == b"* SORT 2 3 4"
    assert r.cmd(b"f", b"SORT (SUBJECT REVERSE DATE) UTF-8 ALL")[0] == b"* SORT 3 4 2 1"
    assert r.cmd(b"g", b"SORT (BOGUS) UTF-8 ALL")[-1].startswith(b"g BAD")
    assert r.cmd(b"h", b"SORT (DATE) KOI8-R ALL")[-1].startswith(b"h NO [BADCHARSET")


def test_thread(r):
    # RFC 5256 §4: C: A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000
    #              S: * THREAD (166)(167)(168)(169)(172)(170)(171)(173)(174 (175)(176)...
    assert r.cmd(b"A283", b"THREAD ORDEREDSUBJECT UTF-8 BEFORE 5-MAR-2000")[0] == b"* THREAD"
    assert r.cmd(b"A284", b"THREAD ORDEREDSUBJECT UTF-8 ALL")[0] == b"* THREAD (3)(1 (2)(4))"
    assert r.cmd(b"A285", b"THREAD REFERENCES UTF-8 ALL")[0] == b"* THREAD (3)(1 2 4)"
    assert r.cmd(b"A286", b"UID THREAD REFERENCES UTF-8 NOT 3")[0] == b"* THREAD (1 2 4)"
    assert r.cmd(b"x", b"THREAD X-NONE UTF-8 ALL")[-1].startswith(b"x BAD")


def test_sort_display(env, r):
    # RFC 5957: DISPLAYFROM sorts by the display name, else the address
    #   (Zed <zed@ex.org>, amy@ex.org, Bob <bob@ex.org>, carl@ex.org, Aaron <zz@ex.org>)
    env.deliver(_m("x", "Thu, 10 Feb 1994 10:00:00 -0800", "Aaron <zz@ex.org>", "<5@x>"))
    r.cmd(b"n", b"NOOP")
    assert b"SORT=DISPLAY" in r.cmd(b"c", b"CAPABILITY")[0].split()
    assert r.cmd(b"f", b"SORT (FROM) UTF-8 ALL")[0] == b"* SORT 2 3 4 1 5"
    assert r.cmd(b"a", b"SORT (DISPLAYFROM) UTF-8 ALL")[0] == b"* SORT 5 2 3 4 1"
    assert r.cmd(b"b", b"SORT (REVERSE DISPLAYFROM) UTF-8 ALL")[0] == b"* SORT 1 4 3 2 5"
