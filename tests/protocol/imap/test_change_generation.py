"""A selected session skips the end-of-command look at its folder while the user's
shared change generation (esam_mail.store.generation) is unchanged since its last
complete look, and still reports at its next command what another process changed.

The other process here is a separate Python process writing to the same store with no
notifier at all: the generation is the only thing that can tell the session."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

from tests.protocol.imap.conftest import Env, Raw, msg
from tests.protocol.imap.test_refresh_hops import _count_runs

pytestmark = pytest.mark.protocol


def _other_process(env: Env, code: str) -> None:
    """Run ``code`` in a fresh interpreter with ``user`` = alice's store (no notifier)."""
    prog = textwrap.dedent(f"""
        from pathlib import Path
        from esam_mail.store.maildir import MaildirStore
        store = MaildirStore(Path({str(env.store.root)!r}), fsync=False, notifier=None)
        user = store.user("alice")
    """) + textwrap.dedent(code)
    subprocess.run([sys.executable, "-c", prog], check=True, timeout=60)


def _flag_elsewhere(env: Env, index: int, flag: str) -> None:
    """Another process sets ``flag`` on the ``index``-th message of alice's INBOX."""
    _other_process(env, f"""
        f = user.folder("INBOX")
        uids = [m.uid for m in f.sync()]
        f.store_flags([uids[{index}]], ["\\\\{flag}"], 1)
    """)


def _settled(c: Raw) -> None:
    """Past the store's mtime freshness margin, then one real look (NOOP)."""
    time.sleep(1.2)
    assert c.cmd(b"N0", b"NOOP")[-1].startswith(b"N0 OK")


def _selected(env: Env, n: int = 3) -> Raw:
    for i in range(n):
        env.deliver(msg(f"m{i}"))
    c = Raw.tls(env)
    c.login()
    c.cmd(b"S", b"SELECT INBOX")
    return c


@pytest.mark.parametrize("command", [
    b"NOOP", b"FETCH 1:* (FLAGS)", b"CHECK",
    # searches that need no message content run on what the session holds (issue 20)
    b"UID SEARCH UNSEEN", b"SEARCH SINCE 1-Jan-2020 NOT FLAGGED LARGER 10", b"SEARCH OR 2 RECENT"])
def test_unchanged_folder_no_pool_call(env: Env, command: bytes) -> None:
    c = _selected(env)
    _settled(c)
    calls = _count_runs(env)
    for i in range(3):
        r = c.cmd(b"C%d" % i, command)
        assert r[-1].startswith(b"C%d OK" % i), r
    assert calls == [], calls


def test_a_content_free_search_of_many_keys_runs_on_the_pool(env: Env) -> None:
    """The loop evaluates a content-free search only while messages x keys stays small:
    a program of hundreds of keys is work for a mailbox thread, not the event loop."""
    c = _selected(env)
    _settled(c)
    calls = _count_runs(env)
    r = c.cmd(b"K", b"SEARCH " + b" ".join([b"1:*"] * 700))  # 700 keys x 3 messages
    assert r[-1].startswith(b"K OK") and b"* SEARCH 1 2 3" in r, r
    assert calls == ["INBOX"], calls


def test_generation_is_not_proof_forever(env: Env, monkeypatch: Any) -> None:
    """At least every REAL_LOOK_EVERY seconds a real look (foreign writers)."""
    from esam_mail.imap import selected
    monkeypatch.setattr(selected, "REAL_LOOK_EVERY", 0.5)
    c = _selected(env)
    _settled(c)
    time.sleep(0.6)
    calls = _count_runs(env)
    assert c.cmd(b"N", b"NOOP")[-1].startswith(b"N OK")
    assert calls == ["INBOX"], calls


def test_delivery_by_another_process_reported(env: Env) -> None:
    c = _selected(env)
    _settled(c)
    _other_process(env, """
        store.deliver_each(["alice"], b"Subject: x\\r\\n\\r\\nbody\\r\\n")
    """)
    r = c.cmd(b"F", b"FETCH 1 (FLAGS)")
    assert b"* 4 EXISTS" in r, r


