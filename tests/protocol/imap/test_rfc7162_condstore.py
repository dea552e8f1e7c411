"""RFC 7162 CONDSTORE, built from the RFC's own examples (values adapted to the run).

Mod-sequences live in the folder's index (``esam-modseq.sqlite``) and survive
restarts and other processes; HIGHESTMODSEQ is sent at every SELECT/EXAMINE.
"""

from __future__ import annotations

import re

import pytest

from tests.protocol.imap.conftest import Raw, msg

pytestmark = pytest.mark.protocol


def _selected(env, n: int = 3) -> Raw:
    for i in range(n):
        env.deliver(msg(f"m{i}"))
    r = Raw.tls(env)
    r.login()
    return r


def _modseqs(r: Raw) -> dict[int, int]:
    out = r.cmd(b"ms", b"FETCH 1:* (MODSEQ)")
    return {int(m.group(1)): int(m.group(2)) for x in out
            if (m := re.fullmatch(rb"\* (\d+) FETCH \(MODSEQ \((\d+)\)\)", x))}


def _highest(lines: list[bytes]) -> int:
    for x in lines:
        if m := re.search(rb"\[HIGHESTMODSEQ (\d+)\]", x):
            return int(m.group(1))
    raise AssertionError(lines)


def test_capability_select_and_status(env):
    r = _selected(env)
    assert b"CONDSTORE" in r.cmd(b"c", b"CAPABILITY")[0].split()
    out = r.cmd(b"s", b"SELECT INBOX")
    high = _highest(out)
    assert high > 0
    m = re.search(rb"HIGHESTMODSEQ (\d+)", r.cmd(b"st", b"STATUS INBOX (HIGHESTMODSEQ)")[0])
    assert m and int(m.group(1)) == high
    assert max(_modseqs(r).values()) == high
    assert _highest(r.cmd(b"e", b"EXAMINE INBOX")) == high


def test_store_raises_modseq_of_the_changed_message_only(env):
    r = _selected(env)
    r.cmd(b"s", b"SELECT INBOX")
    before = _modseqs(r)
    out = r.cmd(b"a", b"STORE 2 +FLAGS (\\Flagged)")
    # the MODSEQ fetch above enabled CONDSTORE: the STORE answer carries UID and MODSEQ
    m = re.fullmatch(rb"\* 2 FETCH \(UID 2 FLAGS \((?:\\Recent )?\\Flagged\) MODSEQ \((\d+)\)\)", out[0])
    assert m, out
    after = _modseqs(r)
    assert after[2] == int(m.group(1)) > before[2]
    assert after[1] == before[1] and after[3] == before[3]
    assert _highest(r.cmd(b"s2", b"SELECT INBOX")) == after[2]


def test_fetch_changedsince(env):
    # RFC 7162 §3.1.4.1: s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)
    r = _selected(env, 4)
    r.cmd(b"s", b"SELECT INBOX")
    base = max(_modseqs(r).values())
    r.cmd(b"a", b"STORE 3 +FLAGS (\\Seen)")
    out = r.cmd(b"s100", b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % base)
    assert len(out) == 2, out
    assert re.fullmatch(rb"\* 3 FETCH \(UID 3 FLAGS \((?:\\Recent )?\\Seen\) MODSEQ \(\d+\)\)", out[0]), out
    assert r.cmd(b"b", b"FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % (base + 10**6)) == [
        b"b OK FETCH completed."]
    assert r.cmd(b"c", b"FETCH 1 (FLAGS) (CHANGEDSINCE x)")[-1].startswith(b"c BAD")


def test_conditional_store_reports_modified(env):
    # RFC 7162 §3.1.3: d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\Deleted)
    # S: * 5 FETCH (MODSEQ (320162350))   S: d105 OK [MODIFIED 7,9] Conditional STORE failed
    r = _selected(env, 3)
    r.cmd(b"s", b"SELECT INBOX")
    known = max(_modseqs(r).values())
    other = Raw.tls(env)
    other.login()
    other.cmd(b"s", b"SELECT INBOX")
    other.cmd(b"x", b"STORE 1,3 +FLAGS ($Changed)")
    out = r.cmd(b"d105", b"STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Deleted)" % known)
    assert out[-1] == b"d105 OK [MODIFIED 1,3] Conditional STORE failed.", out
    assert any(re.fullmatch(rb"\* 2 FETCH \(UID 2 MODSEQ \(\d+\)\)", x) for x in out), out
    flags = r.cmd(b"f", b"FETCH 1:3 (FLAGS)")
    assert b"\\Deleted" in flags[1] and b"\\Deleted" not in flags[0] + flags[2]
    # UNCHANGEDSINCE 0 fails for every message (they all have a mod-sequence)
    out = r.cmd(b"u", b"UID STORE 1:3 (UNCHANGEDSINCE 0) +FLAGS (\\Seen)")
    assert out[-1] == b"u OK [MODIFIED 1:3] Conditional STORE failed.", out


