"""UIDPLUS, MOVE, SEARCH, IDLE, concurrent sessions, folders, SERVERBUG."""

from __future__ import annotations

import re
import time

import pytest

from tests.protocol.imap.conftest import Raw, msg


def _select(env, n=3, user="alice"):
    for i in range(n):
        env.deliver(msg(f"m{i}"), user=user)
    r = Raw.tls(env)
    r.login(user)
    r.cmd(b"s", b"SELECT INBOX")
    return r


def test_copy_returns_copyuid(env):
    r = _select(env)
    out = r.cmd(b"a", b"COPY 1:2 Archive")
    m = re.fullmatch(rb"a OK \[COPYUID (\d+) 1:2 1:2\] COPY completed\.", out[-1])
    assert m
    assert r.cmd(b"b", b"COPY 1 Nope")[-1].startswith(b"b NO [TRYCREATE]")
    out = r.cmd(b"c", b'STATUS Archive (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)')
    assert re.match(rb'\* STATUS "Archive" \(MESSAGES 2 UIDNEXT 3 UIDVALIDITY %s UNSEEN 2 '
                    rb"RECENT \d+\)" % m.group(1), out[0])


def test_move_and_uid_move(env):
    r = _select(env, 4)
    out = r.cmd(b"a", b"MOVE 2 Trash")
    assert re.fullmatch(rb"\* OK \[COPYUID \d+ 2 1\] Moved\.", out[0])
    assert out[1] == b"* 2 EXPUNGE"
    assert out[-1] == b"a OK MOVE completed."
    out = r.cmd(b"b", b"UID MOVE 3:4 Trash")
    assert re.fullmatch(rb"\* OK \[COPYUID \d+ 3:4 2:3\] Moved\.", out[0])
    assert out[1:3] == [b"* 3 EXPUNGE", b"* 2 EXPUNGE"]
    out = r.cmd(b"c", b"FETCH 1:* (UID)")
    assert out[:-1] == [b"* 1 FETCH (UID 1)"]
    assert r.cmd(b"d", b"MOVE 1 Missing")[-1].startswith(b"d NO [TRYCREATE]")


def test_uid_expunge_only_removes_given_uids(env):
    r = _select(env, 3)
    r.cmd(b"a", b"STORE 1:3 +FLAGS.SILENT (\\Deleted)")
    out = r.cmd(b"b", b"UID EXPUNGE 2")
    assert out == [b"* 2 EXPUNGE", b"b OK EXPUNGE completed."]
    assert r.cmd(b"c", b"SEARCH DELETED")[0] == b"* SEARCH 1 2"