def test_flags_by_another_process_reported(env: Env) -> None:
    c = _selected(env)
    _settled(c)
    _flag_elsewhere(env, 1, "Flagged")
    r = c.cmd(b"F", b"FETCH 1 (FLAGS)")
    assert any(b"* 2 FETCH (" in ln and b"\\Flagged" in ln for ln in r), r


def test_expunge_by_another_process_reported(env: Env) -> None:
    c = _selected(env)
    _settled(c)
    _other_process(env, """
        f = user.folder("INBOX")
        uids = [m.uid for m in f.sync()]
        f.store_flags([uids[0]], ["\\\\Deleted"], 1)
        f.expunge([uids[0]])
    """)
    r = c.cmd(b"N", b"NOOP")
    assert b"* 1 EXPUNGE" in r, r


def test_append_by_another_process_reported(env: Env) -> None:
    c = _selected(env)
    _settled(c)
    _other_process(env, """
        user.folder("INBOX").append(b"Subject: y\\r\\n\\r\\nb\\r\\n", ["\\\\Seen"])
    """)
    r = c.cmd(b"N", b"NOOP")
    assert b"* 4 EXISTS" in r, r


def test_a_look_within_the_mtime_margin_is_skipped_too(env: Env, monkeypatch: Any) -> None:
    """A look taken while the folder's mtimes are fresh (a busy folder: some change
    every few ms) is not final for the store, but the generation read before it still
    proves that no esam writer changed anything since: the next commands make no pool
    call (each made one, issue 20), and a change made after that look by another
    process, in the same mtime tick or not, still bumps the generation and is reported."""
    from esam_mail.store import maildir
    monkeypatch.setattr(maildir, "_MTIME_MARGIN_LOCAL_NS", 3600 * 10**9)  # never final
    monkeypatch.setattr(maildir, "_MTIME_MARGIN_NS", 3600 * 10**9)
    c = _selected(env)
    assert c.cmd(b"N0", b"NOOP")[-1].startswith(b"N0 OK")
    calls = _count_runs(env)
    for i in range(3):
        assert c.cmd(b"N%d" % (i + 1), b"NOOP")[-1].startswith(b"N%d OK" % (i + 1))
    assert calls == [], calls
    _flag_elsewhere(env, 2, "Answered")
    r = c.cmd(b"F", b"NOOP")
    assert any(b"* 3 FETCH (" in ln and b"\\Answered" in ln for ln in r), r
    assert calls == ["INBOX"], calls


def test_a_change_to_another_folder_costs_no_look(env: Env) -> None:
    """The generation has a slot per folder (by a hash of its name): an APPEND, a flag
    change or an expunge in another folder of the same user leaves the selected folder's
    slot as it was, so its session makes no pool call; the user's own slot still moves."""
    from esam_mail.store import generation
    env.store.user("alice").create_folder("Keep")
    assert generation.slot_of("Keep") != generation.slot_of("INBOX")
    c = _selected(env)
    _settled(c)
    mapped = generation.of(env.store.user("alice").path)
    before = mapped.value()
    calls = _count_runs(env)
    _other_process(env, """
        f = user.folder("Keep")
        f.append(b"Subject: k\\r\\n\\r\\nb\\r\\n", [])
        uid = f.sync()[0].uid
        f.store_flags([uid], ["\\\\Deleted"], 1)
        f.expunge([uid])
    """)
    assert mapped.value() > before
    assert c.cmd(b"N", b"NOOP")[-1].startswith(b"N OK")
    assert calls == [], calls
    _other_process(env, """
        user.folder("Keep").copy_to([], user.folder("INBOX"))
        f = user.folder("Keep")
        f.append(b"Subject: k2\\r\\n\\r\\nb\\r\\n", [])
        f.copy_to([f.sync()[0].uid], user.folder("INBOX"))
    """)
    r = c.cmd(b"N2", b"NOOP")
    assert b"* 4 EXISTS" in r, r
    assert calls == ["INBOX"], calls
