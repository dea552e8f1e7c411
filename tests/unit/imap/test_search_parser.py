"""search.py and parser.py: search-key compilation/evaluation, tokens, sets, names."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pytest

from esam_mail.imap import parser
from esam_mail.imap.parser import Atom, ParseError, SeqSet, String, tokenize
from esam_mail.imap.search import BadCharset, parse_search


@dataclass
class Msg:
    seq: int
    uid: int
    flags: frozenset[str] = frozenset()
    size: int = 100
    internal_date: dt.datetime = dt.datetime(2024, 3, 5, 23, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: str = ""
    sentdate: dt.date | None = None
    reads: list[str] = field(default_factory=list)

    def header(self, name):
        self.reads.append(name)
        return self.headers.get(name)

    def sent(self):
        return self.sentdate

    def body_text(self):
        self.reads.append("body")
        return self.body.casefold()  # as the server keeps them

    def full_text(self):
        self.reads.append("text")
        return ("\n".join(v for vs in self.headers.values() for v in vs) + "\n" + self.body).casefold()


def q(text: bytes, max_seq=10, max_uid=100):
    return parse_search(tokenize([text], []), max_seq=max_seq, max_uid=max_uid)


def test_flags_sizes_and_dates():
    m = Msg(1, 7, frozenset({"\\Seen", "$Work", "\\Recent"}), size=500,
            headers={"subject": ["Réunion"]}, sentdate=dt.date(2024, 3, 1))
    assert q(b"SEEN KEYWORD $work LARGER 499 SMALLER 501").matches(m)
    assert not q(b"UNSEEN").matches(m) and not q(b"NEW").matches(m) and not q(b"OLD").matches(m)
    assert q(b"ON 5-Mar-2024").matches(m)  # date in the internal date's own zone
    assert q(b"BEFORE 6-Mar-2024 SINCE 5-Mar-2024").matches(m)
    assert q(b"SENTON 1-Mar-2024 SENTBEFORE 2-Mar-2024 SENTSINCE 1-Mar-2024").matches(m)
    assert q(b'SUBJECT "r\xc3\xa9UNION"').matches(m)
    assert q(b"UID 5:* 1").matches(m) and not q(b"UID 8:9").matches(m)
    assert q(b"NOT 2:3 OR DELETED (SEEN FLAGGED)").matches(m) is False
    assert q(b"OR DELETED (SEEN KEYWORD $Work)").matches(m)


def test_cheap_keys_short_circuit_expensive_ones():
    m = Msg(1, 1, frozenset(), body="needle")
    assert not q(b"BODY needle SEEN").matches(m)
    assert m.reads == []  # SEEN failed first; the body was never needed
    assert q(b"BODY NEEDLE").matches(m) and m.reads == ["body"]


def test_header_empty_string_means_present():
    m = Msg(1, 1, headers={"x-spam": ["yes"]})
    assert q(b'HEADER X-Spam ""').matches(m) and not q(b'HEADER X-Other ""').matches(m)


@pytest.mark.parametrize("bad", [b"", b"FROB", b"FROM", b"(SEEN", b"LARGER x", b"ON 31-Feb-2024",
                                 b"UID 0"])
def test_syntax_errors(bad):
    with pytest.raises(ParseError):
        q(bad)


def test_charsets():
    assert q(b"CHARSET utf-8 ALL").charset == "UTF-8"
    assert q(b'CHARSET "US-ASCII" ALL').charset == "US-ASCII"
    with pytest.raises(BadCharset):
        q(b"CHARSET ISO-2022-JP ALL")


def test_tokenizer_literals_quotes_and_sections():
    toks = tokenize([b'a APPEND "IN\\"BOX" (\\Seen) {5}', b""], [b"hello"])
    assert toks == [Atom(b"a"), Atom(b"APPEND"), String(b'IN"BOX'), [Atom(b"\\Seen")],
                    String(b"hello")]
    toks = tokenize([b"f FETCH 1:* (BODY.PEEK[HEADER.FIELDS (A B)]<0.10> FLAGS)"], [])
    assert toks[3] == [Atom(b"BODY.PEEK[HEADER.FIELDS (A B)]<0.10>"), Atom(b"FLAGS")]
    with pytest.raises(ParseError):
        tokenize([b"a (b"], [])
    assert parser.literal_at_end(b"a APPEND x {12+}") == (12, True)


def test_fetch_items():
    items = parser.parse_fetch_atts(tokenize([b"(BODY.PEEK[1.2.MIME]<5.7> RFC822.SIZE)"], [])[0])
    assert items[0].peek and items[0].section.path == (1, 2) and items[0].section.text == "MIME"
    assert (items[0].start, items[0].length, items[0].label) == (5, 7, b"BODY[1.2.MIME]<5>")
    assert [i.name for i in parser.parse_fetch_atts(Atom(b"fast"))] == [
        "FLAGS", "INTERNALDATE", "RFC822.SIZE"]
    for bad in (b"BODY[MIME]", b"BODY[0]", b"BODY[TEXT]<5>", b"FOO", b"BODY[HEADER.FIELDS]"):
        with pytest.raises(ParseError):
            parser.parse_fetch_atts(Atom(bad))


def test_seqset():
    s = SeqSet.parse(b"1:3,7,9:*")
    assert [x for x in range(1, 12) if s.contains(x, 10)] == [1, 2, 3, 7, 9, 10]
    assert SeqSet.parse(b"5:2").contains(3, 9)
    assert parser.format_uid_set([1, 2, 3, 5, 7, 8]) == b"1:3,5,7:8"
    for bad in (b"0", b"1:", b"a", b"1,,2", b"4294967296"):
        with pytest.raises(ParseError):
            SeqSet.parse(bad)


def test_search_key_count_and_depth_are_bounded():
    from esam_mail.imap import replies
    from esam_mail.imap.parser import LimitExceeded
    from esam_mail.imap.search import MAX_SEARCH_DEPTH, MAX_SEARCH_KEYS

    many = tokenize([b" ".join([b"1:*"] * (MAX_SEARCH_KEYS + 1))], [])
    with pytest.raises(LimitExceeded) as exc:
        parse_search(many, max_seq=10, max_uid=10)
    assert replies.for_exception(exc.value, "s").render(b"a") == (
        b"a BAD [LIMIT] SEARCH too complex: at most %d search keys." % MAX_SEARCH_KEYS)
    deep = tokenize([b"NOT " * 1000 + b"ALL"], [])
    with pytest.raises(LimitExceeded):
        parse_search(deep, max_seq=10, max_uid=10)
    ok = tokenize([b"NOT " * (MAX_SEARCH_DEPTH - 1) + b"ALL"], [])
    parse_search(ok, max_seq=10, max_uid=10)
    assert parse_search(tokenize([b" ".join([b"1:*"] * MAX_SEARCH_KEYS)], []),
                        max_seq=10, max_uid=10).matches(Msg(1, 1))


@pytest.mark.parametrize(("text", "wire"), [
    ("INBOX", b"INBOX"), ("Входящие", b"&BBIERQQ+BDQETwRJBDgENQ-"), ("a&b", b"a&-b"),
    ("日本語/x", b"&ZeVnLIqe-/x"),
])
def test_modified_utf7_roundtrip(text, wire):
    assert parser.encode_mailbox(text) == wire
    assert parser.decode_mailbox(wire) == text


@pytest.mark.parametrize("bad", [b"&Jjo", b"&AGE-", b"caf\xc3\xa9", b"&-&!!-", b"&ZeVnLIqe"])
def test_modified_utf7_rejects_bad_encodings(bad):
    with pytest.raises(parser.MailboxNameError):
        parser.decode_mailbox(bad)


def test_datetime():
    d = parser.parse_datetime(b" 5-Mar-2024 10:11:12 +0100")
    assert d.utcoffset() == dt.timedelta(hours=1) and d.day == 5
    with pytest.raises(ParseError):
        parser.parse_datetime(b"05-Foo-2024 10:11:12 +0100")
