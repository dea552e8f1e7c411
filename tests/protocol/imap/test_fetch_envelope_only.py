"""FETCH of ENVELOPE with no other parsed item parses the header alone (issue 20).

A mail list view (the bench's session, mutt's index) asks for FLAGS, RFC822.SIZE and
ENVELOPE.  The first such FETCH of a folder used to parse every message whole (MIME tree,
BODYSTRUCTURE twice, SEARCH text, SORT keys): a third of that CPU is the envelope.  The
envelope-only summary must render exactly what the full one renders, must never pass for
a full summary (in the process or in the folder's cache, which other workers read), and a
full summary already at hand serves it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from esam_mail.imap import mime
from esam_mail.store.cache import close_shared_folder_dbs
from tests.protocol.imap.conftest import Env, Raw, msg

pytestmark = pytest.mark.protocol

MESSAGES = [
    msg("plain"),
    msg("=?UTF-8?B?0KHRh9C10YIg4oSWIDE=?=", frm="=?UTF-8?B?0JvQvtCw0LQ=?= <load@client.test>"),
    msg("group", frm="undisclosed-recipients:;", extra="Cc: A <a@x.org>, (c) b@y.org\r\n"
        "Reply-To: r@z.org\r\nIn-Reply-To: <p@x.org>\r\n"),
    msg("multi", extra='MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n',
        body="--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: text/html\r\n\r\n"
             "<p>x</p>\r\n--b--\r\n"),
]


def _count(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"analyse": 0, "envelope_of": 0}
    for name in calls:
        real = getattr(mime, name)

        def counted(data: bytes, _real: Any = real, _name: str = name) -> Any:
            calls[_name] += 1
            return _real(data)

        monkeypatch.setattr(mime, name, counted)
    return calls


def _fetched(lines: list[bytes], item: bytes) -> dict[int, bytes]:
    """seq -> the raw FETCH line text from ``item`` on (literals joined in)."""
    out = {}
    for ln in lines:
        m = re.match(rb"\* (\d+) FETCH \(", ln)
        if m and item in ln:
            out[int(m.group(1))] = ln[ln.index(item):]
    return out


def _selected(env: Env) -> Raw:
    """A TLS session with INBOX selected."""
    c = Raw.tls(env)
    c.login()
    assert c.cmd(b"S", b"SELECT INBOX")[-1].startswith(b"S OK")
    return c


def _forget_process_summaries(env: Env) -> None:
    """Act as another worker process: no summaries in memory, folder files reopened."""
    for f in env.factories:
        lru: Any = f.mailboxes.summaries
        lru._d.clear()
    close_shared_folder_dbs()


def test_envelope_alone_parses_headers_only_and_renders_the_same(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    for m in MESSAGES:
        env.deliver(m)
    calls = _count(monkeypatch)
    c = _selected(env)
    r = c.cmd(b"F", b"FETCH 1:* (FLAGS RFC822.SIZE ENVELOPE)")
    assert r[-1].startswith(b"F OK"), r
    alone = _fetched(r, b"ENVELOPE (")
    assert len(alone) == len(MESSAGES)
    assert calls == {"analyse": 0, "envelope_of": len(MESSAGES)}, calls

    # the full summaries (BODYSTRUCTURE wants them) render the very same envelopes
    r = c.cmd(b"B", b"FETCH 1:* (ENVELOPE BODYSTRUCTURE)")
    assert r[-1].startswith(b"B OK"), r
    assert calls["analyse"] == len(MESSAGES)
    full = _fetched(r, b"ENVELOPE (")
    for seq, text in alone.items():
        assert full[seq].startswith(text.rstrip(b")")), (text, full[seq])
    assert b'BODYSTRUCTURE (("TEXT" "PLAIN"' in b"".join(r)

    # a full summary at hand serves a later envelope-only FETCH: nothing parsed again
    r = c.cmd(b"G", b"FETCH 1:* (ENVELOPE)")
    assert r[-1].startswith(b"G OK"), r
    assert calls == {"analyse": len(MESSAGES), "envelope_of": len(MESSAGES)}, calls
    assert _fetched(r, b"ENVELOPE (") == alone


def test_an_envelope_only_cache_entry_never_passes_for_a_full_summary(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    for m in MESSAGES:
        env.deliver(m)
    c = _selected(env)
    assert c.cmd(b"F", b"FETCH 1:* ENVELOPE")[-1].startswith(b"F OK")
    _forget_process_summaries(env)  # the folder's cache now holds envelope-only entries
    calls = _count(monkeypatch)
    r = c.cmd(b"B", b"FETCH 4 (BODYSTRUCTURE BODY[1])")
    assert r[-1].startswith(b"B OK"), r
    text = b"".join(r)
    assert b'BODYSTRUCTURE (("TEXT" "PLAIN" NIL NIL NIL "7BIT" 2 1 NIL NIL NIL NIL)' \
        b'("TEXT" "HTML" NIL NIL NIL "7BIT" 8 1 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "b")' in text, text
    assert b"BODY[1] {2}\r\nhi" in text, text
    assert calls["analyse"] == 1, calls

    # and the other way: another worker's envelope FETCH reads the full entry, parses nothing
    _forget_process_summaries(env)
    assert c.cmd(b"A", b"FETCH 1:* (ENVELOPE BODYSTRUCTURE)")[-1].startswith(b"A OK")
    _forget_process_summaries(env)
    calls = _count(monkeypatch)
    r = c.cmd(b"G", b"FETCH 1:* ENVELOPE")
    assert r[-1].startswith(b"G OK"), r
    assert len(_fetched(r, b"ENVELOPE (")) == len(MESSAGES)
    assert calls == {"analyse": 0, "envelope_of": 0}, calls


def test_envelope_with_a_part_section_still_gets_the_full_summary(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.deliver(MESSAGES[3])
    calls = _count(monkeypatch)
    c = _selected(env)
    r = c.cmd(b"F", b"FETCH 1 (ENVELOPE BODY.PEEK[2])")
    assert r[-1].startswith(b"F OK"), r
    assert b"<p>x</p>" in b"".join(r), r
    assert calls["analyse"] == 1, calls


def test_envelope_of_a_large_message_reads_its_header_only(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from esam_mail.store import maildir

    env.deliver(msg("attachment", body="A" * 2_000_000 + "\r\n"))
    read: list[int] = []
    real = maildir._read_file

    def counted(path: str, *, head: bool) -> bytes:
        data = real(path, head=head)
        read.append(len(data))
        return data

    monkeypatch.setattr(maildir, "_read_file", counted)
    c = _selected(env)
    r = c.cmd(b"F", b"FETCH 1 (RFC822.SIZE ENVELOPE)")
    assert r[-1].startswith(b"F OK"), r
    assert b'"attachment"' in b"".join(r)
    assert read and max(read) <= 1 << 16, read  # not the 2 MB
