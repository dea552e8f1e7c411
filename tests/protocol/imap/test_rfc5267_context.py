"""RFC 5267 CONTEXT=SEARCH, CONTEXT=SORT and ESORT, from the RFC's examples (adapted).

ESORT: ``SORT RETURN (...)`` answers one ``* ESEARCH`` whose ALL/PARTIAL/MIN/MAX follow
the sort order.  PARTIAL (RFC 5267 §4.4, negative ranges from RFC 9394) returns a window
of the result.  UPDATE keeps a search context alive: while the mailbox stays selected the
server says ``* ESEARCH (TAG "t") [UID] ADDTO (...)`` / ``REMOVEFROM (...)`` when the
result changes (position 0 for SEARCH, the position in the sorted result for SORT);
CANCELUPDATE ends it.  Updates follow the change notification (IDLE sees them without
a poll: the fixture's IDLE safety poll is 30 s).
"""

from __future__ import annotations

import pytest

from tests.protocol.imap.conftest import Raw, msg

pytestmark = pytest.mark.protocol

# ``r`` (twelve messages, 2, 10 and 11 unseen) comes from conftest.py.


@pytest.fixture
def other(env) -> Raw:
    c = Raw.tls(env)
    c.login()
    c.cmd(b"s", b"SELECT INBOX")
    return c


def _untagged(lines: list[bytes]) -> list[bytes]:
    return [x for x in lines if x.startswith(b"*")]


def _esearch(lines: list[bytes]) -> list[bytes]:
    return [x for x in lines if x.startswith(b"* ESEARCH")]


def test_capabilities(r):
    caps = set(r.cmd(b"c", b"CAPABILITY")[0].split())
    assert {b"ESORT", b"CONTEXT=SEARCH", b"CONTEXT=SORT", b"ESEARCH"} <= caps


# -- ESORT (RFC 5267 §3) ------------------------------------------------------------------
# subjects m0..m11 sort as M0 M1 M10 M11 M2 ... M9: sequence 1 2 11 12 3 4 ... 10


def test_esort_all_min_max_count(r):
    # RFC 5267 §3.3: C: A282 SORT RETURN (MIN) (DATE) UTF-8 SINCE 1-Feb-1994
    #                S: * ESEARCH (TAG "A282") MIN 2
    assert r.cmd(b"A282", b"SORT RETURN (MIN) (SUBJECT) UTF-8 SINCE 1-Feb-1994")[0] == \
        b'* ESEARCH (TAG "A282") MIN 1'
    # C: A283 SORT RETURN (ALL) (DATE REVERSE SUBJECT CC) UTF-8 SINCE 1-Feb-1994
    # S: * ESEARCH (TAG "A283") ALL 5,3,4,2,...   (sort order, not ascending)
    assert r.cmd(b"A283", b"SORT RETURN (ALL) (DATE SUBJECT) UTF-8 SINCE 1-Feb-1994")[0] == \
        b'* ESEARCH (TAG "A283") ALL 1:2,11:12,3:10'
    # C: A284 SORT RETURN (COUNT) (DATE) UTF-8 SINCE 1-Feb-1994
    # S: * ESEARCH (TAG "A284") COUNT 17
    assert r.cmd(b"A284", b"SORT RETURN (COUNT) (DATE) UTF-8 SINCE 1-Feb-1994")[0] == \
        b'* ESEARCH (TAG "A284") COUNT 12'
    # MIN/MAX are the first and the last message in the sort order
    assert r.cmd(b"a", b"SORT RETURN (MIN MAX COUNT) (REVERSE SUBJECT) UTF-8 ALL")[0] == \
        b'* ESEARCH (TAG "a") MIN 10 MAX 1 COUNT 12'
    assert r.cmd(b"b", b"UID SORT RETURN (ALL) (REVERSE SUBJECT) UTF-8 UNSEEN")[0] == \
        b'* ESEARCH (TAG "b") UID ALL 10:11,2'
    assert r.cmd(b"c", b"SORT RETURN () (SUBJECT) UTF-8 UNSEEN")[0] == \
        b'* ESEARCH (TAG "c") ALL 2,11,10'
    assert r.cmd(b"d", b"SORT RETURN (MIN MAX) (SUBJECT) UTF-8 DELETED")[0] == \
        b'* ESEARCH (TAG "d")'
    # the plain SORT answer is unchanged
    assert r.cmd(b"e", b"SORT (SUBJECT) UTF-8 UNSEEN")[0] == b"* SORT 2 11 10"
    assert r.cmd(b"f", b"SORT RETURN (BOGUS) (SUBJECT) UTF-8 ALL")[-1].startswith(b"f BAD")


