"""RFC 3516 BINARY: decoded parts (BINARY[], BINARY.PEEK[], BINARY.SIZE[]) and literal8."""

from __future__ import annotations

import base64

import pytest

from tests.protocol.imap.conftest import Raw

pytestmark = pytest.mark.protocol

PAYLOAD = bytes(range(256)) * 4  # every octet, NUL included
MSG = (
    b"From: a@b.c\r\nSubject: bin\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="z"\r\n\r\n'
    b"--z\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"caf=C3=A9 =3D ok\r\n"
    b"--z\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(PAYLOAD).replace(b"\n", b"\r\n")
    + b"--z\r\nContent-Type: application/x-odd\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
    b"begin 644 x\r\n--z--\r\n"
)


@pytest.fixture
def r(env) -> Raw:
    env.deliver(MSG)
    c = Raw.tls(env)
    c.login()
    c.cmd(b"s", b"SELECT INBOX")
    return c


def test_capability(r):
    assert b"BINARY" in r.cmd(b"c", b"CAPABILITY")[0].split()


def test_decoded_parts_and_sizes(r):
    # RFC 3516 §4.2: C: A003 FETCH 1 (BINARY.PEEK[1]) S: * 1 FETCH (BINARY[1] ~{...}
    out = r.cmd(b"a", b"FETCH 1 (BINARY.PEEK[1])")
    assert out[0] == b"* 1 FETCH (BINARY[1] {10}\r\ncaf\xc3\xa9 = ok)"
    out = r.cmd(b"b", b"FETCH 1 (BINARY.PEEK[2])")
    assert out[0] == b"* 1 FETCH (BINARY[2] ~{1024}\r\n" + PAYLOAD + b")"  # NUL: literal8
    out = r.cmd(b"c", b"FETCH 1 (BINARY.SIZE[2] BINARY.SIZE[1])")
    assert out[0] == b"* 1 FETCH (BINARY.SIZE[2] 1024 BINARY.SIZE[1] 10)"
    out = r.cmd(b"d", b"FETCH 1 (BINARY.PEEK[2]<256.4>)")
    assert out[0] == b"* 1 FETCH (BINARY[2]<256> ~{4}\r\n\x00\x01\x02\x03)"
    assert b"\\Seen" not in r.cmd(b"f", b"FETCH 1 FLAGS")[0]
    out = r.cmd(b"e", b"FETCH 1 (BINARY[1])")
    assert b"\\Seen" in out[0]  # not PEEK: sets \Seen like BODY[]
    assert r.cmd(b"g", b"FETCH 1 (BINARY[9])")[0] == b"* 1 FETCH (BINARY[9] NIL)"
    assert r.cmd(b"h", b"FETCH 1 (BINARY[1.HEADER])")[-1].startswith(b"h BAD")


def test_unknown_cte(r):
    # RFC 3516 §4.3: NO [UNKNOWN-CTE]
    assert r.cmd(b"a", b"FETCH 1 (BINARY.PEEK[3])")[-1].startswith(b"a NO [UNKNOWN-CTE]")


def test_append_literal8(env):
    r = Raw.tls(env)
    r.login()
    data = b"Subject: nul\r\n\r\nbefore\x00after\r\n"
    r.send(b"a APPEND INBOX ~{%d}\r\n" % len(data))
    assert r.line().startswith(b"+")
    r.send(data + b"\r\n")
    assert r.until(b"a")[-1].startswith(b"a OK [APPENDUID")
    r.cmd(b"s", b"SELECT INBOX")
    assert r.cmd(b"b", b"FETCH 1 (BINARY.PEEK[])")[0] == (
        b"* 1 FETCH (BINARY[] ~{%d}\r\n" % len(data) + data + b")")
