"""RFC 9051 IMAP4rev2 beside IMAP4rev1, from RFC 9051's examples (adapted).

Both are advertised; a client that sends ``ENABLE IMAP4rev2`` gets the rev2
behaviour (RFC 9051 Appendix E): no RECENT response and no ``\\Recent`` flag,
SEARCH answered with ESEARCH, mailbox names in UTF-8 both ways, no ``[UNSEEN]``
and a LIST line in the SELECT response.  A session that does not enable it sees
IMAP4rev1 exactly as before; the last tests check that.
"""

from __future__ import annotations

import re

import pytest

from tests.protocol.imap.conftest import Raw, msg

pytestmark = pytest.mark.protocol

SENT_RU = "Отправленные".encode()  # UTF-8
SENT_RU_UTF7 = b"&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"  # the same name in modified UTF-7


def _session(env, *, rev2: bool) -> Raw:
    r = Raw.tls(env)
    r.login()
    if rev2:
        assert r.cmd(b"e", b"ENABLE IMAP4rev2")[:2] == [b"* ENABLED IMAP4rev2", b"e OK ENABLE completed."]
    return r


def _untagged(out: list[bytes]) -> list[bytes]:
    return [x for x in out if x.startswith(b"*")]


# -- capabilities --------------------------------------------------------------


def test_both_revisions_and_the_folded_in_extensions_are_advertised(env):
    r = Raw.tls(env)
    greeting = r.greeting.split(b"]")[0].split()
    assert b"IMAP4rev1" in greeting and b"IMAP4rev2" in greeting, r.greeting
    assert b"SASL-IR" in greeting and b"LITERAL-" in greeting
    r.login()
    caps = set(r.cmd(b"c", b"CAPABILITY")[0].split()[2:])
    # RFC 9051 Appendix E item 1: what IMAP4rev2 takes in from extensions of rev1
    folded = {b"IMAP4rev1", b"IMAP4rev2", b"NAMESPACE", b"UNSELECT", b"UIDPLUS", b"ESEARCH",
              b"SEARCHRES", b"ENABLE", b"IDLE", b"LIST-EXTENDED", b"LIST-STATUS", b"MOVE",
              b"LITERAL+", b"BINARY", b"SPECIAL-USE", b"STATUS=SIZE"}
    assert folded <= caps, folded - caps


def test_enable_reports_only_what_it_enabled(env):
    r = _session(env, rev2=False)
    # RFC 5161 §4 / RFC 9051 §6.3.1: A1 ENABLE ... X-GOOD-IDEA -> * ENABLED ...
    assert r.cmd(b"t1", b"ENABLE IMAP4rev2 X-GOOD-IDEA")[0] == b"* ENABLED IMAP4rev2"
    assert r.cmd(b"t2", b"ENABLE X-GOOD-IDEA")[0] == b"* ENABLED"


# -- \Recent and RECENT ----------------------------------------------------------


def test_select_without_recent_unseen_and_with_list(env):
    for i in range(3):
        env.deliver(msg(f"m{i}"))
    r = _session(env, rev2=True)
    # RFC 9051 §6.3.2: A142 SELECT INBOX -> * 172 EXISTS, OK [UIDVALIDITY], OK [UIDNEXT],
    # * FLAGS (...), OK [PERMANENTFLAGS (...)], * LIST () "/" INBOX, A142 OK [READ-WRITE]
    out = r.cmd(b"A142", b"SELECT INBOX")
    assert out[-1] == b"A142 OK [READ-WRITE] SELECT completed."
    assert b"* 3 EXISTS" in out
    assert not any(re.fullmatch(rb"\* \d+ RECENT", x) for x in out), out
    assert not any(b"[UNSEEN" in x for x in out), out  # gone from rev2's SELECT
    assert any(x.startswith(b"* OK [UIDVALIDITY ") for x in out)
    assert any(x.startswith(b"* OK [UIDNEXT 4]") for x in out)
    flags = [x for x in out if x.startswith(b"* FLAGS") or b"[PERMANENTFLAGS" in x]
    assert len(flags) == 2 and not any(b"\\Recent" in x for x in flags), flags
    assert b'* LIST () "/" "INBOX"' in out, out
    # the messages are new, but rev2 has no \Recent flag
    fetched = _untagged(r.cmd(b"f", b"FETCH 1:* (FLAGS)"))
    assert fetched == [b"* %d FETCH (FLAGS ())" % i for i in (1, 2, 3)], fetched
    # a delivery while selected: EXISTS, no RECENT; its unsolicited FETCH has no \Recent
    env.deliver(msg("m3"))
    out = _untagged(r.cmd(b"n", b"NOOP"))
    assert out == [b"* 4 EXISTS"], out
    assert r.cmd(b"f2", b"FETCH 4 FLAGS")[0] == b"* 4 FETCH (FLAGS ())"


