"""RFC 5465 NOTIFY: unsolicited updates for the selected mailbox and for others.

Two real sessions of one user on 127.0.0.1 (one watches, one changes things) and
deliveries through the store, as the MX does, drive the change notification; the
watching session sends no command and still sees the updates (that is the point).
"""

from __future__ import annotations

import re

import pytest

from esam_mail.imap import notify as notifymod
from tests.protocol.imap.conftest import Raw, msg

pytestmark = pytest.mark.protocol


def _session(env, r_index: int = -1):
    """The server side of the newest implicit-TLS session."""
    return env.loop.call(lambda: sorted(env.factories[1].sessions, key=lambda s: s._opened)[r_index])


def _quiet(r: Raw, seconds: float = 0.6) -> list[bytes]:
    """Whatever arrives unsolicited within ``seconds`` (none expected, usually)."""
    out = []
    try:
        while True:
            out.append(r.response(seconds))
    except TimeoutError:
        return out


def _expect(r: Raw, pattern: bytes, timeout: float = 5) -> bytes:
    line, _ = r.wait_for(pattern, timeout)
    return line


def _two(env) -> tuple[Raw, Raw]:
    a, b = Raw.tls(env), Raw.tls(env)
    a.login()
    b.login()
    return a, b


def test_capability(env):
    r = Raw.tls(env)
    r.login()
    caps = next(x for x in r.cmd(b"c", b"CAPABILITY") if x.startswith(b"* CAPABILITY"))
    assert b" NOTIFY" in caps


def test_rfc_example_status_indicator(env):
    """§3.1's example: STATUS for every mailbox of the SUBTREE at once, then OK."""
    r = Raw.tls(env)
    r.login()
    for name in (b"Lists/Lemonade", b"Lists/Im2000", b"Other"):
        assert r.cmd(b"c", b"CREATE " + name)[-1] == b"c OK CREATE completed."
    env.deliver(msg(subject="lemonade"), folder="Lists/Lemonade")
    out = r.cmd(b"a", b"NOTIFY SET STATUS (selected (MessageNew (uid "
                      b"body.peek[header.fields (from to subject)]) MessageExpunge)) "
                      b"(subtree Lists (MessageNew MessageExpunge))")
    assert out[-1] == b"a OK NOTIFY completed."
    status = sorted(x for x in out[:-1])
    assert len(status) == 3, out  # the subtree's root (created as the parent) and both lists
    assert re.fullmatch(rb'\* STATUS "Lists" \(UIDVALIDITY \d+ UIDNEXT 1 MESSAGES 0'
                        rb" UNSEEN 0\)", status[0]), status
    assert re.fullmatch(rb'\* STATUS "Lists/Im2000" \(UIDVALIDITY \d+ UIDNEXT 1 MESSAGES 0'
                        rb" UNSEEN 0\)", status[1]), status
    assert re.fullmatch(rb'\* STATUS "Lists/Lemonade" \(UIDVALIDITY \d+ UIDNEXT 2 MESSAGES 1'
                        rb" UNSEEN 1\)", status[2]), status


def test_rfc_example_events_without_parentheses(env):
    """The RFC's own example writes the events bare; accept that form too."""
    r = Raw.tls(env)
    r.login()
    out = r.cmd(b"a", b"NOTIFY SET (selected MessageNew (uid body.peek[header.fields "
                      b"(from to subject)]) MessageExpunge) (personal MessageNew MessageExpunge)")
    assert out == [b"a OK NOTIFY completed."]


