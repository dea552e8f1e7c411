"""RFC 3501 §6.4.5: part numbers continue through message/rfc822 parts.

Every part of an embedded message has a number below the part that holds it
(``2.1``, ``2.1.1`` ...); a non-multipart message has exactly one part, ``1``.
"""

from __future__ import annotations

import pytest

from tests.protocol.imap.conftest import Raw

pytestmark = pytest.mark.protocol

INNER_MULTI = (
    b"From: Dave <dave@ex.org>\r\nSubject: inner multi\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="in"\r\n\r\n'
    b"--in\r\nContent-Type: text/plain\r\n\r\ninner plain\r\n"
    b"--in\r\nContent-Type: text/html\r\n\r\n<p>inner html</p>\r\n--in--\r\n"
)
INNER_FLAT = b"From: Erin <erin@ex.org>\r\nSubject: inner flat\r\n\r\nflat body line\r\n"


def _outer(*parts: bytes) -> bytes:
    out = (b"From: Carol <carol@ex.org>\r\nTo: alice@esam.test\r\nSubject: outer\r\n"
           b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="out"\r\n\r\n')
    for p in parts:
        out += b"--out\r\n" + p
    return out + b"--out--\r\n"


def _fetch(env, data: bytes, section: bytes) -> list[bytes]:
    env.deliver(data)
    r = Raw.tls(env)
    r.login()
    r.cmd(b"s", b"SELECT INBOX")
    return r.cmd(b"f", b"FETCH 1 (BODY.PEEK[" + section + b"])")


def _body(out: list[bytes]) -> bytes:
    assert out[-1].startswith(b"f OK"), out
    line = out[0]
    assert b"NIL)" not in line.split(b"\r\n")[0], out
    _head, _, rest = line.partition(b"\r\n")
    return rest[: -1]  # the closing ")"


def test_part_of_embedded_flat_message(env):
    data = _outer(b"Content-Type: text/plain\r\n\r\nfirst\r\n",
                  b"Content-Type: message/rfc822\r\n\r\n" + INNER_FLAT)
    # the CRLF before the next delimiter belongs to the delimiter (RFC 2046 §5.1.1)
    assert _body(_fetch(env, data, b"2.1")) == b"flat body line"


def test_part_of_embedded_multipart_message(env):
    data = _outer(b"Content-Type: message/rfc822\r\n\r\n" + INNER_MULTI)
    out = _fetch(env, data, b"1.2")
    assert _body(out) == b"<p>inner html</p>"


def test_three_levels_through_two_messages(env):
    # part 1 is a message whose single body part is again a message
    middle = (b"From: Fred <fred@ex.org>\r\nSubject: middle\r\n"
              b"Content-Type: message/rfc822\r\n\r\n" + INNER_FLAT)
    data = _outer(b"Content-Type: message/rfc822\r\n\r\n" + middle)
    r_out = _fetch(env, data, b"1.1")
    assert _body(r_out) == INNER_FLAT[:-2]
    r = Raw.tls(env)
    r.login()
    r.cmd(b"s", b"SELECT INBOX")
    assert _body(r.cmd(b"f", b"FETCH 1 (BODY.PEEK[1.1.1])")) == b"flat body line"
    assert _body(r.cmd(b"f", b"FETCH 1 (BODY.PEEK[1.1.HEADER])")).startswith(b"From: Erin")


def test_part_beyond_a_leaf_is_nil(env):
    data = _outer(b"Content-Type: text/plain\r\n\r\nfirst\r\n")
    out = _fetch(env, data, b"1.1")
    assert out[0].endswith(b"NIL)"), out