def test_select_list_line_carries_special_use_and_utf8_name(env):
    r = _session(env, rev2=True)
    r.cmd(b"c", b'CREATE "' + SENT_RU + b'"')
    out = r.cmd(b"s", b"SELECT Sent")
    assert b'* LIST (\\Sent) "/" "Sent"' in out, out
    out = r.cmd(b"s2", b'EXAMINE "' + SENT_RU + b'"')
    assert b'* LIST () "/" "' + SENT_RU + b'"' in out, out
    assert out[-1] == b"s2 OK [READ-ONLY] EXAMINE completed."


def test_rev2_session_does_not_take_recent_from_a_rev1_session(env):
    env.deliver(msg("new"))
    rev2 = _session(env, rev2=True)
    rev2.cmd(b"s", b"SELECT INBOX")
    rev1 = _session(env, rev2=False)
    out = rev1.cmd(b"s", b"SELECT INBOX")
    assert b"* 1 RECENT" in out, out
    assert b"\\Recent" in rev1.cmd(b"f", b"FETCH 1 FLAGS")[0]


@pytest.mark.parametrize("enable_after_select", [False, True])
def test_rev2_search_recent_new_old_agree_with_no_recent_flag(env, enable_after_select):
    """RFC 9051 App. E: IMAP4rev2 has no \\Recent. A rev2 session's FETCH shows none, so
    SEARCH RECENT and NEW (RECENT UNSEEN) find nothing and OLD finds all, also for a message
    arriving while selected and when IMAP4rev2 is enabled after a rev1 SELECT."""
    env.deliver(msg("new"))
    r = _session(env, rev2=not enable_after_select)
    r.cmd(b"s", b"SELECT INBOX")
    if enable_after_select:
        assert r.cmd(b"e", b"ENABLE IMAP4rev2")[0] == b"* ENABLED IMAP4rev2"
    env.deliver(msg("newer"))
    r.cmd(b"n", b"NOOP")
    assert r.cmd(b"f", b"FETCH 1:2 FLAGS")[:2] == [b"* 1 FETCH (FLAGS ())", b"* 2 FETCH (FLAGS ())"]
    assert r.cmd(b"a", b"SEARCH RECENT")[0] == b'* ESEARCH (TAG "a")'
    assert r.cmd(b"b", b"SEARCH NEW")[0] == b'* ESEARCH (TAG "b")'
    assert r.cmd(b"c", b"SEARCH OLD")[0] == b'* ESEARCH (TAG "c") ALL 1:2'


def test_unsolicited_fetch_carries_uid(env):
    env.deliver(msg("a"))
    env.deliver(msg("b"))
    r = _session(env, rev2=True)
    r.cmd(b"s", b"SELECT INBOX")
    other = _session(env, rev2=False)
    other.cmd(b"s", b"SELECT INBOX")
    other.cmd(b"st", b"STORE 2 +FLAGS.SILENT (\\Flagged)")
    out = _untagged(r.cmd(b"n", b"NOOP"))
    assert out == [b"* 2 FETCH (UID 2 FLAGS (\\Flagged))"], out


# -- SEARCH answered with ESEARCH ------------------------------------------------------