def test_unselect_does_not_expunge_close_does(env):
    r = _select(env, 2)
    r.cmd(b"a", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert r.cmd(b"b", b"UNSELECT")[-1] == b"b OK UNSELECT completed."
    assert r.cmd(b"c", b"FETCH 1 FLAGS")[-1].startswith(b"c BAD")  # no longer selected
    assert b"* 2 EXISTS" in r.cmd(b"d", b"SELECT INBOX")
    r.cmd(b"e", b"CLOSE")
    assert b"* 1 EXISTS" in r.cmd(b"f", b"SELECT INBOX")


SEARCH_MSGS = [
    msg("Quarterly report", "Numbers inside\r\n", "Алиса <alice@ex.org>",
        "Cc: dave@ex.org\r\nX-Tag: blue\r\n"),
    msg("=?UTF-8?B?0J/RgNC40LLQtdGC?=", "plain body\r\n", "bob@ex.org"),
    msg("third", "Q29udGVudCDDqXTDqQ==\r\n", "erin@ex.org",
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n"
        "Bcc: hidden@ex.org\r\n"),
]


def test_search_keys(env):
    for m in SEARCH_MSGS:
        env.deliver(m)
    c = env.login()
    c.select("INBOX")
    c.store("1", "+FLAGS", "(\\Flagged $Work)")
    c.store("2", "+FLAGS", "(\\Seen \\Answered)")

    def s(*crit, charset=None):
        typ, data = c.search(charset, *crit)
        assert typ == "OK", data
        return data[0].decode().split()

    assert s("ALL") == ["1", "2", "3"]
    assert s("FROM", '"alice@ex"') == ["1"]
    c.literal = "Алиса".encode()
    assert c.search("UTF-8", "FROM")[1] == [b"1"]
    c.literal = "ПРИВЕТ".encode()
    assert c.search("UTF-8", "SUBJECT")[1] == [b"2"]  # RFC 2047 decoded, case-folded
    assert s("SUBJECT", "QUARTERLY") == ["1"]
    c.literal = "content été".encode()
    assert c.search("UTF-8", "BODY")[1] == [b"3"]  # base64 + charset decoded
    assert s("BODY", "content") == ["3"]  # base64 decoded
    assert s("TEXT", "blue") == ["1"]
    assert s("HEADER", "X-Tag", '""') == ["1"]
    assert s("CC", "dave") == ["1"] and s("BCC", "hidden") == ["3"] and s("TO", "alice") == ["1", "2", "3"]
    assert s("FLAGGED") == ["1"] and s("UNFLAGGED") == ["2", "3"]
    assert s("KEYWORD", "$Work") == ["1"] and s("UNKEYWORD", "$Work") == ["2", "3"]
    assert s("SEEN") == ["2"] and s("UNSEEN") == ["1", "3"]
    assert s("ANSWERED") == ["2"] and s("UNANSWERED") == ["1", "3"]
    assert s("DELETED") == [] and s("UNDELETED") == ["1", "2", "3"]
    assert s("DRAFT") == [] and s("UNDRAFT") == ["1", "2", "3"]
    assert s("RECENT") == ["1", "2", "3"] and s("NEW") == ["1", "3"] and s("OLD") == []
    assert s("OR", "FROM", "bob", "FROM", "erin") == ["2", "3"]
    assert s("NOT", "FROM", "bob") == ["1", "3"]
    assert s("(FROM", "bob", "SEEN)") == ["2"]
    assert s("2:*") == ["2", "3"] and s("UID", "1,3") == ["1", "3"]
    assert s("LARGER", "1") == ["1", "2", "3"] and s("SMALLER", "10") == []
    assert s("SENTON", "7-Feb-1994") == ["1", "2", "3"]
    assert s("SENTBEFORE", "7-Feb-1994") == [] and s("SENTSINCE", "8-Feb-1994") == []
    today = time.strftime("%d-%b-%Y", time.gmtime())
    assert s("SINCE", today) == ["1", "2", "3"] and s("BEFORE", "1-Jan-2000") == []
    assert s("ON", today) == ["1", "2", "3"]
    _, data = c.search(None, "FROM", "nobody")
    assert data == [b""]  # an empty "* SEARCH" line is still sent
    _typ, data = c.uid("SEARCH", "FROM", "erin")
    assert data == [b"3"]


def test_search_bad_charset_and_syntax(env):
    r = _select(env, 1)
    assert r.cmd(b"a", b"SEARCH CHARSET KOI8-R FROM x")[-1] == (
        b"a NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset.")
    assert r.cmd(b"b", b"SEARCH FROBNICATE")[-1].startswith(b"b BAD")
    assert r.cmd(b"c", b"SEARCH CHARSET US-ASCII ALL")[0] == b"* SEARCH 1"


def test_idle_pushes_delivery_flags_and_expunge(env):
    r = _select(env, 1)
    other = _select(env, 0)
    r.send(b"i IDLE\r\n")
    assert r.line() == b"+ idling"
    t0 = time.monotonic()
    env.deliver(msg("pushed"))
    assert r.line(timeout=2) == b"* 2 EXISTS"
    assert r.line(timeout=2) == b"* 2 RECENT"
    assert time.monotonic() - t0 < 1.0
    other.cmd(b"n", b"NOOP")
    other.cmd(b"a", b"STORE 1 +FLAGS (\\Flagged \\Deleted)")
    assert r.line(timeout=2) == b"* 1 FETCH (UID 1 FLAGS (\\Recent \\Flagged \\Deleted))"
    other.cmd(b"b", b"EXPUNGE")
    assert r.line(timeout=2) == b"* 1 EXPUNGE"
    r.send(b"nonsense\r\n")
    assert r.line() == b"* BAD Expected DONE."
    r.send(b"DONE\r\n")
    assert r.until(b"i")[-1] == b"i OK IDLE terminated."


def test_idle_push_from_another_process(env, tmp_path):
    """Delivery in a separate process reaches IDLE through the cross-process notifier."""
    import subprocess
    import sys

    from esam_mail.store.notify import UnixDatagramNotifier

    run_dir = tmp_path / "run"
    xn = UnixDatagramNotifier(run_dir)
    unsub = xn.subscribe(lambda login, folder: env.notifier.publish(login, folder))
    try:
        r = _select(env, 0)
        r.send(b"i IDLE\r\n")
        assert r.line() == b"+ idling"
        code = (
            "import sys; from pathlib import Path\n"
            "from esam_mail.store.maildir import MaildirStore\n"
            "from esam_mail.store.notify import UnixDatagramNotifier\n"
            "n = UnixDatagramNotifier(Path(sys.argv[2]))\n"
            "s = MaildirStore(Path(sys.argv[1]), fsync=False, notifier=n)\n"
            "s.user('alice').deliver(b'Subject: x\\r\\n\\r\\nfrom afar\\r\\n')\n"
        )
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", code, str(env.store.root), str(run_dir)],
                       check=True, timeout=60)
        assert r.line(timeout=2) == b"* 1 EXISTS"
        assert time.monotonic() - t0 < 5  # includes interpreter start-up
    finally:
        unsub()
        close = getattr(xn, "close", None)
        if close:
            close()