def test_selected_messagenew_with_fetch_att_pushed_without_a_command(env):
    a = Raw.tls(env)
    a.login()
    a.cmd(b"s", b"SELECT INBOX")
    assert a.cmd(b"n", b"NOTIFY SET (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS "
                       b"(SUBJECT)]) MessageExpunge))")[-1] == b"n OK NOTIFY completed."
    env.deliver(msg(subject="Pushed"))  # SMTP delivery path: the store, no IMAP command
    assert _expect(a, rb"^\* \d+ EXISTS") == b"* 1 EXISTS"
    fetch = _expect(a, rb"^\* 1 FETCH")
    assert fetch.startswith(b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {")
    assert b"Subject: Pushed" in fetch
    # the notification did not set \Seen (its BODY[] is a PEEK)
    flags = a.cmd(b"f", b"FETCH 1 FLAGS")
    assert flags[0] == b"* 1 FETCH (FLAGS (\\Recent))", flags


def test_body_without_peek_in_fetch_att_still_does_not_set_seen(env):
    a = Raw.tls(env)
    a.login()
    a.cmd(b"s", b"SELECT INBOX")
    a.cmd(b"n", b"NOTIFY SET (selected (MessageNew (BODY[TEXT]) MessageExpunge))")
    env.deliver(msg(subject="peek"))
    _expect(a, rb"^\* 1 FETCH \(BODY\[TEXT\]")
    assert a.cmd(b"f", b"FETCH 1 FLAGS")[0] == b"* 1 FETCH (FLAGS (\\Recent))"


def test_selected_expunge_and_flagchange_from_another_session(env):
    env.deliver(msg(subject="one"))
    env.deliver(msg(subject="two"))
    a, b = _two(env)
    a.cmd(b"s", b"SELECT INBOX")
    a.cmd(b"n", b"NOTIFY SET (selected (MessageNew MessageExpunge FlagChange))")
    b.cmd(b"s", b"SELECT INBOX")
    b.cmd(b"f", b"STORE 2 +FLAGS (\\Flagged)")
    assert _expect(a, rb"^\* 2 FETCH") == b"* 2 FETCH (UID 2 FLAGS (\\Recent \\Flagged))"
    b.cmd(b"d", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.cmd(b"e", b"EXPUNGE")
    # SELECTED: the EXPUNGE comes at once, with no command of A's in progress
    assert _expect(a, rb"^\* 1 EXPUNGE") == b"* 1 EXPUNGE"
    assert a.cmd(b"z", b"NOOP") == [b"z OK NOOP completed."]  # nothing reported twice


def test_selected_delayed_holds_expunge_until_a_command(env):
    env.deliver(msg(subject="one"))
    env.deliver(msg(subject="two"))
    a, b = _two(env)
    a.cmd(b"s", b"SELECT INBOX")
    a.cmd(b"n", b"NOTIFY SET (selected-delayed (MessageNew MessageExpunge))")
    b.cmd(b"s", b"SELECT INBOX")
    b.cmd(b"d", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.cmd(b"e", b"EXPUNGE")
    env.deliver(msg(subject="three"))
    # the arrival is pushed; the expunged message keeps its number for now
    assert _expect(a, rb"^\* \d+ EXISTS") == b"* 3 EXISTS"
    assert not any(b"EXPUNGE" in x for x in _quiet(a))
    out = a.cmd(b"z", b"NOOP")
    assert out == [b"* 1 EXPUNGE", b"z OK NOOP completed."]


def test_other_mailboxes_get_status_on_delivery_and_append(env):
    a, b = _two(env)
    b.cmd(b"c", b"CREATE Work")
    a.cmd(b"s", b"SELECT Work")
    a.cmd(b"u", b"UNSELECT")
    assert a.cmd(b"n", b"NOTIFY SET (personal (MessageNew MessageExpunge))")[-1] == \
        b"n OK NOTIFY completed."
    env.deliver(msg(subject="to inbox"))
    assert re.fullmatch(rb'\* STATUS "INBOX" \(UIDVALIDITY \d+ UIDNEXT 2 MESSAGES 1 UNSEEN 1\)',
                        _expect(a, rb"^\* STATUS \"INBOX\""))
    body = msg(subject="to work")
    b.send(b"p APPEND Work {%d}\r\n" % len(body))
    b.response()
    b.send(body + b"\r\n")
    assert b.until(b"p")[-1].startswith(b"p OK")
    assert re.fullmatch(rb'\* STATUS "Work" \(UIDVALIDITY \d+ UIDNEXT 2 MESSAGES 1 UNSEEN 1\)',
                        _expect(a, rb"^\* STATUS \"Work\""))
    # a flag change alone is not a MessageNew/MessageExpunge event: no STATUS
    b.cmd(b"s", b"SELECT Work")
    b.cmd(b"f", b"STORE 1 +FLAGS (\\Seen)")
    assert _quiet(a) == []


def test_flagchange_on_other_mailbox_reports_unseen(env):
    env.deliver(msg(subject="x"))
    a, b = _two(env)
    a.cmd(b"n", b"NOTIFY SET (inboxes (MessageNew MessageExpunge FlagChange))")
    b.cmd(b"s", b"SELECT INBOX")
    b.cmd(b"f", b"STORE 1 +FLAGS (\\Seen)")
    line = _expect(a, rb'^\* STATUS "INBOX"')
    # FlagChange watched: HIGHESTMODSEQ even without ENABLE CONDSTORE (RFC 5465 section 5.2)
    assert re.fullmatch(rb'\* STATUS "INBOX" \(UIDVALIDITY \d+ UIDNEXT 2 MESSAGES 1 UNSEEN 0'
                        rb' HIGHESTMODSEQ \d+\)', line), line


def test_flagchange_on_other_mailbox_reports_a_keyword_through_highestmodseq(env):
    """A keyword leaves UNSEEN as it was: only HIGHESTMODSEQ tells the watcher."""
    env.deliver(msg(subject="x"))
    a, b = _two(env)
    a.cmd(b"n", b"NOTIFY SET (inboxes (MessageNew MessageExpunge FlagChange))")
    b.cmd(b"s", b"SELECT INBOX")
    b.cmd(b"f", b"STORE 1 +FLAGS (todo)")
    line = _expect(a, rb'^\* STATUS "INBOX"')
    assert re.fullmatch(rb'\* STATUS "INBOX" \(UIDVALIDITY \d+ UIDNEXT 2 MESSAGES 1 UNSEEN 1'
                        rb' HIGHESTMODSEQ \d+\)', line), line


def _modseq(r: Raw, name: bytes) -> int:
    out = r.cmd(b"h", b"STATUS " + name + b" (HIGHESTMODSEQ)")
    return int(re.search(rb"HIGHESTMODSEQ (\d+)", out[0]).group(1))


@pytest.mark.parametrize("enable", [False, True])
def test_initial_status_carries_highestmodseq_only_with_flagchange(env, enable):
    """imaptest's ``notify`` group: NOTIFY SET STATUS sends HIGHESTMODSEQ in the first STATUS
    when FlagChange is watched (RFC 5465 sections 3.1, 5.2), not for MessageNew alone unless
    CONDSTORE is enabled (RFC 7162 section 3.1); NOTIFY SET without STATUS sends none."""
    r = Raw.tls(env)
    r.login()
    r.cmd(b"c", b"CREATE Box2")
    env.deliver(msg(subject="x"), folder="Box2")
    if enable:
        assert r.cmd(b"e", b"ENABLE CONDSTORE")[-1].startswith(b"e OK")
    out = r.cmd(b"a", b"NOTIFY SET STATUS (mailboxes Box2 (MessageNew MessageExpunge))")
    assert out[-1] == b"a OK NOTIFY completed.", out
    base = rb'\* STATUS "Box2" \(UIDVALIDITY \d+ UIDNEXT 2 MESSAGES 1 UNSEEN 1'
    want = base + (rb" HIGHESTMODSEQ \d+\)" if enable else rb"\)")
    assert len(out) == 2 and re.fullmatch(want, out[0]), out
    out = r.cmd(b"b", b"NOTIFY SET STATUS (mailboxes Box2 (MessageNew MessageExpunge FlagChange))")
    assert len(out) == 2 and re.fullmatch(base + rb" HIGHESTMODSEQ (\d+)\)", out[0]), out
    hms = int(re.search(rb"HIGHESTMODSEQ (\d+)", out[0]).group(1))
    assert hms == _modseq(r, b"Box2")
    out = r.cmd(b"d", b"NOTIFY SET (mailboxes Box2 (MessageNew MessageExpunge FlagChange))")
    assert out == [b"d OK NOTIFY completed."]


def test_filters_mailboxes_and_subtree_only_watch_their_names(env):
    a, b = _two(env)
    for name in (b"Watched", b"Tree", b"Tree/Leaf", b"Elsewhere"):
        b.cmd(b"c", b"CREATE " + name)
    a.cmd(b"n", b"NOTIFY SET (mailboxes Watched (MessageNew MessageExpunge)) "
                b"(subtree Tree (MessageNew MessageExpunge))")
    env.deliver(msg(subject="e"), folder="Elsewhere")
    env.deliver(msg(subject="leaf"), folder="Tree/Leaf")
    assert _expect(a, rb"^\* STATUS").startswith(b'* STATUS "Tree/Leaf"')
    env.deliver(msg(subject="w"), folder="Watched")
    assert _expect(a, rb"^\* STATUS").startswith(b'* STATUS "Watched"')
    assert _quiet(a) == []  # never Elsewhere


def test_subscribed_filter_follows_subscriptions(env):
    a, b = _two(env)
    b.cmd(b"c", b"CREATE News")
    a.cmd(b"n", b"NOTIFY SET (subscribed (MessageNew MessageExpunge SubscriptionChange))")
    env.deliver(msg(subject="before"), folder="News")
    assert _quiet(a) == []
    b.cmd(b"s", b"SUBSCRIBE News")
    assert _expect(a, rb"^\* LIST") == b'* LIST (\\Subscribed) "/" "News"'
    env.deliver(msg(subject="after"), folder="News")
    assert _expect(a, rb"^\* STATUS").startswith(b'* STATUS "News" (')
    b.cmd(b"u", b"UNSUBSCRIBE News")
    assert _expect(a, rb"^\* LIST") == b'* LIST () "/" "News"'


def test_mailboxname_create_rename_delete(env):
    a, b = _two(env)
    a.cmd(b"n", b"NOTIFY SET (personal (MailboxName))")
    b.cmd(b"c", b"CREATE Projects")
    assert _expect(a, rb"^\* LIST") == b'* LIST () "/" "Projects"'
    b.cmd(b"r", b"RENAME Projects Archive2026")
    assert _expect(a, rb"^\* LIST") == b'* LIST () "/" "Archive2026" ("OLDNAME" ("Projects"))'
    b.cmd(b"d", b"DELETE Archive2026")
    assert _expect(a, rb"^\* LIST") == b'* LIST (\\NonExistent) "/" "Archive2026"'


def test_notify_during_idle(env):
    a, b = _two(env)
    b.cmd(b"c", b"CREATE Later")
    a.cmd(b"s", b"SELECT INBOX")
    a.cmd(b"n", b"NOTIFY SET (selected (MessageNew MessageExpunge)) "
                b"(personal (MessageNew MessageExpunge))")
    a.idle()
    env.deliver(msg(subject="later"), folder="Later")
    assert _expect(a, rb"^\* STATUS").startswith(b'* STATUS "Later"')
    env.deliver(msg(subject="inbox"))
    assert _expect(a, rb"EXISTS") == b"* 1 EXISTS"
    assert a.done()[-1].endswith(b"OK IDLE terminated.")


def test_notify_none_stops_notifications(env):
    a, b = _two(env)
    a.cmd(b"n", b"NOTIFY SET (personal (MessageNew MessageExpunge MailboxName))")
    assert a.cmd(b"x", b"NOTIFY NONE") == [b"x OK NOTIFY completed."]
    b.cmd(b"c", b"CREATE Quiet")
    env.deliver(msg(subject="q"), folder="Quiet")
    assert _quiet(a) == []


def test_unsupported_events_are_badevent(env):
    r = Raw.tls(env)
    r.login()
    want = (b"NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName "
            b"SubscriptionChange)]")
    for cmd in (b"NOTIFY SET (selected (MessageNew MessageExpunge AnnotationChange))",
                b"NOTIFY SET (personal (MailboxMetadataChange))",
                b"NOTIFY SET (personal (ServerMetadataChange))",
                b"NOTIFY SET (personal (NoSuchEvent))"):
        out = r.cmd(b"b", cmd)
        assert out[-1].startswith(b"b " + want), (cmd, out)


@pytest.mark.parametrize("cmd", [
    b"NOTIFY SET (selected (MessageNew))",  # MessageNew needs MessageExpunge
    b"NOTIFY SET (personal (MessageExpunge))",
    b"NOTIFY SET (personal (FlagChange))",  # FlagChange needs both
    b"NOTIFY SET (selected (MailboxName))",  # only message events for the selected one
    b"NOTIFY SET (selected (MessageNew MessageExpunge)) (selected-delayed (MessageNew "
    b"MessageExpunge))",
    b"NOTIFY SET (everything (MessageNew MessageExpunge))",
    b"NOTIFY SET (subtree (MessageNew MessageExpunge))",
    b"NOTIFY SET",
    b"NOTIFY GET",
    b"NOTIFY SET (personal ())",
])
def test_bad_commands(env, cmd):
    r = Raw.tls(env)
    r.login()
    out = r.cmd(b"b", cmd)
    assert out[-1].startswith(b"b BAD"), out
    assert r.cmd(b"n", b"NOOP") == [b"n OK NOOP completed."]


def test_not_before_login(env):
    r = Raw.tls(env)
    assert r.cmd(b"b", b"NOTIFY NONE")[-1].startswith(b"b BAD")


def test_overflow_turns_notify_off(env, monkeypatch):
    monkeypatch.setattr(notifymod, "MAX_QUEUE", 3)
    a, b = _two(env)
    names = [b"F%d" % i for i in range(5)]
    for name in names:
        b.cmd(b"c", b"CREATE " + name)
    a.cmd(b"n", b"NOTIFY SET (personal (MessageNew MessageExpunge))")
    s = _session(env, 0)
    env.loop.call(lambda: setattr(s, "_busy", True))  # as if a long command were running
    for name in names:
        env.deliver(msg(subject="o"), folder=name.decode())
        env.deliver(msg(subject="p"), folder=name.decode())  # the same folder: one entry

    def resume() -> None:
        s._busy = False
        s._finish()

    import time
    time.sleep(0.3)
    env.loop.call(resume)
    assert _expect(a, rb"NOTIFICATIONOVERFLOW") == \
        b"* OK [NOTIFICATIONOVERFLOW] Too many notifications; NOTIFY is off."
    rest = _quiet(a)
    assert len([x for x in rest if x.startswith(b"* STATUS")]) <= 3, rest
    env.deliver(msg(subject="after"), folder="F0")
    assert _quiet(a) == []
    assert a.cmd(b"z", b"NOOP") == [b"z OK NOOP completed."]


def test_changes_wait_for_a_running_command_and_are_merged(env):
    a, b = _two(env)
    b.cmd(b"c", b"CREATE Busy")
    a.cmd(b"n", b"NOTIFY SET (personal (MessageNew MessageExpunge))")
    s = _session(env, 0)
    env.loop.call(lambda: setattr(s, "_busy", True))
    for i in range(4):
        env.deliver(msg(subject=f"m{i}"), folder="Busy")
    import time
    time.sleep(0.3)
    assert _quiet(a, 0.3) == []  # nothing while "a command runs"

    def resume() -> None:
        s._busy = False
        s._finish()

    env.loop.call(resume)
    line = _expect(a, rb"^\* STATUS")
    assert b"MESSAGES 4" in line, line
    assert _quiet(a) == []  # one STATUS for the four deliveries