def test_search_answers_esearch_with_the_tag(env):
    for i in range(5):
        env.deliver(msg(f"m{i}"))
    r = _session(env, rev2=True)
    r.cmd(b"s", b"SELECT INBOX")
    r.cmd(b"f", b"STORE 2,4 +FLAGS.SILENT (\\Flagged)")
    # RFC 9051 §6.4.4: no result option means ALL
    out = r.cmd(b"A282", b"SEARCH FLAGGED")
    assert out == [b'* ESEARCH (TAG "A282") ALL 2,4', b"A282 OK SEARCH completed."], out
    out = r.cmd(b"A283", b'SEARCH TEXT "string not in mailbox"')
    assert out == [b'* ESEARCH (TAG "A283")', b"A283 OK SEARCH completed."], out
    assert r.cmd(b"A284", b"UID SEARCH ALL")[0] == b'* ESEARCH (TAG "A284") UID ALL 1:5'
    assert r.cmd(b"A285", b"SEARCH RETURN (MIN COUNT) FLAGGED")[0] == \
        b'* ESEARCH (TAG "A285") MIN 2 COUNT 2'
    assert r.cmd(b"A286", b"SEARCH RETURN () FLAGGED")[0] == b'* ESEARCH (TAG "A286") ALL 2,4'
    # CHARSET UTF-8 is mandatory (RFC 9051 §6.4.4); a literal search string
    r.send(b"A287 SEARCH CHARSET UTF-8 TEXT {2}\r\n")
    assert r.response().startswith(b"+")
    r.send(b"m3\r\n")
    assert r.until(b"A287")[0] == b'* ESEARCH (TAG "A287") ALL 4'
    # SEARCHRES still works: SAVE alone answers nothing but the tagged OK
    assert r.cmd(b"A288", b"SEARCH RETURN (SAVE) FLAGGED") == [b"A288 OK SEARCH completed."]
    assert r.cmd(b"A289", b"SEARCH $")[0] == b'* ESEARCH (TAG "A289") ALL 2,4'


# -- UTF-8 mailbox names ------------------------------------------------------


def test_utf8_mailbox_names_both_ways(env):
    env.deliver(msg("x"))
    r = _session(env, rev2=True)
    assert r.cmd(b"c1", b'CREATE "' + SENT_RU + b'/2024"')[-1] == b"c1 OK CREATE completed."
    # a literal carries UTF-8 too
    name = "Входящие-Ü".encode()
    r.send(b"c2 CREATE {%d}\r\n" % len(name))
    assert r.response().startswith(b"+")
    r.send(name + b"\r\n")
    assert r.until(b"c2")[-1] == b"c2 OK CREATE completed."
    # "&" is an ordinary character in a UTF-8 name
    assert r.cmd(b"c3", b'CREATE "R&D"')[-1] == b"c3 OK CREATE completed."
    out = _untagged(r.cmd(b"l", b'LIST "" "*"'))
    names = [x.split(b' "/" ', 1)[1] for x in out]
    assert b'"' + SENT_RU + b'"' in names and b'"' + SENT_RU + b'/2024"' in names, out
    assert b'"' + name + b'"' in names and b'"R&D"' in names, out
    out = r.cmd(b"l2", b'LIST "" "' + SENT_RU + b'/%"')
    assert _untagged(out) == [b'* LIST (\\HasNoChildren) "/" "' + SENT_RU + b'/2024"'], out
    out = r.cmd(b"st", b'STATUS "' + SENT_RU + b'/2024" (MESSAGES)')
    assert out[0] == b'* STATUS "' + SENT_RU + b'/2024" (MESSAGES 0)', out
    assert r.cmd(b"s", b"SELECT INBOX")[-1].startswith(b"s OK")
    out = r.cmd(b"m", b'COPY 1 "' + SENT_RU + b'/2024"')
    assert out[-1].startswith(b"m OK [COPYUID "), out
    out = r.cmd(b"lst", b'LIST "" "R*" RETURN (STATUS (MESSAGES))')
    assert _untagged(out) == [b'* LIST (\\HasNoChildren) "/" "R&D"',
                              b'* STATUS "R&D" (MESSAGES 0)'], out
    # a rev1 session sees the same folders in modified UTF-7
    old = _session(env, rev2=False)
    out = _untagged(old.cmd(b"l", b'LIST "" "*"'))
    names = [x.split(b' "/" ', 1)[1] for x in out]
    assert b'"' + SENT_RU_UTF7 + b'/2024"' in names and b'"R&-D"' in names, out
    assert old.cmd(b"st", b'STATUS "' + SENT_RU_UTF7 + b'/2024" (MESSAGES)')[0] == \
        b'* STATUS "' + SENT_RU_UTF7 + b'/2024" (MESSAGES 1)'


def test_bad_utf8_mailbox_name_is_refused(env):
    r = _session(env, rev2=True)
    out = r.cmd(b"c", b'CREATE "bad\xff\xfename"')
    assert out[-1].startswith(b"c NO [CANNOT]"), out
    assert not any(b"bad" in x for x in r.cmd(b"l", b'LIST "" "*"'))


