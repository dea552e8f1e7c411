"""RFC 3502 MULTIAPPEND: several messages in one APPEND, stored all or none."""

from __future__ import annotations

import re

import pytest

from tests.protocol.imap.conftest import Raw, msg

pytestmark = pytest.mark.protocol


def _append(r: Raw, tag: bytes, head: bytes, parts: list[tuple[bytes, bytes]]) -> list[bytes]:
    """``parts``: (prefix before the literal, message); literals sent synchronizing."""
    r.send(tag + b" " + head)
    for i, (prefix, data) in enumerate(parts):
        r.send(prefix + b"{%d}\r\n" % len(data))
        line = r.line()
        if not line.startswith(b"+"):
            return [line]
        r.send(data + (b"\r\n" if i == len(parts) - 1 else b""))
    return r.until(tag)


def test_capability(env):
    r = Raw.tls(env)
    r.login()
    assert b"MULTIAPPEND" in r.cmd(b"c", b"CAPABILITY")[0].split()


def test_three_messages_one_command(env):
    # RFC 3502 §6.3.11: A003 APPEND saved-messages (\Seen) {329} ... (\Seen) " 7-Feb-1994
    #   22:43:04 -0800" {295} ...  -> A003 OK APPEND completed
    r = Raw.tls(env)
    r.login()
    out = _append(r, b"A003", b"APPEND Archive ", [
        (b"(\\Seen) ", msg("first")),
        (b' (\\Seen) " 7-Feb-1994 22:43:04 -0800" ', msg("second")),
        (b" ", msg("third")),
    ])
    m = re.fullmatch(rb"A003 OK \[APPENDUID \d+ 1:3\] APPEND completed\.", out[-1])
    assert m, out
    r.cmd(b"s", b"SELECT Archive")
    flags = r.cmd(b"f", b"FETCH 1:3 (FLAGS INTERNALDATE)")
    assert b"\\Seen" in flags[0] and b"\\Seen" in flags[1] and b"\\Seen" not in flags[2]
    assert b'INTERNALDATE "08-Feb-1994 06:43:04 +0000"' in flags[1]  # the same instant


def test_all_or_nothing(env):
    # the second message does not fit the quota: the first is taken back
    filler = b"Subject: filler\r\n\r\n" + b"f" * (10 * 1024 * 1024 - 3000)
    env.store.user("alice").folder("Trash").append(filler)  # the quota is 10 MiB
    r = Raw.tls(env)
    r.login()
    out = _append(r, b"A004", b"APPEND INBOX ", [
        (b"", msg("small")),
        (b" ", msg("big", body="x" * 5000 + "\r\n")),
    ])
    assert out[-1].startswith(b"A004 NO"), out
    assert r.cmd(b"st", b"STATUS INBOX (MESSAGES)")[0] == b'* STATUS "INBOX" (MESSAGES 0)'
    out = _append(r, b"A005", b"APPEND Nope ", [(b"", msg("a")), (b" ", msg("b"))])
    assert out[-1].startswith(b"A005 NO [TRYCREATE]"), out


def test_message_count_is_capped(env):
    r = Raw.tls(env)
    r.login()
    one = msg("tiny")
    body = b"".join(b" {%d+}\r\n" % len(one) + one for _ in range(101))
    r.send(b"A006 APPEND INBOX" + body + b"\r\n")
    assert r.until(b"A006") == [b"A006 NO [TOOBIG] Literal too large."]
    assert r.cmd(b"n", b"NOOP")[-1] == b"n OK NOOP completed."  # still in sync
    assert r.cmd(b"st", b"STATUS INBOX (MESSAGES)")[0] == b'* STATUS "INBOX" (MESSAGES 0)'
