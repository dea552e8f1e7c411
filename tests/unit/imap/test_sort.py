"""RFC 5256 base subject extraction and threading, without sockets."""

from __future__ import annotations

import pytest

from esam_mail.imap import sort


@pytest.mark.parametrize(("subject", "base"), [
    ("Re: test", "TEST"),
    ("RE:  re: Test (fwd)", "TEST"),
    ("Re: [list] Fwd: hello (fwd)", "HELLO"),
    ("[fwd: Re: x]", "X"),
    ("[PATCH] foo", "FOO"),
    ("[a][b] Re: [c] subj", "SUBJ"),
    ("Fw: [x]", "[X]"),  # a blob is kept when nothing else would remain
    ("Re:Re[2]: tab\tand  spaces", "TAB AND SPACES"),
    ("", ""),
])
def test_base_subject(subject: str, base: str) -> None:
    assert sort.base_subject(subject) == base


def _m(seq: int, subject: str, date: float, mid: str | None = None,
       refs: list[str] | None = None) -> sort.SortKeys:
    keys = {"d": date, "s": sort.base_subject(subject), "r": sort.is_reply(subject),
            "id": mid, "refs": refs or [], "f": "", "t": "", "c": ""}
    return sort.SortKeys(seq, seq, date, 100, keys)


def _render(roots: list[sort.Node]) -> bytes:
    return sort.render_threads(roots, lambda m: m.seq)


def test_orderedsubject() -> None:
    msgs = [_m(1, "a", 10), _m(2, "b", 5), _m(3, "Re: a", 20), _m(4, "re: a", 30),
            _m(5, "Re: b", 6)]
    assert _render(sort.thread_orderedsubject(msgs)) == b"(2 5)(1 (3)(4))"


def test_references_chain_missing_parent_and_subject_merge() -> None:
    msgs = [
        _m(1, "hello", 10, "<1@x>"),
        _m(2, "Re: hello", 20, "<2@x>", ["<1@x>"]),
        _m(3, "Re: hello", 30, "<3@x>", ["<1@x>", "<2@x>"]),
        _m(4, "Re: hello", 25, "<4@x>", ["<1@x>"]),
        _m(5, "other", 5, "<5@x>", ["<gone@x>"]),  # parent not here: a dummy, pruned
        _m(6, "Re: hello", 40, "<6@x>"),  # no references: joins by subject
    ]
    assert _render(sort.thread_references(msgs)) == b"(5)(1 (2 3)(4)(6))"


def test_references_two_non_replies_share_a_dummy() -> None:
    msgs = [_m(1, "same", 10, "<1@x>"), _m(2, "same", 20, "<2@x>")]
    assert _render(sort.thread_references(msgs)) == b"((1)(2))"


def test_references_loop_and_duplicate_ids_are_safe() -> None:
    msgs = [_m(1, "a", 10, "<1@x>", ["<2@x>"]), _m(2, "b", 20, "<2@x>", ["<1@x>"]),
            _m(3, "c", 30, "<1@x>")]
    out = _render(sort.thread_references(msgs))
    assert sorted(out.replace(b"(", b" ").replace(b")", b" ").split()) == [b"1", b"2", b"3"]


def test_sort_criteria_and_reverse() -> None:
    a, b, c = _m(1, "b", 30), _m(2, "a", 10), _m(3, "a", 20)
    got = sort.sort_messages([a, b, c], [("SUBJECT", False), ("DATE", True)])
    assert [m.seq for m in got] == [3, 2, 1]
