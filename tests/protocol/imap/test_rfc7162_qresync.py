"""RFC 7162 QRESYNC, built from the RFC's examples (values adapted to the run).

ENABLE QRESYNC; SELECT with (QRESYNC (uidvalidity modseq [known-uids])) answers
VANISHED (EARLIER) and the changed messages' FETCH; afterwards expunges are
reported as VANISHED; UID FETCH (CHANGEDSINCE n VANISHED); [CLOSED].
"""

from __future__ import annotations

import re

import pytest

from tests.protocol.imap.conftest import Raw, msg

pytestmark = pytest.mark.protocol


def _client(env) -> Raw:
    r = Raw.tls(env)
    r.login()
    assert r.cmd(b"e", b"ENABLE QRESYNC")[0] == b"* ENABLED QRESYNC"
    return r


def _state(r: Raw, box: bytes = b"INBOX") -> tuple[int, int]:
    out = r.cmd(b"s", b"SELECT " + box)
    uv = int(re.search(rb"\[UIDVALIDITY (\d+)\]", b"\n".join(out)).group(1))
    hm = int(re.search(rb"\[HIGHESTMODSEQ (\d+)\]", b"\n".join(out)).group(1))
    return uv, hm


def test_capability_and_enable(env):
    r = Raw.tls(env)
    r.login()
    caps = r.cmd(b"c", b"CAPABILITY")[0].split()
    assert b"QRESYNC" in caps and b"CONDSTORE" in caps
    assert r.cmd(b"a", b"SELECT INBOX (QRESYNC (1 1))")[-1].startswith(b"a BAD")  # not enabled
    assert r.cmd(b"e", b"ENABLE QRESYNC CONDSTORE")[0] == b"* ENABLED QRESYNC CONDSTORE"


def test_select_qresync_reports_vanished_and_changed(env):
    for i in range(6):
        env.deliver(msg(f"m{i}"))
    r = _client(env)
    uv, hm = _state(r)
    r.cmd(b"u", b"UNSELECT")
    # meanwhile another client changes 2, expunges 3 and 5
    other = _client(env)
    other.cmd(b"s", b"SELECT INBOX")
    other.cmd(b"f", b"STORE 2 +FLAGS (\\Answered)")
    other.cmd(b"d", b"STORE 3,5 +FLAGS.SILENT (\\Deleted)")
    out = other.cmd(b"x", b"EXPUNGE")
    assert out[0] == b"* VANISHED 3,5", out  # QRESYNC on: no EXPUNGE responses
    # RFC 7162 §3.2.5.2: A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))
    out = r.cmd(b"A02", b"SELECT INBOX (QRESYNC (%d %d 1:6))" % (uv, hm))
    assert b"* VANISHED (EARLIER) 3,5" in out, out
    fetches = [x for x in out if b" FETCH " in x]
    assert len(fetches) == 1, out
    assert re.fullmatch(rb"\* 2 FETCH \(UID 2 FLAGS \((?:\\Recent )?\\Answered\) MODSEQ \(\d+\)\)",
                        fetches[0]), out
    assert out.index(b"* VANISHED (EARLIER) 3,5") < out.index(fetches[0])
    assert out[-1].startswith(b"A02 OK [READ-WRITE]")
    # known-uids limit the report
    r.cmd(b"u2", b"UNSELECT")
    out = r.cmd(b"A03", b"SELECT INBOX (QRESYNC (%d %d 4:6))" % (uv, hm))
    assert b"* VANISHED (EARLIER) 5" in out and not any(b" FETCH " in x for x in out), out
    # a wrong UIDVALIDITY: a plain SELECT, nothing more
    r.cmd(b"u3", b"UNSELECT")
    out = r.cmd(b"A04", b"SELECT INBOX (QRESYNC (%d %d))" % (uv + 1, hm))
    assert not any(b"VANISHED" in x or b" FETCH " in x for x in out), out


def test_uid_fetch_vanished_and_closed(env):
    for i in range(4):
        env.deliver(msg(f"m{i}"))
    r = _client(env)
    _uv, hm = _state(r)
    r.cmd(b"d", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    r.cmd(b"x", b"EXPUNGE")
    r.cmd(b"f", b"UID STORE 2 +FLAGS (\\Flagged)")
    # RFC 7162 §3.2.6: s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)
    out = r.cmd(b"s100", b"UID FETCH 1:4 (FLAGS) (CHANGEDSINCE %d VANISHED)" % hm)
    assert out[0] == b"* VANISHED (EARLIER) 1", out
    assert re.fullmatch(rb"\* 1 FETCH \(UID 2 FLAGS \((?:\\Recent )?\\Flagged\) MODSEQ \(\d+\)\)",
                        out[1]), out
    assert r.cmd(b"b", b"FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)")[-1].startswith(b"b BAD")
    # RFC 7162 §3.2.11: a SELECT while a mailbox is selected closes it with [CLOSED]
    out = r.cmd(b"c", b"SELECT Archive")
    assert out[0].startswith(b"* OK [CLOSED]"), out
