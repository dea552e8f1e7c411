"""Sequence sets are parsed into merged, 32-bit-checked ranges (RFC 9051 §9).

The resolver's cost must follow the folder size, never the number of ranges a
client repeats (issue 14: ``UID FETCH 1:*,1:*,...`` with 16,000 ranges used to
expand every range before de-duplicating).
"""

from __future__ import annotations

import time

import pytest

from esam_mail.imap import replies
from esam_mail.imap.parser import MAX_NUMBER, LimitExceeded, ParseError, SeqSet, tokenize


def test_ranges_are_merged_at_parse_time():
    s = SeqSet.parse(b"7,1:3,2:5,9,8,20:15")
    assert s.ranges == ((1, 5), (7, 9), (15, 20))
    assert s.star is None
    assert SeqSet.parse(b",".join([b"1:5"] * 16000)).ranges == ((1, 5),)


def test_star_ranges_collapse_to_one_interval():
    s = SeqSet.parse(b"1:3,9:*,*,*:12")
    assert s.ranges_for(10) == ((1, 3), (9, 12))
    assert s.ranges_for(20) == ((1, 3), (9, 20))
    assert s.ranges_for(5) == ((1, 3), (5, 12))  # 9:* with * = 5 is 5:9
    assert SeqSet.parse(b"*").ranges_for(7) == ((7, 7),)
    assert SeqSet.parse(b",".join([b"1:*"] * 16000)).ranges_for(1023) == ((1, 1023),)


@pytest.mark.parametrize("raw", [b"4294967296", b"1:4294967296", b"4294967296:*",
                                 b"9" * 5000, b"1," + b"1" * 11])
def test_numbers_beyond_32_bits_are_rejected(raw):
    with pytest.raises(ParseError) as exc:
        SeqSet.parse(raw)
    reply = replies.for_exception(exc.value, "s1")
    assert reply.status == b"BAD" and b"out of range" in reply.text


def test_largest_32_bit_number_is_accepted():
    assert SeqSet.parse(b"%d" % MAX_NUMBER).ranges == ((MAX_NUMBER, MAX_NUMBER),)


@pytest.mark.parametrize("raw", [b"0", b"0:5", b"01", b"1:", b":1", b"a", b"1,,2", b"", b"1:2:3"])
def test_malformed_sets_are_bad(raw):
    with pytest.raises(ParseError):
        SeqSet.parse(raw)


def test_select_cost_follows_the_folder_not_the_ranges():
    uids = list(range(1, 1024))
    many = SeqSet.parse(b",".join(b"%d" % i for i in range(1, 32000, 2)))  # 16,000 ranges
    t0 = time.perf_counter()
    idx = many.select(uids, uids[-1])
    assert [uids[i] for i in idx] == list(range(1, 1024, 2))
    assert time.perf_counter() - t0 < 0.5
    assert SeqSet.parse(b"5:7,100").select([2, 5, 6, 9, 100, 101], 101) == [1, 2, 4]


def test_tokenizer_bounds_nesting():
    deep = b"a SEARCH " + b"(" * 1000 + b"ALL" + b")" * 1000
    with pytest.raises(LimitExceeded) as exc:
        tokenize([deep], [])
    reply = replies.for_exception(exc.value, "s1")
    assert reply.status == b"BAD" and reply.code == b"LIMIT"
    assert tokenize([b"a (((x)))"], []) == [b"a", [[[b"x"]]]]