def test_two_sessions_see_changes_at_command_boundaries(env):
    a = _select(env, 3)
    b = _select(env, 0)
    a.cmd(b"x", b"STORE 2 +FLAGS (\\Seen)")
    out = b.cmd(b"n", b"NOOP")
    assert b"* 2 FETCH (UID 2 FLAGS (\\Seen))" in out
    a.cmd(b"y", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    a.cmd(b"z", b"EXPUNGE")
    # FETCH must not report EXPUNGE; the ghost keeps its sequence number
    out = b.cmd(b"f", b"FETCH 3 (UID)")
    assert not any(x.endswith(b"EXPUNGE") for x in out)
    assert b"* 3 FETCH (UID 3)" in out
    out = b.cmd(b"n2", b"NOOP")
    assert b"* 1 EXPUNGE" in out
    out = b.cmd(b"f2", b"FETCH 2 (UID)")
    assert out[0] == b"* 2 FETCH (UID 3)"


def test_folders_list_create_rename_delete(env):
    c = env.login()
    assert c.create("Projects/2026")[0] == "OK"
    assert c.create("&BBIERQQ+BDQETwRJBDgENQ-")[0] == "OK"  # Входящие
    typ, data = c.list()
    names = {re.search(rb'"/" (.*)$', x).group(1): x for x in data}
    assert b'"&BBIERQQ+BDQETwRJBDgENQ-"' in names
    assert b"\\HasChildren" in names[b'"Projects"']
    assert b"\\HasNoChildren" in names[b'"Projects/2026"']
    assert b"\\Sent" in names[b'"Sent"'] and b"\\Trash" in names[b'"Trash"']
    assert b"\\Junk" in names[b'"Junk"'] and b"\\Drafts" in names[b'"Drafts"']
    assert b"\\Archive" in names[b'"Archive"']
    typ, data = c.list('""', "%")
    assert not any(b"2026" in x for x in data)
    c.untagged_responses.pop("LIST", None)
    typ, data = c._simple_command("LIST", '""', "*", "RETURN", "(SPECIAL-USE)")
    assert typ == "OK"
    lines = c.untagged_responses.pop("LIST", [])
    assert b'(\\HasNoChildren \\Sent) "/" "Sent"' in lines
    typ, data = c._simple_command("LIST", "(SPECIAL-USE)", '""', "*")
    lines = c.untagged_responses.pop("LIST", [])
    assert lines and all(re.search(rb"\\(Sent|Drafts|Trash|Junk|Archive)", x) for x in lines)
    assert c.rename("Projects/2026", "Projects/2027")[0] == "OK"
    assert c.delete("Projects/2027")[0] == "OK"
    assert c.delete("INBOX")[0] == "NO"
    assert c.create("Sent")[0] == "NO"
    assert c.subscribe("Archive")[0] == "OK"
    typ, data = c.lsub()
    assert any(b'"Archive"' in x for x in data)
    assert c.unsubscribe("Archive")[0] == "OK"
    typ, data = c.list('""', '""')
    assert data == [b'(\\Noselect) "/" ""']
    typ, data = c.namespace()
    assert data == [b'(("" "/")) NIL NIL']


@pytest.mark.parametrize("name", [
    "../bob", "..", "a/../../bob", "/etc", "a//b", "&AC8-etc", "x&-y/../..", "&Jjo",
    "tab\there", ".hidden/..",
])
def test_folder_name_escape_attempts_fail_without_fs_effect(env, name):
    before = sorted(p.relative_to(env.store.root) for p in env.store.root.rglob("*")
                    if "esam-cache" not in p.name)
    r = Raw.tls(env)
    r.login()
    quoted = b'"' + name.encode() + b'"'
    for verb in (b"CREATE", b"SELECT", b"DELETE"):
        out = r.cmd(b"t", verb + b" " + quoted)
        assert out[-1].startswith((b"t NO", b"t BAD")), (verb, out)
    assert r.cmd(b"r", b"RENAME Archive " + quoted)[-1].startswith((b"r NO", b"r BAD"))
    after = sorted(p.relative_to(env.store.root) for p in env.store.root.rglob("*")
                   if "esam-cache" not in p.name)
    assert before == after
    assert not (env.store.root / "bob" / "cur" / "x").exists()


def test_id_enable(env):
    r = Raw.tls(env)
    r.login()
    assert r.cmd(b"a", b'ID ("name" "test")')[0].startswith(b'* ID ("name" "esam_mail"')
    assert r.cmd(b"b", b"ENABLE X-UNKNOWN") == [b"* ENABLED", b"b OK ENABLE completed."]
    assert r.cmd(b"c", b"ENABLE CONDSTORE")[0] == b"* ENABLED CONDSTORE"


def test_unexpected_exception_is_serverbug_without_text(env, monkeypatch, caplog):
    from esam_mail.store.maildir import MaildirFolder

    def boom(self, *a, **k):
        raise RuntimeError("secret /var/mail/alice path")

    r = _select(env, 1)
    monkeypatch.setattr(MaildirFolder, "store_flags", boom)
    out = r.cmd(b"a", b"STORE 1 +FLAGS (\\Seen)")
    assert re.fullmatch(rb"a NO \[SERVERBUG\] Internal error \(session [0-9a-f]+\)", out[-1])
    assert b"secret" not in b"".join(out)
    assert "secret /var/mail/alice path" in caplog.text
    assert r.cmd(b"b", b"NOOP")[-1] == b"b OK NOOP completed."  # session survives


def test_fetch_uses_metadata_cache(env, monkeypatch):
    from esam_mail.store.maildir import MaildirFolder

    for i in range(300):
        env.deliver(msg(f"bulk {i}"))
    c = env.login()
    c.select("INBOX")
    typ, data = c.uid("FETCH", "1:*", "(FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE)")
    assert typ == "OK" and len(data) == 300
    reads = []
    orig = MaildirFolder.read
    monkeypatch.setattr(MaildirFolder, "read", lambda self, uid: reads.append(uid) or orig(self, uid))
    env.factories[0].mailboxes.summaries._d.clear()
    env.factories[1].mailboxes.summaries._d.clear()  # force the store's on-disk cache
    c2 = env.login()
    c2.select("INBOX")
    typ, data2 = c2.uid("FETCH", "1:*", "(FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE)")
    assert typ == "OK" and len(data2) == 300 and reads == []
