"""bench/imaptest_scripts.py (the runner for imaptest's scripted-test format) against esam_mail.

The scripted tests here are our own, in that format: they keep the runner working (fresh test
mailbox, mbox fixtures, $variables, $N relative sequences after EXPUNGE, default FLAGS/FETCH
directives, two connections, ``!`` must-not lines, capability skips) and show it can fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.imaptest_scripts import main as run_scripts
from tests.protocol.imap.conftest import PASSWORD

pytestmark = pytest.mark.protocol

MBOX = (
    "From user@domain  Fri Feb 22 17:06:23 2008 +0200\n"
    "From: User1 <user1@domain.org>\nSubject: s1\n\nbody1\n\n"
    "From user@domain  Fri Feb 22 17:06:24 2008 +0200\n"
    "From: User2 <user2@domain.org>\nSubject: s22\n\nbody22\n\n"
    "From user@domain  Fri Feb 22 17:06:25 2008 +0200\n"
    "From: User3 <user3@domain.org>\nSubject: s333\n\nbody333\n"
)

EXPUNGE = """connections: 2

1 ok fetch 1:3 uid
* 1 fetch (uid $uid1)
* 3 fetch (uid $uid3)
1 ok store 2 +flags (\\deleted $$kw)
* 2 fetch (flags (\\deleted $$kw))
1 ok expunge
* 2 expunge

2 ok noop
* $2 expunge
2 ok uid fetch $uid3 (flags body.peek[text])
* 2 fetch (flags () body[text] {{{
body333

}}})
1 ok search all
* search 1 2
! search 1 2 3
"""

APPEND = """state: created

ok append $mailbox (\\seen)
ok select $mailbox
* 1 exists
* ok [uidvalidity $uidv]
ok status $mailbox (messages unseen)
* status $mailbox (messages 1 unseen 0)
ok fetch 1 (internaldate envelope)
* 1 fetch (internaldate $idate envelope (NIL "s1" $ $ (("User1" NIL "user1" "domain.org")) NIL NIL NIL NIL NIL))
"""


def _run(tmp_path: Path, env, tests: dict[str, str], capsys) -> tuple[int, str]:
    d = tmp_path / "scripts"
    d.mkdir()
    (d / "default.mbox").write_text(MBOX)
    for name, text in tests.items():
        (d / name).write_text(text)
    rc = run_scripts(["--tests", str(d), "--port", str(env.tls_port), "--tls", "--user", "alice",
                      "--password", PASSWORD, "-v", "--timeout", "10"])
    return rc, capsys.readouterr().out


def test_runner_passes_on_esam(tmp_path, env, capsys):
    rc, out = _run(tmp_path, env, {"expunge": EXPUNGE, "append": APPEND,
                                   "needs-cap": "capabilities: X-NOT-THERE\n\nok noop\n"}, capsys)
    assert rc == 0, out
    assert "3 test groups: 2 passed, 0 failed, 1 skipped due to missing capabilities" in out, out


def test_runner_reports_a_wrong_expectation(tmp_path, env, capsys):
    wrong = EXPUNGE.replace("* search 1 2\n! search 1 2 3", "* search 1 2 3")
    rc, out = _run(tmp_path, env, {"expunge": wrong}, capsys)
    assert rc == 1
    assert "expunge" in out and "FAIL" in out and "first expected: search 1 2 3" in out, out
