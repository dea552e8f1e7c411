"""RFC 5322 header parsing behind ENVELOPE, BODY[HEADER.FIELDS] and SEARCH.

A line in the header block without a colon is not a field; the whitespace-led
lines after it belong to it, not to the field before it.
"""

from __future__ import annotations

import pytest

from tests.protocol.imap.conftest import Raw

pytestmark = pytest.mark.protocol

BROKEN = (
    b"From: list-request@zzz.org\r\nTo: ppp@zzz.org\r\nSubject: digest\r\n"
    b"Message-ID: <digest.1@zzz.org>\r\n"
    b"Send Ppp mailing list submissions to\r\n"
    b"\tppp@zzz.org\r\n"
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\nbody\r\n"
)


def test_colonless_line_is_not_folded_into_previous_field(env):
    env.deliver(BROKEN)
    r = Raw.tls(env)
    r.login()
    r.cmd(b"s", b"SELECT INBOX")
    out = r.cmd(b"f", b"FETCH 1 (ENVELOPE)")
    assert b'"<digest.1@zzz.org>")' in out[0], out
    assert b"Send Ppp" not in out[0]
    assert b'"Mon, 7 Feb 1994 21:52:25 -0800"' in out[0]
    out = r.cmd(b"g", b"FETCH 1 (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    assert out[0].endswith(b"\r\nMessage-ID: <digest.1@zzz.org>\r\n\r\n)"), out
    assert r.cmd(b"h", b'SEARCH HEADER Message-ID "submissions"')[0] == b"* SEARCH"
