"""Spool: atomic entries, state updates, claims across processes, restarts."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from esam_mail.store.spool import Spool

MSG = b"From: a@example.com\r\nTo: b@other.test\r\nSubject: x\r\n\r\nhello\r\n"


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_enqueue_writes_message_and_envelope_0600(tmp_path):
    sp = Spool(tmp_path / "q")
    qid = sp.enqueue(
        "a@example.com",
        ["b@other.test", "c@other.test", "b@other.test"],
        MSG,
        dsn_envelope_id="env1",
        now=1000.0,
    )
    e = sp.get(qid)
    assert e.mail_from == "a@example.com"
    assert [r.address for r in e.rcpts] == ["b@other.test", "c@other.test"]
    assert all(r.status == "pending" for r in e.rcpts)
    assert (e.created, e.next_attempt, e.attempts, e.dsn_envelope_id) == (1000.0, 1000.0, 0, "env1")
    assert sp.read_message(qid) == MSG
    root = str(tmp_path / "q")
    assert mode(os.path.join(root, "msg", qid)) == 0o600
    assert mode(os.path.join(root, "env", qid + ".json")) == 0o600
    assert mode(root) == 0o700
    assert os.listdir(os.path.join(root, "tmp")) == []


def test_enqueue_requires_recipients(tmp_path):
    with pytest.raises(ValueError):
        Spool(tmp_path).enqueue("a@x.test", [], MSG)


def test_half_written_entry_is_invisible_and_cleaned(tmp_path):
    sp = Spool(tmp_path)
    good = sp.enqueue("a@x.test", ["b@y.test"], MSG, now=10.0)
    orphan = Spool.new_id(11.0)
    (tmp_path / "msg" / orphan).write_bytes(MSG)  # crash before the envelope
    (tmp_path / "tmp" / "123.abc").write_bytes(b"partial")
    assert sp.ids() == [good]
    assert [e.id for e in sp.list()] == [good]
    assert sp.cleanup(max_age=0, now=os.stat(tmp_path / "tmp" / "123.abc").st_mtime + 1) == 2
    assert sp.read_message(good) == MSG
    assert not (tmp_path / "msg" / orphan).exists()


def test_update_due_delete_and_restart(tmp_path):
    sp = Spool(tmp_path)
    a = sp.enqueue("a@x.test", ["b@y.test"], MSG, now=100.0)
    b = sp.enqueue("a@x.test", ["c@y.test"], MSG, now=101.0)
    e = sp.get(a)
    e.next_attempt = 500.0
    e.attempts = 1
    e.rcpts[0].reply = "451 4.3.0 later"
    sp.update(e)
    assert [x.id for x in sp.due(200.0)] == [b]
    assert [x.id for x in sp.due(500.0)] == [b, a]
    # A new Spool over the same directory (a restart) sees the same state.
    again = Spool(tmp_path)
    got = again.get(a)
    assert got.attempts == 1 and got.rcpts[0].reply == "451 4.3.0 later"
    again.delete(a)
    again.delete(a)  # idempotent
    with pytest.raises(KeyError):
        sp.get(a)
    with pytest.raises(KeyError):
        sp.update(e)  # cannot resurrect a deleted entry
    assert sp.ids() == [b]


def test_bad_ids_are_rejected(tmp_path):
    sp = Spool(tmp_path)
    for bad in ("../../etc/passwd", "", "ABC/def"):
        with pytest.raises(KeyError):
            sp.get(bad)


def test_claim_is_exclusive_within_a_process(tmp_path):
    sp = Spool(tmp_path)
    qid = sp.enqueue("a@x.test", ["b@y.test"], MSG)
    c1 = sp.claim(qid)
    assert c1 is not None and c1.entry.id == qid
    assert Spool(tmp_path).claim(qid) is None
    c1.release()
    with sp.claim(qid) as c2:
        assert c2 is not None and c2.held
    sp.delete(qid)
    assert sp.claim(qid) is None


HOLDER = textwrap.dedent(
    """
    import sys
    from esam_mail.store.spool import Spool
    c = Spool(sys.argv[1]).claim(sys.argv[2])
    print("claimed" if c else "busy", flush=True)
    sys.stdin.readline()
    """
)


def test_claim_is_exclusive_across_processes_and_freed_on_exit(tmp_path):
    sp = Spool(tmp_path)
    qid = sp.enqueue("a@x.test", ["b@y.test"], MSG)
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), qid],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "claimed"
        assert sp.claim(qid) is None
    finally:
        child.communicate("\n", timeout=30)
    c = sp.claim(qid)  # the kernel dropped the dead holder's lock
    assert c is not None
    c.release()


RUNNER = textwrap.dedent(
    """
    import os, sys
    from esam_mail.store.spool import Spool
    sp = Spool(sys.argv[1])
    sent = sys.argv[2]
    for claim in sp.claim_due(1e12):
        with claim:
            try:
                fd = os.open(os.path.join(sent, claim.entry.id), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.close(fd)
            except FileExistsError:
                print("DUP", claim.entry.id, flush=True)
            sp.delete(claim.entry.id)
    """
)


def test_competing_runners_send_each_entry_once(tmp_path):
    sp = Spool(tmp_path / "q", fsync=False)
    ids = {sp.enqueue("a@x.test", ["b@y.test"], MSG) for _ in range(60)}
    sent = tmp_path / "sent"
    sent.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(tmp_path / "q"), str(sent)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert "DUP" not in "".join(outs)
    assert set(os.listdir(sent)) == ids
    assert sp.ids() == []
