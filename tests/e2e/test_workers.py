"""`esam serve --workers 2`: shared ports (SO_REUSEPORT), cross-worker IDLE push, restart, stop."""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.imap_raw import RawIMAP

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"


def _pid_of(log: Path, pattern: str, timeout: float = 5.0) -> int:
    """The worker pid of the first log line matching ``pattern`` (workers append pid=)."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if rx.search(line):
                m = re.search(r" pid=(\d+) worker=\d+$", line)
                assert m, line
                return int(m.group(1))
        time.sleep(0.05)
    raise AssertionError(f"no log line matches {pattern!r}")


def _send(port: int, n: int) -> str:
    """One message on its own connection; returns the SMTP session id from the 250."""
    msg = f"From: bob@remote.test\r\nTo: alice@esam.test\r\nSubject: m{n}\r\n\r\nbody {n}\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.test")
        s.mail("bob@remote.test")
        code, _ = s.rcpt("alice@esam.test")
        assert code == 250
        code, resp = s.data(msg.encode())
        assert code == 250, resp
    m = re.search(rb" as ([0-9a-f]+)", resp)
    assert m, resp
    return m.group(1).decode()


@pytest.fixture
def workers(make_esam: Any) -> Any:
    p = make_esam(server={"workers": 2})
    p.esam("init")
    p.add_mailbox("alice", PASSWORD)
    p.start()
    return p


def test_two_workers_share_ports_and_push_idle_across_workers(workers: Any) -> None:
    p = workers
    ready = json.loads(p.ready.read_text())
    assert ready["pid"] == p.proc.pid
    assert len(ready["workers"]) == 2 and p.proc.pid not in ready["workers"]

    imap = RawIMAP(p.ports["imaps"])
    try:
        imap.login("alice", PASSWORD)
        imap_pid = _pid_of(p.log, r"msg=auth\.ok .*user=alice .*service=imap")
        assert imap_pid in ready["workers"]
        imap.cmd("SELECT INBOX")
        imap.idle()
        pids: dict[str, int] = {}
        delays_other: list[float] = []
        for n in range(1, 41):
            sid = _send(p.ports["smtp"], n)
            _, waited = imap.wait_for(rb"^\* %d EXISTS" % n, timeout=1.0)
            pids[sid] = _pid_of(p.log, rf"session={sid} .*msg=delivery\.accepted")
            if pids[sid] != imap_pid:
                delays_other.append(waited)
            if n >= 8 and len(set(pids.values())) == 2:
                break
        imap.done()
    finally:
        imap.close()
    # the kernel spread the connections over both workers ...
    assert set(pids.values()) == set(ready["workers"]), pids
    # ... and a delivery made by the other worker reached this IDLE session within 1 s
    assert delays_other and max(delays_other) < 1.0


def test_a_killed_worker_is_replaced_and_sigterm_stops_all(workers: Any) -> None:
    p = workers
    ready = json.loads(p.ready.read_text())
    victim = ready["workers"][0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    text = ""
    while time.monotonic() < deadline:
        text = p.log.read_text(errors="replace")
        if re.search(rf"worker 0 \(pid {victim}\) exited with -9; restarting", text) and \
                text.count("msg=server.started") >= 3:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"worker not restarted:\n{text}")
    for n in range(6):  # every connection is accepted by a live worker
        _send(p.ports["smtp"], n)
    survivors = [int(x) for x in re.findall(r"msg=server\.started .* pid=(\d+) worker=", text)]
    assert p.stop() == 0
    for pid in survivors:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_stalled_worker_gets_no_new_imap_connections(workers: Any) -> None:
    """IMAP listeners are one accept queue for all workers (issue 20): a connection goes
    to a worker whose loop is free.  With one SO_REUSEPORT socket per worker the kernel
    hashed about half the new connections to a stalled worker, where they waited."""
    p = workers
    ready = json.loads(p.ready.read_text())
    stalled = ready["workers"][0]
    os.kill(stalled, signal.SIGSTOP)
    try:
        for _ in range(12):
            t0 = time.monotonic()
            imap = RawIMAP(p.ports["imaps"], timeout=5)
            try:
                imap.login("alice", PASSWORD)
                imap.cmd("SELECT INBOX")
            finally:
                imap.close()
            assert time.monotonic() - t0 < 5
    finally:
        os.kill(stalled, signal.SIGCONT)
    assert p.stop() == 0  # the stalled worker is well again and stops cleanly


def _allowed_cpus(pid: int, thread: int | None = None) -> set[int]:
    """A process's (or one of its threads') allowed CPUs, from /proc."""
    where = f"/proc/{pid}/task/{thread}/status" if thread else f"/proc/{pid}/status"
    line = next(ln for ln in Path(where).read_text().splitlines() if ln.startswith("Cpus_allowed_list:"))
    out: set[int] = set()
    for part in line.split(":", 1)[1].strip().split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def test_each_worker_runs_on_its_own_cpu_and_hashes_anywhere(workers: Any) -> None:
    """server.cpu_affinity (default on): with 2 workers and at least 2 CPUs, worker i runs
    its loop and mailbox threads on the i-th CPU; the password-hash threads run on any CPU.
    With fewer CPUs than workers nothing is pinned."""
    p = workers
    ready = json.loads(p.ready.read_text())
    allowed = sorted(os.sched_getaffinity(p.proc.pid))
    imap = RawIMAP(p.ports["imaps"])
    try:
        imap.login("alice", PASSWORD)  # starts the login's hash thread in one worker
        imap.cmd("SELECT INBOX")
    finally:
        imap.close()
    text = p.log.read_text(errors="replace")
    if len(allowed) < 2:
        assert "msg=worker.cpu" not in text
        return
    pinned = {int(w): int(c) for w, c in re.findall(r"msg=worker\.cpu index=(\d+) cpu=(\d+)", text)}
    assert pinned == {0: allowed[0], 1: allowed[1]}, text
    free = 0
    for pid in ready["workers"]:
        mine = _allowed_cpus(pid)  # the main thread: the event loop
        assert len(mine) == 1
        for task in os.listdir(f"/proc/{pid}/task"):
            cpus = _allowed_cpus(pid, int(task))
            # its own CPU (the loop, the mailbox threads), or every one: a password-hash
            # thread, which the login above started (threads carry no names in /proc)
            assert cpus == mine or cpus == set(allowed), cpus
            free += cpus == set(allowed)
    assert 1 <= free <= 8
    assert {next(iter(_allowed_cpus(pid))) for pid in ready["workers"]} == set(allowed[:2])
