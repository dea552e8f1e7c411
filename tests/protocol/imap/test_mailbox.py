"""SELECT/EXAMINE responses, FETCH exactness, STORE, APPEND, literals."""

from __future__ import annotations

import re

from tests.protocol.imap.conftest import PASSWORD, Raw, msg

MIXED = (
    b"From: Carol <carol@ex.org>\r\nTo: alice@esam.test\r\nSubject: parts\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="MiXeD-BoUnDaRy"\r\n\r\n'
    b"preamble\r\n--MiXeD-BoUnDaRy\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n"
    b"Hello \xc3\xa9t\xc3\xa9\r\n--MiXeD-BoUnDaRy\r\n"
    b'Content-Type: application/pdf; name="Report-Q1.PDF"\r\n'
    b'Content-Disposition: attachment; filename="Report-Q1.PDF"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--MiXeD-BoUnDaRy--\r\n"
)


def test_select_sends_every_required_response(env):
    env.deliver(msg("one"))
    env.deliver(msg("two"))
    r = Raw.tls(env)
    r.login()
    r.cmd(b"s0", b"SELECT INBOX")
    r.cmd(b"st", b"STORE 1 +FLAGS (\\Seen)")
    out = r.cmd(b"s", b"SELECT INBOX")
    text = b"\n".join(out)
    assert b"* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft)" in out
    assert b"* 2 EXISTS" in out and b"* 0 RECENT" in out
    assert re.search(rb"\* OK \[PERMANENTFLAGS \(.*\\\*\)\]", text)
    assert b"* OK [UNSEEN 2] First unseen." in out
    assert re.search(rb"\* OK \[UIDVALIDITY \d+\]", text)
    assert b"* OK [UIDNEXT 3] Predicted next UID." in out
    assert out[-1] == b"s OK [READ-WRITE] SELECT completed."
    out = r.cmd(b"e", b"EXAMINE INBOX")
    assert out[-1] == b"e OK [READ-ONLY] EXAMINE completed."
    assert b"* OK [PERMANENTFLAGS ()] Flags permitted." in out
    assert r.cmd(b"x", b"STORE 1 +FLAGS (\\Deleted)")[-1].startswith(b"x NO [READ-ONLY]")


def test_recent_on_first_select_only(env):
    env.deliver(msg())
    r1 = Raw.tls(env)
    r1.login()
    assert b"* 1 RECENT" in r1.cmd(b"a", b"SELECT INBOX")
    r2 = Raw.tls(env)
    r2.login()
    assert b"* 0 RECENT" in r2.cmd(b"a", b"SELECT INBOX")


def test_pipelined_select_and_fetch(env):
    env.deliver(msg("pipelined"))
    r = Raw.tls(env)
    r.login()
    r.send(b"a SELECT INBOX\r\nb FETCH 1 (UID FLAGS)\r\nc NOOP\r\n")
    out = r.until(b"c")
    tags = [x.split(b" ")[0] for x in out if not x.startswith(b"*")]
    assert tags == [b"a", b"b", b"c"]
    assert any(x.startswith(b"* 1 FETCH (UID 1 FLAGS") for x in out)


def test_select_is_one_pool_call(env):
    """SELECT opens the folder, takes its snapshot and reads UIDNEXT in one call on the
    mailbox pool (three thread hops before, issue 20); the answer is unchanged: EXISTS,
    RECENT claimed, UIDNEXT after the highest UID."""
    env.deliver(msg("one"))
    env.deliver(msg("two"))
    service = env.factories[1].mailboxes
    calls: list[str] = []
    real = service.run

    async def counting(login, folder, fn, *args):
        calls.append(folder)
        return await real(login, folder, fn, *args)

    service.run = counting
    r = Raw.tls(env)
    r.login()
    out = r.cmd(b"s", b"SELECT INBOX")
    assert calls == ["INBOX"], calls
    assert b"* 2 EXISTS" in out and b"* 2 RECENT" in out
    assert any(line.startswith(b"* OK [UIDNEXT 3]") for line in out), out
    assert out[-1].startswith(b"s OK [READ-WRITE]")
    calls.clear()
    out = r.cmd(b"e", b"EXAMINE INBOX")
    assert calls == ["INBOX"] and b"* 0 RECENT" in out and out[-1].startswith(b"e OK [READ-ONLY]")


def test_select_missing_mailbox(env):
    c = env.login()
    typ, data = c.select("Nope")
    assert typ == "NO" and b"[NONEXISTENT]" in data[0]


