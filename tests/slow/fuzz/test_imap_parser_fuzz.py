"""Fuzzing the IMAP command parser (esam_mail/imap/parser.py, search.py).

Whatever bytes a client sends, the parser answers with a value or the documented
errors (ParseError -> BAD, MailboxNameError -> NO/BAD, BadCharset -> NO
[BADCHARSET]); never another exception, and never slowly (hypothesis deadline).
"""

from __future__ import annotations

import itertools
import string

from hypothesis import assume, given
from hypothesis import strategies as st

from esam_mail.imap.parser import (
    Args,
    Atom,
    MailboxNameError,
    ParseError,
    SeqSet,
    String,
    decode_mailbox,
    encode_mailbox,
    literal_at_end,
    parse_date,
    parse_datetime,
    parse_fetch_atts,
    parse_section,
    quote,
    tokenize,
)
from esam_mail.imap.search import BadCharset, parse_search
from tests.slow.fuzz.budget import fuzz

IMAP_CHARS = st.sampled_from(list(b' ()[]{}<>"\\*%:,.+-0123456789ABCDEFbodyhtxNIL\r\n\x00&~/'))
imapish = st.lists(IMAP_CHARS, max_size=200).map(bytes)
noisy = st.one_of(st.binary(max_size=300), imapish)

ATOMS = [b"BODY[]", b"BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]<0.10>", b"BODY[1.2.MIME]", b"FLAGS",
         b"UID", b"ENVELOPE", b"BODYSTRUCTURE", b"RFC822.SIZE", b"ALL", b"FAST", b"FULL", b"1:*",
         b"*", b"NIL", b"\\Seen", b"BODY[TEXT]<5.2>", b"BODY[1.1.1.1.1]", b"BODY[HEADER.FIELDS.NOT ()]"]
SEARCH = [b"ALL", b"ANSWERED", b"BCC", b"BEFORE", b"BODY", b"CC", b"DELETED", b"FROM", b"HEADER",
          b"KEYWORD", b"LARGER", b"NEW", b"NOT", b"OLD", b"ON", b"OR", b"SEEN", b"SENTBEFORE",
          b"SINCE", b"SMALLER", b"SUBJECT", b"TEXT", b"TO", b"UID", b"UNSEEN", b"CHARSET", b"UTF-8",
          b"1-Feb-1994", b"32-Foo-99", b"1:*", b"*", b"0", b"99999999999999999999", b"x"]

token = st.recursive(
    st.one_of(st.sampled_from(ATOMS).map(Atom), st.binary(max_size=20).map(Atom),
              st.binary(max_size=20).map(String)),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=12,
)


@fuzz()
@given(st.lists(noisy, min_size=1, max_size=4), st.lists(st.binary(max_size=50), max_size=4))
def test_tokenize_raises_only_parse_error(lines: list[bytes], literals: list[bytes]) -> None:
    try:
        out = tokenize(lines, literals[: len(lines)])
    except ParseError:
        return
    assert isinstance(out, list)


@fuzz()
@given(st.recursive(st.one_of(st.sampled_from([a for a in ATOMS if b"[" not in a]), st.text(string.printable, max_size=15)
                              .map(lambda s: quote(s.encode()))),
                    lambda inner: st.lists(inner, max_size=4).map(lambda xs: b"(" + b" ".join(xs) + b")"),
                    max_leaves=20))
def test_nested_lists_and_quoted_strings_round_trip(text: bytes) -> None:
    """Well-formed input: balanced nesting is reproduced and quoted strings unescape."""
    assume(b"\r" not in text and b"\n" not in text and b"{" not in text)
    try:
        out = tokenize([b"t " + text], [])
    except ParseError:
        return  # e.g. a quoted string carried a bracket into an atom
    assert out[0] == Atom(b"t")

    def depth(tok: object) -> int:
        return 1 + max((depth(t) for t in tok), default=0) if isinstance(tok, list) else 0

    def raw_depth(b: bytes) -> int:
        d = best = 0
        inq = esc = False
        for ch in b:
            if inq:
                if esc:
                    esc = False
                elif ch == 0x5C:
                    esc = True
                elif ch == 0x22:
                    inq = False
                continue
            if ch == 0x22:
                inq = True
            elif ch == 0x28:
                d += 1
                best = max(best, d)
            elif ch == 0x29:
                d -= 1
        return best

    assert max((depth(t) for t in out), default=0) == raw_depth(text)


@fuzz()
@given(st.text(max_size=40))
def test_quote_then_tokenize_gives_the_value_back(value: str) -> None:
    raw = value.encode()
    q = quote(raw)
    if q.startswith(b"{"):  # a literal: the framing layer hands it over separately
        size = literal_at_end(q.split(b"\r\n", 1)[0])
        assert size == (len(raw), False)
        assert tokenize([b"t " + q.split(b"\r\n", 1)[0]], [raw]) == [Atom(b"t"), String(raw)]
    else:
        assert tokenize([b"t " + q], []) == [Atom(b"t"), String(raw)]