def test_search_modseq(env):
    # RFC 7162 §3.1.5: SEARCH MODSEQ "/flags/\\draft" all 620162338
    #   -> * SEARCH 2 5 6 7 11 12 18 19 20 23 (MODSEQ 917162500)
    r = _selected(env, 4)
    r.cmd(b"s", b"SELECT INBOX")
    base = max(_modseqs(r).values())
    r.cmd(b"a", b"STORE 2,4 +FLAGS (\\Draft)")
    high = _modseqs(r)[4]
    out = r.cmd(b"b", b'SEARCH MODSEQ "/flags/\\\\draft" all %d' % (base + 1))
    assert out[0] == b"* SEARCH 2 4 (MODSEQ %d)" % high, out
    assert r.cmd(b"c", b"UID SEARCH MODSEQ %d" % (base + 1))[0] == b"* SEARCH 2 4 (MODSEQ %d)" % high
    assert r.cmd(b"d", b"SEARCH MODSEQ %d" % (high + 1))[0] == b"* SEARCH"


def test_enable_and_unsolicited_fetch_carries_modseq(env):
    r = _selected(env, 2)
    assert r.cmd(b"e", b"ENABLE CONDSTORE")[0] == b"* ENABLED CONDSTORE"
    r.cmd(b"s", b"SELECT INBOX")
    other = Raw.tls(env)
    other.login()
    other.cmd(b"s", b"SELECT INBOX")
    other.cmd(b"x", b"STORE 2 +FLAGS (\\Answered)")
    out = r.cmd(b"n", b"NOOP")
    assert any(re.fullmatch(rb"\* 2 FETCH \(UID 2 FLAGS \((?:\\Recent )?\\Answered\) MODSEQ \(\d+\)\)", x)
               for x in out), out


def test_select_condstore_parameter_and_expunge_raises_highest(env):
    r = _selected(env, 2)
    out = r.cmd(b"s", b"SELECT INBOX (CONDSTORE)")
    high = _highest(out)
    r.cmd(b"d", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    r.cmd(b"x", b"EXPUNGE")
    m = re.search(rb"HIGHESTMODSEQ (\d+)", r.cmd(b"st", b"STATUS INBOX (HIGHESTMODSEQ)")[0])
    assert m and int(m.group(1)) > high + 1  # the flag change, then the expunge
    assert r.cmd(b"bad", b"SELECT INBOX (NOSUCH)")[-1].startswith(b"bad BAD")


def test_fetch_setting_seen_reports_uid_and_modseq(env):
    r = _selected(env, 2)
    r.cmd(b"e", b"ENABLE CONDSTORE")
    r.cmd(b"s", b"SELECT INBOX")
    before = _modseqs(r)[2]
    out = r.cmd(b"f", b"FETCH 2 (BODY[TEXT])")
    m = re.search(rb"FLAGS \((?:\\Recent )?\\Seen\) UID 2 MODSEQ \((\d+)\)\)$", out[0])
    assert m and int(m.group(1)) > before, out


@pytest.mark.parametrize("enabling", [
    b"FETCH 1 (MODSEQ)",
    b"SEARCH MODSEQ 1",
    b"STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)",
    b"FETCH 1 (FLAGS) (CHANGEDSINCE 1)",
])
def test_enabling_command_in_selected_state_sends_highestmodseq_once(env, enabling):
    """RFC 7162 §3.1: a CONDSTORE-enabling command in the selected state tells the client the
    mailbox's HIGHESTMODSEQ (untagged OK), as the SELECT did not (imaptest esearch-condstore)."""
    r = _selected(env)
    sel = r.cmd(b"s", b"SELECT INBOX")
    out = r.cmd(b"a", enabling)
    assert out[-1].startswith(b"a OK"), out
    codes = [x for x in out if x.startswith(b"* OK [HIGHESTMODSEQ ")]
    assert len(codes) == 1, out
    assert _highest(codes) >= _highest(sel)
    again = r.cmd(b"b", b"FETCH 1 (MODSEQ)")
    assert not any(x.startswith(b"* OK [HIGHESTMODSEQ") for x in again), again


def test_select_condstore_over_a_selected_mailbox_reports_only_the_new_one(env):
    r = _selected(env)
    r.cmd(b"c", b"CREATE Other")
    r.cmd(b"s", b"SELECT INBOX")
    out = r.cmd(b"t", b"SELECT Other (CONDSTORE)")
    closed = out.index(b"* OK [CLOSED] Previous mailbox closed.")
    codes = [i for i, x in enumerate(out) if x.startswith(b"* OK [HIGHESTMODSEQ ")]
    assert len(codes) == 1 and codes[0] > closed, out
