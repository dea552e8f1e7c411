"""RFC 5258 LIST-EXTENDED and RFC 5819 LIST-STATUS, from the RFCs' examples (adapted)."""

from __future__ import annotations

import pytest

from tests.protocol.imap.conftest import Raw, msg

pytestmark = pytest.mark.protocol


@pytest.fixture
def r(env) -> Raw:
    c = Raw.tls(env)
    c.login()
    for box in (b"Fruit/Apple", b"Fruit/Banana", b"Tofu", b"Foo/Bar"):
        c.cmd(b"c", b"CREATE " + box)
    c.cmd(b"s1", b"SUBSCRIBE Fruit/Banana")
    c.cmd(b"s2", b"SUBSCRIBE Fruit/Peach")  # does not exist
    c.cmd(b"s3", b"SUBSCRIBE Foo/Bar")
    c.cmd(b"u", b"UNSUBSCRIBE Trash")
    return c


def _untagged(out: list[bytes]) -> list[bytes]:
    return [x for x in out if x.startswith(b"*")]


def test_capabilities(r):
    caps = r.cmd(b"c", b"CAPABILITY")[0].split()
    assert b"LIST-EXTENDED" in caps and b"LIST-STATUS" in caps


def test_multiple_patterns(r):
    # RFC 5258 §5 example 2: A02 LIST "" ("INBOX" "Drafts")  (patterns as a list)
    out = _untagged(r.cmd(b"A02", b'LIST "" ("INBOX" "Tofu")'))
    assert [x.rsplit(b" ", 1)[1] for x in out] == [b'"INBOX"', b'"Tofu"']


def test_subscribed_selection_with_nonexistent(r):
    # example 3: A03 LIST (SUBSCRIBED) "" "*" -> ... (\Subscribed \NonExistent) "/" "Fruit/Peach"
    out = _untagged(r.cmd(b"A03", b'LIST (SUBSCRIBED) "" "*"'))
    byname = {x.rsplit(b" ", 1)[1]: x for x in out}
    assert b'"Fruit/Peach"' in byname and b'"Trash"' not in byname
    assert b"(\\NonExistent \\Subscribed)" in byname[b'"Fruit/Peach"'], out
    assert b"\\Subscribed" in byname[b'"Fruit/Banana"']
    assert b'"Fruit/Apple"' not in byname and b'"Fruit"' not in byname


def test_recursivematch_childinfo(r):
    # example 9: A04 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)
    #   -> * LIST (\HasChildren) "/" "Foo" ("CHILDINFO" ("SUBSCRIBED"))
    out = _untagged(r.cmd(b"A04", b'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)'))
    foo = [x for x in out if b'"Foo"' in x]
    assert foo == [b'* LIST (\\HasChildren) "/" "Foo" ("CHILDINFO" ("SUBSCRIBED"))'], out
    assert not any(b'"Tofu"' in x for x in out)
    assert r.cmd(b"b", b'LIST (RECURSIVEMATCH) "" "%"')[-1].startswith(b"b BAD")


def test_recursivematch_only_with_remote_is_bad(r):
    # RFC 5258 §3: RECURSIVEMATCH "MUST NOT occur as the only selection option (or only with
    # REMOTE) ... The server MUST return BAD tagged response in such case."  (imaptest listext)
    assert r.cmd(b"b1", b'LIST (RECURSIVEMATCH REMOTE) "" "%"')[-1].startswith(b"b1 BAD")
    assert r.cmd(b"b2", b'LIST (REMOTE RECURSIVEMATCH) "" "%"')[-1].startswith(b"b2 BAD")
    assert r.cmd(b"ok", b'LIST (REMOTE) "" "%"')[-1].startswith(b"ok OK")


def test_return_subscribed(r):
    out = _untagged(r.cmd(b"a", b'LIST "" "Fruit/%" RETURN (SUBSCRIBED)'))
    assert out == [b'* LIST (\\HasNoChildren) "/" "Fruit/Apple"',
                   b'* LIST (\\HasNoChildren \\Subscribed) "/" "Fruit/Banana"'], out


def test_list_status(env, r):
    # RFC 5819 §2: A01 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))
    #   -> * LIST () "." "INBOX"  * STATUS "INBOX" (MESSAGES 17 UNSEEN 16)
    env.deliver(msg("one"))
    env.deliver(msg("two"))
    out = _untagged(r.cmd(b"A01", b'LIST "" % RETURN (STATUS (MESSAGES UNSEEN))'))
    i = next(k for k, x in enumerate(out) if x.endswith(b'"/" "INBOX"'))
    assert out[i + 1] == b'* STATUS "INBOX" (MESSAGES 2 UNSEEN 2)'
    fruit = next(k for k, x in enumerate(out) if x.endswith(b'"/" "Fruit"'))
    assert out[fruit + 1] == b'* STATUS "Fruit" (MESSAGES 0 UNSEEN 0)'  # CREATE made the parent
    assert r.cmd(b"b", b'LIST "" % RETURN (STATUS (BOGUS))')[-1].startswith(b"b BAD")
