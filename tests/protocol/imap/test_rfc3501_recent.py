"""RFC 3501 §2.3.2 \\Recent: exactly one session sees a new message as recent.

A message is new to the first read-write session that has its mailbox selected
when it arrives (delivery, APPEND, COPY, MOVE).  EXAMINE and STATUS see what no
session has claimed yet without claiming it.  The claim is kept in the folder's
uidlist (a first-recent UID, as Dovecot keeps one in its index), so it holds
across processes too.
"""

from __future__ import annotations

import re

import pytest

from esam_mail.store.maildir import MaildirStore
from tests.protocol.imap.conftest import Raw, msg

pytestmark = pytest.mark.protocol


def _session(env) -> Raw:
    r = Raw.tls(env)
    r.login()
    return r


def _recent_count(lines: list[bytes]) -> int | None:
    found = [int(m.group(1)) for x in lines if (m := re.fullmatch(rb"\* (\d+) RECENT", x))]
    return found[-1] if found else None


def _status_recent(r: Raw, box: bytes = b"INBOX") -> int:
    out = r.cmd(b"st", b"STATUS " + box + b" (RECENT)")
    m = re.search(rb"\(RECENT (\d+)\)", out[0])
    assert m, out
    return int(m.group(1))


def test_delivery_is_recent_in_exactly_one_session(env):
    env.deliver(msg("one"))
    watcher = _session(env)
    assert _status_recent(watcher) == 1
    a, b = _session(env), _session(env)
    assert _recent_count(a.cmd(b"s", b"SELECT INBOX")) == 1
    assert b"\\Recent" in a.cmd(b"f", b"FETCH 1 FLAGS")[0]
    assert _recent_count(b.cmd(b"s", b"SELECT INBOX")) == 0
    assert b"\\Recent" not in b.cmd(b"f", b"FETCH 1 FLAGS")[0]
    assert _status_recent(watcher) == 0
    # a new delivery while both have INBOX selected: whoever looks first gets it
    env.deliver(msg("two"))
    assert _status_recent(watcher) == 1
    out_b = b.cmd(b"n", b"NOOP")
    assert b"* 2 EXISTS" in out_b and _recent_count(out_b) == 1
    out_a = a.cmd(b"n", b"NOOP")
    assert b"* 2 EXISTS" in out_a and _recent_count(out_a) == 1  # still only message 1
    assert a.cmd(b"r", b"SEARCH RECENT")[0] == b"* SEARCH 1"
    assert b.cmd(b"r", b"SEARCH RECENT")[0] == b"* SEARCH 2"
    assert b.cmd(b"o", b"SEARCH OLD")[0] == b"* SEARCH 1"
    assert _status_recent(watcher) == 0
    # recent lasts for the session: a re-SELECT does not see it again
    assert _recent_count(a.cmd(b"s2", b"SELECT INBOX")) == 0


def test_examine_and_status_do_not_claim(env):
    env.deliver(msg("one"))
    e = _session(env)
    assert _recent_count(e.cmd(b"e", b"EXAMINE INBOX")) == 1
    assert _status_recent(e) == 1
    s = _session(env)
    assert _recent_count(s.cmd(b"s", b"SELECT INBOX")) == 1


def test_search_new_is_recent_and_unseen(env):
    env.deliver(msg("one"))
    env.deliver(msg("two"))
    r = _session(env)
    r.cmd(b"s", b"SELECT INBOX")
    assert r.cmd(b"a", b"SEARCH NEW")[0] == b"* SEARCH 1 2"
    r.cmd(b"b", b"STORE 2 +FLAGS (\\Seen)")
    assert r.cmd(b"c", b"SEARCH NEW")[0] == b"* SEARCH 1"
    assert r.cmd(b"d", b"SEARCH RECENT")[0] == b"* SEARCH 1 2"


def test_append_and_copy_arrivals_are_recent(env):
    env.deliver(msg("one"))
    r = _session(env)
    r.cmd(b"s", b"SELECT INBOX")
    data = msg("appended")
    r.send(b"a APPEND INBOX {%d}\r\n" % len(data))
    assert r.line().startswith(b"+")
    r.send(data + b"\r\n")
    out = r.until(b"a")
    assert b"* 2 EXISTS" in out and _recent_count(out) == 2, out
    assert r.cmd(b"b", b"SEARCH RECENT")[0] == b"* SEARCH 1 2"
    r.cmd(b"c", b"COPY 1:2 Archive")
    other = _session(env)
    assert _status_recent(other, b"Archive") == 2
    assert _recent_count(other.cmd(b"s", b"SELECT Archive")) == 2
    other.cmd(b"m", b"MOVE 1 Junk")
    assert _status_recent(r, b"Junk") == 1


def test_recent_claim_holds_across_processes(env, tmp_path):
    """Two store objects on one tree stand for two processes."""
    env.deliver(msg("one"))
    env.deliver(msg("two"))
    other = MaildirStore(env.store.root, fsync=False)
    f_other = other.user("alice").folder("INBOX")
    uids = [m.uid for m in f_other.sync()]
    assert f_other.recent(claim=True, upto=uids[0]) == {uids[0]}
    r = _session(env)
    assert _recent_count(r.cmd(b"s", b"SELECT INBOX")) == 1
    assert r.cmd(b"a", b"SEARCH RECENT")[0] == b"* SEARCH 2"
    assert f_other.recent(claim=True, upto=uids[-1]) == set()