def test_esort_save(r):
    assert r.cmd(b"a", b"SORT RETURN (SAVE) (SUBJECT) UTF-8 UNSEEN") == \
        [b"a OK SORT completed."]
    assert r.cmd(b"b", b"UID SEARCH UID $")[0] == b"* SEARCH 2 10 11"


# -- PARTIAL (RFC 5267 §4.4, RFC 9394) ----------------------------------------------------


def test_partial(r):
    # RFC 5267 §4.4: C: A01 UID SEARCH RETURN (PARTIAL 1:500) UNDELETED
    #                S: * ESEARCH (TAG "A01") UID PARTIAL (1:500 23500:24000,...)
    assert r.cmd(b"A01", b"UID SEARCH RETURN (PARTIAL 1:3) UNDELETED")[0] == \
        b'* ESEARCH (TAG "A01") UID PARTIAL (1:3 1:3)'
    assert r.cmd(b"A02", b"UID SEARCH RETURN (PARTIAL 11:20) UNDELETED")[0] == \
        b'* ESEARCH (TAG "A02") UID PARTIAL (11:20 11:12)'
    # past the end of the result: NIL
    assert r.cmd(b"A03", b"SEARCH RETURN (PARTIAL 13:20 COUNT) ALL")[0] == \
        b'* ESEARCH (TAG "A03") PARTIAL (13:20 NIL) COUNT 12'
    # RFC 9394 §3.1: negative ranges count from the end (-1 is the last)
    # C: A04 UID SEARCH RETURN (PARTIAL -1:-100) UNDELETED
    assert r.cmd(b"A04", b"UID SEARCH RETURN (PARTIAL -1:-3) UNDELETED")[0] == \
        b'* ESEARCH (TAG "A04") UID PARTIAL (-1:-3 10:12)'
    assert r.cmd(b"A05", b"SEARCH RETURN (PARTIAL -2:-1) UNSEEN")[0] == \
        b'* ESEARCH (TAG "A05") PARTIAL (-1:-2 10:11)'
    assert r.cmd(b"A06", b"SEARCH RETURN (PARTIAL 3:2) UNSEEN")[0] == \
        b'* ESEARCH (TAG "A06") PARTIAL (2:3 10:11)'
    # the window of a sorted result follows the sort order
    assert r.cmd(b"A07", b"SORT RETURN (PARTIAL 2:4) (SUBJECT) UTF-8 ALL")[0] == \
        b'* ESEARCH (TAG "A07") PARTIAL (2:4 2,11:12)'
    # RETURN after the charset (imaptest's sort-partial writes it there) is taken too
    assert r.cmd(b"A08", b"SORT (SUBJECT) UTF-8 RETURN (PARTIAL 4:2) ALL")[0] == \
        b'* ESEARCH (TAG "A08") PARTIAL (2:4 2,11:12)'
    for tag, opts in ((b"b1", b"(PARTIAL 1:5 ALL)"), (b"b2", b"(PARTIAL 0:5)"),
                      (b"b3", b"(PARTIAL 1:-5)"), (b"b4", b"(PARTIAL)"),
                      (b"b5", b"(PARTIAL 1:2 PARTIAL 3:4)"), (b"b6", b"(PARTIAL x:y)")):
        out = r.cmd(tag, b"SEARCH RETURN " + opts + b" ALL")
        assert out[-1].startswith(tag + b" BAD"), out


def test_context_hint_is_accepted(r):
    assert r.cmd(b"a", b"SEARCH RETURN (CONTEXT COUNT) UNSEEN")[0] == \
        b'* ESEARCH (TAG "a") COUNT 3'


# -- UPDATE (RFC 5267 §4.2, §4.3) ---------------------------------------------------------


def test_update_search_flags_from_another_session(r, other):
    # RFC 5267 §4.3: C: B01 UID SEARCH RETURN (UPDATE) FLAGGED
    #                S: * ESEARCH (TAG "B01") UID ...   S: B01 OK
    out = r.cmd(b"B01", b"UID SEARCH RETURN (UPDATE ALL) UNSEEN")
    assert out == [b'* ESEARCH (TAG "B01") UID ALL 2,10:11', b"B01 OK SEARCH completed."]
    other.cmd(b"o1", b"UID STORE 3 -FLAGS (\\Seen)")
    other.cmd(b"o2", b"UID STORE 10 +FLAGS (\\Seen)")
    out = _untagged(r.cmd(b"n", b"NOOP"))
    # the flag changes first, then the context update
    assert out[-1] == b'* ESEARCH (TAG "B01") UID REMOVEFROM (0 10) ADDTO (0 3)', out
    assert any(b"FETCH" in x for x in out[:-1])
    # nothing changed: nothing more
    assert _esearch(r.cmd(b"n2", b"NOOP")) == []


