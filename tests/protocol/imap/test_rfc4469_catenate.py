"""RFC 4469 CATENATE: APPEND a message built from TEXT literals and IMAP URLs (RFC 5092)
naming messages, or their parts, in the user's own mailboxes.  All or nothing: a bad URL
is ``NO [BADURL url]``, a result over the message cap ``NO [TOOBIG]``, and nothing is
stored; with MULTIAPPEND none of the messages stays.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.protocol.imap.conftest import Raw

pytestmark = pytest.mark.protocol

BOUNDARY = b"--------------030308070208000400050907"
DRAFT = (b"From: Alice <alice@esam.test>\r\nTo: Bob <bob@ex.org>\r\nSubject: Draft\r\n"
         b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n boundary=\"" + BOUNDARY[2:]
         + b"\"\r\n\r\nThis is a multi-part message in MIME format.\r\n"
         + BOUNDARY + b"\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
         b"The first part.\r\n"
         + BOUNDARY + b"\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
         b"The second part.\r\n" + BOUNDARY + b"--\r\n")
ATTACHED = b"From: Carol <carol@ex.org>\r\nSubject: Forward me\r\n\r\nForwarded body.\r\n"


def _header_of(data: bytes) -> bytes:
    return data[: data.index(b"\r\n\r\n") + 4]


def _send(r: Raw, tag: bytes, pieces: list[bytes | tuple[bytes, bool]]) -> list[bytes]:
    """Send an APPEND made of text pieces and literals ((data, nonsync) tuples)."""
    r.send(tag + b" ")
    for piece in pieces:
        if isinstance(piece, bytes):
            r.send(piece)
            continue
        data, nonsync = piece
        if nonsync:
            r.send(b"{%d+}\r\n" % len(data) + data)
            continue
        r.send(b"{%d}\r\n" % len(data))
        line = r.line()
        if not line.startswith(b"+"):
            return [line, *([] if line.startswith(tag + b" ") else r.until(tag))]
        r.send(data)
    r.send(b"\r\n")
    return r.until(tag)


@pytest.fixture
def r(env) -> Raw:
    c = Raw.tls(env)
    c.login()
    c.cmd(b"cr", b"CREATE Drafts")
    out = c.cmd(b"a1", b"APPEND Drafts (\\Seen \\Draft) {%d+}\r\n" % len(DRAFT) + DRAFT)
    assert b"[APPENDUID " in out[-1], out
    out = c.cmd(b"a2", b"APPEND Drafts {%d+}\r\n" % len(ATTACHED) + ATTACHED)
    assert b"[APPENDUID " in out[-1], out
    return c


def _uidvalidity(r: Raw, box: bytes = b"Drafts") -> int:
    line = r.cmd(b"st", b"STATUS " + box + b" (UIDVALIDITY)")[0]
    m = re.search(rb"UIDVALIDITY (\d+)", line)
    assert m, line
    return int(m.group(1))


def _messages(r: Raw, box: bytes = b"Drafts") -> int:
    line = r.cmd(b"st", b"STATUS " + box + b" (MESSAGES)")[0]
    m = re.search(rb"MESSAGES (\d+)", line)
    assert m, line
    return int(m.group(1))


def _fetch(r: Raw, uid: int, box: bytes = b"Drafts") -> tuple[bytes, bytes]:
    """(FLAGS/INTERNALDATE part of the response, message bytes)."""
    r.cmd(b"ex", b"EXAMINE " + box)
    out = r.cmd(b"fe", b"UID FETCH %d (FLAGS INTERNALDATE BODY.PEEK[])" % uid)
    line = out[0]
    head, _, rest = line.partition(b"\r\n")
    m = re.search(rb"\{(\d+)\}$", head)
    assert m, out
    return head, rest[: int(m.group(1))]


def _spooled(env) -> list[str]:
    """Spool files left in the user's tmp/ (their removal runs just after the reply)."""
    deadline = time.monotonic() + 5.0
    while True:
        left = [p.name for p in env.store.user("alice").spool_dir().iterdir()
                if p.name.startswith("esam-append")]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def test_capability(r):
    assert b"CATENATE" in r.cmd(b"c", b"CAPABILITY")[0].split()


