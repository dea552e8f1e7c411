"""mime.py: ENVELOPE/BODYSTRUCTURE/sections, checked against the stdlib email package."""

from __future__ import annotations

import email
import email.policy
import glob
import json
import os

import pytest

from esam_mail.imap import mime
from esam_mail.imap.parser import parse_section

CORPUS = sorted(glob.glob(os.path.join(
    os.path.dirname(email.__file__), "..", "test", "test_email", "data", "msg_*.txt")))


def _walk(ent: mime.Entity):
    if ent.hstart == ent.end and ent.headers.fields == []:
        # An empty body part between two adjacent delimiters (msg_37): RFC 2046
        # grammar makes it a part; the stdlib drops it.  IMAP shows it as an
        # empty TEXT/PLAIN part, so only the comparison skips it.
        return
    yield ent
    for c in ent.children:
        yield from _walk(c)
    if ent.message is not None:
        yield from _walk(ent.message)


def _std_walk(m: email.message.Message):
    yield m
    ctype = m.get_content_type()
    if ctype.startswith("message/") and ctype != "message/rfc822":
        return  # the stdlib parses delivery-status etc. as headers; IMAP: opaque leaf
    if m.is_multipart():
        for p in m.get_payload():
            yield from _std_walk(p)


@pytest.mark.skipif(not CORPUS, reason="stdlib test_email corpus not installed")
@pytest.mark.parametrize("path", CORPUS, ids=[os.path.basename(p) for p in CORPUS])
def test_corpus_against_stdlib_email(path):
    with open(path, "rb") as f:
        data = f.read()
    ours = list(_walk(mime.parse_message(data)))
    std = list(_std_walk(email.message_from_bytes(data, policy=email.policy.compat32)))
    if any(m.defects for m in std):
        # malformed on purpose (the corpus tests recovery): only require a sane parse
        meta = mime.analyse(data)
        assert meta.bodystructure.startswith(b"(") and meta.size == len(data)
        return
    assert len(ours) == len(std)
    for o, s in zip(ours, std, strict=True):
        assert f"{o.ctype}/{o.subtype}" == s.get_content_type()
        if o.explicit_type:
            std_params = [(k.lower(), v) for k, v in (s.get_params() or [])[1:]]
            std_params = [(k, email.utils.collapse_rfc2231_value(v)) for k, v in std_params]
            assert o.params == std_params  # names folded, values with their case
        if not s.is_multipart():
            payload = s.get_payload(decode=False)
            if isinstance(payload, str):
                raw = data[o.bstart:o.end].decode("latin-1")
                assert raw.rstrip("\r\n") == payload.rstrip("\r\n")
    meta = mime.analyse(data)
    assert json.loads(json.dumps(meta.to_json())) == meta.to_json()
    assert mime.MessageMeta.from_json(json.loads(json.dumps(meta.to_json()))) == meta


NESTED = (
    b"From: \"Doe, John\" <john@ex.org>, undisclosed-recipients:;\r\n"
    b"To: Team: a@ex.org, \"B B\" <b@ex.org>;, c@ex.org (Cee)\r\n"
    b"Subject: =?ISO-8859-1?Q?Caf=E9?=\r\nMessage-ID: <m1@ex.org>\r\n"
    b"Content-Type: multipart/mixed; boundary=outer\r\n\r\n"
    b"--outer\r\nContent-Type: text/plain\r\n\r\nline1\r\nline2\r\n"
    b"--outer\r\nContent-Type: message/rfc822\r\n\r\n"
    b"From: inner@ex.org\r\nSubject: inner\r\n"
    b"Content-Type: multipart/alternative; boundary=\"In Ner\"\r\n\r\n"
    b"--In Ner\r\nContent-Type: text/plain; charset=\"UTF-8\"\r\n\r\nhi\r\n"
    b"--In Ner\r\nContent-Type: text/html\r\n\r\n<b>hi</b>\r\n--In Ner--\r\n"
    b"--outer\r\nContent-Type: application/octet-stream;\r\n"
    b" name*0*=utf-8''%D0%BE%D1%82%D1%87%D1%91%D1%82;\r\n name*1=\".PDF\"\r\n"
    b"Content-Disposition: attachment; filename*=UTF-8''Report%20Q1.PDF\r\n"
    b"Content-Language: en, de\r\nContent-Location: http://ex.org/x\r\n\r\nAAAA\r\n"
    b"--outer--\r\nepilogue\r\n"
)