def test_update_own_store_before_tagged_ok(r):
    r.cmd(b"B02", b"SEARCH RETURN (UPDATE) UNSEEN")
    out = r.cmd(b"a", b"STORE 2 +FLAGS (\\Seen)")
    assert out[-2:] == [b'* ESEARCH (TAG "B02") REMOVEFROM (0 2)', b"a OK STORE completed."], out


def test_update_new_message_after_exists(env, r):
    r.cmd(b"B03", b"UID SEARCH RETURN (UPDATE COUNT) UNSEEN")
    env.deliver(msg("fresh"))
    out = _untagged(r.cmd(b"n", b"NOOP"))
    assert out.index(b"* 13 EXISTS") < out.index(
        b'* ESEARCH (TAG "B03") UID ADDTO (0 13) COUNT 4'), out


def test_update_expunge_removes_before_expunge(r, other):
    # sequence numbers: the REMOVEFROM names the message before its EXPUNGE renumbers
    r.cmd(b"B04", b"SEARCH RETURN (UPDATE MIN) UNSEEN")
    other.cmd(b"o1", b"STORE 10 +FLAGS.SILENT (\\Deleted)")
    other.cmd(b"o2", b"EXPUNGE")
    out = _untagged(r.cmd(b"n", b"NOOP"))
    assert out[:2] == [b'* ESEARCH (TAG "B04") REMOVEFROM (0 10) MIN 2', b"* 10 EXPUNGE"], out
    # our own EXPUNGE too
    r.cmd(b"a", b"STORE 2 +FLAGS.SILENT (\\Deleted)")
    out = r.cmd(b"b", b"EXPUNGE")
    assert out[:2] == [b'* ESEARCH (TAG "B04") REMOVEFROM (0 2) MIN 10', b"* 2 EXPUNGE"], out