seq_item = st.one_of(st.integers(1, 2**32 - 1).map(str), st.just("*"))
seq_range = st.tuples(seq_item, st.none() | seq_item).map(lambda t: t[0] if t[1] is None else f"{t[0]}:{t[1]}")


def _naive(text: str, largest: int) -> set[int]:
    """The RFC 9051 meaning of a sequence set, expanded one number at a time."""
    out: set[int] = set()
    for item in text.split(","):
        a, _, b = item.partition(":")
        lo = largest if a == "*" else int(a)
        hi = lo if not b else largest if b == "*" else int(b)
        lo, hi = min(lo, hi), max(lo, hi)
        out.update(range(lo, min(hi, 40) + 1))
    return out


small_item = st.one_of(st.integers(1, 30).map(str), st.just("*"))
small_range = st.tuples(small_item, st.none() | small_item).map(
    lambda t: t[0] if t[1] is None else f"{t[0]}:{t[1]}")


@fuzz()
@given(st.lists(seq_range, min_size=1, max_size=8).map(",".join), st.integers(0, 2**32))
def test_valid_sequence_sets(text: str, largest: int) -> None:
    s = SeqSet.parse(text.encode())
    ranges = s.ranges_for(largest)
    for (a, b), (c, _) in itertools.pairwise(ranges):
        assert a <= b < c - 1  # sorted, disjoint, merged
    for a, b in ranges:
        assert s.contains(a, largest) and s.contains(b, largest)


@fuzz()
@given(st.lists(small_range, min_size=1, max_size=12).map(",".join), st.integers(1, 40))
def test_sequence_set_means_what_the_rfc_says(text: str, largest: int) -> None:
    s = SeqSet.parse(text.encode())
    want = _naive(text, largest)
    assert {v for v in range(1, 41) if s.contains(v, largest)} == want
    values = list(range(1, 41, 2))
    assert [values[i] for i in s.select(values, largest)] == sorted(want & set(values))


@fuzz()
@given(st.one_of(st.binary(max_size=60), st.lists(st.sampled_from(list(b"0123456789*:,")), max_size=40)
                 .map(bytes)))
def test_sequence_set_raises_only_parse_error(raw: bytes) -> None:
    try:
        s = SeqSet.parse(raw)
    except ParseError:
        return
    assert all(0 < lo <= hi <= 2**32 - 1 for lo, hi in s.ranges)


@fuzz()
@given(token)
def test_fetch_attributes_raise_only_parse_error(tok: object) -> None:
    try:
        items = parse_fetch_atts(tok)  # type: ignore[arg-type]
    except ParseError:
        return
    assert items


@fuzz()
@given(st.one_of(st.binary(max_size=80), st.lists(st.sampled_from(list(b"0123456789.HEADERFILDSNOTMXT ()"))
                                                   , max_size=60).map(bytes)))
def test_sections_raise_only_parse_error(spec: bytes) -> None:
    try:
        parse_section(spec)
    except ParseError:
        pass


@fuzz()
@given(st.lists(st.one_of(st.sampled_from(SEARCH).map(Atom), token), max_size=10),
       st.integers(0, 10**6), st.integers(0, 10**6))
def test_search_raises_only_documented_errors(tokens: list[object], max_seq: int, max_uid: int) -> None:
    try:
        parse_search(tokens, max_seq=max_seq, max_uid=max_uid)  # type: ignore[arg-type]
    except (ParseError, BadCharset):
        pass


@fuzz()
@given(st.binary(max_size=40))
def test_dates_raise_only_parse_error(raw: bytes) -> None:
    for parse in (parse_date, parse_datetime):
        try:
            parse(raw)
        except ParseError:
            pass


@fuzz()
@given(st.one_of(st.binary(max_size=60),
                 st.lists(st.sampled_from(list(b"&-AC8C4ALgv+,/.x~ ")), max_size=40).map(bytes)))
def test_mailbox_names_raise_only_mailbox_name_error(raw: bytes) -> None:
    try:
        name = decode_mailbox(raw)
    except MailboxNameError:
        return
    assert encode_mailbox(name) == raw or decode_mailbox(encode_mailbox(name)) == name


@fuzz()
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=30))
def test_modified_utf7_round_trip(name: str) -> None:
    encoded = encode_mailbox(name)
    assert all(0x20 <= b <= 0x7E for b in encoded)
    assert decode_mailbox(encoded) == name


def test_args_cursor_errors_are_parse_errors() -> None:
    a = Args([Atom(b"x"), [Atom(b"y")]])
    for call in (a.plist, a.atom):
        try:
            call()
        except ParseError:
            pass
    a.rest()
    try:
        a.next()
    except ParseError:
        return
    raise AssertionError("Args.next past the end must raise ParseError")
