"""RFC 8437 UNAUTHENTICATE: back to the not-authenticated state on the same connection.

The session forgets the user: the selected mailbox is left without expunging, NOTIFY and
whatever ENABLE turned on are off, per-user commands are refused, and a LOGIN (the same
user or another) starts afresh.  TLS and COMPRESS, connection-level, stay.
"""

from __future__ import annotations

import pytest

from tests.protocol.imap.conftest import Raw, msg

pytestmark = pytest.mark.protocol


def _caps(r: Raw) -> list[bytes]:
    return r.cmd(b"c", b"CAPABILITY")[0].split()[2:]


def test_capability_only_once_authenticated(env):
    r = Raw.tls(env)
    assert b"UNAUTHENTICATE" not in _caps(r)
    assert r.cmd(b"u", b"UNAUTHENTICATE")[-1] == b"u BAD Command not valid in this state."
    r.login()
    assert b"UNAUTHENTICATE" in _caps(r)


def test_rfc_example_and_state_reset(env):
    env.deliver(msg("keep me"))
    r = Raw.tls(env)
    r.login()
    assert r.cmd(b"e", b"ENABLE CONDSTORE IMAP4rev2")[0] == b"* ENABLED CONDSTORE IMAP4rev2"
    r.cmd(b"s", b"SELECT INBOX")
    r.cmd(b"d", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert r.cmd(b"n", b"NOTIFY SET (selected (MessageNew MessageExpunge))")[-1].startswith(b"n OK")
    # RFC 8437 §3:  C: A01 UNAUTHENTICATE   S: A01 OK
    out = r.cmd(b"A01", b"UNAUTHENTICATE")
    assert len(out) == 1 and out[0].startswith(b"A01 OK [CAPABILITY "), out
    caps = out[0].split(b"]")[0].split()
    assert b"UNAUTHENTICATE" not in caps and b"AUTH=PLAIN" in caps, out
    # not authenticated any more
    assert r.cmd(b"l", b'LIST "" "*"')[-1] == b"l BAD Command not valid in this state."
    assert r.cmd(b"f", b"FETCH 1 FLAGS")[-1] == b"f BAD Command not valid in this state."
    env.deliver(msg("no push after UNAUTHENTICATE"))
    assert r.cmd(b"p", b"NOOP") == [b"p OK NOOP completed."]
    # a fresh login: nothing of the previous one is left
    r.login()
    out = r.cmd(b"s", b"SELECT INBOX")
    assert b"* 2 EXISTS" in out, out  # the \Deleted message was not expunged
    assert any(x == b"* 2 RECENT" for x in out), out  # rev1 again: RECENT is back
    assert not any(b"HIGHESTMODSEQ" in x for x in r.cmd(b"f", b"STORE 1 +FLAGS (\\Seen)")), \
        "CONDSTORE stayed enabled"
    assert r.cmd(b"q", b"SEARCH DELETED")[0] == b"* SEARCH 1"  # SEARCH, not ESEARCH


def test_login_as_another_user_after_unauthenticate(env):
    env.store.user("bob")
    env.deliver(msg("for alice"))
    r = Raw.tls(env)
    r.login()
    assert r.cmd(b"u", b"UNAUTHENTICATE")[-1].startswith(b"u OK")
    r.login("bob")
    out = r.cmd(b"s", b"SELECT INBOX")
    assert b"* 0 EXISTS" in out, out


def test_arguments_are_bad(env):
    r = Raw.tls(env)
    r.login()
    assert r.cmd(b"u", b"UNAUTHENTICATE now")[-1].startswith(b"u BAD")
    assert b"UNAUTHENTICATE" in _caps(r)  # still logged in
