"""RFC 4731 ESEARCH and RFC 5182 SEARCHRES, from the RFCs' examples (adapted).

SEARCH RETURN (MIN MAX COUNT ALL) answers one ``* ESEARCH (TAG "t") [UID] ...``;
RETURN (SAVE) keeps the result as ``$`` for later commands.
"""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.protocol

# ``r`` (twelve messages, 2, 10 and 11 unseen) comes from conftest.py.


def test_capabilities(r):
    caps = r.cmd(b"c", b"CAPABILITY")[0].split()
    assert b"ESEARCH" in caps and b"SEARCHRES" in caps


def test_min_max_count_all(r):
    # RFC 4731 §4: A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"
    #   -> * ESEARCH (TAG "A282") MIN 2 COUNT 3
    assert r.cmd(b"A282", b"SEARCH RETURN (MIN COUNT) UNSEEN")[0] == \
        b'* ESEARCH (TAG "A282") MIN 2 COUNT 3'
    # A283 SEARCH RETURN () FLAGGED ... -> * ESEARCH (TAG "A283") ALL 2,10:11
    assert r.cmd(b"A283", b"SEARCH RETURN () UNSEEN")[0] == b'* ESEARCH (TAG "A283") ALL 2,10:11'
    assert r.cmd(b"A284", b"UID SEARCH RETURN (MAX ALL MIN COUNT) UNSEEN")[0] == \
        b'* ESEARCH (TAG "A284") UID MIN 2 MAX 11 ALL 2,10:11 COUNT 3'
    # A285 SEARCH RETURN (MIN MAX) ... (no match) -> * ESEARCH (TAG "A285")
    assert r.cmd(b"A285", b"SEARCH RETURN (MIN MAX) DELETED")[0] == b'* ESEARCH (TAG "A285")'
    assert r.cmd(b"A286", b"SEARCH RETURN (COUNT) DELETED")[0] == b'* ESEARCH (TAG "A286") COUNT 0'
    assert r.cmd(b"b", b"SEARCH RETURN (BOGUS) ALL")[-1].startswith(b"b BAD")
    assert r.cmd(b"c", b"SEARCH RETURN (COUNT) CHARSET UTF-8 UNSEEN")[0] == \
        b'* ESEARCH (TAG "c") COUNT 3'


def test_save_and_dollar(r):
    # RFC 5182 §3.1: A282 SEARCH RETURN (SAVE) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"
    #   A282 OK SEARCH completed, result saved;  A283 FETCH $ (UID INTERNALDATE FLAGS ...)
    out = r.cmd(b"A282", b"SEARCH RETURN (SAVE) UNSEEN")
    assert out == [b"A282 OK SEARCH completed."], out  # SAVE alone: no ESEARCH
    out = r.cmd(b"A283", b"FETCH $ (UID)")
    assert [x for x in out if x.startswith(b"*")] == [
        b"* 2 FETCH (UID 2)", b"* 10 FETCH (UID 10)", b"* 11 FETCH (UID 11)"]
    r.cmd(b"A284", b"STORE $ +FLAGS (\\Flagged)")
    assert r.cmd(b"A285", b"SEARCH FLAGGED")[0] == b"* SEARCH 2 10 11"
    assert r.cmd(b"A286", b"UID SEARCH UID $ FLAGGED")[0] == b"* SEARCH 2 10 11"
    assert r.cmd(b"A287", b"SEARCH $ 1:10")[0] == b"* SEARCH 2 10"
    out = r.cmd(b"A288", b"UID COPY $ Archive")
    assert b"[COPYUID " in out[-1] and b" 2,10:11 1:3]" in out[-1], out
    # expunging a saved message removes it from $ (RFC 5182 §2.1)
    r.cmd(b"A289", b"STORE 2 +FLAGS.SILENT (\\Deleted)")
    r.cmd(b"A290", b"EXPUNGE")
    assert r.cmd(b"A291", b"UID SEARCH $")[0] == b"* SEARCH 10 11"


def test_save_with_min_max_saves_only_those(r):
    # RFC 5182 §2.4: SAVE with MIN/MAX (and no ALL/COUNT) saves just the min/max
    out = r.cmd(b"a", b"SEARCH RETURN (SAVE MIN MAX) UNSEEN")
    assert out[0] == b'* ESEARCH (TAG "a") MIN 2 MAX 11'
    assert r.cmd(b"b", b"UID SEARCH UID $")[0] == b"* SEARCH 2 11"


def test_dollar_is_empty_before_save_and_after_select(r):
    assert r.cmd(b"a", b"SEARCH $")[0] == b"* SEARCH"
    r.cmd(b"b", b"SEARCH RETURN (SAVE) ALL")
    r.cmd(b"c", b"SELECT INBOX")
    assert r.cmd(b"d", b"SEARCH $")[0] == b"* SEARCH"
    # a failed SAVE search leaves $ empty (RFC 5182 §2.1)
    r.cmd(b"e", b"SEARCH RETURN (SAVE) ALL")
    assert r.cmd(b"f", b"SEARCH RETURN (SAVE) NOSUCHKEY")[-1].startswith(b"f BAD")
    assert r.cmd(b"g", b"SEARCH $")[0] == b"* SEARCH"


def test_modseq_result_option_follows_the_returned_messages(r):
    """RFC 4731 §3.2 with CONDSTORE: MIN or MAX alone -> that message's mod-sequence; MIN and
    MAX -> the higher of the two; otherwise the highest of all returned (imaptest
    esearch-condstore). Stores in the order 1, 3, 2 give modseq(1) < modseq(3) < modseq(2)."""
    r.cmd(b"m", b"FETCH 1 (MODSEQ)")  # CONDSTORE-enabling: STORE answers carry MODSEQ
    ms = {}
    for seq in (1, 3, 2):
        out = r.cmd(b"s", b"STORE %d +FLAGS (\\Flagged)" % seq)
        ms[seq] = int(re.search(rb"MODSEQ \((\d+)\)", out[-2]).group(1))
    assert ms[1] < ms[3] < ms[2]
    q = b' 1:3 MODSEQ "/flags/\\\\flagged" all 1'
    assert r.cmd(b"a", b"SEARCH RETURN (MIN)" + q)[0] == \
        b'* ESEARCH (TAG "a") MIN 1 MODSEQ %d' % ms[1]
    assert r.cmd(b"b", b"SEARCH RETURN (MAX)" + q)[0] == \
        b'* ESEARCH (TAG "b") MAX 3 MODSEQ %d' % ms[3]
    assert r.cmd(b"c", b"SEARCH RETURN (MIN MAX)" + q)[0] == \
        b'* ESEARCH (TAG "c") MIN 1 MAX 3 MODSEQ %d' % ms[3]
    assert r.cmd(b"d", b"SEARCH RETURN ()" + q)[0] == \
        b'* ESEARCH (TAG "d") ALL 1:3 MODSEQ %d' % ms[2]
    assert r.cmd(b"e", b"SEARCH RETURN (COUNT)" + q)[0] == \
        b'* ESEARCH (TAG "e") COUNT 3 MODSEQ %d' % ms[2]
    assert r.cmd(b"f", b"SEARCH RETURN (PARTIAL 1:1)" + q)[0] == \
        b'* ESEARCH (TAG "f") PARTIAL (1:1 1) MODSEQ %d' % ms[1]