def test_rfc_example(r):
    # RFC 4469 §5: A003 APPEND Drafts (\Seen \Draft $MDNSent) CATENATE
    #   (URL "/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER" TEXT {42} ...
    #    URL ".../;UID=20/;section=1.MIME" URL ".../;UID=20/;section=1" TEXT {42} ...
    #    URL "/Drafts;UIDVALIDITY=385759045/;UID=30" TEXT {44} ...)
    v = _uidvalidity(r)
    base = b"/Drafts;UIDVALIDITY=%d/;UID=1" % v
    t1 = b"\r\n" + BOUNDARY + b"\r\n"
    t3 = b"\r\n" + BOUNDARY + b"--\r\n"
    out = _send(r, b"A003", [
        b"APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (URL \"" + base
        + b"/;section=HEADER\" TEXT ", (t1, False),
        b" URL \"" + base + b"/;section=1.MIME\" URL \"" + base + b"/;section=1\" TEXT ",
        (t1, False),
        b" URL \"/Drafts;UIDVALIDITY=%d/;UID=2\" TEXT " % v, (t3, False), b")",
    ])
    m = re.fullmatch(rb"A003 OK \[APPENDUID (\d+) 3\] APPEND completed\.", out[-1])
    assert m and int(m.group(1)) == v, out
    head, data = _fetch(r, 3)
    part1_mime = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    assert data == (_header_of(DRAFT) + t1 + part1_mime + b"The first part." + t1
                    + ATTACHED + t3)
    assert b"\\Seen" in head and b"\\Draft" in head and b"$MDNSent" in head


def test_url_forms(env, r):
    v = _uidvalidity(r)
    urls = [
        b"imap://alice@esam.test/Drafts;UIDVALIDITY=%d/;UID=2" % v,
        b"imap://alice%40esam.test@mail.esam.test:143/Drafts/;UID=2/;SECTION=TEXT",
        b"/Drafts/;UID=1/;SECTION=2",
        b"/Drafts/;UID=1/;SECTION=HEADER.FIELDS%20(SUBJECT)",
        b"/Drafts/;UID=2/;PARTIAL=6.5",
        b"imap://ALICE;AUTH=*@esam.test/%44rafts/;uid=2/;section=TEXT/;partial=0.9",
    ]
    pieces: list[bytes | tuple[bytes, bool]] = [b"APPEND INBOX CATENATE ("]
    for u in urls:
        pieces.append(b" URL \"" + u + b"\" TEXT ")
        pieces.append((b"|", True))
    pieces.append(b")")
    out = _send(r, b"A1", pieces)
    assert out[-1].startswith(b"A1 OK [APPENDUID"), out
    _, data = _fetch(r, 1, b"INBOX")
    assert data == (ATTACHED + b"|" + b"Forwarded body.\r\n" + b"|" + b"The second part."
                    + b"|" + b"Subject: Draft\r\n\r\n" + b"|" + b"Carol" + b"|" + b"Forwarded"
                    + b"|")


def test_bad_urls_store_nothing(env, r):
    v = _uidvalidity(r)
    env.store.user("bob").folder("INBOX").append(ATTACHED)
    bad = [
        b"/Drafts;UIDVALIDITY=%d/;UID=1" % (v + 1),  # UIDVALIDITY changed
        b"/Drafts/;UID=99",  # no such message
        b"/Drafts/;UID=1/;SECTION=7",  # no such part
        b"/Drafts/;UID=1/;SECTION=BOGUS",
        b"/Nope/;UID=1",  # no such mailbox
        b"imap://bob@esam.test/INBOX/;UID=1",  # another user's mailbox
        b"imap://esam.test/Drafts/;UID=1",  # anonymous
        b"/Drafts/;UID=1/;URLAUTH=anonymous:internal:91354a473744909de610943775f92038",
        b"http://esam.test/Drafts/;UID=1",
        b"/Drafts",  # a mailbox, not a message
        b"/Drafts/;UID=0",
        b"/../Drafts/;UID=1",
    ]
    for i, url in enumerate(bad):
        tag = b"B%d" % i
        out = _send(r, tag, [b"APPEND Drafts CATENATE (TEXT ", (b"x\r\n", True),
                             b" URL \"" + url + b"\" TEXT ", (b"y\r\n", False), b")"])
        assert out[-1].startswith(tag + b" NO [BADURL " + url + b"] "), (url, out)
    assert _messages(r) == 2
    assert r.cmd(b"n", b"NOOP")[-1] == b"n OK NOOP completed."  # still in sync


def test_missing_destination_is_trycreate_first(r):
    # RFC 3501 §6.3.11: TRYCREATE for a missing mailbox, before any URL is looked at
    out = _send(r, b"D1", [b"APPEND Nope CATENATE (URL \"/Drafts/;UID=99\" TEXT ",
                           (b"x", True), b")"])
    assert out[-1].startswith(b"D1 NO [TRYCREATE]"), out


def test_badurl_text_is_safe(r):
    out = _send(r, b"B1", [b"APPEND Drafts CATENATE (URL \"/x]y\" TEXT ", (b"a", True), b")"])
    assert out[-1].startswith(b"B1 NO [BADURL /xy] "), out