def test_rename_and_delete_with_utf8_names(env):
    r = _session(env, rev2=True)
    r.cmd(b"c", b'CREATE "' + SENT_RU + b'"')
    out = r.cmd(b"r", b'RENAME "' + SENT_RU + b'" ' + '"Архив"'.encode())
    assert out[-1] == b"r OK RENAME completed.", out
    out = _untagged(r.cmd(b"l", b'LIST "" "%"'))
    assert any(x.endswith(' "Архив"'.encode()) for x in out), out
    assert r.cmd(b"d", 'DELETE "Архив"'.encode())[-1] == b"d OK DELETE completed."


# -- LIST: \NonExistent, \Subscribed, \Remote; LSUB still there ----------------------------


def test_list_attributes_and_lsub(env):
    r = _session(env, rev2=True)
    for box in (b"Fruit/Apple", b"Fruit/Banana", b"Tofu"):
        r.cmd(b"c", b"CREATE " + box)
    r.cmd(b"s1", b"SUBSCRIBE Fruit/Banana")
    r.cmd(b"s2", b"SUBSCRIBE Fruit/Peach")  # no such mailbox
    # RFC 9051 §6.3.9 (from RFC 5258): LIST (SUBSCRIBED) "" "*"
    out = _untagged(r.cmd(b"A03", b'LIST (SUBSCRIBED) "" "*"'))
    byname = {x.rsplit(b" ", 1)[1]: x for x in out}
    assert byname[b'"Fruit/Peach"'] == b'* LIST (\\NonExistent \\Subscribed) "/" "Fruit/Peach"'
    assert b"\\Subscribed" in byname[b'"Fruit/Banana"'] and b'"Tofu"' not in byname
    # \Subscribed only when asked for
    out = _untagged(r.cmd(b"A04", b'LIST "" "Fruit/%"'))
    assert not any(b"\\Subscribed" in x for x in out), out
    out = _untagged(r.cmd(b"A05", b'LIST "" "Fruit/%" RETURN (SUBSCRIBED)'))
    assert [x for x in out if b"\\Subscribed" in x] == [
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "Fruit/Banana"'], out
    # no remote mailboxes here: REMOTE lists the local ones, none of them \Remote
    out = _untagged(r.cmd(b"A06", b'LIST (REMOTE) "" "%"'))
    assert any(x.endswith(b'"Tofu"') for x in out) and not any(b"\\Remote" in x for x in out)
    # LSUB is deprecated in rev2, still answered
    out = r.cmd(b"A08", b'LSUB "" "Fruit/*"')
    assert _untagged(out) == [b'* LSUB (\\HasNoChildren) "/" "Fruit/Banana"',
                              b'* LSUB (\\Noselect \\HasNoChildren) "/" "Fruit/Peach"'], out


# -- STATUS SIZE and DELETED -----------------------------------------------------------


@pytest.mark.parametrize("rev2", [False, True])
def test_status_size_and_deleted(env, rev2):
    sizes = []
    for i in range(3):
        data = msg(f"m{i}", body="x" * (100 * i) + "\r\n")
        sizes.append(len(data))
        env.deliver(data)
    r = _session(env, rev2=rev2)
    r.cmd(b"s", b"SELECT INBOX")
    r.cmd(b"d", b"STORE 1,3 +FLAGS.SILENT (\\Deleted)")
    fetched = [int(m.group(1)) for x in r.cmd(b"f", b"FETCH 1:* RFC822.SIZE")
               if (m := re.search(rb"RFC822.SIZE (\d+)", x))]
    assert fetched == sizes
    # RFC 8438 §3 / RFC 9051 §6.3.11: STATUS ... (MESSAGES SIZE DELETED)
    out = r.cmd(b"A042", b"STATUS INBOX (MESSAGES SIZE DELETED)")
    assert out[0] == b'* STATUS "INBOX" (MESSAGES 3 SIZE %d DELETED 2)' % sum(sizes), out
    out = r.cmd(b"A043", b'LIST "" "INBOX" RETURN (STATUS (DELETED SIZE))')
    assert out[1] == b'* STATUS "INBOX" (DELETED 2 SIZE %d)' % sum(sizes), out
    assert r.cmd(b"A044", b"STATUS INBOX (SIZE BOGUS)")[-1].startswith(b"A044 BAD")


# -- keywords -------------------------------------------------------------------------


def test_rev2_keywords_are_permitted(env):
    env.deliver(msg("k"))
    r = _session(env, rev2=True)
    out = r.cmd(b"s", b"SELECT INBOX")
    assert any(b"[PERMANENTFLAGS (" in x and b"\\*)" in x for x in out), out
    kws = b"$Forwarded $MDNSent $Junk $NotJunk $Phishing"
    out = r.cmd(b"k", b"STORE 1 +FLAGS (" + kws + b")")
    assert out[-1] == b"k OK STORE completed.", out
    flags_line = [x for x in out if x.startswith(b"* FLAGS")]
    assert flags_line and all(k in flags_line[0] for k in kws.split()), out
    fetched = r.cmd(b"f", b"FETCH 1 FLAGS")[0]
    assert all(k in fetched for k in kws.split()), fetched
    # and on APPEND
    out = r.cmd(b"a", b"APPEND INBOX ($Junk $Phishing) {3+}\r\nhi!")
    assert out[-1].startswith(b"a OK [APPENDUID "), out


# -- response codes ---------------------------------------------------------------------


def test_response_codes(env):
    r = _session(env, rev2=True)
    r.cmd(b"c", b"CREATE foo/bar")
    # RFC 9051 §7.1 examples
    assert r.cmd(b"a1", b"CREATE foo/bar")[-1].startswith(b"a1 NO [ALREADYEXISTS]")
    assert r.cmd(b"a2", b"SELECT nosuch")[-1].startswith(b"a2 NO [NONEXISTENT]")
    assert r.cmd(b"a3", b"DELETE foo")[-1].startswith(b"a3 NO [HASCHILDREN]")
    assert r.cmd(b"a4", b"APPEND nosuch {3+}\r\nhi!")[-1].startswith(b"a4 NO [TRYCREATE]")
    r.cmd(b"s", b"SELECT INBOX")
    r.cmd(b"ap", b"APPEND INBOX {3+}\r\nhi!")
    assert r.cmd(b"a5", b"COPY 1 nosuch")[-1].startswith(b"a5 NO [TRYCREATE]")
    assert r.cmd(b"a6", b"SEARCH CHARSET KOI8-X ALL")[-1].startswith(b"a6 NO [BADCHARSET")
    assert r.cmd(b"a7", b"EXAMINE INBOX")[0] == b"* OK [CLOSED] Previous mailbox closed."
    assert r.cmd(b"a8", b"STORE 1 +FLAGS (\\Seen)")[-1].startswith(b"a8 NO [READ-ONLY]")
    bad = Raw.tls(env)
    assert bad.cmd(b"a9", b'LOGIN alice "wrong"')[-1].startswith(b"a9 NO [AUTHENTICATIONFAILED]")


# -- BINARY is part of rev2 --------------------------------------------------------------


def test_fetch_binary_and_binary_size(env):
    body = (b"From: a@b.example\r\nSubject: bin\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
            b"\r\nAAECAw==\r\n")
    env.deliver(body)
    r = _session(env, rev2=True)
    r.cmd(b"s", b"SELECT INBOX")
    out = r.cmd(b"f", b"FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])")
    assert out[0] == b"* 1 FETCH (BINARY.SIZE[1] 4 BINARY[1] ~{4}\r\n\x00\x01\x02\x03)", out


# -- IMAP4rev1 unchanged without ENABLE ------------------------------------------------


def test_rev1_unchanged(env):
    env.deliver(msg("one"))
    env.deliver(msg("two"))
    r = _session(env, rev2=False)
    out = r.cmd(b"s", b"SELECT INBOX")
    assert b"* 2 RECENT" in out and any(b"[UNSEEN 1]" in x for x in out), out
    assert not any(x.startswith(b"* LIST") for x in out), out
    assert b"\\Recent" in r.cmd(b"f", b"FETCH 1 FLAGS")[0]
    assert r.cmd(b"q", b"SEARCH ALL")[0] == b"* SEARCH 1 2"
    assert r.cmd(b"q2", b"UID SEARCH ALL")[0] == b"* SEARCH 1 2"
    env.deliver(msg("three"))
    assert _untagged(r.cmd(b"n", b"NOOP")) == [b"* 3 EXISTS", b"* 3 RECENT"]
    # names stay modified UTF-7; raw 8-bit is refused
    assert r.cmd(b"c", b'CREATE "' + SENT_RU_UTF7 + b'"')[-1] == b"c OK CREATE completed."
    assert any(x.endswith(b'"' + SENT_RU_UTF7 + b'"')
               for x in r.cmd(b"l", b'LIST "" "%"')), "mUTF-7 name missing"
    assert r.cmd(b"c2", b'CREATE "' + SENT_RU + b'x"')[-1].startswith(b"c2 NO [CANNOT]")
