"""RFC 3501 §6.3.3, §6.3.4, §6.3.6-6.3.9: CREATE does not subscribe, DELETE does not unsubscribe; LSUB."""

from __future__ import annotations

import pytest

from tests.protocol.imap.conftest import Raw

pytestmark = pytest.mark.protocol


def test_create_does_not_subscribe(env):
    r = Raw.tls(env)
    r.login()
    r.cmd(b"a", b"CREATE Projects")
    assert r.cmd(b"b", b'LSUB "" Projects') == [b"b OK LSUB completed."]
    r.cmd(b"c", b"SUBSCRIBE Projects")
    assert r.cmd(b"d", b'LSUB "" Projects')[0].startswith(b'* LSUB (')


def test_lsub_percent_returns_unsubscribed_parent_as_noselect(env):
    r = Raw.tls(env)
    r.login()
    r.cmd(b"a", b"CREATE foo/bar")
    r.cmd(b"b", b"SUBSCRIBE foo/bar")
    out = r.cmd(b"c", b'LSUB "" %')
    foo = [x for x in out if x.endswith(b'"/" "foo"')]
    assert len(foo) == 1 and b"\\Noselect" in foo[0], out
    assert not any(b"foo/bar" in x for x in out)
    out = r.cmd(b"d", b'LSUB "" *')
    assert any(x.endswith(b'"/" "foo/bar"') for x in out)
    assert not any(x.endswith(b'"/" "foo"') for x in out), out  # * reaches the child itself
    out = r.cmd(b"e", b'LSUB "" foo/%')
    assert [x for x in out if x.startswith(b"*")] == [b'* LSUB (\\HasNoChildren) "/" "foo/bar"']


def test_lsub_lists_subscribed_name_that_does_not_exist(env):
    r = Raw.tls(env)
    r.login()
    r.cmd(b"a", b"SUBSCRIBE ghost")
    out = r.cmd(b"b", b'LSUB "" ghost')
    assert len(out) == 2 and out[0].endswith(b'"/" "ghost"'), out


def test_default_folders_stay_subscribed(env):
    r = Raw.tls(env)
    r.login()
    out = r.cmd(b"a", b'LSUB "" *')
    names = {x.rsplit(b" ", 1)[1] for x in out if x.startswith(b"*")}
    assert {b'"INBOX"', b'"Sent"', b'"Trash"'} <= names


def test_delete_keeps_the_subscription(env):
    # RFC 3501 §6.3.6: "The server MUST NOT unilaterally remove an existing mailbox name from the
    # subscription list even if a mailbox by that name no longer exists."  RFC 5258 then lists it
    # as (\NonExistent \Subscribed).  (imaptest listext)
    r = Raw.tls(env)
    r.login()
    r.cmd(b"a", b"CREATE Gone")
    r.cmd(b"b", b"SUBSCRIBE Gone")
    assert r.cmd(b"c", b"DELETE Gone")[-1].startswith(b"c OK")
    assert r.cmd(b"d", b'LSUB "" Gone')[0].startswith(b'* LSUB (')
    out = r.cmd(b"e", b'LIST (SUBSCRIBED) "" Gone')
    assert out[0] == b'* LIST (\\NonExistent \\Subscribed) "/" "Gone"', out
