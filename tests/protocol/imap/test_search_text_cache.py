"""SEARCH TEXT and BODY read each message file once per process: the decoded text is kept
(esam_mail.imap.textcache) by the folder's id (login, name, UIDVALIDITY) and the
message's Maildir key, which never names other content.  Before, every such SEARCH read
and parsed every message of the folder again (issue 20)."""

from __future__ import annotations

from typing import Any

import pytest

from esam_mail.imap import textcache
from esam_mail.store.maildir import MaildirFolder
from tests.protocol.imap.conftest import Env, Raw, msg

pytestmark = pytest.mark.protocol


@pytest.fixture
def reads(monkeypatch: Any) -> list[int]:
    """A fresh text cache, and every message read by a search recorded (its UID)."""
    monkeypatch.setattr(textcache, "TEXTS", textcache.TextCache())
    got: list[int] = []
    inner = MaildirFolder.read

    def read(self: MaildirFolder, uid: int) -> bytes:
        got.append(uid)
        return inner(self, uid)

    monkeypatch.setattr(MaildirFolder, "read", read)
    return got


def _search(c: Raw, tag: bytes, what: bytes) -> list[int]:
    r = c.cmd(tag, b"UID SEARCH " + what)
    assert r[-1].startswith(tag + b" OK"), r
    line = next(ln for ln in r if ln.startswith(b"* SEARCH"))
    return [int(x) for x in line.split()[2:]]


def test_the_second_search_reads_no_file_and_finds_the_same(env: Env, reads: list[int]) -> None:
    env.deliver(msg("fox one", body="The quick brown fox\r\n"))
    env.deliver(msg("dog", body="A lazy dog\r\n"))
    env.deliver(msg("fox three", body="No animal here\r\n", extra="X-Tag: vixen\r\n"))
    c = Raw.tls(env)
    c.login()
    c.cmd(b"S", b"SELECT INBOX")
    assert _search(c, b"A", b"TEXT fox") == [1, 3]  # the summaries are made too (and kept)
    assert set(reads) == {1, 2, 3}
    reads.clear()
    assert _search(c, b"B", b"TEXT FOX") == [1, 3]
    assert _search(c, b"C", b"TEXT vixen") == [3]
    assert reads == []
    # BODY is the text parts alone: kept apart from TEXT's (headers included)
    assert _search(c, b"D", b"BODY fox") == [1]
    assert sorted(reads) == [1, 2, 3]
    reads.clear()
    assert _search(c, b"E", b"BODY vixen") == []
    assert reads == []
    # a new message is read (once); an expunged one is gone from the results
    env.deliver(msg("fox four", body="fox\r\n"))
    assert b"* 4 EXISTS" in c.cmd(b"N", b"NOOP")
    assert _search(c, b"F", b"TEXT fox") == [1, 3, 4]
    assert set(reads) == {4}
    c.cmd(b"G", b"STORE 1 +FLAGS (\\Deleted)")
    c.cmd(b"H", b"EXPUNGE")
    assert _search(c, b"I", b"TEXT fox") == [3, 4]


def test_a_failed_read_is_not_kept(env: Env, reads: list[int], monkeypatch: Any) -> None:
    """A message whose file could not be read during a search (gone meanwhile) matches
    nothing then; its empty text is not kept, so the next search reads it again."""
    env.deliver(msg("fox", body="fox\r\n"))
    c = Raw.tls(env)
    c.login()
    c.cmd(b"S", b"SELECT INBOX")
    assert _search(c, b"W", b"SUBJECT fox") == [1]  # summaries made and kept
    inner = MaildirFolder.read

    def gone(self: MaildirFolder, uid: int) -> bytes:
        raise FileNotFoundError(uid)

    monkeypatch.setattr(MaildirFolder, "read", gone)
    assert _search(c, b"A", b"TEXT fox") == []
    monkeypatch.setattr(MaildirFolder, "read", inner)
    assert _search(c, b"B", b"TEXT fox") == [1]