def test_envelope_groups_quotes_and_raw_encoded_words():
    env = mime.envelope(NESTED)
    assert b'"=?ISO-8859-1?Q?Caf=E9?="' in env  # RFC 3501: not decoded
    assert b'(("Doe, John" NIL "john" "ex.org")(NIL NIL "undisclosed-recipients" NIL)' \
           b'(NIL NIL NIL NIL))' in env
    assert b'((NIL NIL "Team" NIL)(NIL NIL "a" "ex.org")("B B" NIL "b" "ex.org")' \
           b'(NIL NIL NIL NIL)("Cee" NIL "c" "ex.org"))' in env
    assert env.endswith(b'NIL "<m1@ex.org>")')


def test_bodystructure_nested_message_and_rfc2231():
    bs = mime.bodystructure(NESTED)
    assert bs.startswith(b'(("TEXT" "PLAIN" NIL NIL NIL "7BIT" 12 2 ')
    assert b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" ' in bs
    assert b'"ALTERNATIVE" ("BOUNDARY" "In Ner")' in bs
    assert b'("NAME*" "utf-8\'\'%D0%BE%D1%82%D1%87%D1%91%D1%82.PDF")' in bs
    assert b'("ATTACHMENT" ("FILENAME" "Report Q1.PDF")) ("en" "de") "http://ex.org/x"' in bs
    assert bs.endswith(b'"MIXED" ("BOUNDARY" "outer") NIL NIL NIL)')
    body = mime.bodystructure(NESTED, extended=False)
    assert b"ATTACHMENT" not in body and body.endswith(b'"MIXED")')
    ent = mime.parse_message(NESTED)
    assert ent.children[2].param("name") == "отчёт.PDF"


def test_message_rfc822_lines_and_size():
    ent = mime.parse_message(NESTED)
    part = ent.children[1]
    inner = NESTED[part.bstart:part.end]
    assert inner.startswith(b"From: inner@ex.org") and inner.endswith(b"--In Ner--")
    bs = mime.bodystructure(NESTED)
    assert b'"7BIT" %d (' % len(inner) in bs
    lines = inner.count(b"\n") + 1  # the last line has no terminator (it precedes CRLF--)
    assert b'"ALTERNATIVE" ("BOUNDARY" "In Ner") NIL NIL NIL) %d NIL NIL NIL NIL)' % lines in bs


@pytest.mark.parametrize(("spec", "expected"), [
    (b"1", b"line1\r\nline2"),
    (b"2.HEADER", b"From: inner@ex.org\r\nSubject: inner\r\n"
                  b"Content-Type: multipart/alternative; boundary=\"In Ner\"\r\n\r\n"),
    (b"2.1", b"hi"),
    (b"2.2.MIME", b"Content-Type: text/html\r\n\r\n"),
    (b"2.HEADER.FIELDS (SUBJECT)", b"Subject: inner\r\n\r\n"),
    (b"3", b"AAAA"),
    (b"HEADER.FIELDS (MESSAGE-ID)", b"Message-ID: <m1@ex.org>\r\n\r\n"),
])
def test_sections(spec, expected):
    meta = mime.analyse(NESTED)
    assert mime.section_bytes(NESTED, meta.tree, parse_section(spec)) == expected