def test_partial_fetch_returns_exactly_len_bytes(env):
    body = b"".join(b"line %03d of the body\r\n" % i for i in range(200))
    data = msg(body=body.decode())
    env.deliver(data)
    c = env.login()
    c.select("INBOX")
    chunks = []
    for start in range(0, len(data), 1000):
        typ, resp = c.fetch("1", f"(BODY.PEEK[]<{start}.1000>)")
        assert typ == "OK"
        label, chunk = resp[0]
        assert label.endswith(b"BODY[]<%d> {%d}" % (start, len(chunk)))
        assert len(chunk) == min(1000, len(data) - start)
        chunks.append(chunk)
    assert b"".join(chunks) == data
    typ, resp = c.fetch("1", f"(BODY.PEEK[]<{len(data) + 10}.50>)")
    assert resp[0][1] == b"" and resp[0][0].endswith(b"{0}")
    typ, resp = c.fetch("1", "(BODY.PEEK[TEXT]<0.5>)")
    assert resp[0][1] == b"line "


def test_body_is_byte_identical_and_sizes_agree(env):
    """8-bit bytes come back as stored; a NUL (only reachable by a message put into the store
    by other means: SMTP refuses it) is served as 0x80, as Dovecot does, since RFC 3501/9051
    forbid NUL outside literal8; the size stays the same."""
    data = MIXED + b"\x00\xff trailing 8bit without newline"
    served = data.replace(b"\x00", b"\x80")
    env.deliver(data)
    c = env.login()
    c.select("INBOX")
    _, resp = c.fetch("1", "(RFC822.SIZE BODY.PEEK[])")
    assert resp[0][1] == served
    assert b"RFC822.SIZE %d" % len(served) in resp[0][0]
    _typ, resp = c.fetch("1", "(RFC822)")
    assert resp[0][1] == served
    r = Raw.tls(env)  # BINARY[] (RFC 3516): the stored octets exactly, as literal8
    r.login()
    r.cmd(b"s", b"EXAMINE INBOX")
    out = r.cmd(b"b", b"FETCH 1 (BINARY.PEEK[])")
    assert out[0] == b"* 1 FETCH (BINARY[] ~{%d}\r\n" % len(data) + data + b")"


def test_bodystructure_keeps_parameter_value_case(env):
    env.deliver(MIXED)
    c = env.login()
    c.select("INBOX")
    _, resp = c.fetch("1", "(BODYSTRUCTURE)")
    bs = resp[0]
    assert b'"BOUNDARY" "MiXeD-BoUnDaRy"' in bs
    assert b'("NAME" "Report-Q1.PDF")' in bs
    assert b'("ATTACHMENT" ("FILENAME" "Report-Q1.PDF"))' in bs
    assert b'"TEXT" "PLAIN" ("CHARSET" "UTF-8") NIL NIL "7BIT" 11 1' in bs
    _typ, resp = c.fetch("1", "(BODY)")
    assert b'"MIXED")' in resp[0] and b"ATTACHMENT" not in resp[0]


def test_sections(env):
    env.deliver(MIXED)
    c = env.login()
    c.select("INBOX")
    _, resp = c.fetch("1", "(BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    items = [x for x in resp if isinstance(x, tuple)]
    assert items[0][1] == "Hello été".encode()
    assert items[1][1].startswith(b'Content-Type: application/pdf; name="Report-Q1.PDF"\r\n')
    assert items[1][1].endswith(b"base64\r\n\r\n")
    assert items[2][1] == b"Subject: parts\r\n\r\n"
    assert b"BODY[HEADER.FIELDS (SUBJECT)]" in items[2][0]
    _, resp = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS.NOT (FROM TO SUBJECT MIME-VERSION)])")
    assert resp[0][1].startswith(b"Content-Type: multipart/mixed")
    _typ, resp = c.fetch("1", "(BODY.PEEK[2])")
    assert resp[0][1] == b"JVBERi0xLjQK"


def test_fetch_body_sets_seen_unless_peek(env):
    env.deliver(msg())
    c = env.login()
    c.select("INBOX")
    _, resp = c.fetch("1", "(BODY.PEEK[])")
    assert b"FLAGS" not in resp[0][0]
    _, resp = c.fetch("1", "(FLAGS)")
    assert b"\\Seen" not in resp[0]
    _typ, resp = c.fetch("1", "(BODY[])")
    flat = b"".join(x if isinstance(x, bytes) else x[0] for x in resp)
    assert b"\\Seen" in flat
    c2 = env.login()
    c2.select("INBOX", readonly=True)
    assert b"\\Seen" in c2.fetch("1", "(FLAGS)")[1][0]


def test_fetch_macros_and_internaldate(env):
    env.deliver(msg())
    c = env.login()
    c.select("INBOX")
    _, resp = c.fetch("1", "ALL")
    assert re.search(rb'INTERNALDATE "\d\d-\w{3}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}"', resp[0])
    assert b"ENVELOPE (" in resp[0] and b"RFC822.SIZE" in resp[0]
    _, resp = c.fetch("1", "FULL")
    assert b"BODY (" in resp[0]
    _typ, resp = c.uid("FETCH", "1", "FAST")
    assert b"UID 1" in resp[0]


