"""RFC 7888 LITERAL+: non-synchronizing literals of any size once logged in.

Over the APPEND / command caps the octets are read and dropped and the command is
answered NO [TOOBIG]; the connection stays usable.  Before login only LITERAL- holds.
"""

from __future__ import annotations

import pytest

from tests.protocol.imap.conftest import Raw, msg

pytestmark = pytest.mark.protocol


def test_literal_plus_advertised_after_login(env):
    r = Raw.tls(env)
    assert b"LITERAL-" in r.greeting
    r.login()
    caps = r.cmd(b"c", b"CAPABILITY")[0].split()
    assert b"LITERAL+" in caps and b"LITERAL-" not in caps


def test_big_nonsync_append_and_several_literals(env):
    # RFC 7888 §3 example: A001 LOGIN {11+} FRED FOOBAR {7+} fat man
    r = Raw.tls(env)
    r.login()
    data = msg("big", body="y" * 200_000 + "\r\n")
    r.send(b"a APPEND INBOX (\\Seen) {%d+}\r\n" % len(data) + data + b"\r\n")
    assert r.until(b"a")[-1].startswith(b"a OK [APPENDUID")
    r.cmd(b"s", b"SELECT INBOX")
    out = r.cmd(b"f", b"FETCH 1 RFC822.SIZE")
    assert b"RFC822.SIZE %d" % len(data) in out[0]
    r.send(b"b STATUS {5+}\r\nINBOX (MESSAGES)\r\n")
    assert r.until(b"b")[0] == b'* STATUS "INBOX" (MESSAGES 1)'


def test_over_cap_nonsync_is_read_and_refused(env):
    r = Raw.tls(env)
    r.login()
    big = b"z" * (1024 * 1024 + 10)  # the test listener's APPEND cap is 1 MiB
    r.send(b"a APPEND INBOX {%d+}\r\n" % len(big) + big + b"\r\n")
    assert r.until(b"a") == [b"a NO [TOOBIG] Literal too large."]
    assert r.cmd(b"b", b"NOOP")[-1] == b"b OK NOOP completed."  # still in sync
    # two literals in one command, the first too big for a non-APPEND command
    r.send(b"c LOGIN {300000+}\r\n" + b"q" * 300000 + b" {2+}\r\npw\r\n")
    assert r.until(b"c") == [b"c NO [TOOBIG] Literal too large."]
    r.cmd(b"s", b"SELECT INBOX")
    assert r.cmd(b"d", b"SEARCH ALL")[0] == b"* SEARCH"  # nothing was appended