def test_section_errors_and_single_part():
    meta = mime.analyse(NESTED)
    for spec in (b"4", b"1.1", b"1.HEADER", b"3.TEXT"):
        with pytest.raises(mime.SectionError):
            mime.section_bytes(NESTED, meta.tree, parse_section(spec))
    simple = b"Subject: s\r\n\r\nbody\r\n"
    t = mime.analyse(simple).tree
    assert mime.section_bytes(simple, t, parse_section(b"1")) == b"body\r\n"
    assert mime.section_bytes(simple, t, parse_section(b"TEXT")) == b"body\r\n"
    assert mime.section_bytes(simple, t, parse_section(b"HEADER")) == b"Subject: s\r\n\r\n"


def test_partial_is_exact():
    data = bytes(range(256)) * 10
    assert len(mime.partial(data, 0, 10)) == 10
    assert mime.partial(data, 2555, 100) == data[2555:]
    assert mime.partial(data, 5000, 10) == b""


def test_depth_cap_and_missing_boundary():
    deep = b""
    for i in range(mime.MAX_DEPTH + 5):
        deep += b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
    deep += b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    bs = mime.bodystructure(deep)
    assert b'"APPLICATION" "OCTET-STREAM"' in bs
    assert bs.count(b"MIXED") == mime.MAX_DEPTH
    nob = b"Content-Type: multipart/mixed\r\n\r\nno boundary\r\n"
    assert mime.bodystructure(nob).startswith(b'("TEXT" "PLAIN"')


def test_eight_bit_header_becomes_literal_and_lf_only_messages():
    data = "Subject: Привет\nFrom: a@b\n\nbody\nmore\n".encode()
    env = mime.envelope(data)
    assert b"{12}\r\n\xd0\x9f" in env
    bs = mime.bodystructure(data)
    assert b'"7BIT" 10 2 ' in bs


def test_search_decoding():
    meta = mime.analyse(NESTED)
    assert meta.search["subject"] == "Café"
    assert "Doe, John" in meta.search["from"]
    assert "bcc" not in meta.search
    ent = mime.parse_message(NESTED)
    assert "hi" in mime.searchable_text(NESTED, ent, headers=False)
    qp = b"Content-Type: text/plain; charset=iso-8859-1\r\n" \
         b"Content-Transfer-Encoding: quoted-printable\r\n\r\nt=E9t=E9=\r\n!\r\n"
    assert mime.searchable_text(qp, mime.parse_message(qp), headers=False).startswith("tété!")


def test_bad_content_type_trailing_semicolon_does_not_crash():
    data = b"Content-Type: text/plain; charset=utf-8;\r\n\r\nx"
    assert mime.bodystructure(data).startswith(b'("TEXT" "PLAIN" ("CHARSET" "utf-8")')


def test_header_decoding_memo_is_bounded_and_skips_long_values() -> None:
    """analyse decodes the same Subject/From names for SEARCH and SORT, so short values are
    remembered; a hostile 100 KB Subject must not be kept (issue 20)."""
    mime._decode_header_memo.cache_clear()
    short = "=?UTF-8?B?0KHRh9C10YI=?= x"
    assert mime.decode_header_text(short) == "Счет x"
    assert mime.decode_header_text(short) == "Счет x"
    assert mime._decode_header_memo.cache_info().hits == 1
    long_value = "=?UTF-8?B?0KHRh9C10YI=?= " + "y" * 100_000
    assert mime.decode_header_text(long_value).startswith("Счет y")
    assert mime._decode_header_memo.cache_info().currsize == 1
    assert mime._decode_header_memo.cache_info().maxsize <= 1024


def test_istr_quotes_printable_ascii_and_makes_literals_of_the_rest() -> None:
    assert mime.istr('a "b" \\c') == b'"a \\"b\\" \\\\c"'
    assert mime.istr("caf\u00e9") == b"{5}\r\ncaf\xc3\xa9"
    assert mime.istr(b"tab\there") == b"{8}\r\ntab\there"
    assert mime.istr(b"del\x7f") == b"{4}\r\ndel\x7f"
    assert mime.istr("x" * 1001).startswith(b"{1001}\r\n")
    assert mime.istr(None) == b"NIL"
