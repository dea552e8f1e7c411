"""`esam serve --roles smtp,imap,http` (server.roles): one process per role (issue 14).

Each role runs in its own process with only its listeners; mail accepted by the
SMTP process reaches an IDLE session of the IMAP process through the store's
cross-process notifier, and the HTTP process answers /healthz.
"""

from __future__ import annotations

import json
import re
import smtplib
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.imap_raw import RawIMAP

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"


def _pid_of(log: Path, pattern: str, timeout: float = 5.0) -> int:
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


@pytest.fixture
def split(make_esam: Any) -> Any:
    p = make_esam(server={"roles": "smtp,imap,http"})
    p.esam("init")
    p.add_mailbox("alice", PASSWORD)
    p.start()
    yield p
    assert p.stop() == 0


def test_each_role_runs_in_its_own_process(split: Any) -> None:
    p = split
    ready = json.loads(p.ready.read_text())
    assert len(ready["workers"]) == 3
    assert sorted(ready["roles"].values()) == ["http", "imap", "smtp"]
    role_pid = {role: int(pid) for pid, role in ready["roles"].items()}

    with urllib.request.urlopen(f"http://127.0.0.1:{p.ports['http']}/healthz", timeout=10) as r:
        assert r.status == 200

    imap = RawIMAP(p.ports["imaps"])
    try:
        imap.login("alice", PASSWORD)
        assert _pid_of(p.log, r"msg=auth\.ok .*user=alice .*service=imap") == role_pid["imap"]
        imap.cmd("SELECT INBOX")
        imap.idle()
        with smtplib.SMTP("127.0.0.1", p.ports["smtp"], timeout=10) as s:
            s.sendmail("bob@remote.test", ["alice@esam.test"],
                       b"From: bob@remote.test\r\nTo: alice@esam.test\r\nSubject: split\r\n\r\nhi\r\n")
        _, waited = imap.wait_for(rb"^\* 1 EXISTS", timeout=5.0)
        imap.done()
    finally:
        imap.close()
    assert _pid_of(p.log, r"msg=delivery\.accepted") == role_pid["smtp"]
    assert waited < 2.0
    # each process listens on its own role's ports only
    started = {int(m.group(2)): set(re.findall(r"(\w+):\d+", m.group(1))) for m in re.finditer(
        r"msg=server\.started ports=(\S*) .*pid=(\d+) worker=", p.log.read_text(errors="replace"))}
    assert started[role_pid["smtp"]] == {"smtp", "submission", "submissions"}
    assert started[role_pid["imap"]] == {"imap", "imaps"}
    assert started[role_pid["http"]] == {"http"}


def test_bad_roles_are_refused_with_the_key_named(make_esam: Any) -> None:
    p = make_esam()
    p.esam("init")
    res = p.esam("serve", "--roles", "smtp,pop3", check=False)
    assert res.returncode != 0
    assert "server.roles: unknown role 'pop3'" in res.stderr