def test_syntax(r):
    for i, body in enumerate([b"CATENATE ()", b"CATENATE (TEXT)", b"CATENATE (URL)",
                              b"CATENATE (BOGUS \"x\")", b"CATENATE TEXT"
                              ]):
        tag = b"S%d" % i
        out = r.cmd(tag, b"APPEND Drafts " + body)
        assert out[-1].startswith(tag + b" BAD"), (body, out)
    assert _messages(r) == 2


def test_multiappend_with_catenate(r):
    # RFC 4469 §4: CATENATE is an append-data of RFC 3502's APPEND: mix them
    v = _uidvalidity(r)
    plain = b"Subject: plain\r\n\r\nplain\r\n"
    out = _send(r, b"M1", [
        b"APPEND Drafts (\\Seen) CATENATE (URL \"/Drafts;UIDVALIDITY=%d/;UID=2\") " % v,
        (plain, False), b" (\\Flagged) \" 7-Feb-1994 22:43:04 -0800\" CATENATE (TEXT ",
        (b"Subject: cat\r\n\r\n", True), b" URL \"/Drafts/;UID=1/;SECTION=1\")",
    ])
    assert re.fullmatch(rb"M1 OK \[APPENDUID \d+ 3:5\] APPEND completed\.", out[-1]), out
    assert _fetch(r, 3)[1] == ATTACHED
    assert _fetch(r, 4)[1] == plain
    head, data = _fetch(r, 5)
    assert data == b"Subject: cat\r\n\r\nThe first part."
    assert b"\\Flagged" in head and b'INTERNALDATE "08-Feb-1994 06:43:04 +0000"' in head
    # one bad URL among them: none of the three stays
    out = _send(r, b"M2", [
        b"APPEND Drafts CATENATE (URL \"/Drafts/;UID=2\") ", (plain, True),
        b" CATENATE (URL \"/Drafts/;UID=77\")",
    ])
    assert out[-1].startswith(b"M2 NO [BADURL /Drafts/;UID=77]"), out
    assert _messages(r) == 5


def test_toobig(env, r):
    # the result is capped like any APPEND (the fixture's cap: 1 MiB), nothing is stored
    big = b"Subject: big\r\n\r\n" + b"b" * (400 * 1024) + b"\r\n"
    r.cmd(b"a", b"APPEND Drafts {%d+}\r\n" % len(big) + big)
    url = b" URL \"/Drafts/;UID=3\""
    out = _send(r, b"T1", [b"APPEND Drafts CATENATE (" + url * 3 + b")"])
    assert out[-1].startswith(b"T1 NO [TOOBIG]"), out
    assert _messages(r) == 3
    # a spooled TEXT part and a spooled result, then a bad URL: no file is left behind
    out = _send(r, b"T3", [b"APPEND Drafts CATENATE (TEXT ", (big, False), url
                           + b" URL \"/Drafts/;UID=9\")"])
    assert out[-1].startswith(b"T3 NO [BADURL /Drafts/;UID=9]"), out
    r.cmd(b"n", b"NOOP")
    assert _spooled(env) == []
    out = _send(r, b"T2", [b"APPEND Drafts CATENATE (" + url * 2 + b")"])
    assert out[-1].startswith(b"T2 OK"), out
    assert len(_fetch(r, 4)[1]) == 2 * len(big)


def test_spooled_text_parts(env, r):
    # TEXT literals above the spool threshold (64 KiB) go to a file as they arrive
    big = b"z" * (200 * 1024)
    out = _send(r, b"P1", [b"APPEND Drafts CATENATE (TEXT ", (b"Subject: s\r\n\r\n", False),
                           b" TEXT ", (big, False), b" URL \"/Drafts/;UID=2/;SECTION=TEXT\""
                           b" TEXT ", (big, True), b")"])
    assert out[-1].startswith(b"P1 OK"), out
    assert _fetch(r, 3)[1] == b"Subject: s\r\n\r\n" + big + b"Forwarded body.\r\n" + big
    assert _spooled(env) == []


def test_empty_result(r):
    out = _send(r, b"E1", [b"APPEND Drafts CATENATE (TEXT ", (b"", True), b")"])
    assert out[-1].startswith(b"E1 NO"), out
    assert _messages(r) == 2


def test_catenate_before_login_is_refused(env):
    c = Raw.tls(env)
    out = c.cmd(b"x", b"APPEND INBOX CATENATE (URL \"/INBOX/;UID=1\")")
    assert out[-1].startswith(b"x BAD"), out