def test_update_sequence_keys_follow_renumbering(r, other):
    # a search by sequence numbers changes when an EXPUNGE renumbers the messages
    out = r.cmd(b"B05", b"SEARCH RETURN (UPDATE ALL) 1:3")
    assert out[0] == b'* ESEARCH (TAG "B05") ALL 1:3'
    other.cmd(b"o1", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.cmd(b"o2", b"EXPUNGE")
    out = _untagged(r.cmd(b"n", b"NOOP"))
    assert out == [b'* ESEARCH (TAG "B05") REMOVEFROM (0 1)', b"* 1 EXPUNGE",
                   b'* ESEARCH (TAG "B05") ADDTO (0 3)'], out


def test_update_pushed_during_idle(r, other):
    r.cmd(b"B06", b"UID SEARCH RETURN (UPDATE) FLAGGED")
    r.idle()
    other.cmd(b"o1", b"UID STORE 7 +FLAGS (\\Flagged)")
    line, waited = r.wait_for(rb"ESEARCH", 5.0)
    assert line == b'* ESEARCH (TAG "B06") UID ADDTO (0 7)'
    assert waited < 5.0
    assert r.done()[-1].endswith(b"IDLE terminated.")


def test_sort_context_positions(env, r, other):
    # RFC 5267 §4.3: positions in the sorted result: REMOVEFROM where it was, ADDTO
    # where it is now
    out = r.cmd(b"C01", b"UID SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 UNSEEN")
    assert out[0] == b'* ESEARCH (TAG "C01") UID ALL 2,11,10'  # M1 M10 M9
    other.cmd(b"o1", b"UID STORE 11 +FLAGS (\\Seen)")
    assert _esearch(r.cmd(b"n", b"NOOP")) == [b'* ESEARCH (TAG "C01") UID REMOVEFROM (2 11)']
    other.cmd(b"o2", b"UID STORE 1,5 -FLAGS (\\Seen)")  # M0 first, M4 between M1 and M9
    assert _esearch(r.cmd(b"n2", b"NOOP")) == [
        b'* ESEARCH (TAG "C01") UID ADDTO (1 1 3 5)']
    env.deliver(msg("m3b"))  # UID 13 sorts between M1 and M4
    assert _esearch(r.cmd(b"n3", b"NOOP")) == [b'* ESEARCH (TAG "C01") UID ADDTO (3 13)']
    # the context now reads M0 M1 M3B M4 M9: check it against a fresh SORT
    assert r.cmd(b"x", b"UID SORT RETURN (ALL) (SUBJECT) UTF-8 UNSEEN")[0] == \
        b'* ESEARCH (TAG "x") UID ALL 1:2,13,5,10'
    other.cmd(b"o3", b"UID STORE 2,5 +FLAGS (\\Seen)")
    assert _esearch(r.cmd(b"n4", b"NOOP")) == [
        b'* ESEARCH (TAG "C01") UID REMOVEFROM (4 5 2 2)']


def test_cancelupdate(r, other):
    r.cmd(b"B07", b"UID SEARCH RETURN (UPDATE) FLAGGED")
    r.cmd(b"B08", b"UID SEARCH RETURN (UPDATE) UNFLAGGED")
    # RFC 5267 §4.3: C: B08 CANCELUPDATE "B01"   S: B08 OK
    assert r.cmd(b"c1", b'CANCELUPDATE "B07"') == [b"c1 OK CANCELUPDATE completed."]
    other.cmd(b"o1", b"UID STORE 4 +FLAGS (\\Flagged)")
    assert _esearch(r.cmd(b"n", b"NOOP")) == [b'* ESEARCH (TAG "B08") UID REMOVEFROM (0 4)']
    assert r.cmd(b"c2", b'CANCELUPDATE "B07"')[-1].startswith(b"c2 BAD [CLIENTBUG]")
    assert r.cmd(b"c3", b'CANCELUPDATE "B08" "nope"')[-1].startswith(b"c3 BAD [CLIENTBUG]")
    assert r.cmd(b"c4", b"CANCELUPDATE")[-1].startswith(b"c4 BAD")
    assert r.cmd(b"c5", b'CANCELUPDATE "B08"')[-1] == b"c5 OK CANCELUPDATE completed."
    other.cmd(b"o2", b"UID STORE 4 -FLAGS (\\Flagged)")
    assert _esearch(r.cmd(b"n2", b"NOOP")) == []


def test_context_tag_in_use(r):
    r.cmd(b"B09", b"SEARCH RETURN (UPDATE) FLAGGED")
    out = r.cmd(b"B09", b"SEARCH RETURN (UPDATE) UNFLAGGED")
    assert out[-1].startswith(b"B09 BAD [CLIENTBUG]"), out
    # a search without UPDATE may reuse the tag
    assert r.cmd(b"B09", b"SEARCH RETURN (COUNT) FLAGGED")[-1].startswith(b"B09 OK")


def test_contexts_are_bounded(r):
    for i in range(10):
        out = r.cmd(b"L%d" % i, b"SEARCH RETURN (UPDATE) FLAGGED")
        assert out[-1].startswith(b"L%d OK" % i)
    out = r.cmd(b"L10", b"SEARCH RETURN (UPDATE COUNT) FLAGGED")
    # RFC 5267 §4.2: the search is answered, the context is not kept
    assert out == [b'* NO [NOUPDATE "L10"] Too many search contexts.',
                   b'* ESEARCH (TAG "L10") COUNT 0', b"L10 OK SEARCH completed."], out
    assert r.cmd(b"c", b'CANCELUPDATE "L10"')[-1].startswith(b"c BAD [CLIENTBUG]")
    r.cmd(b"c2", b'CANCELUPDATE "L0"')
    assert r.cmd(b"L11", b"SEARCH RETURN (UPDATE) FLAGGED")[0] == b'* ESEARCH (TAG "L11")'


def test_contexts_end_with_the_selection(r, other):
    r.cmd(b"B10", b"UID SEARCH RETURN (UPDATE) FLAGGED")
    r.cmd(b"s2", b"SELECT INBOX")
    other.cmd(b"o1", b"UID STORE 4 +FLAGS (\\Flagged)")
    assert _esearch(r.cmd(b"n", b"NOOP")) == []
    assert r.cmd(b"c", b'CANCELUPDATE "B10"')[-1].startswith(b"c BAD [CLIENTBUG]")
    r.cmd(b"B11", b"UID SEARCH RETURN (UPDATE) FLAGGED")
    r.cmd(b"u", b"UNSELECT")
    assert r.cmd(b"c2", b'CANCELUPDATE "B11"')[-1].startswith(b"c2 BAD")  # not selected