def test_fetch_bad_syntax_and_bad_message_number(env):
    env.deliver(msg())
    r = Raw.tls(env)
    r.login()
    r.cmd(b"s", b"SELECT INBOX")
    assert r.cmd(b"a", b"FETCH 1 (BODY[XYZ])")[-1].startswith(b"a BAD")
    assert r.cmd(b"b", b"FETCH 5 (FLAGS)")[-1].startswith(b"b BAD")
    assert r.cmd(b"c", b"UID FETCH 5:* (FLAGS)")[-1] == b"c OK FETCH completed."
    assert r.cmd(b"d", b"FETCH 1 (BODY.PEEK[3])")[0] == b"* 1 FETCH (BODY[3] NIL)"


def test_store_and_expunge(env):
    for i in range(3):
        env.deliver(msg(f"m{i}"))
    c = env.login()
    c.select("INBOX")
    _, resp = c.store("2", "+FLAGS", "(\\Deleted $Label1)")
    assert b"\\Deleted" in resp[0] and b"$Label1" in resp[0]
    _, resp = c.store("1", "FLAGS.SILENT", "(\\Flagged)")
    assert resp == [None]
    _, resp = c.expunge()
    assert resp == [b"2"]
    _, resp = c.fetch("1:*", "(UID FLAGS)")
    assert [re.search(rb"UID (\d+)", x).group(1) for x in resp] == [b"1", b"3"]
    assert b"\\Flagged" in resp[0]
    _typ, resp = c.select("INBOX")
    assert b"$Label1" not in b" ".join(c.untagged_responses.get("FLAGS", [b""]))


def test_append_without_and_with_flags(env):
    c = env.login()
    typ, resp = c.append("INBOX", None, None, msg("no flags"))
    assert typ == "OK"
    m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", resp[0])
    assert m and m.group(2) == b"1"
    typ, resp = c.append("Drafts", "(\\Draft \\Seen)", '"05-Mar-2024 10:11:12 +0100"',
                         msg("draft"))
    assert typ == "OK" and b"APPENDUID" in resp[0]
    c.select("Drafts")
    typ, resp = c.fetch("1", "(FLAGS INTERNALDATE BODY.PEEK[])")
    assert b"\\Draft" in resp[0][0] and b"\\Seen" in resp[0][0]
    assert b'INTERNALDATE "05-Mar-2024' in resp[0][0]
    assert resp[0][1] == msg("draft")


def test_append_to_missing_folder_says_trycreate(env):
    c = env.login()
    typ, resp = c.append("NoSuchFolder", None, None, msg())
    assert typ == "NO" and resp[0].startswith(b"[TRYCREATE]")


def test_append_literal_over_cap_refused_before_continuation(env):
    r = Raw.tls(env)
    r.login()
    r.send(b"a APPEND INBOX {99999999}\r\n")
    assert r.line() == b"a NO [TOOBIG] Literal too large."
    assert r.cmd(b"b", b"NOOP")[-1] == b"b OK NOOP completed."  # still in sync


def test_nonsync_literal_minus_before_login(env):
    """Before login only LITERAL- is offered: a bigger non-synchronizing literal ends
    the connection (LITERAL+ after login: test_rfc7888_literal_plus.py)."""
    r = Raw.tls(env)
    assert b"LITERAL-" in r.greeting and b"LITERAL+" not in r.greeting
    r.send(b'a LOGIN {5+}\r\nalice "' + PASSWORD.encode() + b'"\r\n')
    assert r.line().startswith(b"a OK")
    r2 = Raw.tls(env)
    r2.send(b"b LOGIN {5000+}\r\n" + b"x" * 5000 + b" pw\r\n")
    assert r2.line().startswith(b"b BAD [TOOBIG]")
    assert r2.line().startswith(b"* BYE [TOOBIG]")


def test_non_append_literal_cap_and_line_cap(env):
    r = Raw.tls(env)
    r.login()
    r.send(b"a LOGIN {9999999}\r\n")
    assert r.line().startswith(b"a NO [TOOBIG]")
    r.send(b"b NOOP " + b"x" * 70000 + b"\r\n")
    assert r.line().startswith(b"* BYE [TOOBIG]")


def test_append_over_quota(env):
    c = env.login()
    big = msg(body="x" * 900_000 + "\r\n")
    for _ in range(15):
        typ, resp = c.append("INBOX", None, None, big)
        if typ == "NO":
            break
    assert typ == "NO" and resp[0].startswith(b"[OVERQUOTA]")


def test_quota_commands(env):
    env.deliver(msg(body="y" * 5000))
    c = env.login()
    typ, resp = c.getquotaroot("INBOX")
    assert typ == "OK"
    flat = [x for x in resp for x in x]
    assert any(b'"INBOX" ""' in x for x in flat)
    assert any(re.search(rb'"" \(STORAGE \d+ 10240\)', x) for x in flat)
